import { describe, expect, it } from "vitest";
import { StopMatcher } from "./stop-matcher.js";

function run(stops: string[], deltas: string[]) {
  const m = new StopMatcher(stops);
  let out = "";
  let stopped = false;
  for (const d of deltas) {
    const r = m.push(d);
    out += r.text;
    if (r.stopped) {
      stopped = true;
      break;
    }
  }
  if (!stopped) out += m.flush();
  return { out, stopped };
}

describe("StopMatcher", () => {
  it("passes text through without stop strings", () => {
    expect(run([], ["a", "b"])).toEqual({ out: "ab", stopped: false });
  });
  it("matches a stop string split over several deltas and cuts it", () => {
    expect(run(["END"], ["hello E", "N", "D more"])).toEqual({ out: "hello ", stopped: true });
  });
  it("releases held-back text when the stop string does not complete", () => {
    const m = new StopMatcher(["END"]);
    expect(m.push("xE")).toEqual({ text: "x", stopped: false });
    expect(m.push("Nx")).toEqual({ text: "ENx", stopped: false });
  });
  it("cuts at the earliest of several stop strings", () => {
    expect(run(["b", "zz"], ["aazz b"])).toEqual({ out: "aa", stopped: true });
  });
  it("flushes a held-back partial match at the end", () => {
    expect(run(["\n\n"], ["line\n"])).toEqual({ out: "line\n", stopped: false });
  });
  it("matches a stop string at the very start", () => {
    expect(run(["Hi"], ["H", "i there"])).toEqual({ out: "", stopped: true });
  });
});
