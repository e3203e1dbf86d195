// The codec replicached speaks to its memcached backends: the meta commands
// (mg, ms, md, ma, mn) plus the few plain text commands it needs (version,
// stats, flush_all, lru_crawler metadump). Pure: bytes in, typed replies out,
// and back; no sockets.
//
// Replies carry no request id (meta's O flag aside), so the connection matches
// them to requests in FIFO order and tells the parser which kind of reply comes
// next: `STAT x y` only makes sense as part of a `stats` reply, `key=...` as part
// of a metadump. Each meta request carries an opaque (O) token that the reply
// echoes, so the connection can check the match instead of assuming it.
//
// Checked against memcached 1.6.18:
// - memcached's tokenizer splits a line on spaces only, ends it at LF (dropping
//   one CR before it) and reads it as a C string (it ends at a NUL). Every other
//   byte, control bytes and DEL included, is a key byte: keys go raw unless they
//   hold a space, LF or NUL. A CR inside a raw key is safe because the key is
//   never what ends our line but for `md <key>`, where memcached drops only the
//   CR of the line end. Keys that need it go base64 with the `b` flag; a base64
//   token over 250 characters is refused before the value length is read
//   (CLIENT_ERROR, value NOT swallowed: a desync), so such keys over 186 bytes
//   are refused here (canCarryKey). Only the binary protocol can send them.
// - `ms` with a C token compares even C0, so C is only sent when asked for.
// - metadump lines end in a bare \n, everything else in \r\n; both are accepted.

import type { StoreFields, StoreMode } from '../types';

export const MAX_KEY_LENGTH = 250;
/** memcached's limit on the base64 key token: 250 characters = 186 key bytes. */
const MAX_BASE64_KEY_BYTES = 186;

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/** A key memcached's text tokenizer reads back intact: no space, LF or NUL. */
export function isRawSafeKey(key: Buffer): boolean {
  return key.indexOf(0x20) < 0 && key.indexOf(0x0a) < 0 && key.indexOf(0x00) < 0;
}

/** The key can be sent to memcached: 1..250 bytes, and at most 186 if it needs base64. */
export function canCarryKey(key: Buffer): boolean {
  if (key.length === 0 || key.length > MAX_KEY_LENGTH) return false;
  return isRawSafeKey(key) || key.length <= MAX_BASE64_KEY_BYTES;
}

/**
 * The key token and its flag: ` b` when the key went base64, else ''. Latin-1 keeps
 * bytes >= 0x80 intact. The flag may go anywhere after the key, except in `ms`,
 * where the value length must come first.
 */
function keyParts(key: Buffer): [token: string, flag: string] {
  return isRawSafeKey(key) ? [key.toString('latin1'), ''] : [key.toString('base64'), ' b'];
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/** One request's bytes: a single buffer, or chunks written back to back (large values are not copied). */
export type Encoded = Buffer | Buffer[];

/** Which kind of reply a request gets; the parser needs it to read the next reply. */
export type ReplyKind =
  /** A meta reply: VA (with a value), HD, EN, NS, EX, NF, MN. */
  | 'meta'
  /** One plain line: VERSION x, OK. */
  | 'line'
  /** STAT lines until END. */
  | 'stats'
  /** key=... lines until END. */
  | 'metadump'
  /** A SASL exchange (the binary codec only: the meta protocol has no authentication). */
  | 'auth';

const CRLF = Buffer.from('\r\n');
/** Values up to this size are copied into the header's buffer: one write, one allocation. */
const INLINE_VALUE_MAX = 16 * 1024;

function opaqueFlag(opaque: string | undefined): string {
  return opaque ? ' O' + opaque : '';
}

function int(n: number): string {
  return String(Math.trunc(n));
}

/**
 * `mg`: value, client flags, remaining TTL and CAS; `touch` also sets a new expiry
 * (gat). Flags apply in order: T must come before t for t to report the new TTL.
 */
export function encodeGet(key: Buffer, touch?: number, opaque?: string): Buffer {
  const [k, b] = keyParts(key);
  const t = touch === undefined ? '' : ' T' + int(touch);
  return Buffer.from(`mg ${k}${b}${t} v f t c${opaqueFlag(opaque)}\r\n`, 'latin1');
}

/** `mg` for the CAS and remaining TTL: HD with them, EN when missing (a write's convergence check: no value crosses). */
export function encodeCasOnly(key: Buffer, opaque?: string): Buffer {
  const [k, b] = keyParts(key);
  return Buffer.from(`mg ${k}${b} c t${opaqueFlag(opaque)}\r\n`, 'latin1');
}

/** `mg` with only a new expiry, and the CAS: HD when touched, EN when missing. */
export function encodeTouch(key: Buffer, exptime: number, opaque?: string): Buffer {
  const [k, b] = keyParts(key);
  return Buffer.from(`mg ${k}${b} T${int(exptime)} c${opaqueFlag(opaque)}\r\n`, 'latin1');
}

export type { StoreFields };

const MODE_TOKEN: Record<StoreMode, string> = {
  set: '',
  cas: '',
  add: ' ME',
  replace: ' MR',
  append: ' MA',
  prepend: ' MP',
};

/** `ms`, returning the new CAS (c). */
export function encodeStore(req: StoreFields, opaque?: string): Encoded {
  const cas = req.cas !== 0n || req.mode === 'cas' ? ' C' + req.cas.toString() : '';
  const [k, b] = keyParts(req.key);
  const head =
    `ms ${k} ${req.value.length}${b} F${req.flags >>> 0} T${int(req.exptime)} c` +
    `${cas}${MODE_TOKEN[req.mode]}${opaqueFlag(opaque)}\r\n`;
  if (req.value.length > INLINE_VALUE_MAX) return [Buffer.from(head, 'latin1'), req.value, CRLF];
  const out = Buffer.allocUnsafe(head.length + req.value.length + 2);
  const n = out.write(head, 0, 'latin1');
  req.value.copy(out, n);
  out[n + req.value.length] = 0x0d;
  out[n + req.value.length + 1] = 0x0a;
  return out;
}

/** `md`; a non-zero `cas` makes it conditional (EX on mismatch). */
export function encodeDelete(key: Buffer, cas: bigint, opaque?: string): Buffer {
  const c = cas !== 0n ? ' C' + cas.toString() : '';
  const [k, b] = keyParts(key);
  return Buffer.from(`md ${k}${b}${c}${opaqueFlag(opaque)}\r\n`, 'latin1');
}

/** binary protocol's "do not create" expiry. */
export const NO_CREATE_EXPTIME = 0xffffffff;

/**
 * `ma`, returning the value (v) and CAS (c). With `create` (and an expiry other than
 * 0xffffffff) a missing key is created with `initial`, and `initial` is returned.
 */
export function encodeArith(
  kind: 'incr' | 'decr',
  key: Buffer,
  delta: bigint,
  create?: { initial: bigint; exptime: number },
  opaque?: string,
): Buffer {
  const mode = kind === 'decr' ? ' MD' : '';
  const viv =
    create && create.exptime !== NO_CREATE_EXPTIME ? ` N${int(create.exptime)} J${create.initial.toString()}` : '';
  const [k, b] = keyParts(key);
  return Buffer.from(`ma ${k}${b}${mode} D${delta.toString()} v c${viv}${opaqueFlag(opaque)}\r\n`, 'latin1');
}

/** `mn`: answered MN, with no opaque. */
export function encodeNoop(): Buffer {
  return Buffer.from('mn\r\n');
}

/** Answered `VERSION <v>` (a 'line' reply). */
export function encodeVersion(): Buffer {
  return Buffer.from('version\r\n');
}

/** Answered with STAT lines until END (a 'stats' reply). */
export function encodeStats(group?: string): Buffer {
  return Buffer.from(group ? `stats ${group}\r\n` : 'stats\r\n', 'latin1');
}

/** Answered `OK` (a 'line' reply). */
export function encodeFlushAll(delay: number): Buffer {
  return Buffer.from(delay === 0 ? 'flush_all\r\n' : `flush_all ${int(delay)}\r\n`, 'latin1');
}

/**
 * Answered with key=... lines until END (a 'metadump' reply). memcached refuses it
 * ("ERROR cannot pipeline...") when other bytes follow it in its read buffer, and
 * writes the dump from another thread: send it alone, on its own connection.
 */
export function encodeMetadump(): Buffer {
  return Buffer.from('lru_crawler metadump all\r\n');
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

export type MetaCode = 'VA' | 'HD' | 'EN' | 'NS' | 'EX' | 'NF' | 'MN';

/** The return flags of a meta reply, parsed. Unknown flags are ignored. */
export interface ReturnFlags {
  /** f: client flags. */
  flags?: number;
  /** t: remaining TTL in seconds, -1 = never expires. */
  ttl?: number;
  /** c: CAS. */
  cas?: bigint;
  /** k: the key, decoded from base64 when b is set. */
  key?: Buffer;
  /** s: item size. */
  size?: number;
  /** O: the opaque token the request carried. */
  opaque?: string;
  /** l: seconds since last access. */
  lastAccess?: number;
  /** h: whether the item was fetched before. */
  fetched?: boolean;
  /** W, X, Z: stale-while-revalidate markers. */
  win?: boolean;
  stale?: boolean;
  alreadyWon?: boolean;
}

export interface MetaReply {
  type: 'meta';
  code: MetaCode;
  flags: ReturnFlags;
  /** VA only, unless the value was over the parser's limit (then `oversize`). */
  value?: Buffer;
  /** VA only: the value was this many bytes, over the limit, and was skipped unread. */
  oversize?: number;
}

export interface ErrorReply {
  type: 'error';
  code: 'ERROR' | 'CLIENT_ERROR' | 'SERVER_ERROR';
  message: string;
}

/** A single plain line: `VERSION 1.6.18`, `OK`, `BUSY ...`. */
export interface LineReply {
  type: 'line';
  text: string;
}

/** One `STAT <name> <value>` line of a stats reply. */
export interface StatLine {
  type: 'stat';
  name: string;
  value: string;
}

/** One line of a metadump: the raw key bytes and what memcached reports about the item. */
export interface DumpLine {
  type: 'dump';
  key: Buffer;
  /** Absolute expiry (Unix seconds), -1 = never. */
  exp: number;
  cas: bigint;
  size: number;
}

/** The END closing a stats reply or a metadump. */
export interface EndReply {
  type: 'end';
}

/** A reply that completes its request. */
export type FinalReply = MetaReply | ErrorReply | LineReply | EndReply;
/** A line of a multi-line reply; the request continues until its END (or an error). */
export type PartReply = StatLine | DumpLine;
export type BackendReply = FinalReply | PartReply;

/**
 * `more`: not enough bytes yet. `fatal`: the stream cannot be read any further
 * (malformed or over a bound); the connection must be dropped.
 */
export type ParseResult =
  | { kind: 'reply'; reply: BackendReply }
  | { kind: 'more' }
  | { kind: 'fatal'; reason: string };

export interface ParserLimits {
  /** Longest reply line, without its value. A longer one is fatal. */
  maxLineLength: number;
  /** Largest value buffered; a larger one is skipped and reported as `oversize`. */
  maxValueLength: number;
}

export const DEFAULT_PARSER_LIMITS: Readonly<ParserLimits> = Object.freeze({
  // A metadump line of a 250-byte key fully percent-encoded is ~850 bytes.
  maxLineLength: 8 * 1024,
  maxValueLength: 1024 * 1024,
});

const MORE: ParseResult = Object.freeze({ kind: 'more' });
const MAX_VALUE_HEADER = 0x7fffffff;

function fatal(reason: string): ParseResult {
  return { kind: 'fatal', reason };
}

/** A value still to read after its VA line: `skip` values are discarded, not buffered. */
interface PendingValue {
  flags: ReturnFlags;
  size: number;
  skip: boolean;
  /** Bytes (value + CRLF) still to discard, when skipping. */
  left: number;
}

/**
 * Resumable reply parser. push() bytes as they arrive, then call next(kind) with
 * the kind of reply the head request expects until it says `more`. It keeps an
 * offset into one buffer, never throws, and after a `fatal` keeps answering it.
 */
export class ReplyParser {
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  private end = 0;
  /** The buffer is ours to write into (no slice of it was handed out). */
  private owned = false;
  private pending: PendingValue | null = null;
  private failed: ParseResult | null = null;
  private readonly limits: ParserLimits;

  constructor(limits: Partial<ParserLimits> = {}) {
    this.limits = { ...DEFAULT_PARSER_LIMITS, ...limits };
  }

  /** Bytes received and not yet parsed. */
  get buffered(): number {
    return this.end - this.off;
  }

  /** True between a VA line and the end of its value. */
  get inValue(): boolean {
    return this.pending !== null;
  }

  push(chunk: Buffer): void {
    if (this.failed) return;
    const skipping = this.pending?.skip ? this.pending : null;
    if (skipping) {
      // An oversize value is dropped as it arrives, never buffered.
      const queued = Math.min(this.end - this.off, skipping.left);
      this.off += queued;
      skipping.left -= queued;
      const n = Math.min(chunk.length, skipping.left);
      skipping.left -= n;
      chunk = chunk.subarray(n);
    }
    if (chunk.length === 0) return;
    const rest = this.end - this.off;
    if (rest === 0) {
      this.buf = chunk;
      this.off = 0;
      this.end = chunk.length;
      this.owned = false;
      return;
    }
    if (this.owned && this.buf.length - this.end >= chunk.length) {
      chunk.copy(this.buf, this.end);
      this.end += chunk.length;
      return;
    }
    // A value being read will need at least size + 2 bytes: allocate for it at once.
    const want = Math.max(rest + chunk.length, this.pending && !this.pending.skip ? this.pending.size + 2 : 0);
    const next = Buffer.allocUnsafe(Math.max(want, Math.min(want * 2, want + 64 * 1024)));
    this.buf.copy(next, 0, this.off, this.end);
    chunk.copy(next, rest);
    this.buf = next;
    this.off = 0;
    this.end = rest + chunk.length;
    this.owned = true;
  }

  next(expect: ReplyKind): ParseResult {
    if (this.failed) return this.failed;
    const r = this.pending ? this.readValue(this.pending) : this.readLine(expect);
    if (r.kind === 'fatal') this.failed = r;
    return r;
  }

  private readValue(p: PendingValue): ParseResult {
    const avail = this.end - this.off;
    if (p.skip) {
      const n = Math.min(avail, p.left);
      this.off += n;
      p.left -= n;
      if (p.left > 0) return MORE;
      this.pending = null;
      return { kind: 'reply', reply: { type: 'meta', code: 'VA', flags: p.flags, oversize: p.size } };
    }
    if (avail < p.size + 2) return MORE;
    const at = this.off + p.size;
    if (this.buf[at] !== 0x0d || this.buf[at + 1] !== 0x0a) return fatal('value not followed by CRLF');
    const value = this.buf.subarray(this.off, at);
    // The value shares this buffer: never write into it again.
    this.owned = false;
    this.off = at + 2;
    this.pending = null;
    return { kind: 'reply', reply: { type: 'meta', code: 'VA', flags: p.flags, value } };
  }

  private readLine(expect: ReplyKind): ParseResult {
    const b = this.buf;
    // Search in place when the buffer ends where the data does (a socket chunk), else in a view.
    const whole = this.end === b.length;
    let nl = whole ? b.indexOf(0x0a, this.off) : b.subarray(this.off, this.end).indexOf(0x0a);
    if (nl !== -1 && whole) nl -= this.off;
    if (nl === -1) {
      return this.end - this.off > this.limits.maxLineLength ? fatal('reply line too long') : MORE;
    }
    if (nl > this.limits.maxLineLength) return fatal('reply line too long');
    const s = this.off;
    let e = s + nl;
    if (nl > 0 && b[e - 1] === 0x0d) e--;
    this.off += nl + 1;

    // Meta replies, nearly every line, are read from the bytes; the rest as text.
    if (expect === 'meta' && !isErrorLine(b, s, e)) return this.metaLine(b, s, e);
    const line = b.toString('latin1', s, e);
    const err = errorReply(line);
    if (err) return { kind: 'reply', reply: err };
    switch (expect) {
      case 'meta':
        return unexpected(line);
      case 'line':
        return { kind: 'reply', reply: { type: 'line', text: line } };
      case 'stats':
        return statLine(line);
      case 'metadump':
        return dumpLine(b, s, e);
      case 'auth':
        return unexpected(line);
    }
  }

  /** `<code> [<size>] <flags>*` in b[s..e): e.g. `VA 5 f0 t-1 c42 Oa7`, `HD c43 Oa8`, `EN Oa9`. */
  private metaLine(b: Buffer, s: number, e: number): ParseResult {
    const code = metaCode(b, s, e);
    if (code === null) return unexpected(b.toString('latin1', s, e));
    let at = s + 2;
    if (code === 'VA') {
      while (at < e && b[at] === SPACE) at++;
      const sizeEnd = tokenEnd(b, at, e);
      const size = uintAt(b, at, sizeEnd, MAX_VALUE_HEADER);
      if (size < 0) return fatal('bad VA length');
      const flags = parseReturnFlags(b, sizeEnd, e);
      if (typeof flags === 'string') return fatal(flags);
      const skip = size > this.limits.maxValueLength;
      this.pending = { flags, size, skip, left: size + 2 };
      return this.readValue(this.pending);
    }
    const flags = parseReturnFlags(b, at, e);
    if (typeof flags === 'string') return fatal(flags);
    return { kind: 'reply', reply: { type: 'meta', code, flags } };
  }
}

const SPACE = 0x20;
const EQUALS = 0x3d;

/** A meta request got a reply that is no meta reply: the stream is out of step. */
function unexpected(line: string): ParseResult {
  return fatal(`unexpected reply ${JSON.stringify(line.slice(0, 40))}`);
}

/** Where the first `byte` in b[at..e) is, or e. */
function find(b: Buffer, byte: number, at: number, e: number): number {
  while (at < e && b[at] !== byte) at++;
  return at;
}

/** Where the token starting at `at` ends: the next space, or e. */
function tokenEnd(b: Buffer, at: number, e: number): number {
  return find(b, SPACE, at, e);
}

/** ERROR, CLIENT_ERROR or SERVER_ERROR; no meta code starts with C, S or ER. */
function isErrorLine(b: Buffer, s: number, e: number): boolean {
  if (e - s < 2) return false;
  const c = b[s];
  return c === 0x43 || c === 0x53 || (c === 0x45 && b[s + 1] === 0x52);
}

/** The two-letter code of a meta reply line, or null when it is not one. */
function metaCode(b: Buffer, s: number, e: number): MetaCode | null {
  if (e - s < 2 || (e - s > 2 && b[s + 2] !== SPACE)) return null;
  const code = (b[s] << 8) | b[s + 1];
  switch (code) {
    case 0x5641: return 'VA';
    case 0x4844: return 'HD';
    case 0x454e: return 'EN';
    case 0x4e53: return 'NS';
    case 0x4558: return 'EX';
    case 0x4e46: return 'NF';
    case 0x4d4e: return 'MN';
    default: return null;
  }
}

function errorReply(line: string): ErrorReply | null {
  if (line === 'ERROR' || line.startsWith('ERROR ')) return { type: 'error', code: 'ERROR', message: line.slice(6) };
  if (line.startsWith('CLIENT_ERROR')) return { type: 'error', code: 'CLIENT_ERROR', message: line.slice(13) };
  if (line.startsWith('SERVER_ERROR')) return { type: 'error', code: 'SERVER_ERROR', message: line.slice(13) };
  return null;
}

function statLine(line: string): ParseResult {
  if (line === 'END') return { kind: 'reply', reply: { type: 'end' } };
  if (!line.startsWith('STAT ')) return fatal('expected STAT or END');
  const sp = line.indexOf(' ', 5);
  if (sp === -1) return fatal('STAT line without a value');
  return { kind: 'reply', reply: { type: 'stat', name: line.slice(5, sp), value: line.slice(sp + 1) } };
}

/** `key=a%20b exp=-1 la=1795321209 cas=18 fetch=yes cls=1 size=64`; other lines (BUSY ...) end the dump. */
function dumpLine(b: Buffer, s: number, e: number): ParseResult {
  const line = b.toString('latin1', s, e);
  if (line === 'END') return { kind: 'reply', reply: { type: 'end' } };
  if (!line.startsWith('key=')) return { kind: 'reply', reply: { type: 'line', text: line } };
  const reply: DumpLine = { type: 'dump', key: Buffer.alloc(0), exp: -1, cas: 0n, size: 0 };
  for (let at = s; at < e; at++) {
    const end = tokenEnd(b, at, e);
    const eq = find(b, EQUALS, at, end);
    if (eq === end) {
      at = end;
      continue;
    }
    const name = b.toString('latin1', at, eq);
    const v = eq + 1;
    if (name === 'key') {
      const key = uriDecode(b, v, end);
      if (!key) return fatal('bad metadump key');
      reply.key = key;
    } else if (name === 'exp') {
      const n = int32At(b, v, end);
      if (n === null) return fatal('bad metadump exp');
      reply.exp = n;
    } else if (name === 'cas') {
      const c = u64At(b, v, end);
      if (c === null) return fatal('bad metadump cas');
      reply.cas = c;
    } else if (name === 'size') {
      const n = uintAt(b, v, end, MAX_VALUE_HEADER);
      if (n < 0) return fatal('bad metadump size');
      reply.size = n;
    }
    at = end;
  }
  return reply.key.length === 0 ? fatal('empty metadump key') : { kind: 'reply', reply };
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** memcached's uriencode of b[s..e), undone: %XX is a byte, anything else stands for itself. */
function uriDecode(b: Buffer, s: number, e: number): Buffer | null {
  const out = Buffer.allocUnsafe(e - s);
  let n = 0;
  for (let i = s; i < e; i++) {
    const c = b[i];
    if (c !== 0x25) {
      out[n++] = c;
      continue;
    }
    const hi = i + 1 < e ? hexValue(b[i + 1]) : -1;
    const lo = i + 2 < e ? hexValue(b[i + 2]) : -1;
    if (hi < 0 || lo < 0) return null;
    out[n++] = (hi << 4) | lo;
    i += 2;
  }
  return out.subarray(0, n);
}

/** The decimal in b[s..e) if it is one and in 0..max (max < 2^53), else -1. */
function uintAt(b: Buffer, s: number, e: number, max: number): number {
  if (e <= s || e - s > 10) return -1;
  let n = 0;
  for (let i = s; i < e; i++) {
    const d = b[i] - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n <= max ? n : -1;
}

/** A signed decimal that fits 32 bits (TTLs, expiry times), or null. */
function int32At(b: Buffer, s: number, e: number): number | null {
  const neg = e > s && b[s] === 0x2d;
  const n = uintAt(b, neg ? s + 1 : s, e, neg ? 0x80000000 : 0xffffffff);
  if (n < 0) return null;
  return neg ? -n : n;
}

const U64_MAX = (1n << 64n) - 1n;

/** The unsigned 64-bit decimal in b[s..e), or null. */
function u64At(b: Buffer, s: number, e: number): bigint | null {
  if (e <= s || e - s > 20) return null;
  let n = 0;
  for (let i = s; i < e; i++) {
    const d = b[i] - 0x30;
    if (d < 0 || d > 9) return null;
    n = n * 10 + d;
  }
  // Up to 15 digits a double is exact; longer ones go through BigInt's own parser.
  if (e - s <= 15) return BigInt(n);
  const big = BigInt(b.toString('latin1', s, e));
  return big <= U64_MAX ? big : null;
}

/** An unsigned 64-bit decimal (the whole buffer), or null. */
export function parseU64(bytes: Buffer): bigint | null {
  return u64At(bytes, 0, bytes.length);
}

/** The meta return flags in b[s..e), space-separated; a string is the reason they are malformed. */
function parseReturnFlags(b: Buffer, s: number, e: number): ReturnFlags | string {
  const flags: ReturnFlags = {};
  let keyAt = -1;
  let keyEnd = -1;
  let base64 = false;
  for (let at = s; at < e; at++) {
    if (b[at] === SPACE) continue;
    const end = tokenEnd(b, at, e);
    const v = at + 1;
    switch (b[at]) {
      case 0x66: { // f
        const n = uintAt(b, v, end, 0xffffffff);
        if (n < 0) return 'bad f flag';
        flags.flags = n;
        break;
      }
      case 0x74: { // t
        const n = int32At(b, v, end);
        if (n === null) return 'bad t flag';
        flags.ttl = n;
        break;
      }
      case 0x63: { // c
        const c = u64At(b, v, end);
        if (c === null) return 'bad c flag';
        flags.cas = c;
        break;
      }
      case 0x73: { // s
        const n = uintAt(b, v, end, MAX_VALUE_HEADER);
        if (n < 0) return 'bad s flag';
        flags.size = n;
        break;
      }
      case 0x6c: { // l
        const n = uintAt(b, v, end, 0xffffffff);
        if (n < 0) return 'bad l flag';
        flags.lastAccess = n;
        break;
      }
      case 0x68: // h
        flags.fetched = end - v === 1 && b[v] === 0x31;
        break;
      case 0x6b: // k
        keyAt = v;
        keyEnd = end;
        break;
      case 0x62: // b
        base64 = true;
        break;
      case 0x4f: // O
        flags.opaque = b.toString('latin1', v, end);
        break;
      case 0x57: // W
        flags.win = true;
        break;
      case 0x58: // X
        flags.stale = true;
        break;
      case 0x5a: // Z
        flags.alreadyWon = true;
        break;
    }
    at = end;
  }
  if (keyAt >= 0) flags.key = Buffer.from(b.toString('latin1', keyAt, keyEnd), base64 ? 'base64' : 'latin1');
  return flags;
}
