// A sidecar whose own event loop stalls (a GC pause, a starved CPU) for longer
// than trustMs comes back with every watch stale: no fresh clean answer from
// any backend (run-beacon.ts, mark-watch.ts). Distrusting every member then
// would close clients' connections (no member may decide a lock, and no miss is
// proven) and move decisions away from where the other sidecars make them. The
// requests wait for the next watch round instead (stalePauseMs), a moment.
//
// One sidecar in-process over three real memcached; the stall is a busy loop
// in this process, which is the sidecar's.

import { afterEach, describe, expect, test, vi } from 'vitest';
import { BeaconWatch, DEFAULT_BEACON_OPTIONS, RUN_BEACON_KEY, WatchRounds } from '../../src/resync/run-beacon';
import { FakeNode } from '../routing/fake-node';
import { pollUntil } from '../helpers/wait';
import { k, startResyncCluster, stopResyncCluster, valueOn } from './support';

afterEach(stopResyncCluster);

const BEACON = { ...DEFAULT_BEACON_OPTIONS, watchMs: 100, trustMs: 400 };

function stallEventLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

// Just over trustMs, and far over it: how long the loop stalled does not matter.
test.each([150, 1500])('after an event-loop stall of trustMs + %i ms: a lock is decided and a miss proven, not refused', async (over) => {
  const c = await startResyncCluster({}, { quietMs: 0, beacon: BEACON });
  c.resyncer.start();
  await pollUntil(() => c.backends.every((b) => b.isUp() && !c.resyncer.isResyncing(b)), 10_000, 20);

  stallEventLoop(BEACON.trustMs + over);
  // Sent in the same tick as the stall ends, before any watch round could run.
  const lock = c.router.store({ mode: 'add', key: k('sess.lock'), value: k('1'), flags: 0, exptime: 0, cas: 0n });
  const read = c.router.get(k('sess.absent'));
  const incr = c.router.arith({ kind: 'incr', key: k('sess.count'), delta: 1n, create: { initial: 7n, exptime: 0 } });

  expect(await lock).toMatchObject({ status: 'stored' });
  expect(await read).toEqual({ status: 'miss' });
  expect(await incr).toMatchObject({ status: 'ok' });
  // Decided where it would have been without the stall: the ring's first member holds it.
  const [authority] = c.ring.ringOrder(k('sess.lock'));
  expect(await valueOn(c.backends.find((b) => b === authority)!, 'sess.lock')).toBe('1');
});

describe('WatchRounds: whether a stale watch holds requests back', () => {
  const opts = { ...BEACON, watchMs: 100 }; // pauseMs 200
  const onTime = (): WatchRounds => {
    const r = new WatchRounds(opts);
    for (let t = 0; t <= 1000; t += 100) r.sent(t);
    return r;
  };

  test('fresh: nothing to hold back', () => {
    expect(onTime().holdsBack(1000, 1000)).toBe(false);
  });

  test('stale while rounds go out on time: held back for pauseMs, then distrusted', () => {
    const r = onTime();
    expect(r.holdsBack(900, 1000)).toBe(true);
    expect(r.holdsBack(900, 1100)).toBe(true);
    r.sent(1100);
    expect(r.holdsBack(900, 1101)).toBe(false);
  });

  test('behind (no round for over two rounds): held back however long, then pauseMs from the next round', () => {
    const r = onTime();
    expect(r.holdsBack(1050, 9000)).toBe(true);
    r.sent(9000);
    expect(r.holdsBack(1050, 9200)).toBe(true);
    r.sent(9100);
    r.sent(9200);
    expect(r.holdsBack(1050, 9201)).toBe(false);
  });
});

describe('a count above 0 decides writes only while the answer that says so is fresh', () => {
  // A sidecar that trusts the backend again holds its writes watchMs + 100 ms (Resyncer.settle):
  // one acting on an older answer above 0 could decide the keys elsewhere after that.
  afterEach(() => {
    vi.useRealTimers();
  });

  test('past countHoldsMs without an answer: writes wait, reads do not; past the pause: distrusted', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setTimeout', 'clearTimeout', 'performance'] });
    const y = new FakeNode('127.0.0.1:1');
    y.put(RUN_BEACON_KEY.toString('latin1'), '1');
    const opts = { ...BEACON, watchMs: 100, trustMs: 400 }; // countHoldsMs 150, pauseMs 200
    const watch = new BeaconWatch([y], RUN_BEACON_KEY, opts);
    watch.start(); // a round now, answered at once: a run copies into Y
    await vi.advanceTimersByTimeAsync(0);
    const release = y.hold(); // the rounds from 100 ms on go unanswered
    try {
      await vi.advanceTimersByTimeAsync(140);
      expect(watch.holdsBack(y, performance.now(), true)).toBe(false); // the answer from 0 ms still holds
      await vi.advanceTimersByTimeAsync(20);
      expect(watch.holdsBack(y, performance.now(), true)).toBe(true);
      expect(watch.holdsBack(y, performance.now(), false)).toBe(false);
      expect(watch.busy(y)).toBe(true);
      await vi.advanceTimersByTimeAsync(200);
      expect(watch.holdsBack(y, performance.now(), true)).toBe(false); // rounds go out, none answered: distrusted
      expect(watch.busy(y)).toBe(true);
    } finally {
      watch.stop();
      release();
    }
  });
});
