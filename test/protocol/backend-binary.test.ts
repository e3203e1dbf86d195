// The binary backend codec without a socket: requests byte for byte, each
// response split at every point, and the responses that must end the stream
// (bad magic, another opaque, an opcode that cannot answer the request, an
// impossible header). What real memcached -S answers is checked in
// test/backends/backend-binary.test.ts.

import { describe, expect, it } from 'vitest';
import {
  BinaryReplyParser,
  encodeArith,
  encodeDelete,
  encodeGet,
  encodeSaslPlain,
  encodeStore,
  wireExptime,
} from '../../src/protocol/backend/binary';
import type { ParseResult, ReplyKind } from '../../src/protocol/backend/meta';
import { binaryPacket } from '../helpers/wire';

const k = (s: string): Buffer => Buffer.from(s, 'latin1');
/** A response as memcached writes it; opaque "a" is 10. */
const response = (p: Parameters<typeof binaryPacket>[0]) => binaryPacket({ magic: 0x81, opaque: 10, ...p });

function parseSplit(bytes: Buffer, kind: ReplyKind, at: number, limits = {}): ParseResult[] {
  const p = new BinaryReplyParser(limits);
  const out: ParseResult[] = [];
  for (const part of [bytes.subarray(0, at), bytes.subarray(at)]) {
    p.push(part);
    for (let r = p.next(kind, 'a'); r.kind !== 'more'; r = p.next(kind, 'a')) {
      out.push(r);
      if (r.kind === 'fatal') return out;
    }
  }
  return out;
}

describe('requests', () => {
  it('GET, GAT, SET with CAS, cas mode with CAS 0, DELETE, INCR without create, SASL PLAIN', () => {
    expect(encodeGet(k('key'), undefined, 'a').toString('hex')).toBe('800000030000000000000003' + '0000000a' + '0000000000000000' + '6b6579');
    expect(encodeGet(k('k'), 60, 'a').subarray(0, 2).toString('hex')).toBe('801d');
    const set = encodeStore({ mode: 'set', key: k('k'), value: k('v'), flags: 7, exptime: -1, cas: 5n }, 'a') as Buffer;
    expect(set.toString('hex')).toBe('80010001080000000000000a' + '0000000a' + '0000000000000005' + '00000007' + '00278d01' + '6b' + '76');
    const cas0 = encodeStore({ mode: 'cas', key: k('k'), value: k('v'), flags: 0, exptime: 0, cas: 0n }, 'a') as Buffer;
    expect(cas0.readBigUInt64BE(16)).toBe((1n << 64n) - 1n);
    expect(encodeDelete(k('k'), 9n, 'a').readBigUInt64BE(16)).toBe(9n);
    const incr = encodeArith('incr', k('n'), 2n, undefined, 'a');
    expect(incr.subarray(24, 44).toString('hex')).toBe('0000000000000002' + '0000000000000000' + 'ffffffff');
    expect(encodeSaslPlain('u', 'p w', 'a').subarray(24).toString('latin1')).toBe('PLAIN\0u\0p w');
  });

  it('large values go as a separate chunk with the right body length', () => {
    const value = Buffer.alloc(100_000, 1);
    const chunks = encodeStore({ mode: 'append', key: k('k'), value, flags: 0, exptime: 0, cas: 0n }, 'a');
    expect(Array.isArray(chunks)).toBe(true);
    const whole = Buffer.concat(chunks as Buffer[]);
    expect(whole.readUInt32BE(8)).toBe(whole.length - 24);
  });

  it('expiry: negative is already expired (an absolute time in 1970), larger than 32 bits is capped', () => {
    expect(wireExptime(-5)).toBe(2592001);
    expect(wireExptime(0)).toBe(0);
    expect(wireExptime(2 ** 40)).toBe(0xffffffff);
  });
});

describe('responses, split at every point', () => {
  const GET_HIT = response({ opcode: 0x00, extras: Buffer.from([0, 0, 0, 9]), value: k('hello\r\n'), cas: 77n });
  const cases: Array<[string, Buffer, ReplyKind, unknown[]]> = [
    ['GET hit', GET_HIT, 'meta', [{ type: 'meta', code: 'VA', flags: { flags: 9, cas: 77n, opaque: 'a' }, value: k('hello\r\n') }]],
    ['GET miss', response({ opcode: 0x00, status: 1, value: k('Not found') }), 'meta', [{ type: 'meta', code: 'EN', flags: { opaque: 'a' } }]],
    ['ADD exists', response({ opcode: 0x02, status: 2 }), 'meta', [{ type: 'meta', code: 'NS', flags: { opaque: 'a' } }]],
    ['SET cas mismatch', response({ opcode: 0x01, status: 2 }), 'meta', [{ type: 'meta', code: 'EX', flags: { opaque: 'a' } }]],
    ['REPLACE missing', response({ opcode: 0x03, status: 1 }), 'meta', [{ type: 'meta', code: 'NS', flags: { opaque: 'a' } }]],
    ['SET too large', response({ opcode: 0x01, status: 3, value: k('Too large.') }), 'meta', [{ type: 'error', code: 'SERVER_ERROR', message: 'object too large for cache' }]],
    ['INCR', response({ opcode: 0x05, value: Buffer.from('0000000000000029', 'hex'), cas: 3n }), 'meta', [{ type: 'meta', code: 'VA', flags: { cas: 3n, opaque: 'a' }, value: k('41') }]],
    ['INCR non-numeric', response({ opcode: 0x05, status: 6 }), 'meta', [{ type: 'error', code: 'CLIENT_ERROR', message: 'cannot increment or decrement non-numeric value' }]],
    ['unknown command', response({ opcode: 0x00, status: 0x81, value: k('Unknown command') }), 'meta', [{ type: 'error', code: 'ERROR', message: 'Unknown command' }]],
    ['VERSION', response({ opcode: 0x0b, value: k('1.6.18') }), 'line', [{ type: 'line', text: 'VERSION 1.6.18' }]],
    ['STAT', Buffer.concat([response({ opcode: 0x10, key: k('pid'), value: k('42') }), response({ opcode: 0x10 })]), 'stats',
      [{ type: 'stat', name: 'pid', value: '42' }, { type: 'end' }]],
    ['SASL refused', response({ opcode: 0x21, status: 0x20, value: k('Auth failure.') }), 'auth', [{ type: 'error', code: 'SERVER_ERROR', message: 'Auth failure.' }]],
  ];
  it.each(cases)('%s', (_name, bytes, kind, expected) => {
    for (let at = 0; at <= bytes.length; at++) {
      expect(parseSplit(bytes, kind, at).map((r) => (r.kind === 'reply' ? r.reply : r))).toEqual(expected);
    }
  });

  it('a value over the limit is skipped as it arrives and reported oversize', () => {
    const big = response({ opcode: 0x00, extras: Buffer.from([0, 0, 0, 1]), value: Buffer.alloc(5000), cas: 2n });
    for (const at of [0, 10, 24, 28, 1000, big.length]) {
      const out = parseSplit(big, 'meta', at, { maxValueLength: 100 });
      expect(out).toEqual([{ kind: 'reply', reply: { type: 'meta', code: 'VA', flags: { flags: 1, cas: 2n }, oversize: 5000 } }]);
    }
  });
});

describe('responses that end the stream', () => {
  it.each([
    ['bad magic', binaryPacket({ opcode: 0x00, opaque: 10 }), 'meta', 'bad response magic 0x80'],
    ['another opaque', response({ opcode: 0x00, opaque: 11 }), 'meta', 'response opaque b, expected a'],
    ['an opcode that cannot answer the request', response({ opcode: 0x0b }), 'meta', 'response opcode 0xb to a meta request'],
    ['a data reply to a stats request', response({ opcode: 0x00 }), 'stats', 'response opcode 0x0 to a stats request'],
    ['key longer than the body', Buffer.from('8100000500000000000000020000000a0000000000000000616263', 'hex'), 'meta', 'bad response header'],
    ['INCR without an 8-byte value', response({ opcode: 0x05, value: k('1') }), 'meta', 'incr/decr response without an 8-byte value'],
  ] as Array<[string, Buffer, ReplyKind, string]>)('%s', (_name, bytes, kind, reason) => {
    const p = new BinaryReplyParser();
    p.push(bytes);
    expect(p.next(kind, 'a')).toEqual({ kind: 'fatal', reason });
    p.push(response({ opcode: 0x00 }));
    expect(p.next(kind, 'a')).toEqual({ kind: 'fatal', reason });
  });
});
