// The model the randomized checker compares replicached with: what memcached
// itself would answer, one key at a time, for a key only one worker writes.
// Every op gives a protocol-neutral expected result; the clients translate what
// the proxy answered into the same words.

export type OpKind =
  | 'set'
  | 'add'
  | 'replace'
  | 'append'
  | 'prepend'
  | 'cas'
  | 'delete'
  | 'touch'
  | 'incr'
  | 'decr'
  | 'get';

export interface Op {
  kind: OpKind;
  key: string;
  value: string;
  flags: number;
  exptime: number;
  delta: bigint;
  /** cas: the token to compare. */
  cas: bigint;
  /** noreply (text) or the quiet opcode (binary). */
  quiet: boolean;
}

/**
 * A result in protocol-neutral words. The failures that the two protocols word
 * differently keep the op's name: memcached answers a refused add NOT_STORED in
 * text and "key exists" in binary.
 */
export type Result =
  | { kind: 'stored' | 'deleted' | 'touched' | 'not_found' | 'exists' | 'miss' }
  | { kind: 'refused'; op: 'add' | 'replace' | 'append' }
  | { kind: 'number'; n: bigint }
  | { kind: 'value'; value: string; flags: number; cas: bigint }
  /** Nothing came back: a quiet op that succeeded, or a noreply op. */
  | { kind: 'silent' }
  /** The proxy could not know (connection closed) or could not do it (SERVER_ERROR): the key's state is unknown. */
  | { kind: 'unknown' };

/** One key's state, as memcached would hold it after the ops so far. */
export interface KeyState {
  present: boolean;
  value: string;
  flags: number;
  /** A token from the last gets is still the item's (no write since). */
  token: bigint | null;
  /** A failure left the state unknown; the next read tells. */
  unknown: boolean;
  /** Holds numbers only (incr/decr apply). */
  counter: boolean;
}

export function emptyState(counter: boolean): KeyState {
  return { present: false, value: '', flags: 0, token: null, unknown: false, counter };
}

const U64 = (1n << 64n) - 1n;

/** The result memcached gives `op` on `s`, and the state after it (s is updated). */
export function apply(s: KeyState, op: Op): Result {
  const wrote = (): void => {
    s.token = null;
  };
  switch (op.kind) {
    case 'get':
      return s.present ? { kind: 'value', value: s.value, flags: s.flags, cas: 0n } : { kind: 'miss' };
    case 'set':
      Object.assign(s, { present: true, value: op.value, flags: op.flags });
      wrote();
      return { kind: 'stored' };
    case 'add':
      if (s.present) return { kind: 'refused', op: 'add' };
      Object.assign(s, { present: true, value: op.value, flags: op.flags });
      wrote();
      return { kind: 'stored' };
    case 'replace':
      if (!s.present) return { kind: 'refused', op: 'replace' };
      Object.assign(s, { value: op.value, flags: op.flags });
      wrote();
      return { kind: 'stored' };
    case 'append':
    case 'prepend':
      if (!s.present) return { kind: 'refused', op: 'append' };
      s.value = op.kind === 'append' ? s.value + op.value : op.value + s.value;
      wrote();
      return { kind: 'stored' };
    case 'cas':
      if (!s.present) return { kind: 'not_found' };
      if (s.token !== op.cas) return { kind: 'exists' };
      Object.assign(s, { value: op.value, flags: op.flags });
      wrote();
      return { kind: 'stored' };
    case 'delete':
      if (!s.present) return { kind: 'not_found' };
      s.present = false;
      wrote();
      return { kind: 'deleted' };
    case 'touch':
      return s.present ? { kind: 'touched' } : { kind: 'not_found' };
    case 'incr':
    case 'decr': {
      if (!s.present) return { kind: 'not_found' };
      const now = BigInt(s.value.trim());
      const next = op.kind === 'incr' ? (now + op.delta) & U64 : now > op.delta ? now - op.delta : 0n;
      s.value = next.toString();
      wrote();
      return { kind: 'number', n: next };
    }
  }
}

/** Equal as far as a client can tell; counters compare as numbers (memcached pads a shrunk one with spaces). */
export function sameResult(a: Result, b: Result, counter: boolean): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'value' && b.kind === 'value') {
    return a.flags === b.flags && (counter ? a.value.trim() === b.value.trim() : a.value === b.value);
  }
  if (a.kind === 'number' && b.kind === 'number') return a.n === b.n;
  if (a.kind === 'refused' && b.kind === 'refused') return a.op === b.op;
  return true;
}

/** What a quiet op answers: text noreply, nothing at all; a binary quiet opcode, nothing when it succeeds. */
export function quietly(r: Result, protocol: 'text' | 'binary'): Result {
  if (protocol === 'text') return { kind: 'silent' };
  return r.kind === 'stored' || r.kind === 'deleted' || r.kind === 'touched' || r.kind === 'number' ? { kind: 'silent' } : r;
}
