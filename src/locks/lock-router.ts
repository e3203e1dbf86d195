// One client connection's router, watching its session locks on the way through
// (patterns.ts says which keys and commands are locks). Every request still goes
// to the inner router unchanged and gets its outcome unchanged; a request on a
// lock key also tells the tracker what its outcome means.
//
//   request on a lock key        outcome              reported
//   add (php-memcached)          stored               attempt + grant
//                                anything else        attempt (failed)
//   incr (pecl-memcache)         value 1              attempt + grant
//                                anything else        attempt (its add decides)
//   add after that incr          stored               grant
//   add alone (pecl-style key)   as php-memcached's
//   delete                       deleted, not_found   release
//   set "0" (pecl-memcache)      stored               release
//   flush_all                    ok                   every lock gone
//
// A request's wait runs from its first attempt at a session's lock to the grant;
// a PHP request keeps one connection while it polls, so the connection is the
// request (attempts more than MAX_POLL_GAP_MS apart are two requests'). Attempts of several connections on one session are several waits, each
// measured on its own. This connection's writes run one after another
// (OrderedRouter), so its incr's outcome is seen before its add's.
//
// Cost for other keys: a store's mode, an arith's kind, and a pattern's first or
// last bytes compared; no allocation. get and touch are passed straight through.

import type { ArithCommand, ArithOutcome, DeleteOutcome, FlushOutcome, GetOutcome, Router, StoreFields, StoreOutcome, TouchOutcome } from '../protocol/types';
import { LockPatterns, type LockPattern } from './patterns';
import type { LockTracker } from './tracker';

const ZERO = 0x30; // "0": the value pecl-memcache's release sets
/**
 * Attempts this far apart are two requests' (a persistent connection reused after a request
 * gave up), not one request polling: pecl-memcache sleeps at most 1 s between attempts,
 * php-memcached `memcached.sess_lock_wait_max` (150 ms by default).
 */
const MAX_POLL_GAP_MS = 5000;

export class LockWatchRouter implements Router {
  /** The lock key this connection waits for, since `waitStart`; null: none. */
  private waitKey: string | null = null;
  private waitStart = 0;
  /** Attempts of this wait that failed; the last one's outcome came at `lastFailure`. */
  private waitFailed = 0;
  private lastFailure = 0;
  /** The lock key of a pecl-memcache incr whose add is yet to come. */
  private pairKey: string | null = null;
  /** The lock key the last incr's outcome took (its add then changes nothing). */
  private incrGranted: string | null = null;

  constructor(
    private readonly inner: Router,
    private readonly tracker: LockTracker,
    private readonly patterns: LockPatterns,
  ) {}

  get(key: Buffer, touch?: number): Promise<GetOutcome> {
    return this.inner.get(key, touch);
  }

  touch(key: Buffer, exptime: number): Promise<TouchOutcome> {
    return this.inner.touch(key, exptime);
  }

  store(cmd: StoreFields): Promise<StoreOutcome> {
    if (cmd.mode === 'add') {
      const p = this.patterns.match(cmd.key);
      if (p !== null) return this.add(p, cmd);
    } else if (cmd.mode === 'set' && cmd.value.length === 1 && cmd.value[0] === ZERO) {
      const p = this.patterns.matchMemcache(cmd.key);
      if (p !== null) {
        this.tracker.peclTimeoutSeen(cmd.exptime);
        return this.release(cmd.key.toString('latin1'), this.inner.store(cmd), 'stored', 'stored');
      }
    }
    return this.inner.store(cmd);
  }

  delete(key: Buffer, cas: bigint): Promise<DeleteOutcome> {
    if (this.patterns.match(key) === null) return this.inner.delete(key, cas);
    return this.release(key.toString('latin1'), this.inner.delete(key, cas), 'deleted', 'not_found');
  }

  arith(cmd: ArithCommand): Promise<ArithOutcome> {
    if (cmd.kind !== 'incr') return this.inner.arith(cmd);
    const p = this.patterns.matchMemcache(cmd.key);
    if (p === null) return this.inner.arith(cmd);
    const lockKey = cmd.key.toString('latin1');
    const exptime = cmd.create === undefined ? null : cmd.create.exptime;
    this.startWait(lockKey);
    this.pairKey = lockKey;
    const sentAt = this.tracker.clock.now();
    return this.inner.arith(cmd).then((o) => {
      this.tracker.attempt('memcache');
      const granted = o.status === 'ok' && o.value === 1n;
      this.incrGranted = granted ? lockKey : null;
      if (granted) this.grant(lockKey, p, exptime, sentAt);
      return o;
    });
  }

  flush(delay: number): Promise<FlushOutcome> {
    return this.inner.flush(delay).then((o) => {
      if (o.status === 'ok' && delay === 0) this.tracker.flushed();
      return o;
    });
  }

  private add(p: LockPattern, cmd: StoreFields): Promise<StoreOutcome> {
    const lockKey = cmd.key.toString('latin1');
    // pecl-memcache's add right after its incr is the second half of the same attempt:
    // pipelined, so the incr's outcome is read when the add's arrives, not before.
    const paired = p.style === 'memcache' && this.pairKey === lockKey;
    this.pairKey = null;
    if (p.style === 'memcache') this.tracker.peclTimeoutSeen(cmd.exptime);
    if (!paired) this.startWait(lockKey);
    const sentAt = this.tracker.clock.now();
    return this.inner.store(cmd).then((o) => {
      const incrTookIt = paired && this.incrGranted === lockKey;
      if (paired) this.incrGranted = null;
      else this.tracker.attempt(p.style);
      if (incrTookIt) return o;
      if (o.status === 'stored') this.grant(lockKey, p, cmd.exptime, sentAt);
      else if (this.waitKey === lockKey) this.failed();
      return o;
    });
  }

  /** The lock is released when the outcome is `done` or `alsoDone`. */
  private release<O extends { status: string }>(lockKey: string, outcome: Promise<O>, done: string, alsoDone: string): Promise<O> {
    if (this.waitKey === lockKey) this.waitKey = null;
    return outcome.then((o) => {
      if (o.status === done || o.status === alsoDone) this.tracker.released(lockKey);
      return o;
    });
  }

  private failed(): void {
    this.waitFailed++;
    this.lastFailure = this.tracker.clock.now();
  }

  private startWait(lockKey: string): void {
    if (this.waitKey === lockKey && (this.waitFailed === 0 || this.tracker.clock.now() - this.lastFailure <= MAX_POLL_GAP_MS)) return;
    this.waitKey = lockKey;
    this.waitStart = this.tracker.clock.now();
    this.waitFailed = 0;
  }

  /** `sentAt`: when the request that took the lock was sent (LockTracker.granted). */
  private grant(lockKey: string, p: LockPattern, exptime: number | null, sentAt: number): void {
    const now = this.tracker.clock.now();
    const waiting = this.waitKey === lockKey;
    const sid = LockPatterns.sessionId(p, lockKey);
    this.tracker.granted(lockKey, sid, p.style, exptime, waiting ? now - this.waitStart : 0, waiting && this.waitFailed > 0, now, sentAt);
    if (waiting) this.waitKey = null;
  }
}
