// A sidecar's view of every sidecar's down-marks (down-marks.ts), and of
// whether it is alone on these backends.
//
//   round   every watchMs, on each backend W that is up:
//             1. `ma replicached:present MD` (presence, below), awaited
//             2. `mg replicached:down:<Y>` for every other backend Y, and `stats`
//   marked  Y is distrusted while any W holds a count above 0 for it, or while some
//           W that is up gave no clean answer (0 or absent) to a read sent in the
//           last trustMs: it may hold a mark this sidecar has not seen yet. Either
//           way requests first wait a moment for the next answers (WatchRounds in
//           run-beacon.ts): when this process's own rounds went out late, and when
//           the answers that say "marked" are too old to act on (writes only)
//   alone   every sidecar decrements a key nobody stores, on each backend every
//           round, and memcached counts the miss (`decr_misses` in `stats`):
//           nothing is stored for it, and session handlers never decrement.
//           Misses that grew by more than this sidecar's own since its last look
//           (or went back: a restart) mean another sidecar is on the backends (or
//           a client decremented a missing key: taken as one). Alone: no such
//           growth seen on any backend in presenceMs.
//
// Why the decrement comes first, awaited: a sidecar whose read of W said "no
// mark" had counted on W before that read went out. A sidecar that raises a
// mark and then looks at the misses therefore sees, on every W whose reads the
// other still trusts, that the other is there.

import type { Backend } from '../backends/backend';
import type { MemcachedNode } from '../routing/node';
import { RESERVED_PREFIX } from './refill-claim';
import { parseCount, WatchRounds, type BeaconOptions } from './run-beacon';

/** The count of sidecars that marked a backend down, kept on every other backend. */
export function downMarkKey(address: string): Buffer {
  return Buffer.from(`${RESERVED_PREFIX}down:${address}`, 'latin1');
}

/** Every sidecar decrements it on every backend, every watch round; nobody stores it. */
export const PRESENCE_KEY = Buffer.from(`${RESERVED_PREFIX}present`, 'latin1');

const now = (): number => performance.now();

/** What one backend (W) said of another's (Y) marks. */
interface MarkSeen {
  /** The count, less this sidecar's own part: its own distrust is its run's, or the backend being down here. */
  marked: boolean;
  count: bigint;
  /** This sidecar's part in that count (DownMarks tells). */
  own: bigint;
  /** When the latest read answered 0 (or absent) was sent. */
  cleanSentAt: number;
  /** When the answer applied last was sent: an older one arriving late is ignored. */
  appliedSentAt: number;
}

/** The state of one backend's marks, summed over the backends that hold them. */
interface Summary {
  marked: boolean;
  /** When the latest answer above this sidecar's part was sent (of the holders that gave one). */
  markedSentAt: number;
  /** Past this, some backend's last clean answer is too old to trust. */
  trustedUntil: number;
}

/** What a watch saw, for the next one (a reload): by target address, then holder address. */
export type MarksSeen = ReadonlyMap<string, ReadonlyMap<string, Readonly<MarkSeen>>>;

export class MarkWatch {
  /** seen.get(Y).get(W): what W holds of Y's marks. */
  private readonly seen = new Map<MemcachedNode, Map<MemcachedNode, MarkSeen>>();
  private readonly summary = new Map<MemcachedNode, Summary>();
  private readonly keys = new Map<MemcachedNode, Buffer>();
  /** Per backend: its decr misses at this sidecar's last look, and this sidecar's own since. */
  private readonly presence = new Map<
    Backend,
    { misses: bigint | null; ownSince: number; firstLookAt: number | null; turn: Promise<boolean> }
  >();
  private othersSeenAt = -Infinity;
  private readonly asking = new Set<MemcachedNode>();
  /** Holders up at the last round: one back since holds marks not read yet. */
  private readonly upLastRound = new Set<MemcachedNode>();
  private timer: NodeJS.Timeout | null = null;
  private readonly rounds: WatchRounds;

  /** `trusted`: a backend seen marked is seen unmarked now. */
  constructor(
    private readonly backends: readonly Backend[],
    readonly opts: BeaconOptions,
    private readonly trusted: (node: MemcachedNode) => void = () => {},
  ) {
    this.rounds = new WatchRounds(opts);
    for (const w of backends) this.presence.set(w, { misses: null, ownSince: 0, firstLookAt: null, turn: Promise.resolve(true) });
    for (const y of backends) {
      this.keys.set(y, downMarkKey(y.address));
      const holders = new Map<MemcachedNode, MarkSeen>();
      for (const w of backends) if (w !== y) holders.set(w, { marked: false, count: 0n, own: 0n, cleanSentAt: 0, appliedSentAt: 0 });
      this.seen.set(y, holders);
      this.summary.set(y, { marked: false, markedSentAt: 0, trustedUntil: 0 });
    }
  }

  /** How long one sign of another sidecar counts: long enough to span a few of its rounds. */
  get presenceMs(): number {
    return this.opts.trustMs + 2 * this.opts.watchMs;
  }

  /** Starts from what a previous watch saw (a reload), for the backends both know. */
  adopt(known: MarksSeen, othersSeenAt: number): void {
    for (const [y, holders] of this.seen) {
      for (const [w, s] of holders) {
        const k = known.get(y.address)?.get(w.address);
        if (k !== undefined) Object.assign(s, { ...k, own: 0n, marked: k.count > 0n }); // the parts go on as the next DownMarks says
      }
    }
    this.othersSeenAt = othersSeenAt;
  }

  /** What a later watch (a reload) starts from. */
  handOver(): { marks: MarksSeen; othersSeenAt: number } {
    const marks = new Map(
      [...this.seen].map(([y, holders]) => [y.address, new Map([...holders].map(([w, s]) => [w.address, { ...s }]))]),
    );
    return { marks, othersSeenAt: this.othersSeenAt };
  }

  /** What is not known yet (no handed-over answer) is trusted until the first round, trustMs at most. */
  start(): void {
    const t = now();
    for (const holders of this.seen.values()) for (const s of holders.values()) if (s.appliedSentAt === 0) s.cleanSentAt = t;
    for (const w of this.backends) if (w.isUp()) this.upLastRound.add(w);
    for (const y of this.backends) this.summarize(y);
    this.timer = setInterval(() => this.readAll(), this.opts.watchMs);
    this.timer.unref();
    this.readAll();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Some sidecar marked it down, or a backend that may hold such a mark has not
   * answered lately. Never while not watching, nor while it is down here.
   */
  /** Some holder's latest answer counted another sidecar's mark (staleness aside). */
  countSeen(node: MemcachedNode): boolean {
    return this.summary.get(node)?.marked === true;
  }

  marked(node: MemcachedNode): boolean {
    const s = this.summary.get(node);
    if (s === undefined || this.timer === null || !node.isUp()) return false;
    return s.marked || now() > s.trustedUntil;
  }

  /** Requests of its keys wait for the next answers, over every holder (WatchRounds.holdsBackOn). */
  holdsBack(node: MemcachedNode, t: number, decisions: boolean): boolean {
    const s = this.summary.get(node);
    if (s === undefined || this.timer === null) return false;
    return this.rounds.holdsBackOn(s.marked, s.markedSentAt, s.trustedUntil, t, decisions);
  }

  /** A mark this process raised or lowered, as the holder answered (sentAt: when it was asked). */
  saw(target: MemcachedNode, holder: MemcachedNode, count: bigint, sentAt: number): void {
    const s = this.seen.get(target)?.get(holder);
    if (s === undefined || sentAt < s.appliedSentAt) return;
    s.appliedSentAt = sentAt;
    s.count = count;
    s.marked = count > s.own;
    if (!s.marked) s.cleanSentAt = sentAt;
    this.summarize(target);
  }

  /** This sidecar's part in the holder's count for `target` grew (+1) or left it (-1). */
  ownPart(target: MemcachedNode, holder: MemcachedNode, delta: 1n | -1n): void {
    const s = this.seen.get(target)?.get(holder);
    if (s === undefined) return;
    s.own = s.own + delta < 0n ? 0n : s.own + delta;
    s.marked = s.count > s.own;
    this.summarize(target);
  }

  /**
   * Whether another sidecar may be on these backends, after a presence round sent
   * now to every backend up but `except`: true unless none showed up in presenceMs.
   * A backend that cannot be asked, or was watched for less than presenceMs (this
   * sidecar just started), proves nothing: then another sidecar is assumed.
   */
  async othersPresent(except: MemcachedNode): Promise<boolean> {
    const asked = this.backends.filter((w) => w !== except && w.isUp());
    const answered = await Promise.all(asked.map((w) => this.lookForOthers(w)));
    if (answered.length === 0 || answered.some((ok) => !ok)) return true;
    const t = now();
    const watchedLong = asked.every((w) => {
      const first = this.presence.get(w)!.firstLookAt;
      return first !== null && t - first >= this.presenceMs;
    });
    return !watchedLong || t - this.othersSeenAt <= this.presenceMs;
  }

  private summarize(y: MemcachedNode): void {
    let marked = false;
    let markedSentAt = -Infinity;
    let trustedUntil = Infinity;
    for (const [w, s] of this.seen.get(y) ?? []) {
      if (!w.isUp()) continue; // asked nothing while down: a mark it holds is read again when it is back
      if (s.marked) {
        marked = true;
        markedSentAt = Math.max(markedSentAt, s.appliedSentAt);
      }
      trustedUntil = Math.min(trustedUntil, s.cleanSentAt + this.opts.trustMs);
    }
    const summary = this.summary.get(y);
    if (summary === undefined) return;
    const was = summary.marked;
    Object.assign(summary, { marked, markedSentAt, trustedUntil });
    if (was && !marked) this.trusted(y);
  }

  /**
   * Decrements the holder's presence key (a miss), then reads its decr misses; false when
   * it did not answer. One at a time per holder, so that its own misses are counted exactly.
   */
  private lookForOthers(w: Backend): Promise<boolean> {
    const p = this.presence.get(w)!;
    p.turn = p.turn.then(async () => {
      if ((await w.arith('decr', PRESENCE_KEY, 1n)).status === 'failed') return false;
      p.ownSince++;
      const stats = await w.stats();
      if (!(stats instanceof Map)) return false;
      const misses = BigInt(stats.get('decr_misses') ?? '-1');
      if (p.misses !== null && misses !== p.misses + BigInt(p.ownSince)) this.othersSeenAt = now();
      p.misses = misses;
      p.ownSince = 0;
      p.firstLookAt ??= now();
      return true;
    });
    return p.turn;
  }

  /** One round on one holder: the presence miss, then what it holds of every other backend's marks. */
  private async readFrom(w: Backend): Promise<void> {
    await this.lookForOthers(w);
    await Promise.all(
      this.backends.map(async (y) => {
        if (y === w) return;
        const sentAt = now();
        const r = await w.get(this.keys.get(y)!);
        if (r.status === 'miss') this.saw(y, w, 0n, sentAt);
        else if (r.status === 'hit') this.saw(y, w, parseCount(r.item.value), sentAt);
      }),
    );
  }

  private readAll(): void {
    const t = now();
    this.rounds.sent(t);
    for (const w of this.backends) {
      if (!w.isUp()) this.upLastRound.delete(w);
      else if (!this.upLastRound.has(w)) {
        // Back: what it holds is read now; meanwhile its clean answers count from now, as at start.
        this.upLastRound.add(w);
        for (const [y, holders] of this.seen) if (y !== w) holders.get(w)!.cleanSentAt = t;
      }
    }
    for (const y of this.backends) this.summarize(y); // holders that went down or came back
    for (const w of this.backends) {
      if (!w.isUp() || this.asking.has(w)) continue;
      this.asking.add(w);
      void this.readFrom(w).finally(() => this.asking.delete(w));
    }
  }
}
