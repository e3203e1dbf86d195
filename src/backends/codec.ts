// How a Backend speaks to its memcached: the meta commands (the default), or the
// binary protocol with SASL PLAIN for a memcached that requires SASL (-S), which
// refuses the ASCII protocol. Both give the same reply objects (see
// src/protocol/backend/binary.ts), so the Backend, its Connections and the
// outcome mapping do not know which one they run; what differs is here:
//
//                 meta                          binary (SASL)
//   keys          raw, or base64 (<= 186 bytes) any 1..250 bytes
//   item TTL      read (`mg ... t`)             unknown (null): copies use what the router knows
//   listing keys  lru_crawler metadump          impossible (metadump is null)
//   handshake     none                          SASL_AUTH PLAIN before the connection is used

import * as binary from '../protocol/backend/binary';
import * as meta from '../protocol/backend/meta';
import type { Encoded, ParseResult, ParserLimits, ReplyKind } from '../protocol/backend/meta';
import type { SaslPlain, StoreFields } from '../protocol/types';

export type { SaslPlain };

/** One request as a connection sends it: its bytes (given the opaque token) and the kind of reply it gets. */
export interface Op {
  readonly kind: ReplyKind;
  readonly encode: (opaque: string) => Encoded;
  /** See BackendRequest.dataFollows (connection.ts). */
  readonly dataFollows?: boolean;
}

/** A reply parser: bytes in, one reply of the expected kind for the request with this opaque token out. */
export interface ReplyReader {
  readonly buffered: number;
  push(chunk: Buffer): void;
  next(kind: ReplyKind, opaque: string): ParseResult;
}

export interface BackendCodec {
  /** 'binary' when the backend requires SASL. */
  readonly protocol: 'meta' | 'binary';
  reader(limits: ParserLimits): ReplyReader;
  /** Whether the key can reach this backend byte for byte. */
  canCarryKey(key: Buffer): boolean;
  get(key: Buffer, touch?: number): Op;
  /** The CAS without the value where the protocol allows (binary: a GET). */
  casOnly(key: Buffer): Op;
  touch(key: Buffer, exptime: number): Op;
  store(req: StoreFields): Op;
  delete(key: Buffer, cas: bigint): Op;
  arith(kind: 'incr' | 'decr', key: Buffer, delta: bigint, create?: { initial: bigint; exptime: number }): Op;
  version(): Op;
  stats(group?: string): Op;
  flushAll(delay: number): Op;
  /** Lists every key (on a connection of its own); null when the protocol cannot. */
  readonly metadump: Op | null;
  /** Sent first on every new connection, which is usable only once it succeeds; null: none. */
  readonly handshake: Op | null;
}

export const META_CODEC: BackendCodec = Object.freeze({
  protocol: 'meta',
  reader: (limits: ParserLimits) => new meta.ReplyParser(limits),
  canCarryKey: meta.canCarryKey,
  get: (key: Buffer, touch?: number) => ({ kind: 'meta', encode: (o: string) => meta.encodeGet(key, touch, o) }),
  casOnly: (key: Buffer) => ({ kind: 'meta', encode: (o: string) => meta.encodeCasOnly(key, o) }),
  touch: (key: Buffer, exptime: number) => ({ kind: 'meta', encode: (o: string) => meta.encodeTouch(key, exptime, o) }),
  store: (req: StoreFields) => ({ kind: 'meta', encode: (o: string) => meta.encodeStore(req, o), dataFollows: true }),
  delete: (key: Buffer, cas: bigint) => ({ kind: 'meta', encode: (o: string) => meta.encodeDelete(key, cas, o) }),
  arith: (kind: 'incr' | 'decr', key: Buffer, delta: bigint, create?: { initial: bigint; exptime: number }) => ({
    kind: 'meta',
    encode: (o: string) => meta.encodeArith(kind, key, delta, create, o),
  }),
  version: () => ({ kind: 'line', encode: meta.encodeVersion }),
  stats: (group?: string) => ({ kind: 'stats', encode: () => meta.encodeStats(group) }),
  flushAll: (delay: number) => ({ kind: 'line', encode: () => meta.encodeFlushAll(delay) }),
  metadump: { kind: 'metadump', encode: meta.encodeMetadump },
  handshake: null,
} satisfies BackendCodec);

/**
 * The binary protocol, authenticating each connection with `credentials`. Items read
 * report no remaining TTL (see binary.ts).
 */
export function binaryCodec(credentials: SaslPlain): BackendCodec {
  const { username, password } = credentials;
  return Object.freeze({
    protocol: 'binary',
    reader: (limits: ParserLimits) => new binary.BinaryReplyParser(limits),
    canCarryKey: binary.canCarryKey,
    get: (key: Buffer, touch?: number) => ({ kind: 'meta', encode: (o: string) => binary.encodeGet(key, touch, o) }),
    casOnly: (key: Buffer) => ({ kind: 'meta', encode: (o: string) => binary.encodeGet(key, undefined, o) }),
    touch: (key: Buffer, exptime: number) => ({ kind: 'meta', encode: (o: string) => binary.encodeTouch(key, exptime, o) }),
    store: (req: StoreFields) => ({ kind: 'meta', encode: (o: string) => binary.encodeStore(req, o) }),
    delete: (key: Buffer, cas: bigint) => ({ kind: 'meta', encode: (o: string) => binary.encodeDelete(key, cas, o) }),
    arith: (kind: 'incr' | 'decr', key: Buffer, delta: bigint, create?: { initial: bigint; exptime: number }) => ({
      kind: 'meta',
      encode: (o: string) => binary.encodeArith(kind, key, delta, create, o),
    }),
    version: () => ({ kind: 'line', encode: binary.encodeVersion }),
    stats: (group?: string) => ({ kind: 'stats', encode: (o: string) => binary.encodeStats(group, o) }),
    flushAll: (delay: number) => ({ kind: 'line', encode: (o: string) => binary.encodeFlushAll(delay, o) }),
    metadump: null,
    handshake: { kind: 'auth', encode: (o: string) => binary.encodeSaslPlain(username, password, o) },
  } satisfies BackendCodec);
}
