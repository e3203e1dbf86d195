// The binary parser: every opcode, every malformed shape memcached 1.6.18 rejects
// (with the exact reply bytes it sends), every split point, pipelining, lying lengths,
// bounded memory, random input. Expected error replies were captured from a real
// memcached 1.6.18; a last block re-checks them against the one on this machine.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, type Limits } from '../../src/protocol/limits';
import { BinaryParser, type BinaryRequest } from '../../src/protocol/binary/parser';
import { encodeError } from '../../src/protocol/binary/encoder';

interface FrameSpec {
  magic?: number;
  opcode: number;
  key?: Buffer | string;
  extras?: Buffer;
  value?: Buffer | string;
  opaque?: number;
  cas?: bigint;
  keylen?: number; // override the lengths to lie
  extlen?: number;
  bodylen?: number;
}

const OPAQUE = 0x11223344;

function frame(f: FrameSpec): Buffer {
  const key = Buffer.from(f.key ?? '');
  const extras = f.extras ?? Buffer.alloc(0);
  const value = Buffer.from(f.value ?? '');
  const h = Buffer.alloc(24);
  h[0] = f.magic ?? 0x80;
  h[1] = f.opcode;
  h.writeUInt16BE(f.keylen ?? key.length, 2);
  h[4] = f.extlen ?? extras.length;
  h.writeUInt32BE(f.bodylen ?? extras.length + key.length + value.length, 8);
  h.writeUInt32BE(f.opaque ?? OPAQUE, 12);
  h.writeBigUInt64BE(f.cas ?? 0n, 16);
  return Buffer.concat([h, extras, key, value]);
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
};
const u64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n, 0);
  return b;
};
const setExtras = (flags: number, exptime: number): Buffer => Buffer.concat([u32(flags), u32(exptime)]);
const arithExtras = (delta: bigint, initial: bigint, exptime: number): Buffer =>
  Buffer.concat([u64(delta), u64(initial), u32(exptime)]);

/** Pushes each piece, draining after each push; returns every request in order. */
function parseAll(pieces: Buffer[], limits: Limits = DEFAULT_LIMITS): BinaryRequest[] {
  const p = new BinaryParser(limits);
  const out: BinaryRequest[] = [];
  for (const piece of pieces) {
    p.push(piece);
    for (let r = p.next(); r !== null; r = p.next()) out.push(r);
  }
  return out;
}

/** A canonical string of requests, cheaper to compare than deep equality thousands of times. */
function canon(rs: BinaryRequest[]): string {
  return JSON.stringify(rs, function (this: Record<string, unknown>, key: string, v: unknown) {
    const raw = this[key];
    if (Buffer.isBuffer(raw)) return 'hex:' + raw.toString('hex');
    return typeof v === 'bigint' ? 'n:' + v.toString() : v;
  });
}

const head = (opcode: number, quiet = false) => ({ opcode, opaque: OPAQUE, quiet });
const k = (s: string) => Buffer.from(s);

// Every opcode memcached implements, well formed.
const GOOD: Array<[string, Buffer, BinaryRequest]> = [
  ['GET', frame({ opcode: 0x00, key: 'k1' }), { ...head(0x00), kind: 'get', key: k('k1'), withKey: false }],
  ['GETQ', frame({ opcode: 0x09, key: 'k1' }), { ...head(0x09, true), kind: 'get', key: k('k1'), withKey: false }],
  ['GETK', frame({ opcode: 0x0c, key: 'k1' }), { ...head(0x0c), kind: 'get', key: k('k1'), withKey: true }],
  ['GETKQ', frame({ opcode: 0x0d, key: 'k1' }), { ...head(0x0d, true), kind: 'get', key: k('k1'), withKey: true }],
  ['GAT', frame({ opcode: 0x1d, key: 'k1', extras: u32(100) }),
    { ...head(0x1d), kind: 'get', key: k('k1'), withKey: false, touch: 100 }],
  ['GATQ', frame({ opcode: 0x1e, key: 'k1', extras: u32(0) }),
    { ...head(0x1e, true), kind: 'get', key: k('k1'), withKey: false, touch: 0 }],
  ['GATK', frame({ opcode: 0x23, key: 'k1', extras: u32(0xffffffff) }),
    { ...head(0x23), kind: 'get', key: k('k1'), withKey: true, touch: 0xffffffff }],
  ['GATKQ', frame({ opcode: 0x24, key: 'k1', extras: u32(7) }),
    { ...head(0x24, true), kind: 'get', key: k('k1'), withKey: true, touch: 7 }],
  ['SET', frame({ opcode: 0x01, key: 'k1', extras: setExtras(0xdeadbeef, 300), value: 'hello' }),
    { ...head(0x01), kind: 'store', mode: 'set', key: k('k1'), flags: 0xdeadbeef, exptime: 300, value: k('hello'), cas: 0n }],
  ['SETQ', frame({ opcode: 0x11, key: 'k1', extras: setExtras(1, 0), value: 'v' }),
    { ...head(0x11, true), kind: 'store', mode: 'set', key: k('k1'), flags: 1, exptime: 0, value: k('v'), cas: 0n }],
  ['SET with CAS', frame({ opcode: 0x01, key: 'k1', extras: setExtras(0, 0), value: 'v', cas: 0x0102030405060708n }),
    { ...head(0x01), kind: 'store', mode: 'cas', key: k('k1'), flags: 0, exptime: 0, value: k('v'), cas: 0x0102030405060708n }],
  ['SET empty value', frame({ opcode: 0x01, key: 'k1', extras: setExtras(0, 0) }),
    { ...head(0x01), kind: 'store', mode: 'set', key: k('k1'), flags: 0, exptime: 0, value: Buffer.alloc(0), cas: 0n }],
  ['ADD', frame({ opcode: 0x02, key: 'k1', extras: setExtras(0, 0), value: 'v' }),
    { ...head(0x02), kind: 'store', mode: 'add', key: k('k1'), flags: 0, exptime: 0, value: k('v'), cas: 0n }],
  ['ADDQ', frame({ opcode: 0x12, key: 'k1', extras: setExtras(0, 0), value: 'v' }),
    { ...head(0x12, true), kind: 'store', mode: 'add', key: k('k1'), flags: 0, exptime: 0, value: k('v'), cas: 0n }],
  // memcached turns ADD/REPLACE with a CAS into a CAS (an ADD with the right CAS on an existing key stores).
  ['ADD with CAS', frame({ opcode: 0x02, key: 'k1', extras: setExtras(0, 0), value: 'v', cas: 5n }),
    { ...head(0x02), kind: 'store', mode: 'cas', key: k('k1'), flags: 0, exptime: 0, value: k('v'), cas: 5n }],
  ['REPLACE', frame({ opcode: 0x03, key: 'k1', extras: setExtras(0, 0), value: 'v' }),
    { ...head(0x03), kind: 'store', mode: 'replace', key: k('k1'), flags: 0, exptime: 0, value: k('v'), cas: 0n }],
  ['REPLACEQ', frame({ opcode: 0x13, key: 'k1', extras: setExtras(0, 0), value: 'v' }),
    { ...head(0x13, true), kind: 'store', mode: 'replace', key: k('k1'), flags: 0, exptime: 0, value: k('v'), cas: 0n }],
  ['APPEND', frame({ opcode: 0x0e, key: 'k1', value: 'tail' }),
    { ...head(0x0e), kind: 'store', mode: 'append', key: k('k1'), flags: 0, exptime: 0, value: k('tail'), cas: 0n }],
  ['APPENDQ with CAS', frame({ opcode: 0x19, key: 'k1', value: 'tail', cas: 9n }),
    { ...head(0x19, true), kind: 'store', mode: 'append', key: k('k1'), flags: 0, exptime: 0, value: k('tail'), cas: 9n }],
  ['PREPEND', frame({ opcode: 0x0f, key: 'k1', value: 'head' }),
    { ...head(0x0f), kind: 'store', mode: 'prepend', key: k('k1'), flags: 0, exptime: 0, value: k('head'), cas: 0n }],
  ['PREPENDQ', frame({ opcode: 0x1a, key: 'k1', value: 'head' }),
    { ...head(0x1a, true), kind: 'store', mode: 'prepend', key: k('k1'), flags: 0, exptime: 0, value: k('head'), cas: 0n }],
  ['DELETE', frame({ opcode: 0x04, key: 'k1' }), { ...head(0x04), kind: 'delete', key: k('k1'), cas: 0n }],
  ['DELETEQ with CAS', frame({ opcode: 0x14, key: 'k1', cas: 77n }), { ...head(0x14, true), kind: 'delete', key: k('k1'), cas: 77n }],
  ['INCR', frame({ opcode: 0x05, key: 'n', extras: arithExtras(5n, 42n, 0) }),
    { ...head(0x05), kind: 'arith', op: 'incr', key: k('n'), delta: 5n, initial: 42n, exptime: 0 }],
  ['INCRQ', frame({ opcode: 0x15, key: 'n', extras: arithExtras(0xffffffffffffffffn, 0n, 0xffffffff) }),
    { ...head(0x15, true), kind: 'arith', op: 'incr', key: k('n'), delta: 0xffffffffffffffffn, initial: 0n, exptime: 0xffffffff }],
  ['DECR', frame({ opcode: 0x06, key: 'n', extras: arithExtras(1n, 2n, 3) }),
    { ...head(0x06), kind: 'arith', op: 'decr', key: k('n'), delta: 1n, initial: 2n, exptime: 3 }],
  ['DECRQ', frame({ opcode: 0x16, key: 'n', extras: arithExtras(1n, 2n, 3) }),
    { ...head(0x16, true), kind: 'arith', op: 'decr', key: k('n'), delta: 1n, initial: 2n, exptime: 3 }],
  ['TOUCH', frame({ opcode: 0x1c, key: 'k1', extras: u32(60) }), { ...head(0x1c), kind: 'touch', key: k('k1'), exptime: 60 }],
  ['FLUSH', frame({ opcode: 0x08 }), { ...head(0x08), kind: 'flush', delay: 0 }],
  ['FLUSH with delay', frame({ opcode: 0x08, extras: u32(30) }), { ...head(0x08), kind: 'flush', delay: 30 }],
  ['FLUSHQ', frame({ opcode: 0x18 }), { ...head(0x18, true), kind: 'flush', delay: 0 }],
  ['NOOP', frame({ opcode: 0x0a }), { ...head(0x0a), kind: 'noop' }],
  ['VERSION', frame({ opcode: 0x0b }), { ...head(0x0b), kind: 'version' }],
  ['STAT', frame({ opcode: 0x10 }), { ...head(0x10), kind: 'stat', group: '' }],
  ['STAT slabs', frame({ opcode: 0x10, key: 'slabs' }), { ...head(0x10), kind: 'stat', group: 'slabs' }],
  ['QUIT', frame({ opcode: 0x07 }), { ...head(0x07), kind: 'quit' }],
  ['QUITQ', frame({ opcode: 0x17 }), { ...head(0x17, true), kind: 'quit' }],
  ['SASL_LIST_MECHS', frame({ opcode: 0x20 }), { ...head(0x20), kind: 'sasl_list' }],
  ['SASL_AUTH', frame({ opcode: 0x21, key: 'PLAIN', value: '\0u\0p' }),
    { ...head(0x21), kind: 'sasl', step: false, mech: k('PLAIN'), payload: k('\0u\0p') }],
  ['SASL_STEP', frame({ opcode: 0x22, key: 'PLAIN', value: '\0u\0p' }),
    { ...head(0x22), kind: 'sasl', step: true, mech: k('PLAIN'), payload: k('\0u\0p') }],
  ['SASL_AUTH, empty payload', frame({ opcode: 0x21, key: 'PLAIN' }), { ...head(0x21), kind: 'sasl', step: false, mech: k('PLAIN'), payload: Buffer.alloc(0) }],
  ['binary key', frame({ opcode: 0x00, key: Buffer.from([0, 1, 0x20, 0x0d, 0x0a, 0xff]) }),
    { ...head(0x00), kind: 'get', key: Buffer.from([0, 1, 0x20, 0x0d, 0x0a, 0xff]), withKey: false }],
  ['key of maxKeyLength', frame({ opcode: 0x04, key: 'a'.repeat(250) }), { ...head(0x04), kind: 'delete', key: k('a'.repeat(250)), cas: 0n }],
];

// Frames memcached 1.6.18 answers on its own, with the reply it sends (hex, captured from it).
const UNKNOWN = '556e6b6e6f776e20636f6d6d616e64'; // "Unknown command"
const EINVAL = '496e76616c696420617267756d656e7473'; // "Invalid arguments"
const E2BIG = '546f6f206c617267652e'; // "Too large."
const reply = (opcode: number, status: number, text: string): string =>
  '81' + opcode.toString(16).padStart(2, '0') + '00000000' + status.toString(16).padStart(4, '0') +
  (text.length / 2).toString(16).padStart(8, '0') + '11223344' + '0000000000000000' + text;

interface Bad {
  name: string;
  bytes: Buffer;
  status: number;
  close: boolean;
  memcached: string; // the reply bytes, hex
}

const BAD: Bad[] = [
  // SASL requests are parsed (the session answers them, 0x81 when SASL is off); one over MAX_SASL_PAYLOAD is not.
  { name: 'SASL_AUTH over 1024 bytes', bytes: frame({ opcode: 0x21, key: 'PLAIN', value: Buffer.alloc(1025) }), status: 0x81, close: false, memcached: reply(0x21, 0x81, UNKNOWN) },
  { name: 'VERBOSITY (unknown to memcached 1.6)', bytes: frame({ opcode: 0x1b }), status: 0x81, close: false, memcached: reply(0x1b, 0x81, UNKNOWN) },
  { name: 'unknown opcode 0x50', bytes: frame({ opcode: 0x50 }), status: 0x81, close: false, memcached: reply(0x50, 0x81, UNKNOWN) },
  { name: 'unknown opcode with a value', bytes: frame({ opcode: 0x50, value: 'abc' }), status: 0x81, close: false, memcached: reply(0x50, 0x81, UNKNOWN) },
  { name: 'SET value too large', bytes: frame({ opcode: 0x01, key: 'big', extras: setExtras(0, 0), value: Buffer.alloc(2 * 1024 * 1024) }),
    status: 0x03, close: false, memcached: reply(0x01, 0x03, E2BIG) },
  { name: 'SETQ value too large', bytes: frame({ opcode: 0x11, key: 'big', extras: setExtras(0, 0), value: Buffer.alloc(2 * 1024 * 1024) }),
    status: 0x03, close: false, memcached: reply(0x11, 0x03, E2BIG) },
  { name: 'APPEND value too large', bytes: frame({ opcode: 0x0e, key: 'big', value: Buffer.alloc(2 * 1024 * 1024) }),
    status: 0x03, close: false, memcached: reply(0x0e, 0x03, E2BIG) },
  { name: 'key + extras > body', bytes: frame({ opcode: 0x00, key: 'abc', bodylen: 2 }), status: 0x81, close: true, memcached: reply(0x00, 0x81, UNKNOWN) },
  { name: 'unknown opcode, key + extras > body', bytes: frame({ opcode: 0x50, key: 'abc', bodylen: 1 }), status: 0x81, close: true, memcached: reply(0x50, 0x81, UNKNOWN) },
  { name: 'GET key of 251 bytes', bytes: frame({ opcode: 0x00, key: 'a'.repeat(251) }), status: 0x04, close: true, memcached: reply(0x00, 0x04, EINVAL) },
  { name: 'unknown opcode, key of 251 bytes', bytes: frame({ opcode: 0x50, key: 'a'.repeat(251) }), status: 0x04, close: true, memcached: reply(0x50, 0x04, EINVAL) },
  { name: 'STAT key of 251 bytes', bytes: frame({ opcode: 0x10, key: 'a'.repeat(251) }), status: 0x04, close: true, memcached: reply(0x10, 0x04, EINVAL) },
  { name: 'GET body != key (lying body length)', bytes: Buffer.concat([frame({ opcode: 0x00, key: 'abc', bodylen: 4 }), k('z')]),
    status: 0x04, close: true, memcached: reply(0x00, 0x04, EINVAL) },
  { name: 'GET without key', bytes: frame({ opcode: 0x00 }), status: 0x04, close: true, memcached: reply(0x00, 0x04, EINVAL) },
  { name: 'GET with extras', bytes: frame({ opcode: 0x00, key: 'k', extras: u32(1) }), status: 0x04, close: true, memcached: reply(0x00, 0x04, EINVAL) },
  { name: 'SET with 4 bytes of extras', bytes: frame({ opcode: 0x01, key: 'k', extras: u32(0), value: 'x' }), status: 0x04, close: true, memcached: reply(0x01, 0x04, EINVAL) },
  { name: 'SET without key', bytes: frame({ opcode: 0x01, extras: setExtras(0, 0), value: 'x' }), status: 0x04, close: true, memcached: reply(0x01, 0x04, EINVAL) },
  { name: 'DELETE with extras', bytes: frame({ opcode: 0x04, key: 'n', extras: u32(0) }), status: 0x04, close: true, memcached: reply(0x04, 0x04, EINVAL) },
  { name: 'DELETE with a value', bytes: frame({ opcode: 0x04, key: 'n', value: 'x' }), status: 0x04, close: true, memcached: reply(0x04, 0x04, EINVAL) },
  { name: 'INCR with 8 bytes of extras', bytes: frame({ opcode: 0x05, key: 'n', extras: setExtras(0, 0) }), status: 0x04, close: true, memcached: reply(0x05, 0x04, EINVAL) },
  { name: 'INCR with a value', bytes: frame({ opcode: 0x05, key: 'n', extras: Buffer.alloc(20), value: 'x' }), status: 0x04, close: true, memcached: reply(0x05, 0x04, EINVAL) },
  { name: 'APPEND with extras', bytes: frame({ opcode: 0x0e, key: 'n', extras: setExtras(0, 0), value: 'x' }), status: 0x04, close: true, memcached: reply(0x0e, 0x04, EINVAL) },
  { name: 'TOUCH without extras', bytes: frame({ opcode: 0x1c, key: 'n' }), status: 0x04, close: true, memcached: reply(0x1c, 0x04, EINVAL) },
  { name: 'TOUCH with 8 bytes of extras', bytes: frame({ opcode: 0x1c, key: 'n', extras: setExtras(0, 0) }), status: 0x04, close: true, memcached: reply(0x1c, 0x04, EINVAL) },
  { name: 'GAT without key', bytes: frame({ opcode: 0x1d, extras: u32(0) }), status: 0x04, close: true, memcached: reply(0x1d, 0x04, EINVAL) },
  { name: 'FLUSH with 8 bytes of extras', bytes: frame({ opcode: 0x08, extras: setExtras(0, 0) }), status: 0x04, close: true, memcached: reply(0x08, 0x04, EINVAL) },
  { name: 'FLUSH with a key', bytes: frame({ opcode: 0x08, key: 'x' }), status: 0x04, close: true, memcached: reply(0x08, 0x04, EINVAL) },
  { name: 'NOOP with a body', bytes: frame({ opcode: 0x0a, value: 'x' }), status: 0x04, close: true, memcached: reply(0x0a, 0x04, EINVAL) },
  { name: 'VERSION with a body', bytes: frame({ opcode: 0x0b, value: 'x' }), status: 0x04, close: true, memcached: reply(0x0b, 0x04, EINVAL) },
  { name: 'QUIT with a body', bytes: frame({ opcode: 0x07, value: 'x' }), status: 0x04, close: true, memcached: reply(0x07, 0x04, EINVAL) },
  { name: 'STAT with extras', bytes: frame({ opcode: 0x10, extras: u32(0) }), status: 0x04, close: true, memcached: reply(0x10, 0x04, EINVAL) },
  { name: 'SASL_LIST_MECHS with a body', bytes: frame({ opcode: 0x20, value: 'x' }), status: 0x04, close: true, memcached: reply(0x20, 0x04, EINVAL) },
  { name: 'SASL_AUTH without key', bytes: frame({ opcode: 0x21, value: 'x' }), status: 0x04, close: true, memcached: reply(0x21, 0x04, EINVAL) },
];

describe('BinaryParser: well-formed frames', () => {
  it.each(GOOD)('%s', (_name, bytes, expected) => {
    expect(parseAll([bytes])).toEqual([expected]);
  });

  it('reads flags and exptime as unsigned 32-bit numbers', () => {
    const [r] = parseAll([frame({ opcode: 0x01, key: 'k', extras: setExtras(0xffffffff, 0x80000000), value: 'v' })]);
    expect(r).toMatchObject({ flags: 0xffffffff, exptime: 0x80000000 });
  });

  it('ignores datatype and vbucket, as memcached does', () => {
    const bytes = frame({ opcode: 0x00, key: 'k' });
    bytes[5] = 1;
    bytes.writeUInt16BE(7, 6);
    expect(parseAll([bytes])).toEqual([{ ...head(0x00), kind: 'get', key: k('k'), withKey: false }]);
  });
});

describe('BinaryParser: frames memcached answers on its own', () => {
  it.each(BAD.map((b) => [b.name, b] as const))('%s', (_name, bad) => {
    const out = parseAll([bad.bytes]);
    expect(out).toHaveLength(1);
    const r = out[0];
    expect(r).toMatchObject({ kind: 'error', status: bad.status, close: bad.close, opaque: OPAQUE, opcode: bad.bytes[1] });
    expect(r.kind === 'error' && r.silent).toBeFalsy();
    if (r.kind !== 'error') return;
    expect(encodeError(r.opcode, r.opaque, r.status).toString('hex')).toBe(bad.memcached);
  });

  it('after an error that skips the body, the next frame is read normally', () => {
    for (const bad of BAD.filter((b) => !b.close)) {
      const out = parseAll([bad.bytes, frame({ opcode: 0x0a, opaque: 5 })]);
      expect(out.map((r) => r.kind)).toEqual(['error', 'noop']);
      expect(out[1].opaque).toBe(5);
    }
  });

  it('after an error that closes, nothing more is parsed and input is dropped', () => {
    for (const bad of BAD.filter((b) => b.close)) {
      const p = new BinaryParser(DEFAULT_LIMITS);
      p.push(Buffer.concat([bad.bytes, frame({ opcode: 0x0a })]));
      expect(p.next()).toMatchObject({ kind: 'error', close: true });
      expect(p.next()).toBeNull();
      p.push(frame({ opcode: 0x0a }));
      expect(p.next()).toBeNull();
      expect(p.buffered).toBe(0);
    }
  });

  it('bad magic closes silently (memcached sends nothing)', () => {
    const out = parseAll([Buffer.concat([frame({ opcode: 0x0a, opaque: 1 }), frame({ opcode: 0x0a, magic: 0x81 }), frame({ opcode: 0x0a })])]);
    expect(out).toHaveLength(2);
    expect(out[0]).toMatchObject({ kind: 'noop', opaque: 1 });
    expect(out[1]).toMatchObject({ kind: 'error', close: true, silent: true });
  });

  it('a truncated header or body is "need more bytes", never an error', () => {
    const bytes = frame({ opcode: 0x01, key: 'k', extras: setExtras(0, 0), value: 'value' });
    for (let n = 0; n < bytes.length; n++) expect(parseAll([bytes.subarray(0, n)])).toEqual([]);
  });

  it('the value limit is limits.maxItemSize, exactly', () => {
    const limits = { ...DEFAULT_LIMITS, maxItemSize: 10 };
    const at = parseAll([frame({ opcode: 0x01, key: 'k', extras: setExtras(0, 0), value: 'x'.repeat(10) })], limits);
    expect(at[0]).toMatchObject({ kind: 'store', value: k('x'.repeat(10)) });
    const over = parseAll([frame({ opcode: 0x0e, key: 'k', value: 'x'.repeat(11) })], limits);
    expect(over[0]).toMatchObject({ kind: 'error', status: 0x03, close: false });
  });

  it('the key limit is limits.maxKeyLength', () => {
    const limits = { ...DEFAULT_LIMITS, maxKeyLength: 4 };
    expect(parseAll([frame({ opcode: 0x00, key: 'abcd' })], limits)[0]).toMatchObject({ kind: 'get' });
    expect(parseAll([frame({ opcode: 0x00, key: 'abcde' })], limits)[0]).toMatchObject({ kind: 'error', status: 0x04, close: true });
  });

  it('STAT and GAT read no more than extras and key; the rest is the next request (as memcached)', () => {
    const gat = frame({ opcode: 0x1d, key: 'k', extras: u32(0), bodylen: 5 + 24 });
    const out = parseAll([Buffer.concat([gat, frame({ opcode: 0x0a, opaque: 9 })])]);
    expect(out.map((r) => r.kind)).toEqual(['get', 'noop']);
    expect(out[1].opaque).toBe(9);
  });
});

describe('BinaryParser: streaming', () => {
  const frames = [...GOOD.map(([, bytes]) => bytes), ...BAD.filter((b) => !b.close && b.bytes.length < 1000).map((b) => b.bytes)];
  const whole = Buffer.concat(frames);
  const expected = parseAll([whole]);

  it('parses pipelined frames in order', () => {
    expect(expected).toHaveLength(frames.length);
    expect(expected.slice(0, GOOD.length)).toEqual(GOOD.map(([, , r]) => r));
  });

  it('every frame split at every byte boundary gives the same result', () => {
    for (const bytes of [...frames, ...BAD.filter((b) => b.bytes.length < 1000).map((b) => b.bytes)]) {
      const once = canon(parseAll([bytes]));
      for (let i = 0; i <= bytes.length; i++) {
        const got = canon(parseAll([bytes.subarray(0, i), bytes.subarray(i)]));
        if (got !== once) expect(got, `split at ${i}`).toBe(once);
      }
    }
  });

  it('the whole pipeline split at every byte boundary, and fed byte by byte, gives the same result', () => {
    const want = canon(expected);
    for (let i = 0; i <= whole.length; i += 1) {
      const got = canon(parseAll([whole.subarray(0, i), whole.subarray(i)]));
      if (got !== want) expect(got, `split at ${i}`).toBe(want);
    }
    const bytes: Buffer[] = [];
    for (let i = 0; i < whole.length; i++) bytes.push(whole.subarray(i, i + 1));
    expect(parseAll(bytes)).toEqual(expected);
  });

  it('a too-large value is skipped as it streams in, without buffering it', () => {
    const limits = { ...DEFAULT_LIMITS, maxItemSize: 1024 };
    const p = new BinaryParser(limits);
    const total = 50 * 1024 * 1024;
    p.push(frame({ opcode: 0x01, key: 'k', extras: setExtras(0, 0), bodylen: 9 + total }));
    expect(p.next()).toMatchObject({ kind: 'error', status: 0x03, close: false });
    const chunk = Buffer.alloc(64 * 1024);
    for (let sent = 0; sent < total; sent += chunk.length) {
      p.push(chunk);
      expect(p.next()).toBeNull();
      expect(p.buffered).toBe(0);
    }
    p.push(frame({ opcode: 0x0a, opaque: 3 }));
    expect(p.next()).toMatchObject({ kind: 'noop', opaque: 3 });
  });

  it('a lying 4 GiB body length on SET is "too large", not 4 GiB of memory', () => {
    const p = new BinaryParser(DEFAULT_LIMITS);
    p.push(frame({ opcode: 0x01, key: 'k', extras: setExtras(0, 0), value: 'abc', bodylen: 0xffffffff }));
    expect(p.next()).toMatchObject({ kind: 'error', status: 0x03, close: false });
    expect(p.next()).toBeNull();
    expect(p.buffered).toBe(0);
  });

  it('a large value is assembled once, into a Buffer of its own', () => {
    const value = Buffer.alloc(300_000, 7);
    const bytes = frame({ opcode: 0x01, key: 'k', extras: setExtras(0, 0), value });
    const p = new BinaryParser(DEFAULT_LIMITS);
    for (let i = 0; i < bytes.length; i += 65536) {
      p.push(bytes.subarray(i, i + 65536));
      const r = p.next();
      if (i + 65536 < bytes.length) {
        expect(r).toBeNull();
        expect(p.buffered).toBeLessThanOrEqual(i + 65536);
      } else {
        expect(r).toMatchObject({ kind: 'store' });
        if (r?.kind === 'store') {
          expect(r.value.equals(value)).toBe(true);
          expect(r.value.byteOffset).toBe(0);
          expect(r.value.buffer.byteLength).toBe(value.length);
        }
      }
    }
  });

  it('returned keys and values do not alias the input or the parser', () => {
    const input = frame({ opcode: 0x01, key: 'key', extras: setExtras(0, 0), value: 'value' });
    const p = new BinaryParser(DEFAULT_LIMITS);
    p.push(input);
    const r = p.next();
    input.fill(0);
    p.push(frame({ opcode: 0x01, key: 'zzz', extras: setExtras(0, 0), value: 'zzzzz' }));
    p.next();
    expect(r).toMatchObject({ kind: 'store', key: k('key'), value: k('value') });
  });
});

describe('BinaryParser: hostile input', () => {
  // xorshift: deterministic, so a failure reproduces.
  let seed = 0x9e3779b9;
  const rand = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const limits = { ...DEFAULT_LIMITS, maxItemSize: 4096 };
  // After a drain, a parser holds less than a header, or an incomplete extras+key, or part of one value.
  const bound = Math.max(24, 20 + limits.maxKeyLength, limits.maxItemSize);

  function feed(bytes: Buffer): void {
    const p = new BinaryParser(limits);
    let at = 0;
    while (at < bytes.length) {
      const n = 1 + rand(64);
      p.push(bytes.subarray(at, at + n));
      at += n;
      for (let i = 0; i < 10_000 && p.next() !== null; i++);
      expect(p.buffered).toBeLessThanOrEqual(bound);
    }
  }

  it('random bytes never throw and keep memory bounded', () => {
    for (let i = 0; i < 300; i++) {
      const b = Buffer.alloc(1 + rand(600));
      for (let j = 0; j < b.length; j++) b[j] = rand(256);
      b[0] = 0x80;
      expect(() => feed(b)).not.toThrow();
    }
  });

  it('mutated good frames never throw and keep memory bounded', () => {
    const good = GOOD.map(([, bytes]) => bytes);
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.concat([good[rand(good.length)], good[rand(good.length)]]);
      for (let m = 1 + rand(4); m > 0; m--) b[rand(24)] = rand(256);
      expect(() => feed(b)).not.toThrow();
    }
  });
});

// The tables above, replayed against the memcached on this machine: same reply bytes.
const memcachedPath = spawnSync('sh', ['-c', 'command -v memcached']).stdout.toString().trim();

describe.skipIf(memcachedPath === '')('BinaryParser error replies match real memcached', () => {
  let server: ChildProcess;
  let port = 0;

  beforeAll(async () => {
    port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    server = spawn(memcachedPath, ['-u', 'root', '-l', '127.0.0.1', '-p', String(port), '-U', '0'], { stdio: 'ignore' });
    // Until it accepts, or exits (it could not listen): no deadline but the hook's timeout.
    while (server.exitCode === null) {
      const up = await new Promise<boolean>((resolve) => {
        const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
        c.on('error', () => resolve(false));
      });
      if (up) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`memcached exited (code ${server.exitCode}) before it accepted on ${port}`);
  });

  afterAll(() => {
    server?.kill('SIGKILL');
  });

  /** Sends bytes then a NOOP (opaque 0xfeedface); resolves with every byte up to that NOOP's reply, or until close. */
  function exchange(bytes: Buffer): Promise<{ reply: Buffer; closed: boolean }> {
    const noop = frame({ opcode: 0x0a, opaque: 0xfeedface });
    const noopReply = Buffer.from('810a00000000000000000000feedface0000000000000000', 'hex');
    return new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      const got: Buffer[] = [];
      const finish = (closed: boolean) => {
        c.destroy();
        clearTimeout(timer);
        const all = Buffer.concat(got);
        resolve({ reply: closed ? all : all.subarray(0, all.length - noopReply.length), closed });
      };
      // Only a guard, far past any reply: a loaded machine may hold memcached back for seconds.
      const timer = setTimeout(() => finish(false), 20_000);
      c.on('data', (d) => {
        got.push(d);
        const all = Buffer.concat(got);
        if (all.length >= 24 && all.subarray(all.length - 24).equals(noopReply)) finish(false);
      });
      c.on('close', () => finish(true));
      c.on('error', () => {});
      c.write(Buffer.concat([bytes, noop]));
    });
  }

  it.each(BAD.map((b) => [b.name, b] as const))('%s', async (_name, bad) => {
    const { reply, closed } = await exchange(bad.bytes);
    expect(reply.toString('hex')).toBe(bad.memcached);
    expect(closed).toBe(bad.close);
  });
});
