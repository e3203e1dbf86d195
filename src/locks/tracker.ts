// The session locks this sidecar has seen taken and not yet released, and the
// sessions waited on longest in the last minute. Fed by each connection's
// LockWatchRouter (lock-router.ts) with outcomes, in the order memcached applied
// them: the process-wide KeySequencer runs the requests of one key one after
// another, so a lock's grant and its release are never seen out of order here.
//
//   granted ──> holder (grantedAt, expiresAt) ──released──> hold time observed
//                  │
//                  ├─ past its expiry, no release seen ──> expired (the holder died or timed
//                  │    out); counted once, when a sweep, a scrape or the next grant notices
//                  ├─ granted again, no release seen ──> a takeover (after its expiry, or
//                  │    memcached evicted it, or it was released through another sidecar)
//                  └─ forgotten FORGET_AFTER_EXPIRY_MS after its expiry
//
// Bounds: at most MAX_TRACKED_LOCKS holders (past it, a grant on a new session is
// counted in `untracked` and its hold and takeover are not followed) and at most
// MAX_RECENT_SESSIONS sessions in the table of long waits (past it, a longer wait
// replaces the shortest). Only lock keys ever reach this file.

import { createHash } from 'node:crypto';
import type { LockStyle } from './patterns';

/** Time as the tracker reads it; tests drive both. */
export interface LockClock {
  /** Monotonic milliseconds (performance.now()). */
  now(): number;
  /** Unix time in milliseconds, for exptimes written as absolute times. */
  wall(): number;
}

export const REAL_LOCK_CLOCK: LockClock = { now: () => performance.now(), wall: () => Date.now() };

/** What the tracker reports, for the metrics. */
export interface LockEvents {
  attempt(style: LockStyle): void;
  grant(style: LockStyle): void;
  /** From a request's first attempt to its grant. */
  waited(seconds: number): void;
  /** From a grant to its release. */
  held(seconds: number): void;
  /** A lock granted while this sidecar still saw it held, with no release seen. */
  takenOver(): void;
  /** A lock granted here passed its expiry with no release seen. */
  expired(): void;
  /** A grant not followed: MAX_TRACKED_LOCKS holders are followed already. */
  untracked(): void;
}

/** Holders followed at once; ~200 bytes each. */
export const MAX_TRACKED_LOCKS = 10_000;
/** Sessions kept for `stats locks`; ~150 bytes each. */
export const MAX_RECENT_SESSIONS = 1_000;
/** `stats locks` lists the sessions with a contended wait this recent. */
export const RECENT_WINDOW_MS = 60_000;
/** Rows `stats locks` lists. */
export const STATS_ROWS = 20;
/** A lock past its expiry with no release is kept this long, so that a later grant counts as a takeover. */
const FORGET_AFTER_EXPIRY_MS = 10 * 60_000;
/** Expired holders are swept at most this often (and when the cap is reached). */
const SWEEP_EVERY_MS = 1000;
/** memcached's REALTIME_MAXDELTA: a larger exptime is a Unix time. */
const REALTIME_MAXDELTA = 60 * 60 * 24 * 30;
/** pecl-memcache's default memcache.lock_timeout, until a lock key's exptime shows this site's. */
const PECL_DEFAULT_LOCK_TIMEOUT = 15;
/**
 * memcached's clock ticks in whole seconds, so an item can expire up to a second before its
 * exptime says: a lock granted again within its last second had expired.
 */
const EXPIRY_TICK_MS = 1000;

interface Holder {
  sid: string;
  grantedAt: number;
  /** Infinity: exptime 0, the lock never expires. */
  expiresAt: number;
  /** Counted as expired already. */
  expired: boolean;
}

interface RecentWait {
  sid: string;
  longestMs: number;
  waits: number;
  lastAt: number;
}

export type StatPairs = Array<[string, string | number]>;

export class LockTracker {
  private readonly holders = new Map<string, Holder>();
  private readonly recent = new Map<string, RecentWait>();
  private lastSweep = 0;
  /** Seconds: the exptime pecl-memcache last gave a lock key (memcache.lock_timeout). */
  private peclLockTimeout = PECL_DEFAULT_LOCK_TIMEOUT;
  private readonly totals = { attempts: 0, grants: 0, takeovers: 0, expired: 0, untracked: 0 };

  constructor(
    private readonly events: LockEvents,
    readonly clock: LockClock = REAL_LOCK_CLOCK,
  ) {}

  attempt(style: LockStyle): void {
    this.totals.attempts++;
    this.events.attempt(style);
  }

  /**
   * A lock taken. `exptime` as the client sent it (null: unknown, pecl-memcache's text incr);
   * `waitMs` since this request's first attempt; `contended`: an attempt of it failed first;
   * `sentAt`: when the request that took it was sent. memcached stored the lock between then
   * and `now`, so its hold and expiry count from then: a reply held up on a loaded machine
   * would put its expiry late, and the next grant would not count it expired.
   */
  granted(lockKey: string, sid: string, style: LockStyle, exptime: number | null, waitMs: number, contended: boolean, now = this.clock.now(), sentAt = now): void {
    this.totals.grants++;
    this.events.grant(style);
    this.events.waited(waitMs / 1000);
    if (contended) this.recordWait(lockKey, sid, waitMs, now);
    if (now - this.lastSweep >= SWEEP_EVERY_MS) this.sweep(now, false);
    const seconds = exptime ?? (style === 'memcache' ? this.peclLockTimeout : 0);
    const holder: Holder = { sid, grantedAt: sentAt, expiresAt: this.expiresAt(seconds, sentAt), expired: false };
    const before = this.holders.get(lockKey);
    if (before !== undefined) {
      this.checkExpiry(before, now + EXPIRY_TICK_MS);
      this.totals.takeovers++;
      this.events.takenOver();
    } else if (this.holders.size >= MAX_TRACKED_LOCKS) {
      this.sweep(now, true);
      if (this.holders.size >= MAX_TRACKED_LOCKS) {
        this.totals.untracked++;
        this.events.untracked();
        return;
      }
    }
    this.holders.set(lockKey, holder);
  }

  /** A lock's release took effect (delete, or pecl-memcache's set to 0). Unknown locks are ignored. */
  released(lockKey: string): void {
    const h = this.holders.get(lockKey);
    if (h === undefined) return;
    this.holders.delete(lockKey);
    this.events.held(Math.max(0, this.clock.now() - h.grantedAt) / 1000);
  }

  /** pecl-memcache gave a lock key this exptime (its memcache.lock_timeout): its incr grants expire alike. */
  peclTimeoutSeen(exptime: number): void {
    if (exptime > 0 && exptime <= REALTIME_MAXDELTA) this.peclLockTimeout = exptime;
  }

  /** flush_all took effect: every lock is gone, none taken over. */
  flushed(): void {
    this.holders.clear();
  }

  /** Locks held now: granted, not released, not past their expiry. Counts the expiries it finds. */
  holding(): number {
    const now = this.clock.now();
    this.sweep(now, false);
    let n = 0;
    for (const h of this.holders.values()) if (now < h.expiresAt) n++;
    return n;
  }

  /** `stats locks`: the totals, then the sessions waited on longest in the last minute. */
  statsLines(showIds: boolean): StatPairs {
    const now = this.clock.now();
    for (const [k, r] of this.recent) if (now - r.lastAt > RECENT_WINDOW_MS) this.recent.delete(k);
    const rows = [...this.recent.values()].sort((a, b) => b.longestMs - a.longestMs).slice(0, STATS_ROWS);
    const pairs: StatPairs = [
      ['lock_attempts', this.totals.attempts],
      ['lock_grants', this.totals.grants],
      ['lock_takeovers', this.totals.takeovers],
      ['lock_expired', this.totals.expired],
      ['lock_untracked', this.totals.untracked],
      ['lock_holders', this.holding()],
      ['lock_window_seconds', RECENT_WINDOW_MS / 1000],
      ['lock_waited_sessions', this.recent.size],
      ['lock_session_ids', showIds ? 'shown' : 'sha256'],
    ];
    rows.forEach((r, i) => {
      const row = `lock:${i + 1}:`;
      pairs.push(
        [`${row}session`, showIds ? printable(r.sid) : sessionHash(r.sid)],
        [`${row}longest_wait_ms`, Math.round(r.longestMs)],
        [`${row}waits`, r.waits],
        [`${row}last_wait_seconds_ago`, Math.floor((now - r.lastAt) / 1000)],
      );
    });
    return pairs;
  }

  private expiresAt(exptime: number, now: number): number {
    if (exptime === 0) return Infinity;
    if (exptime < 0) return now;
    const ms = exptime <= REALTIME_MAXDELTA ? exptime * 1000 : exptime * 1000 - this.clock.wall();
    return now + ms;
  }

  private checkExpiry(h: Holder, now: number): void {
    if (h.expired || now < h.expiresAt) return;
    h.expired = true;
    this.totals.expired++;
    this.events.expired();
  }

  /** Forgets holders long past their expiry; `full`: every holder past its expiry (the cap is reached). */
  private sweep(now: number, full: boolean): void {
    this.lastSweep = now;
    const grace = full ? 0 : FORGET_AFTER_EXPIRY_MS;
    for (const [k, h] of this.holders) {
      this.checkExpiry(h, now);
      if (now > h.expiresAt + grace) this.holders.delete(k);
    }
  }

  private recordWait(lockKey: string, sid: string, waitMs: number, now: number): void {
    const r = this.recent.get(lockKey);
    if (r !== undefined && now - r.lastAt <= RECENT_WINDOW_MS) {
      r.longestMs = Math.max(r.longestMs, waitMs);
      r.waits++;
      r.lastAt = now;
      return;
    }
    if (r === undefined && this.recent.size >= MAX_RECENT_SESSIONS) {
      for (const [k, old] of this.recent) if (now - old.lastAt > RECENT_WINDOW_MS) this.recent.delete(k);
      if (this.recent.size >= MAX_RECENT_SESSIONS) {
        let shortest: [string, RecentWait] | null = null;
        for (const e of this.recent) if (shortest === null || e[1].longestMs < shortest[1].longestMs) shortest = e;
        if (shortest === null || shortest[1].longestMs >= waitMs) return;
        this.recent.delete(shortest[0]);
      }
    }
    this.recent.set(lockKey, { sid, longestMs: waitMs, waits: 1, lastAt: now });
  }
}

/** How `stats locks` names a session by default: the first 16 hex digits of the SHA-256 of its id. */
export function sessionHash(sid: string): string {
  return createHash('sha256').update(sid, 'latin1').digest('hex').slice(0, 16);
}

/** A session id as one STAT value: bytes outside printable ASCII (a binary key may hold CR, LF, space) as %XX. */
function printable(sid: string): string {
  return sid.replace(/[^\x21-\x7e]|%/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`);
}
