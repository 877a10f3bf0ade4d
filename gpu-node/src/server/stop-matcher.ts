/**
 * Finds stop strings in streamed text, across token boundaries, and cuts them from the output.
 *
 * Each stop string runs a Knuth–Morris–Pratt automaton over the text as it streams by: its state is
 * the length of the longest suffix of the text so far that is a prefix of the stop string. Every
 * UTF-16 unit advances every automaton in amortised O(1), so matching is linear in the output
 * whatever the stop strings look like. The text that could still turn out to be the start of a stop
 * string (the largest state) is held back until later deltas decide it; on a match, everything from
 * the stop string on is dropped. The first stop string to complete wins.
 *
 * Held-back and cut points never fall between the two halves of a surrogate pair, so every piece
 * handed out is well-formed UTF-16 (strict JSON decoders reject lone surrogates).
 */
export class StopMatcher {
  private pending = "";
  private readonly automata: Kmp[];
  /** Automaton steps taken so far: a measure of the work done (tests check it stays linear). */
  steps = 0;

  constructor(stops: readonly string[]) {
    this.automata = stops.filter((s) => s.length > 0).map((s) => new Kmp(s));
  }

  /** Returns the text safe to emit now, and whether a stop string was hit. */
  push(delta: string): { text: string; stopped: boolean } {
    if (this.automata.length === 0) return { text: delta, stopped: false };
    const text = this.pending + delta;
    const base = this.pending.length;
    for (let i = 0; i < delta.length; i++) {
      const c = delta.charCodeAt(i);
      for (const a of this.automata) {
        this.steps += a.advance(c);
        if (a.state === a.stop.length) {
          this.pending = "";
          return { text: text.slice(0, pairSafe(text, base + i + 1 - a.stop.length, -1)), stopped: true };
        }
      }
    }
    let hold = 0;
    for (const a of this.automata) if (a.state > hold) hold = a.state;
    const cut = pairSafe(text, text.length - hold, -1);
    this.pending = text.slice(cut);
    return { text: text.slice(0, cut), stopped: false };
  }

  /** The held-back text, at the end of generation. */
  flush(): string {
    const out = this.pending;
    this.pending = "";
    for (const a of this.automata) a.state = 0;
    return out;
  }
}

/** Moves a cut point that would split a surrogate pair by one unit in direction `dir`. */
function pairSafe(text: string, cut: number, dir: -1 | 1): number {
  if (cut <= 0 || cut >= text.length) return Math.max(0, cut);
  const before = text.charCodeAt(cut - 1);
  const after = text.charCodeAt(cut);
  const splits = before >= 0xd800 && before <= 0xdbff && after >= 0xdc00 && after <= 0xdfff;
  return splits ? cut + dir : cut;
}

/** One stop string's KMP automaton over UTF-16 units. */
class Kmp {
  /** failure[k]: length of the longest proper border of stop[0, k + 1). */
  private readonly failure: Int32Array;
  state = 0;

  constructor(readonly stop: string) {
    this.failure = new Int32Array(stop.length);
    for (let i = 1, k = 0; i < stop.length; i++) {
      while (k > 0 && stop.charCodeAt(i) !== stop.charCodeAt(k)) k = this.failure[k - 1]!;
      if (stop.charCodeAt(i) === stop.charCodeAt(k)) k++;
      this.failure[i] = k;
    }
  }

  /** Feeds one unit; returns the steps taken (amortised O(1)). */
  advance(c: number): number {
    let steps = 1;
    // After a full match the matcher is done, so the state is always a proper prefix here.
    let k = this.state;
    while (k > 0 && c !== this.stop.charCodeAt(k)) {
      k = this.failure[k - 1]!;
      steps++;
    }
    if (c === this.stop.charCodeAt(k)) k++;
    this.state = k;
    return steps;
  }
}
