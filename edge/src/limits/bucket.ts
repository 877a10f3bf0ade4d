/**
 * A token bucket that refills continuously at `capacity` per `periodMs`. The level may go below
 * zero: reconciliation charges real usage even when it exceeds what was reserved, and the debt
 * is paid back by refill before anything else is admitted.
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

  take(amount: number): void {
    this.level -= amount;
  }

  /** Returns tokens (a negative amount charges more); never above capacity. */
  give(amount: number): void {
    this.level = Math.min(this.capacity, this.level + amount);
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
