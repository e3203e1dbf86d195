// Binary protocol replies, byte for byte as memcached 1.6.18 writes them
// (proto_bin.c): magic 0x81, the request's opcode and opaque echoed, datatype 0.
// Errors carry memcached's text as the body and a zero CAS.
//
// Helpers map protocol-neutral outcomes to memcached's statuses and return the
// reply memcached would send. Quiet requests: memcached sends nothing on success
// (GETQ/GETKQ/GATQ/GATKQ: nothing on a miss); the session decides, not these helpers.
//
// 'unavailable' (no replica could do a write) has no memcached equivalent; it is
// answered 0x0086 ETMPFAIL, "Temporary failure" (protocol_binary.h's status for a
// transient server-side failure; memcached itself never sends it, so the text is ours).
// libmemcached maps it to MEMCACHED_PROTOCOL_ERROR and reconnects; php-memcached
// reports a failed write. A GET that is unavailable must close the connection instead.

import type { ArithOutcome, DeleteOutcome, FlushOutcome, GetOutcome, Item, StoreOutcome, TouchOutcome } from '../types';
import { HEADER_LENGTH, RESPONSE_MAGIC, Status } from './opcodes';
import type { BinaryRequestHead, BinaryRequestOf } from './parser';

export interface BinaryResponse {
  opcode: number;
  opaque: number;
  status: number;
  cas?: bigint;
  extras?: Buffer;
  key?: Buffer;
  value?: Buffer;
}

const EMPTY = Buffer.alloc(0);

/** memcached's write_bin_error() texts, plus ours for the statuses it never sends. */
const ERROR_TEXT: ReadonlyMap<number, Buffer> = new Map(
  (
    [
      [Status.KeyNotFound, 'Not found'],
      [Status.KeyExists, 'Data exists for key.'],
      [Status.TooLarge, 'Too large.'],
      [Status.InvalidArguments, 'Invalid arguments'],
      [Status.NotStored, 'Not stored.'],
      [Status.NonNumeric, 'Non-numeric server-side value for incr or decr'],
      [Status.AuthError, 'Auth failure.'],
      [Status.UnknownCommand, 'Unknown command'],
      [Status.OutOfMemory, 'Out of memory'],
      [Status.NotSupported, 'Not supported.'],
      [Status.TemporaryFailure, 'Temporary failure'],
    ] as const
  ).map(([status, text]) => [status as number, Buffer.from(text, 'latin1')]),
);

export function encodeResponse(r: BinaryResponse): Buffer {
  const extras = r.extras ?? EMPTY;
  const key = r.key ?? EMPTY;
  const value = r.value ?? EMPTY;
  const out = Buffer.allocUnsafe(HEADER_LENGTH + extras.length + key.length + value.length);
  out[0] = RESPONSE_MAGIC;
  out[1] = r.opcode;
  out.writeUInt16BE(key.length, 2);
  out[4] = extras.length;
  out[5] = 0; // datatype: raw bytes
  out.writeUInt16BE(r.status, 6);
  out.writeUInt32BE(extras.length + key.length + value.length, 8);
  out.writeUInt32BE(r.opaque, 12);
  out.writeBigUInt64BE(r.cas ?? 0n, 16);
  let at = HEADER_LENGTH;
  at += extras.copy(out, at);
  at += key.copy(out, at);
  value.copy(out, at);
  return out;
}

/** An error reply with memcached's text for `status` as its body (empty if it has none). */
export function encodeError(opcode: number, opaque: number, status: number): Buffer {
  return encodeResponse({ opcode, opaque, status, value: ERROR_TEXT.get(status) ?? EMPTY });
}

/** A success with no body: NOOP, QUIT, FLUSH, and stored/deleted when not quiet. */
export function encodeEmptySuccess(req: BinaryRequestHead, cas = 0n): Buffer {
  return encodeResponse({ opcode: req.opcode, opaque: req.opaque, status: Status.Success, cas });
}

function flagsExtras(flags: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

/** GET/GAT hit: 4-byte flags extras, the key only for GETK/GATK, the value, the item's CAS. */
export function encodeGetHit(req: BinaryRequestOf<'get'>, item: Item): Buffer {
  return encodeResponse({
    opcode: req.opcode, opaque: req.opaque, status: Status.Success, cas: item.cas,
    extras: flagsExtras(item.flags), key: req.withKey ? req.key : undefined, value: item.value,
  });
}

/** GET/GAT miss: "Not found"; GETK/GATK instead carry the key, as key and whole body, with no text. */
export function encodeGetMiss(req: BinaryRequestOf<'get'>): Buffer {
  if (!req.withKey) return encodeError(req.opcode, req.opaque, Status.KeyNotFound);
  return encodeResponse({ opcode: req.opcode, opaque: req.opaque, status: Status.KeyNotFound, key: req.key });
}

export function encodeStoreOutcome(req: BinaryRequestOf<'store'>, outcome: StoreOutcome): Buffer {
  switch (outcome.status) {
    case 'stored':
      return encodeEmptySuccess(req, outcome.cas);
    case 'exists':
      return encodeError(req.opcode, req.opaque, Status.KeyExists);
    case 'not_found':
      return encodeError(req.opcode, req.opaque, Status.KeyNotFound);
    case 'not_stored':
      // memcached: ADD on an existing key -> EEXISTS, REPLACE on a missing one -> ENOENT,
      // anything else (APPEND/PREPEND on a missing key) -> NOT_STORED.
      return encodeError(req.opcode, req.opaque,
        req.mode === 'add' ? Status.KeyExists : req.mode === 'replace' ? Status.KeyNotFound : Status.NotStored);
    case 'too_large':
      return encodeError(req.opcode, req.opaque, Status.TooLarge);
    case 'unavailable':
      return encodeError(req.opcode, req.opaque, Status.TemporaryFailure);
  }
}

export function encodeDeleteOutcome(req: BinaryRequestOf<'delete'>, outcome: DeleteOutcome): Buffer {
  switch (outcome.status) {
    case 'deleted':
      return encodeEmptySuccess(req);
    case 'not_found':
      return encodeError(req.opcode, req.opaque, Status.KeyNotFound);
    case 'exists':
      return encodeError(req.opcode, req.opaque, Status.KeyExists);
    case 'unavailable':
      return encodeError(req.opcode, req.opaque, Status.TemporaryFailure);
  }
}

/** INCR/DECR: the new value as an 8-byte body (no extras), with the item's new CAS. */
export function encodeArithOutcome(req: BinaryRequestOf<'arith'>, outcome: ArithOutcome): Buffer {
  switch (outcome.status) {
    case 'ok': {
      const value = Buffer.allocUnsafe(8);
      value.writeBigUInt64BE(BigInt.asUintN(64, outcome.value), 0);
      return encodeResponse({ opcode: req.opcode, opaque: req.opaque, status: Status.Success, cas: outcome.cas, value });
    }
    case 'not_found':
      return encodeError(req.opcode, req.opaque, Status.KeyNotFound);
    case 'non_numeric':
      return encodeError(req.opcode, req.opaque, Status.NonNumeric);
    case 'unavailable':
      return encodeError(req.opcode, req.opaque, Status.TemporaryFailure);
  }
}

/**
 * TOUCH hit: memcached replies with the item's flags as 4-byte extras, its CAS, and no value.
 * Pass the GetOutcome of a get-and-touch to reproduce that exactly; a bare TouchOutcome has
 * neither flags nor CAS, so 'touched' is answered with flags 0 and CAS 0.
 */
export function encodeTouchOutcome(req: BinaryRequestOf<'touch'>, outcome: TouchOutcome | GetOutcome): Buffer {
  switch (outcome.status) {
    case 'hit':
      return encodeResponse({
        opcode: req.opcode, opaque: req.opaque, status: Status.Success, cas: outcome.item.cas,
        extras: flagsExtras(outcome.item.flags),
      });
    case 'touched':
      return encodeResponse({ opcode: req.opcode, opaque: req.opaque, status: Status.Success, extras: flagsExtras(0) });
    case 'miss':
    case 'not_found':
      return encodeError(req.opcode, req.opaque, Status.KeyNotFound);
    case 'unavailable':
      return encodeError(req.opcode, req.opaque, Status.TemporaryFailure);
  }
}

export function encodeFlushOutcome(req: BinaryRequestOf<'flush'>, outcome: FlushOutcome): Buffer {
  return outcome.status === 'ok'
    ? encodeEmptySuccess(req)
    : encodeError(req.opcode, req.opaque, Status.TemporaryFailure);
}

export function encodeVersion(req: BinaryRequestHead, version: string): Buffer {
  return encodeResponse({ opcode: req.opcode, opaque: req.opaque, status: Status.Success, value: Buffer.from(version, 'latin1') });
}

/** One STAT reply: the stat's name as key, its value as value, CAS 0. */
export function encodeStat(req: BinaryRequestHead, name: string, value: string): Buffer {
  return encodeResponse({
    opcode: req.opcode, opaque: req.opaque, status: Status.Success,
    key: Buffer.from(name, 'latin1'), value: Buffer.from(value, 'latin1'),
  });
}

/** The empty STAT reply that ends a STAT listing. */
export function encodeStatEnd(req: BinaryRequestHead): Buffer {
  return encodeEmptySuccess(req);
}

/** A SASL success: the mechanism list (SASL_LIST_MECHS) or "Authenticated" (SASL_AUTH) as the body. */
export function encodeSaslReply(req: BinaryRequestHead, text: string): Buffer {
  return encodeResponse({ opcode: req.opcode, opaque: req.opaque, status: Status.Success, value: Buffer.from(text, 'latin1') });
}
