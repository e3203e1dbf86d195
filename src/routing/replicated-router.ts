// The replication rules, one place for both client protocols.
//
//   read   get ──> local member, else authority ──miss/failed──> next member ──> ... ──> hit: reply,
//                                                                    copy to the members that missed (read repair)
//          every member missed ──> miss;  no hit and any member failed ──> unavailable (the session closes)
//   write  set/replace/append/prepend/touch/delete ──> all members in parallel; the authority's reply wins
//   decide add/cas/incr/decr ──> authority decides ──success──> value copied to the other members
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
  Router,
  StoreFields,
  StoreOutcome,
  TouchOutcome,
} from '../protocol/types';
import type { MemcachedNode, NodeGet, StoredItem } from './node';
import type { ReplicaRing } from './ring';

/** Where the router reports what metrics count. */
export interface RouterEvents {
  /** A member other than the first asked had to answer. */
  failover(command: string): void;
  /** An item was copied to a member that missed it. */
  readRepair(): void;
  /** Members that answered gave different answers to the same write. */
  disagreement(command: string): void;
  /** A backend was asked for a read: "local" when it is the `local: true` one (no network hop). */
  read?(locality: 'local' | 'remote'): void;
}

export const SILENT_EVENTS: RouterEvents = {
  failover() {},
  readRepair() {},
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
}

export const NO_RESYNC: ResyncHooks = {
  isResyncing: () => false,
  deleting: () => undefined,
  flushing: () => undefined,
};

const UNAVAILABLE = { status: 'unavailable' } as const;
const MISS = { status: 'miss' } as const;

/** memcached reads a relative expiry above 30 days as an absolute Unix time. */
const MAX_RELATIVE_EXPTIME = 60 * 60 * 24 * 30;

/** The exptime that gives a copy the same remaining life as the original, or null if it is about to expire. */
export function exptimeForCopy(ttl: number, nowSeconds = Math.floor(Date.now() / 1000)): number | null {
  if (ttl < 0) return 0; // never expires
  if (ttl === 0) return null;
  return ttl > MAX_RELATIVE_EXPTIME ? nowSeconds + ttl : ttl;
}

export class ReplicatedRouter implements Router {
  constructor(
    private ring: ReplicaRing,
    private readonly events: RouterEvents = SILENT_EVENTS,
    private readonly resync: ResyncHooks = NO_RESYNC,
  ) {}

  /** Routes every later request over `ring` (a config reload); requests already routed finish as they started. */
  replaceRing(ring: ReplicaRing): void {
    this.ring = ring;
  }

  get(key: Buffer, touch?: number): Promise<GetOutcome> {
    // Local-first: a `local: true` member is asked first; the authority is unchanged for writes.
    const members = this.trustedFirst(this.ring.readOrder(key));
    if (members.length === 0) return Promise.resolve(UNAVAILABLE);
    // Not async: handing on the inner promise saves the two ticks an async function takes to adopt it.
    return touch === undefined ? this.readInTurn(key, members) : this.readAllAndTouch(key, touch, members);
  }

  async store(cmd: StoreFields): Promise<StoreOutcome> {
    const members = this.trustedFirst(this.ring.replicaSet(cmd.key));
    if (members.length === 0) return UNAVAILABLE;
    if (cmd.mode === 'add' || cmd.mode === 'cas') return this.decideThenCopy(cmd, members);

    const replies = await Promise.all(members.map((m) => m.store(cmd)));
    const reply = this.pickReply(cmd.mode, replies);
    if (reply.status === 'failed') return UNAVAILABLE;
    return reply;
  }

  async delete(key: Buffer, cas: bigint): Promise<DeleteOutcome> {
    // Resync: a copy of this key in flight lands first, then this delete removes it everywhere.
    const copying = this.resync.deleting(key);
    if (copying !== undefined) await copying;
    const members = this.trustedFirst(this.ring.replicaSet(key));
    if (members.length === 0) return UNAVAILABLE;
    if (cas !== 0n) {
      // Only the authority's CAS is meaningful; the others follow its decision.
      const { reply, rest } = await this.askAuthority('delete', members, (m) => m.delete(key, cas));
      if (reply.status === 'deleted') await Promise.all(rest.map((m) => m.delete(key, 0n)));
      return reply.status === 'failed' ? UNAVAILABLE : reply;
    }
    const reply = this.pickReply('delete', await Promise.all(members.map((m) => m.delete(key, 0n))));
    return reply.status === 'failed' ? UNAVAILABLE : reply;
  }

  async touch(key: Buffer, exptime: number): Promise<TouchOutcome> {
    const members = this.trustedFirst(this.ring.replicaSet(key));
    if (members.length === 0) return UNAVAILABLE;
    const reply = this.pickReply('touch', await Promise.all(members.map((m) => m.touch(key, exptime))));
    return reply.status === 'failed' ? UNAVAILABLE : reply;
  }

  async arith(cmd: ArithCommand): Promise<ArithOutcome> {
    const members = this.trustedFirst(this.ring.replicaSet(cmd.key));
    if (members.length === 0) return UNAVAILABLE;
    const { reply, authority, rest } = await this.askAuthority(cmd.kind, members, (m) =>
      m.arith(cmd.kind, cmd.key, cmd.delta, cmd.create),
    );
    if (reply.status === 'failed') return UNAVAILABLE;
    if (reply.status === 'ok' && rest.length > 0) {
      // Bring the others to the authority's value, with its flags and expiry.
      const current = await authority.get(cmd.key);
      if (current.status === 'hit') await this.copyTo(rest, cmd.key, current.item, 'set');
    }
    return reply;
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
  private trustedFirst(members: MemcachedNode[]): MemcachedNode[] {
    if (!members.some((m) => this.resync.isResyncing(m))) return members;
    const resyncing = members.filter((m) => this.resync.isResyncing(m));
    return [...members.filter((m) => !resyncing.includes(m)), ...resyncing];
  }

  /**
   * A miss from `node` proves a resyncing member's copy of `key` stale when node
   * is not resyncing and is in the key's natural replica set (the first R on the
   * ring, up or down): it was in the set before the other went away and stayed,
   * so it saw every write and delete. A stand-in for a backend that is down may
   * simply never have had the key.
   */
  private provesGone(key: Buffer, node: MemcachedNode): boolean {
    if (this.resync.isResyncing(node)) return false;
    const at = this.ring.ringOrder(key).indexOf(node);
    return at >= 0 && at < this.ring.replicas;
  }

  /** Ask the members one after another until one has the item (resyncing members last). */
  private async readInTurn(key: Buffer, members: MemcachedNode[]): Promise<GetOutcome> {
    const missed: MemcachedNode[] = [];
    let failed = false;
    // Resync rule: a member still being refilled may just not have the item yet, so
    // its miss proves nothing. A miss from a member that is not resyncing does: it
    // stayed in this key's replica set the whole time the other was away (taking a
    // backend out of the ring only shifts later ones in), so it saw every write.
    let authoritativeMiss = false;
    let provedGone = false;
    for (let i = 0; i < members.length; i++) {
      const reply = await members[i].get(key);
      this.countRead(members[i]);
      if (reply.status === 'hit') {
        // The key is gone (deleted while this resyncing member was away): its copy is stale.
        if (provedGone && this.resync.isResyncing(members[i])) continue;
        if (i > 0) this.events.failover('get');
        this.repair(missed, key, reply.item);
        return reply;
      }
      if (reply.status === 'miss') {
        missed.push(members[i]);
        if (!this.resync.isResyncing(members[i])) authoritativeMiss = true;
        if (this.provesGone(key, members[i])) provedGone = true;
      } else failed = true;
    }
    // A miss only when every member said so, one of them with authority; otherwise we cannot know.
    return failed || !authoritativeMiss ? UNAVAILABLE : MISS;
  }

  /** gat/gats: every member must see the new expiry, so ask them all at once. */
  private async readAllAndTouch(key: Buffer, touch: number, members: MemcachedNode[]): Promise<GetOutcome> {
    const replies: NodeGet[] = await Promise.all(members.map((m) => m.get(key, touch)));
    for (const m of members) this.countRead(m);
    // As in readInTurn: a resyncing member's hit does not stand against a miss that proves the key gone.
    const gone = members.some((m, i) => replies[i].status === 'miss' && this.provesGone(key, m));
    const hitAt = replies.findIndex((r, i) => r.status === 'hit' && !(gone && this.resync.isResyncing(members[i])));
    if (hitAt < 0) return replies.some((r) => r.status === 'failed') ? UNAVAILABLE : MISS;
    if (hitAt > 0) this.events.failover('gat');
    const hit = replies[hitAt] as Extract<NodeGet, { status: 'hit' }>;
    this.repair(
      members.filter((_, i) => replies[i].status === 'miss'),
      key,
      hit.item,
    );
    return hit;
  }

  /**
   * add and cas: only the authority can decide (the session lock relies on one
   * place saying yes). If it fails, the next member is the authority.
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
  private async decideThenCopy(cmd: StoreFields, members: MemcachedNode[]): Promise<StoreOutcome> {
    const { reply, rest } = await this.askAuthority(cmd.mode, members, (m) => m.store(cmd));
    if (reply.status === 'failed') return UNAVAILABLE;
    if (reply.status === 'stored' && rest.length > 0) {
      await Promise.all(rest.map((m) => m.store({ ...cmd, mode: 'set', cas: 0n })));
    }
    return reply;
  }

  private async askAuthority<R extends { status: string }>(
    command: string,
    members: MemcachedNode[],
    ask: (m: MemcachedNode) => Promise<R>,
  ): Promise<{ reply: R; authority: MemcachedNode; rest: MemcachedNode[] }> {
    let i = 0;
    let reply = await ask(members[0]);
    while (reply.status === 'failed' && i + 1 < members.length) {
      i++;
      this.events.failover(command);
      reply = await ask(members[i]);
    }
    return { reply, authority: members[i], rest: members.slice(i + 1) };
  }

  /** The authority's reply if it answered, else the first answer from the others. */
  private pickReply<R extends { status: string }>(command: string, replies: R[]): R {
    const answered = replies.filter((r) => r.status !== 'failed');
    if (answered.length === 0) return replies[0];
    if (answered.some((r) => r.status !== answered[0].status)) this.events.disagreement(command);
    if (replies[0].status === 'failed') this.events.failover(command);
    return answered[0];
  }

  private countRead(node: MemcachedNode): void {
    this.events.read?.(this.ring.isLocal(node) ? 'local' : 'remote');
  }

  /** Read repair: copy a hit to the members that missed, never over a value written meanwhile. */
  private repair(missed: MemcachedNode[], key: Buffer, item: StoredItem): void {
    if (missed.length === 0) return;
    this.events.readRepair();
    void this.copyTo(missed, key, item, 'add');
  }

  private async copyTo(nodes: MemcachedNode[], key: Buffer, item: StoredItem, mode: 'add' | 'set'): Promise<void> {
    const exptime = exptimeForCopy(item.ttl);
    if (exptime === null) return;
    await Promise.all(
      nodes.map((n) => n.store({ mode, key, value: item.value, flags: item.flags, exptime, cas: 0n })),
    );
  }
}
