// Runs seen across sidecars. A resync run copies into its target items it read
// from other members a moment before. A delete sent through another sidecar in
// between removes the item from both, and the copy then lands: until the run
// re-reads its source and takes the copy back, the target holds a deleted item.
// The sidecar that ran the run distrusts its target meanwhile (read last, deciding
// nothing); the beacon makes every other sidecar distrust it too, so none of them
// serves, touches or spreads that copy. Fills (a reload gave a trusted backend
// keys) keep a count of their own, which only stops the filled member's hits
// being served after a trusted miss (see FILL_BEACON_KEY).
//
//   raise   `ma replicached:resync-running N<ttl> J1` on the target: a count of the
//           runs copying into it, kept alive (touch T<ttl>) every renewMs
//   copy    only from trustMs + margin after the raise was answered, and only while
//           the count is known to live copyBudgetMs longer (last renewal + ttl − 1 s)
//   lower   `decr` by what this run added, when it ends (a dead sidecar's part
//           expires ttl after the last renewal by anyone)
//   watch   every sidecar, every watchMs, reads the count on each backend that is up:
//           above 0 ──> distrusted; no answer of 0 (or absent) sent in the last
//           trustMs ──> distrusted too (it may have missed a raise), after requests
//           of its keys waited a moment for the next answer (WatchRounds); and writes
//           act on an answer above 0 only while it is fresh (countHoldsMs)
//
// Why that holds: a sidecar trusts the target at time t only on an answer of 0 to a
// read sent after t − trustMs; the target answered it after it was sent. A copy
// goes out more than trustMs after the target counted the run, and while the count
// lives: so any read answered 0 before the copy was sent before the count rose,
// over trustMs before the copy. Sidecars must agree on trustMs: it is a constant.
// Timings are this process's monotonic clock; memcached's second-granular expiry
// is why a renewal counts for ttl − 1 s.

import type { MemcachedNode } from '../routing/node';
import { RESERVED_PREFIX } from './refill-claim';

/** The count of runs that distrust their target (refill, reconcile, added, restarted by a reload). */
export const RUN_BEACON_KEY = Buffer.from(`${RESERVED_PREFIX}resync-running`, 'latin1');
/**
 * The count of fills (a reload gave a trusted backend keys). A fill copies only
 * into a member that is not the key's authority, so a reader asks the authority
 * first; while the count is up, the filled member's hit is not served once a
 * trusted natural member missed (as a stand-in's). Nothing else changes: after a
 * removal every backend fills at once, and distrusting them all would leave no
 * one to decide a lock.
 */
export const FILL_BEACON_KEY = Buffer.from(`${RESERVED_PREFIX}fill-running`, 'latin1');

export interface BeaconOptions {
  /** Lifetime of the count without renewal: how long a dead sidecar's run keeps its target distrusted. */
  ttlSeconds: number;
  renewMs: number;
  /** How often each sidecar reads the count on each backend. */
  watchMs: number;
  /** How long an answer of 0 keeps a backend trusted; a run waits this long (and a margin) before copying. */
  trustMs: number;
  /** What a copy may take, from its first read to taking it back: the lease must last this long. */
  copyBudgetMs: number;
}

/** Over watchMs, in a settling pause (Resyncer.settle): another sidecar's watch timer firing late, and its read's round trip. */
export const SETTLE_MARGIN_MS = 100;

/**
 * When a watch's rounds went out, to tell whose fault a stale watch is (no fresh
 * clean answer: see BeaconWatch.busy). Most often it is this process's own: its
 * event loop stalled (a GC pause, a starved CPU), so its rounds went out late.
 * Distrusting the member then would move decisions to another member while the
 * other sidecars still decide on this one, and would leave reads and locks with no
 * member to decide them. So requests of its keys are held back instead (Resyncer.
 * catchingUp) while the watch is behind (its last round went out over two rounds
 * ago) and for a pause after its rounds resume; a watch stale longer than that,
 * its rounds going out on time, distrusts the member.
 */
export class WatchRounds {
  private sentAt = -Infinity;
  private resumedAt = -Infinity;

  constructor(private readonly opts: BeaconOptions) {}

  /** How long requests wait for a stale watch once its rounds go out on time. */
  get pauseMs(): number {
    return 2 * this.opts.watchMs;
  }

  /**
   * How long an answer above 0 is taken to still hold. A sidecar that trusts the
   * backend again (its count lowered) holds its writes watchMs + SETTLE_MARGIN_MS
   * (Resyncer.settle): one acting on an older answer than this might decide the
   * backend's keys elsewhere after that, so its writes wait for the next answer.
   */
  get countHoldsMs(): number {
    return this.opts.watchMs + SETTLE_MARGIN_MS / 2;
  }

  /** A round goes out now. */
  sent(t: number): void {
    if (t - this.sentAt > 2 * this.opts.watchMs) this.resumedAt = t;
    this.sentAt = t;
  }

  /** Whether a watch stale since `staleSince` holds requests back at `t` rather than distrust. */
  holdsBack(staleSince: number, t: number): boolean {
    if (t <= staleSince) return false;
    return t - this.sentAt > 2 * this.opts.watchMs || t - Math.max(staleSince, this.resumedAt) <= this.pauseMs;
  }

  /**
   * What a watch saw of one backend, as the hold it puts on requests of its keys: a
   * count above 0, answered to a read sent at `countSentAt`, holds writes only
   * (`decisions`), once older than countHoldsMs; no count holds every request once no
   * clean answer is fresh (past `trustedUntil`).
   */
  holdsBackOn(counted: boolean, countSentAt: number, trustedUntil: number, t: number, decisions: boolean): boolean {
    if (counted) return decisions && this.holdsBack(countSentAt + this.countHoldsMs, t);
    return this.holdsBack(trustedUntil, t);
  }
}

export const DEFAULT_BEACON_OPTIONS: Readonly<BeaconOptions> = Object.freeze({
  ttlSeconds: 10,
  renewMs: 1000,
  watchMs: 500,
  trustMs: 2000,
  copyBudgetMs: 4000,
});

/** Over trustMs: clock granularity, and a watcher's timer firing a little late. */
const NOTICE_MARGIN_MS = 100;

const now = (): number => performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One run's part in its target's count. */
export class RunBeacon {
  /** What this run added and is sure is still in the count. */
  private owed = 0n;
  private copiesFrom = Infinity;
  private liveUntil = -Infinity;
  private lastRenewalSent = -Infinity;
  private renewing: Promise<boolean> | null = null;
  private renewer: NodeJS.Timeout | null = null;
  private lowered = false;

  /** `watch`: this sidecar's watch of the same count, told what the run leaves in it; its options are the run's. */
  constructor(
    private readonly target: MemcachedNode,
    private readonly watch: BeaconWatch,
  ) {}

  private get opts(): BeaconOptions {
    return this.watch.opts;
  }

  /** True when a copy may go out now (the common case, without a wait). */
  get covered(): boolean {
    const t = now();
    return t >= this.copiesFrom && this.liveUntil - t >= this.opts.copyBudgetMs;
  }

  /** After lower(): its part is still in the count. */
  get owes(): boolean {
    return this.owed > 0n;
  }

  /** The run begins: raise the count now, so that the wait before copying starts early. */
  raise(): Promise<boolean> {
    return this.renew();
  }

  /** Resolves true once a copy may go out; false when the count cannot be raised or renewed. */
  async cover(): Promise<boolean> {
    for (;;) {
      if (this.lowered) return false;
      if (this.covered) return true;
      const t = now();
      if (t < this.copiesFrom && this.liveUntil - t >= this.opts.copyBudgetMs) await sleep(this.copiesFrom - t);
      else if (!(await this.renew())) return false;
    }
  }

  /**
   * The run ended: renewals stop, and its part leaves the count; this sidecar's
   * watch learns what is left. False when the target could not be told (it is
   * down): lower() again once it is back.
   */
  async lower(): Promise<boolean> {
    this.lowered = true;
    if (this.renewer !== null) clearInterval(this.renewer);
    this.renewer = null;
    await this.renewing;
    // A lapse since the last renewal: the count may have expired and been raised by another run, without our part.
    if (this.owed === 0n || now() - this.lastRenewalSent > this.lapseMs) {
      this.owed = 0n;
      // Nothing to take back (a run that waited for another sidecar's refill ends on its mark, or a
      // lapse): what the watch read before may be stale all the same, and trust waits for a fresh read.
      await this.watch.readNow(this.target);
      return true;
    }
    const sentAt = now();
    const r = await this.target.arith('decr', this.watch.key, this.owed);
    if (r.status === 'failed') return false;
    this.owed = 0n;
    if (r.status === 'ok') this.watch.saw(this.target, r.value, sentAt);
    return true;
  }

  private get lapseMs(): number {
    return (this.opts.ttlSeconds - 1) * 1000;
  }

  private renew(): Promise<boolean> {
    this.renewing ??= (this.owed === 0n ? this.add() : this.touch()).finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }

  private async add(): Promise<boolean> {
    const sentAt = now();
    const r = await this.target.arith('incr', this.watch.key, 1n, { initial: 1n, exptime: this.opts.ttlSeconds });
    if (r.status !== 'ok') return false;
    this.owed++; // counted before looking at lowered: lower() waits for this and takes it back
    this.renewed(sentAt);
    if (this.lowered) return false;
    this.copiesFrom = now() + this.opts.trustMs + NOTICE_MARGIN_MS;
    this.watch.saw(this.target, r.value, sentAt);
    if (this.renewer === null) {
      this.renewer = setInterval(() => void this.renew(), this.opts.renewMs);
      this.renewer.unref();
    }
    return true;
  }

  private async touch(): Promise<boolean> {
    const sentAt = now();
    const lapsed = sentAt - this.lastRenewalSent > this.lapseMs;
    const r = await this.target.touch(this.watch.key, this.opts.ttlSeconds);
    if (r.status === 'failed' || this.lowered) return false;
    if (r.status === 'not_found' || lapsed) {
      // Gone, or it may have expired and been raised again without us: raise our part anew
      // (a part counted twice only keeps the target distrusted until it expires).
      this.owed = 0n;
      return this.add();
    }
    this.renewed(sentAt);
    return true;
  }

  private renewed(sentAt: number): void {
    this.lastRenewalSent = sentAt;
    this.liveUntil = sentAt + this.lapseMs;
  }
}

interface Seen {
  busy: boolean;
  /** When the latest answer of 0 (or absent) was asked for. */
  cleanSentAt: number;
  /** When the answer applied last was asked for: an older one arriving late is ignored. */
  appliedSentAt: number;
}

/** What a watch saw, by backend address. */
export type BeaconsSeen = ReadonlyMap<string, Readonly<Seen>>;

/** A sidecar's view of every backend's count (see the head comment). */
export class BeaconWatch {
  /** By backend object: busy() is asked on every request, and an object key needs no hashing. */
  private readonly seen = new Map<MemcachedNode, Seen>();
  private readonly asking = new Set<MemcachedNode>();
  private timer: NodeJS.Timeout | null = null;
  private readonly rounds: WatchRounds;

  /** `key`: which count it watches (the runs', or the fills'); `trusted`: a count seen above 0 is now seen at 0. */
  constructor(
    private readonly backends: readonly MemcachedNode[],
    readonly key: Buffer,
    readonly opts: BeaconOptions,
    private readonly trusted: (node: MemcachedNode) => void = () => {},
  ) {
    for (const b of backends) this.seen.set(b, { busy: false, cleanSentAt: 0, appliedSentAt: 0 });
    this.rounds = new WatchRounds(opts);
  }

  /** Starts from what a previous watch saw (a reload), for the backends both know. */
  adopt(known: BeaconsSeen): void {
    for (const b of this.backends) {
      const s = known.get(b.address);
      if (s !== undefined) this.seen.set(b, { ...s });
    }
  }

  /**
   * A backend nothing is known of yet (not handed over by a previous watch) is
   * trusted until the first answer, trustMs at most: the first read goes out now.
   */
  start(): void {
    const t = now();
    for (const s of this.seen.values()) if (s.appliedSentAt === 0) s.cleanSentAt = t;
    this.timer = setInterval(() => this.readAll(), this.opts.watchMs);
    this.timer.unref();
    this.readAll();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * A run is copying into it (through any sidecar), or no recent answer says
   * otherwise. Never while not watching, nor while it is down (out of the ring).
   */
  /** The latest answer counted a run (staleness aside). */
  countSeen(node: MemcachedNode): boolean {
    return this.seen.get(node)?.busy === true;
  }

  busy(node: MemcachedNode): boolean {
    const s = this.seen.get(node);
    if (s === undefined || this.timer === null || !node.isUp()) return false;
    return s.busy || now() - s.cleanSentAt > this.opts.trustMs;
  }

  /** Requests of its keys wait for the next answer (WatchRounds.holdsBackOn). */
  holdsBack(node: MemcachedNode, t: number, decisions: boolean): boolean {
    const s = this.seen.get(node);
    if (s === undefined || this.timer === null) return false;
    return this.rounds.holdsBackOn(s.busy, s.appliedSentAt, s.cleanSentAt + this.opts.trustMs, t, decisions);
  }

  /** What a later watch (a reload) starts from. */
  handOver(): BeaconsSeen {
    return new Map([...this.seen].map(([b, s]) => [b.address, { ...s }]));
  }

  /** A count read or left by this process (sentAt: when the request went out). */
  saw(target: MemcachedNode, count: bigint, sentAt: number): void {
    const s = this.seen.get(target);
    if (s === undefined || sentAt < s.appliedSentAt) return;
    s.appliedSentAt = sentAt;
    const was = s.busy;
    s.busy = count > 0n;
    if (!s.busy) s.cleanSentAt = sentAt;
    if (was && !s.busy) this.trusted(target);
  }

  /** Reads one backend's count now, whatever read is in flight (a run of this sidecar's just ended). */
  async readNow(b: MemcachedNode): Promise<void> {
    if (!b.isUp()) return;
    const sentAt = now();
    const r = await b.get(this.key);
    if (r.status === 'miss') this.saw(b, 0n, sentAt);
    else if (r.status === 'hit') this.saw(b, parseCount(r.item.value), sentAt);
  }

  private readAll(): void {
    this.rounds.sent(now());
    for (const b of this.backends) {
      if (!b.isUp() || this.asking.has(b)) continue;
      this.asking.add(b);
      void this.readNow(b).then(() => this.asking.delete(b));
    }
  }
}

/** memcached's counter as ASCII digits; anything else counts as one (distrust rather than guess). */
export function parseCount(value: Buffer): bigint {
  const text = value.toString('latin1').trim();
  return /^\d+$/.test(text) ? BigInt(text) : 1n;
}
