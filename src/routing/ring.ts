// Placement: which backends hold a key. Every replicached process over the same
// backend list computes the same ring (ketama via `hashring`), so sidecars agree
// on placement without talking to each other.

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
 * How many key -> ring-order lookups to remember; hashing (md5) dominates routing
 * cost otherwise. 64k entries of a 64-byte key hold about 12 MB, and cover the
 * keys of 32k sessions (a lock and a session key each).
 */
const ORDER_CACHE_SIZE = 65_536;

export class ReplicaRing {
  readonly replicas: number;
  private readonly ring: HashRing;
  private readonly byAddress = new Map<string, MemcachedNode>();
  private readonly orderCache = new Map<string, MemcachedNode[]>();
  private readonly local = new Set<MemcachedNode>();

  constructor(members: readonly RingMember[], replicas: number) {
    if (replicas < 1) throw new RangeError('replicas must be at least 1');
    const weights: Record<string, { weight: number }> = {};
    for (const { node, weight, local } of members) {
      this.byAddress.set(node.address, node);
      weights[node.address] = { weight };
      if (local === true) this.local.add(node);
    }
    this.ring = new HashRing(weights, 'md5', { 'max cache size': 0 });
    this.replicas = Math.min(replicas, members.length);
  }

  get nodes(): MemcachedNode[] {
    return [...this.byAddress.values()];
  }

  /**
   * The key's replica set: the first `replicas` distinct live backends clockwise
   * from the key. A backend that is down is skipped, so the next one on the ring
   * takes its place and R copies keep existing while it is away. The first
   * member is the authority.
   */
  replicaSet(key: Buffer): MemcachedNode[] {
    const set: MemcachedNode[] = [];
    for (const node of this.ringOrder(key)) {
      if (!node.isUp()) continue;
      set.push(node);
      if (set.length === this.replicas) break;
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

  isLocal(node: MemcachedNode): boolean {
    return this.local.has(node);
  }

  /** Every backend, in the key's ring order, up or down. */
  ringOrder(key: Buffer): MemcachedNode[] {
    const ringKey = key.toString('latin1'); // one char per byte: distinct keys stay distinct
    let order = this.orderCache.get(ringKey);
    if (order === undefined) {
      order = this.ring.range(ringKey, this.byAddress.size).map((address) => this.byAddress.get(address)!);
      if (this.orderCache.size >= ORDER_CACHE_SIZE) {
        this.orderCache.delete(this.orderCache.keys().next().value!);
      }
      this.orderCache.set(ringKey, order);
    }
    return order;
  }
}
