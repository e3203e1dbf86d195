// Down-marks: a backend one sidecar marked down is distrusted by every sidecar.
//
// A sidecar that marks a backend down routes its keys without it: the next
// member decides add/cas/incr, and writes skip it. A sidecar that still reaches
// it would go on reading it first and deciding on it: two lock holders, and
// reads of what the first sidecar's writes replaced. After a kill every sidecar
// is refused alike. After a stall (no reply for requestTimeoutMs) not so: a
// memcached thread starved of CPU, or a path that loses one sidecar's packets,
// stalls for some sidecars only.
//
//   raise    on 'down': `ma replicached:down:<address> N<ttl> J1` on every other
//            backend up, renewed (touch) every renewMs; a holder that comes up
//            later gets its part at the next renewal
//   lower    once this sidecar trusts the backend again (its run ended complete):
//            `decr` by what it added; a dead sidecar's part expires ttl after its
//            last renewal
//   watch    every sidecar reads the marks (mark-watch.ts) and distrusts a marked
//            backend as it does one another sidecar resyncs: read last, deciding nothing
//   notice   after a stall, this sidecar's writes of the keys the backend is a member
//            of wait until trustMs + margin after the mark was raised: by then every
//            other sidecar has seen it, or distrusts the backend for want of a fresh
//            read. A sidecar alone on the backends skips the wait, and so does one
//            refused (a refusal reaches every sidecar alike).
//
//   sidecar A   Y stalls ──> down, raise on X, Z ─────── notice ───────> route without Y
//   sidecar B   reads Y first, decides on Y ──> reads the mark (≤ watchMs) ──> Y last, X decides
//
// Timings are this process's monotonic clock, as in run-beacon.ts.

import type { MemcachedNode } from '../routing/node';
import { downMarkKey, type MarkWatch } from './mark-watch';

/** Over trustMs: clock granularity, and a watcher's timer firing a little late (as run-beacon.ts). */
const NOTICE_MARGIN_MS = 100;

const now = (): number => performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** This sidecar's mark of one backend: its part in the count on each holder. */
interface Mark {
  key: Buffer;
  /** The holders that count this sidecar's 1, and when it last kept each alive. */
  renewedAt: Map<MemcachedNode, number>;
  renewer: NodeJS.Timeout;
  /** The renewal in flight: a second caller waits for it rather than adding twice. */
  renewing: Promise<void> | null;
}

/** What the next DownMarks (a reload) takes over: the marks (target, then holder: last renewal), and the notices running. */
export interface MarksHandOver {
  marked: ReadonlyMap<string, ReadonlyMap<string, number>>;
  noticeUntil: ReadonlyMap<string, number>;
}

export class DownMarks {
  private readonly marks = new Map<MemcachedNode, Mark>();
  /** Backends whose notice runs: writes of their keys wait for it. */
  private readonly notices = new Map<MemcachedNode, Promise<void>>();
  private closed = false;

  constructor(
    private readonly backends: readonly MemcachedNode[],
    private readonly watch: MarkWatch,
  ) {}

  /** True while any notice runs (the router's common case asks nothing more). */
  get noticing(): boolean {
    return this.notices.size > 0;
  }

  /** Resolves when this sidecar may route `node`'s keys without it; undefined: now. */
  notice(node: MemcachedNode): Promise<void> | undefined {
    return this.notices.get(node);
  }

  /**
   * `target` was marked down here. The notice (after a stall) starts at once, so a
   * request failing over from it waits; it ends trustMs + margin after the mark
   * is raised, or as soon as no other sidecar shows up.
   */
  raise(target: MemcachedNode, stalled: boolean): void {
    if (this.closed) return;
    const raising = this.mark(target);
    if (!stalled) return;
    const notice = raising
      .then(async (raisedAt) => {
        if (!(await this.watch.othersPresent(target))) return;
        const left = raisedAt + this.watch.opts.trustMs + NOTICE_MARGIN_MS - now();
        if (left > 0) await sleep(left);
      })
      .finally(() => {
        if (this.notices.get(target) === notice) this.notices.delete(target);
      });
    this.notices.set(target, notice);
  }

  /** This sidecar trusts `target` again: renewals stop and its part leaves every holder's count. */
  async lower(target: MemcachedNode): Promise<void> {
    const mark = this.marks.get(target);
    if (mark === undefined) return;
    this.marks.delete(target);
    clearInterval(mark.renewer);
    await mark.renewing;
    await Promise.all(
      [...mark.renewedAt].map(async ([holder, renewedAt]) => {
        if (now() - renewedAt > this.lapseMs) {
          this.watch.ownPart(target, holder, -1n); // expired: nothing of ours is left to take back
          return;
        }
        const sentAt = now();
        const r = await holder.arith('decr', mark.key, 1n);
        // Not taken back (the holder failed): it expires; meanwhile it is another sidecar's to this one.
        this.watch.ownPart(target, holder, -1n);
        if (r.status === 'ok') this.watch.saw(target, holder, r.value, sentAt);
      }),
    );
  }

  /** What the next DownMarks (a reload) takes over. */
  handOver(): MarksHandOver {
    const t = now();
    return {
      marked: new Map(
        [...this.marks].map(([target, mark]) => [target.address, new Map([...mark.renewedAt].map(([h, at]) => [h.address, at]))]),
      ),
      // A notice ends at the latest trustMs + margin from now: what it still waits for is no later.
      noticeUntil: new Map([...this.notices.keys()].map((b) => [b.address, t + this.watch.opts.trustMs + NOTICE_MARGIN_MS])),
    };
  }

  /** Takes over a previous DownMarks' marks and notices, for the backends both know; before the watch starts. */
  adopt(previous: MarksHandOver): void {
    for (const b of this.backends) {
      const parts = previous.marked.get(b.address);
      if (parts !== undefined) {
        const mark = this.newMark(b);
        for (const holder of this.backends) {
          const renewedAt = parts.get(holder.address);
          if (renewedAt === undefined) continue;
          mark.renewedAt.set(holder, renewedAt);
          this.watch.ownPart(b, holder, 1n);
        }
      }
      const until = previous.noticeUntil.get(b.address);
      if (until === undefined) continue;
      const notice = sleep(Math.max(0, until - now())).finally(() => {
        if (this.notices.get(b) === notice) this.notices.delete(b);
      });
      this.notices.set(b, notice);
    }
  }

  /** Renewals stop; the parts stay counted (a reload's next DownMarks took them over), or expire (ttl). */
  close(): void {
    this.closed = true;
    for (const mark of this.marks.values()) clearInterval(mark.renewer);
    this.marks.clear();
  }

  /** Raises this sidecar's part on every holder up; resolves when the last answered (its clock). */
  private async mark(target: MemcachedNode): Promise<number> {
    if (!this.marks.has(target)) this.newMark(target);
    await this.renew(target);
    return now();
  }

  private newMark(target: MemcachedNode): Mark {
    const renewer = setInterval(() => void this.renew(target), this.watch.opts.renewMs);
    renewer.unref();
    const mark: Mark = { key: downMarkKey(target.address), renewedAt: new Map(), renewer, renewing: null };
    this.marks.set(target, mark);
    return mark;
  }

  private get lapseMs(): number {
    return (this.watch.opts.ttlSeconds - 1) * 1000;
  }

  /** Every holder up gets its part (added, or kept alive by a touch). */
  private renew(target: MemcachedNode): Promise<void> {
    const mark = this.marks.get(target);
    if (mark === undefined) return Promise.resolve();
    mark.renewing ??= Promise.all(this.backends.map((holder) => this.renewOn(mark, target, holder))).then(() => {
      mark.renewing = null;
    });
    return mark.renewing;
  }

  private async renewOn(mark: Mark, target: MemcachedNode, holder: MemcachedNode): Promise<void> {
    if (holder === target || !holder.isUp()) return;
    const { ttlSeconds } = this.watch.opts;
    const renewedAt = mark.renewedAt.get(holder);
    if (renewedAt !== undefined) {
      const sentAt = now();
      // Not renewed for the ttl (the holder was away): it may have expired and been raised
      // again by another sidecar, without our part. Added anew (counted twice at worst,
      // which only keeps the mark up until the extra part expires).
      const lapsed = sentAt - renewedAt > this.lapseMs;
      const r = await holder.touch(mark.key, ttlSeconds);
      if (r.status === 'failed') return;
      if (r.status === 'touched' && !lapsed) {
        mark.renewedAt.set(holder, sentAt);
        return;
      }
      mark.renewedAt.delete(holder);
      this.watch.ownPart(target, holder, -1n);
    }
    const sentAt = now();
    const r = await holder.arith('incr', mark.key, 1n, { initial: 1n, exptime: ttlSeconds });
    if (r.status !== 'ok') return;
    if (this.marks.get(target) !== mark) {
      await holder.arith('decr', mark.key, 1n); // lowered meanwhile: take it back
      return;
    }
    mark.renewedAt.set(holder, sentAt);
    this.watch.ownPart(target, holder, 1n);
    this.watch.saw(target, holder, r.value, sentAt);
  }
}
