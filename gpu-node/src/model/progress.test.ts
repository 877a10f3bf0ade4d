import { describe, expect, it } from "vitest";
import { createProgressBar, formatBytes, formatDuration } from "./progress.js";

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  return { stream: { isTTY, write: (s: string) => writes.push(s) }, writes };
}

const GiB = 1024 ** 3;

describe("createProgressBar", () => {
  it("redraws in place on a TTY, at most every 100 ms", () => {
    let now = 0;
    const { stream, writes } = fakeStream(true);
    const bar = createProgressBar({ label: "loading weights", total: 4 * GiB, stream, now: () => now });
    now = 1000;
    bar.update(GiB, "model-00001-of-00004.safetensors");
    expect(writes).toEqual(["\rloading weights  1.00 GiB / 4.00 GiB   25.0%  1.00 GiB/s  ETA 0:03  model-00001-of-00004.safetensors\x1b[K"]);
    now = 1050;
    bar.update(1.1 * GiB);
    expect(writes).toHaveLength(1); // throttled
    now = 1100;
    bar.update(1.2 * GiB);
    expect(writes).toHaveLength(2);
    now = 2000;
    bar.update(4 * GiB, "model-00004-of-00004.safetensors");
    expect(writes[2]).toBe("\rloading weights  4.00 GiB / 4.00 GiB  100.0%  2.00 GiB/s  ETA --:--  model-00004-of-00004.safetensors\x1b[K");
    bar.done();
    expect(writes[3]).toBe("\rloading weights  4.00 GiB in 0:02  (2.00 GiB/s)\x1b[K\n");
    bar.done();
    bar.update(GiB);
    expect(writes).toHaveLength(4);
  });

  it("prints a line per 10% when not a TTY", () => {
    let now = 0;
    const { stream, writes } = fakeStream(false);
    const bar = createProgressBar({ label: "load", total: 1000 * 1024 * 1024, stream, now: () => now });
    for (let mib = 0; mib <= 1000; mib += 10) {
      now = mib * 10; // 100 MiB/s
      bar.update(mib * 1024 * 1024);
    }
    expect(writes).toHaveLength(10);
    expect(writes[0]).toBe("load  100.00 MiB / 1000.00 MiB   10.0%  100.00 MiB/s  ETA 0:09\n");
    expect(writes.every((w) => w.endsWith("\n") && !w.includes("\r"))).toBe(true);
    expect(writes[9]).toMatch(/^load {2}1000\.00 MiB \/ 1000\.00 MiB {2}100\.0%/);
    now = 10_500;
    bar.done();
    expect(writes[10]).toBe("load  1000.00 MiB in 0:11  (95.24 MiB/s)\n");
  });

  it("says how far it got when done early", () => {
    let now = 0;
    const { stream, writes } = fakeStream(false);
    const bar = createProgressBar({ label: "load", total: 2048, stream, now: () => now });
    now = 1000;
    bar.update(1024, "shard-2");
    bar.done();
    expect(writes.at(-1)).toBe("load  1.00 KiB of 2.00 KiB in 0:01  (1.00 KiB/s)  shard-2\n");
  });
});

describe("formatting", () => {
  it("formats bytes and durations", () => {
    expect([formatBytes(0), formatBytes(1023), formatBytes(1536), formatBytes(141 * 1e9), formatBytes(5 * 1024 ** 4)]).toEqual([
      "0 B",
      "1023 B",
      "1.50 KiB",
      "131.32 GiB",
      "5.00 TiB",
    ]);
    expect([formatDuration(0), formatDuration(59.6), formatDuration(61), formatDuration(3600 + 62)]).toEqual(["0:00", "1:00", "1:01", "1:01:02"]);
  });
});
