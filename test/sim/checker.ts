// The invariants, checked as each client operation completes. Every check only
// flags what no single memcached could have answered; anything a real
// memcached might do (an operation that got no acknowledgement taking effect
// later, an item expiring) is allowed.
//
// Operations are intervals [inv, done] of virtual time, seen from the client.
// One without an acknowledgement (unavailable: the proxy closed the
// connection) may take effect at any moment after inv, or never: its done is
// Infinity until settle(), which the run calls at a moment when nothing is in
// flight anywhere, so that from then on it has taken effect or never will.
//
// Data keys (sessions, plain keys; values are unique):
//   stale read   a get returns v written by w, while another write w2 (set or
//                delete, acknowledged) was invoked after w completed and
//                completed before the get was invoked: w2's write was lost, or
//                (w2 a delete) a deleted key was served
//   lost write   a get misses while an acknowledged set completed before it was
//                invoked, and no delete or expiry can fall between the two
// Lock keys (`<sid>.lock`):
//   double lock  an acquisition (add STORED, or pecl-memcache's incr answering 1)
//                completes while another acquisition's holder has not begun its
//                release, and no delete or expiry can fall between the two
// Members (at the quiet moments, see run.ts; once every live sidecar took each dead one for silent,
// and the sweep that finishes its half-landed writes ran):
//   diverged     a key's natural members that every live sidecar trusts hold
//                different values
//   stuck        long after the faults stopped, a backend is still not trusted by
//                every sidecar, or work is still in flight
//
// Lost copies: a memcached killed or restarted held the only copy of a key's
// latest value, or lacked a key whose latest write is a delete that another
// backend still holds an older value of (the others were away, or lost theirs). Replication
// cannot keep what no surviving backend holds, so from then on the key's
// earlier history is unknown: a read may return any older value or miss, and
// a lock held before may be granted again. Checks resume with the key's next
// acknowledged write.
//
// "Can fall between": a delete in flight or not acknowledged (before settle),
// or one that completed after the earlier write began; an expiry once the
// earlier write's TTL could have run out. A key keeps one TTL for all its
// writes, which makes the latest write the one to test against.

import type { ArithOutcome, DeleteOutcome, GetOutcome, StoreOutcome } from '../../src/protocol/types';

export type OpKind = 'get' | 'set' | 'delete' | 'add' | 'incr';
export type Outcome = GetOutcome | StoreOutcome | DeleteOutcome | ArithOutcome;
export type ViolationKind = 'double-lock' | 'stale-read' | 'deleted-served' | 'lost-write' | 'unknown-value' | 'diverged' | 'stuck';

export interface OpRecord {
  readonly id: number;
  /** The client: its sidecar and its number. */
  readonly who: string;
  readonly kind: OpKind;
  readonly key: string;
  /** set/add: the value written. */
  readonly value: string | undefined;
  /** Writes: how long the item lives, ms; 0: forever. */
  readonly ttlMs: number;
  readonly inv: number;
  done: number;
  result: string;
}

export interface Violation {
  kind: ViolationKind;
  message: string;
  /** Virtual ms, and scheduler step, when found. */
  at: number;
  step: number;
  /** The last events before it (see trace.ts). */
  trace: string[];
}

function isLockKey(key: string): boolean {
  return key.endsWith('.lock');
}

/** Acknowledged writes of one key, in completion order, with the latest-invoked so far at each. */
class Completed {
  private readonly done: number[] = [];
  private readonly latest: OpRecord[] = [];

  add(op: OpRecord): void {
    const prev = this.latest[this.latest.length - 1];
    this.done.push(op.done);
    this.latest.push(prev !== undefined && prev.inv > op.inv ? prev : op);
  }

  /** Of the writes completed before `t`, the one invoked last. */
  latestBefore(t: number): OpRecord | undefined {
    let lo = 0;
    let hi = this.done.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.done[mid] < t) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? undefined : this.latest[lo - 1];
  }
}

class KeyState {
  /** Acknowledged sets and deletes (a miss's delete too: it says the key was absent). */
  readonly writes = new Completed();
  /** Acknowledged sets only. */
  readonly sets = new Completed();
  /** The latest completion of a delete that removed the item (or settled without an answer). */
  lastRemoval = -Infinity;
  /** Lock keys: acquisitions whose holder has not begun the release, by client. */
  readonly holders = new Map<string, OpRecord>();
  /** When the last surviving copy of the key's latest value was lost (see the head comment). */
  lostAt = -Infinity;
  /** Deletes in flight or unacknowledged (before settle): they may take effect at any moment. */
  readonly deletesInFlight = new Set<OpRecord>();
  /**
   * Writes in flight when their only copy (or, for a delete, the only backend that may have
   * applied it) was lost: acknowledged after, they count as completed before the loss.
   */
  readonly lostInFlight = new Set<OpRecord>();
}

/** How many of each kind are kept whole (all are counted). */
const KEEP_PER_KIND = 5;

export class Checker {
  readonly violations: Violation[] = [];
  readonly counts = new Map<ViolationKind, number>();
  ops = 0;
  private readonly keys = new Map<string, KeyState>();
  private readonly written = new Map<string, OpRecord>();
  private unanswered: OpRecord[] = [];

  constructor(
    private readonly now: () => number,
    private readonly step: () => number,
    private readonly trace: () => string[],
  ) {}

  /** Every key a client used. */
  keyNames(): string[] {
    return [...this.keys.keys()];
  }

  invoke(who: string, kind: OpKind, key: string, value?: string, ttlMs = 0): OpRecord {
    const op: OpRecord = { id: this.ops++, who, kind, key, value, ttlMs, inv: this.now(), done: Infinity, result: '' };
    const state = this.state(key);
    if (kind === 'delete') {
      state.deletesInFlight.add(op);
      // A holder's delete of its lock is its release: from now on another may hold it.
      if (isLockKey(key)) state.holders.delete(who);
    }
    if (kind === 'set' && value !== undefined) this.written.set(value, op);
    return op;
  }

  complete(op: OpRecord, outcome: Outcome): void {
    op.result = outcome.status;
    if (outcome.status === 'unavailable') {
      this.unanswered.push(op);
      return;
    }
    op.done = this.now();
    const state = this.state(op.key);
    switch (op.kind) {
      case 'get':
        if (outcome.status === 'hit') this.checkHit(op, state, outcome.item.value.toString('latin1'));
        else this.checkMiss(op, state);
        break;
      case 'set':
        if (outcome.status !== 'stored') break;
        state.writes.add(op);
        state.sets.add(op);
        break;
      case 'delete':
        state.deletesInFlight.delete(op);
        state.writes.add(op);
        if (outcome.status === 'deleted') state.lastRemoval = Math.max(state.lastRemoval, op.done);
        break;
      case 'add':
        // Clients add only their locks.
        if (outcome.status === 'stored') this.acquired(op, state);
        break;
      case 'incr':
        // pecl-memcache holds the lock when its incr answers 1 (it created the key).
        if (outcome.status === 'ok' && outcome.value === 1n) this.acquired(op, state);
        break;
    }
  }

  /**
   * Nothing is in flight anywhere: every unacknowledged operation has taken effect
   * by now, or never will. Their intervals close here.
   */
  settle(): void {
    const now = this.now();
    for (const op of this.unanswered) {
      op.done = now;
      if (op.kind !== 'delete') continue;
      const state = this.state(op.key);
      state.deletesInFlight.delete(op);
      state.lastRemoval = Math.max(state.lastRemoval, now);
    }
    this.unanswered = [];
  }

  /**
   * A killed memcached held `value` of `key` and no other backend holds it: if it was the
   * key's latest write (or one not acknowledged yet), the key's history so far is lost.
   */
  copiesLost(key: string, value: string): void {
    const state = this.keys.get(key);
    if (state === undefined) return;
    if (isLockKey(key)) {
      state.holders.clear();
      state.lostAt = this.now();
      return;
    }
    const w = this.written.get(value);
    const latest = state.writes.latestBefore(Infinity);
    if (w !== undefined && (w.done === Infinity || latest === w)) state.lostAt = this.now();
    if (w !== undefined && w.done === Infinity) state.lostInFlight.add(w);
  }

  /**
   * A killed memcached did not hold `key` while another backend does: if the key's latest
   * write is a delete, the killed one may have been the only backend that applied it.
   */
  absenceLost(key: string): void {
    const state = this.keys.get(key);
    if (state === undefined || isLockKey(key)) return;
    if (state.deletesInFlight.size > 0 || state.writes.latestBefore(Infinity)?.kind === 'delete') state.lostAt = this.now();
    for (const d of state.deletesInFlight) state.lostInFlight.add(d);
  }

  /** The members of `key` hold different values at a quiet moment. */
  diverged(key: string, holdings: string): void {
    this.report('diverged', `${key}: ${holdings}`);
  }

  /** The faults stopped long ago, and still not every backend is trusted, or work is still in flight. */
  stuck(detail: string): void {
    this.report('stuck', detail);
  }

  private checkHit(read: OpRecord, state: KeyState, value: string): void {
    const w = this.written.get(value);
    if (w === undefined || w.key !== read.key || w.inv > read.done) {
      this.report('unknown-value', `${show(read)} returned ${value}, which no write before it wrote`);
      return;
    }
    const later = state.writes.latestBefore(read.inv);
    if (later === undefined || later.inv <= w.done || later.done <= state.lostAt || state.lostInFlight.has(later)) return;
    const kind = later.kind === 'delete' ? 'deleted-served' : 'stale-read';
    this.report(kind, `${show(read)} returned ${value} from ${show(w)}, but ${show(later)} came after it`);
  }

  private checkMiss(read: OpRecord, state: KeyState): void {
    const set = state.sets.latestBefore(read.inv);
    if (set === undefined || set.done <= state.lostAt || state.lostInFlight.has(set) || this.mayBeGone(state, set, set.inv, read.done)) return;
    this.report('lost-write', `${show(read)} missed, but ${show(set)} came before it and no delete since`);
  }

  private acquired(op: OpRecord, state: KeyState): void {
    for (const [who, holder] of state.holders) {
      if (holder.inv + holder.ttlMs <= op.done) {
        state.holders.delete(who); // expired, or may have
        continue;
      }
      if (this.mayBeGone(state, holder, Math.min(holder.inv, op.inv), op.done)) continue;
      this.report('double-lock', `${show(op)} acquired ${op.key}, still held by ${show(holder)}`);
    }
    state.holders.set(op.who, op);
  }

  /** A delete or an expiry may fall between `since` (the earlier write's start) and `until`. */
  private mayBeGone(state: KeyState, write: OpRecord, since: number, until: number): boolean {
    if (state.deletesInFlight.size > 0 || state.lastRemoval > since) return true;
    return write.ttlMs > 0 && since + write.ttlMs <= until;
  }

  private state(key: string): KeyState {
    let state = this.keys.get(key);
    if (state === undefined) {
      state = new KeyState();
      this.keys.set(key, state);
    }
    return state;
  }

  private report(kind: ViolationKind, message: string): void {
    const count = (this.counts.get(kind) ?? 0) + 1;
    this.counts.set(kind, count);
    if (count <= KEEP_PER_KIND) this.violations.push({ kind, message, at: this.now(), step: this.step(), trace: this.trace() });
  }
}

function show(op: OpRecord): string {
  const what = op.value === undefined ? `${op.kind} ${op.key}` : `${op.kind} ${op.key}=${op.value}`;
  const done = op.done === Infinity ? 'unanswered' : `${(op.done / 1000).toFixed(4)}s`;
  return `[${op.who} ${what} ${(op.inv / 1000).toFixed(4)}s..${done} ${op.result}]`;
}
