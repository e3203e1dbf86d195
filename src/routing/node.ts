// What the routing core needs from one memcached backend. src/backends/
// implements it over real sockets; tests implement it with scripted fakes.
// Every method resolves (never rejects): a backend failure is the `failed` outcome.

import type { StoreFields } from '../protocol/types';

/** An item as a backend holds it, with what read repair and resync need to copy it faithfully. */
export interface StoredItem {
  value: Buffer;
  flags: number;
  cas: bigint;
  /** Remaining time to live in seconds; -1 = never expires; null = the backend cannot tell (binary protocol). */
  ttl: number | null;
}

/** The backend did not answer: timed out, refused, closed, or replied with an error. */
export interface Failed {
  status: 'failed';
  reason: string;
}

export type NodeGet = { status: 'hit'; item: StoredItem } | { status: 'miss' } | Failed;
export type NodeStore =
  | { status: 'stored'; cas: bigint }
  | { status: 'not_stored' }
  | { status: 'exists' }
  | { status: 'not_found' }
  /** memcached's SERVER_ERROR object too large for cache: an answer, not a failure. */
  | { status: 'too_large' }
  | Failed;
export type NodeDelete = { status: 'deleted' } | { status: 'not_found' } | { status: 'exists' } | Failed;
/**
 * The item's CAS and remaining TTL (no value), or its absence. -1: never expires; null:
 * the backend cannot tell (the binary protocol).
 */
export type NodeCas = { status: 'hit'; cas: bigint; ttl: number | null } | { status: 'miss' } | Failed;
/** A touch leaves the CAS as it was; `cas` is the item's. */
export type NodeTouch = { status: 'touched'; cas: bigint } | { status: 'not_found' } | Failed;
export type NodeArith =
  | { status: 'ok'; value: bigint; cas: bigint }
  | { status: 'not_found' }
  | { status: 'non_numeric' }
  | Failed;
export type NodeFlush = { status: 'ok' } | Failed;

export type StoreRequest = StoreFields;

export interface MemcachedNode {
  /** "host:port", the name on the hash ring and in metrics. */
  readonly address: string;
  /** False while the backend is marked down; the ring skips it. */
  isUp(): boolean;
  /** `touch` set: also update the expiry (gat). */
  get(key: Buffer, touch?: number): Promise<NodeGet>;
  /** The item's CAS and remaining TTL, without its value. */
  casOf(key: Buffer): Promise<NodeCas>;
  store(req: StoreRequest): Promise<NodeStore>;
  delete(key: Buffer, cas: bigint): Promise<NodeDelete>;
  touch(key: Buffer, exptime: number): Promise<NodeTouch>;
  /** `create`: the initial value and expiry when the key is missing (binary protocol). */
  arith(
    kind: 'incr' | 'decr',
    key: Buffer,
    delta: bigint,
    create?: { initial: bigint; exptime: number },
  ): Promise<NodeArith>;
  flush(delay: number): Promise<NodeFlush>;
}
