// A clock whose sleeps advance virtual time at once: rates are counted, not timed.

import type { Clock } from '../../src/resync/rate-limiter';

export function virtualClock(): Clock & { slept: number } {
  let t = 1_000_000;
  const clock = {
    slept: 0,
    now: () => t,
    sleep: async (ms: number) => {
      t += ms;
      clock.slept += ms;
      await new Promise((r) => setImmediate(r));
    },
  };
  return clock;
}
