/**
 * Finds stop strings in streamed text, across token boundaries, and cuts them from the output.
 *
 * Text that could still turn out to be the start of a stop string is held back until the next
 * delta decides it; on a match, everything from the stop string on is dropped.
 */
export class StopMatcher {
  private pending = "";
  private readonly maxLen: number;

  constructor(private readonly stops: readonly string[]) {
    this.maxLen = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  /** Returns the text safe to emit now, and whether a stop string was hit. */
  push(delta: string): { text: string; stopped: boolean } {
    if (this.stops.length === 0) return { text: delta, stopped: false };
    const text = this.pending + delta;
    let cut = -1;
    for (const stop of this.stops) {
      if (stop.length === 0) continue;
      const i = text.indexOf(stop);
      if (i !== -1 && (cut === -1 || i < cut)) cut = i;
    }
    if (cut !== -1) {
      this.pending = "";
      return { text: text.slice(0, cut), stopped: true };
    }
    const hold = this.holdBack(text);
    this.pending = text.slice(text.length - hold);
    return { text: text.slice(0, text.length - hold), stopped: false };
  }

  /** The held-back text, at the end of generation. */
  flush(): string {
    const out = this.pending;
    this.pending = "";
    return out;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private holdBack(text: string): number {
    const max = Math.min(this.maxLen - 1, text.length);
    for (let len = max; len > 0; len--) {
      const suffix = text.slice(text.length - len);
      if (this.stops.some((s) => s.startsWith(suffix))) return len;
    }
    return 0;
  }
}
