// Placement: which backends hold a key. Every replicached process over the same
// backend list computes the same ring (ketama via `hashring`), so sidecars agree
// on placement without talking to each other.

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
  /** Each backend's role as the sidecars agreed it (src/trust/); without an agent, up is trusted. */
  private roleOf: (node: MemcachedNode) => Role = (node) => (node.isUp() ? 'trusted' : 'out');

  constructor(members: readonly RingMember[], replicas: number) {
    if (replicas < 1) throw new RangeError('replicas must be at least 1');
    const weights: Record<string, { weight: number }> = {};
    for (const { node, weight, local } of members) {
      this.byAddress.set(node.address, node);
      weights[node.address] = { weight };
      if (local === true) this.local.add(node);
    }
    this.ring = new HashRing(weights, md5, { 'max cache size': 0 });
    this.replicas = Math.min(replicas, members.length);
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
   * src/trust/protocol.ts, which this follows over nodes.
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
    return set;
  }

  /**
   * The order to read the key's replica set in: a local member first (a read
   * that stays on the node costs no network hop), then the others in ring
   * order. Writes and the authority still follow replicaSet().
   */
  readOrder(key: Buffer): MemcachedNode[] {
    const set = this.replicaSet(key);
    if (this.local.size === 0) return set;
    const at = set.findIndex((node) => this.local.has(node));
    if (at > 0) set.unshift(...set.splice(at, 1));
    return set;
  }

  /** The key's natural members: the first `replicas` on the ring, whatever their roles. */
  naturalSet(key: Buffer): MemcachedNode[] {
    return this.ringOrder(key).slice(0, this.replicas);
  }

  /** The node is one of the key's natural members (as naturalSet, without its array: every read asks). */
  isNatural(key: Buffer, node: MemcachedNode): boolean {
    const at = this.ringOrder(key).indexOf(node);
    return at >= 0 && at < this.replicas;
  }

  isLocal(node: MemcachedNode): boolean {
    return this.local.has(node);
  }

  /** Every backend, in the key's ring order, up or down. */
  ringOrder(key: Buffer): MemcachedNode[] {
    const ringKey = key.toString('latin1'); // one char per byte: distinct keys stay distinct
    let order = this.recent.get(ringKey);
    if (order !== undefined) return order;
    order = this.older.get(ringKey) ?? this.ring.range(ringKey, this.byAddress.size).map((address) => this.byAddress.get(address)!);
    if (this.recent.size >= ORDER_CACHE_GENERATION) {
      this.older = this.recent;
      this.recent = new Map();
    }
    this.recent.set(ringKey, order);
    return order;
  }
}
