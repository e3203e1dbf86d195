// The codec replicached speaks to a memcached backend that requires SASL
// (`memcached -S`). Such a memcached refuses the ASCII protocol outright (it
// closes the connection without a word), so meta commands cannot be used: this
// codec speaks the binary protocol instead, and turns each binary response into
// the same reply objects the meta codec produces (meta.ts), so the Backend and
// its outcome mapping (src/backends/outcomes.ts) work unchanged. Pure: bytes in,
// typed replies out, and back; no sockets.
//
//   request                 binary opcode       success reply as the meta codec would give it
//   get (gat with touch)    GET / GAT           VA value, f flags, c CAS (no t: see below)
//   CAS-only read           GET                 VA (the value crosses; the CAS is the header's)
//   touch                   TOUCH               HD c CAS
//   set/add/replace/cas     SET/ADD/REPLACE     HD c CAS   (cas: SET with the CAS in the header)
//   append/prepend          APPEND/PREPEND      HD c CAS
//   delete                  DELETE (CAS)        HD
//   incr/decr               INCREMENT/DECREMENT VA <decimal value> c CAS
//   version, flush_all      VERSION, FLUSH      line `VERSION x`, `OK`
//   stats [group]           STAT (group as key) stat lines, then END (the empty STAT)
//   SASL PLAIN              SASL_AUTH           line `Authenticated`
//
// Failures, checked against memcached 1.6.18 -S, map to the meta codes by the
// response's opcode: EEXISTS is NS for ADD (the key exists) and EX otherwise (a
// CAS mismatch); ENOENT is NS for REPLACE and NF otherwise (a CAS on a missing
// key; EN for GET, GAT and TOUCH); NOT_STORED is NS; E2BIG is memcached's
// "SERVER_ERROR object too large for cache"; DELTA_BADVAL its CLIENT_ERROR for a
// non-numeric incr; UNKNOWN_COMMAND is ERROR (we never send one: the stream is
// out of step); any other status is a SERVER_ERROR with memcached's text.
//
// What the binary protocol cannot do:
// - report an item's remaining TTL: reads carry no `t`, and the router copies such
//   an item only with an expiry it knows from the write that set it (see
//   src/routing/replicated-router.ts, copyExptime);
// - list keys: there is no `lru_crawler metadump` (see the Backend and resync).
// Expiry times: the binary field is unsigned 32 bits. A negative exptime (the
// text protocol's "already expired") is sent as 2592001, an absolute time in
// 1970 that memcached also reads as already expired; larger ones are capped.

import {
  ARITH_DO_NOT_CREATE as NO_CREATE,
  HEADER_LENGTH as HEADER,
  Opcode as Op,
  REQUEST_MAGIC,
  RESPONSE_MAGIC,
  Status as St,
} from '../binary/opcodes';
import type { StoreFields, StoreMode } from '../types';
import {
  DEFAULT_PARSER_LIMITS,
  MAX_KEY_LENGTH,
  type BackendReply,
  type Encoded,
  type MetaCode,
  type ParseResult,
  type ParserLimits,
  type ReplyKind,
  type ReturnFlags,
} from './meta';

/** memcached reads an expiry over 30 days as an absolute Unix time; this one is in 1970: already expired. */
const EXPIRED = 60 * 60 * 24 * 30 + 1;
const U32_MAX = 0xffffffff;
/** A frame's extras and key are small: a larger header is a broken stream, not a reply. */
const MAX_EXTRAS_AND_KEY = 1024;

// ---------------------------------------------------------------------------
// Keys and fields

/** Any key of 1..250 bytes: the binary protocol carries every byte as it is. */
export function canCarryKey(key: Buffer): boolean {
  return key.length > 0 && key.length <= MAX_KEY_LENGTH;
}

/** The expiry as the binary field holds it (see the head comment). */
export function wireExptime(exptime: number): number {
  if (exptime < 0) return EXPIRED;
  return Math.min(Math.trunc(exptime), U32_MAX);
}

/** The opaque token the connection gives a request (base36), as the header's 32 bits. */
function wireOpaque(token: string): number {
  return token === '' ? 0 : parseInt(token, 36) >>> 0;
}

// ---------------------------------------------------------------------------
// Requests

function frame(opcode: number, opaque: string, extras: Buffer | null, key: Buffer | null, value: Buffer | null, cas = 0n): Buffer {
  const e = extras?.length ?? 0;
  const k = key?.length ?? 0;
  const v = value?.length ?? 0;
  const out = Buffer.allocUnsafe(HEADER + e + k + v);
  out[0] = REQUEST_MAGIC;
  out[1] = opcode;
  out.writeUInt16BE(k, 2);
  out[4] = e;
  out[5] = 0; // data type
  out.writeUInt16BE(0, 6); // vbucket
  out.writeUInt32BE(e + k + v, 8);
  out.writeUInt32BE(wireOpaque(opaque), 12);
  out.writeBigUInt64BE(BigInt.asUintN(64, cas), 16);
  let at = HEADER;
  if (extras) at += extras.copy(out, at);
  if (key) at += key.copy(out, at);
  if (value) value.copy(out, at);
  return out;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** GET, or GAT with `touch` as the new expiry. */
export function encodeGet(key: Buffer, touch: number | undefined, opaque: string): Buffer {
  return touch === undefined ? frame(Op.Get, opaque, null, key, null) : frame(Op.Gat, opaque, u32(wireExptime(touch)), key, null);
}

export function encodeTouch(key: Buffer, exptime: number, opaque: string): Buffer {
  return frame(Op.Touch, opaque, u32(wireExptime(exptime)), key, null);
}

const STORE_OPCODE: Record<StoreMode, number> = {
  set: Op.Set,
  cas: Op.Set,
  add: Op.Add,
  replace: Op.Replace,
  append: Op.Append,
  prepend: Op.Prepend,
};

/** Values up to this size are copied into the header's buffer: one write, one allocation. */
const INLINE_VALUE_MAX = 16 * 1024;

/**
 * SET/ADD/REPLACE (flags and expiry as extras) or APPEND/PREPEND (none); a CAS in
 * the header makes any of them conditional, as `ms ... C<cas>` does. Mode 'cas'
 * always compares, even a CAS of 0 (memcached then answers ENOENT or EEXISTS).
 */
export function encodeStore(req: StoreFields, opaque: string): Encoded {
  const opcode = STORE_OPCODE[req.mode];
  const hasExtras = opcode === Op.Set || opcode === Op.Add || opcode === Op.Replace;
  let extras: Buffer | null = null;
  if (hasExtras) {
    extras = Buffer.allocUnsafe(8);
    extras.writeUInt32BE(req.flags >>> 0, 0);
    extras.writeUInt32BE(wireExptime(req.exptime), 4);
  }
  // memcached's binary SET with CAS 0 is a plain set: a 'cas' of 0 must still fail.
  const cas = req.mode === 'cas' && req.cas === 0n ? CAS_NEVER_MATCHES : req.cas;
  if (req.value.length <= INLINE_VALUE_MAX) return frame(opcode, opaque, extras, req.key, req.value, cas);
  const head = frame(opcode, opaque, extras, req.key, null, cas);
  head.writeUInt32BE(head.length - HEADER + req.value.length, 8);
  return [head, req.value];
}

/**
 * `ms ... C0` compares with 0 and fails; binary SET treats a CAS of 0 as "no CAS". memcached
 * never hands out this CAS (its counter would have to reach 2^64 - 1), so it never matches.
 */
const CAS_NEVER_MATCHES = (1n << 64n) - 1n;

/** DELETE; a non-zero `cas` makes it conditional (EEXISTS on mismatch). */
export function encodeDelete(key: Buffer, cas: bigint, opaque: string): Buffer {
  return frame(Op.Delete, opaque, null, key, null, cas);
}

/** INCREMENT/DECREMENT; with `create` (and an expiry other than 0xffffffff) a missing key is created with `initial`. */
export function encodeArith(
  kind: 'incr' | 'decr',
  key: Buffer,
  delta: bigint,
  create: { initial: bigint; exptime: number } | undefined,
  opaque: string,
): Buffer {
  const extras = Buffer.allocUnsafe(20);
  extras.writeBigUInt64BE(BigInt.asUintN(64, delta), 0);
  const creates = create !== undefined && create.exptime !== NO_CREATE;
  extras.writeBigUInt64BE(creates ? BigInt.asUintN(64, create.initial) : 0n, 8);
  extras.writeUInt32BE(creates ? wireExptime(create.exptime) : NO_CREATE, 16);
  return frame(kind === 'incr' ? Op.Increment : Op.Decrement, opaque, extras, key, null);
}

/** Answered `VERSION <v>` (a 'line' reply). */
export function encodeVersion(opaque: string): Buffer {
  return frame(Op.Version, opaque, null, null, null);
}

/** Answered with stat lines until END (a 'stats' reply). */
export function encodeStats(group: string | undefined, opaque: string): Buffer {
  return frame(Op.Stat, opaque, null, group ? Buffer.from(group, 'latin1') : null, null);
}

/** Answered `OK` (a 'line' reply). */
export function encodeFlushAll(delay: number, opaque: string): Buffer {
  return frame(Op.Flush, opaque, delay === 0 ? null : u32(wireExptime(delay)), null, null);
}

/** SASL PLAIN: authzid (empty), username and password, NUL-separated (RFC 4616). Answered 'Authenticated' (an 'auth' reply). */
export function encodeSaslPlain(username: string, password: string, opaque: string): Buffer {
  const payload = Buffer.concat([Buffer.from([0]), Buffer.from(username, 'utf8'), Buffer.from([0]), Buffer.from(password, 'utf8')]);
  return frame(Op.SaslAuth, opaque, null, Buffer.from('PLAIN', 'latin1'), payload);
}

// ---------------------------------------------------------------------------
// Replies

const MORE: ParseResult = Object.freeze({ kind: 'more' });

function fatal(reason: string): ParseResult {
  return { kind: 'fatal', reason };
}

/** Which opcodes may answer a request of each kind. */
function expected(kind: ReplyKind, opcode: number): boolean {
  switch (kind) {
    case 'meta':
      return opcode <= Op.Decrement || opcode === Op.Append || opcode === Op.Prepend || opcode === Op.Touch || opcode === Op.Gat;
    case 'line':
      return opcode === Op.Version || opcode === Op.Flush;
    case 'stats':
      return opcode === Op.Stat;
    case 'auth':
      return opcode === Op.SaslAuth;
    case 'metadump':
      return false;
  }
}

interface Frame {
  opcode: number;
  status: number;
  opaque: string;
  cas: bigint;
  extras: Buffer;
  key: Buffer;
  value: Buffer;
}

/**
 * Resumable response parser: push() bytes as they arrive, then next(kind, opaque)
 * with the kind and opaque token of the oldest request in flight, until it says
 * `more`. A response with another opaque, an opcode that cannot answer that kind
 * of request, a bad magic or an impossible header is fatal. A value over the limit
 * is skipped as it arrives and reported as `oversize`. Never throws; after a
 * `fatal` it keeps answering it.
 */
export class BinaryReplyParser {
  private readonly chunks: Buffer[] = [];
  private queued = 0;
  /** Body bytes of an oversize value still to drop. */
  private skipLeft = 0;
  private skipped: ParseResult | null = null;
  private failed: ParseResult | null = null;
  private readonly limits: ParserLimits;

  constructor(limits: Partial<ParserLimits> = {}) {
    this.limits = { ...DEFAULT_PARSER_LIMITS, ...limits };
  }

  /** Bytes received and not yet parsed. */
  get buffered(): number {
    return this.queued;
  }

  push(chunk: Buffer): void {
    if (this.failed || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.queued += chunk.length;
  }

  next(kind: ReplyKind, opaque: string): ParseResult {
    if (this.failed) return this.failed;
    const r = this.read(kind, opaque);
    if (r.kind === 'fatal') {
      this.failed = r;
      this.chunks.length = 0;
      this.queued = 0;
    }
    return r;
  }

  private read(kind: ReplyKind, opaque: string): ParseResult {
    if (this.skipped !== null) return this.skip();
    if (this.queued < HEADER) return MORE;
    const h = this.peek(HEADER);
    if (h[0] !== RESPONSE_MAGIC) return fatal(`bad response magic 0x${h[0].toString(16)}`);
    const opcode = h[1];
    const keylen = h.readUInt16BE(2);
    const extlen = h[4];
    const status = h.readUInt16BE(6);
    const bodylen = h.readUInt32BE(8);
    const token = h.readUInt32BE(12).toString(36);
    const cas = h.readBigUInt64BE(16);
    if (extlen + keylen > bodylen || extlen + keylen > MAX_EXTRAS_AND_KEY) return fatal('bad response header');
    if (token !== opaque) return fatal(`response opaque ${token}, expected ${opaque}`);
    if (!expected(kind, opcode)) return fatal(`response opcode 0x${opcode.toString(16)} to a ${kind} request`);
    const vlen = bodylen - extlen - keylen;
    if (vlen > this.limits.maxValueLength) {
      if (this.queued < HEADER + extlen + keylen) return MORE;
      this.drop(HEADER);
      const extras = this.take(extlen);
      this.drop(keylen);
      this.skipLeft = vlen;
      this.skipped = { kind: 'reply', reply: { type: 'meta', code: 'VA', flags: this.itemFlags(extras, cas), oversize: vlen } };
      return this.skip();
    }
    if (this.queued < HEADER + bodylen) return MORE;
    this.drop(HEADER);
    const f: Frame = { opcode, status, opaque: token, cas, extras: this.take(extlen), key: this.take(keylen), value: this.take(vlen) };
    return this.reply(f);
  }

  private skip(): ParseResult {
    const n = Math.min(this.queued, this.skipLeft);
    this.drop(n);
    this.skipLeft -= n;
    if (this.skipLeft > 0) return MORE;
    const r = this.skipped ?? MORE;
    this.skipped = null;
    return r;
  }

  private itemFlags(extras: Buffer, cas: bigint): ReturnFlags {
    return { flags: extras.length >= 4 ? extras.readUInt32BE(0) : 0, cas };
  }

  /** The reply the meta codec would have given for this response (see the head comment). */
  private reply(f: Frame): ParseResult {
    const ok = (reply: BackendReply): ParseResult => ({ kind: 'reply', reply });
    const meta = (code: MetaCode, flags: ReturnFlags = {}): ParseResult => ok({ type: 'meta', code, flags: { ...flags, opaque: f.opaque } });
    const text = f.value.toString('latin1');
    if (f.status === St.UnknownCommand) return ok({ type: 'error', code: 'ERROR', message: text });
    switch (f.opcode) {
      case Op.Get:
      case Op.Gat:
        if (f.status === St.Success) {
          return ok({ type: 'meta', code: 'VA', flags: { ...this.itemFlags(f.extras, f.cas), opaque: f.opaque }, value: f.value });
        }
        if (f.status === St.KeyNotFound) return meta('EN');
        break;
      case Op.Touch:
        if (f.status === St.Success) return meta('HD', { cas: f.cas });
        if (f.status === St.KeyNotFound) return meta('EN');
        break;
      case Op.Set:
      case Op.Add:
      case Op.Replace:
      case Op.Append:
      case Op.Prepend:
        switch (f.status) {
          case St.Success:
            return meta('HD', { cas: f.cas });
          case St.KeyExists:
            return meta(f.opcode === Op.Add ? 'NS' : 'EX');
          case St.KeyNotFound:
            return meta(f.opcode === Op.Replace ? 'NS' : 'NF');
          case St.NotStored:
            return meta('NS');
          case St.TooLarge:
            return ok({ type: 'error', code: 'SERVER_ERROR', message: 'object too large for cache' });
        }
        break;
      case Op.Delete:
        if (f.status === St.Success) return meta('HD');
        if (f.status === St.KeyNotFound) return meta('NF');
        if (f.status === St.KeyExists) return meta('EX');
        break;
      case Op.Increment:
      case Op.Decrement:
        if (f.status === St.Success) {
          if (f.value.length !== 8) return fatal('incr/decr response without an 8-byte value');
          const value = Buffer.from(f.value.readBigUInt64BE(0).toString(), 'latin1');
          return ok({ type: 'meta', code: 'VA', flags: { cas: f.cas, opaque: f.opaque }, value });
        }
        if (f.status === St.KeyNotFound) return meta('NF');
        if (f.status === St.NonNumeric) return ok({ type: 'error', code: 'CLIENT_ERROR', message: 'cannot increment or decrement non-numeric value' });
        break;
      case Op.Version:
        if (f.status === St.Success) return ok({ type: 'line', text: `VERSION ${text}` });
        break;
      case Op.Flush:
        if (f.status === St.Success) return ok({ type: 'line', text: 'OK' });
        break;
      case Op.Stat:
        if (f.status === St.Success) {
          if (f.key.length === 0) return ok({ type: 'end' });
          return ok({ type: 'stat', name: f.key.toString('latin1'), value: text });
        }
        break;
      case Op.SaslAuth:
        if (f.status === St.Success) return ok({ type: 'line', text });
        break;
    }
    return ok({ type: 'error', code: 'SERVER_ERROR', message: text || `status 0x${f.status.toString(16)}` });
  }

  /** The first n (<= queued) bytes, contiguous, without consuming them. */
  private peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first.length >= n) return first;
    return Buffer.concat(this.chunks, this.queued).subarray(0, n);
  }

  /** Consumes n (<= queued) bytes: a view of a socket chunk (never reused), or a copy when they span chunks. */
  private take(n: number): Buffer {
    if (n === 0) return EMPTY;
    const first = this.chunks[0];
    if (first.length >= n) {
      const out = first.subarray(0, n);
      this.drop(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let done = 0;
    while (done < n) {
      const c = this.chunks[0];
      const m = Math.min(n - done, c.length);
      c.copy(out, done, 0, m);
      done += m;
      this.drop(m);
    }
    return out;
  }

  private drop(n: number): void {
    this.queued -= n;
    while (n > 0) {
      const c = this.chunks[0];
      if (n < c.length) {
        this.chunks[0] = c.subarray(n);
        return;
      }
      n -= c.length;
      this.chunks.shift();
    }
  }
}

const EMPTY = Buffer.alloc(0);
