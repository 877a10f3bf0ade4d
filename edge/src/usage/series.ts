/**
 * A key's usage over time, rolled up into two fixed rings so it stays bounded however long the key
 * lives: the last hour by minute (60 buckets) and the last 30 days by UTC day (30 buckets). The
 * dashboard's charts read these; the ledger of record (budgets, `/admin/usage`) stays the
 * KeyLimiter's per-day rows.
 */

export type SeriesWindow = "hour" | "month";

/** What one finished request adds to a bucket. */
export interface SeriesSample {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens served from the node's prefix cache. */
  cachedTokens?: number;
  error: boolean;
}

/** One bucket: requests and tokens that ended in [start, start + step). */
export interface SeriesBucket {
  /** Epoch ms of the bucket's start. */
  start: number;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  errors: number;
}

const MINUTE = 60_000;
const DAY = 86_400_000;

export const WINDOWS: Record<SeriesWindow, { step: number; buckets: number }> = {
  hour: { step: MINUTE, buckets: 60 },
  month: { step: DAY, buckets: 30 },
};

/** The subset of Durable Object storage the series uses (sync KV). */
export interface SeriesStorage {
  get<T>(key: string): T | undefined;
  put<T>(key: string, value: T): void;
}

const STORAGE_KEY: Record<SeriesWindow, string> = { hour: "series:minute", month: "series:day" };
/** Written behind, like the limiter's own counters: one write covers a second of traffic. */
const FLUSH_MS = 1000;

function emptyBucket(start: number): SeriesBucket {
  return { start, requests: 0, prompt_tokens: 0, completion_tokens: 0, cached_tokens: 0, errors: 0 };
}

/** Buckets of one window: at most `buckets` of them, oldest dropped as time moves on. */
class Ring {
  private rows: SeriesBucket[];

  constructor(
    private readonly step: number,
    private readonly size: number,
    stored: SeriesBucket[] | undefined,
  ) {
    this.rows = stored ?? [];
  }

  add(now: number, s: SeriesSample): void {
    const start = now - (now % this.step);
    let row = this.rows[this.rows.length - 1];
    if (!row || row.start !== start) {
      // Samples arrive in time order within an object, so a new bucket is always the newest one.
      row = emptyBucket(start);
      this.rows.push(row);
    }
    row.requests += 1;
    row.prompt_tokens += Math.max(0, s.promptTokens);
    row.completion_tokens += Math.max(0, s.completionTokens);
    row.cached_tokens += Math.max(0, s.cachedTokens ?? 0);
    if (s.error) row.errors += 1;
    this.prune(now);
  }

  /** Every bucket of the window ending now, oldest first, zeros where nothing happened. */
  read(now: number): SeriesBucket[] {
    this.prune(now);
    const last = now - (now % this.step);
    const byStart = new Map(this.rows.map((r) => [r.start, r]));
    const out: SeriesBucket[] = [];
    for (let i = this.size - 1; i >= 0; i--) {
      const start = last - i * this.step;
      out.push({ ...(byStart.get(start) ?? emptyBucket(start)) });
    }
    return out;
  }

  stored(): SeriesBucket[] {
    return this.rows;
  }

  private prune(now: number): void {
    const oldest = now - (now % this.step) - (this.size - 1) * this.step;
    let drop = 0;
    while (drop < this.rows.length && this.rows[drop]!.start < oldest) drop++;
    if (drop > 0) this.rows = this.rows.slice(drop);
  }
}

/**
 * The two rings of one key, kept in its KeyLimiter's storage.
 *
 * @example
 * const series = new UsageSeries(ctx.storage.kv);
 * series.record(Date.now(), { promptTokens: 12, completionTokens: 40, cachedTokens: 8, error: false });
 * series.read("hour", Date.now()); // 60 buckets, one per minute
 */
export class UsageSeries {
  private readonly rings: Record<SeriesWindow, Ring>;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly storage: SeriesStorage) {
    this.rings = {
      hour: new Ring(WINDOWS.hour.step, WINDOWS.hour.buckets, storage.get<SeriesBucket[]>(STORAGE_KEY.hour)),
      month: new Ring(WINDOWS.month.step, WINDOWS.month.buckets, storage.get<SeriesBucket[]>(STORAGE_KEY.month)),
    };
  }

  record(now: number, sample: SeriesSample): void {
    this.rings.hour.add(now, sample);
    this.rings.month.add(now, sample);
    this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  read(window: SeriesWindow, now: number): SeriesBucket[] {
    return this.rings[window].read(now);
  }

  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    for (const w of ["hour", "month"] as const) this.storage.put(STORAGE_KEY[w], this.rings[w].stored());
  }
}
