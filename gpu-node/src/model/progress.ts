/** What the bar writes to: `process.stderr`, or a fake in tests. */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

export interface ProgressBarOptions {
  label: string;
  /** Total bytes. */
  total: number;
  stream?: ProgressStream;
  /** Milliseconds, monotonic. Defaults to `performance.now`. */
  now?: () => number;
  /** Minimum time between redraws on a TTY (default 100 ms, ~10 Hz). */
  intervalMs?: number;
}

export interface ProgressBar {
  /** `done` bytes so far; `detail` (e.g. the shard name) is shown after the numbers. */
  update(done: number, detail?: string): void;
  /** Prints the final line (total, elapsed, average rate). Further calls do nothing. */
  done(): void;
}

/**
 * A byte-progress bar for long loads:
 *
 *   loading weights  12.50 GiB / 131.40 GiB   9.5%  2.10 GiB/s  ETA 0:57  model-00003-of-00030.safetensors
 *
 * On a TTY it redraws in place (`\r`, clear to end of line) at most every `intervalMs`; otherwise
 * (logs, CI) it prints one line each time another 10% is reached, so logs stay short.
 *
 * @example
 * const bar = createProgressBar({ label: "loading weights", total });
 * await loadTensorsF32(tensors, undefined, (p) => bar.update(p.bytesDone, basename(p.file)));
 * bar.done();
 */
export function createProgressBar(options: ProgressBarOptions): ProgressBar {
  const { label, total } = options;
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? (() => performance.now());
  const intervalMs = options.intervalMs ?? 100;
  const tty = stream.isTTY === true;
  const start = now();
  let lastDraw = -Infinity;
  let lastDecile = -1;
  let current = 0;
  let lastDetail: string | undefined;
  let finished = false;

  const line = (done: number, t: number, detail?: string): string => {
    const elapsed = (t - start) / 1000;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const pct = total > 0 ? (100 * done) / total : 100;
    const parts = [label, `${formatBytes(done)} / ${formatBytes(total)}`, `${pct.toFixed(1).padStart(5)}%`, `${formatBytes(rate)}/s`];
    parts.push(rate > 0 && done < total ? `ETA ${formatDuration((total - done) / rate)}` : `ETA --:--`);
    if (detail) parts.push(detail);
    return parts.join("  ");
  };

  return {
    update(done: number, detail?: string): void {
      if (finished) return;
      current = Math.min(Math.max(done, 0), total);
      lastDetail = detail;
      const t = now();
      if (tty) {
        if (t - lastDraw < intervalMs && current < total) return;
        lastDraw = t;
        stream.write(`\r${line(current, t, detail)}\x1b[K`);
      } else {
        const decile = total > 0 ? Math.floor((10 * current) / total) : 10;
        if (decile <= lastDecile || decile === 0) return;
        lastDecile = decile;
        stream.write(`${line(current, t, detail)}\n`);
      }
    },
    done(): void {
      if (finished) return;
      finished = true;
      const t = now();
      const elapsed = (t - start) / 1000;
      const rate = elapsed > 0 ? current / elapsed : 0;
      const summary = `${label}  ${formatBytes(current)}${current < total ? ` of ${formatBytes(total)}` : ""} in ${formatDuration(elapsed)}  (${formatBytes(rate)}/s)${lastDetail && current < total ? `  ${lastDetail}` : ""}`;
      stream.write(tty ? `\r${summary}\x1b[K\n` : `${summary}\n`);
    },
  };
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** 1536 → "1.50 KiB"; bytes below 1 KiB print as integers. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 1024) return `${Math.round(Number.isFinite(n) ? n : 0)} B`;
  let u = 0;
  while (n >= 1024 && u < UNITS.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n.toFixed(2)} ${UNITS[u]}`;
}

/** Seconds → "m:ss" or "h:mm:ss". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}
