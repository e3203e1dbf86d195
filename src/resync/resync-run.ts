// One resync: refill a backend that came back (after being down, or restarted
// empty) with the items it should hold.
//
// Four modes. refill: the backend restarted (new pid), so it is empty and only
// lacks items: copies are adds. reconcile: the same process came back (it hung,
// or was cut off), so it also holds items that changed or were deleted while it
// was away, and may even have run late the writes that timed out on it (a stale
// session lock). It must converge: copies overwrite a different value, and its
// own keys that the others do not hold are deleted. Which items predate the run
// is told by a CAS mark: the run begins by storing an (already expired) item on
// the target; memcached's CAS counter only grows, so an item with a lower CAS
// was written before the run, and one with a higher CAS was written since, by a
// router that sends every write to the whole replica set: it is never touched.
// refresh: a reload moved keys to the backend (a removal, more replicas, other
// weights) while it stays trusted. It may still hold a copy of such a key from
// an earlier placement (a stand-in's, or one from before replicas went down):
// old, or of a key deleted since. Each key of its share is made what the key's
// authority (its first member not being resynced, which held the key all
// along) holds: copied, overwritten or deleted, under the mark. shed: the
// prune phase alone, for copies left on a backend outside their key's replica
// set (a stand-in's, once the member it stood in for is back): they are never
// read, but a later reload could make the backend a member of that key again.
//
//   mark   all but refill: `ms <mark> T-1` on the target, its CAS is the mark
//   list   each other live backend: `lru_crawler metadump all` ──> keep the keys
//          whose replica set, as the router computes it now, holds both the
//          lister and the target (the lister then got every write to the key)
//   quiet  wait until deletes sent before the run began have landed or timed out
//   again  after the copy phase, list once more and copy the keys the first crawl skipped
//   copy   per key, rate-limited, at most maxInFlight at once:
//          read from a live member (set order) ──miss──> skip
//            ├─expiring this second──> delete the target's copy (CAS-guarded): no copy outlives it
//            ├─written since the target's refill began (RunContext.refillTookSince)──> skip:
//            │   the target took that write, and holds it or what came since (a delete, too)
//            └─hit──> add to the target (never overwrites) ──not stored──> skip: it has a newer value
//                       └─stored──> re-read the member ──gone──> delete our copy (CAS-guarded)
//          reconcile reads the target first: miss ──> add as above; same value and
//          flags ──> skip; different, with a CAS under the mark ──> `ms` guarded by
//          that CAS (EX: a newer write landed, leave it) ──> re-read as above;
//          CAS over the mark (written since the run began) ──> skip
//          the first stand-in (right after the natural members) misses it, and stood in
//          all along (RunContext.stoodInThroughout) ──> no stand-in's item written in the
//          outage is a source, and the target's, when it is a stand-in, is deleted (CAS-guarded)
//          no trusted member holds it (every holder away at once) ──> a member in refill
//          that listed it over its incarnation key (or whose listing was not whole), with
//          the item over RunContext.refillSince, and no earlier fill's copy (its copied
//          record names another CAS): it took it in its refill and stayed in the key's
//          placement, so the item is the latest ──> copied as above; no source
//          and no trusted natural member's miss: a trusted stand-in misses it and holds its
//          delete record over the point since which it stood in (RunContext.stoodInSince),
//          or the first stand-in, there all along, does (a natural member's copy) ──> delete
//          the target's copy, guarded by its CAS; or the target's item predates its refill
//          (sent before its out applied: a write that timed out on it lands while it is out) and
//          a backend of the placement holds its delete record over the point after which what
//          it takes was sent after that out (RunContext.leftBefore) ──> delete the target's copy,
//          guarded by its CAS; or every other natural member is in refill
//          and misses it, and the target's CAS is over one's refill key on the target
//          (RunContext.refillingSince: that one took the write and every delete since)
//          ──> delete the target's copy, guarded by its CAS
//          refresh reads the target first too (CAS over the mark ──> skip), then
//          the authority only (the target is the authority ──> skip): hit ──> as
//          reconcile; miss ──> delete the target's copy, guarded by its CAS
//   shed   refresh and shed: the target's keys under the mark whose replica set
//          it is not in ──> `md <key> C<cas>` (a write since changed the CAS: left);
//          none once the target has left trusted (away, it is in no key's set)
//   hold   only when some keys could not be listed and context.holdMs > 0 (SASL
//          backends: the binary protocol has no metadump, so nothing is listed):
//          the target stays distrusted that long, the longest lifetime clients give
//          their items. By then every item it lacks has been written to it again or
//          has expired, and every stale item it held has expired too.
//   prune  reconcile, refresh: metadump the target; each key under the mark that the
//          copy phase did not take is copied as above (a lister's metadump may
//          have missed it), else, when every other member of its natural replica
//          set (the first R on the ring) is up, not resyncing and answers miss
//          ──> `md <key> C<cas>` on the target. Those members stayed in the key's
//          set while the target was away, so they saw every write and delete: the
//          key is gone (a logout, a released lock). With one of them down, a
//          stand-in's miss proves nothing, and the key stays.
//
// Never resurrecting a deleted key. The router calls deleting(key) before it sends
// any delete of `key`:
//   - the key waits in the queue, or is still being listed: it is dropped, never
//     copied (the delete may still be on its way to the member we would read);
//   - the key is being copied (read done, add maybe not landed): the router sends
//     its delete only when the copy has finished, so the delete reaches the target
//     after our add and removes it;
//   - the key was copied already: the delete reaches the target like any other.
// Deletes sent before the run began have landed or timed out when the quiet time ends.
// So a delete through this process always lands after our add, or our add never
// happens: there is no moment when the target holds a deleted item. flushing()
// ends the run (nothing is left to copy) after the copies in flight land.
// Deletes sent through another replicached process are invisible here. They go
// to the member we read from as well as to the target, so the re-read after the
// add sees the member's miss and deletes our copy (with the CAS our add returned:
// a newer value written since is left alone). Such a delete can also reach the
// target before our add and the member after our re-read: the copy stays, and the
// other sidecar's convergence check (it finds the target holding what it deleted)
// deletes it, taking the authority's state. Until then the copy must not be
// served, touched or taken for the authority's: the target stays in refill (the
// trust protocol, docs/trust.md) until the run completed, so no sidecar trusts it;
// and a run cut short by its sidecar's death leaves the target in refill, where the
// next filler's reconcile takes such a copy back.

import type { Backend } from '../backends/backend';
import type { MemcachedNode, StoredItem } from '../routing/node';
import { exptimeForCopy, sameExpiry } from '../routing/replicated-router';
import type { ReplicaRing } from '../routing/ring';
import { RateLimiter, type Clock } from './rate-limiter';
import { INCARNATION_KEY, LONGEST_RELATIVE_EXPIRY_S, MARK_KEY, copiedRecordKey, deleteRecordKey, isReserved } from '../trust/reserved-keys';
import type { DumpLine } from '../protocol/backend/meta';

/**
 * refill: the target restarted empty; reconcile: the same process came back; refresh: a reload
 * gave it keys; shed: drop copies it holds outside their keys' replica sets (see the head comment).
 */
export type ResyncMode = 'refill' | 'reconcile' | 'refresh' | 'shed';

/** What one key's step did to the target; failed: a backend failed it, so the key is tried again. */
type KeyOutcome = 'copied' | 'pruned' | 'skipped' | 'failed';

/** How a copy is stored: recordCopy, an Earlier refills copy, named by the key's copied record. */
interface StoreOptions {
  readonly recordCopy?: boolean;
}

/** Reads of the source after a copy, to follow touches that reached it meanwhile (see store). */
const EXPIRY_ROUNDS = 3;

/** The target already holds the source's item: value, flags and expiry (to memcached's second). */
function sameItem(mine: StoredItem, item: StoredItem): boolean {
  if (mine.flags !== item.flags || !mine.value.equals(item.value)) return false;
  return mine.ttl !== null && item.ttl !== null && sameExpiry(mine.ttl, item.ttl);
}

/** Passes over the keys whose copy failed (a timeout under load, a dropped connection), after the first. */
const RETRY_PASSES = 3;

/** What a run needs to know beyond its target: its mode, and which members are resyncing themselves. */
export interface RunContext {
  /** Decided as the run begins (the target's identity is read asynchronously). */
  mode: Promise<ResyncMode>;
  isResyncing(node: MemcachedNode): boolean;
  /**
   * A stand-in's items with a CAS at or under this may be copies left from an earlier time it
   * stood in (TrustAgent.standInSince; `ahead`: the backends before it in the key's order);
   * null: none of its items is a source. Absent: all are.
   */
  standInSince?(standIn: MemcachedNode, ahead: readonly MemcachedNode[], replicas: number): Promise<bigint | null>;
  /**
   * The stand-in took every write and delete of the keys it stands in for since each of `naturals`
   * that is away now left (TrustAgent.stoodInThroughout). Absent: none is known to.
   */
  stoodInThroughout?(standIn: MemcachedNode, naturals: readonly MemcachedNode[]): Promise<boolean>;
  /**
   * standInSince, when the stand-in has been in the key's placement without a break since then
   * (TrustAgent.stoodInSince): it took every write and delete of the key since. null: not known;
   * 'failed': not read, ask again.
   */
  stoodInSince?(standIn: MemcachedNode, ahead: readonly MemcachedNode[], replicas: number): Promise<bigint | null | 'failed'>;
  /**
   * The target's items with a CAS over this were written while `natural`, in refill, took every
   * write of its natural keys too (TrustAgent.refillingSince); null: none is known so.
   */
  refillingSince?(natural: MemcachedNode, target: MemcachedNode): Promise<bigint | null>;
  /**
   * The source's items with a CAS over this were written while the target, in its current refill,
   * took every write of its natural keys too (TrustAgent.refillTookSince): it took that write, and
   * every write and delete of the key since. null: none is known so.
   */
  refillTookSince?(target: MemcachedNode, source: MemcachedNode): Promise<bigint | null>;
  /**
   * A member in refill is a source only with an item whose CAS is over this (TrustAgent.refillSince):
   * taken in its refill while it stayed in the key's placement, so the key's latest. `ahead`: the
   * backends before it in the key's order. null: none of its items. Absent: members in refill are
   * no sources.
   */
  refillSince?(member: MemcachedNode, ahead: readonly MemcachedNode[], replicas: number): Promise<bigint | null>;
  /**
   * A member in refill that took the writes the target missed while away only in an earlier refill,
   * which it left: its items over `member` were taken since that refill began, and are at least as
   * new as the target's items under `target` (TrustAgent.outageRefillSince). null: nothing tells;
   * 'failed': not known now (a read failed, a stage changed meanwhile), the key is tried again.
   */
  outageRefillSince?(target: MemcachedNode, member: MemcachedNode, ahead: readonly MemcachedNode[], replicas: number): Promise<{ member: bigint; target: bigint } | null | 'failed'>;
  /**
   * For a target (a natural member in refill) that misses a key no trusted member holds: which items
   * of `standIn` (the key's first stand-in, in refill) are newer than that miss, `accepts` (TrustAgent.
   * missedSince), unless the target's delete record of the key is over `target` (a delete it took in
   * its current refill). null: none; 'failed': not known now, the key is tried again.
   */
  missedSince?(
    target: MemcachedNode,
    standIn: MemcachedNode,
    naturals: readonly MemcachedNode[],
  ): Promise<{ target: bigint; accepts(cas: bigint): boolean } | null | 'failed'>;
  /**
   * For a reconcile of the target (in refill): `target`, the CAS under which every item of the target
   * was sent to it before its current out applied (a write that timed out on it landing late among
   * them); `other`, the CAS on `other` over which a request it took was sent after that
   * (TrustAgent.leftBefore). null: not known so; 'failed': not known now, the key is tried again.
   */
  leftBefore?(target: MemcachedNode, other: MemcachedNode): Promise<{ target: bigint; other: bigint } | null | 'failed'>;
  /** How long the target stays distrusted after a run that could not list every key (see hold); 0: not at all. */
  holdMs: number;
  /**
   * This process's Earlier refills copies whose copied record is not written yet, by target address
   * and key (shared by every run of one Resyncer): such a copy on a member is named by no record yet,
   * so a run that finds the member's item while one is in flight tries the key again.
   */
  recording?: Map<string, number>;
}

export { MARK_KEY };

export interface ResyncRunOptions {
  /** Keys copied per second at most (each queued key counts once, copied or not). */
  keysPerSecond: number;
  /** Copies in flight at once. */
  maxInFlight: number;
  /** Copying starts no sooner than this after the run began (over the backend request timeout). */
  quietMs: number;
  /** Metadump attempts per lister (memcached answers BUSY while another crawl runs). */
  listAttempts: number;
  clock: Clock;
}

export type ResyncOutcome = 'done' | 'flushed' | 'aborted';

export interface ResyncResult {
  outcome: ResyncOutcome;
  mode: ResyncMode;
  /** Why it was aborted: target down, restarted again, proxy closing. */
  reason?: string;
  copied: number;
  skipped: number;
  /** Reconcile: stale keys deleted from the target. */
  pruned: number;
  /** Live backends whose keys could not be listed: the target may lack some of their items. */
  unlisted: string[];
  /** Keys whose copy still failed after every retry pass: the target may lack them. */
  failed: number;
  /** Milliseconds the target was held distrusted after that (see hold). */
  heldMs: number;
}

export interface RunCounters {
  copied(): void;
  skipped(): void;
  pruned(): void;
  /** The hold begins: the target stays distrusted `ms` longer. */
  holding(ms: number): void;
}

export type RunPhase = 'listing' | 'copying' | 'pruning' | 'holding' | 'finished';

export class ResyncRun {
  phase: RunPhase = 'listing';
  copied = 0;
  skipped = 0;
  pruned = 0;
  mode: ResyncMode = 'refill';
  /** Reconcile: the target's CAS when the run began; items under it predate the run. */
  private mark = 0n;
  /** Keys still to copy, latin1 (one char per byte). A Set: listed by several backends, copied once. */
  private readonly queue = new Set<string>();
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Keys the copy phase took: not queued again by the second listing, and left out of the prune phase. */
  private readonly seen = new Set<string>();
  /**
   * Listers in refill, by address: the CAS of each item they listed, and of their incarnation key
   * (see copyFromMembers); whole: the listing ran to its end and had the incarnation key.
   */
  private readonly listedInRefill = new Map<string, { whole: boolean; cases: Map<string, bigint> }>();
  /** Keys deleted while the listing runs; null once it is over. */
  private deletedWhileListing: Set<string> | null = new Set();
  private stopReason: { outcome: 'flushed' | 'aborted'; reason: string } | null = null;
  /** Prune phase: the target's keys not yet checked. */
  private pruneLeft = 0;
  /** Keys whose copy a backend failed in this pass: queued again for the next. */
  private readonly retry = new Set<string>();
  /** Per source, RunContext.refillTookSince for this run's target (see tookInRefill). */
  private readonly refillTookSince = new Map<string, Promise<bigint | null>>();
  private readonly unlisted: string[] = [];
  private heldMs = 0;
  private readonly startedAt: number;
  readonly done: Promise<ResyncResult>;

  constructor(
    readonly target: Backend,
    private readonly backends: readonly Backend[],
    private readonly ring: ReplicaRing,
    private readonly opts: ResyncRunOptions,
    private readonly counters: RunCounters,
    private readonly context: RunContext = { mode: Promise.resolve('refill'), isResyncing: () => false, holdMs: 0 },
  ) {
    this.startedAt = opts.clock.now();
    this.done = this.run();
  }

  /** Keys still to copy (the copy phase) or to check (the prune phase); grows while the listing runs. */
  get pending(): number {
    return this.queue.size + this.pruneLeft;
  }

  get copying(): number {
    return this.inFlight.size;
  }

  /** Stops listing and copying; copies in flight still land. */
  abort(reason: string): void {
    if (this.stopReason === null) this.stopReason = { outcome: 'aborted', reason };
  }

  /** See the head comment; the promise settles when this key's copy in flight (if any) has landed. */
  deleting(name: string): Promise<void> | undefined {
    if (this.deletedWhileListing !== null && this.isMember(this.ring.replicaSet(Buffer.from(name, 'latin1')), this.target)) {
      this.deletedWhileListing.add(name);
    }
    if (this.queue.delete(name) || this.retry.delete(name)) this.countSkipped();
    return this.inFlight.get(name);
  }

  /** A flush empties every backend: nothing is left to copy once the copies in flight land. */
  flushing(): Promise<void> {
    if (this.stopReason === null) this.stopReason = { outcome: 'flushed', reason: 'flush_all' };
    this.queue.clear();
    return this.settled();
  }

  private async run(): Promise<ResyncResult> {
    this.mode = await this.context.mode;
    return this.work();
  }

  /** Placement holds the ring's nodes (wrapped by the trust agent): compared by address. */
  private isMember(set: readonly MemcachedNode[], node: MemcachedNode): boolean {
    return set.some((m) => m.address === node.address);
  }

  /** The key's natural members are the target and `member`, and no other. */
  private naturalPair(natural: readonly MemcachedNode[], member: MemcachedNode): boolean {
    return natural.length === 2 && this.isMember(natural, this.target) && this.isMember(natural, member);
  }

  private async work(): Promise<ResyncResult> {
    if (this.mode !== 'refill') await this.takeMark();
    if (this.mode !== 'shed') await this.list();
    this.deletedWhileListing = null;
    // In short naps, so that an abort does not wait out the quiet time.
    for (let left = this.quietLeft(); left > 0 && this.stopReason === null; left = this.quietLeft()) {
      await this.opts.clock.sleep(Math.min(left, 50));
    }
    this.phase = 'copying';
    await this.copyAll();
    await this.settled();
    if (this.mode !== 'shed' && this.stopReason === null) {
      // A crawl is no snapshot: an item the LRU maintainer moves while it runs can be skipped (seen
      // under load). A second listing catches most of those; keys already taken are not queued again.
      this.phase = 'listing';
      this.deletedWhileListing = new Set();
      await this.list();
      this.deletedWhileListing = null;
      this.phase = 'copying';
      await this.copyAll();
      await this.settled();
    }
    for (let pass = 1; pass <= RETRY_PASSES && this.retry.size > 0 && this.stopReason === null; pass++) {
      await this.opts.clock.sleep(200 * pass);
      for (const name of this.retry) this.queue.add(name);
      this.retry.clear();
      await this.copyAll();
      await this.settled();
    }
    this.queue.clear();
    if (this.mode !== 'refill' && this.stopReason === null) {
      this.phase = 'pruning';
      await this.prune();
    }
    if (this.unlisted.length > 0 && this.context.holdMs > 0 && this.stopReason === null) {
      this.phase = 'holding';
      this.counters.holding(this.context.holdMs);
      await this.hold(this.context.holdMs);
    }
    return this.finish();
  }

  private finish(): ResyncResult {
    this.phase = 'finished';
    this.seen.clear();
    const failed = this.retry.size;
    const counts = {
      mode: this.mode,
      copied: this.copied,
      skipped: this.skipped,
      pruned: this.pruned,
      unlisted: this.unlisted,
      failed,
      heldMs: this.heldMs,
    };
    return this.stopReason === null
      ? { outcome: 'done', ...counts }
      : { outcome: this.stopReason.outcome, reason: this.stopReason.reason, ...counts };
  }

  /** Reconcile without a mark cannot tell stale from new: the run stops (the target is failing anyway). */
  private async takeMark(): Promise<void> {
    const r = await this.target.store({ mode: 'set', key: MARK_KEY, value: Buffer.alloc(0), flags: 0, exptime: -1, cas: 0n });
    if (r.status === 'stored') this.mark = r.cas;
    else this.abort(`no CAS mark: ${r.status === 'failed' ? r.reason : r.status}`);
  }

  /** Sleeps `ms` in short naps, so that an abort or a flush ends it. */
  private async hold(ms: number): Promise<void> {
    const from = this.opts.clock.now();
    for (let left = ms; left > 0 && this.stopReason === null; left = from + ms - this.opts.clock.now()) {
      await this.opts.clock.sleep(Math.min(left, 250));
    }
    this.heldMs = this.opts.clock.now() - from;
  }

  private quietLeft(): number {
    return this.startedAt + this.opts.quietMs - this.opts.clock.now();
  }

  private async list(): Promise<void> {
    for (const lister of this.backends) {
      if (lister === this.target) continue;
      if (!lister.canListKeys) {
        // Never will be: no retries (SASL backends; see hold).
        if (lister.isUp()) this.markUnlisted(lister);
        continue;
      }
      // A lister in refill: the CASes of its items and of its incarnation key (see copyFromMembers).
      const cases = this.context.refillSince !== undefined && this.context.isResyncing(lister) ? new Map<string, bigint>() : null;
      if (cases !== null) this.listedInRefill.set(lister.address, { whole: false, cases });
      const listed = await this.dump(lister, (line) => {
        if (cases !== null && (line.key.equals(INCARNATION_KEY) || !isReserved(line.key))) cases.set(line.key.toString('latin1'), line.cas);
        this.consider(lister, line.key);
      });
      if (cases !== null && listed && cases.has(INCARNATION_KEY.toString('latin1'))) this.listedInRefill.set(lister.address, { whole: true, cases });
      if (this.stopReason !== null) return;
      if (!listed && lister.isUp()) this.markUnlisted(lister);
    }
  }

  /**
   * The backend's metadump, tried again after a failure (another sidecar's crawl makes memcached
   * answer BUSY): true when one ran to its end. A retry calls onLine again for the lines it saw.
   */
  private async dump(backend: Backend, onLine: (line: DumpLine) => void): Promise<boolean> {
    for (let attempt = 0; attempt < this.opts.listAttempts; attempt++) {
      if (this.stopReason !== null || !backend.isUp()) return false;
      if (attempt > 0) await this.opts.clock.sleep(100 * 2 ** attempt);
      if ((await backend.metadumpEach(onLine)).status === 'ok') return true;
    }
    return false;
  }

  /** Once per backend, however many listings (see again) it failed. */
  private markUnlisted(backend: MemcachedNode): void {
    if (!this.unlisted.includes(backend.address)) this.unlisted.push(backend.address);
  }

  private consider(lister: MemcachedNode, key: Buffer): void {
    if (this.stopReason !== null || isReserved(key)) return;
    const name = key.toString('latin1');
    if (this.deletedWhileListing?.has(name) || this.seen.has(name)) return;
    const set = this.ring.replicaSet(key);
    if (this.isMember(set, this.target) && this.isMember(set, lister)) this.queue.add(name);
  }

  private async copyAll(): Promise<void> {
    const limiter = new RateLimiter(this.opts.keysPerSecond, Math.min(this.opts.keysPerSecond, this.opts.maxInFlight), this.opts.clock);
    // Iterating a Set sees deletions made meanwhile (keys deleted by clients are skipped).
    for (const name of this.queue) {
      if (this.stopReason !== null) return;
      await limiter.take();
      while (this.inFlight.size >= this.opts.maxInFlight) await Promise.race(this.inFlight.values());
      if (this.stopReason !== null) return;
      // Deleted while we waited: already counted as skipped.
      if (!this.queue.delete(name)) continue;
      this.seen.add(name);
      // From here to inFlight.set nothing yields: deleting(name) sees the key in one place or the other.
      const copy = this.copyOne(Buffer.from(name, 'latin1')).then((outcome) => {
        this.inFlight.delete(name);
        if (outcome === 'failed') this.retry.add(name);
        else this.count(outcome);
      });
      this.inFlight.set(name, copy);
    }
  }

  /** What this key's copy did to the target. Never rejects (backends resolve failures). */
  private async copyOne(key: Buffer): Promise<KeyOutcome> {
    const set = this.ring.replicaSet(key);
    if (!this.isMember(set, this.target)) return 'skipped';
    if (this.mode === 'refresh') return this.refreshOne(key, set);
    return this.copyFromMembers(key, set);
  }

  /** refill and reconcile: the first member holding the key is the source. */
  private async copyFromMembers(key: Buffer, set: readonly MemcachedNode[]): Promise<KeyOutcome> {
    // Reconcile: the target's item is read BEFORE the source, so any write that
    // lands on the target after this read changes its CAS and fails our `ms`.
    let mine: StoredItem | null = null;
    if (this.mode === 'reconcile') {
      const r = await this.target.get(key);
      if (r.status === 'failed') return 'failed';
      if (r.status === 'hit') {
        if (r.item.cas > this.mark) return 'skipped'; // written since the run began: newer than any source
        mine = r.item;
      }
    }
    let failed = false;
    const natural = this.ring.naturalSet(key);
    // The first stand-in, when it misses the key: asked once, and only when an item turns up that its
    // miss may prove stale, whether it stood in all along (see firstStandIn).
    let missedBy: MemcachedNode | null = null;
    // Every stand-in that misses it: one holding its delete record may prove the target's copy stale.
    const missedByStandIns: MemcachedNode[] = [];
    let stale: Promise<boolean> | null = null;
    const provedStale = (): Promise<boolean> => (missedBy === null ? Promise.resolve(false) : (stale ??= this.stoodInThroughout(missedBy, natural)));
    for (const member of set) {
      // Only a trusted member is a source here: one being refilled itself may be the stale one.
      if (member.address === this.target.address || this.context.isResyncing(member)) continue;
      const read = await member.get(key);
      failed ||= read.status === 'failed';
      // A trusted natural member saw every write and delete: its miss says the key is gone,
      // whatever a stand-in still holds, and the target's own copy (under the mark) goes too.
      // Not one that a reload just made natural and that never held the key (ReplicaRing.holds).
      if (read.status === 'miss' && !this.context.isResyncing(member) && this.ring.holds(key, member)) {
        return mine === null ? 'skipped' : this.dropMine(key, mine.cas);
      }
      if (read.status === 'miss' && this.firstStandIn(key, member)) missedBy = member;
      if (read.status === 'miss' && !natural.includes(member)) missedByStandIns.push(member);
      if (read.status !== 'hit') continue;
      if (!natural.includes(member) && (!(await this.writtenWhileStandingIn(key, member, read.item.cas)) || (await provedStale()))) continue;
      if (this.stopReason !== null) return 'skipped';
      const exptime = exptimeForCopy(read.item.ttl);
      if (exptime === null) return this.expiring(key, read.item, mine);
      if (mine !== null && sameItem(mine, read.item)) return 'skipped';
      if (await this.tookInRefill(member, read.item.cas)) return 'skipped';
      return this.store(key, member, read.item, exptime, mine);
    }
    // No trusted member holds it, or none is known to hold it since the natural members left
    // (every holder away at once): a member in refill is a source for an item it took in its
    // refill while it stayed in the key's placement, which is the latest (RunContext.refillSince).
    // Its miss proves nothing. Not asked when its whole listing says it holds no such item: the
    // key unlisted, or listed under its incarnation key (the item predates its refill).
    if (this.context.refillSince !== undefined) {
      const name = key.toString('latin1');
      for (const member of set) {
        if (member.address === this.target.address || !this.context.isResyncing(member)) continue;
        const listed = this.listedInRefill.get(member.address);
        if (listed?.whole === true) {
          const cas = listed.cases.get(name);
          if (cas === undefined || cas <= listed.cases.get(INCARNATION_KEY.toString('latin1'))!) continue;
        }
        const since = await this.context.refillSince(member, this.ring.ahead(key, member), this.ring.replicas);
        if (since === null) continue;
        const read = await member.get(key);
        failed ||= read.status === 'failed';
        if (read.status !== 'hit' || read.item.cas <= since) continue;
        const copy = await this.earlierRefillsCopy(key, member, read.item);
        failed ||= copy === 'failed';
        if (copy !== false) continue;
        // The target took this item's write too, in its refill (the source's refill key of it is
        // under the item): what it holds is newer, a miss a delete still on its way to the source.
        // Asked for each key, not once per run as of a trusted source: this one's refill may end.
        // Not over a read that failed: a trusted holder may have the key's latest, and this item may
        // be a fill's copy (nothing tells it from a client's write), so the key is tried again.
        const took = (await this.context.refillTookSince?.(this.target, member)) ?? null;
        if (took !== null && read.item.cas > took) return failed ? 'failed' : 'skipped';
        return this.takeFrom(key, member, read.item, mine);
      }
    }
    // A member in refill that took the writes the target missed only in an earlier refill, which it
    // left: what it took since that refill began is newer than what the target held before it left
    // (RunContext.outageRefillSince). A trusted backend took those writes too, and may have come
    // back empty since. Over a copy of the target's own: the member's item is not the key's latest
    // (the refill ended, maybe with a delete it failed), only newer than that copy. Over the
    // target's miss only when the two are the key's natural members: with neither trusted, a delete
    // of the key is acknowledged only once both took it (docs/trust.md, Decisions), so the
    // target's miss is no acknowledged delete after the member's item.
    // Not over a read that failed: that member may be the key's source, and the key is tried again.
    if (failed) return 'failed';
    if (this.context.outageRefillSince !== undefined) {
      for (const member of set) {
        if (member.address === this.target.address || !this.context.isResyncing(member)) continue;
        if (mine === null && !this.naturalPair(natural, member)) continue;
        const since = await this.context.outageRefillSince(this.target, member, this.ring.ahead(key, member), this.ring.replicas);
        failed ||= since === 'failed';
        if (since === null || since === 'failed' || (mine !== null && mine.cas > since.target)) continue;
        const read = await member.get(key);
        failed ||= read.status === 'failed';
        if (read.status !== 'hit' || read.item.cas <= since.member) continue;
        const copy = await this.earlierRefillsCopy(key, member, read.item);
        failed ||= copy === 'failed';
        if (copy !== false) continue;
        return this.takeFrom(key, member, read.item, mine, { recordCopy: true });
      }
    }
    if (failed) return 'failed';
    // The target, a natural member, misses the key, and the first stand-in, in refill, holds an item
    // written after every live sidecar applied the target's current out, while no natural member was
    // trusted in any view or the stand-in took every delete one took (TrustAgent.missedSince); and no
    // delete record on the target says it took a delete of the key in its current refill. Every delete
    // of the key since the item then reached the stand-in, or the target: the target's miss is older.
    if (mine === null && this.context.missedSince !== undefined && this.isMember(natural, this.target)) {
      for (const member of set) {
        if (member.address === this.target.address || !this.context.isResyncing(member) || natural.includes(member) || !this.firstStandIn(key, member)) continue;
        const since = await this.context.missedSince(this.target, member, natural);
        if (since === 'failed') return 'failed';
        if (since === null) continue;
        const read = await member.get(key);
        if (read.status === 'failed') return 'failed';
        if (read.status !== 'hit' || !since.accepts(read.item.cas)) continue;
        const record = await this.target.get(deleteRecordKey(key));
        if (record.status === 'failed') return 'failed';
        if (record.status === 'hit' && record.item.cas > since.target) continue;
        const copy = await this.earlierRefillsCopy(key, member, read.item);
        if (copy === 'failed') return 'failed';
        if (copy) continue;
        return this.takeFrom(key, member, read.item, mine, { recordCopy: true });
      }
    }
    if (mine === null) return 'skipped';
    if (missedBy !== null && !this.isMember(natural, this.target) && (await this.writtenWhileStandingIn(key, this.target, mine.cas)) && (await provedStale())) {
      return this.dropMine(key, mine.cas);
    }
    if (missedBy !== null && this.isMember(natural, this.target) && (await this.deletedWhileStandingIn(key, missedBy)) && (await provedStale())) {
      return this.dropMine(key, mine.cas);
    }
    for (const standIn of missedByStandIns) {
      const deleted = await this.deletedWhileStoodIn(key, standIn);
      if (deleted === 'failed') return 'failed';
      if (deleted) return this.dropMine(key, mine.cas);
    }
    const deletedSince = await this.deletedSinceLeft(key, set, mine);
    if (deletedSince === 'failed') return 'failed';
    if (deletedSince) return this.dropMine(key, mine.cas);
    return (await this.deletedWhileRefilling(key, set, natural, mine)) ?? 'skipped';
  }

  /** A member in refill's item, found a source: copied to the target, unless it expires now or the target holds it already. */
  private async takeFrom(key: Buffer, member: MemcachedNode, item: StoredItem, mine: StoredItem | null, opts: StoreOptions = {}): Promise<KeyOutcome> {
    if (this.stopReason !== null) return 'skipped';
    const exptime = exptimeForCopy(item.ttl);
    if (exptime === null) return this.expiring(key, item, mine);
    if (mine !== null && sameItem(mine, item)) return 'skipped';
    return this.store(key, member, item, exptime, mine, opts);
  }

  /**
   * The member is the first backend after the key's natural members in its order. If it has stood in
   * for them without a break since each one away now left (RunContext.stoodInThroughout), its miss
   * proves stale the item of any stand-in (the target, too, when it is one) written in their outage
   * (over its stand-in keys): a stand-in holds the key from a write sent to it with a natural member
   * away, and that write went to this member too (fewer than R trusted backends ahead of it: in the
   * placement). So the key was deleted since, or expired. A natural member's item may be from before,
   * when they were all trusted and this one was in no placement of the key: its miss says nothing of that.
   */
  private firstStandIn(key: Buffer, member: MemcachedNode): boolean {
    return this.ring.ringOrder(key).indexOf(member) === this.ring.replicas;
  }

  private stoodInThroughout(standIn: MemcachedNode, natural: readonly MemcachedNode[]): Promise<boolean> {
    return this.context.stoodInThroughout?.(standIn, natural) ?? Promise.resolve(false);
  }

  /**
   * Reconcile, no source and no trusted natural member's miss: when every other natural member is
   * in refill and misses the key, and one of them took every write of it since the target's item
   * was written (its refill key on the target is under the item's CAS), the key was deleted since
   * (or expired) while no trusted natural member held it: the target's copy goes. One that is out
   * may hold a copy of its own, and nothing is decided. null: nothing tells.
   */
  private async deletedWhileRefilling(
    key: Buffer,
    set: readonly MemcachedNode[],
    natural: readonly MemcachedNode[],
    mine: StoredItem,
  ): Promise<KeyOutcome | null> {
    const refillingSince = this.context.refillingSince;
    if (refillingSince === undefined) return null;
    const others = natural.filter((m) => m.address !== this.target.address);
    if (others.length === 0 || !others.every((m) => this.isMember(set, m) && this.context.isResyncing(m))) return null;
    let witness: { member: MemcachedNode; since: bigint } | null = null;
    for (const member of others) {
      const since = await refillingSince(member, this.target);
      if (since !== null && mine.cas > since) {
        witness = { member, since };
        break;
      }
    }
    if (witness === null) return null;
    for (const member of others) {
      const read = await member.get(key);
      if (read.status === 'failed') return 'failed';
      if (read.status !== 'miss') return null;
    }
    // Still in that refill once they answered: one leaving it may have failed a write.
    if (this.stopReason !== null || (await refillingSince(witness.member, this.target)) !== witness.since) return null;
    return this.dropMine(key, mine.cas);
  }

  /**
   * The target took the write of the source's item in its refill (RunContext.refillTookSince), so
   * what it holds now is as new or newer: another write since, or, when it misses the key, a delete
   * that reached it and is still on its way to the source (or failed there, and the source goes out).
   * Copied, the item would come back after that delete. Asked once per source in a run: a run during
   * which a source left trusted and came back does not count (TrustAgent.fillCounts), and is run again.
   */
  private async tookInRefill(source: MemcachedNode, cas: bigint): Promise<boolean> {
    const ask = this.context.refillTookSince;
    if (ask === undefined) return false;
    let since = this.refillTookSince.get(source.address);
    if (since === undefined) {
      since = ask(this.target, source);
      this.refillTookSince.set(source.address, since);
    }
    const c = await since;
    return c !== null && cas > c;
  }

  /**
   * The first stand-in, which misses the key, took a client's delete of it in its current time in
   * the key's placement: its delete record is over its stand-in keys (see writtenWhileStandingIn).
   * If it also stood in all along, it took every write and delete of the key since the natural
   * members away left, the last of them a delete: the target's copy, a natural member's, is from
   * before it (held when the target left, or a write sent before that and landed late) or was
   * deleted by it too. Either way the key is gone.
   */
  private async deletedWhileStandingIn(key: Buffer, standIn: MemcachedNode): Promise<boolean> {
    const record = await standIn.get(deleteRecordKey(key));
    return record.status === 'hit' && (await this.writtenWhileStandingIn(key, standIn, record.item.cas));
  }

  /**
   * A trusted stand-in that misses the key has been in its placement without a break since some
   * point (RunContext.stoodInSince), and holds its delete record over that point: it took every
   * write and delete of the key since, the last a delete (or the write after it expired). The
   * target's copy, whether the target is a natural member or a stand-in, is older than that delete
   * (written before that point, or landed late from a write sent before the target left), or was
   * taken by the stand-in too and deleted since. Either way the key is gone. 'failed': not known
   * (a read failed, a stage changed): the key is tried again rather than the copy kept.
   */
  private async deletedWhileStoodIn(key: Buffer, standIn: MemcachedNode): Promise<boolean | 'failed'> {
    const since = await this.context.stoodInSince?.(standIn, this.ring.ahead(key, standIn), this.ring.replicas);
    if (since === 'failed') return 'failed';
    if (since === undefined || since === null) return false;
    const record = await standIn.get(deleteRecordKey(key));
    if (record.status === 'failed') return 'failed';
    return record.status === 'hit' && record.item.cas > since;
  }

  /**
   * The target's item was sent to it before its current out applied (under RunContext.leftBefore's
   * `target` mark: held when it left, or a write that timed out on it and landed while it was out),
   * and another backend of the key's placement holds the key's delete record over its `other` mark:
   * a client's delete of the key was sent there after the target stopped taking writes, so after
   * every write the target's item can be. The item is older than that delete (or of a write
   * concurrent with it); a write acknowledged since went to the members then, not to the target,
   * and is no item of the target's either way. So the item is no latest write, and is dropped. Any
   * backend in the placement, whatever its role (a delete record goes on a stand-in or a natural
   * member in refill, before the delete). 'failed': a read failed and none proved it: tried again.
   */
  private async deletedSinceLeft(key: Buffer, set: readonly MemcachedNode[], mine: StoredItem): Promise<boolean | 'failed'> {
    const ask = this.context.leftBefore;
    if (ask === undefined) return false;
    let failed = false;
    for (const other of set) {
      if (other.address === this.target.address) continue;
      const marks = await ask(this.target, other);
      if (marks === 'failed') {
        failed = true;
        continue;
      }
      if (marks === null || mine.cas >= marks.target) continue;
      const record = await other.get(deleteRecordKey(key));
      if (record.status === 'failed') failed = true;
      else if (record.status === 'hit' && record.item.cas > marks.other) return true;
    }
    return failed ? 'failed' : false;
  }

  /** A stand-in's item written in its current time in the key's placement (see RunContext.standInSince). */
  private async writtenWhileStandingIn(key: Buffer, standIn: MemcachedNode, cas: bigint): Promise<boolean> {
    if (this.context.standInSince === undefined) return true;
    const since = await this.context.standInSince(standIn, this.ring.ahead(key, standIn), this.ring.replicas);
    return since !== null && cas > since;
  }

  /**
   * Writes the source's item to the target (add when it has none, else a set guarded by the CAS it
   * had), then re-reads the source: gone meanwhile (a delete through another sidecar) ──> our copy
   * is undone; the same item with another expiry (a touch, which keeps the CAS, reached the source
   * after our read, and maybe the target before our copy) ──> our copy is stored again with it,
   * guarded by the CAS our copy got (a newer write stays), and the source read once more.
   * recordCopy: the copy's CAS is then written to the key's copied record on the target.
   */
  private async store(key: Buffer, source: MemcachedNode, item: StoredItem, exptime: number, mine: StoredItem | null, opts: StoreOptions = {}): Promise<KeyOutcome> {
    const recording = opts.recordCopy === true ? this.context.recording : undefined;
    if (recording === undefined) return this.storeCopy(key, source, item, exptime, mine, opts);
    const id = recordingId(this.target, key);
    recording.set(id, (recording.get(id) ?? 0) + 1);
    try {
      return await this.storeCopy(key, source, item, exptime, mine, opts);
    } finally {
      const left = (recording.get(id) ?? 1) - 1;
      if (left > 0) recording.set(id, left);
      else recording.delete(id);
    }
  }

  private async storeCopy(key: Buffer, source: MemcachedNode, item: StoredItem, exptime: number, mine: StoredItem | null, opts: StoreOptions): Promise<KeyOutcome> {
    const { value, flags } = item;
    let stored = await this.target.store(
      mine === null ? { mode: 'add', key, value, flags, exptime, cas: 0n } : { mode: 'set', key, value, flags, exptime, cas: mine.cas },
    );
    if (stored.status === 'failed') return 'failed';
    if (stored.status !== 'stored') return 'skipped'; // a newer write landed on the target
    let ttl = item.ttl;
    for (let round = 0; round < EXPIRY_ROUNDS; round++) {
      const again = await source.get(key);
      if (again.status === 'miss') {
        if (stored.cas !== 0n) await this.target.delete(key, stored.cas);
        return 'skipped';
      }
      // Changed since (a write, which reached the target too), or the same expiry: the copy stands.
      if (again.status !== 'hit' || again.item.cas !== item.cas || ttl === null || again.item.ttl === null || sameExpiry(again.item.ttl, ttl)) break;
      ttl = again.item.ttl;
      const next = exptimeForCopy(ttl);
      if (next === null) {
        await this.target.delete(key, stored.cas); // expiring this second: so does the copy
        return 'skipped';
      }
      stored = await this.target.store({ mode: 'set', key, value, flags, exptime: next, cas: stored.cas });
      if (stored.status !== 'stored') return 'copied'; // a newer write replaced the copy
    }
    if (opts.recordCopy === true) return this.recordCopy(key, stored.cas);
    return 'copied';
  }

  /**
   * The item of a member in refill, over its mark: an earlier fill's Earlier refills copy onto it
   * (its copied record names the CAS), which is no write the member took in its refill, only newer
   * than the copy it replaced and maybe not the key's latest; a source by neither rule.
   */
  private async earlierRefillsCopy(key: Buffer, member: MemcachedNode, item: StoredItem): Promise<boolean | 'failed'> {
    // Checked after the member's item was read: a copy registered by then may be that item, its
    // record not written yet (it is registered from before its store until its record settles).
    if (this.context.recording?.has(recordingId(member, key))) return 'failed';
    const record = await member.get(copiedRecordKey(key));
    if (record.status === 'failed') return 'failed';
    return record.status === 'hit' && record.item.value.toString('latin1') === item.cas.toString();
  }

  /**
   * An Earlier refills copy onto the target, which is in refill: its CAS goes to the key's copied
   * record there, so that no later fill takes the copy for a write the target took in its refill
   * (earlierRefillsCopy; it is only newer than what the target held, maybe not the key's latest).
   * A write to the key after the copy gets another CAS, and the record no longer names it. Not
   * written (the target failed it): the copy stays unnamed, as one another sidecar reads between
   * the copy and the record is taken for a write (docs/trust.md, What it does not cover). A backend
   * that reports no CAS has nothing to name.
   */
  private async recordCopy(key: Buffer, cas: bigint): Promise<KeyOutcome> {
    if (cas === 0n) return 'copied';
    const record = await this.target.store({
      mode: 'set',
      key: copiedRecordKey(key),
      value: Buffer.from(cas.toString(), 'latin1'),
      flags: 0,
      exptime: LONGEST_RELATIVE_EXPIRY_S,
      cas: 0n,
    });
    return record.status === 'stored' ? 'copied' : 'failed';
  }

  /** refresh: the target's copy made what the key's authority holds (see the head comment). */
  private async refreshOne(key: Buffer, set: readonly MemcachedNode[]): Promise<KeyOutcome> {
    // The authority is a trusted natural member that held the key (ReplicaRing.holds): a stand-in's
    // miss proves nothing, and its hit may be a copy left from an earlier time it stood in.
    const authority = set.find((m) => !this.context.isResyncing(m) && this.ring.holds(key, m));
    if (authority === undefined || authority.address === this.target.address) return 'skipped';
    // The target first, as in reconcile: a write landing on it after this read fails our guarded store.
    const r = await this.target.get(key);
    if (r.status === 'failed') return 'failed';
    const mine = r.status === 'hit' ? r.item : null;
    if (mine !== null && mine.cas > this.mark) return 'skipped';
    const read = await authority.get(key);
    if (read.status === 'failed') return 'failed';
    if (this.stopReason !== null) return 'skipped';
    if (read.status === 'miss') {
      // Deleted (or never written) since this copy was made: it must not come back.
      return mine === null ? 'skipped' : this.dropMine(key, mine.cas);
    }
    const exptime = exptimeForCopy(read.item.ttl);
    if (exptime === null) return this.expiring(key, read.item, mine);
    if (mine !== null && sameItem(mine, read.item)) return 'skipped';
    return this.store(key, authority, read.item, exptime, mine);
  }

  /**
   * The source's item cannot be copied: its TTL is unknown (a binary-protocol backend: nothing
   * done), or it expires this second. Then the target's own copy (under the mark) goes too,
   * guarded by its CAS, as the copy would have expired it: a copy that a late write gave a
   * longer life (a `set` delayed on its way) must not outlive the original.
   */
  private async expiring(key: Buffer, source: StoredItem, mine: StoredItem | null): Promise<KeyOutcome> {
    return source.ttl !== 0 || mine === null ? 'skipped' : this.dropMine(key, mine.cas);
  }

  /** The target's own copy deleted, guarded by the CAS it was read with (a write since leaves it). */
  private async dropMine(key: Buffer, cas: bigint): Promise<KeyOutcome> {
    const gone = await this.target.delete(key, cas);
    return gone.status === 'deleted' ? 'pruned' : gone.status === 'failed' ? 'failed' : 'skipped';
  }

  /**
   * Reconcile: the target's own keys under the mark that the copy phase did not
   * see. Most are stale keys to delete; a few are keys the others hold but their
   * metadump missed (it is no snapshot: an item the LRU maintainer moves during
   * the crawl can be skipped), copied as in the copy phase. Rate-limited like the
   * copies, and in `inFlight`, so a client's delete waits for them too.
   */
  private async prune(): Promise<void> {
    const stale = new Map<string, bigint>();
    const listed = await this.dump(this.target, (line) => {
      const name = line.key.toString('latin1');
      if (line.cas < this.mark && !this.seen.has(name) && !isReserved(line.key)) stale.set(name, line.cas);
    });
    this.seen.clear();
    if (!listed) {
      this.markUnlisted(this.target);
      return;
    }
    const limiter = new RateLimiter(this.opts.keysPerSecond, Math.min(this.opts.keysPerSecond, this.opts.maxInFlight), this.opts.clock);
    this.pruneLeft = stale.size;
    for (const [name, cas] of stale) {
      this.pruneLeft--;
      if (this.stopReason !== null) break;
      await limiter.take();
      while (this.inFlight.size >= this.opts.maxInFlight) await Promise.race(this.inFlight.values());
      if (this.stopReason !== null || this.inFlight.has(name)) continue;
      const key = Buffer.from(name, 'latin1');
      const done = this.tidyOne(key, cas)
        .then((outcome) => this.count(outcome))
        .finally(() => this.inFlight.delete(name));
      this.inFlight.set(name, done);
    }
    this.pruneLeft = 0;
    await this.settled();
  }

  /** One of the target's own keys under the mark, in the prune phase. */
  private async tidyOne(key: Buffer, cas: bigint): Promise<KeyOutcome> {
    if (this.mode === 'reconcile') {
      const copied = await this.copyOne(key);
      if (copied !== 'skipped') return copied;
      return (await this.pruneOne(key, cas)) ? 'pruned' : 'skipped';
    }
    const set = this.ring.replicaSet(key);
    const natural = this.ring.naturalSet(key);
    if (!this.isMember(set, this.target) && !this.isMember(natural, this.target)) {
      // Neither a member nor a stand-in: nothing reads this copy, and a later reload could make it a stale member's.
      // A natural member's own copy stays: out of the placement it is only away, and comes back to it.
      // So does every copy of a target that left trusted during the run: away, it is in no key's set,
      // yet the copy it took as a stand-in may be the only one of the key's latest write.
      if (this.context.isResyncing(this.target)) return 'skipped';
      return (await this.target.delete(key, cas)).status === 'deleted' ? 'pruned' : 'skipped';
    }
    return this.mode === 'refresh' ? this.refreshOne(key, set) : 'skipped';
  }

  private async pruneOne(key: Buffer, cas: bigint): Promise<boolean> {
    const natural = this.ring.naturalSet(key);
    if (!this.isMember(natural, this.target)) return false;
    const others = natural.filter((m) => m.address !== this.target.address);
    if (others.length === 0) return false;
    for (const m of others) {
      if (!m.isUp() || this.context.isResyncing(m) || !this.ring.holds(key, m)) return false;
      if ((await m.get(key)).status !== 'miss') return false;
    }
    return (await this.target.delete(key, cas)).status === 'deleted';
  }

  private settled(): Promise<void> {
    return Promise.all(this.inFlight.values()).then(() => undefined);
  }

  private count(outcome: KeyOutcome): void {
    if (outcome === 'copied') {
      this.copied++;
      this.counters.copied();
    } else if (outcome === 'pruned') {
      this.pruned++;
      this.counters.pruned();
    } else {
      this.countSkipped(); // a failure in the prune phase: the copy stays, as a miss would leave it
    }
  }

  private countSkipped(): void {
    this.skipped++;
    this.counters.skipped();
  }
}

/** An Earlier refills copy onto `target` of `key`, in RunContext.recording. */
function recordingId(target: MemcachedNode, key: Buffer): string {
  return `${target.address} ${key.toString('latin1')}`;
}
