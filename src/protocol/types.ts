// The protocol-neutral vocabulary shared by the client codecs (text, binary)
// and the routing core. Codecs turn bytes into requests and Outcomes into
// bytes; routing turns requests into Outcomes. Nothing here touches a socket.

export type StoreMode = 'set' | 'add' | 'replace' | 'append' | 'prepend' | 'cas';

/** SASL PLAIN credentials (RFC 4616): to present to the backends, or to require from clients. */
export interface SaslPlain {
  username: string;
  password: string;
}

/** An item as a client sees it. `cas` is the 64-bit compare-and-swap token. */
export interface Item {
  value: Buffer;
  flags: number;
  cas: bigint;
}

/** One store as a backend is asked to do it (the meta protocol's `ms`). */
export interface StoreFields {
  mode: StoreMode;
  key: Buffer;
  value: Buffer;
  flags: number;
  /** Passed through as the client sent it: relative seconds, absolute Unix time, or negative (expired). */
  exptime: number;
  /** Compare-and-swap token; 0n = no comparison, except in mode 'cas', which always compares. */
  cas: bigint;
}

/** incr/decr as the routing core takes it. `create` is binary only: the initial value and expiry when the key is missing. */
export interface ArithCommand {
  kind: 'incr' | 'decr';
  key: Buffer;
  delta: bigint;
  create?: { initial: bigint; exptime: number };
}

export type GetOutcome =
  | { status: 'hit'; item: Item }
  | { status: 'miss' }
  /** No replica could answer: the client connection must be closed, never answered with a miss. */
  | { status: 'unavailable' };

export type StoreOutcome =
  | { status: 'stored'; cas: bigint }
  | { status: 'not_stored' }
  | { status: 'exists' }
  | { status: 'not_found' }
  /** A backend refused the value as larger than its item size (memcached -I). */
  | { status: 'too_large' }
  | { status: 'unavailable' };

export type DeleteOutcome = { status: 'deleted' } | { status: 'not_found' } | { status: 'exists' } | { status: 'unavailable' };

export type TouchOutcome = { status: 'touched' } | { status: 'not_found' } | { status: 'unavailable' };

export type ArithOutcome =
  | { status: 'ok'; value: bigint; cas: bigint }
  | { status: 'not_found' }
  | { status: 'non_numeric' }
  | { status: 'unavailable' };

export type FlushOutcome = { status: 'ok' } | { status: 'unavailable' };

/** The routing core as the client sessions see it. It never throws: failures are outcomes. */
export interface Router {
  get(key: Buffer, touch?: number): Promise<GetOutcome>;
  /** A parsed request carrying these fields is passed as is: no copy per request. */
  store(cmd: StoreFields): Promise<StoreOutcome>;
  delete(key: Buffer, cas: bigint): Promise<DeleteOutcome>;
  touch(key: Buffer, exptime: number): Promise<TouchOutcome>;
  arith(cmd: ArithCommand): Promise<ArithOutcome>;
  flush(delay: number): Promise<FlushOutcome>;
}
