// A sidecar's trust agent: carries the protocol's records to and from the
// backends (docs/trust.md) and answers the router's questions from TrustState.
//
//   round     every roundMs, on each backend W, pipelined on its control connection:
//               set  replicached:trust:<id>     this sidecar's record (TTL 10 s)
//               gat  replicached:trust-roster   the ids to read (appended when ours is missing)
//               gat  replicached:incarnation    gone: W restarted empty
//             then get replicached:trust:<each id>
//             an id whose record it has read missing for 5 minutes is taken off the roster (cas)
//             a failed step is a failed round: W is proposed out
//   requests  admitted with the view's generation (admit); a request that waits in a
//             hold is parked and counts for nothing; an acknowledgement is published
//             only when no request admitted under an older generation is still active
//   ops       the router's nodes are wrapped: no op is sent while the view is stale or to
//             a backend going out, a reply that comes back stale is a failure, and every
//             failure proposes its backend out
//   refill    proposed for a backend out that every live sidecar reaches, once its
//             incarnation key is added (gone: it restarted) or has ` r<epoch>` appended:
//             either way a new CAS, under every write it takes in that refill (refillSince)
//   fill      a backend in refill is reconciled by the live sidecar with the lowest id
//             that reaches it; when its run completes it proposes the backend trusted

import { createHash } from 'node:crypto';
import type { Clock } from '../resync/rate-limiter';
import type { MemcachedNode, Failed, NodeFlush, NodeGet, NodeStore } from '../routing/node';
import type { FollowUps, ResyncHooks } from '../routing/replicated-router';
import type { Resyncer, ResyncTrust } from '../resync/resyncer';
import {
  DEFAULT_TIMING,
  TrustState,
  outEpoch,
  decodeRecord,
  encodeRecord,
  type Reason,
  type Role,
  type Stage,
  type StageChange,
  type TrustRecord,
  type TrustTiming,
} from './protocol';
import {
  INCARNATION_KEY,
  LONGEST_RELATIVE_EXPIRY_S,
  RECORD_TTL_S,
  ROSTER_KEY,
  ROSTER_PRUNE_AFTER_MS,
  ROSTER_TTL_S,
  incarnationNamesRefill,
  incarnationValue,
  leftAfterKey,
  markWriter,
  outAppliedKey,
  recordKey,
  refillBeganKey,
  refillKey,
  refillKeyStage,
  standInAwaySince,
  standInDigest,
  standInKey,
  standInNote,
  standInRefill,
  standInTrusted,
  standInValue,
  standInWriter,
  type StandInNote,
  tookTrustedKey,
} from './reserved-keys';

export interface AgentEvents {
  /** This sidecar acknowledged a stage (its own proposal, or another's). */
  acknowledged?(change: StageChange): void;
  /** A stage applied here: routing follows it from now. */
  applied?(change: StageChange): void;
}

export interface AgentOptions {
  id: string;
  /** This sidecar's node for each backend (the same objects the ring holds, unwrapped). */
  boards: readonly MemcachedNode[];
  replicas: number;
  /** Every backend in the key's ring order. */
  ringOrder(key: Buffer): readonly MemcachedNode[];
  clock: Clock;
  timing?: TrustTiming;
  roundMs?: number;
  /** How many times as often rounds come just after an acknowledgement (QUICK_ROUNDS; 1: never quicker). */
  quickRounds?: number;
  /** A request waits this long for a view that lets it go, then is unavailable. */
  holdMs?: number;
  /** An id whose record has been missing this long leaves the roster (ROSTER_PRUNE_AFTER_MS). */
  rosterPruneMs?: number;
  /**
   * Reconciles a backend in refill (resync-run.ts, mode reconcile); resolves true when
   * the run completed. The signal aborts it when the backend leaves refill.
   */
  fill?(node: MemcachedNode, signal: AbortSignal): Promise<boolean>;
  /**
   * A peer fell silent without leaving: a write it had in flight may have landed on some of
   * a key's members only, and nobody will finish it. The lowest live sidecar makes each key
   * on this trusted backend what its authority holds (resync-run.ts, mode refresh).
   */
  sweep?(node: MemcachedNode): void;
  events?: AgentEvents;
}

/** The backend gave no reply in time (src/backends/connection.ts names it so). */
function timedOut(f: Failed): boolean {
  return f.reason.startsWith('timeout');
}

/** Keys whose ring order, with the replica count, stands for a placement (see placementDigest). */
const PLACEMENT_PROBES = 256;

/** How long a survey that found some incarnation keys waits before it reads the missing ones again. */
const SURVEY_AGAIN_ROUNDS = 4;

/**
 * After this sidecar publishes an acknowledgement, its rounds come `quickRounds` times as often
 * (AgentOptions), for QUICK_WINDOW_ROUNDS rounds' time or until nothing is pending: peers that
 * saw the same failure acknowledge within a few milliseconds of each other, and the change
 * applies at the first round that reads the last of them (see loop). Only then: rounds that
 * quick all the time starve a loaded machine's CPU.
 */
export const QUICK_ROUNDS = 3;
const QUICK_WINDOW_ROUNDS = 2;

const STALE: Failed = { status: 'failed', reason: 'trust view stale' };
const GOING_OUT: Failed = { status: 'failed', reason: 'backend going out' };
const FAILED_MEANWHILE: Failed = { status: 'failed', reason: 'backend failed while the request was out' };

/** Remembered mark CASes (refillMark, casOn) at most; then forgotten all at once. */
const MARKS_SEEN_MAX = 4096;

/** Epochs of a backend's time away scanned for its departure's stand-in key (see departureMark); more: its current one. */
const DEPARTURE_SCAN_MAX = 64;

/** The ids a roster read lists (none when it missed). */
function rosterIds(roster: NodeGet): string[] {
  return roster.status === 'hit' ? roster.item.value.toString('latin1').split(' ').filter((s) => s.length > 0) : [];
}

/** What a stand-in key says of the backend it goes on: it takes Y's writes (trusted, or in `refill`), or not. */
interface Taking {
  trusted: boolean;
  refill?: number | undefined;
  /** It began to take them after Y left, as its key of then says (see markJoined). */
  joined?: boolean;
  /** Y's time away began at this earlier out epoch: it goes out again from a refill (see departureMark). */
  awaySince?: number | undefined;
}

/** A request's standing: the generation of the view it was admitted under. */
interface Ticket {
  generation: number;
  parked: boolean;
}

/** Answers the router's trust questions (ResyncHooks' isResyncing, catchingUp, handingOver). */
export class TrustAgent implements Pick<ResyncHooks, 'isResyncing' | 'catchingUp' | 'handingOver'> {
  readonly state: TrustState;
  private readonly clock: Clock;
  private readonly timing: TrustTiming;
  private readonly roundMs: number;
  private readonly quickRounds: number;
  private readonly holdMs: number;
  private readonly rosterPruneMs: number;
  private readonly byAddress = new Map<string, MemcachedNode>();
  /** Backends whose last round succeeded. */
  private readonly reach = new Set<string>();
  private readonly active = new Map<number, number>();
  private readonly tickets = new WeakMap<FollowUps, Ticket>();
  /** Acknowledgements waiting for the older view's requests to end. */
  private unpublished: { generation: number; stages: ReturnType<TrustState['acknowledged']> } | null = null;
  private waiters: Array<() => void> = [];
  /** Round loops sleeping until their next round (see pause). */
  private readonly pausing = new Set<() => void>();
  /** Until then, while a stage is pending, rounds come quicker (see QUICK_ROUNDS). */
  private quickUntil = -Infinity;
  private readonly replyHandlers = new Map<string, (reply: { status: string }) => { status: string }>();
  /** Failures seen per backend (failed()): a reply to a request sent before the latest one counts as failed (guard). */
  private readonly failuresSeen = new Map<string, number>();
  private readonly fills = new Map<string, AbortController>();
  /**
   * Backends whose incarnation key this sidecar found gone since they were last trusted here:
   * they restarted, whatever key a late write from before the restart left on them since
   * (see keptData).
   */
  private readonly mayHaveRestarted = new Set<string>();
  /** outageRefillSince's reads, per stage generation, target and member. */
  private readonly outageMarks = new Map<string, Promise<{ member: bigint; target: bigint } | null | 'failed'>>();
  /** Backends whose filled epoch (in the incarnation key) is being written before their trusted proposal. */
  private readonly markingFilled = new Set<string>();
  /** The took-trusted notes written, of the notes this sidecar holds now (writeTookTrusted): away:since:by. */
  private readonly tookTrustedWritten = new Set<string>();
  /** Backends the survey found restarted, until an out of theirs applies here or a round finds their incarnation key again (see acknowledged). */
  private readonly foundRestarted = new Set<string>();
  /** Backends whose incarnation key this sidecar wrote anew for their refill: they came back empty. */
  private readonly bornEmpty = new Set<string>();
  /** Per backend: whether its last round found its incarnation key (see markRefill). */
  private readonly incarnationFound = new Map<string, boolean>();
  /** CASes of incarnation and stand-in keys read on backends in refill, by backend, stage and key (refillMark, casOn). */
  private readonly marksSeen = new Map<string, bigint>();
  /** Per backend, the out epoch of its latest out whose out-applied keys this sidecar wrote (writeOutMarks; see carryOutMarks). */
  private readonly outsMarked = new Map<string, number>();
  /** Stand-in keys being written: acknowledgements wait for them (see markStandIns). */
  private readonly marking = new Set<Promise<unknown>>();
  /** Outs this sidecar acknowledged while its view was not fresh: nobody may have marked them (see serving). */
  private readonly unmarkedOuts = new Map<string, { epoch: number; from: Stage }>();
  /** Those outs' stand-in keys being written, once the view is fresh: nothing is served meanwhile. */
  private lateMarking: Promise<unknown> | null = null;
  /**
   * Backends whose fill completed here: the epoch of the refill it was for, and the backends
   * trusted or in refill when it began, with the epoch of that stage (its sources).
   */
  private readonly filled = new Map<string, { epoch: number; sources: ReadonlyMap<string, number> }>();
  /** Flushes this sidecar sent and whose incarnation key is not yet written again. */
  private readonly flushesPending = new Map<string, number>();
  /** Flushes this sidecar sent, ever, per backend: a round that overlapped one does not take a miss for a restart. */
  private readonly flushesSent = new Map<string, number>();
  private running = false;
  private readonly loops: Promise<void>[] = [];
  private readonly looping = new Set<string>();
  /** Per backend, since when each roster id's record has been read missing there (rosterPruned). */
  private readonly missingSince = new Map<string, Map<string, number>>();
  private replicas: number;
  /** placementDigest(), until a reload. */
  private digest: string | null = null;

  constructor(private readonly opts: AgentOptions) {
    this.clock = opts.clock;
    this.timing = opts.timing ?? DEFAULT_TIMING;
    this.roundMs = opts.roundMs ?? 50;
    this.quickRounds = opts.quickRounds ?? QUICK_ROUNDS;
    this.holdMs = opts.holdMs ?? 1000;
    this.rosterPruneMs = opts.rosterPruneMs ?? ROSTER_PRUNE_AFTER_MS;
    this.replicas = opts.replicas;
    for (const b of opts.boards) this.byAddress.set(b.address, b);
    this.state = new TrustState(opts.id, [...this.byAddress.keys()], this.timing);
  }

  /**
   * Surveys the backends' incarnation keys, then starts a round loop per backend;
   * resolves once each backend had its first round (answered or failed) and every
   * live peer names this sidecar (a round or two of theirs; D at most: see
   * TrustState.fresh), so that requests arriving from then on find a fresh view.
   */
  async start(): Promise<void> {
    this.running = true;
    this.placementDigest();
    await this.survey();
    const first = [...this.byAddress.keys()].map((a) => new Promise<void>((resolve) => this.loops.push(this.loop(a, resolve))));
    await Promise.all(first);
    const deadline = this.clock.now() + this.timing.silentMs;
    while (this.running && !this.state.namedByEveryLivePeer(this.clock.now()) && this.clock.now() < deadline) {
      await this.changed(deadline - this.clock.now());
    }
  }

  /**
   * Stops acting (the view goes stale at once: no request sends anything more), then
   * tells the other sidecars, so that none waits for this one's acknowledgement.
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.state.forgetRounds();
    for (const c of this.fills.values()) c.abort();
    this.wake();
    await Promise.all(this.loops);
    const record = encodeRecord(this.state.record([], true));
    await Promise.all([...this.byAddress.values()].map((n) => this.writeRecord(n, record)));
  }

  private writeRecord(node: MemcachedNode, record: Buffer): Promise<NodeStore> {
    return node.store({ mode: 'set', key: recordKey(this.state.id), value: record, flags: 0, exptime: RECORD_TTL_S, cas: 0n });
  }

  /**
   * A reload: the backend list (new Backend objects for new connection settings) and the
   * replica count. Rounds go on with the new nodes; the stages of kept backends stay.
   */
  reconfigure(boards: readonly MemcachedNode[], replicas: number): void {
    this.replicas = replicas;
    this.digest = null;
    this.byAddress.clear();
    for (const b of boards) this.byAddress.set(b.address, b);
    for (const a of [...this.fills.keys()]) if (!this.byAddress.has(a)) this.fills.get(a)?.abort();
    // A backend removed and added again starts its stages afresh: no fill of before counts.
    for (const a of [...this.filled.keys()]) if (!this.byAddress.has(a)) this.filled.delete(a);
    for (const a of [...this.reach]) if (!this.byAddress.has(a)) this.reach.delete(a);
    for (const a of [...this.missingSince.keys()]) if (!this.byAddress.has(a)) this.missingSince.delete(a);
    this.state.setAddresses([...this.byAddress.keys()]);
    this.placementDigest();
    if (this.running) for (const node of this.byAddress.values()) if (!this.looping.has(node.address)) this.loops.push(this.loop(node.address, () => {}));
    this.wake();
  }

  roleOf(node: MemcachedNode): Role {
    return this.state.roleOf(node.address);
  }

  /**
   * A reload made this backend the first of some keys it holds no copy of (src/reload.ts,
   * zoneMatesToRefill): it goes out and is refilled, by agreement, before it decides again.
   */
  proposeRefill(address: string): void {
    this.propose(address, 'out', 'reconfigured');
  }

  // ---- requests ----

  /** A request starts (OrderedRouter): it acts under the current view until it ends. */
  admit(scope: FollowUps): void {
    const t: Ticket = { generation: this.state.generation, parked: false };
    this.tickets.set(scope, t);
    this.count(t.generation);
  }

  private count(generation: number): void {
    this.active.set(generation, (this.active.get(generation) ?? 0) + 1);
  }

  /** The request and its follow-up steps ended. */
  release(scope: FollowUps): void {
    const t = this.tickets.get(scope);
    if (t === undefined || t.parked) return;
    this.tickets.delete(scope);
    this.uncount(t.generation);
  }

  private uncount(generation: number): void {
    const n = (this.active.get(generation) ?? 1) - 1;
    if (n > 0) this.active.set(generation, n);
    else this.active.delete(generation);
    if (this.unpublished !== null) this.tryPublish();
  }

  /**
   * Not trusted, or about to stop being trusted (a change acknowledged, not yet applied): its
   * answers prove nothing. Requests whose placement that change moves are held meanwhile; a
   * resync run (a sweep, say) is not, and must not take a backend just found restarted for
   * a trusted one.
   */
  isResyncing(node: MemcachedNode): boolean {
    return this.state.roleOf(node.address) !== 'trusted' || this.state.seenRoleOf(node.address) !== 'trusted';
  }

  catchingUp(key: Buffer, scope?: FollowUps): Promise<boolean> | undefined {
    return this.handingOver(key, scope);
  }

  /**
   * Undefined: the key may go at once (the common case, no allocation). Otherwise a
   * promise: true once the view lets it go, false when it waited holdMs in vain.
   */
  handingOver(key: Buffer, scope?: FollowUps): Promise<boolean> | undefined {
    if (!this.held(key)) return undefined;
    const ticket = scope === undefined ? undefined : this.tickets.get(scope);
    if (ticket !== undefined && !ticket.parked) {
      ticket.parked = true;
      this.uncount(ticket.generation);
    }
    const deadline = this.clock.now() + this.holdMs;
    const wait = async (): Promise<boolean> => {
      while (this.held(key)) {
        if (!this.running || this.clock.now() >= deadline) return false;
        await this.changed(deadline - this.clock.now());
      }
      return true;
    };
    return wait().then((go) => {
      if (ticket !== undefined && ticket.parked) {
        ticket.parked = false;
        ticket.generation = this.state.generation;
        this.count(ticket.generation);
      }
      return go;
    });
  }

  private held(key: Buffer): boolean {
    const fresh = this.serving();
    if (fresh && !this.state.pending) return false;
    if (!fresh) return true;
    return this.state.holds(this.opts.ringOrder(key).map((n) => n.address), this.replicas);
  }

  /**
   * The view is fresh and every out still away that this sidecar acknowledged while it was not
   * has its stand-in keys. When every sidecar acknowledged such an out while not fresh (all
   * joining at a cluster's start, say), nobody marked it, and the stand-ins' copies would mark
   * nothing; no sidecar served meanwhile, so keys added now, before this one serves, are under
   * every write that went to a stand-in by that out (a sidecar fresh when it acknowledged added
   * its own, and the first add stays).
   */
  private serving(): boolean {
    if (!this.state.fresh(this.clock.now())) return false;
    if (this.lateMarking !== null) return false;
    if (this.unmarkedOuts.size === 0) return true;
    const marks: Promise<unknown>[] = [];
    for (const [address, { epoch, from }] of this.unmarkedOuts) {
      const stage = this.state.seenStageOf(address);
      const away = (stage.role === 'out' && stage.epoch === epoch) || (stage.role === 'refill' && stage.epoch === epoch + 1);
      if (away) marks.push(this.markStandInsOf(address, epoch, from, 'late'));
    }
    this.unmarkedOuts.clear();
    if (marks.length === 0) return true;
    const all = Promise.all(marks).finally(() => {
      this.lateMarking = null;
      this.wake();
    });
    this.lateMarking = all;
    return false;
  }

  /** Resolves on the next change of view, or after `ms`. */
  private changed(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      void this.clock.sleep(Math.max(1, Math.min(ms, this.roundMs))).then(resolve);
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Sleeps until the next round is due, or until hurry(). */
  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.pausing.add(resolve);
      void this.clock.sleep(ms).then(() => {
        this.pausing.delete(resolve);
        resolve();
      });
    });
  }

  /**
   * Something new to publish (an acknowledgement, an applied stage): every backend's next round
   * starts now rather than when due, so a change takes a few round trips to apply rather than a
   * few rounds; with many sidecars, each waits on the slowest to read it.
   */
  private hurry(): void {
    const pausing = [...this.pausing];
    this.pausing.clear();
    for (const resolve of pausing) resolve();
  }

  // ---- the router's nodes ----

  /** The node the ring and router use for `node`: guarded by the view (see the head comment). */
  wrap(node: MemcachedNode): MemcachedNode {
    const guard = <R extends { status: string }>(send: () => Promise<R>): Promise<R | Failed> => this.guard(node.address, send);
    return {
      address: node.address,
      isUp: () => node.isUp(),
      get: (key, touch) => guard(() => node.get(key, touch)),
      casOf: (key) => guard(() => node.casOf(key)),
      store: (req) => guard(() => node.store(req)),
      delete: (key, cas) => guard(() => node.delete(key, cas)),
      touch: (key, exptime) => guard(() => node.touch(key, exptime)),
      arith: (kind, key, delta, create) => guard(() => node.arith(kind, key, delta, create)),
      flush: (delay) => guard(() => this.flush(node, delay)),
    };
  }

  /**
   * A client's flush_all also empties replicached's own keys: the incarnation key is
   * written again at once (and again when a delayed flush takes effect), and this
   * sidecar's rounds take its absence meanwhile for the flush, not for a restart.
   */
  private async flush(node: MemcachedNode, delay: number): Promise<NodeFlush> {
    this.flushesPending.set(node.address, (this.flushesPending.get(node.address) ?? 0) + 1);
    this.flushesSent.set(node.address, (this.flushesSent.get(node.address) ?? 0) + 1);
    try {
      const r = await node.flush(delay);
      if (r.status === 'ok') {
        await this.markIncarnation(node);
        if (delay > 0) void this.clock.sleep(delay * 1000 + 50).then(() => this.markIncarnation(node));
      }
      return r;
    } finally {
      const n = (this.flushesPending.get(node.address) ?? 1) - 1;
      if (n > 0) this.flushesPending.set(node.address, n);
      else this.flushesPending.delete(node.address);
    }
  }

  private guard<R extends { status: string }>(address: string, send: () => Promise<R>): Promise<R | Failed> {
    if (!this.serving()) return Promise.resolve(STALE);
    if (this.state.seenRoleOf(address) === 'out' && this.state.roleOf(address) !== 'out') return Promise.resolve(GOING_OUT);
    // A failure of the backend seen while the request was out (a connection dropped: the process
    // may have restarted, and the request gone on a connection opened to the new, empty one before
    // the drop was read here) makes its reply a failure too: a miss from an empty process would
    // otherwise pass for the member's answer.
    const failures = this.failuresSeen.get(address) ?? 0;
    const handle = this.replyFrom(address) as unknown as (reply: R) => R | Failed;
    return send().then((reply) => {
      const r = handle(reply);
      return r.status !== 'failed' && (this.failuresSeen.get(address) ?? 0) !== failures ? FAILED_MEANWHILE : r;
    });
  }

  /** A reply's handler for the backend: a failure proposes it out; a reply that came back stale is none. */
  private replyFrom(address: string): (reply: { status: string }) => { status: string } {
    let f = this.replyHandlers.get(address);
    if (f === undefined) {
      f = (reply) => {
        if (reply.status === 'failed') this.failed(address);
        return this.state.fresh(this.clock.now()) ? reply : STALE;
      };
      this.replyHandlers.set(address, f);
    }
    return f;
  }

  /** A request or a round failed on the backend: it goes out, unless it is out already. */
  failed(address: string): void {
    this.failuresSeen.set(address, (this.failuresSeen.get(address) ?? 0) + 1);
    this.propose(address, 'out', 'failed');
  }

  private propose(address: string, role: Role, reason: Reason): void {
    const change = this.state.propose(address, role, reason);
    if (change !== null) this.acknowledged([change]);
  }

  private acknowledged(changes: StageChange[]): void {
    if (changes.length === 0) return;
    for (const c of changes) {
      // This sidecar's survey found it restarted, and a record (of a sidecar that did not see
      // it: one that died, say) says otherwise: the out goes past that stage. Unless its round
      // found the incarnation key since: the refill proposed after the restart wrote it first
      // (markRefill), and the stages from there on count with the restart (else a newcomer and
      // a peer that refills it would take it out and back for as long as they both run).
      if (c.to.role !== 'out' && this.foundRestarted.has(c.address)) {
        if (this.incarnationFound.get(c.address) === true) this.foundRestarted.delete(c.address);
        else this.propose(c.address, 'out', 'restarted');
      }
      this.opts.events?.acknowledged?.(c);
      // A stand-in key says what this sidecar's view holds of the others: from a stale view (a
      // newcomer that has not read every backend yet) it may name one trusted that the others
      // agreed out while this one could not read it. Those that are fresh mark it; one that is
      // not marks it once fresh, before it serves (see serving).
      if (c.to.role === 'out') {
        if (this.state.fresh(this.clock.now())) this.markStandInsOf(c.address, c.to.epoch, c.from);
        else this.unmarkedOuts.set(c.address, { epoch: c.to.epoch, from: c.from });
      }
      if (c.to.role === 'trusted') {
        this.bornEmpty.delete(c.address);
        this.mayHaveRestarted.delete(c.address);
      }
      const node = this.byAddress.get(c.address);
      if (c.to.role === 'refill') this.markJoinedAll(c.address, c.to.epoch);
      // Trusted again, it may stand in for a backend still away: its stand-in key goes on it too.
      if (c.to.role === 'trusted' && node !== undefined) {
        for (const a of this.state.addresses) {
          const stage = this.state.stageOf(a);
          if (stage.role === 'trusted') continue;
          // Under the key its refill reads (untrustedSince), and its current one.
          for (const epoch of new Set([outEpoch(stage), this.state.untrustedSince(a, this.clock.now())])) this.markStandIns(a, epoch, [node], () => ({ trusted: true }));
        }
      }
    }
    this.unpublished = { generation: this.state.generation, stages: this.state.acknowledged() };
    this.tryPublish();
    this.wake();
  }

  /**
   * The stand-in keys of Y's out at `epoch`, from `from`, on every other backend. `trusted`: the
   * backend takes Y's writes from now on, trusted or in refill (its own trust pending, say: in
   * refill it takes the writes of the keys it stands in for all the same). Out again from refill:
   * it was never made whole since it last went out, so a backend that outlasted that outage
   * outlasts this one too (its mark of then says so). In refill, the mark names it: it took them
   * only in that refill while it lasts (markedOutlasted). One that took them before (the mark of
   * then) keeps what that says: trusted, or the first refill. Out again from refill, the key also
   * names the out epoch at which Y's time away began: as a live witness saw it, else as the key
   * of then names it, else that key's own epoch (Y was away by then), so a restart of Y, which
   * takes the filled epoch that departureMark would scan from, does not move the departure later.
   * Only from a key of this sidecar's or of one whose record it read: one from before every
   * sidecar restarted, when epochs begin again, may name an epoch used again.
   */
  private markStandInsOf(address: string, epoch: number, from: Stage, note?: StandInNote): Promise<unknown> {
    const before = from.role === 'refill' ? standInKey(address, outEpoch(from)) : null;
    const witnessed = before === null ? undefined : this.state.witnessedUntrustedSince(address, this.clock.now());
    const taking = async (n: MemcachedNode): Promise<Taking> => {
      const here: Taking = this.state.takesWrites(n.address) ? { trusted: true, refill: this.state.takingInRefill(n.address) } : { trusted: false };
      if (before === null) return here;
      const trustedHere = here.trusted && here.refill === undefined;
      if (trustedHere && witnessed !== undefined) return { ...here, awaySince: witnessed };
      const r = await n.get(before);
      const ours = r.status === 'hit' && this.state.hasRead(standInWriter(r.item.value));
      const awaySince = witnessed ?? (ours ? (standInAwaySince(r.item.value) ?? outEpoch(from)) : undefined);
      if (trustedHere || r.status !== 'hit' || !standInTrusted(r.item.value)) return { ...here, awaySince };
      return { trusted: true, refill: standInRefill(r.item.value), joined: standInNote(r.item.value) === 'joined', awaySince };
    };
    const on = [...this.byAddress.values()].filter((n) => n.address !== address);
    return this.markStandIns(address, epoch, on, taking, note, note === undefined);
  }

  /**
   * Before this sidecar acknowledges Y out (and so before anyone writes Y's keys to a stand-in),
   * the stand-in key goes on every other backend (`on`), and on a backend trusted again while Y
   * is away: the first add stays, its CAS under all of those writes. A backend this sidecar
   * cannot reach takes none of its writes either. `replacingOrphans` (an acknowledgement not yet
   * published): a key whose writer is no live sidecar is replaced (see below).
   */
  private markStandIns(
    address: string,
    epoch: number,
    on: readonly MemcachedNode[],
    taking: (n: MemcachedNode) => Taking | Promise<Taking>,
    note?: StandInNote,
    replacingOrphans = false,
  ): Promise<unknown> {
    const key = standInKey(address, epoch);
    const live = new Set(this.state.liveIds(this.clock.now()));
    // Whether the backend it goes on takes Y's writes from now on, and in which refill if in one (see markedOutlasted).
    const add = async (n: MemcachedNode) => {
      const { trusted, refill, joined, awaySince } = await taking(n);
      const value = standInValue(this.state.id, trusted, this.placementDigest(), refill, joined === true ? 'joined' : note, awaySince);
      const added = await n.store({ mode: 'add', key, value, flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: 0n });
      if (!replacingOrphans || added.status !== 'not_stored') return added;
      // A key whose writer is no live sidecar may be an orphan: written for an earlier out of the
      // same epoch that its writer acknowledged and died before publishing, which applied nowhere,
      // and so marking a moment long before this departure. Replaced (CAS-guarded: a live one's
      // replacement stays): this write, too, precedes this sidecar's acknowledgement, so it is
      // still before anyone applies this out. A live writer's key is this out's.
      const found = await n.get(key);
      if (found.status !== 'hit' || live.has(standInWriter(found.item.value))) return added;
      return n.store({ mode: 'set', key, value, flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: found.item.cas });
    };
    return this.whileMarking(Promise.all(on.map(add)));
  }

  /** A stand-in key write: acknowledgements wait for it (tryPublish), and publish once it settles. */
  private whileMarking(write: Promise<unknown>): Promise<unknown> {
    const all: Promise<unknown> = write.finally(() => {
      this.marking.delete(all);
      this.tryPublish();
    });
    this.marking.add(all);
    return all;
  }

  /**
   * Into refill while others are away: from now on it takes their writes as a stand-in or member
   * (markJoined). As this sidecar acknowledges the refill, and again as it applies it: one that
   * left in between got its stand-in key on Z from sidecars that had not applied the refill, which
   * says `away` (limit in docs/trust.md).
   */
  private markJoinedAll(address: string, refill: number): void {
    const node = this.byAddress.get(address);
    if (node === undefined || !this.state.fresh(this.clock.now())) return;
    for (const a of this.state.addresses) {
      if (a === address || this.state.seenRoleOf(a) === 'trusted') continue;
      for (const epoch of new Set([outEpoch(this.state.seenStageOf(a)), this.state.untrustedSince(a, this.clock.now())])) this.markJoined(a, epoch, node, refill);
    }
  }

  /**
   * Before this sidecar acknowledges Z's refill at `refill` (and so before anyone routes Z a write
   * by it), Y being away: Y's stand-in key of `epoch` on Z, if it says `away` (Z was away when Y
   * left) or is missing, now says Z takes Y's writes from here, in that refill, and `joined`. Its
   * CAS is under every write Z takes in that refill (every sidecar acknowledges it first; written
   * as the refill applies, under those taken since), so Z's items over it are writes it took for
   * Y's keys, and the refills that read who outlasted whom
   * (markedOutlasted) see that Z took what Y missed in that refill, not nothing. A `set` guarded by
   * the `away` value's CAS, or an add: the first one stays.
   */
  private markJoined(address: string, epoch: number, on: MemcachedNode, refill: number): void {
    const key = standInKey(address, epoch);
    const value = standInValue(this.state.id, true, this.placementDigest(), refill, 'joined');
    const job = (async () => {
      const r = await on.get(key);
      if (r.status === 'failed' || (r.status === 'hit' && standInTrusted(r.item.value))) return;
      const cas = r.status === 'hit' ? r.item.cas : 0n;
      await on.store({ mode: cas === 0n ? 'add' : 'set', key, value, flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas });
    })();
    void this.whileMarking(job);
  }

  /**
   * The CAS over which an item of a backend in refill is its key's latest write. `ahead`: the
   * backends before it in the key's order. In this refill it took every write of the key while
   * it was in the key's placement (a write it failed takes it out of the stage), which it is
   * while fewer than R backends ahead of it are trusted: always, for a natural member. So its
   * item is the latest if written over its incarnation key's CAS (see markRefill), and, for a
   * stand-in, after all but R-1-t of the backends ahead that are away now (t: those ahead
   * trusted now) left trusted: only those and the trusted ones can have been trusted since the
   * item, so it never left the placement. A backend left trusted at the CAS, on it, of the
   * stand-in key of its outage (written before anyone routes by that); a missing key counts as
   * a departure since. null: not in refill, going out, no mark, or not in the placement now.
   */
  async refillSince(member: MemcachedNode, ahead: readonly MemcachedNode[], replicas: number): Promise<bigint | null> {
    const node = this.byAddress.get(member.address);
    const stage = this.state.stageOf(member.address);
    const inStage = () => {
      const now = this.state.stageOf(member.address);
      return now.role === 'refill' && now.epoch === stage.epoch && this.state.seenRoleOf(member.address) === 'refill';
    };
    if (node === undefined || !inStage()) return null;
    const trusted = (a: string) => this.state.roleOf(a) === 'trusted' || this.state.seenRoleOf(a) === 'trusted';
    const left = replicas - ahead.filter((b) => trusted(b.address)).length;
    if (left <= 0) return null;
    const away = ahead.filter((b) => !trusted(b.address));
    const now = this.clock.now();
    const [mark, ...departures] = await Promise.all([
      this.refillMark(node, stage.epoch),
      ...(away.length < left ? [] : away.map((b) => this.casOn(node, stage.epoch, standInKey(b.address, this.state.untrustedSince(b.address, now))))),
    ]);
    if (mark === null || !inStage()) return null;
    if (departures.length === 0) return mark;
    const threshold = placementBegan(departures, left);
    if (threshold === null) return null;
    return threshold > mark ? threshold : mark;
  }

  /**
   * The CAS of Y's incarnation key, if its value says it was written for Y's refill at `epoch`
   * (see markRefill): added at the out epoch just before, or with ` r<epoch>` appended. Else (a
   * proposal's write that did not land, a fill mark since) null: no mark for this refill.
   */
  private refillMark(node: MemcachedNode, epoch: number): Promise<bigint | null> {
    return this.casOn(node, epoch, INCARNATION_KEY, (value) => incarnationNamesRefill(value, epoch));
  }

  private remember(id: string, cas: bigint): void {
    if (this.marksSeen.size >= MARKS_SEEN_MAX) this.marksSeen.clear();
    this.marksSeen.set(id, cas);
  }

  /**
   * The CAS of a reserved key (a stand-in key, the incarnation key) on a backend in refill at
   * `epoch`, if `accepts` its value; null when missing, refused or not read. Found ones are
   * remembered for the stage: the first add stays, and a restart ends the stage.
   */
  private async casOn(node: MemcachedNode, epoch: number, key: Buffer, accepts: (value: Buffer) => boolean = () => true): Promise<bigint | null> {
    const id = `${node.address} ${epoch} ${key.toString('latin1')}`;
    const known = this.marksSeen.get(id);
    if (known !== undefined) return known;
    const r = await node.get(key);
    if (r.status !== 'hit' || !accepts(r.item.value)) return null;
    this.remember(id, r.item.cas);
    return r.item.cas;
  }

  /**
   * The CAS under which a stand-in's items predate its current time in the key's placement: an
   * item with a lower CAS is a copy left from an earlier time it stood in, maybe since
   * overwritten or deleted, and no source. `ahead`: the backends before it in the key's order.
   * It is in the placement while fewer than R of them are trusted, so it stood in without a break
   * since all but R-1-t of those away now left (t: those ahead trusted now), as refillSince
   * reads: at the departure marks, its stand-in keys of their outages that say it took their
   * writes from that moment (`trusted`: it was trusted, or in refill, and not going out). A key
   * written while it was away itself, or none, marks no moment: as late as any. For the first
   * stand-in, the lowest of its natural members' marks; a later one stood in only once enough of
   * those ahead were away. null: no mark tells where its time in the placement began (or it is in
   * none now): use none of its items.
   */
  async standInSince(standIn: MemcachedNode, ahead: readonly MemcachedNode[], replicas: number): Promise<bigint | null> {
    const node = this.byAddress.get(standIn.address);
    if (node === undefined) return null;
    const away = ahead.filter((b) => this.state.stageOf(b.address).role !== 'trusted');
    const left = replicas - (ahead.length - away.length);
    if (left <= 0 || away.length < left) return null;
    const marks: Array<bigint | null> = [];
    for (const b of away) {
      const r = await this.departureMark(node, b, this.state.stageOf(b.address));
      if (r.status === 'failed') return null;
      marks.push(r.status === 'hit' && standInTrusted(r.item.value) ? r.item.cas : null);
    }
    return placementBegan(marks, left);
  }

  /**
   * standInSince, when the stand-in has been in the key's placement without a break since then:
   * it is trusted with nothing pending, and its incarnation key, which each refill of its own
   * rewrites (markRefill), is under it: it was not away since. So it took every write and delete of
   * the key since (a write it failed would have taken it out, and refilled it). null: not known.
   * 'failed': its incarnation key not read, or a stage changed while reading (what was read may
   * no longer tell, nor say that nothing tells): asked again.
   */
  async stoodInSince(standIn: MemcachedNode, ahead: readonly MemcachedNode[], replicas: number): Promise<bigint | null | 'failed'> {
    const node = this.byAddress.get(standIn.address);
    if (node === undefined || !this.state.isTrusted(standIn.address)) return null;
    const generation = this.state.generation;
    const [since, born] = await Promise.all([this.standInSince(standIn, ahead, replicas), node.get(INCARNATION_KEY)]);
    if (this.state.generation !== generation || born.status === 'failed') return 'failed';
    if (since === null || born.status !== 'hit' || born.item.cas >= since) return null;
    return this.state.isTrusted(standIn.address) ? since : null;
  }

  /**
   * The stand-in has stood in without a break since each of `naturals` that is not trusted left:
   * it is trusted (nothing pending), and its stand-in key of each one's outage (the one standInSince
   * reads) says it was trusted then, under the same placement, and is over its incarnation key's
   * CAS, which a refill of its own rewrites (markRefill, markFilled): it was never away since. So it
   * took every write and delete of the keys it stood in for since then (resync-run.ts,
   * copyFromMembers, says which).
   */
  async stoodInThroughout(standIn: MemcachedNode, naturals: readonly MemcachedNode[]): Promise<boolean> {
    const node = this.byAddress.get(standIn.address);
    const away = naturals.filter((n) => this.state.roleOf(n.address) !== 'trusted');
    if (node === undefined || away.length === 0 || !this.state.isTrusted(standIn.address)) return false;
    const now = this.clock.now();
    const [born, ...marks] = await Promise.all([
      node.get(INCARNATION_KEY),
      ...away.map((n) => node.get(standInKey(n.address, this.state.untrustedSince(n.address, now)))),
    ]);
    if (born.status !== 'hit') return false;
    const since = born.item.cas;
    const digest = this.placementDigest();
    // Not a `joined` one: it began to stand in after they left, without what their keys held then.
    const marked = marks.every(
      (r) => r.status === 'hit' && standInTrusted(r.item.value) && standInNote(r.item.value) !== 'joined' && standInDigest(r.item.value) === digest && r.item.cas > since,
    );
    return marked && this.state.isTrusted(standIn.address);
  }

  /**
   * For a fill of `target` (in refill) with no trusted source, the items `member` (in refill too,
   * but no longer in the refill in which it took the writes `target` missed while away) took since
   * that refill began: `member`, over the CAS of its refill-began key of that refill (and, for a
   * stand-in, over standInSince: it was in the key's placement); `target`, the lowest CAS of its
   * own refill-began keys of this time away, under which its items predate the time away. That
   * refill of `member` overlapped `target`'s time away: every write of a key `member` holds for
   * it took since was also taken by `target` before it left, or came after. So an item of
   * `member` over its mark is at least as new as one of `target` under its own. null: nothing
   * tells (no witness or mark says it took them only in refill, a key missing). 'failed': a read
   * failed, or a stage changed while reading: not known, ask again.
   */
  async outageRefillSince(
    target: MemcachedNode,
    member: MemcachedNode,
    ahead: readonly MemcachedNode[],
    replicas: number,
  ): Promise<{ member: bigint; target: bigint } | null | 'failed'> {
    const generation = this.state.generation;
    const id = `${generation} ${target.address} ${member.address}`;
    let marks = this.outageMarks.get(id);
    if (marks === undefined) {
      marks = this.outageMarksOf(target, member);
      if (this.outageMarks.size >= MARKS_SEEN_MAX) this.outageMarks.clear();
      this.outageMarks.set(id, marks);
    }
    const found = await marks;
    // A read failed (a backend stopping, this view stale for a moment): asked again next time, not kept.
    if (found === 'failed') {
      if (this.outageMarks.get(id) === marks) this.outageMarks.delete(id);
      return 'failed';
    }
    if (found === null) return null;
    let since = found.member;
    if (ahead.length >= replicas) {
      const standIn = await this.standInSince(member, ahead, replicas);
      if (standIn === null) return null;
      if (standIn > since) since = standIn;
    }
    // A stage changed during these reads: they may no longer tell, nor say that nothing tells (a
    // skipped key would keep the target's older item). Asked again, as after a failed read.
    return this.state.generation === generation ? { member: since, target: found.target } : 'failed';
  }

  /** outageRefillSince's marks, but for a stand-in's placement: the same for every key while no stage changes. */
  private async outageMarksOf(target: MemcachedNode, member: MemcachedNode): Promise<{ member: bigint; target: bigint } | null | 'failed'> {
    const node = this.byAddress.get(member.address);
    const own = this.byAddress.get(target.address);
    const stage = this.state.stageOf(member.address);
    const targetStage = this.state.stageOf(target.address);
    if (node === undefined || own === undefined || stage.role !== 'refill' || targetStage.role !== 'refill') return null;
    const refill = await this.tookWhileAway(target, member, targetStage);
    if (refill === 'failed') return 'failed';
    if (refill === null || refill >= stage.epoch) return null;
    const away = this.state.witnessedUntrustedSince(target.address, this.clock.now()) ?? (await this.awayEpochs(target.address, targetStage))?.[0];
    if (away === undefined) return 'failed';
    if (targetStage.epoch - away > DEPARTURE_SCAN_MAX) return null;
    const [began, left, ...targetMarks] = await Promise.all([
      node.get(refillBeganKey(refill)),
      own.get(standInKey(member.address, refill + 1)),
      ...Array.from({ length: targetStage.epoch - away }, (_, i) => own.get(refillBeganKey(away + 1 + i))),
    ]);
    const hits = targetMarks.flatMap((r) => (r.status === 'hit' ? [r.item.cas] : []));
    if (began.status === 'failed' || targetMarks.some((r) => r.status === 'failed') || left.status === 'failed') return 'failed';
    if (began.status !== 'hit' || hits.length === 0) return null;
    const beforeAway = hits.reduce((a, b) => (a < b ? a : b));
    // `member` left that refill at out epoch refill+1. Its stand-in key of that out went on `target`
    // when the first sidecar acknowledged it (the first add stays), and until then every sidecar
    // sent `member` every write of its keys: an item of `target` under that key was written while
    // `member` took them all, even one `target` took in a refill of its own in this time away.
    // Not one written after that out applied (late, joined): it is over writes `member` did not take.
    const beforeMemberLeft = left.status === 'hit' && standInNote(left.item.value) === undefined ? left.item.cas : 0n;
    return { member: began.item.cas, target: beforeMemberLeft > beforeAway ? beforeMemberLeft : beforeAway };
  }

  /**
   * The refill in which `member` took the writes `target` missed in its current time away, when it
   * took them only in refill: by the live witnesses, else by `target`'s stand-in keys of that time
   * on `member` (see markedOutlasted). null: it took them trusted, or nothing tells.
   */
  private async tookWhileAway(target: MemcachedNode, member: MemcachedNode, targetStage: Stage): Promise<number | null | 'failed'> {
    const witnessed = this.state.tookWhileAway(target.address, member.address, this.clock.now());
    if (witnessed !== undefined) return witnessed === 'trusted' ? null : witnessed;
    if (this.state.outlastedBy(target.address, this.clock.now()) !== null) return null;
    const epochs = await this.awayEpochs(target.address, targetStage);
    if (epochs === null) return 'failed';
    const { took, failed } = await this.standInMarks(member, target.address, epochs);
    if (failed) return 'failed';
    return typeof took === 'number' ? took : null;
  }

  /**
   * What `on`'s stand-in keys of `away` at `epochs` (its time away: awayEpochs) say: `on` took
   * its writes trusted, or only in refill (the first refill named), or none says it took them
   * (null); `failed`: a read failed (the others still count).
   */
  private async standInMarks(on: MemcachedNode, away: string, epochs: readonly number[]): Promise<{ took: 'trusted' | number | null; failed: boolean }> {
    const reads = await Promise.all(epochs.map((epoch) => on.get(standInKey(away, epoch))));
    const failed = reads.some((r) => r.status === 'failed');
    const took = reads.flatMap((r) => (r.status === 'hit' && standInTrusted(r.item.value) ? [standInRefill(r.item.value) ?? ('trusted' as const)] : []));
    return { took: took.includes('trusted') ? 'trusted' : (took[0] ?? null), failed };
  }

  /**
   * The stand-in key, on `node`, of the out epoch at which `natural` (away) left trusted: at
   * untrustedSince when a live witness tells. Else (no live sidecar saw it leave: they all came
   * since) its incarnation key's filled epoch F tells where its time away can begin: it is
   * proposed trusted only once that mark stood (proposeTrusted), so its last trusted stage is at
   * F+1 at the latest, and it left at F+1 (an out proposed from refill(F) beats trusted(F+1)) or
   * later; every stand-in key of an epoch from there to its current out epoch is of this time
   * away, written when it went out at that epoch (or when `node` was trusted again while it was
   * away). The lowest one on `node` is the departure's, or one written since (later, so it marks
   * less). No filled epoch (a restart since): its current out epoch's key, which, for an out
   * from a refill, names the out epoch S at which the time away began (markStandInsOf): every
   * key from S to there is of this time away, and the lowest one is read as above.
   */
  private async departureMark(node: MemcachedNode, natural: MemcachedNode, stage: Stage): Promise<NodeGet> {
    const witnessed = this.state.witnessedUntrustedSince(natural.address, this.clock.now());
    const at = (epoch: number) => node.get(standInKey(natural.address, epoch));
    if (witnessed !== undefined) return at(witnessed);
    let epochs = (await this.awayEpochs(natural.address, stage)) ?? [outEpoch(stage)];
    const current = epochs[epochs.length - 1];
    // No filled epoch: the current key is read first, for the epoch it names; it is the answer when no earlier one is there.
    let latest: NodeGet | undefined;
    if (epochs.length === 1) {
      latest = await at(current);
      const since = latest.status === 'hit' ? standInAwaySince(latest.item.value) : undefined;
      if (since !== undefined && since < current && current - since <= DEPARTURE_SCAN_MAX) epochs = Array.from({ length: current - since + 1 }, (_, i) => since + i);
    }
    for (const epoch of epochs.slice(0, -1)) {
      const r = await at(epoch);
      if (r.status !== 'miss') return r;
    }
    return latest ?? at(current);
  }

  /**
   * The epochs, lowest first, whose stand-in keys of `address` are of its current time away, as
   * its incarnation key's filled epoch F tells (see departureMark): F+1 to its current out epoch.
   * Its current out epoch alone when there is no filled epoch (a restart since) or too many; null
   * when the read failed.
   */
  private async awayEpochs(address: string, stage: Stage): Promise<number[] | null> {
    const current = outEpoch(stage);
    const own = this.byAddress.get(address);
    const inc = own === undefined ? null : await own.get(INCARNATION_KEY);
    if (inc?.status === 'failed') return null;
    const filled = inc?.status === 'hit' ? Number(inc.item.value.toString('latin1').split(' ')[1]) : NaN;
    if (!Number.isSafeInteger(filled) || filled + 1 > current || current - filled > DEPARTURE_SCAN_MAX) return [current];
    return Array.from({ length: current - filled }, (_, i) => filled + 1 + i);
  }

  /**
   * Y's refill applied here because every live record acknowledged it: from now on each write of a
   * key of which Y is a natural member goes to Y too, and every request sent under an older view has
   * ended (one that timed out on a backend put that backend out, in the same records). The refill
   * key goes on every backend trusted or in refill here, with nothing pending (an add: the first
   * stays): its CAS is under every such write the backend takes from then on; its value names the
   * placement it holds for, and the backend's stage: its trusted epoch (see refillingSince), or
   * `r<epoch>` in refill (see refillTookSince).
   */
  private writeRefillKeys(address: string, epoch: number): void {
    const key = refillKey(address, epoch);
    const digest = this.placementDigest();
    for (const node of this.byAddress.values()) {
      const stage = this.state.stageOf(node.address);
      if (node.address === address || stage.role === 'out' || this.state.isPending(node.address)) continue;
      const value = Buffer.from(`${this.state.id} ${digest} ${refillKeyStage(stage)}`);
      void node.store({ mode: 'add', key, value, flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: 0n });
    }
  }

  /**
   * Y's out applied here because every live record acknowledged it: no live sidecar sends Y anything
   * from now until its next refill applies, and every request sent to Y under an older view has
   * ended (one that timed out put a backend out, in the same records). The out-applied key goes on
   * every other backend (a set: a later one marks less), and, when no live record shows this out
   * applied yet, the left-after key, naming the backends whose outs every live sidecar acknowledged
   * before anyone applied this one (TrustState.leftAfter). Only from a fresh view: a stale one may
   * count as live fewer sidecars than there are.
   */
  private writeOutMarks(address: string, stage: Stage): void {
    const now = this.clock.now();
    if (!this.state.fresh(now)) return;
    this.outsMarked.set(address, stage.epoch);
    const took = this.state.leftAfter(address, stage, now);
    const note = took === null || took.size === 0 ? null : Buffer.from([this.state.id, ...[...took].map(([a, e]) => `${a}=${e}`)].join(' '));
    for (const node of this.byAddress.values()) {
      if (node.address === address) continue;
      void node.store({ mode: 'set', key: outAppliedKey(address, stage.epoch), value: Buffer.from(this.state.id), flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: 0n });
      if (note !== null) void node.store({ mode: 'set', key: leftAfterKey(address, stage.epoch), value: note, flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: 0n });
    }
  }

  /**
   * Before a refill proposal of Y: the out-applied key, on Y, of each other backend whose out this
   * sidecar applied with every live acknowledgement and marked (writeOutMarks), and that is still
   * away at that out. Y may have been away when that out applied and not got the key then. An add:
   * one written then stays (it marks more), and any of them is over the moment that backend stopped
   * taking writes. Y takes no write before its refill applies, after this: a delete record on Y over
   * the key is of a delete sent after every write that backend holds from before its refill
   * (leftBefore). Only from a fresh view, as writeOutMarks. Failures are left: the key is missing.
   */
  private async carryOutMarks(node: MemcachedNode): Promise<void> {
    if (!this.state.fresh(this.clock.now())) return;
    const writes: Array<Promise<unknown>> = [];
    for (const [address, epoch] of this.outsMarked) {
      const stage = this.state.stageOf(address);
      if (stage.role === 'trusted' || outEpoch(stage) !== epoch) {
        this.outsMarked.delete(address);
        continue;
      }
      if (address === node.address) continue;
      writes.push(node.store({ mode: 'add', key: outAppliedKey(address, epoch), value: Buffer.from(this.state.id), flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: 0n }));
    }
    await Promise.all(writes);
  }

  /**
   * For a reconcile of `target` (in refill, its items kept from before), and another backend `other`
   * of a key's placement. `target`: the CAS under which `target`'s items were all sent to it before
   * its current out applied anywhere: the lower of its marks of its current refill (its refill-began
   * key, its incarnation key naming that refill; see markRefill), written by that refill's proposer
   * after it applied the out. Every live sidecar had acknowledged the out then, so none sends `target`
   * anything from then until its refill applies, after the marks; a write that timed out on it (and
   * put it out) lands, if at all, while it is out, before the next proposal. `other`: a CAS on
   * `other` over which a request it took was sent after that out applied: over both `target`'s
   * out-applied key of that out there (writeOutMarks, carryOutMarks; from a writer of this cluster's
   * epochs), and the start of `other`'s current stage: the refill-began key of the refill it is in or
   * was trusted from (markRefill), else its incarnation key, which every refill proposal rewrites
   * before that key. A request that timed out on `other` puts it out, and it is in a placement again
   * only after a refill, whose proposal writes those keys after such a request has landed: so a
   * request landing over both was not sent before the out-applied key was written, and was sent
   * after `target`'s out applied (resync-run.ts, deletedSinceLeft). null: `target` not in refill,
   * `other` out or going out, or a key missing; 'failed': a read failed, or a stage changed while
   * reading.
   */
  async leftBefore(target: MemcachedNode, other: MemcachedNode): Promise<{ target: bigint; other: bigint } | null | 'failed'> {
    const generation = this.state.generation;
    const own = this.byAddress.get(target.address);
    const node = this.byAddress.get(other.address);
    const stage = this.state.stageOf(target.address);
    if (own === undefined || node === undefined || own === node || stage.role !== 'refill') return null;
    const otherStage = this.state.stageOf(other.address);
    if (otherStage.role === 'out' || this.state.isPending(other.address)) return null;
    // The refill `other` is in, or the one it was trusted from (trusted(e) follows refill(e-1)).
    const otherRefill = otherStage.role === 'refill' ? otherStage.epoch : otherStage.epoch - 1;
    const [mark, otherBegan, otherBorn, began, inc] = await Promise.all([
      node.get(outAppliedKey(target.address, outEpoch(stage))),
      otherRefill >= 0 ? node.get(refillBeganKey(otherRefill)) : Promise.resolve<NodeGet>({ status: 'miss' }),
      node.get(INCARNATION_KEY),
      own.get(refillBeganKey(stage.epoch)),
      own.get(INCARNATION_KEY),
    ]);
    if ([mark, otherBegan, otherBorn, began, inc].some((r) => r.status === 'failed') || this.state.generation !== generation) return 'failed';
    if (mark.status !== 'hit' || !this.state.hasRead(markWriter(mark.item.value))) return null;
    // Where `other`'s time in its current stage began: its latest refill's proposal (its refill-began
    // key), else its incarnation key, which no write of that proposal's precedes either.
    const since = otherBegan.status === 'hit' ? otherBegan.item.cas : otherBorn.status === 'hit' ? otherBorn.item.cas : null;
    if (since === null) return null;
    const marks = [
      ...(began.status === 'hit' ? [began.item.cas] : []),
      ...(inc.status === 'hit' && incarnationNamesRefill(inc.item.value, stage.epoch) ? [inc.item.cas] : []),
    ];
    if (marks.length === 0) return null;
    return { target: marks.reduce((a, b) => (a < b ? a : b)), other: mark.item.cas > since ? mark.item.cas : since };
  }

  /**
   * For a fill of `target` (a natural member in refill) that misses a key no trusted member holds,
   * whether the item of `standIn` (the key's first stand-in, in refill) is newer than that miss
   * (resync-run.ts, copyFromMembers). `accepts(cas)`: the item was written (1) after every live
   * sidecar applied the target's current out (the out-applied key of it on the stand-in is under
   * it): the target took nothing since, until its refill, and no natural member was trusted in any
   * view since (2) for each other natural member, as (1), or the item is of a refill of the
   * stand-in that it left once every live sidecar had acknowledged that member's out, which it has
   * not left since (its left-after key), while no one applied the stand-in's out before that: each
   * delete that member took while trusted after the item reached the stand-in too (in the
   * placement: the target, ahead of it, was not trusted). `target`: a delete record of the key on
   * the target over it is a delete the target took in its current refill (each one sent to a
   * natural member in refill takes that record first). null: not so, or not known; 'failed': a
   * read failed or a stage changed while reading.
   */
  async missedSince(
    target: MemcachedNode,
    standIn: MemcachedNode,
    naturals: readonly MemcachedNode[],
  ): Promise<{ target: bigint; accepts(cas: bigint): boolean } | null | 'failed'> {
    const generation = this.state.generation;
    const node = this.byAddress.get(standIn.address);
    const own = this.byAddress.get(target.address);
    const targetStage = this.state.stageOf(target.address);
    const stage = this.state.stageOf(standIn.address);
    if (node === undefined || own === undefined || targetStage.role !== 'refill' || stage.role !== 'refill') return null;
    if (this.state.isPending(target.address) || this.state.isPending(standIn.address)) return null;
    if (naturals.some((n) => this.state.roleOf(n.address) === 'trusted' || this.state.seenRoleOf(n.address) === 'trusted')) return null;
    const others = naturals.filter((n) => n.address !== target.address);
    const now = this.clock.now();
    // The stand-in's refills before its current one (a refill-began key at each), lowest first.
    const scan = Array.from({ length: Math.min(DEPARTURE_SCAN_MAX, stage.epoch) }, (_, i) => stage.epoch - i).filter((e) => e >= 1);
    const [mine, began, inc, ...rest] = await Promise.all([
      node.get(outAppliedKey(target.address, outEpoch(targetStage))),
      own.get(refillBeganKey(targetStage.epoch)),
      own.get(INCARNATION_KEY),
      ...others.map((n) => node.get(outAppliedKey(n.address, outEpoch(this.state.stageOf(n.address))))),
      ...scan.map((e) => node.get(refillBeganKey(e))),
    ]);
    const marks = rest.slice(0, others.length);
    const refills = rest.slice(others.length);
    if ([mine, began, inc, ...rest].some((r) => r.status === 'failed')) return 'failed';
    // A mark or note counts only from a writer of this cluster's epochs (TrustState.hasRead): one
    // from before every sidecar restarted may name an epoch used again, and be under the item.
    const ofThisCluster = (r: NodeGet): r is Extract<NodeGet, { status: 'hit' }> => r.status === 'hit' && this.state.hasRead(markWriter(r.item.value));
    if (!ofThisCluster(mine)) return null;
    // Where the target's writes in its current refill begin: the lower of its refill marks.
    const targetMarks = [
      ...(began.status === 'hit' ? [began.item.cas] : []),
      ...(inc.status === 'hit' && incarnationNamesRefill(inc.item.value, targetStage.epoch) ? [inc.item.cas] : []),
    ];
    if (targetMarks.length === 0) return null;
    const targetSince = targetMarks.reduce((a, b) => (a < b ? a : b));
    // The stand-in's refills that it left by an out at the next epoch, and entered again at the one after.
    const beganAt = new Map<number, bigint>();
    scan.forEach((e, i) => {
      const r = refills[i];
      if (r.status === 'hit') beganAt.set(e, r.item.cas);
    });
    const ranges: Array<{ from: bigint; to: bigint; out: number }> = [];
    for (const [e, cas] of beganAt) {
      const next = beganAt.get(e + 2);
      if (e < stage.epoch && next !== undefined && next > cas) ranges.push({ from: cas, to: next, out: e + 1 });
    }
    // Each such refill's left-after key, from any backend that holds it (each writer's is true).
    const notes = new Map<number, Map<string, number>>();
    const reads = await Promise.all(
      ranges.flatMap((r) => [...this.byAddress.values()].map(async (b) => ({ out: r.out, read: await b.get(leftAfterKey(standIn.address, r.out)) }))),
    );
    for (const { out, read } of reads) {
      if (!ofThisCluster(read)) continue;
      const took = notes.get(out) ?? new Map<string, number>();
      for (const word of read.item.value.toString('latin1').split(' ').slice(1)) {
        const at = word.lastIndexOf('=');
        const epoch = Number(word.slice(at + 1));
        if (at > 0 && Number.isSafeInteger(epoch)) took.set(word.slice(0, at), Math.max(took.get(word.slice(0, at)) ?? epoch, epoch));
      }
      notes.set(out, took);
    }
    const over = mine.item.cas;
    const perOther = others.map((n, i) => {
      const m = marks[i];
      const leftFrom = this.state.untrustedSince(n.address, now);
      const current = outEpoch(this.state.stageOf(n.address));
      const inside = ranges.filter((r) => {
        const f = notes.get(r.out)?.get(n.address);
        return f !== undefined && f >= leftFrom && f <= current;
      });
      return { after: ofThisCluster(m) ? m.item.cas : null, inside };
    });
    if (this.state.generation !== generation) return 'failed';
    return {
      target: targetSince,
      accepts: (cas) =>
        cas > over &&
        perOther.every((o) => (o.after !== null && cas > o.after) || o.inside.some((r) => cas > r.from && cas < r.to)),
    };
  }

  /**
   * The CAS on `on` (a backend away, being reconciled) over which its items were written while
   * `natural` was in its current refill, which took every write of its natural keys from then on:
   * for such a key, an item of `on` with a higher CAS that `natural` misses was deleted since
   * (resync-run.ts, copyFromMembers). Only if `on` was trusted when the key was written and left
   * trusted once since, in the outage it is coming back from: a write that lands late (its request
   * timed out) put it out before (see leftOnceSince). null: `natural` is not in refill (or is
   * leaving it), or no refill key of the same placement tells.
   */
  async refillingSince(natural: MemcachedNode, on: MemcachedNode): Promise<bigint | null> {
    const node = this.byAddress.get(on.address);
    if (node === undefined) return null;
    const key = await this.refillKeyOn(natural.address, node);
    // Only a key written while `on` was trusted (one written in refill names `r<epoch>`) dates its leaving trusted.
    const trustedEpoch = key === null ? NaN : Number(key.stage);
    if (key === null || !Number.isSafeInteger(trustedEpoch)) return null;
    if (this.state.stageOf(on.address).role === 'trusted' || !leftOnceSince(trustedEpoch, this.state.untrustedSince(on.address, this.clock.now()))) return null;
    return key.cas;
  }

  /**
   * The CAS on `source` over which every write it took of a key of which `target` is a natural
   * member went to `target` too, in the refill `target` is in now: `source` has been in the same
   * stage, trusted or in refill, without a break since that refill applied (the refill key's value
   * names its stage then, the same as now), so a write that timed out on it since would have put it
   * out. For such an item, what the target holds is as new or newer (resync-run.ts, tookInRefill).
   * null: the target is not in refill (or is leaving it), the source is out or leaving its stage,
   * or no refill key of the same placement tells.
   */
  async refillTookSince(target: MemcachedNode, source: MemcachedNode): Promise<bigint | null> {
    const node = this.byAddress.get(source.address);
    const then = this.state.stageOf(source.address);
    const unchanged = (): boolean => {
      const now = this.state.stageOf(source.address);
      return now.role !== 'out' && now.role === then.role && now.epoch === then.epoch && !this.state.isPending(source.address);
    };
    if (node === undefined || !unchanged()) return null;
    const key = await this.refillKeyOn(target.address, node);
    return key !== null && key.stage === refillKeyStage(then) && unchanged() ? key.cas : null;
  }

  /**
   * The refill key of the refill `address` is in now, read on `node` (see writeRefillKeys): its CAS,
   * and the stage of `node` its value names (refillKeyStage). null: `address` is not in refill, or
   * left or began leaving it by the time the key was read; the key is not there; or it names another
   * placement (a reload moved keys since).
   */
  private async refillKeyOn(address: string, node: MemcachedNode): Promise<{ cas: bigint; stage: string } | null> {
    const stage = this.state.stageOf(address);
    const inThatRefill = (): boolean => {
      const now = this.state.stageOf(address);
      return now.role === 'refill' && now.epoch === stage.epoch && !this.state.isPending(address);
    };
    if (!inThatRefill()) return null;
    const r = await node.get(refillKey(address, stage.epoch));
    if (r.status !== 'hit') return null;
    const [, digest, named] = r.item.value.toString('latin1').split(' ');
    if (digest !== this.placementDigest() || named === undefined || !inThatRefill()) return null;
    return { cas: r.item.cas, stage: named };
  }

  /**
   * Which keys each backend is a natural member of, in short: a reload that moves any changes it.
   * Computed at start and at each reload (the ring is replaced before reconfigure() is called),
   * not on first use: that is a backend's first failure, when every sidecar would compute it at
   * once (256 ring lookups, tens of ms cold) before it can write the stand-in key it must write
   * before it acknowledges the out.
   */
  private placementDigest(): string {
    if (this.digest !== null) return this.digest;
    const h = createHash('sha256').update(String(this.replicas));
    for (let i = 0; i < PLACEMENT_PROBES; i++) {
      h.update(`|${this.opts.ringOrder(Buffer.from(`replicached-probe-${i}`)).map((n) => n.address).join(' ')}`);
    }
    this.digest = h.digest('hex').slice(0, 16);
    return this.digest;
  }

  /** Publishes the acknowledgements once no request of an older view is active. */
  private tryPublish(): void {
    const u = this.unpublished;
    if (u === null || this.marking.size > 0) return;
    for (const g of this.active.keys()) if (g < u.generation) return;
    this.unpublished = null;
    this.state.markPublished(u.stages);
    this.quickUntil = this.clock.now() + QUICK_WINDOW_ROUNDS * this.roundMs;
    this.hurry();
    this.apply();
  }

  private apply(): void {
    const changes = this.state.tryApply(this.clock.now());
    for (const c of changes) if (c.to.role === 'out') this.foundRestarted.delete(c.address);
    for (const c of changes) if (c.to.role === 'refill' && c.byAll === true) this.writeRefillKeys(c.address, c.to.epoch);
    for (const c of changes) if (c.to.role === 'out' && c.byAll === true) this.writeOutMarks(c.address, c.to);
    for (const c of changes) if (c.to.role === 'refill') this.markJoinedAll(c.address, c.to.epoch);
    for (const c of changes) this.opts.events?.applied?.(c);
    if (changes.length > 0) {
      this.writeTookTrusted();
      this.hurry();
      this.wake();
    }
  }

  /**
   * Each backend this sidecar noted taking writes trusted while another was away (TrustState.trustedTakers)
   * gets the note on itself (tookTrustedKey), once per time away: it outlives this sidecar, whose own
   * note may be the only one that names that backend (a live witness that saw less, or none, may
   * be left), and Several in refill reads it (markedOutlasted). A failed write is tried at the next apply,
   * but only while that backend still takes writes trusted here: once it went out, it may have
   * restarted, and a note on the new process would say it took writes it never held.
   */
  private writeTookTrusted(): void {
    const current = new Set<string>();
    for (const [away, since, by] of this.state.trustedTakers()) {
      const id = `${away}:${since}:${by}`;
      current.add(id);
      const node = this.byAddress.get(by);
      const takesTrusted = this.state.takesWrites(by) && this.state.takingInRefill(by) === undefined;
      if (this.tookTrustedWritten.has(id) || node === undefined || !takesTrusted) continue;
      this.tookTrustedWritten.add(id);
      void node.store({ mode: 'set', key: tookTrustedKey(away, since), value: Buffer.from(this.state.id), flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: 0n }).then((r) => {
        if (r.status !== 'stored') this.tookTrustedWritten.delete(id);
      });
    }
    for (const id of this.tookTrustedWritten) if (!current.has(id)) this.tookTrustedWritten.delete(id);
  }

  // ---- rounds ----

  /**
   * Before the first round: a backend without its incarnation key restarted empty,
   * unless none has one (a new cluster: nothing was ever replicated to lose). Some with
   * and some without may also be a new cluster that another sidecar, starting with this
   * one, is marking right now: those without are read again a few rounds later, and only
   * the ones still without count as restarted.
   */
  private async survey(): Promise<void> {
    const nodes = [...this.byAddress.values()];
    let found = await Promise.all(nodes.map((n) => n.get(INCARNATION_KEY)));
    // None has one: a new cluster, nothing ever replicated to lose. Its backends are whole
    // (empty) as they are only if every one answered: one that did not may hold its key, and
    // the others then restarted; marked whole, one of them would count as having kept its data.
    // Nor is the view fresh before each that did not answer had a round here (TrustState.awaitRound):
    // its records would tell the others' stages.
    if (found.every((r) => r.status !== 'hit')) {
      const whole = found.every((r) => r.status === 'miss');
      this.state.awaitRound(
        nodes.filter((_, i) => found[i].status !== 'miss').map((n) => n.address),
        this.clock.now(),
      );
      await Promise.all(
        nodes.map(async (n) => {
          const added = await this.markIncarnation(n, whole);
          if (whole && added.status === 'not_stored') await this.markWhole(n);
        }),
      );
      return;
    }
    if (found.some((r) => r.status === 'miss')) {
      await this.clock.sleep(SURVEY_AGAIN_ROUNDS * this.roundMs);
      found = await Promise.all(nodes.map((n, i) => (found[i].status === 'miss' ? n.get(INCARNATION_KEY) : found[i])));
    }
    for (let i = 0; i < nodes.length; i++) {
      const r = found[i];
      if (r.status === 'miss') {
        this.foundRestarted.add(nodes[i].address);
        this.mayHaveRestarted.add(nodes[i].address);
      }
      if (r.status !== 'hit') this.propose(nodes[i].address, 'out', r.status === 'miss' ? 'restarted' : 'failed');
    }
  }

  /**
   * The incarnation key holds the epoch it was written at: written again only when gone (an
   * add), so one older than a backend's outage says it kept its data (see keptData). `whole`:
   * a new cluster's backend, whole as it is (see markFilled).
   */
  private markIncarnation(node: MemcachedNode, whole = false): Promise<NodeStore> {
    const epoch = this.state.stageOf(node.address).epoch;
    return node.store({ mode: 'add', key: INCARNATION_KEY, value: incarnationValue(epoch, whole), flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: 0n });
  }

  /**
   * Every backend answered this sidecar's survey without an incarnation key: a new cluster, each
   * backend whole (empty) as it is. Another sidecar starting with it, to which some backend did not
   * answer, may have added the key first, not whole (born at this epoch, nothing after): that add
   * came after this survey read the backend, so it is of the same new cluster, and the key is
   * marked whole here, guarded by its CAS (a restart since wipes the key, a refill mark changes it).
   * Left so, *Several in refill* would count the backend as come back empty for as long as it lives,
   * and set it aside while it holds the only copy of a write.
   */
  private async markWhole(node: MemcachedNode): Promise<void> {
    const epoch = this.state.stageOf(node.address).epoch;
    const r = await node.get(INCARNATION_KEY);
    if (r.status !== 'hit' || !r.item.value.equals(incarnationValue(epoch, false))) return;
    await node.store({ mode: 'cas', key: INCARNATION_KEY, value: incarnationValue(epoch, true), flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: r.item.cas });
  }

  /**
   * Before a refill proposal of Y at `epoch`: the incarnation key is written anew if gone (`born`:
   * this sidecar wrote it, its value the out epoch before), else given a new CAS by appending
   * ` r<epoch>` (`kept`). Either way, if its value then says so (see refillMark), its CAS is over
   * every client write Y took before it went out (every sidecar acknowledged that, so none sends
   * it any more) and under every write Y takes in the refill. One request: the add when the last
   * round found the key gone, else the append (the add too if it is gone after all).
   *
   * Acknowledgements wait for it (whileMarking), as for a stand-in key: several sidecars may mark
   * one refill at once, and one whose marks landed after the refill applied would put them over
   * writes Y took in it (Late writes reads every item under them as sent before Y's out). So every
   * live sidecar's marks have landed, or failed, before it acknowledges anything, and a refill
   * applies only with every live acknowledgement.
   */
  private markRefill(node: MemcachedNode): Promise<'born' | 'kept' | 'failed'> {
    const marked = this.writeRefillMarks(node);
    void this.whileMarking(marked);
    return marked;
  }

  private async writeRefillMarks(node: MemcachedNode): Promise<'born' | 'kept' | 'failed'> {
    const epoch = this.state.stageOf(node.address).epoch + 1;
    await this.carryOutMarks(node);
    const add = async () => {
      const r = await this.markIncarnation(node);
      return r.status === 'stored' ? 'born' : r.status === 'not_stored' ? 'kept' : 'failed';
    };
    const incarnation = async () => {
      if (this.incarnationFound.get(node.address) === false) return add();
      const r = await node.store({ mode: 'append', key: INCARNATION_KEY, value: Buffer.from(` r${epoch}`), flags: 0, exptime: 0, cas: 0n });
      if (r.status === 'stored') return 'kept';
      return r.status === 'not_stored' ? add() : 'failed';
    };
    const marked = await incarnation();
    if (marked === 'failed') return marked;
    // The same moment, in a key that outlasts the refill (outageRefillSince). A set, not an add: a
    // key of the same epoch left by a cluster whose sidecars all restarted (epochs begin again)
    // would mark too early. Another proposer's set lands before the refill applies (its
    // acknowledgement waits for it), unless that proposer stopped counting as live meanwhile.
    const began = await node.store({ mode: 'set', key: refillBeganKey(epoch), value: Buffer.from(this.state.id), flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: 0n });
    return began.status === 'failed' ? 'failed' : marked;
  }

  /** Rounds on one backend, with the node the address has now, until it leaves the list. */
  private async loop(address: string, firstDone: () => void): Promise<void> {
    this.looping.add(address);
    let slow = 0;
    for (let node = this.byAddress.get(address); this.running && node !== undefined; node = this.byAddress.get(address)) {
      const started = this.clock.now();
      const failure = await this.round(node, started);
      if (!this.running) break;
      if (failure === null) {
        this.reach.add(node.address);
        slow = 0;
      } else {
        this.reach.delete(node.address);
        // A round that timed out once on a backend that is up may only be slow (a burst ahead of
        // it); twice in a row, or any other failure, and it is proposed out.
        if (!timedOut(failure) || !node.isUp() || ++slow >= 2) this.failed(node.address);
      }
      this.afterRound(node);
      firstDone();
      const now = this.clock.now();
      const gap = this.state.pending && now < this.quickUntil ? this.roundMs / this.quickRounds : this.roundMs;
      await this.pause(Math.max(1, gap - (now - started)));
    }
    firstDone();
    this.looping.delete(address);
  }

  /** One round on one backend (see the head comment); the failure of a step that failed, else null. */
  private async round(node: MemcachedNode, started: number): Promise<Failed | null> {
    const id = this.state.id;
    const record = encodeRecord(this.state.record([...this.reach]));
    // A flush may empty the backend between this round's read of the incarnation key and its
    // writing again; the round's miss is then the flush's, however late it is looked at.
    const flushesBefore = this.flushesSent.get(node.address) ?? 0;
    const flushingBefore = this.flushesPending.has(node.address);
    // Pipelined on the one connection, which memcached answers in order: the record lands before
    // the roster and the incarnation key are read. Two round trips a round, not four.
    const [wrote, roster, incarnation] = await Promise.all([
      this.writeRecord(node, record),
      node.get(ROSTER_KEY, ROSTER_TTL_S),
      node.get(INCARNATION_KEY, LONGEST_RELATIVE_EXPIRY_S),
    ]);
    if (wrote.status !== 'stored') return wrote.status === 'failed' ? wrote : { status: 'failed', reason: `record not stored: ${wrote.status}` };
    if (roster.status === 'failed') return roster;
    if (incarnation.status === 'failed') return incarnation;
    this.incarnationFound.set(node.address, incarnation.status === 'hit');
    let listed = roster;
    let ids = rosterIds(roster);
    if (!ids.includes(id)) {
      const joined = await this.joinRoster(node, roster.status === 'hit');
      if (joined.status === 'failed') return joined;
      listed = joined;
      ids = rosterIds(listed);
    }
    const others = ids.filter((other) => other !== id);
    const replies = await Promise.all(others.map((other) => node.get(recordKey(other))));
    const failedRead = replies.find((r): r is Failed => r.status === 'failed');
    if (failedRead !== undefined) return failedRead;
    const prune = listed.status === 'hit' ? this.rosterPruned(node.address, listed.item.cas, ids, others.filter((_, i) => replies[i].status === 'miss')) : null;
    if (prune !== null) {
      // CAS-guarded: an id appended meanwhile stays, and the pruning is tried again next round.
      const r = await node.store({ mode: 'cas', key: ROSTER_KEY, value: prune.value, flags: 0, exptime: ROSTER_TTL_S, cas: prune.cas });
      if (r.status === 'failed') return r;
      if (r.status === 'stored') for (const other of prune.gone) this.missingSince.get(node.address)?.delete(other);
    }
    const records: TrustRecord[] = [];
    for (const r of replies) {
      if (r.status !== 'hit') continue;
      const rec = decodeRecord(r.item.value);
      if (rec !== null) records.push(rec);
    }
    this.acknowledged(this.state.roundDone(node.address, started, this.clock.now(), records));
    const flushed = flushingBefore || this.flushesPending.has(node.address) || (this.flushesSent.get(node.address) ?? 0) !== flushesBefore;
    if (incarnation.status === 'miss' && this.state.roleOf(node.address) !== 'out' && !flushed) {
      this.mayHaveRestarted.add(node.address);
      this.propose(node.address, 'out', 'restarted');
    }
    return null;
  }

  /**
   * Adds this sidecar's id to the roster of `node` (appended; added when `exists` is false, or
   * appended after all when another sidecar added the key first), then reads the roster again.
   * Only a roster read that lists this sidecar tells it of its peers: of two sidecars that start
   * at once, each may read the roster before the other's id is on it, and both would then apply a
   * change alone. A read after its own append sees every id appended before it, and any id
   * appended after it belongs to a sidecar whose own read after that append lists this one, and
   * which so waits for this one to name it before it acts (TrustState.fresh).
   */
  private async joinRoster(node: MemcachedNode, exists: boolean): Promise<NodeGet> {
    const entry = Buffer.from(` ${this.state.id}`);
    const store = (mode: 'add' | 'append') => node.store({ mode, key: ROSTER_KEY, value: entry, flags: 0, exptime: ROSTER_TTL_S, cas: 0n });
    let joined = await store(exists ? 'append' : 'add');
    if (joined.status === 'not_stored') joined = await store(exists ? 'add' : 'append');
    if (joined.status === 'failed') return joined;
    return node.get(ROSTER_KEY, ROSTER_TTL_S);
  }

  /**
   * The roster of `address` without the ids whose record this sidecar has read missing there for
   * rosterPruneMs (null: none). Every sidecar that ever ran (each restart and each worker is a new
   * id) would otherwise be read every round for as long as any sidecar runs. A record is written
   * every round with a 10 s expiry, so its owner stopped, or has not reached this backend since:
   * one that comes back finds its id missing and adds it again (see round).
   */
  private rosterPruned(address: string, cas: bigint, ids: readonly string[], missing: readonly string[]): { value: Buffer; cas: bigint; gone: ReadonlySet<string> } | null {
    const now = this.clock.now();
    const before = this.missingSince.get(address);
    const since = new Map(missing.map((other) => [other, before?.get(other) ?? now]));
    this.missingSince.set(address, since);
    const gone = new Set([...since].filter(([, at]) => now - at >= this.rosterPruneMs).map(([other]) => other));
    if (gone.size === 0) return null;
    return { value: Buffer.from(ids.filter((other) => !gone.has(other)).map((other) => ` ${other}`).join('')), cas, gone };
  }

  /** What a round may start: a refill of a reachable backend that is out, a fill, the trusted proposal. */
  private afterRound(node: MemcachedNode): void {
    const a = node.address;
    const now = this.clock.now();
    this.apply();
    const role = this.state.roleOf(a);
    if (role === 'out' && !this.state.isPending(a) && this.state.allReach(a, this.reach.has(a) && node.isUp(), now)) {
      // The incarnation key first: a restart from here on is seen by every sidecar, and its CAS
      // marks where the refill's writes begin (see markRefill).
      void this.markRefill(node).then((r) => {
        if (r === 'born') this.bornEmpty.add(a);
        if (r !== 'failed') this.propose(a, 'refill', 'reachable');
      });
    }
    if (role === 'refill' && !this.state.isPending(a)) {
      this.proposeFilled(a);
      this.maybeFill(node, now);
    }
    if (role !== 'refill') {
      this.fills.get(a)?.abort();
      this.fills.delete(a);
    }
    this.sweepAfterSilentPeers(now);
    this.wake();
  }

  private sweepAfterSilentPeers(now: number): void {
    if (this.state.silentPeers(now).length === 0 || this.state.liveIds(now)[0] !== this.state.id) return;
    for (const node of this.byAddress.values()) if (this.state.roleOf(node.address) === 'trusted') this.opts.sweep?.(node);
  }

  /** A fill of this epoch completed here: trusted once the others allow it (TrustState.mayTrust). */
  private proposeFilled(a: string): void {
    if (!this.fillCounts(a)) return;
    if (this.othersTrusted(a)) return this.proposeTrusted(a);
    // Several in refill: which kept their data, from their incarnation keys (see markIncarnation).
    // Both reads cover only the backends in refill when they began: one that entered refill
    // while they were under way would count as come back empty, and another go first that it
    // outlasted. Any stage changed meanwhile: asked again after the next round.
    // A read that failed tells nothing: counted as come back empty, a backend that holds the only
    // copy of a key's latest write, failing and about to be agreed out, would let an empty one go
    // first, whose miss then proves that write gone. Asked again after the next round.
    const generation = this.state.generation;
    void Promise.all([this.keptData(), this.markedOutlasted()]).then(([kept, marks]) => {
      if (kept === null || marks === null) return;
      const { marked, noted } = marks;
      if (this.state.generation === generation && this.fillCounts(a) && this.state.mayTrust(a, (b) => kept.has(b), this.clock.now(), (b) => marked.get(b), (b) => noted.get(b))) {
        this.proposeTrusted(a);
      }
    });
  }

  /**
   * The incarnation key says first that this process was made whole at this epoch (see
   * keptData), then the proposal goes out, if the stage is still the one filled.
   */
  private proposeTrusted(a: string): void {
    const node = this.byAddress.get(a);
    const stage = this.state.stageOf(a);
    if (node === undefined || this.markingFilled.has(a) || this.state.seenRoleOf(a) === 'trusted') return;
    this.markingFilled.add(a);
    void this.markFilled(node, stage.epoch).then((r) => {
      this.markingFilled.delete(a);
      if (r.status === 'stored' && this.state.stageOf(a).epoch === stage.epoch && this.fillCounts(a)) this.propose(a, 'trusted', 'filled');
    });
  }

  /**
   * `<born> <filled>` in the incarnation key, guarded by its CAS: a process that restarted since
   * holds none (or a new one), and is never marked whole by a write meant for the one before.
   */
  private async markFilled(node: MemcachedNode, epoch: number): Promise<NodeStore | { status: 'gone' }> {
    const r = await node.get(INCARNATION_KEY);
    if (r.status !== 'hit') return { status: 'gone' };
    const [born] = r.item.value.toString('latin1').split(' ');
    const value = Buffer.from(`${born} ${epoch}`);
    return node.store({ mode: 'set', key: INCARNATION_KEY, value, flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: r.item.cas });
  }

  /**
   * A fill of the backend's current refill completed here, from every backend trusted or in
   * refill now (fillSources). One trusted since it began was no source for it: its keys were
   * copied from elsewhere or kept as they were, so the fill is forgotten, to run again; so it is
   * for one in a refill it entered since that took `a`'s writes in an earlier refill.
   */
  private fillCounts(a: string): boolean {
    const stage = this.state.stageOf(a);
    const filled = this.filled.get(a);
    if (filled?.epoch !== stage.epoch || stage.role !== 'refill') return false;
    // By stage: one that went away and came back during the run was no source for part of it.
    // One in a refill it entered since was not read for what it took in an earlier refill while
    // `a` was away (outageRefillSince): when it took `a`'s writes only in refill, or no live
    // witness tells, the fill runs again.
    const now = this.clock.now();
    const witnessed = this.state.outlastedBy(a, now) !== null;
    const read = (b: string, epoch: number): boolean =>
      filled.sources.get(b) === epoch ||
      (this.state.roleOf(b) === 'refill' && witnessed && typeof this.state.tookWhileAway(a, b, now) !== 'number');
    if ([...this.fillSources(a).entries()].every(([b, epoch]) => read(b, epoch))) return true;
    this.filled.delete(a);
    return false;
  }

  /** The backends a fill of `a` reads as sources, with their stages' epochs: those trusted, and the others in refill. */
  private fillSources(a: string): Map<string, number> {
    const sources = this.state.addresses.filter((b) => b !== a && (this.state.isTrusted(b) || this.state.roleOf(b) === 'refill'));
    return new Map(sources.map((b) => [b, this.state.stageOf(b).epoch]));
  }

  /**
   * Per backend in refill: the others in refill that hold a stand-in key of its current time
   * away marked `trusted` (they were trusted or in refill, not going out, by the marker's view,
   * when it went out, or trusted again while it was away: they took the writes it missed), each
   * with the refill the mark names (it took them in that refill, not trusted), unless another of
   * those keys says it took them trusted. For the order of several refills when no live sidecar
   * witnessed the outages (TrustState.mayTrust). Every key of its time away (awayEpochs), not its
   * current out epoch's alone: out again from refill, its new key carries what the key of before
   * said on each backend it went on, and one that was stopped then got none. With them, from the
   * same candidates, `noted`: those holding a took-trusted note of its current time away (every
   * epoch awayEpochs names, and the one a live witness dates its departure at) from a writer of
   * this cluster (writeTookTrusted). null: a read failed.
   */
  private async markedOutlasted(): Promise<{ marked: Map<string, Map<string, number | undefined>>; noted: Map<string, Set<string>> } | null> {
    const inRefill = [...this.byAddress.values()].filter((n) => this.state.roleOf(n.address) === 'refill');
    const marked = new Map<string, Map<string, number | undefined>>();
    const noted = new Map<string, Set<string>>();
    let failed = false;
    const markedBy = async (c: MemcachedNode, d: MemcachedNode, epochs: readonly number[]): Promise<void> => {
      const marks = await this.standInMarks(d, c.address, epochs);
      failed ||= marks.failed;
      if (marks.took === null) return;
      const by = marked.get(c.address) ?? new Map<string, number | undefined>();
      by.set(d.address, marks.took === 'trusted' ? undefined : marks.took);
      marked.set(c.address, by);
    };
    const notedBy = async (c: MemcachedNode, d: MemcachedNode, epochs: readonly number[]): Promise<void> => {
      const reads = await Promise.all(epochs.map((e) => d.get(tookTrustedKey(c.address, e))));
      failed ||= reads.some((r) => r.status === 'failed');
      if (!reads.some((r) => r.status === 'hit' && this.state.hasRead(markWriter(r.item.value)))) return;
      noted.set(c.address, (noted.get(c.address) ?? new Set<string>()).add(d.address));
    };
    await Promise.all(
      inRefill.map(async (c) => {
        const epochs = await this.awayEpochs(c.address, this.state.stageOf(c.address));
        if (epochs === null) return void (failed = true);
        const w = this.state.witnessedUntrustedSince(c.address, this.clock.now());
        const dated = w === undefined || epochs.includes(w) ? epochs : [...epochs, w];
        await Promise.all(inRefill.filter((d) => d !== c).flatMap((d) => [markedBy(c, d, epochs), notedBy(c, d, dated)]));
      }),
    );
    return failed ? null : { marked, noted };
  }

  /**
   * The backends in refill whose incarnation key was written before they went out: they did
   * not restart, and hold their data (stale in places, reconciled since). null: a read failed.
   */
  private async keptData(): Promise<Set<string> | null> {
    const kept = new Set<string>();
    let failed = false;
    await Promise.all(
      [...this.byAddress.values()].map(async (node) => {
        const stage = this.state.stageOf(node.address);
        if (stage.role !== 'refill') return;
        if (this.mayHaveRestarted.has(node.address)) return;
        const r = await node.get(INCARNATION_KEY);
        failed ||= r.status === 'failed';
        if (r.status !== 'hit') return;
        const [born, filled] = r.item.value.toString('latin1').split(' ').map(Number);
        // Older than the outage that began its time away (as far as a live witness tells), and
        // made whole since it was born: a process that restarted and was never filled since has
        // an incarnation key of its own refill, with no filled epoch.
        if (born < this.state.untrustedSince(node.address, this.clock.now()) && filled !== undefined && born <= filled) kept.add(node.address);
      }),
    );
    return failed ? null : kept;
  }

  private othersTrusted(a: string): boolean {
    return this.state.addresses.every((b) => b === a || this.state.isTrusted(b));
  }

  private maybeFill(node: MemcachedNode, now: number): void {
    const a = node.address;
    if (this.filled.get(a)?.epoch === this.state.stageOf(a).epoch) return;
    // Every backend came back empty and none is trusted: nothing was kept anywhere, nothing to copy.
    if (this.state.addresses.every((b) => this.bornEmpty.has(b) && this.state.roleOf(b) !== 'trusted')) {
      this.filled.set(a, { epoch: this.state.stageOf(a).epoch, sources: this.fillSources(a) });
      this.proposeFilled(a);
      return;
    }
    if (this.fills.has(a) || this.opts.fill === undefined || !this.reach.has(a)) return;
    const filler = this.state.liveIds(now).find((id) => id === this.state.id || this.reaches(id, a));
    if (filler !== this.state.id) return;
    const control = new AbortController();
    this.fills.set(a, control);
    const epoch = this.state.stageOf(a).epoch;
    const sources = this.fillSources(a);
    void this.opts.fill(node, control.signal).then((complete) => {
      if (this.fills.get(a) === control) this.fills.delete(a);
      const stage = this.state.stageOf(a);
      if (complete && !control.signal.aborted && stage.role === 'refill' && stage.epoch === epoch) this.filled.set(a, { epoch, sources });
      this.proposeFilled(a);
    });
  }

  private reaches(id: string, address: string): boolean {
    return this.state.peerReaches(id, address);
  }
}

/**
 * Where a backend's unbroken time in a key's placement began (refillSince, standInSince): of the
 * departure marks of the backends ahead of it that are away, the `left`-th latest, `left` being R
 * less those ahead trusted. A mark missing or not read (null) is unknown, so as late as any.
 */
function placementBegan(marks: ReadonlyArray<bigint | null>, left: number): bigint | null {
  const latestFirst = [...marks].sort((x, y) => (x === null ? -1 : y === null ? 1 : x > y ? -1 : x < y ? 1 : 0));
  return latestFirst[left - 1];
}

/** The resync runs' questions, answered by the agent. */
export function resyncTrust(agent: TrustAgent): ResyncTrust {
  return {
    isResyncing: (node) => agent.isResyncing(node),
    standInSince: (standIn, ahead, replicas) => agent.standInSince(standIn, ahead, replicas),
    stoodInThroughout: (standIn, naturals) => agent.stoodInThroughout(standIn, naturals),
    stoodInSince: (standIn, ahead, replicas) => agent.stoodInSince(standIn, ahead, replicas),
    refillingSince: (member, on) => agent.refillingSince(member, on),
    refillTookSince: (target, source) => agent.refillTookSince(target, source),
    refillSince: (member, ahead, replicas) => agent.refillSince(member, ahead, replicas),
    outageRefillSince: (target, member, ahead, replicas) => agent.outageRefillSince(target, member, ahead, replicas),
    missedSince: (target, standIn, naturals) => agent.missedSince(target, standIn, naturals),
    leftBefore: (target, other) => agent.leftBefore(target, other),
  };
}

/**
 * The router's questions: trust from the agent, copies in flight from the resync runs
 * (`runs()` gives the current ones: a reload replaces them).
 */
export function routerHooks(agent: TrustAgent, runs: () => Pick<Resyncer, 'deleting' | 'flushing'>): ResyncHooks {
  return {
    isResyncing: (node) => agent.isResyncing(node),
    deleting: (key) => runs().deleting(key),
    flushing: () => runs().flushing(),
    catchingUp: (key, scope) => agent.catchingUp(key, scope),
    handingOver: (key, scope) => agent.handingOver(key, scope),
    standInSince: (standIn, ahead, replicas) => agent.standInSince(standIn, ahead, replicas),
  };
}

/**
 * A backend trusted at epoch `trusted` has not been trusted again since, when the out epoch at
 * which it left trusted this time (TrustState.untrustedSince) is `since`: a later trusted stage
 * is at least `trusted` + 3 (out, refill, trusted, each a newer epoch), and leaving it at least
 * `trusted` + 4. Not only `trusted` + 1: a witness that applied trusted straight to a later out
 * dates the departure at that out when it published an acknowledgement of a trusted stage in
 * between (leftTrusted, protocol.ts), and the latest date any witness gives counts.
 */
export function leftOnceSince(trusted: number, since: number): boolean {
  return since > trusted && since < trusted + 4;
}
