// A token bucket: at most `perSecond` takes per second on average, `burst` at once.
// The clock is injected so tests can count takes against virtual time.

export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const REAL_CLOCK: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export class RateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly clock: Clock = REAL_CLOCK,
  ) {
    if (!(perSecond > 0) || !(burst >= 1)) throw new RangeError('rate and burst must be positive');
    this.tokens = burst;
    this.last = clock.now();
  }

  /** Resolves when one token is taken. Callers take one at a time (no fairness between concurrent takers). */
  async take(): Promise<void> {
    for (;;) {
      const now = this.clock.now();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.perSecond) / 1000);
      this.last = now;
      if (this.tokens >= 1) {
        this.tokens -= 1;
        return;
      }
      await this.clock.sleep(((1 - this.tokens) * 1000) / this.perSecond);
    }
  }
}
