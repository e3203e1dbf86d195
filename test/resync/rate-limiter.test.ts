// The token bucket, counted against a virtual clock: no timing in the assertions.

import { expect, test } from 'vitest';
import { RateLimiter } from '../../src/resync/rate-limiter';
import { virtualClock } from './virtual-clock';

test('never more than burst + rate x elapsed takes', async () => {
  const clock = virtualClock();
  const limiter = new RateLimiter(100, 10, clock);
  const start = clock.now();
  for (let n = 1; n <= 500; n++) {
    await limiter.take();
    expect(n).toBeLessThanOrEqual(10 + (100 * (clock.now() - start)) / 1000 + 1e-9);
  }
  // 490 takes beyond the burst at 100/s need 4.9 s of (virtual) waiting.
  expect(clock.slept).toBeGreaterThanOrEqual(4890);
  expect(clock.slept).toBeLessThan(5000);
});

test('the burst is available at once', async () => {
  const clock = virtualClock();
  const limiter = new RateLimiter(5, 5, clock);
  for (let i = 0; i < 5; i++) await limiter.take();
  expect(clock.slept).toBe(0);
  await limiter.take();
  expect(clock.slept).toBeCloseTo(200, 6);
});

test('rejects a rate or burst that is not positive', () => {
  expect(() => new RateLimiter(0, 1)).toThrow(RangeError);
  expect(() => new RateLimiter(10, 0)).toThrow(RangeError);
});
