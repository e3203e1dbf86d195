// The simulation's own parts, each shown doing what the simulation relies on.

import { describe, expect, test } from 'vitest';
import { DEFAULT_BACKEND_OPTIONS } from '../../src/backends/backend';
import { Checker } from './checker';
import { LocalClock, Process, Scheduler } from './clock';
import { SimMemcached, UNIX_EPOCH_AT_START } from './memcached';
import { Link } from './link';
import { Path } from './network';
import { Rng } from './random';
import { Trace } from './trace';

const k = (s: string): Buffer => Buffer.from(s);
const set = (key: string, value: string, exptime = 0) => ({ mode: 'set' as const, key: k(key), value: k(value), flags: 0, exptime, cas: 0n });

function world() {
  const scheduler = new Scheduler();
  const trace = new Trace(() => scheduler.now);
  let pid = 1;
  const mc = new SimMemcached('10.0.0.1:11211', scheduler, () => pid++);
  const process = new Process('s0');
  const clock = new LocalClock(scheduler, process, 1, 0);
  const link = new Link(scheduler, new Rng(1, 'link'));
  const path = new Path(mc.address, { who: 's0', backendName: 'b0', link, backend: mc, clock, rng: new Rng(1, 'path'), trace, requestTimeoutMs: DEFAULT_BACKEND_OPTIONS.requestTimeoutMs });
  /** Runs the scheduler until `ms` of virtual time have passed. */
  const advance = (ms: number) => {
    const until = scheduler.now + ms;
    scheduler.after(ms, () => {});
    return scheduler.run(() => scheduler.now >= until);
  };
  return { scheduler, trace, mc, process, clock, link, path, advance };
}

describe('scheduler', () => {
  test('every continuation an event causes runs before the next event, however deep', async () => {
    const scheduler = new Scheduler();
    const seen: string[] = [];
    scheduler.after(1, () => {
      void (async () => {
        for (let i = 0; i < 10_000; i++) await Promise.resolve();
        seen.push('deep chain done');
      })();
    });
    scheduler.after(2, () => seen.push('next event'));
    await scheduler.run(() => false);
    expect(seen).toEqual(['deep chain done', 'next event']);
    expect(scheduler.steps).toBe(2);
  });

  test('a stalled process runs nothing until the stall ends, then in the order things were due; a dead one runs nothing', async () => {
    const scheduler = new Scheduler();
    const sidecar = new Process('s0');
    const seen: string[] = [];
    scheduler.at(10, () => (sidecar.stalledUntil = 100));
    scheduler.at(50, () => seen.push(`timer at ${scheduler.now}`), sidecar);
    scheduler.at(20, () => seen.push(`delivery at ${scheduler.now}`), sidecar);
    scheduler.at(60, () => seen.push(`other process at ${scheduler.now}`));
    const dead = new Process('s1');
    dead.dead = true;
    scheduler.at(70, () => seen.push('dead'), dead);
    await scheduler.run(() => false);
    expect(seen).toEqual(['other process at 60', 'delivery at 100', 'timer at 100']);
  });

  test('a local clock runs at its own rate from its own origin', async () => {
    const scheduler = new Scheduler();
    const clock = new LocalClock(scheduler, new Process('s0'), 1.1, 5000);
    let woke = 0;
    void clock.sleep(110).then(() => (woke = scheduler.now));
    await scheduler.run(() => false);
    expect(woke).toBeCloseTo(100);
    expect(clock.now()).toBeCloseTo(5110);
  });
});

describe('simulated memcached', () => {
  test('CAS only grows; TTL counts virtual seconds; a restart is empty, with a new pid and CAS from the start', async () => {
    const { mc, advance } = world();
    const a = mc.store(set('a', '1'));
    const b = mc.store(set('b', '2', 2));
    expect(a.status === 'stored' && b.status === 'stored' && b.cas > a.cas).toBe(true);
    expect(mc.store({ ...set('a', 'x'), mode: 'add' })).toEqual({ status: 'not_stored' });
    expect(mc.store({ ...set('a', 'x'), mode: 'cas', cas: 999n })).toEqual({ status: 'exists' });
    expect(mc.casOf(k('b'))).toMatchObject({ status: 'hit', ttl: 2 });
    await advance(1500);
    expect(mc.casOf(k('b'))).toMatchObject({ status: 'hit', ttl: 0 });
    await advance(600);
    expect(mc.get(k('b'))).toEqual({ status: 'miss' });
    expect(mc.arith('incr', k('n'), 1n, { initial: 1n, exptime: 0 })).toMatchObject({ status: 'ok', value: 1n });
    expect(mc.arith('incr', k('a'), 5n)).toMatchObject({ status: 'ok', value: 6n });
    const pid = mc.pid;
    mc.restart();
    expect(mc.pid).not.toBe(pid);
    expect(mc.get(k('a'))).toEqual({ status: 'miss' });
    expect(mc.store(set('c', '3'))).toEqual({ status: 'stored', cas: 1n });
  });

  test('SIGSTOP: commands queue and run in order on SIGCONT; kill drops them', () => {
    const { mc } = world();
    const ran: string[] = [];
    mc.stop();
    mc.land(() => ran.push('first'));
    mc.land(() => ran.push('second'));
    expect(ran).toEqual([]);
    mc.cont();
    expect(ran).toEqual(['first', 'second']);
    mc.stop();
    mc.land(() => ran.push('lost'));
    mc.kill();
    mc.restart();
    expect(ran).toEqual(['first', 'second']);
  });
});

describe('simulated network', () => {
  test('a frozen path: the request times out after the request timeout (virtual) and lands after the heal; the path goes down, then up on probes', async () => {
    const { path, link, mc, scheduler, advance } = world();
    expect((await Promise.all([path.store(set('k', 'old')), advance(10)]))[0]).toMatchObject({ status: 'stored' });
    link.outFrozen = true;
    const started = scheduler.now;
    let failedAt = 0;
    const pending = path.store(set('k', 'late')).then((r) => {
      failedAt = scheduler.now;
      return r;
    });
    await advance(1000);
    expect(await pending).toEqual({ status: 'failed', reason: 'timeout' });
    expect(failedAt - started).toBeCloseTo(DEFAULT_BACKEND_OPTIONS.requestTimeoutMs, 0);
    expect(path.isUp()).toBe(false);
    expect(await path.get(k('k'))).toMatchObject({ status: 'failed' }); // down: fails at once
    expect(mc.peek('k')?.value).toBe('old');
    link.heal(true);
    await advance(10);
    expect(mc.peek('k')?.value).toBe('late');
    await advance(2000);
    expect(path.isUp()).toBe(true);
  });

  test('requests on a path land in order, whatever the delay when each was sent', async () => {
    const { path, link, mc, advance } = world();
    await Promise.all([path.get(k('k')), advance(5)]); // connected
    link.delayMs = DEFAULT_BACKEND_OPTIONS.requestTimeoutMs / 2; // slow, not a stall
    const first = path.store(set('k', '1'));
    link.delayMs = 0;
    const second = path.store(set('k', '2'));
    await advance(1000);
    expect([(await first).status, (await second).status]).toEqual(['stored', 'stored']);
    expect(mc.peek('k')?.value).toBe('2');
  });

  test('refused connects and resets fail at once; two in a row mark the path down', async () => {
    const { path, link, scheduler, advance } = world();
    link.refusing = true;
    const at = scheduler.now;
    const [first] = await Promise.all([path.get(k('k')), advance(1)]);
    expect(first).toEqual({ status: 'failed', reason: 'connection refused' });
    expect(path.isUp()).toBe(true);
    const [second] = await Promise.all([path.get(k('k')), advance(1)]);
    expect(second).toEqual({ status: 'failed', reason: 'backend down: connection refused' });
    expect(scheduler.now - at).toBeLessThan(5);
    expect(path.isUp()).toBe(false);
  });

  test('a metadump lists the live items, with their CAS and absolute expiry', async () => {
    const { path, advance } = world();
    await Promise.all([path.store(set('a', '1')), path.store(set('b', '2', 60)), path.store(set('gone', '3', -1)), advance(5)]);
    const lines: string[] = [];
    const [r] = await Promise.all([path.metadumpEach((l) => lines.push(`${l.key.toString()} ${l.exp} ${l.cas}`)), advance(5)]);
    expect(r).toEqual({ status: 'ok', count: 2 });
    expect(lines).toEqual(['a -1 1', `b ${UNIX_EPOCH_AT_START + 60} 2`]);
  });

  test('a killed memcached resets the connection; its restart is a new, empty process', async () => {
    const { path, mc, advance } = world();
    await Promise.all([path.store(set('k', 'v')), advance(5)]);
    mc.kill();
    await advance(5);
    const [r] = await Promise.all([path.get(k('k')), advance(5)]);
    expect(r).toEqual({ status: 'failed', reason: 'backend down: connection refused' }); // reset, then refused: down
    mc.restart();
    await advance(6000);
    expect(path.isUp()).toBe(true);
    const [after] = await Promise.all([path.get(k('k')), advance(5)]);
    expect(after).toEqual({ status: 'miss' });
  });
});

describe('checker', () => {
  function clocked() {
    let now = 0;
    const checker = new Checker(() => now, () => 0, () => []);
    const at = (t: number) => (now = t);
    return { checker, at };
  }
  const hit = (value: string) => ({ status: 'hit' as const, item: { value: k(value), flags: 0, cas: 1n } });
  const STORED = { status: 'stored' as const, cas: 1n };

  test('a read of a value overwritten before it began is a lost write; of a deleted one, a deleted key served', () => {
    const { checker, at } = clocked();
    const w1 = checker.invoke('a', 'set', 'k', 'v1');
    at(1);
    checker.complete(w1, STORED);
    at(2);
    const w2 = checker.invoke('b', 'set', 'k', 'v2');
    at(3);
    checker.complete(w2, STORED);
    at(4);
    const r = checker.invoke('c', 'get', 'k');
    checker.complete(r, hit('v1'));
    const d = checker.invoke('a', 'delete', 'k');
    at(5);
    checker.complete(d, { status: 'deleted' });
    at(6);
    checker.complete(checker.invoke('c', 'get', 'k'), hit('v2'));
    expect(checker.violations.map((v) => v.kind)).toEqual(['stale-read', 'deleted-served']);
  });

  test('a miss after an acknowledged set is a lost write, unless a delete may fall between', () => {
    const { checker, at } = clocked();
    const w = checker.invoke('a', 'set', 'k', 'v1');
    at(1);
    checker.complete(w, STORED);
    at(2);
    checker.complete(checker.invoke('b', 'get', 'k'), { status: 'miss' });
    expect(checker.violations.map((v) => v.kind)).toEqual(['lost-write']);
    const d = checker.invoke('a', 'delete', 'k');
    checker.complete(d, { status: 'unavailable' }); // may land at any time
    at(3);
    checker.complete(checker.invoke('b', 'get', 'k'), { status: 'miss' });
    expect(checker.violations).toHaveLength(1);
  });

  test('an unacknowledged write may land at any time, until nothing is in flight (settle)', () => {
    const { checker, at } = clocked();
    const w1 = checker.invoke('a', 'set', 'k', 'v1');
    checker.complete(w1, { status: 'unavailable' });
    at(1);
    const w2 = checker.invoke('b', 'set', 'k', 'v2');
    at(2);
    checker.complete(w2, STORED);
    at(3);
    checker.complete(checker.invoke('c', 'get', 'k'), hit('v1')); // landed late: allowed
    expect(checker.violations).toHaveLength(0);
    checker.settle();
    at(4);
    const w3 = checker.invoke('b', 'set', 'k', 'v3');
    at(5);
    checker.complete(w3, STORED);
    at(6);
    checker.complete(checker.invoke('c', 'get', 'k'), hit('v1')); // settled before v3: stale
    expect(checker.violations.map((v) => v.kind)).toEqual(['stale-read']);
  });

  test('two holders of one lock is a double lock, unless the first released it or its TTL ran out', () => {
    const { checker, at } = clocked();
    const a = checker.invoke('a', 'add', 's.lock', 'x', 10_000);
    at(1);
    checker.complete(a, STORED);
    const b = checker.invoke('b', 'add', 's.lock', 'y', 10_000);
    at(2);
    checker.complete(b, STORED);
    expect(checker.violations.map((v) => v.kind)).toEqual(['double-lock']);
    const release = checker.invoke('b', 'delete', 's.lock');
    at(3);
    checker.complete(release, { status: 'deleted' });
    at(20_000); // a's lock expired
    const c = checker.invoke('c', 'incr', 's.lock', undefined, 10_000);
    at(20_001);
    checker.complete(c, { status: 'ok', value: 1n, cas: 1n });
    expect(checker.violations).toHaveLength(1);
  });
});
