// The session lock recogniser on the exact bytes each PHP extension sends (as seen with
// memcached -vv), parsed by the proxy's own parsers, against a memcached model on a
// clock the test drives: what counts as an attempt, a grant, a release and a takeover,
// and what passes through untouched.

import { describe, expect, test } from 'vitest';
import { BinaryParser } from '../../src/protocol/binary/parser';
import { TextParser } from '../../src/protocol/text/parser';
import { DEFAULT_LIMITS } from '../../src/protocol/limits';
import type { ArithCommand, ArithOutcome, DeleteOutcome, FlushOutcome, GetOutcome, Router, StoreFields, StoreOutcome, TouchOutcome } from '../../src/protocol/types';
import { LockWatchRouter } from '../../src/locks/lock-router';
import { DEFAULT_LOCK_PATTERNS, LockPatterns, parseLockPattern } from '../../src/locks/patterns';
import { LockTracker, MAX_TRACKED_LOCKS, sessionHash, type LockEvents } from '../../src/locks/tracker';
import { binaryPacket } from '../helpers/wire';

const SID = 'abcdefabcdefabcdefabcdef01';

/** memcached's add, set, delete, incr and get on a clock in milliseconds; answers in call order. */
class FakeMemcached implements Router {
  readonly items = new Map<string, { value: Buffer; expiresAt: number }>();
  calls = 0;
  constructor(private readonly clock: { ms: number }) {}

  private live(key: Buffer): { value: Buffer; expiresAt: number } | undefined {
    const k = key.toString('latin1');
    const item = this.items.get(k);
    if (item !== undefined && item.expiresAt <= this.clock.ms) this.items.delete(k);
    return this.items.get(k);
  }
  private put(key: Buffer, value: Buffer, exptime: number): void {
    this.items.set(key.toString('latin1'), { value: Buffer.from(value), expiresAt: exptime === 0 ? Infinity : this.clock.ms + exptime * 1000 });
  }
  get(key: Buffer): Promise<GetOutcome> {
    this.calls++;
    const item = this.live(key);
    return Promise.resolve(item === undefined ? { status: 'miss' } : { status: 'hit', item: { value: item.value, flags: 0, cas: 1n } });
  }
  store(cmd: StoreFields): Promise<StoreOutcome> {
    this.calls++;
    if (cmd.mode === 'add' && this.live(cmd.key) !== undefined) return Promise.resolve({ status: 'not_stored' });
    this.put(cmd.key, cmd.value, cmd.exptime);
    return Promise.resolve({ status: 'stored', cas: 1n });
  }
  delete(key: Buffer): Promise<DeleteOutcome> {
    this.calls++;
    const had = this.live(key) !== undefined;
    this.items.delete(key.toString('latin1'));
    return Promise.resolve({ status: had ? 'deleted' : 'not_found' });
  }
  touch(): Promise<TouchOutcome> {
    this.calls++;
    return Promise.resolve({ status: 'not_found' });
  }
  arith(cmd: ArithCommand): Promise<ArithOutcome> {
    this.calls++;
    const item = this.live(cmd.key);
    if (item === undefined) {
      if (cmd.create === undefined) return Promise.resolve({ status: 'not_found' });
      this.put(cmd.key, Buffer.from(String(cmd.create.initial)), cmd.create.exptime);
      return Promise.resolve({ status: 'ok', value: cmd.create.initial, cas: 1n });
    }
    const value = BigInt(item.value.toString()) + cmd.delta;
    item.value = Buffer.from(String(value));
    return Promise.resolve({ status: 'ok', value, cas: 1n });
  }
  flush(): Promise<FlushOutcome> {
    this.items.clear();
    return Promise.resolve({ status: 'ok' });
  }
}

/** What the tracker reported. */
function recorder() {
  const r = { attempts: { memcached: 0, memcache: 0 }, grants: { memcached: 0, memcache: 0 }, waits: [] as number[], holds: [] as number[], takeovers: 0, expired: 0, untracked: 0 };
  const events: LockEvents = {
    attempt: (s) => r.attempts[s]++,
    grant: (s) => r.grants[s]++,
    waited: (s) => r.waits.push(s),
    held: (s) => r.holds.push(s),
    takenOver: () => r.takeovers++,
    expired: () => r.expired++,
    untracked: () => r.untracked++,
  };
  return { r, events };
}

function setup(patterns: readonly string[] = DEFAULT_LOCK_PATTERNS) {
  const clock = { ms: 1000 };
  const memcached = new FakeMemcached(clock);
  const { r, events } = recorder();
  const tracker = new LockTracker(events, { now: () => clock.ms, wall: () => 1_700_000_000_000 + clock.ms });
  const watched = LockPatterns.parse(patterns);
  /** A client connection: its bytes parsed by the proxy's parsers, each request run as the protocol sides run it. */
  const connection = (protocol: 'text' | 'binary') => {
    const router = new LockWatchRouter(memcached, tracker, watched);
    const parser = protocol === 'text' ? new TextParser(DEFAULT_LIMITS) : new BinaryParser(DEFAULT_LIMITS);
    /** Sends the bytes (pipelined: every request started before any outcome), resolves with the outcomes. */
    return (bytes: Buffer | string): Promise<unknown[]> => {
      parser.push(Buffer.from(bytes as string, 'latin1'));
      const pending: Promise<unknown>[] = [];
      for (let req = parser.next(); req !== null; req = parser.next()) {
        switch (req.kind) {
          case 'store':
            pending.push(router.store(req));
            break;
          case 'delete':
            pending.push(router.delete(req.key, 0n));
            break;
          case 'arith': {
            const create = 'initial' in req && req.exptime !== 0xffffffff ? { initial: req.initial, exptime: req.exptime } : undefined;
            pending.push(router.arith({ kind: req.op, key: req.key, delta: req.delta, create }));
            break;
          }
          case 'get':
            pending.push(...('keys' in req ? req.keys : [req.key]).map((k) => router.get(k)));
            break;
          case 'flush_all':
            pending.push(router.flush(req.delay));
            break;
          default:
            throw new Error(`unexpected ${req.kind}`);
        }
      }
      return Promise.all(pending);
    };
  };
  return { clock, memcached, r, tracker, connection };
}

const extras = (flags: number, exptime: number) => {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(flags, 0);
  b.writeUInt32BE(exptime, 4);
  return b;
};
const bin = {
  add: (key: string, value: string, exptime: number) => binaryPacket({ opcode: 0x02, key: Buffer.from(key), extras: extras(0, exptime), value: Buffer.from(value) }),
  set: (key: string, value: string, exptime: number) => binaryPacket({ opcode: 0x01, key: Buffer.from(key), extras: extras(0, exptime), value: Buffer.from(value) }),
  get: (key: string) => binaryPacket({ opcode: 0x00, key: Buffer.from(key) }),
  delete: (key: string) => binaryPacket({ opcode: 0x04, key: Buffer.from(key) }),
  incr: (key: string, delta: bigint, initial: bigint, exptime: number) => {
    const e = Buffer.alloc(20);
    e.writeBigUInt64BE(delta, 0);
    e.writeBigUInt64BE(initial, 8);
    e.writeUInt32BE(exptime, 16);
    return binaryPacket({ opcode: 0x05, key: Buffer.from(key), extras: e });
  },
};

describe('php-memcached (add of <prefix>lock.<id>, delete)', () => {
  test('text: one page view is one attempt, one grant, one hold', async () => {
    const { clock, r, tracker, connection } = setup();
    const send = connection('text');
    await send(`add memc.sess.key.lock.${SID} 0 0 1\r\n1\r\n`);
    expect(r.attempts.memcached).toBe(1);
    expect(r.grants.memcached).toBe(1);
    expect(r.waits).toEqual([0]);
    expect(tracker.holding()).toBe(1);
    await send(`get memc.sess.key.${SID}\r\nset memc.sess.key.${SID} 0 1440 12\r\na|i:1;b|i:2;\r\n`);
    clock.ms += 250;
    await send(`delete memc.sess.key.lock.${SID}\r\n`);
    expect(r.holds).toEqual([0.25]);
    expect(tracker.holding()).toBe(0);
    expect(r.attempts.memcache + r.grants.memcache + r.takeovers).toBe(0);
  });

  test('binary: the same, from ADD and DELETE packets', async () => {
    const { clock, r, tracker, connection } = setup();
    const send = connection('binary');
    await send(Buffer.concat([bin.add(`memc.sess.key.lock.${SID}`, '1', 30), bin.get(`memc.sess.key.${SID}`)]));
    expect([r.attempts.memcached, r.grants.memcached]).toEqual([1, 1]);
    clock.ms += 40;
    await send(Buffer.concat([bin.set(`memc.sess.key.${SID}`, 'x', 1440), bin.delete(`memc.sess.key.lock.${SID}`)]));
    expect(r.holds).toEqual([0.04]);
    expect(tracker.holding()).toBe(0);
  });

  test('two tabs: the second request polls while the first holds; its wait runs from its first attempt to its grant', async () => {
    const { clock, r, tracker, connection } = setup();
    const first = connection('text');
    const second = connection('binary');
    const lock = `memc.sess.key.lock.${SID}`;
    await first(`add ${lock} 0 30 1\r\n1\r\n`);
    const polls: unknown[] = [];
    for (let i = 0; i < 4; i++) {
      polls.push(...(await second(bin.add(lock, '1', 30))));
      clock.ms += 500;
    }
    expect(polls.map((o) => (o as { status: string }).status)).toEqual(['not_stored', 'not_stored', 'not_stored', 'not_stored']);
    await first(`delete ${lock}\r\n`);
    await second(bin.add(lock, '1', 30));
    expect(r.attempts.memcached).toBe(6);
    expect(r.grants.memcached).toBe(2);
    expect(r.waits).toEqual([0, 2]);
    expect(r.holds).toEqual([2]);
    expect(tracker.holding()).toBe(1);
    const stats = new Map(tracker.statsLines(false));
    expect(stats.get('lock:1:session')).toBe(sessionHash(SID));
    expect(stats.get('lock:1:longest_wait_ms')).toBe(2000);
    expect(stats.get('lock:1:waits')).toBe(1);
    expect(stats.get('lock_waited_sessions')).toBe(1);
    expect(new Map(tracker.statsLines(true)).get('lock:1:session')).toBe(SID);
  });

  test('attempts from two connections at once: one grant, one failed attempt; a release sent before the grant was answered', async () => {
    const { clock, r, tracker, connection } = setup();
    const lock = `memc.sess.key.lock.${SID}`;
    const a = connection('text');
    const b = connection('text');
    // Both started before either outcome is known.
    const [ra, rb] = await Promise.all([a(`add ${lock} 0 30 1\r\n1\r\n`), b(`add ${lock} 0 30 1\r\n1\r\n`)]);
    expect([ra, rb].map((o) => (o[0] as { status: string }).status)).toEqual(['stored', 'not_stored']);
    expect([r.attempts.memcached, r.grants.memcached, tracker.holding()]).toEqual([2, 1, 1]);
    clock.ms += 300;
    // A client pipelining its release after its add (no wait for the reply): the grant, then the release.
    await b(`delete ${lock}\r\n`); // b never held it: releases a's lock, as memcached does
    expect(r.holds).toEqual([0.3]);
    await b(`add ${lock} 0 30 1\r\n1\r\ndelete ${lock}\r\n`);
    expect(r.grants.memcached).toBe(2);
    expect(r.waits).toEqual([0, 0]); // b's delete ended its wait: a request that releases no longer waits
    expect(r.holds).toEqual([0.3, 0]);
    expect(tracker.holding()).toBe(0);
  });

  test('a request that gave up, then another on the same (persistent) connection 6 s later: two waits, not one', async () => {
    const { clock, r, connection } = setup();
    const lock = `memc.sess.key.lock.${SID}`;
    await connection('text')(`add ${lock} 0 30 1\r\n1\r\n`);
    const reused = connection('binary');
    for (let i = 0; i < 5; i++) {
      await reused(bin.add(lock, '1', 30));
      clock.ms += 150;
    }
    clock.ms += 6000; // php-memcached gave up; the holder released; a new request comes
    await connection('text')(`delete ${lock}\r\n`);
    await reused(bin.add(lock, '1', 30));
    expect(r.grants.memcached).toBe(2);
    expect(r.waits).toEqual([0, 0]);
  });

  test('a holder that died: the lock expires, the next grant is a takeover, and it is not counted as held meanwhile', async () => {
    const { clock, r, tracker, connection } = setup();
    const lock = `memc.sess.key.lock.${SID}`;
    await connection('text')(`add ${lock} 0 2 1\r\n1\r\n`);
    expect(tracker.holding()).toBe(1);
    clock.ms += 1999;
    expect(tracker.holding()).toBe(1);
    expect(r.expired).toBe(0);
    clock.ms += 1;
    expect(tracker.holding()).toBe(0); // past its expiry: no longer a holder
    expect(r.expired).toBe(1);
    await connection('text')(`add ${lock} 0 2 1\r\n1\r\n`);
    expect(r.grants.memcached).toBe(2);
    expect(r.takeovers).toBe(1);
    expect(r.expired).toBe(1); // counted once
    expect(r.holds).toEqual([]); // the dead holder's hold never ended
    expect(tracker.holding()).toBe(1);
  });

  test('granted again in the last second of its expiry: it expired (memcached counts whole seconds); earlier: only a takeover', async () => {
    const { clock, r, memcached, connection } = setup();
    const lock = `memc.sess.key.lock.${SID}`;
    await connection('text')(`add ${lock} 0 5 1\r\n1\r\n`);
    clock.ms += 4100;
    memcached.items.clear(); // memcached's clock was a tick ahead
    await connection('text')(`add ${lock} 0 5 1\r\n1\r\n`);
    expect([r.takeovers, r.expired]).toEqual([1, 1]);
    clock.ms += 1000;
    memcached.items.clear(); // evicted, 4 s before its expiry
    await connection('text')(`add ${lock} 0 5 1\r\n1\r\n`);
    expect([r.takeovers, r.expired]).toEqual([2, 1]);
  });

  test('flush_all: every lock forgotten, none taken over', async () => {
    const { r, tracker, connection } = setup();
    const send = connection('text');
    await send(`add memc.sess.key.lock.${SID} 0 0 1\r\n1\r\n`);
    await connection('text')('flush_all\r\n');
    expect(tracker.holding()).toBe(0);
    await send(`add memc.sess.key.lock.${SID} 0 0 1\r\n1\r\n`);
    expect(r.takeovers).toBe(0);
  });
});

describe('pecl-memcache (incr and add of <id>.lock, set to 0)', () => {
  test('text: incr NOT_FOUND then add STORED is one attempt and one grant; set "0" releases; the next incr answering 1 takes it', async () => {
    const { clock, r, tracker, connection } = setup();
    const send = connection('text');
    // Pipelined as the extension sends them: every request starts before any outcome.
    const outcomes = await send(`incr ${SID}.lock 1\r\nadd ${SID}.lock 768 15 1\r\n1\r\nget ${SID}\r\n`);
    expect(outcomes.map((o) => (o as { status: string }).status)).toEqual(['not_found', 'stored', 'miss']);
    expect([r.attempts.memcache, r.grants.memcache]).toEqual([1, 1]);
    clock.ms += 120;
    await send(`set ${SID} 0 1796533805 12\r\na|i:1;b|i:2;\r\nset ${SID}.lock 768 15 1\r\n0\r\n`);
    expect(r.holds).toEqual([0.12]);
    expect(tracker.holding()).toBe(0);
    const again = await send(`incr ${SID}.lock 1\r\nadd ${SID}.lock 768 15 1\r\n1\r\nget ${SID}\r\n`);
    expect(again.map((o) => (o as { status: string }).status)).toEqual(['ok', 'not_stored', 'hit']);
    expect([r.attempts.memcache, r.grants.memcache]).toEqual([2, 2]);
    expect(r.waits).toEqual([0, 0]);
    expect(tracker.holding()).toBe(1);
    expect(r.takeovers).toBe(0);
    expect(r.attempts.memcached + r.grants.memcached).toBe(0);
  });

  test('binary: the incr creates the lock at 1 and takes it; the add that follows (exists) changes nothing', async () => {
    const { r, tracker, connection } = setup();
    const send = connection('binary');
    await send(Buffer.concat([bin.incr(`${SID}.lock`, 1n, 1n, 15), bin.add(`${SID}.lock`, '1', 15), bin.get(SID)]));
    expect([r.attempts.memcache, r.grants.memcache]).toEqual([1, 1]);
    await send(Buffer.concat([bin.set(SID, 'x', 1440), bin.set(`${SID}.lock`, '0', 15)]));
    expect(r.holds).toHaveLength(1);
    expect(tracker.holding()).toBe(0);
  });

  test('contended: each failed incr+add pair is one failed attempt; the wait ends at the incr that answers 1', async () => {
    const { clock, r, connection } = setup();
    const holder = connection('text');
    const waiter = connection('text');
    const read = `incr ${SID}.lock 1\r\nadd ${SID}.lock 768 15 1\r\n1\r\nget ${SID}\r\n`;
    await holder(read);
    for (let i = 0; i < 3; i++) {
      await waiter(read);
      clock.ms += 700;
    }
    await holder(`set ${SID}.lock 768 15 1\r\n0\r\n`);
    await waiter(read);
    expect(r.attempts.memcache).toBe(5);
    expect(r.grants.memcache).toBe(2);
    expect(r.waits).toEqual([0, 2.1]);
  });

  test('a session destroyed: delete of the lock key releases it', async () => {
    const { r, tracker, connection } = setup();
    const send = connection('text');
    await send(`incr ${SID}.lock 1\r\nadd ${SID}.lock 768 15 1\r\n1\r\n`);
    await send(`delete ${SID}\r\ndelete ${SID}.lock\r\n`);
    expect(r.holds).toHaveLength(1);
    expect(tracker.holding()).toBe(0);
  });
});

describe('what is not a lock', () => {
  test('session data, other keys, a set that is not "0", decr: passed through, nothing reported', async () => {
    const { r, memcached, connection } = setup();
    const send = connection('text');
    await send(
      [
        `add memc.sess.key.${SID} 0 0 1\r\n1\r\n`, // php-memcached's create_sid: the session key itself
        `add lock.${SID} 0 0 1\r\n1\r\n`, // no prefix
        `add memc.sess.key.lock. 0 0 1\r\n1\r\n`, // no id
        `incr counter.locks 1\r\n`,
        `set ${SID}.lock 0 15 1\r\n1\r\n`,
        `decr ${SID}.lock 1\r\n`,
        `delete memc.sess.key.${SID}\r\n`,
        `incr memc.sess.key.lock.${SID} 1\r\n`, // php-memcached never increments its lock
      ].join(''),
    );
    expect(memcached.calls).toBe(8);
    expect(r).toEqual(recorder().r);
  });

  test('recognition off: no patterns, nothing seen', async () => {
    const { r, connection } = setup([]);
    await connection('text')(`add memc.sess.key.lock.${SID} 0 0 1\r\n1\r\nincr ${SID}.lock 1\r\n`);
    expect(r).toEqual(recorder().r);
  });

  test('a custom pattern: php-memcached with memcached.sess_prefix=myapp.', async () => {
    const { r, connection } = setup([...DEFAULT_LOCK_PATTERNS, 'memcached:myapp.lock.*']);
    await connection('text')(`add myapp.lock.${SID} 0 0 1\r\n1\r\n`);
    expect(r.grants.memcached).toBe(1);
  });
});

describe('patterns', () => {
  test.each([
    ['memcached:memc.sess.key.lock.*', 'memcached', 'memc.sess.key.lock.', ''],
    ['memcache:*.lock', 'memcache', '', '.lock'],
    ['memcache:www.example.com_*.lock', 'memcache', 'www.example.com_', '.lock'],
  ])('%s', (text, style, prefix, suffix) => {
    const p = parseLockPattern(text);
    expect(p.ok && [p.value.style, p.value.prefix.toString(), p.value.suffix.toString()]).toEqual([style, prefix, suffix]);
  });

  test.each([
    ['memc.sess.key.lock.*', 'must start with'],
    ['redis:lock.*', 'must start with'],
    ['memcached:lock.', 'exactly one *'],
    ['memcached:*lock.*', 'exactly one *'],
    ['memcached:*', 'every key'],
    ['memcached:my app.*', 'no space'],
    [`memcached:${'x'.repeat(250)}*`, 'longer than a key'],
  ])('%s is refused', (text, why) => {
    const p = parseLockPattern(text);
    expect(p.ok ? 'accepted' : p.problem).toContain(why);
  });
});

describe('expiry from the request', () => {
  test('a grant whose reply came late expires from when its request was sent: the next grant counts it expired', () => {
    const { r, events } = recorder();
    const clock = { ms: 0 };
    const tracker = new LockTracker(events, { now: () => clock.ms, wall: () => 0 });
    // Sent at 0, its reply read at 800 ms (a loaded machine); a lock of 3 s.
    tracker.granted('k', 's', 'memcached', 3, 0, false, 800, 0);
    // memcached's whole-second clock let it expire early: taken again at 2,100 ms.
    tracker.granted('k', 't', 'memcached', 3, 0, false, 2100, 2050);
    expect(r.takeovers).toBe(1);
    expect(r.expired).toBe(1);
  });
});

describe('bounds', () => {
  test(`past ${MAX_TRACKED_LOCKS} holders a grant is counted untracked; an expired holder makes room`, () => {
    const { r, events } = recorder();
    const clock = { ms: 0 };
    const tracker = new LockTracker(events, { now: () => clock.ms, wall: () => 0 });
    for (let i = 0; i < MAX_TRACKED_LOCKS; i++) tracker.granted(`k${i}`, `s${i}`, 'memcached', i === 0 ? 5 : 0, 0, false);
    tracker.granted('one-more', 's', 'memcached', 0, 0, false);
    expect(r.untracked).toBe(1);
    expect(tracker.holding()).toBe(MAX_TRACKED_LOCKS);
    clock.ms = 10_000; // k0 expired
    tracker.granted('one-more', 's', 'memcached', 0, 0, false);
    expect(r.untracked).toBe(1);
    expect(r.grants.memcached).toBe(MAX_TRACKED_LOCKS + 2);
  });

  test('stats locks lists at most 20 sessions, longest first, and forgets waits older than a minute', () => {
    const { events } = recorder();
    const clock = { ms: 0 };
    const tracker = new LockTracker(events, { now: () => clock.ms, wall: () => 0 });
    for (let i = 1; i <= 30; i++) tracker.granted(`k${i}`, `s${i}`, 'memcached', 0, i * 10, true);
    const rows = tracker.statsLines(true).filter(([k]) => k.endsWith(':session'));
    expect(rows).toHaveLength(20);
    expect(rows[0]).toEqual(['lock:1:session', 's30']);
    clock.ms = 61_000;
    expect(tracker.statsLines(true).filter(([k]) => k.endsWith(':session'))).toEqual([]);
  });

  test('a shown session id is one STAT value: space, CR, LF and % escaped', () => {
    const { events } = recorder();
    const tracker = new LockTracker(events, { now: () => 0, wall: () => 0 });
    tracker.granted('k', 'a b\r\nSTAT x%', 'memcached', 0, 5, true);
    expect(new Map(tracker.statsLines(true)).get('lock:1:session')).toBe('a%20b%0D%0ASTAT%20x%25');
  });
});
