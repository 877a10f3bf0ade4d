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

  it("cuts at the first stop string to complete", () => {
    expect(run(["abcd", "bc"], ["abcd"])).toEqual({ out: "a", stopped: true });
  });

  it("never emits half of a surrogate pair, whatever the stop strings", () => {
    const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
    for (const stops of [["\uDE00z"], ["\uDE00"], ["x\uD83D"], ["😀z", "q"]]) {
      const m = new StopMatcher(stops);
      for (const d of ["a😀", "😀", "b😀"]) {
        const { text } = m.push(d);
        expect(lone.test(text), `${JSON.stringify(stops)} ${JSON.stringify(text)}`).toBe(false);
      }
      expect(lone.test(m.flush())).toBe(false);
    }
  });

  it("is linear in the output for pathological stop strings", () => {
    // A 256-character run of one letter against an output of that letter: the old matcher re-tested
    // every held-back suffix against every stop string per delta (quadratic in the stop length).
    const stops = ["a".repeat(255) + "b", "a".repeat(254) + "c", "a".repeat(253) + "d", "a".repeat(252) + "e"];
    const count = (deltas: number) => {
      const m = new StopMatcher(stops);
      for (let i = 0; i < deltas; i++) m.push("a");
      return m.steps;
    };
    // Work per character stays constant: twice the output costs twice the work, and the constant is
    // the number of stop strings (amortised), not their length.
    const w1 = count(2000);
    const w2 = count(4000);
    expect(w2 / w1).toBeLessThan(2.1);
    expect(w2 / 4000).toBeLessThan(stops.length * 3);
  });
});
