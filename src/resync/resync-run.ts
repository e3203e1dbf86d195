// One resync: refill a backend that came back (after being down, or restarted
// empty) with the items it should hold.
//
// Two modes. refill: the backend restarted (new pid), so it is empty and only
// lacks items: copies are adds. reconcile: the same process came back (it hung,
// or was cut off), so it also holds items that changed or were deleted while it
// was away, and may even have run late the writes that timed out on it (a stale
// session lock). It must converge: copies overwrite a different value, and its
// own keys that the others do not hold are deleted. Which items predate the run
// is told by a CAS mark: the run begins by storing an (already expired) item on
// the target; memcached's CAS counter only grows, so an item with a lower CAS
// was written before the run, and one with a higher CAS was written since, by a
// router that sends every write to the whole replica set: it is never touched.
//
//   mark   reconcile only: `ms <mark> T-1` on the target, its CAS is the mark
//   list   each other live backend: `lru_crawler metadump all` ──> keep the keys
//          whose replica set, as the router computes it now, holds both the
//          lister and the target (the lister then got every write to the key)
//   quiet  wait until deletes sent before the run began have landed or timed out
//   copy   per key, rate-limited, at most maxInFlight at once:
//          read from a live member (set order) ──miss──> skip
//            └─hit──> add to the target (never overwrites) ──not stored──> skip: it has a newer value
//                       └─stored──> re-read the member ──gone──> delete our copy (CAS-guarded)
//          reconcile reads the target first: miss ──> add as above; same value and
//          flags ──> skip; different, with a CAS under the mark ──> `ms` guarded by
//          that CAS (EX: a newer write landed, leave it) ──> re-read as above;
//          CAS over the mark (written since the run began) ──> skip
//   hold   only when some keys could not be listed and context.holdMs > 0 (SASL
//          backends: the binary protocol has no metadump, so nothing is listed):
//          the target stays distrusted that long, the longest lifetime clients give
//          their items. By then every item it lacks has been written to it again or
//          has expired, and every stale item it held has expired too.
//   prune  reconcile only: metadump the target; each key under the mark that the
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
// a newer value written since is left alone). Left open: such a delete that
// reaches the member more than our add + re-read later than the target, and the
// round trip between our add and its undo, when a reader of the target sees it.

import type { Backend } from '../backends/backend';
import type { MemcachedNode, StoredItem } from '../routing/node';
import { exptimeForCopy } from '../routing/replicated-router';
import type { ReplicaRing } from '../routing/ring';
import { RateLimiter, type Clock } from './rate-limiter';

/** refill: the target restarted empty; reconcile: the same process came back (see the head comment). */
export type ResyncMode = 'refill' | 'reconcile';

/** What a run needs to know beyond its target: its mode, and which members are resyncing themselves. */
export interface RunContext {
  /** Decided as the run begins (the target's identity is read asynchronously). */
  mode: Promise<ResyncMode>;
  isResyncing(node: MemcachedNode): boolean;
  /** How long the target stays distrusted after a run that could not list every key (see hold); 0: not at all. */
  holdMs: number;
}

/** The key whose CAS marks the start of a reconcile run; stored already expired, so never seen. */
export const MARK_KEY = Buffer.from('replicached:resync-mark');

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
  /** Reconcile: keys the copy phase took, left out of the prune phase. */
  private readonly seen = new Set<string>();
  /** Keys deleted while the listing runs; null once it is over. */
  private deletedWhileListing: Set<string> | null = new Set();
  private stopReason: { outcome: 'flushed' | 'aborted'; reason: string } | null = null;
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

  get pending(): number {
    return this.queue.size;
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
    if (this.deletedWhileListing !== null && this.ring.replicaSet(Buffer.from(name, 'latin1')).includes(this.target)) {
      this.deletedWhileListing.add(name);
    }
    if (this.queue.delete(name)) this.countSkipped();
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
    if (this.mode === 'reconcile') await this.takeMark();
    await this.list();
    this.deletedWhileListing = null;
    // In short naps, so that an abort does not wait out the quiet time.
    for (let left = this.quietLeft(); left > 0 && this.stopReason === null; left = this.quietLeft()) {
      await this.opts.clock.sleep(Math.min(left, 50));
    }
    this.phase = 'copying';
    await this.copyAll();
    await this.settled();
    this.queue.clear();
    if (this.mode === 'reconcile' && this.stopReason === null) {
      this.phase = 'pruning';
      await this.prune();
    }
    if (this.unlisted.length > 0 && this.context.holdMs > 0 && this.stopReason === null) {
      this.phase = 'holding';
      this.counters.holding(this.context.holdMs);
      await this.hold(this.context.holdMs);
    }
    this.phase = 'finished';
    const counts = { mode: this.mode, copied: this.copied, skipped: this.skipped, pruned: this.pruned, unlisted: this.unlisted, heldMs: this.heldMs };
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
        if (lister.isUp()) this.unlisted.push(lister.address);
        continue;
      }
      let listed = false;
      for (let attempt = 0; attempt < this.opts.listAttempts; attempt++) {
        if (this.stopReason !== null || !lister.isUp()) break;
        if (attempt > 0) await this.opts.clock.sleep(100 * 2 ** attempt);
        const r = await lister.metadumpEach((line) => this.consider(lister, line.key));
        if (r.status === 'ok') {
          listed = true;
          break;
        }
      }
      if (this.stopReason !== null) return;
      if (!listed && lister.isUp()) this.unlisted.push(lister.address);
    }
  }

  private consider(lister: MemcachedNode, key: Buffer): void {
    if (this.stopReason !== null) return;
    const name = key.toString('latin1');
    if (this.deletedWhileListing?.has(name)) return;
    const set = this.ring.replicaSet(key);
    if (set.includes(this.target) && set.includes(lister)) this.queue.add(name);
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
      if (this.mode === 'reconcile') this.seen.add(name);
      // From here to inFlight.set nothing yields: deleting(name) sees the key in one place or the other.
      const copy = this.copyOne(Buffer.from(name, 'latin1')).then((copied) => {
        this.inFlight.delete(name);
        if (copied) this.countCopied();
        else this.countSkipped();
      });
      this.inFlight.set(name, copy);
    }
  }

  /** True when the target got the item from this copy. Never rejects (backends resolve failures). */
  private async copyOne(key: Buffer): Promise<boolean> {
    const set = this.ring.replicaSet(key);
    if (!set.includes(this.target)) return false;
    // Reconcile: the target's item is read BEFORE the source, so any write that
    // lands on the target after this read changes its CAS and fails our `ms`.
    let mine: StoredItem | null = null;
    if (this.mode === 'reconcile') {
      const r = await this.target.get(key);
      if (r.status === 'failed') return false;
      if (r.status === 'hit') {
        if (r.item.cas > this.mark) return false; // written since the run began: newer than any source
        mine = r.item;
      }
    }
    for (const member of set) {
      if (member === this.target) continue;
      const read = await member.get(key);
      if (read.status !== 'hit') continue;
      const exptime = exptimeForCopy(read.item.ttl);
      if (exptime === null || this.stopReason !== null) return false;
      const { value, flags } = read.item;
      if (mine !== null && mine.flags === flags && mine.value.equals(value)) return false;
      const stored = await this.target.store(
        mine === null
          ? { mode: 'add', key, value, flags, exptime, cas: 0n }
          : { mode: 'set', key, value, flags, exptime, cas: mine.cas },
      );
      if (stored.status !== 'stored') return false;
      const again = await member.get(key);
      if (again.status === 'miss') {
        if (stored.cas !== 0n) await this.target.delete(key, stored.cas);
        return false;
      }
      return true;
    }
    return false;
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
    const listed = await this.target.metadumpEach((line) => {
      const name = line.key.toString('latin1');
      if (line.cas < this.mark && !this.seen.has(name)) stale.set(name, line.cas);
    });
    this.seen.clear();
    if (listed.status !== 'ok') {
      this.unlisted.push(this.target.address);
      return;
    }
    const limiter = new RateLimiter(this.opts.keysPerSecond, Math.min(this.opts.keysPerSecond, this.opts.maxInFlight), this.opts.clock);
    for (const [name, cas] of stale) {
      if (this.stopReason !== null) break;
      await limiter.take();
      while (this.inFlight.size >= this.opts.maxInFlight) await Promise.race(this.inFlight.values());
      if (this.stopReason !== null || this.inFlight.has(name)) continue;
      const key = Buffer.from(name, 'latin1');
      const done = this.copyOne(key)
        .then(async (copied) => {
          if (copied) this.countCopied();
          else if (await this.pruneOne(key, cas)) {
            this.pruned++;
            this.counters.pruned();
          }
        })
        .finally(() => this.inFlight.delete(name));
      this.inFlight.set(name, done);
    }
    await this.settled();
  }

  private async pruneOne(key: Buffer, cas: bigint): Promise<boolean> {
    const natural = this.ring.ringOrder(key).slice(0, this.ring.replicas);
    if (!natural.includes(this.target)) return false;
    const others = natural.filter((m) => m !== this.target);
    if (others.length === 0) return false;
    for (const m of others) {
      if (!m.isUp() || this.context.isResyncing(m)) return false;
      if ((await m.get(key)).status !== 'miss') return false;
    }
    return (await this.target.delete(key, cas)).status === 'deleted';
  }

  private settled(): Promise<void> {
    return Promise.all(this.inFlight.values()).then(() => undefined);
  }

  private countCopied(): void {
    this.copied++;
    this.counters.copied();
  }

  private countSkipped(): void {
    this.skipped++;
    this.counters.skipped();
  }
}
