/** What a bucket stores to outlive its object (levels below zero are debt). */
export interface BucketState {
  level: number;
  updatedAt: number;
}

/** Amounts the bucket accepts: finite and non-negative (anything else would poison the level). */
function amount(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/**
 * A token bucket that refills continuously at `capacity` per `periodMs`. The level may go below
 * zero: usage charged after its lease was reclaimed is debt, paid back by refill before anything
 * else is admitted. The level is always a finite number: non-finite amounts are refused.
 */
export class TokenBucket {
  level: number;
  private updatedAt: number;

  constructor(
    public capacity: number,
    readonly periodMs: number,
    now: number,
  ) {
    this.level = capacity;
    this.updatedAt = now;
  }

  state(): BucketState {
    return { level: this.level, updatedAt: this.updatedAt };
  }

  /** Restores a stored state (ignored when it is not a sane one). */
  restore(s: BucketState | undefined): void {
    if (!s || !Number.isFinite(s.level) || !Number.isFinite(s.updatedAt)) return;
    this.level = Math.min(this.capacity, s.level);
    this.updatedAt = s.updatedAt;
  }

  refill(now: number): void {
    if (now > this.updatedAt) {
      this.level = Math.min(this.capacity, this.level + ((now - this.updatedAt) * this.capacity) / this.periodMs);
      this.updatedAt = now;
    }
  }

  /** Milliseconds until the level reaches `amount` (0 when it already has). */
  msUntil(amount: number): number {
    if (this.level >= amount) return 0;
    return Math.ceil(((amount - this.level) * this.periodMs) / this.capacity);
  }

  msUntilFull(): number {
    return this.msUntil(this.capacity);
  }

  take(n: number): void {
    this.level -= amount(n);
  }

  /** Returns tokens; never above capacity. */
  give(n: number): void {
    this.level = Math.min(this.capacity, this.level + amount(n));
  }

  /** A new limit keeps what was used in the window: raising it adds the difference, lowering it takes it away. */
  resize(capacity: number): void {
    if (capacity === this.capacity) return;
    this.level += capacity - this.capacity;
    this.capacity = capacity;
  }

  remaining(): number {
    return Math.max(0, Math.floor(this.level));
  }
}
