// The replication rules, one place for both client protocols.
//
//   read   get ──> local member, else authority ──miss/failed──> next member ──> ... ──> hit: reply
//          a trusted natural member missed ──> miss (no later hit is served);  no hit and any
//          member failed ──> unavailable (the session closes)
//   write  set/replace/append/prepend/delete/touch ──> every member at once; the authority's reply wins
//   decide add/cas/incr/decr, and any write carrying a CAS ──> the authority decides ──changed──>
//            the others are made to match: the same item (add/cas), or what the authority
//            now holds, read and copied (append/prepend with CAS, incr/decr); deleted on each
//   converge (a follow-up step of every write that changed something) ──> read the CAS of
//          each member the write may have been last on; if one moved on, copy what the
//          authority holds now (item, or its absence) to the others, and look again;
//          when none did, give the others the authority's remaining TTL where it differs
//   copy   every copy of what the authority holds goes over a member only if that member
//          still holds what it held before the authority was read (CAS-guarded, or an add)
//
// Why converge: two sidecars writing one key at once reach the members in
// different orders, and the authority's order decides which write is last.
// Once writes stop, some write was the last to land anywhere; its writer checks
// after it, so it sees the final state: if a member moved on, it copies the
// authority's state over the others, and that copy, made after reading the
// authority, is checked against the authority again. A write sent everywhere
// at once may be last on any member, so it checks them all; a decided write (or
// a copy) reached the authority before the others, so it can only be last on a
// copy, and the authority alone tells if that copy is stale. A touch changes
// no CAS, so the expiry is compared too (see alignExpiry). Cost: one read of
// each member's CAS and TTL (no value) after the reply, while the key waits.
//
// This class does one request at a time and knows nothing of order between
// requests: OrderedRouter (ordered-router.ts) runs each request, follow-up steps
// included, in its turn per key and per connection. Steps that go on after the
// reply are handed to the caller in `later`.
//
// The authority is the first live member of the key's replica set that is not
// being resynced (see trustedFirst). Every method resolves; a failure is an
// outcome, never an exception.

import type {
  ArithCommand,
  ArithOutcome,
  DeleteOutcome,
  FlushOutcome,
  GetOutcome,
  StoreFields,
  StoreOutcome,
  TouchOutcome,
} from '../protocol/types';
import type { Failed, MemcachedNode, NodeCas, NodeDelete, NodeGet, NodeStore, NodeTouch, StoredItem } from './node';
import type { ReplicaRing } from './ring';
import { LONGEST_RELATIVE_EXPIRY_S, deleteRecordKey } from '../trust/reserved-keys';

/** Where the router reports what metrics count. */
export interface RouterEvents {
  /** A member other than the first asked had to answer. */
  failover(command: string): void;
  /** Members that answered gave different answers to the same write. */
  disagreement(command: string): void;
  /** A backend was asked for a read: "local" when it is the `local: true` one (no network hop), "zone" when it is in this sidecar's zone. */
  read?(locality: 'local' | 'zone' | 'remote'): void;
  /** A write's follow-up found members that differed from the authority and copied its state to them. */
  converged?(): void;
}

export const SILENT_EVENTS: RouterEvents = {
  failover() {},
  disagreement() {},
};

/**
 * What the router asks of a rejoin resync (src/resync/): whether a member is
 * still being refilled, and a word before every delete and flush, so that a
 * copy in flight can never bring back an item a client removed.
 */
export interface ResyncHooks {
  isResyncing(node: MemcachedNode): boolean;
  /** Called before a delete is sent; the delete goes out once the returned promise settles. */
  deleting(key: Buffer): Promise<void> | undefined;
  /** Called before a flush is sent; the flush goes out once the returned promise settles. */
  flushing(): Promise<void> | undefined;
  /**
   * Called before a read: resolves (the caller asks again) while this sidecar's view of
   * the other sidecars is stale for a member of the key. Resolving false: the wait was in
   * vain, the request is unavailable. `scope` is the request's (see OrderedRouter).
   */
  catchingUp(key: Buffer, scope?: FollowUps): Promise<boolean | void> | undefined;
  /**
   * Called before a write, and again when a member failed it (a stale view waits as for a read): the write goes on
   * once the returned promise settles, when every other sidecar has stopped
   * deciding on a member this one just proposed out (the trust protocol, src/trust/agent.ts).
   */
  handingOver(key: Buffer, scope?: FollowUps): Promise<boolean | void> | undefined;
  /**
   * A stand-in's items with a CAS at or under this may be copies left from an earlier time it
   * stood in (TrustAgent.standInSince; `ahead`: the backends before it in the key's order);
   * null: none is known to be of its current time. Absent: all are.
   */
  standInSince?(standIn: MemcachedNode, ahead: readonly MemcachedNode[], replicas: number): Promise<bigint | null>;
}

export const NO_RESYNC: ResyncHooks = {
  isResyncing: () => false,
  deleting: () => undefined,
  flushing: () => undefined,
  catchingUp: () => undefined,
  handingOver: () => undefined,
};

/** A delete record's value: its CAS is what it says. */
const EMPTY = Buffer.alloc(0);

/** Steps of a request that go on after its reply is known; the request has finished when they settle. */
export type FollowUps = Array<Promise<unknown>>;

/** What a write left on a member: the CAS of its item, or its absence; null: not known. */
type Expected = bigint | 'gone' | null;

/** What a store's reply says the member holds after it. */
function storeLeft(mode: StoreFields['mode']): (reply: NodeStore) => Expected | undefined {
  return (reply) => {
    if (reply.status === 'stored') return reply.cas;
    // replace/append/prepend refused: the member had no item. A too-large set drops the old one.
    if (reply.status === 'not_stored' || (reply.status === 'too_large' && mode === 'set')) return 'gone';
    return undefined;
  };
}

function deleteLeft(reply: NodeDelete): Expected | undefined {
  return reply.status === 'deleted' || reply.status === 'not_found' ? 'gone' : undefined;
}

function touchLeft(reply: NodeTouch): Expected | undefined {
  if (reply.status === 'touched') return reply.cas;
  return reply.status === 'not_found' ? 'gone' : undefined;
}

/** Rounds of converge before giving up (each round is caused by another sidecar's write landing meanwhile). */
const MAX_CONVERGE_ROUNDS = 4;

const UNAVAILABLE = { status: 'unavailable' } as const;
const UNDECIDED: Failed = { status: 'failed', reason: 'no trusted natural member to decide' };
const NO_MEMBER: Failed = { status: 'failed', reason: 'no member up' };
const MISS = { status: 'miss' } as const;

type Hold = Promise<boolean | void> | undefined;

/**
 * Awaits `first`, then whatever `next` returns, until it returns undefined (a resync hook
 * asked again); false as soon as one wait resolved false (the request is unavailable).
 */
async function waitOut(first: Promise<boolean | void>, next: () => Hold): Promise<boolean> {
  for (let wait: Hold = first; wait !== undefined; wait = next()) if ((await wait) === false) return false;
  return true;
}

/** memcached reads a relative expiry above 30 days as an absolute Unix time. */
const MAX_RELATIVE_EXPTIME = 60 * 60 * 24 * 30;

/** Two remaining TTLs read a moment apart from two members: the same expiry, to memcached's second. */
export function sameExpiry(a: number, b: number): boolean {
  return a === b || (a >= 0 && b >= 0 && Math.abs(a - b) <= 1);
}

/**
 * The exptime that gives a copy the same remaining life as the original; null if it is about
 * to expire, or if its TTL is unknown (a binary-protocol backend): no copy then, since a guess
 * could outlive the original.
 */
export function exptimeForCopy(ttl: number | null, nowSeconds = Math.floor(Date.now() / 1000)): number | null {
  if (ttl === null || ttl === 0) return null;
  if (ttl < 0) return 0; // never expires
  return ttl > MAX_RELATIVE_EXPTIME ? nowSeconds + ttl : ttl;
}

/** When an item expires, as the write that set its expiry tells: a time on this process's clock (ms since the epoch), or never. */
export type Deadline = number | 'never';

/**
 * The deadline an exptime sets, read as memcached reads it, taken before the write is sent (so
 * never later than the item's own); null for an exptime that expires the item at once.
 */
export function deadlineOf(exptime: number, nowMs = Date.now()): Deadline | null {
  if (exptime === 0) return 'never';
  if (exptime < 0) return null;
  return exptime > MAX_RELATIVE_EXPTIME ? exptime * 1000 : nowMs + exptime * 1000;
}

/** The exptime that makes a copy expire no later than `until` (whole seconds, rounded down); null under a second before it. */
export function exptimeUntil(until: Deadline, nowMs = Date.now()): number | null {
  if (until === 'never') return 0;
  const left = Math.floor((until - nowMs) / 1000);
  if (left < 1) return null;
  return left > MAX_RELATIVE_EXPTIME ? Math.floor(until / 1000) : left;
}

/**
 * What a request knows of the expiry of the authority's item without reading it: the item its
 * own write left (by CAS; a touch keeps the CAS) expires at `until`.
 */
export interface KnownExpiry {
  cas: bigint;
  until: Deadline;
}

/** The KnownExpiry of a write whose deadline is `until` (null: it sets none), once it left `left` on the authority. */
function knownFrom(until: Deadline | null, left: Expected | undefined): KnownExpiry | undefined {
  return until !== null && typeof left === 'bigint' ? { cas: left, until } : undefined;
}

/**
 * The exptime for a copy of `item`: its remaining TTL where the backend reads one (meta),
 * else (binary protocol) the expiry the request's own write gave it, when `item` is the item
 * that write left. Null: no copy (under a second left, or an expiry nobody here knows).
 */
export function copyExptime(item: StoredItem, known?: KnownExpiry): number | null {
  if (item.ttl !== null) return exptimeForCopy(item.ttl);
  return known !== undefined && known.cas === item.cas ? exptimeUntil(known.until) : null;
}

/** What a copy step left on a member (a store, a delete, or a copy kept as it was). */
function copyLeft(reply: { status: string; cas?: bigint }): Expected | undefined {
  if (reply.status === 'stored' || reply.status === 'kept') return reply.cas;
  return reply.status === 'deleted' || reply.status === 'not_found' || reply.status === 'miss' ? 'gone' : undefined;
}

/** What a copy step did on one member. `kept`: it already held the same value and flags (see keepOrDrop). */
type CopyReply = NodeStore | NodeDelete | { status: 'kept'; cas: bigint };

/** A copy step's reply, or what stood in for one: the member failed its read, or nothing was to be done (`miss`). */
type CopyResult = CopyReply | Failed | { status: 'miss' };

export class ReplicatedRouter {
  /** Requests (their follow-up scopes) that waited out a change of trust (see converge). */
  private readonly handedOverScopes = new WeakSet<FollowUps>();

  constructor(
    private ring: ReplicaRing,
    private readonly events: RouterEvents = SILENT_EVENTS,
    private readonly resync: ResyncHooks = NO_RESYNC,
  ) {}

  /** Routes every later request over `ring` (a config reload); requests already routed finish as they started. */
  replaceRing(ring: ReplicaRing): void {
    this.ring = ring;
  }

  get(key: Buffer, touch?: number, later: FollowUps = []): Promise<GetOutcome> {
    if (touch !== undefined) return this.getAndTouch(key, touch, later);
    const stale = this.resync.catchingUp(key, later);
    if (stale !== undefined) return this.readAfter(waitOut(stale, () => this.resync.catchingUp(key, later)), key, later);
    return this.readNow(key, later);
  }

  private async readAfter(wait: Promise<boolean>, key: Buffer, later: FollowUps): Promise<GetOutcome> {
    return (await wait) ? this.readNow(key, later, false) : UNAVAILABLE;
  }

  /**
   * A read that could not know (a member failed) asks once more when the failure started a
   * change of trust: after it applies, the key's members are the agreed ones.
   */
  private readAgain(key: Buffer, later: FollowUps): Promise<GetOutcome> {
    const wait = this.resync.handingOver(key, later);
    return wait === undefined ? Promise.resolve(UNAVAILABLE) : this.readAfter(waitOut(wait, () => this.resync.handingOver(key, later)), key, later);
  }

  private readNow(key: Buffer, later: FollowUps, again = true): Promise<GetOutcome> {
    // Local-first: a `local: true` member is asked first, then one in this sidecar's zone; the authority is unchanged for writes.
    const members = this.trustedFirst(key, this.ring.readOrder(key));
    // No trusted natural member: a stand-in may hold a copy left from an earlier time it stood
    // in, and a member being resynced what was deleted meanwhile. No hit or miss is known.
    if (members.length === 0 || this.undecidable(key, members)) return Promise.resolve(UNAVAILABLE);
    // Not async: handing on the inner promise saves the two ticks an async function takes to adopt it.
    return this.readInTurn(key, members, later, again);
  }

  async store(cmd: StoreFields, later: FollowUps = []): Promise<StoreOutcome> {
    if ((await this.handedOver(cmd.key, later)) === false) return UNAVAILABLE;
    const members = this.trustedFirst(cmd.key, this.ring.writeSet(cmd.key));
    if (members.length === 0) return UNAVAILABLE;
    if (cmd.mode === 'add' || cmd.mode === 'cas' || cmd.cas !== 0n) return this.decideThenCopy(cmd, members, later);
    if (cmd.mode !== 'set' && this.undecidable(cmd.key, members)) return UNAVAILABLE;
    // append/prepend keep the item's expiry: they tell nothing of it.
    const sets = cmd.mode === 'set' || cmd.mode === 'replace' ? cmd.exptime : undefined;
    return this.writeAll(cmd.mode, cmd.key, members, (m) => m.store(cmd), storeLeft(cmd.mode), later, sets);
  }

  async delete(key: Buffer, cas: bigint, later: FollowUps = []): Promise<DeleteOutcome> {
    // Resync: a copy of this key in flight lands first, then this delete removes it everywhere.
    const copying = this.resync.deleting(key);
    if (copying !== undefined) await copying;
    if ((await this.handedOver(key, later)) === false) return UNAVAILABLE;
    const members = this.trustedFirst(key, this.ring.writeSet(key));
    if (members.length === 0 || this.naturalAway(key, members)) return UNAVAILABLE;
    if (cas === 0n) return this.writeAll('delete', key, members, (m) => this.deleteOn(m, key, 0n), deleteLeft, later);
    // Only the authority's CAS is meaningful; the others follow its decision.
    const { reply, authority, rest } = await this.askAuthority('delete', key, members, (m) => this.deleteOn(m, key, cas), later);
    if (reply.status === 'failed') return UNAVAILABLE;
    if (reply.status === 'deleted' && rest.length > 0) {
      if (!(await this.landed(key, await Promise.all(rest.map((m) => this.deleteOn(m, key, 0n))), later))) return UNAVAILABLE;
      later.push(this.converge(later, key, [authority, ...rest], ['gone'], false));
    }
    return reply;
  }

  /**
   * A client's delete on one member. A stand-in (not one of the key's natural members, one of
   * which is away) first takes the key's delete record, whose CAS then says the key was deleted
   * there after it: a natural member's older copy, which the stand-in's miss alone says nothing
   * of, is proved deleted by it (docs/trust.md, Delete records). A natural member in refill takes
   * it too: a fill that finds the key missing there tells a delete it took in this refill from a
   * miss of before (TrustAgent.missedSince). A failed record fails the delete.
   */
  private deleteOn(m: MemcachedNode, key: Buffer, cas: bigint): Promise<NodeDelete> {
    if (this.ring.isNatural(key, m) && !this.resync.isResyncing(m)) return m.delete(key, cas);
    const record: StoreFields = { mode: 'set', key: deleteRecordKey(key), value: EMPTY, flags: 0, exptime: LONGEST_RELATIVE_EXPIRY_S, cas: 0n };
    return m.store(record).then((r) => (r.status === 'failed' ? r : m.delete(key, cas)));
  }

  async touch(key: Buffer, exptime: number, later: FollowUps = []): Promise<TouchOutcome> {
    if ((await this.handedOver(key, later)) === false) return UNAVAILABLE;
    const members = this.trustedFirst(key, this.ring.writeSet(key));
    if (members.length === 0 || this.naturalAway(key, members)) return UNAVAILABLE;
    return this.writeAll('touch', key, members, (m) => m.touch(key, exptime), touchLeft, later, exptime);
  }

  async arith(cmd: ArithCommand, later: FollowUps = []): Promise<ArithOutcome> {
    if ((await this.handedOver(cmd.key, later)) === false) return UNAVAILABLE;
    let members = this.trustedFirst(cmd.key, this.ring.writeSet(cmd.key));
    if (members.length === 0) return UNAVAILABLE;
    for (;;) {
      const { reply, authority, rest } = await this.askAuthority(cmd.kind, cmd.key, members, (m) =>
        m.arith(cmd.kind, cmd.key, cmd.delta, cmd.create),
      later);
      if (reply.status === 'failed') return UNAVAILABLE;
      if (reply.status !== 'ok' || rest.length === 0) return reply;
      // Bring the others to the authority's value, with its flags and expiry, before the reply:
      // pecl-memcache's session lock is an incr, and it must exist on every member once granted.
      // Where the expiry cannot be read (binary protocol), the others count too (an incr keeps
      // the expiry each holds), and only a member that counts to another value is not kept.
      const count = reply.value;
      const copied = await this.copyAuthority(cmd.key, authority, rest, later, async (m) => {
        const r = await m.arith(cmd.kind, cmd.key, cmd.delta, cmd.create);
        if (r.status === 'ok' && r.value === count) return { status: 'kept', cas: r.cas };
        if (r.status === 'ok') return m.delete(cmd.key, r.cas);
        if (r.status === 'not_found' || r.status === 'failed') return r;
        return this.keepOrDrop(m, cmd.key, null);
      });
      if (copied === 'unconfirmed') return UNAVAILABLE;
      if (copied !== null) {
        later.push(this.converge(later, cmd.key, [authority, ...rest], [copied], false));
        return reply;
      }
      // The authority counted, then failed before it could be read: the others still hold the
      // count from before, and its count goes with it (back, it is reconciled or refilled from
      // them). Count again on the next member, so the answer is one the survivors hold. Not an
      // error: pecl-memcache takes an error to its lock incr for a failed server, and its
      // session write then fails.
      members = rest;
    }
  }

  async flush(delay: number): Promise<FlushOutcome> {
    const copying = this.resync.flushing();
    if (copying !== undefined) await copying;
    const live = this.ring.nodes.filter((n) => n.isUp());
    const replies = await Promise.all(live.map((n) => n.flush(delay)));
    return replies.some((r) => r.status === 'ok') ? { status: 'ok' } : UNAVAILABLE;
  }

  /**
   * Resync rule: a member being resynced may have come back without a restart
   * (hung, then resumed) and hold items that changed or were deleted while it was
   * away, and even stale writes it ran late. Until its run ends it is asked last
   * and its reply never wins over a member that is not resyncing: reads ask it
   * after the others, and the first of the others decides add/cas/incr/decr.
   */
  private trustedFirst(key: Buffer, members: MemcachedNode[]): MemcachedNode[] {
    const settling = this.ring.isSettling;
    if (!settling && !members.some((m) => this.resync.isResyncing(m))) return members;
    // After a reload, a member that never held the key (a newcomer, a stand-in; see
    // ReplicaRing.holds) decides and answers after those that did: it would grant a lock
    // another holds, or say NOT_FOUND.
    const rank = (m: MemcachedNode): number => (this.resync.isResyncing(m) ? 2 : settling && !this.ring.holds(key, m) ? 1 : 0);
    return [...members].sort((a, b) => rank(a) - rank(b));
  }

  /**
   * A miss from `node` proves the key gone when node is not resyncing and is in
   * the key's natural replica set: it was in the set before any other member went
   * away and stayed, so it saw every write and delete.
   */
  private provesGone(key: Buffer, node: MemcachedNode): boolean {
    return !this.resync.isResyncing(node) && this.ring.holds(key, node);
  }

  /** Ask the members one after another until one has the item (resyncing members last). */
  private async readInTurn(key: Buffer, members: MemcachedNode[], later: FollowUps, again: boolean): Promise<GetOutcome> {
    let failed = false;
    // Resync rule: a member still being refilled may just not have the item yet, so
    // its miss proves nothing. A miss from a member that is not resyncing does: it
    // stayed in this key's replica set the whole time the other was away (taking a
    // backend out of the ring only shifts later ones in), so it saw every write.
    let authoritativeMiss = false;
    for (let i = 0; i < members.length; i++) {
      // Its role as the read is sent: a reply answers for the view it was asked under (the agent
      // acknowledges a change only once no request of the older view is active). Read after the
      // reply, a trusted member's miss that came back as it was going out would count for nothing,
      // and a stand-in's copy of the deleted key would be served.
      const resyncing = this.resync.isResyncing(members[i]);
      const gone = this.provesGone(key, members[i]);
      const reply = await members[i].get(key);
      this.countRead(members[i]);
      if (reply.status === 'hit') {
        // A member being resynced may hold what was deleted while it was away: its hit is
        // no answer (with none better, the read is unavailable).
        if (resyncing) {
          failed = true;
          continue;
        }
        // A stand-in's copy written before its current time as one (left from an earlier time
        // it stood in, which a shed did not drop) may have been overwritten or deleted since:
        // no answer either. A trusted natural member answers for the key, or nobody does.
        if (!this.answersAsHolder(key, members[i]) && !(await this.ofCurrentStandIn(key, members[i], reply.item.cas))) continue;
        // No copy to the members that missed (no read repair): they are in refill (the fill
        // copies it) or stand-ins, and a copy could land after a delete through another
        // sidecar that has not reached this member yet.
        if (i > 0) this.events.failover('get');
        return reply;
      }
      if (reply.status === 'failed') {
        failed = true;
        continue;
      }
      if (!resyncing) authoritativeMiss = true;
      // The key is proved gone: no later hit is served. A stand-in's or a resyncing member's
      // may be a copy a delete never reached, and a natural member's a delete through another
      // sidecar still on its way there.
      if (gone) break;
    }
    // A miss only when every member asked said so, one of them with authority; otherwise we cannot know.
    if (!failed && authoritativeMiss) return MISS;
    return failed && again ? this.readAgain(key, later) : UNAVAILABLE;
  }

  /**
   * A hit from `member` is served as far as stand-ins go: it holds the key (a natural member, or,
   * settling after a reload, one that held it before), or nothing tells a stand-in's times apart.
   * Synchronous: every hit asks.
   */
  private answersAsHolder(key: Buffer, member: MemcachedNode): boolean {
    return this.resync.standInSince === undefined || this.ring.holds(key, member) || this.ring.isNatural(key, member);
  }

  /** A stand-in's hit is served if its item was written in its current time in the key's placement (standInSince). */
  private async ofCurrentStandIn(key: Buffer, member: MemcachedNode, cas: bigint): Promise<boolean> {
    const since = await this.resync.standInSince!(member, this.ring.ahead(key, member), this.ring.replicas);
    return since !== null && cas > since;
  }

  /** gat/gats: a write too (the expiry); every member must see it, so ask them all at once. */
  private async getAndTouch(key: Buffer, touch: number, later: FollowUps): Promise<GetOutcome> {
    if ((await this.handedOver(key, later)) === false) return UNAVAILABLE;
    const members = this.trustedFirst(key, this.ring.readOrder(key));
    if (members.length === 0 || this.undecidable(key, members)) return UNAVAILABLE;
    // As in readInTurn: each member's miss counts for the view the request was sent under.
    const provesGone = members.map((m) => this.provesGone(key, m));
    const replies: NodeGet[] = await Promise.all(members.map((m) => m.get(key, touch)));
    for (const m of members) this.countRead(m);
    // As in writeAll: acknowledged once no other sidecar reads first a member that failed it.
    if (!(await this.landed(key, replies, later))) return UNAVAILABLE;
    // As in readInTurn: no hit stands against a miss that proves the key gone, and none is copied.
    const gone = members.some((_, i) => replies[i].status === 'miss' && provesGone[i]);
    const hitAt = gone ? -1 : replies.findIndex((r) => r.status === 'hit');
    if (hitAt < 0) return replies.some((r) => r.status === 'failed') ? UNAVAILABLE : MISS;
    if (hitAt > 0) this.events.failover('gat');
    const hit = replies[hitAt] as Extract<NodeGet, { status: 'hit' }>;
    // Like a touch, a gat changes no CAS: another sidecar's gat crossing this one leaves the expiries apart.
    if (replies.every((r) => r.status === 'hit') && members.length > 1) later.push(this.checkExpiry(key));
    return hit;
  }

  /** Reads every member's CAS and TTL, the authority first, and aligns the expiries (see alignExpiry). */
  private async checkExpiry(key: Buffer): Promise<void> {
    const members = this.trustedFirst(key, this.ring.replicaSet(key));
    await this.alignExpiry(key, members, await Promise.all(members.map((m) => m.casOf(key))));
  }

  /**
   * add, cas, and any write that carries a CAS (binary SET/APPEND/PREPEND/DELETE
   * with CAS): only the authority can decide (the session lock relies on one
   * place saying yes, and a CAS token is one member's). If it fails, the next
   * member is the authority. The others receive the result; none compares a CAS
   * of its own.
   *
   * While the ring's first member is resyncing, the next member decides (members
   * come in trustedFirst order). Why not let the resyncing one decide and second-
   * guess a NOT_STORED? It may be wrong both ways: it may hold a stale lock (an
   * `add` that timed out while it hung, run late on SIGCONT, the lock since
   * deleted on the others), and it may lack a lock taken while it was away and
   * still held (then its STORED would make two holders). The member that stayed
   * saw every write, so its answer is right in both cases, and the copy that
   * follows a STORED overwrites a stale lock on the resyncing one. A cas token
   * came from a read, which the same member served, so it matches there too.
   * When the run ends the resyncing member holds what the others hold (it
   * reconciles, then got every write since) and decides again.
   */
  private async decideThenCopy(cmd: StoreFields, members: MemcachedNode[], later: FollowUps): Promise<StoreOutcome> {
    const until = deadlineOf(cmd.exptime);
    const { reply, authority, rest } = await this.askAuthority(cmd.mode, cmd.key, members, (m) => m.store(cmd), later);
    if (reply.status === 'failed') return UNAVAILABLE;
    if (rest.length === 0) return reply;
    if (reply.status === 'too_large' && cmd.mode === 'set') {
      // The authority dropped what the key held, as memcached does on a set too large: so do the others.
      if (!(await this.landed(cmd.key, await Promise.all(rest.map((m) => m.delete(cmd.key, 0n))), later))) return UNAVAILABLE;
      later.push(this.converge(later, cmd.key, [authority, ...rest], ['gone'], false));
      return reply;
    }
    if (reply.status !== 'stored') return reply;
    if (cmd.mode === 'append' || cmd.mode === 'prepend') {
      // The new value is the authority's old one joined with this one: copy what it holds.
      const copied = await this.copyAuthority(cmd.key, authority, rest, later);
      if (copied === null || copied === 'unconfirmed') return UNAVAILABLE;
      later.push(this.converge(later, cmd.key, [authority, ...rest], [copied], false));
      return reply;
    }
    const copies = await Promise.all(rest.map((m) => m.store({ ...cmd, mode: 'set', cas: 0n })));
    if (!(await this.landed(cmd.key, copies, later))) {
      // Not acknowledged. An `add` found the key absent, so it is taken back where it is known
      // to have landed (CAS-guarded: a later write stays): a session lock the client was told
      // it did not get is then not held by no one until it expires. A member that failed it is
      // going away, and its refill prunes the copy against the authority's miss.
      if (cmd.mode === 'add') {
        const landedOn = [authority, ...rest];
        const casOf = [reply.cas, ...copies.map((c) => (c.status === 'stored' ? c.cas : 0n))];
        await Promise.all(landedOn.map((m, i) => (casOf[i] === 0n ? undefined : m.delete(cmd.key, casOf[i]))));
      }
      return UNAVAILABLE;
    }
    later.push(this.converge(later, cmd.key, [authority, ...rest], [reply.cas], false, knownFrom(until, reply.cas)));
    return reply;
  }

  /**
   * set/replace/append/prepend, delete and touch without a CAS: every member at
   * once (one round trip, as memcached alone), the authority's reply wins. Two
   * sidecars may reach the members in different orders, and this write may be
   * the last to land on any of them, the authority included: so its follow-up
   * checks every member against what its reply says the write left there.
   *
   * A member that failed it missed it (its failure proposes it out), and another
   * sidecar may still read that member first: the write is acknowledged once none
   * does (the agreement, docs/trust.md). It is not sent again: between its two
   * landings another client's write (the next lock holder's `add`) could come,
   * and the second would undo it.
   */
  private async writeAll<R extends { status: string }>(
    command: string,
    key: Buffer,
    members: MemcachedNode[],
    send: (m: MemcachedNode) => Promise<R>,
    left: (reply: R) => Expected | undefined,
    later: FollowUps,
    /** The exptime this write gives the item (set, replace, touch); undefined: it sets none. */
    sets?: number,
  ): Promise<Exclude<R, Failed> | typeof UNAVAILABLE> {
    const until = sets === undefined ? null : deadlineOf(sets);
    const replies: R[] = await Promise.all(members.map(send));
    const answered = replies.filter((r) => r.status !== 'failed') as Array<Exclude<R, Failed>>;
    // Only on members being resynced, the write may be on one backend alone, which a later
    // failure can lose with it: it is not acknowledged.
    const heldByTrusted = () => members.some((m, i) => replies[i].status !== 'failed' && !this.resync.isResyncing(m));
    if (!heldByTrusted()) return UNAVAILABLE;
    if (!(await this.landed(key, replies, later))) return UNAVAILABLE;
    // Asked again after the hand-over: the members that took it may be going away too, and
    // the one that missed it may then be refilled first, keeping its older copy.
    if (!heldByTrusted()) return UNAVAILABLE;
    // No trusted natural member (a delete or touch reaching natural members in refill and
    // stand-ins): a member that had the key says so, but a not_found proves nothing.
    const absenceUnproved = (command === 'delete' || command === 'touch') && this.undecidable(key, members);
    // And while a natural member missed it (not sent to it, or failed there): as naturalAway
    // before sending, that member's refill could not tell the change from a value it missed,
    // and would bring the old one back.
    if (absenceUnproved && this.naturalMissed(key, members, replies)) return UNAVAILABLE;
    // A delete answers what it did to the key: a member that held a copy (a set half landed, the
    // authority not reached yet) makes it DELETED, and the follow-up leaves the key absent everywhere,
    // as after a set then the delete. NOT_FOUND there would say the set came after it, yet its value is gone.
    const removed = command === 'delete' ? answered.find((r) => r.status === 'deleted') : undefined;
    const decided = absenceUnproved ? answered.find((r) => r.status === 'deleted' || r.status === 'touched') : removed ?? answered[0];
    const disagree = answered.some((r) => r.status !== answered[0].status);
    if (disagree) this.events.disagreement(command);
    // A member that failed is going away (its return is resynced); the others still converge,
    // the first that answered standing in for the authority.
    const live = members.filter((_, i) => replies[i].status !== 'failed');
    const expected = replies.filter((r) => r.status !== 'failed').map(left);
    const changed = answered.some((r) => r.status === 'stored' || r.status === 'deleted' || r.status === 'touched');
    if (live.length > 1 && (changed || disagree)) later.push(this.converge(later, key, live, expected, disagree, knownFrom(until, expected[0])));
    if (replies[0].status === 'failed') this.events.failover(command);
    return decided ?? UNAVAILABLE;
  }

  /**
   * A write's follow-up: check the members against what the write left on
   * them (`expected`, by position; the first is the authority, undefined: not
   * checked). If one moved on, another sidecar's write landed after this one
   * there: copy the authority's state (its item, or its absence) to the others,
   * then check every member again (the CAS and TTL of what the copy left), until
   * they stand still: a touch through another sidecar, which changes no CAS, may
   * have reached the authority after it was read and a member before the copy. The
   * CAS alone is read, so no value crosses in the common case. `known`: the expiry
   * this write gave the authority's item, for the copies where no TTL can be read.
   */
  private async converge(
    scope: FollowUps,
    key: Buffer,
    members: MemcachedNode[],
    expected: Array<Expected | undefined>,
    copyOwed: boolean,
    known?: KnownExpiry,
  ): Promise<void> {
    // The request waited out a change of trust on its way (its ticket parked, it came back under
    // the newer view): the members it wrote may no longer be the key's, and its authority another
    // sidecar's writes no longer reach. What the key's authority holds now is copied instead, as a
    // write under this view would: converging on the old one would undo the writes made since.
    if (this.handedOverScopes.has(scope)) {
      const current = this.trustedFirst(key, this.ring.replicaSet(key)); // writeSet would count the write's copies twice
      if (current.length > 0 && current[0] !== members[0]) {
        members = current;
        expected = current.map(() => undefined);
        copyOwed = true;
        known = undefined;
      }
    }
    const [authority, ...rest] = members;
    for (let round = 0; round < MAX_CONVERGE_ROUNDS; round++) {
      if (!copyOwed) {
        const held = await this.holdAsExpected(key, members, expected);
        if (held !== null) return this.alignExpiry(key, members, held);
      }
      this.events.converged?.();
      // A miss proves nothing from a resyncing authority, nor from a stand-in (one that took
      // the key's writes while its natural members were away may have shed its copy since):
      // never spread it.
      const copied = await this.copyFrom(key, authority, rest, this.provesGone(key, authority), known);
      if (copied === null) return; // it went away: the resync that follows its return converges
      expected = [copied.state.status === 'hit' ? copied.state.item.cas : 'gone', ...copied.replies.map(copyLeft)];
      copyOwed = false;
    }
  }

  /**
   * Every checked member holds what was expected of it: their CAS (and TTL) as read,
   * by position (undefined: not checked); null when one moved on. A member that
   * fails to answer is left to its resync.
   */
  private async holdAsExpected(
    key: Buffer,
    members: MemcachedNode[],
    expected: Array<Expected | undefined>,
  ): Promise<Array<NodeCas | undefined> | null> {
    const now = await Promise.all(members.map((m, i) => (expected[i] === undefined || expected[i] === null ? undefined : m.casOf(key))));
    const held = now.every((r, i) => r === undefined || r.status === 'failed' || (r.status === 'hit' ? r.cas : 'gone') === expected[i]);
    return held ? now : null;
  }

  /**
   * The last step of converge, once the members hold what the writes left. A
   * touch leaves the CAS as it was, so two sidecars' touches landing in different
   * orders leave different expiries that no CAS shows (and so can a touch landing
   * between another write's members): the authority's remaining TTL is given to
   * the others that differ (memcached counts in whole seconds), and all are read
   * again, until they agree. Costs nothing more when they agree: the TTL comes
   * with the CAS.
   */
  private async alignExpiry(key: Buffer, members: MemcachedNode[], seen: Array<NodeCas | undefined>): Promise<void> {
    for (let round = 0; round < MAX_CONVERGE_ROUNDS; round++) {
      const first = seen[0];
      // No TTL to compare where the binary protocol is spoken.
      if (first?.status !== 'hit' || first.ttl === null) return;
      const ttl = first.ttl;
      const off = members.filter((_, i) => {
        const r = seen[i];
        return i > 0 && r?.status === 'hit' && r.ttl !== null && !sameExpiry(r.ttl, ttl);
      });
      if (off.length === 0) return;
      const exptime = exptimeForCopy(ttl);
      if (exptime === null) return;
      this.events.converged?.();
      await Promise.all(off.map((m) => m.touch(key, exptime)));
      seen = await Promise.all(members.map((m) => m.casOf(key)));
    }
  }

  /**
   * Copies what the authority holds now to the others; the CAS copied, or null if
   * it could not be read. Null after a decision means the authority failed between
   * deciding and being read: the others still hold the value from before, and the
   * decided one may be lost with it. The caller never acknowledges that result:
   * append/prepend with CAS answer "unavailable", incr/decr count again on the next
   * member (see arith).
   */
  private async copyAuthority(
    key: Buffer,
    authority: MemcachedNode,
    rest: MemcachedNode[],
    later: FollowUps,
    /** Where the item's TTL cannot be read: the same change made on a member instead of a copy. */
    replay?: (m: MemcachedNode) => Promise<CopyReply>,
  ): Promise<Expected | 'unconfirmed'> {
    const copied = await this.copyFrom(key, authority, rest, true, undefined, replay);
    if (copied === null) return null;
    if (!(await this.landed(key, copied.replies, later))) return 'unconfirmed';
    return copied.state.status === 'hit' ? copied.state.item.cas : 'gone';
  }

  /**
   * Makes `nodes` hold what the authority holds now (its item, with its flags and remaining TTL,
   * or its absence; a miss only when `spreadMiss`). Each copy goes only over what its member held
   * before the authority was read (a CAS-guarded set, an add, a CAS-guarded delete): another
   * sidecar may copy a later state of the authority meanwhile, and a copy of an earlier read that
   * landed after it would put the member back, where it stays if the authority dies before anyone
   * reads it again (and that member decides from then on: an acknowledged count lost). A copy
   * that finds its member changed reads both again. A copy whose expiry is not known (see
   * copyExptime) is not made: each node keeps the same value and flags and loses any other
   * (keepOrDrop), or, with `replay`, the authority's change is made again on it. Null: the
   * authority could not be read, or missed and `spreadMiss` is false.
   */
  private async copyFrom(
    key: Buffer,
    authority: MemcachedNode,
    nodes: MemcachedNode[],
    spreadMiss: boolean,
    known?: KnownExpiry,
    replay?: (m: MemcachedNode) => Promise<CopyReply>,
  ): Promise<{ state: Exclude<NodeGet, Failed>; replies: CopyResult[] } | null> {
    for (let round = 1; ; round++) {
      const before = await Promise.all(nodes.map((n) => n.casOf(key)));
      const state = await authority.get(key);
      if (state.status === 'failed' || (state.status === 'miss' && !spreadMiss)) return null;
      const exptime = state.status === 'hit' ? copyExptime(state.item, known) : null;
      if (state.status === 'hit' && exptime === null) {
        const item = state.item;
        const replies = await Promise.all(nodes.map((n) => (replay !== undefined ? replay(n) : this.keepOrDrop(n, key, item))));
        return { state, replies };
      }
      const replies = await Promise.all(nodes.map((n, i) => this.copyOver(n, key, state, exptime, before[i])));
      const raced = replies.some((r) => r.status === 'exists' || r.status === 'not_stored' || r.status === 'not_found');
      if (!raced || round >= MAX_CONVERGE_ROUNDS) return { state, replies };
    }
  }

  /** One copy of `state` to `node` (a hit with `exptime`), only over `before` (what node held: see copyFrom). */
  private copyOver(node: MemcachedNode, key: Buffer, state: Exclude<NodeGet, Failed>, exptime: number | null, before: NodeCas): Promise<CopyResult> {
    if (before.status === 'failed') return Promise.resolve(before);
    if (state.status === 'miss') return before.status === 'hit' ? node.delete(key, before.cas) : Promise.resolve(MISS);
    if (exptime === null) return Promise.resolve(MISS);
    const { value, flags } = state.item;
    if (before.status === 'miss') return node.store({ mode: 'add', key, value, flags, exptime, cas: 0n });
    return node.store({ mode: 'cas', key, value, flags, exptime, cas: before.cas });
  }

  /**
   * Where a copy cannot be made (its expiry unknown, or under a second left): the node keeps
   * its item if it has `item`'s value and flags (the same write put them there, with its
   * expiry), and loses any other, guarded by the CAS read (a newer write stays). Null `item`:
   * the authority's value is not at hand, and the node's item is dropped.
   */
  private async keepOrDrop(node: MemcachedNode, key: Buffer, item: StoredItem | null): Promise<CopyReply> {
    const mine = await node.get(key);
    if (mine.status === 'failed') return mine;
    if (mine.status === 'miss') return { status: 'not_found' };
    if (item !== null && mine.item.flags === item.flags && mine.item.value.equals(item.value)) return { status: 'kept', cas: mine.item.cas };
    return node.delete(key, mine.item.cas);
  }

  /**
   * A write sent to several members, answered: true once every member took it, or once the
   * change of trust a failure started has applied (that member is then out, and reconciled
   * before it is trusted again, so no sidecar reads it first any more). Acknowledged before
   * that, a decision could live on the authority alone, and a write be missing from the
   * member another sidecar still reads first.
   */
  private async landed(key: Buffer, replies: Array<{ status: string }>, later: FollowUps): Promise<boolean> {
    if (!replies.some((r) => r.status === 'failed')) return true;
    return (await this.handedOver(key, later)) !== false;
  }

  /**
   * No trusted natural member, and a natural member is out (not among `members`): a delete
   * or touch would miss it, and with none trusted to answer for the key, its refill could not
   * tell the change from a value it missed.
   */
  private naturalAway(key: Buffer, members: MemcachedNode[]): boolean {
    return this.undecidable(key, members) && this.ring.naturalSet(key).some((n) => !members.includes(n));
  }

  /** A natural member of the key did not take this write: it was not among `members`, or failed it. */
  private naturalMissed(key: Buffer, members: MemcachedNode[], replies: Array<{ status: string }>): boolean {
    return this.ring.naturalSet(key).some((n) => {
      const i = members.indexOf(n);
      return i < 0 || replies[i].status === 'failed';
    });
  }

  /**
   * No trusted natural member among the key's members: none whose answer is known to be
   * the key's. Reads, decisions, replace, append and prepend are unavailable then: a
   * stand-in cannot hold the absence of a value, and a member in refill may lack one it
   * should hold. A `set` goes on (to the stand-ins and members in refill; the refill takes
   * it); so do a delete and a touch while every natural member is in refill (they land on
   * each, and the refills keep them), answered only by a member that had the key (see
   * writeAll and naturalAway).
   */
  private undecidable(key: Buffer, members: MemcachedNode[]): boolean {
    for (const m of members) if (!this.resync.isResyncing(m) && this.ring.holds(key, m)) return false;
    return true;
  }

  private async askAuthority<R extends { status: string }>(
    command: string,
    key: Buffer,
    members: MemcachedNode[],
    ask: (m: MemcachedNode) => Promise<R>,
    later: FollowUps,
  ): Promise<{ reply: R | Failed; authority: MemcachedNode; rest: MemcachedNode[] }> {
    for (;;) {
      if (this.undecidable(key, members)) return { reply: UNDECIDED, authority: members[0], rest: [] };
      let i = 0;
      let reply = await ask(members[0]);
      let handover: Promise<boolean> | undefined;
      while (reply.status === 'failed' && i + 1 < members.length) {
        this.events.failover(command);
        // Marked down for a stall: another sidecar may still decide on it. Once none can,
        // the key's members of that moment are asked (a stand-in among them).
        handover = this.handedOver(key, later);
        if (handover !== undefined) break;
        i++;
        reply = await ask(members[i]);
      }
      if (handover === undefined) return { reply, authority: members[i], rest: members.slice(i + 1) };
      const go = await handover;
      const failed = members[i];
      if (!go) return { reply: NO_MEMBER, authority: failed, rest: [] };
      members = this.trustedFirst(key, this.ring.replicaSet(key));
      if (members.length === 0) return { reply: NO_MEMBER, authority: failed, rest: [] };
      // The same member decides again: it may have decided already (a reply that came back
      // too late to use), and asking twice could answer a lock's holder that it is taken.
      if (members[0] === failed) return { reply: NO_MEMBER, authority: failed, rest: [] };
    }
  }

  /**
   * Waits out a change of trust of the key's members (src/trust/agent.ts). Undefined when
   * none runs, the common case: the caller then awaits nothing, not even a tick.
   */
  private handedOver(key: Buffer, later: FollowUps): Promise<boolean> | undefined {
    const wait = this.resync.handingOver(key, later);
    if (wait === undefined) return undefined;
    this.handedOverScopes.add(later);
    return waitOut(wait, () => this.resync.handingOver(key, later));
  }

  private countRead(node: MemcachedNode): void {
    this.events.read?.(this.ring.localityOf(node));
  }
}
