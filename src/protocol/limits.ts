// Every bound the proxy enforces, in one place. Defaults follow memcached's.

export interface Limits {
  /** Longest key, in bytes (memcached: KEY_MAX_LENGTH). */
  maxKeyLength: number;
  /** Largest value accepted from a client (memcached -I, default 1 MiB). */
  maxItemSize: number;
  /** Longest text command line without its value, in bytes, before the client is told and closed. */
  maxLineLength: number;
  /** Most keys in one text get/gets/gat/gats. */
  maxKeysPerGet: number;
  /** Requests a client may have in flight before its socket stops being read. */
  maxInflightPerClient: number;
  /** Reply bytes buffered for a slow reader before its socket stops being read. */
  maxClientOutputBytes: number;
  /** Client connections open at once; the one over the limit is closed at accept. */
  maxClientConnections: number;
  /** Close a client idle this long, in milliseconds; 0 = never. */
  clientIdleTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxKeyLength: 250,
  maxItemSize: 1024 * 1024,
  // memcached allows a 2048-byte line, longer only for multi-gets; ours bounds a
  // whole multi-get line: 64 KiB holds ~250 keys of 250 bytes.
  maxLineLength: 64 * 1024,
  maxKeysPerGet: 10_000,
  maxInflightPerClient: 1024,
  maxClientOutputBytes: 4 * 1024 * 1024,
  maxClientConnections: 10_000,
  clientIdleTimeoutMs: 0,
});
