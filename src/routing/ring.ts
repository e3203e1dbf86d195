// Placement: which backends hold a key. Every replicached process over the same
// backend list computes the same ring (ketama via `hashring`), so sidecars agree
// on placement without talking to each other.
//
// With zones (failure domains), a key's order is its preference order: clockwise
// from the key, the first backend of each zone not yet taken, until every zone is
// taken; then the others, in ring order (Cassandra's NetworkTopologyStrategy walk):
//
//   ring order        a1  a2  b1  a3  c1  b2  c2        (zones a, b, c)
//   preference order  a1  b1  c1 | a2  a3  b2  c2
//                     └ R=2: natural a1, b1; a stand-in for either is c1, from the zone not used
//
// Everything downstream (replica sets, natural members, the trust protocol's place(),
// resync shares) reads this one order. Without zones it is the ring order itself.

import type { Role } from '../trust/protocol';
import { hash } from 'node:crypto';
import HashRing from 'hashring';
import type { MemcachedNode } from './node';

export interface RingMember {
  node: MemcachedNode;
  /** Relative share of the ring (hashring weight); 1 for equal shares. */
  weight: number;
  /** The memcached on this node: read first whenever it is a live member of a key's replica set. */
  local?: boolean;
  /** Its failure domain; every member has one, or none has. */
  zone?: string;
}

/** Where a ring counts the copies that writes place, by zone (src/metrics/). */
export interface ZoneTally {
  /** The counter of copies placed in this zone; taken once per zone when the ring is built. */
  copies(zone: string): { n: number };
  /** Writes whose key's trusted members span fewer zones than they could: min(R, zones configured). */
  readonly unspread: { n: number };
}

export interface RingOptions {
  /** This sidecar's zone: reads ask a live member there first (after a `local` one). */
  zone?: string;
  /** Counts each write's placement by zone; only with zones. */
  tally?: ZoneTally;
}

/**
 * A key's preference order from its ring order: the first item of each zone not yet
 * taken, until `zones` zones are, then the others in ring order. So the first R are in
 * R distinct zones while there are R zones, and the next item after any prefix comes
 * from a zone the prefix lacks while one is left. `zoneOf` gives 0..zones-1.
 */
export function preferenceOrder<T>(order: readonly T[], zoneOf: (item: T) => number, zones: number): T[] {
  const taken = new Array<boolean>(zones).fill(false);
  const first: T[] = [];
  const rest: T[] = [];
  let left = zones;
  for (const item of order) {
    const zone = zoneOf(item);
    if (left > 0 && !taken[zone]) {
      taken[zone] = true;
      left--;
      first.push(item);
    } else {
      rest.push(item);
    }
  }
  return rest.length === 0 ? first : first.concat(rest);
}

/**
 * Key -> ring order lookups remembered per cache generation (two generations:
 * up to twice this). A lookup costs md5 and a ring walk otherwise. 32k entries
 * of a 64-byte key hold about 6 MB.
 */
const ORDER_CACHE_GENERATION = 32_768;

/**
 * md5 exactly as hashring's default computes it (same digest, so the same placement),
 * through the one-shot crypto.hash instead of a Hash object per lookup: a cache miss
 * costs about a microsecond less.
 */
function md5(key: string): Buffer {
  return hash('md5', key, 'buffer');
}

export class ReplicaRing {
  readonly replicas: number;
  private readonly ring: HashRing;
  private readonly byAddress = new Map<string, MemcachedNode>();
  // Two generations instead of one Map evicting its oldest entry: deleting from the
  // front of a Map leaves holes that keys().next() walks over, which cost ~14 us
  // per eviction once the key set outgrew the cache.
  private recent = new Map<string, MemcachedNode[]>();
  private older = new Map<string, MemcachedNode[]>();
  private readonly local = new Set<MemcachedNode>();
  /** Members in this sidecar's zone (none without zones, or without --zone). */
  private readonly ownZone = new Set<MemcachedNode>();
  /** Each address's zone as 0..zones-1; empty without zones. */
  private readonly zoneIndex = new Map<string, number>();
  private readonly zones: number;
  /** Each zone's copies counter, by zone index; null: writes are not counted. */
  private readonly copyCells: Array<{ n: number }> | null = null;
  private readonly unspread: { n: number } | null = null;
  /** The most distinct zones a key's copies can span: min(R, zones). */
  private readonly spread: number;
  /** The ring before a reload that moved keys, while some backends here are settling (see holds). */
  private previous: ReplicaRing | null = null;
  /** Kept backends whose refresh after that reload has not completed yet. */
  private readonly settling = new Set<string>();
  /** Each backend's role as the sidecars agreed it (src/trust/); without an agent, up is trusted. */
  private roleOf: (node: MemcachedNode) => Role = (node) => (node.isUp() ? 'trusted' : 'out');

  constructor(members: readonly RingMember[], replicas: number, options: RingOptions = {}) {
    if (replicas < 1) throw new RangeError('replicas must be at least 1');
    const zoned = members.filter((m) => m.zone !== undefined).length;
    if (zoned !== 0 && zoned !== members.length) throw new RangeError('every ring member needs a zone, or none');
    // Indices by sorted name: the same on every sidecar whatever the list's order (only equality matters).
    const names = [...new Set(members.flatMap((m) => (m.zone === undefined ? [] : [m.zone])))].sort();
    const weights: Record<string, { weight: number }> = {};
    for (const { node, weight, local, zone } of members) {
      this.byAddress.set(node.address, node);
      weights[node.address] = { weight };
      if (local === true) this.local.add(node);
      if (zone !== undefined) {
        this.zoneIndex.set(node.address, names.indexOf(zone));
        if (zone === options.zone) this.ownZone.add(node);
      }
    }
    this.ring = new HashRing(weights, md5, { 'max cache size': 0 });
    this.replicas = Math.min(replicas, members.length);
    this.zones = zoned === 0 ? 0 : names.length;
    this.spread = Math.min(this.replicas, this.zones);
    if (this.zones > 0 && options.tally !== undefined) {
      const tally = options.tally;
      this.copyCells = names.map((zone) => tally.copies(zone));
      this.unspread = tally.unspread;
    }
  }

  /** Places keys by the agreed roles from now on (src/trust/agent.ts). */
  useRoles(roleOf: (node: MemcachedNode) => Role): void {
    this.roleOf = roleOf;
  }

  get nodes(): MemcachedNode[] {
    return [...this.byAddress.values()];
  }

  /**
   * The key's replica set, in ring order: the first `replicas` trusted backends
   * clockwise from the key, and every backend being refilled before the last of
   * them (its natural members among them): each would be one of the first
   * `replicas` trusted if it were, so it takes the key's writes while its refill
   * brings it the rest. A backend out is skipped, so the next one on the ring
   * stands in and R copies keep existing while it is away. See place() in
   * src/trust/protocol.ts, which this follows over nodes. After a reload that moved keys,
   * until every backend settled, the key's former holders follow (addFormerHolders).
   */
  replicaSet(key: Buffer): MemcachedNode[] {
    const set: MemcachedNode[] = [];
    const order = this.ringOrder(key);
    let trusted = 0;
    for (let i = 0; i < order.length && trusted < this.replicas; i++) {
      const role = this.roleOf(order[i]);
      if (role === 'out') continue;
      set.push(order[i]);
      if (role === 'trusted') trusted++;
    }
    if (this.previous !== null) this.addFormerHolders(key, set);
    return set;
  }

  /**
   * While settling: the backends that held the key under the ring before the reload stay
   * members after the others (they take its writes and deletes, and answer for it) until
   * every backend has settled, so a key whose natural members all changed keeps a holder.
   */
  private addFormerHolders(key: Buffer, set: MemcachedNode[]): void {
    for (const address of this.formerHolders(key)) {
      const node = this.byAddress.get(address);
      if (node !== undefined && !set.includes(node) && this.roleOf(node) !== 'out') set.push(node);
    }
  }

  /** The key's natural members under the ring before the reload that held it, by address; none when not settling. */
  private formerHolders(key: Buffer): string[] {
    const before = this.previous;
    if (before === null) return [];
    return before.naturalSet(key).filter((n) => before.holds(key, n)).map((n) => n.address);
  }

  /**
   * The key's replica set for a write: replicaSet(), its copies counted by zone (with
   * zones and a tally), and counted as unspread when its trusted members span fewer
   * zones than min(R, zones): a zone or more is out.
   */
  writeSet(key: Buffer): MemcachedNode[] {
    const set = this.replicaSet(key);
    if (this.copyCells !== null) this.count(set);
    return set;
  }

  private count(set: readonly MemcachedNode[]): void {
    const cells = this.copyCells!;
    let distinct = 0;
    for (let i = 0; i < set.length; i++) {
      const zone = this.zoneIndex.get(set[i].address)!;
      cells[zone].n++;
      if (this.roleOf(set[i]) !== 'trusted') continue;
      let before = false;
      for (let j = 0; j < i && !before; j++) before = this.zoneIndex.get(set[j].address) === zone && this.roleOf(set[j]) === 'trusted';
      if (!before) distinct++;
    }
    if (distinct < this.spread) this.unspread!.n++;
  }

  /**
   * The order to read the key's replica set in: a local member first (a read
   * that stays on the node costs no network hop), then members in this
   * sidecar's zone (no hop across zones), then the others, each in preference
   * order. Writes and the authority still follow replicaSet().
   */
  readOrder(key: Buffer): MemcachedNode[] {
    const set = this.replicaSet(key);
    if (this.local.size === 0 && this.ownZone.size === 0) return set;
    return set.sort((a, b) => this.nearness(a) - this.nearness(b)); // stable: preference order within a rank
  }

  /** 0: the `local` backend, 1: one in this sidecar's zone, 2: the others. */
  private nearness(node: MemcachedNode): number {
    return this.local.has(node) ? 0 : this.ownZone.has(node) ? 1 : 2;
  }

  /** Where a read was answered from, for replicached_reads_total{locality}. */
  localityOf(node: MemcachedNode): 'local' | 'zone' | 'remote' {
    return this.local.has(node) ? 'local' : this.ownZone.has(node) ? 'zone' : 'remote';
  }

  /** The key's natural members: the first `replicas` in its order, whatever their roles. */
  naturalSet(key: Buffer): MemcachedNode[] {
    return this.ringOrder(key).slice(0, this.replicas);
  }

  /** The node is one of the key's natural members (as naturalSet, without its array: every read asks). */
  isNatural(key: Buffer, node: MemcachedNode): boolean {
    const at = this.ringOrder(key).indexOf(node);
    return at >= 0 && at < this.replicas;
  }

  /**
   * After a reload that moved keys: each of `kept` (by address) may now be a natural member
   * of keys it never held (another weight, another zone), until its refresh from the keys'
   * holders completes (settled). Until then it holds only the keys it held under `previous`,
   * and those former holders stay members of their keys (replicaSet).
   */
  settleFrom(previous: ReplicaRing, kept: Iterable<string>): void {
    for (const address of kept) if (this.byAddress.has(address)) this.settling.add(address);
    this.previous = this.settling.size > 0 ? previous : null;
  }

  /** The backend's refresh completed: it holds every key it is a natural member of. True when that ends the settling. */
  settled(address: string): boolean {
    if (!this.settling.delete(address) || this.settling.size > 0) return false;
    this.previous = null;
    return true;
  }

  /** Some backend is settling (see settleFrom): placement is not yet the same as holding. */
  get isSettling(): boolean {
    return this.previous !== null;
  }

  /**
   * The node saw every write and delete of the key: a natural member that is not settling, or,
   * while settling, one that held the key under the ring before (which may be settling too).
   * Only such a member's miss says the key is gone.
   */
  holds(key: Buffer, node: MemcachedNode): boolean {
    if (this.previous === null) return this.isNatural(key, node);
    if (this.isNatural(key, node) && !this.settling.has(node.address)) return true;
    const before = this.previous.byAddress.get(node.address);
    return before !== undefined && this.previous.holds(key, before);
  }

  /**
   * Every backend, up or down, in the key's order: its ring order, or with zones its
   * preference order (see the top of this file). The one order every placement reads.
   */
  ringOrder(key: Buffer): MemcachedNode[] {
    const ringKey = key.toString('latin1'); // one char per byte: distinct keys stay distinct
    let order = this.recent.get(ringKey);
    if (order !== undefined) return order;
    order = this.older.get(ringKey) ?? this.computeOrder(ringKey);
    if (this.recent.size >= ORDER_CACHE_GENERATION) {
      this.older = this.recent;
      this.recent = new Map();
    }
    this.recent.set(ringKey, order);
    return order;
  }

  /** The backends before `node` in the key's order: their roles decide whether it is in the key's placement. */
  ahead(key: Buffer, node: MemcachedNode): MemcachedNode[] {
    const order = this.ringOrder(key);
    return order.slice(0, order.indexOf(node));
  }

  private computeOrder(ringKey: string): MemcachedNode[] {
    let addresses: string[] = this.ring.range(ringKey, this.byAddress.size);
    if (this.zones > 1) addresses = preferenceOrder(addresses, (a) => this.zoneIndex.get(a)!, this.zones);
    return addresses.map((address) => this.byAddress.get(address)!);
  }
}
