// What watching session locks costs per request, CPU only, without sockets: the bench's
// page view (add lock.<id>, get, set 4 KiB, delete lock.<id>) through a router that answers
// at once, bare, through LockWatchRouter with the default patterns (the bench's keys are not
// locks: the check only), and with `memcached:lock.*` added (every lock request followed).
// The best of 10 rounds, in ns per request. Needs `npm run build`.
//   node scripts/lock-cost.mjs [page views per round, default 200000]
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { LockWatchRouter } = require('../dist/locks/lock-router.js');
const { LockPatterns, DEFAULT_LOCK_PATTERNS } = require('../dist/locks/patterns.js');
const { LockTracker } = require('../dist/locks/tracker.js');

const STORED = Promise.resolve({ status: 'stored', cas: 1n });
const MISS = Promise.resolve({ status: 'miss' });
const DELETED = Promise.resolve({ status: 'deleted' });
const bare = { get: () => MISS, store: () => STORED, delete: () => DELETED, touch: () => MISS, arith: () => MISS, flush: () => MISS };
const noop = () => {};
const tracker = new LockTracker({ attempt: noop, grant: noop, waited: noop, held: noop, takenOver: noop, expired: noop, untracked: noop });
const checked = new LockWatchRouter(bare, tracker, LockPatterns.parse(DEFAULT_LOCK_PATTERNS));
const followed = new LockWatchRouter(bare, tracker, LockPatterns.parse([...DEFAULT_LOCK_PATTERNS, 'memcached:lock.*']));

const pages = Array.from({ length: 1000 }, (_, i) => ({
  lock: { mode: 'add', key: Buffer.from(`lock.bench${i}`), value: Buffer.from('1'), flags: 0, exptime: 30, cas: 0n },
  data: Buffer.from(`memc.sess.bench${i}`),
  write: { mode: 'set', key: Buffer.from(`memc.sess.bench${i}`), value: Buffer.alloc(4096), flags: 0, exptime: 1440, cas: 0n },
}));

async function nsPerRequest(router, n) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const p = pages[i % pages.length];
    await router.store(p.lock);
    await router.get(p.data);
    await router.store(p.write);
    await router.delete(p.lock.key, 0n);
  }
  return Number(process.hrtime.bigint() - t0) / (n * 4);
}

const n = Number(process.argv[2] ?? 200_000);
const best = [Infinity, Infinity, Infinity];
for (let round = 0; round < 10; round++) {
  [bare, checked, followed].forEach(() => undefined);
  const t = [await nsPerRequest(bare, n), await nsPerRequest(checked, n), await nsPerRequest(followed, n)];
  t.forEach((v, i) => (best[i] = Math.min(best[i], v)));
}
const [b, c, f] = best.map((v) => v.toFixed(1));
console.log(`ns per request, best of 10 rounds of ${n} page views: bare ${b}; locks checked, none matching ${c} (+${(best[1] - best[0]).toFixed(1)}); every lock request followed ${f} (+${(best[2] - best[0]).toFixed(1)})`);
