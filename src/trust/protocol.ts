// The trust protocol's state and decision function: which role each backend
// plays, agreed by every live sidecar (docs/trust.md). No I/O and no timers:
// board.ts feeds it what the backends said, and the time comes in as an argument.
//
//   propose   a reason seen here ──> seen[Y] = next stage            (hold Y's keys)
//   adopt     a record with a newer seen[Y] ──> seen[Y] = it          (hold Y's keys)
//   publish   board.ts writes seen[Y] once the older view's requests ended (the ack)
//   apply     every live record acknowledged seen[Y], or one applied it ──> applied[Y]
//   route     placement by applied stages; a key whose placement differs under the
//             acknowledged stages waits, and so does every key while the view is stale

export type Role = 'trusted' | 'refill' | 'out';

export interface Stage {
  readonly epoch: number;
  readonly role: Role;
}

export const INITIAL_STAGE: Stage = Object.freeze({ epoch: 0, role: 'trusted' });

/**
 * A peer whose record has not changed for this long is forgotten (roundDone): it wrote its last
 * record long past that record's 10 s expiry, so only a peer that wrote again can be read again,
 * and it then counts as new. Every restart of a sidecar is a new peer: without this, each one
 * stays in memory, and in every scan of the peers, for as long as this sidecar runs.
 */
export const FORGET_PEER_AFTER_MS = 5 * 60 * 1000;
/** How many writers' ids TrustState.hasRead keeps: one forgotten only makes its marks unused. */
const WRITERS_KEPT = 4096;

const RANK: Readonly<Record<Role, number>> = { trusted: 0, refill: 1, out: 2 };

/** a is newer than b: a higher epoch, or at the same epoch the stronger role (out > refill > trusted). */
export function isNewer(a: Stage, b: Stage): boolean {
  return a.epoch !== b.epoch ? a.epoch > b.epoch : RANK[a.role] > RANK[b.role];
}

/**
 * The out epoch at which a backend left trusted(e), for a sidecar that next applied its stage at
 * out epoch `out` (it may have missed the stages between, stalled or catching up from records).
 * The only stage after trusted(e) is out(e+1); a trusted stage after that would be at e+3 at the
 * earliest (refill at e+2), and leaving it would take e+4, unless an out(e+3) beat it. So up to
 * e+3 it left at e+1, and its stand-in keys of e+1 mark where the writes it missed begin; unless
 * this sidecar published an acknowledgement of a later trusted stage (`published`), which others
 * may then have applied. Else `out`: no earlier.
 */
export function leftTrusted(from: Stage, out: number, published: Stage | undefined): number {
  const trustedSince = published !== undefined && published.role === 'trusted' && published.epoch > from.epoch;
  return out - from.epoch <= 3 && !trustedSince ? from.epoch + 1 : out;
}

/** The epoch at which a backend that is not trusted went out: its stage's, or (in refill) the one before. */
export function outEpoch(stage: Stage): number {
  return stage.role === 'out' ? stage.epoch : stage.epoch - 1;
}

function atLeast(a: Stage | undefined, b: Stage): boolean {
  return a !== undefined && !isNewer(b, a);
}

/** What one sidecar publishes on every backend (the only message of the protocol). */
export interface TrustRecord {
  readonly id: string;
  readonly seq: number;
  readonly applied: Readonly<Record<string, Stage>>;
  readonly seen: Readonly<Record<string, Stage>>;
  readonly reach: readonly string[];
  /** It stopped acting for good (a clean shutdown): nobody waits for it any more. */
  readonly left?: boolean;
  /**
   * The sidecars whose records it counts (its live peers): each of them is waited for in every
   * agreement it makes. Absent from a sidecar that predates the field: taken as naming everyone.
   */
  readonly knows?: readonly string[];
  /**
   * Per backend away now: the out epoch it went away at, and the backends seen here taking writes
   * (trusted or in refill, not going out) while it was out. Only from a sidecar that had watched
   * the backend trusted (see TrustState.outlastedBy).
   */
  readonly outlasted?: Readonly<Record<string, Outlasted>>;
}

export interface Outlasted {
  readonly epoch: number;
  readonly by: readonly string[];
  /** The out epoch at which it left trusted (earlier than `epoch` when it went out again from refill). */
  readonly since?: number;
  /**
   * Of `by`, each seen taking the writes it missed only while in refill, with the epoch of the
   * first such refill: while that refill lasts, they are on it as refill sources (docs/trust.md,
   * Refill sources); and a write is acknowledged only where a trusted backend took it too.
   */
  readonly refill?: Readonly<Record<string, number>>;
}

export function encodeRecord(r: TrustRecord): Buffer {
  return Buffer.from(JSON.stringify(r));
}

function isStage(v: unknown): v is Stage {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Record<string, unknown>;
  return Number.isSafeInteger(s.epoch) && (s.role === 'trusted' || s.role === 'refill' || s.role === 'out');
}

function isStageMap(v: unknown): v is Record<string, Stage> {
  return typeof v === 'object' && v !== null && Object.values(v).every(isStage);
}

function isOutlastedMap(v: unknown): v is Record<string, Outlasted> {
  if (typeof v !== 'object' || v === null) return false;
  return Object.values(v).every((o: unknown) => {
    if (typeof o !== 'object' || o === null) return false;
    const { epoch, by, since, refill } = o as Record<string, unknown>;
    if (refill !== undefined && (typeof refill !== 'object' || refill === null || !Object.values(refill).every((e) => Number.isSafeInteger(e)))) return false;
    return Number.isSafeInteger(epoch) && Array.isArray(by) && by.every((b) => typeof b === 'string') && (since === undefined || Number.isSafeInteger(since));
  });
}

/** A record as read from a backend; null when it is not one (another writer's key, a torn value). */
export function decodeRecord(value: Buffer): TrustRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(value.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const r = v as Record<string, unknown>;
  if (typeof r.id !== 'string' || !Number.isSafeInteger(r.seq) || !isStageMap(r.applied) || !isStageMap(r.seen)) return null;
  if (!Array.isArray(r.reach) || !r.reach.every((a) => typeof a === 'string')) return null;
  if (r.left !== undefined && r.left !== true) return null;
  if (r.knows !== undefined && (!Array.isArray(r.knows) || !r.knows.every((id) => typeof id === 'string'))) return null;
  if (r.outlasted !== undefined && !isOutlastedMap(r.outlasted)) return null;
  return r as unknown as TrustRecord;
}

export interface TrustTiming {
  /** A view is fresh while every backend not out had a round that began less than this ago (L). */
  leaseMs: number;
  /** A record whose seq stood still this long is not waited for (D = L·(1+ρ)² + margin). */
  silentMs: number;
}

/** ρ: how far a process's clock rate may be from real time. */
export const CLOCK_DRIFT = 0.1;

export function timingFor(leaseMs: number): TrustTiming {
  return { leaseMs, silentMs: Math.ceil(leaseMs * (1 + CLOCK_DRIFT) ** 2) + 100 };
}

/**
 * L = 4 s: a round on a memcached starved of CPU behind a client's burst can take seconds, and
 * a stale view holds every request; D is then 4.94 s (how long a sidecar that died unannounced
 * is waited for, once).
 */
export const DEFAULT_TIMING: Readonly<TrustTiming> = Object.freeze(timingFor(4000));

/** Why a stage was proposed, for logs; 'reconfigured': a reload made the backend the first of keys it holds no copy of. */
export type Reason = 'failed' | 'restarted' | 'reachable' | 'filled' | 'reconfigured';

interface Peer {
  seq: number;
  /** When this process last saw its seq grow. */
  changedAt: number;
  record: TrustRecord;
}

/** What a key's placement is under one set of stages. */
export interface Placement {
  /**
   * In ring order: the first R trusted backends, and each backend in refill that would be one
   * of them if it were trusted (its natural members in refill among them): it takes the
   * key's writes while its refill brings it the rest.
   */
  members: string[];
  /** The first trusted natural member: it decides, and its miss is authoritative. null: none. */
  authority: string | null;
}

export type RoleOf = (address: string) => Role;

/**
 * Placement of a key from its ring order (every backend, clockwise from the key) and
 * the role of each backend. Pure: the router and the hold rule both use it.
 */
export function place(order: readonly string[], replicas: number, roleOf: RoleOf): Placement {
  const members: string[] = [];
  let trusted = 0;
  let authority: string | null = null;
  // Until the R-th trusted one: a backend in refill here would be one of the first R trusted.
  for (let i = 0; i < order.length && trusted < replicas; i++) {
    const role = roleOf(order[i]);
    if (role === 'out') continue;
    members.push(order[i]);
    if (role !== 'trusted') continue;
    trusted++;
    if (authority === null && i < replicas) authority = order[i];
  }
  return { members, authority };
}

export interface StageChange {
  address: string;
  from: Stage;
  to: Stage;
  reason?: Reason;
  /**
   * Applied here because every live record acknowledged it (not merely because a record applied
   * it): this sidecar has read, with those acknowledgements, every change they were published with.
   */
  byAll?: true;
}

/** One sidecar's side of the protocol. */
export class TrustState {
  private readonly applied = new Map<string, Stage>();
  /** Acknowledged here: routes nothing its change would move until applied. */
  private readonly seen = new Map<string, Stage>();
  /** What this sidecar's record says it acknowledged: `seen` once the older view drained. */
  private readonly published = new Map<string, Stage>();
  private readonly peers = new Map<string, Peer>();
  /** Per backend: when the last complete round on it began. */
  private readonly roundAt = new Map<string, number>();
  private readonly reasons = new Map<string, Reason>();
  /** The last epoch of each backend a reload removed. */
  private readonly retired = new Map<string, number>();
  /** Per backend away: who was trusted here when its out applied (TrustRecord.outlasted). */
  private readonly outlasted = new Map<string, Outlasted>();
  /**
   * This sidecar's view matched the cluster's once (fresh, nothing pending): from then on
   * it watched every change, so what it saw trusted at an out is worth publishing. A
   * newcomer's first applies are catching up on history it did not see.
   */
  private witnessing = false;
  /**
   * Backends that must have a complete round here before the view is fresh, whatever their stage
   * here, each until the time it is waited for (see awaitRound).
   */
  private readonly unread = new Map<string, number>();
  /** Peers whose newest record does not name this sidecar: they would agree without it. */
  private readonly unnamedBy = new Set<string>();
  /** Started, or its lease lapsed, and not yet named by every live peer since (see fresh). */
  private joining = true;
  /** Peers silentPeers() reported, until they write again. */
  private readonly toldSilent = new Set<string>();
  /** Every sidecar whose record this process has read, oldest first, at most WRITERS_KEPT (see hasRead). */
  private readonly everRead = new Set<string>();
  private seq = 0;
  /**
   * When the latest round's answers arrived: `knows` names the peers live as of then. Not as of
   * now: after a stall of this sidecar every peer would look silent before its next round.
   */
  private lastRead = -Infinity;
  private pendingCount = 0;
  /** Grows whenever `seen` or `applied` changes: requests admitted under an older one are the old view. */
  generation = 0;

  constructor(
    readonly id: string,
    public addresses: readonly string[],
    private readonly timing: TrustTiming = DEFAULT_TIMING,
  ) {
    for (const a of addresses) this.begin(a, INITIAL_STAGE);
  }

  private begin(address: string, stage: Stage): void {
    this.applied.set(address, stage);
    this.seen.set(address, stage);
    this.published.set(address, stage);
  }

  /**
   * A reload changed the backend list. Backends kept keep their stages; an added one
   * starts out (it holds none of its share yet), unless another record already gives
   * it a stage; a removed one is forgotten.
   */
  setAddresses(addresses: readonly string[]): void {
    for (const a of this.addresses) {
      if (addresses.includes(a)) continue;
      this.retired.set(a, (this.seen.get(a) ?? INITIAL_STAGE).epoch);
      if (this.isPending(a)) this.pendingCount--;
      this.applied.delete(a);
      this.seen.delete(a);
      this.published.delete(a);
      this.roundAt.delete(a);
      this.outlasted.delete(a);
      this.unread.delete(a);
    }
    // Added again: out at an epoch past any it had before, so that an old record's stage of it
    // (trusted, say) is older than its new one and never adopted.
    for (const a of addresses) if (!this.applied.has(a)) this.begin(a, { epoch: (this.retired.get(a) ?? -1) + 1, role: 'out' });
    this.addresses = [...addresses];
    this.generation++;
  }

  /** A backend this sidecar does not list (a reload on its way) is out. */
  roleOf(address: string): Role {
    return this.applied.get(address)?.role ?? 'out';
  }

  /** Trusted, with no change of it acknowledged and not yet applied: it stays so for now. */
  isTrusted(address: string): boolean {
    return this.roleOf(address) === 'trusted' && !this.isPending(address);
  }

  /**
   * Trusted or in refill, and not going out: it takes the writes and deletes of the keys it is
   * placed for, from now until a later stage applies (a refill applied here was acknowledged by
   * every live sidecar, so every write of such a key goes to it or waits).
   */
  takesWrites(address: string): boolean {
    return this.roleOf(address) !== 'out' && this.seenRoleOf(address) !== 'out';
  }

  /**
   * The refill in which it takes writes, if it does so in refill: the one acknowledged here (from
   * that acknowledgement on, this sidecar routes it no write by an older stage, whatever stage it
   * still applies), else the one applied. undefined: trusted (or out).
   */
  takingInRefill(address: string): number | undefined {
    const stage = this.seenRoleOf(address) === 'refill' ? this.seen.get(address)! : this.stageOf(address);
    return stage.role === 'refill' ? stage.epoch : undefined;
  }

  /** The role under the acknowledged stages (what it will be once they apply). */
  seenRoleOf(address: string): Role {
    return this.seen.get(address)?.role ?? 'out';
  }

  stageOf(address: string): Stage {
    return this.applied.get(address) ?? INITIAL_STAGE;
  }

  /** The stage acknowledged here (what will apply). */
  seenStageOf(address: string): Stage {
    return this.seen.get(address) ?? INITIAL_STAGE;
  }

  /** Some acknowledged stage is not applied yet. */
  get pending(): boolean {
    return this.pendingCount > 0;
  }

  isPending(address: string): boolean {
    return isNewer(this.seen.get(address) ?? INITIAL_STAGE, this.applied.get(address) ?? INITIAL_STAGE);
  }

  /**
   * Every backend not out had a round that began less than leaseMs ago; and, when this sidecar
   * joins (it starts, or its lease lapsed), every live peer's record names it: one that does not
   * has not read it yet, or took it for silent, and would apply a stage without waiting for this
   * one's acknowledgement, so this one must not act meanwhile. Once named by each, it stays
   * counted while it keeps writing; a newcomer's first record, written before it read anyone,
   * names nobody, and holds no one else back.
   */
  fresh(now: number): boolean {
    if (!this.leaseHeld((a) => this.roleOf(a), now)) return false;
    if (this.joining && this.namedByEveryLivePeer(now)) this.joining = false;
    return !this.joining;
  }

  /** freshUnder, and a lapse of it makes this sidecar join again. */
  private leaseHeld(roleOf: RoleOf, now: number): boolean {
    const held = this.freshUnder(roleOf, now);
    if (!held) this.joining = true;
    return held;
  }

  /** Every live peer's newest record names this sidecar (see fresh). */
  namedByEveryLivePeer(now: number): boolean {
    for (const id of this.unnamedBy) {
      const p = this.peers.get(id);
      if (p !== undefined && this.isLive(p, now)) return false;
    }
    return true;
  }

  private freshUnder(roleOf: RoleOf, now: number): boolean {
    for (const a of this.addresses) {
      if (roleOf(a) === 'out' && !((this.unread.get(a) ?? -Infinity) > now)) continue;
      const at = this.roundAt.get(a);
      if (at === undefined || now - at >= this.timing.leaseMs) return false;
    }
    return true;
  }

  /** A request for a key with this ring order waits: its placement is about to change. */
  holds(order: readonly string[], replicas: number): boolean {
    if (this.pendingCount === 0) return false;
    const before = place(order, replicas, (a) => this.roleOf(a));
    const after = place(order, replicas, (a) => this.seenRoleOf(a));
    return before.authority !== after.authority || before.members.join(' ') !== after.members.join(' ');
  }

  /**
   * A reason for Y's next stage, seen here. Returns the change when it is new here
   * (the caller holds Y's keys and publishes it once drained).
   */
  propose(address: string, role: Role, reason: Reason): StageChange | null {
    const applied = this.applied.get(address);
    const seen = this.seen.get(address);
    if (applied === undefined || seen === undefined) return null;
    // Evidence of a failure goes against the newest stage known here, applied or only seen: a
    // newcomer's first rounds may adopt a stage (trusted, from a record) newer than the out it
    // proposed from its own default, for a backend it found restarted.
    const base = role === 'out' && isNewer(seen, applied) ? seen : applied;
    if (role === 'out' && base.role === 'out') return null;
    if (role === 'refill' && (applied.role !== 'out' || isNewer(seen, applied))) return null;
    if (role === 'trusted' && (applied.role !== 'refill' || isNewer(seen, applied))) return null;
    const next: Stage = { epoch: base.epoch + 1, role };
    if (!isNewer(next, seen)) return null;
    this.reasons.set(address, reason);
    return this.acknowledge(address, next, reason);
  }

  private acknowledge(address: string, stage: Stage, reason?: Reason): StageChange {
    const from = this.seen.get(address) ?? INITIAL_STAGE;
    const wasPending = this.isPending(address);
    this.seen.set(address, stage);
    if (!wasPending && this.isPending(address)) this.pendingCount++;
    this.generation++;
    return { address, from, to: stage, ...(reason !== undefined && { reason }) };
  }

  /** board.ts wrote (or is about to write) a record saying this: the acknowledgement is out. */
  markPublished(stages: ReadonlyMap<string, Stage>): void {
    for (const [a, s] of stages) {
      if (!isNewer(s, this.published.get(a) ?? INITIAL_STAGE)) continue;
      this.published.set(a, s);
      // It may be applied elsewhere from now on: its time away, as witnessed, ends. Not before:
      // while this live sidecar has not published it, nobody applies it, and an out acknowledged
      // first (a request under the older view failed on it) continues the same time away.
      if (s.role === 'trusted') this.outlasted.delete(a);
    }
  }

  /** The acknowledged stages, to publish once the older view's requests ended. */
  acknowledged(): Map<string, Stage> {
    return new Map(this.seen);
  }

  /** The record to write now, with what is published (not merely seen). */
  record(reach: readonly string[], left = false): TrustRecord {
    this.seq++;
    return {
      id: this.id,
      seq: this.seq,
      applied: Object.fromEntries(this.applied),
      seen: Object.fromEntries(this.published),
      reach: [...reach],
      ...(left && { left: true }),
      knows: this.livePeers(this.lastRead).map((p) => p.record.id),
      ...(this.outlasted.size > 0 && { outlasted: Object.fromEntries(this.outlasted) }),
    };
  }

  /**
   * The view is stale until each of these had a complete round here, even once it is out here: a
   * newcomer's survey found no incarnation key on the backends that answered, and these did not
   * answer. They may hold the cluster's records and keys (the others then restarted): until they
   * are read, this sidecar's own view (every backend trusted at epoch 0) is no one's, and its
   * proposals of them out, applied alone (it knows no peer), would leave a restarted backend
   * trusted, its misses authoritative. Waited for silentMs at most: every live sidecar writes its
   * record to each backend it reaches every round, so by then one that reaches the backends read
   * here has shown itself; without that bound, a new cluster with a backend down would never
   * serve.
   */
  awaitRound(addresses: readonly string[], now: number): void {
    for (const a of addresses) if (this.addresses.includes(a)) this.unread.set(a, now + this.timing.silentMs);
  }

  /** No round counts any more: the view is stale from now on (the agent stops). */
  forgetRounds(): void {
    this.roundAt.clear();
  }

  /**
   * A complete round on `address`: it began at `startedAt`, its answers arrived by
   * `now`. Returns the stages newly acknowledged here (from other records).
   */
  roundDone(address: string, startedAt: number, now: number, records: readonly TrustRecord[]): StageChange[] {
    const prior = this.roundAt.get(address);
    if (prior === undefined || startedAt > prior) this.roundAt.set(address, startedAt);
    this.lastRead = Math.max(this.lastRead, now);
    this.unread.delete(address);
    const changes: StageChange[] = [];
    for (const r of records) {
      if (r.id === this.id) continue;
      this.noteRead(r.id);
      const peer = this.peers.get(r.id);
      if (peer === undefined || r.seq > peer.seq) {
        this.toldSilent.delete(r.id);
        if (peer === undefined) this.peers.set(r.id, { seq: r.seq, changedAt: now, record: r });
        else Object.assign(peer, { seq: r.seq, changedAt: now, record: r });
        if (r.knows === undefined || r.knows.includes(this.id)) this.unnamedBy.delete(r.id);
        else this.unnamedBy.add(r.id);
      }
      for (const a of this.addresses) {
        const applied = r.applied[a];
        if (applied !== undefined && isNewer(applied, this.seen.get(a) ?? INITIAL_STAGE)) changes.push(this.acknowledge(a, applied));
        const seen = r.seen[a];
        if (seen !== undefined && isNewer(seen, this.seen.get(a) ?? INITIAL_STAGE)) changes.push(this.acknowledge(a, seen));
      }
    }
    for (const [id, p] of this.peers) {
      if (now - p.changedAt < FORGET_PEER_AFTER_MS) continue;
      this.peers.delete(id);
      this.unnamedBy.delete(id);
      this.toldSilent.delete(id);
    }
    return changes;
  }

  /** Peers whose record is still live at `now`: not silent for silentMs, not left. */
  private livePeers(now: number): Peer[] {
    return [...this.peers.values()].filter((p) => this.isLive(p, now));
  }

  private isLive(p: Peer, now: number): boolean {
    return p.record.left !== true && now - p.changedAt < this.timing.silentMs;
  }

  /**
   * Peers that fell silent (for silentMs) without a record saying they left, each told once:
   * they died, or stalled that long. One that writes again is told again if it falls silent again.
   */
  silentPeers(now: number): string[] {
    const silent: string[] = [];
    for (const p of this.peers.values()) {
      if (p.record.left === true || now - p.changedAt < this.timing.silentMs || this.toldSilent.has(p.record.id)) continue;
      this.toldSilent.add(p.record.id);
      silent.push(p.record.id);
    }
    return silent;
  }

  /**
   * Whether this sidecar still waits for peer `id` to fall silent: known, no record saying it left,
   * and not yet reported by silentPeers (that report is what starts a sweep, see the agent).
   */
  awaitsSilenceOf(id: string): boolean {
    const p = this.peers.get(id);
    return p !== undefined && p.record.left !== true && !this.toldSilent.has(id);
  }

  /** Live peers that reach `address`, and this sidecar if `here` does. */
  allReach(address: string, here: boolean, now: number): boolean {
    return here && this.livePeers(now).every((p) => p.record.reach.includes(address));
  }

  /**
   * Y's refill may end in trust: every other backend is trusted, so each of Y's keys had a
   * trusted natural member for its reconcile to copy from and prune against. When several
   * are being refilled at once (two failed together), they would wait for each other for
   * ever: one goes first, one that kept its data (`intact`: it did not restart) before one
   * that came back empty, so that a key whose only copy it holds is not answered a miss by
   * the empty one; among equals, the lowest address (of several each outlasted by another, the
   * lowest among the sources of the graph of who outlasted whom: docs/trust.md, Several in refill).
   */
  mayTrust(
    address: string,
    intact: (address: string) => boolean,
    now: number,
    /**
     * Who outlasted a backend, by the marks on the backends (the agent's stand-in keys), each with
     * the refill in which it took the writes (undefined: it took them trusted): used where no live
     * witness tells.
     */
    marked: (address: string) => ReadonlyMap<string, number | undefined> | undefined = () => undefined,
    /**
     * Who took a backend's writes trusted in its current time away, by the notes witnesses left on
     * the backends (the agent's took-trusted keys): a witness that has gone since, as a live one.
     */
    noted: (address: string) => ReadonlySet<string> | undefined = () => undefined,
  ): boolean {
    const others = this.addresses.filter((a) => a !== address);
    if (others.every((a) => this.isTrusted(a))) return true;
    // One going out (acknowledged, not yet applied) was no source for the fill either, and may
    // hold what no other does: it goes first if it kept its data, so it is waited for.
    const untrusted = this.addresses.filter((a) => !this.isTrusted(a));
    if (!untrusted.every((a) => this.roleOf(a) === 'refill' && !this.isPending(a))) return false;
    const kept = untrusted.filter(intact);
    const candidates = kept.length > 0 ? kept : untrusted;
    // Not one that another candidate outlasted: that one took writes and deletes it missed. When
    // each was, not counting those that took them only in the refill they are still in (its fill
    // takes those writes from them: refill sources), then those that took them only in refill (a
    // write is acknowledged only where a trusted backend took it too); among equals, the lowest address.
    // One whose time away no live witness saw and no mark tells (an outage before any sidecar's
    // view was fresh, say) may have missed anything: it goes after every one these rules find whole.
    // A mark that says it took them in refill tells that it took them only in refill while that
    // refill lasts (after it, it may have taken them trusted too): then as a witness's note.
    const witnessed = new Map(candidates.map((c) => [c, this.outlastedBy(c, now)]));
    // A witness's note may be partial (its view lagged one out behind), and one that saw more may
    // have gone: the took-trusted notes it left on the backends add what it saw. Only those on
    // candidates: a note on one that came back empty tells nothing of who else outlasted c, and
    // would make c, of which nothing else is known, go as if it were.
    const outlasted = new Map(
      candidates.map((c) => {
        const told = witnessed.get(c) ?? marked(c) ?? null;
        const notes = [...(noted(c) ?? [])].filter((d) => candidates.includes(d));
        return [c, told === null && notes.length === 0 ? null : new Set([...(told?.keys() ?? []), ...notes])] as const;
      }),
    );
    const refillOf = (c: string, d: string): number | undefined => {
      if (noted(c)?.has(d) === true) return undefined;
      if (witnessed.get(c) !== null) return this.refillOf(c, d, now);
      // The mark names the refill in which d took them. Still in it, or in the refill after its next
      // out (two epochs on), d took them only in refills, as a witness would note: a trusted stage
      // in between would take an epoch and leaving it another, so that refill would be three on.
      // Further on, it may have taken them trusted since.
      const e = marked(c)?.get(d);
      const stage = this.stageOf(d);
      return e !== undefined && stage.role === 'refill' && stage.epoch >= e && stage.epoch <= e + 2 ? e : undefined;
    };
    const counts = (c: string, d: string, pass: number): boolean => {
      if (outlasted.get(c)?.has(d) !== true) return false;
      const refill = pass === 0 ? undefined : refillOf(c, d);
      if (refill === undefined) return true;
      const stage = this.stageOf(d);
      return pass === 1 && !(stage.role === 'refill' && stage.epoch === refill);
    };
    const known = candidates.filter((c) => outlasted.get(c) !== null);
    for (const pass of [0, 1, 2]) {
      const first = known.filter((c) => !candidates.some((d) => counts(c, d, pass)));
      if (first.length > 0) return first.sort()[0] === address;
    }
    const unknown = candidates.filter((c) => outlasted.get(c) === null);
    if (unknown.length > 0) return unknown.sort()[0] === address;
    // Each was outlasted, all known: the lowest address among the sources of the graph of who
    // outlasted whom (those that no candidate outside their cycle outlasted), by pass 0, then pass
    // 1, where they are not every candidate. The lowest address would go first otherwise: a write the
    // chosen one missed and it holds, it took while the chosen one was out, so it outlasted it in that
    // pass's graph (in pass 1 unless it took it in the refill it is still in, and then the chosen
    // one's fill took it from there): it reaches a source, so is one, and, the lowest, the one chosen.
    // Not pass 2: it sets aside refills that ended, whose writes no fill took (the lowest address may
    // hold the only copy of one).
    for (const pass of [0, 1]) {
      const sources = sourcesOf(candidates, (c, d) => counts(c, d, pass));
      if (sources.length < candidates.length) return sources.sort()[0] === address;
    }
    return candidates.sort()[0] === address;
  }

  /** This sidecar's notes of backends taking writes trusted (not only in a refill) while another was away: [away, since, taker]. */
  trustedTakers(): Array<[string, number, string]> {
    const out: Array<[string, number, string]> = [];
    if (!this.witnessing) return out;
    for (const [a, v] of this.outlasted) {
      if (v.since === undefined) continue;
      for (const b of v.by) if (v.refill?.[b] === undefined) out.push([a, v.since, b]);
    }
    return out;
  }

  /** The peer's latest record says it reaches `address`. */
  peerReaches(id: string, address: string): boolean {
    return this.peers.get(id)?.record.reach.includes(address) ?? false;
  }

  /** The live sidecar ids (this one included), lowest first. */
  liveIds(now: number): string[] {
    return [this.id, ...this.livePeers(now).map((p) => p.record.id)].sort();
  }

  /**
   * Applies every stage this sidecar published that every live record acknowledged, or
   * that some record applied already (then every live sidecar had acknowledged it, or
   * stopped acting). Returns what applied.
   */
  tryApply(now: number): StageChange[] {
    // Not before every backend that stays in had a round: until then this sidecar may not
    // know every other sidecar (a newcomer), and would count its own acknowledgement alone.
    if (!this.leaseHeld((a) => this.seenRoleOf(a), now)) {
      // Others may have gone on without this sidecar: what it saw is no longer the whole story.
      this.witnessing = false;
      this.outlasted.clear();
      return [];
    }
    if (this.pendingCount === 0) {
      this.witnessing = true;
      return [];
    }
    const applied: StageChange[] = [];
    const live = this.livePeers(now);
    for (const a of this.addresses) {
      const target = this.seen.get(a) ?? INITIAL_STAGE;
      if (!this.isPending(a) || !atLeast(this.published.get(a), target)) continue;
      const elsewhere = [...this.peers.values()].some((p) => atLeast(p.record.applied[a], target));
      const byAll = live.every((p) => atLeast(p.record.seen[a], target) || atLeast(p.record.applied[a], target));
      if (!elsewhere && !byAll) continue;
      const from = this.applied.get(a) ?? INITIAL_STAGE;
      this.apply(a, target);
      applied.push({ address: a, from, to: target, ...(this.reasons.has(a) && { reason: this.reasons.get(a) }), ...(byAll && { byAll: true as const }) });
    }
    this.noteOutlasted(applied);
    return applied;
  }

  /**
   * After `changes` applied together (no request ran between them): who outlasts each backend
   * away. Every backend that takes writes (trusted or in refill, not going out) while one is out
   * takes writes and deletes it misses: those taking as it goes out, and those that begin to while
   * it is out. Away all along since its entry (a trusted stage in between was acknowledged here
   * first, which dropped it), it keeps those that outlasted it before: it was never made whole since.
   */
  private noteOutlasted(changes: readonly StageChange[]): void {
    for (const { address, from, to } of changes) {
      if (to.role === 'trusted' || !this.witnessing) {
        this.outlasted.delete(address);
        continue;
      }
      const entry = from.role === 'trusted' ? undefined : this.outlasted.get(address);
      // Away since before this sidecar witnessed it: who outlasted it is not known here.
      if (from.role !== 'trusted' && entry === undefined) continue;
      const epoch = outEpoch(to);
      this.outlasted.set(address, entry === undefined ? { epoch, by: [], since: leftTrusted(from, epoch, this.published.get(address)) } : { ...entry, epoch });
      // Straight from trusted (going out) to refill here: out for no time, it missed what those
      // taking writes before these changes took meanwhile, not what one entering refill with it takes.
      const entering = (b: string): boolean => changes.some((c) => c.address === b && c.to.role === 'refill');
      if (from.role === 'trusted' && to.role === 'refill') this.addTakers(address, this.taking().filter((b) => !entering(b)));
    }
    const taking = this.taking();
    for (const address of this.outlasted.keys()) if (this.roleOf(address) === 'out') this.addTakers(address, taking);
  }

  /**
   * `taking` take writes that `address`, away, misses. One in refill is noted with its epoch while
   * it took them only in refill (the first such refill); once seen taking them trusted, plainly.
   */
  private addTakers(address: string, taking: readonly string[]): void {
    const entry = this.outlasted.get(address);
    if (entry === undefined) return;
    const by = new Set(entry.by);
    const refill = { ...entry.refill };
    for (const b of taking) {
      if (b === address) continue;
      // Its refill acknowledged here, not applied yet (its out maybe never applied here): it takes
      // writes from here only in that refill, whatever stage it still applies (trusted, say).
      const epoch = this.takingInRefill(b);
      if (!by.has(b)) {
        by.add(b);
        if (epoch !== undefined) refill[b] = epoch;
      } else if (epoch === undefined) delete refill[b];
    }
    const inRefill = Object.keys(refill).length > 0;
    this.outlasted.set(address, { epoch: entry.epoch, by: [...by], ...(inRefill && { refill }), ...(entry.since !== undefined && { since: entry.since }) });
  }

  /** Trusted or in refill, and not going out: each takes the writes and deletes of the keys it is placed for. */
  private taking(): string[] {
    return this.addresses.filter((b) => this.takesWrites(b));
  }

  /**
   * The backends that any live witness saw taking writes while `address` was out in its current
   * time away: each may hold writes it missed. null: no witness (then nothing is known).
   */
  outlastedBy(address: string, now: number): Set<string> | null {
    if (this.stageOf(address).role === 'trusted') return null;
    let by: Set<string> | null = null;
    for (const v of this.witnessed(address, now)) {
      by ??= new Set();
      for (const b of v.by) by.add(b);
    }
    return by;
  }

  /**
   * How `by` took the writes `address` missed while away, as the live witnesses saw it: only in
   * refill (the first such refill's epoch), 'trusted', or undefined when no live witness saw it
   * take them (none saw `address` leave, or `by` took none).
   */
  tookWhileAway(address: string, by: string, now: number): number | 'trusted' | undefined {
    if (this.outlastedBy(address, now)?.has(by) !== true) return undefined;
    return this.refillOf(address, by, now) ?? 'trusted';
  }

  /**
   * The first refill in which `by` took the writes `address` missed, when every live witness that
   * saw it take them saw it only in refill; undefined when one saw it trusted, or none saw it.
   */
  private refillOf(address: string, by: string, now: number): number | undefined {
    let first: number | undefined;
    for (const v of this.witnessed(address, now)) {
      if (!v.by.includes(by)) continue;
      const e = v.refill?.[by];
      if (e === undefined) return undefined;
      first = Math.min(first ?? e, e);
    }
    return first;
  }

  private noteRead(id: string): void {
    if (this.everRead.has(id)) return;
    this.everRead.add(id);
    if (this.everRead.size > WRITERS_KEPT) this.everRead.delete(this.everRead.values().next().value!);
  }

  /**
   * Whether `id` is this sidecar or one whose record it has read: its stages are of the epochs
   * this process counts by (it took them from that record, or went on from them), not of a
   * cluster before every sidecar restarted, when epochs begin again.
   */
  hasRead(id: string): boolean {
    return id === this.id || this.everRead.has(id);
  }

  /**
   * As `address`'s out `stage` applies here because every live record acknowledged it: each other
   * backend, not trusted, whose out every live record (and this sidecar) has acknowledged, with the
   * lowest out epoch so acknowledged; null when a live record shows this out applied already (its
   * writer may have applied it before it acknowledged theirs). A live sidecar that applies this out
   * later does so after the records read here, which show those outs acknowledged: from its own
   * acknowledgement on it sent them nothing, so none took a write or delete, from anyone, while this
   * backend was out in that sidecar's view.
   */
  leftAfter(address: string, stage: Stage, now: number): Map<string, number> | null {
    const live = this.livePeers(now);
    if (live.some((p) => atLeast(p.record.applied[address], stage))) return null;
    const took = new Map<string, number>();
    for (const b of this.addresses) {
      if (b === address) continue;
      const views = [this.seen.get(b), ...live.map((p) => p.record.seen[b])];
      if (views.some((v) => v === undefined || v.role === 'trusted')) continue;
      took.set(b, Math.min(...views.map((v) => outEpoch(v!))));
    }
    return took;
  }

  /**
   * The out epoch at which a backend away now left trusted, the latest any live witness saw
   * (its stand-in keys of then mark where the writes it missed begin); else its current out epoch.
   */
  untrustedSince(address: string, now: number): number {
    return this.witnessedUntrustedSince(address, now) ?? outEpoch(this.stageOf(address));
  }

  /** As untrustedSince, when a live witness tells; else undefined (a newcomer's view, say). */
  witnessedUntrustedSince(address: string, now: number): number | undefined {
    let since: number | undefined;
    for (const v of this.witnessed(address, now)) if (v.since !== undefined) since = Math.max(since ?? v.since, v.since);
    return since;
  }

  /** This sidecar's and every live peer's `outlasted` of a backend away, at its current out epoch. */
  private witnessed(address: string, now: number): Outlasted[] {
    const epoch = outEpoch(this.stageOf(address));
    const views = [this.outlasted.get(address), ...this.livePeers(now).map((p) => p.record.outlasted?.[address])];
    return views.filter((v): v is Outlasted => v !== undefined && v.epoch === epoch);
  }

  private apply(address: string, stage: Stage): void {
    const wasPending = this.isPending(address);
    this.applied.set(address, stage);
    if (isNewer(stage, this.seen.get(address) ?? INITIAL_STAGE)) this.seen.set(address, stage);
    if (isNewer(stage, this.published.get(address) ?? INITIAL_STAGE)) this.published.set(address, stage);
    if (wasPending && !this.isPending(address)) this.pendingCount--;
    this.generation++;
  }
}

/**
 * The nodes that no node outside their strongly connected component reaches (`edge(c, d)`: an edge
 * from d to c): every node that reaches one is reached by it. Empty only for no nodes.
 */
export function sourcesOf(nodes: readonly string[], edge: (c: string, d: string) => boolean): string[] {
  const reaches = new Map(nodes.map((n) => [n, new Set<string>()]));
  for (const c of nodes) for (const d of nodes) if (d !== c && edge(c, d)) reaches.get(d)!.add(c);
  // Transitive closure (a handful of backends).
  for (const k of nodes) for (const from of nodes) if (reaches.get(from)!.has(k)) for (const to of reaches.get(k)!) reaches.get(from)!.add(to);
  return nodes.filter((c) => nodes.every((d) => d === c || !reaches.get(d)!.has(c) || reaches.get(c)!.has(d)));
}
