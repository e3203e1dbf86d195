// Binary replies, byte for byte. Every expected hex string below (except the
// 'unavailable' rows, which memcached has no equivalent for) was captured from
// memcached 1.6.18 answering the same request with opaque 0x11223344.

import { describe, expect, it } from 'vitest';
import {
  encodeArithOutcome, encodeDeleteOutcome, encodeEmptySuccess, encodeError, encodeFlushOutcome, encodeGetHit,
  encodeGetMiss, encodeResponse, encodeStat, encodeStatEnd, encodeStoreOutcome, encodeTouchOutcome, encodeVersion,
} from '../../src/protocol/binary/encoder';
import type { BinaryRequestOf } from '../../src/protocol/binary/parser';
import type { StoreMode } from '../../src/protocol/types';

const OPAQUE = 0x11223344;
const hex = (s: string) => Buffer.from(s, 'latin1').toString('hex');
/** Header fields in wire order, then the body. */
const packet = (opcode: string, keylen: string, extlen: string, status: string, bodylen: string, cas: string, body = '') =>
  '81' + opcode + keylen + extlen + '00' + status + bodylen + '11223344' + cas + body;

const get = (opcode: number, key: string, withKey: boolean, quiet = false): BinaryRequestOf<'get'> =>
  ({ opcode, opaque: OPAQUE, quiet, kind: 'get', key: Buffer.from(key), withKey });
const store = (opcode: number, mode: StoreMode, quiet = false): BinaryRequestOf<'store'> =>
  ({ opcode, opaque: OPAQUE, quiet, kind: 'store', mode, key: Buffer.from('k1'), flags: 0, exptime: 0, value: Buffer.from('x'), cas: 0n });
const del = (opcode: number, quiet = false): BinaryRequestOf<'delete'> =>
  ({ opcode, opaque: OPAQUE, quiet, kind: 'delete', key: Buffer.from('k1'), cas: 0n });
const arith = (opcode: number, op: 'incr' | 'decr', quiet = false): BinaryRequestOf<'arith'> =>
  ({ opcode, opaque: OPAQUE, quiet, kind: 'arith', op, key: Buffer.from('n1'), delta: 1n, initial: 0n, exptime: 0 });
const touch: BinaryRequestOf<'touch'> = { opcode: 0x1c, opaque: OPAQUE, quiet: false, kind: 'touch', key: Buffer.from('k1'), exptime: 100 };
const flush: BinaryRequestOf<'flush'> = { opcode: 0x08, opaque: OPAQUE, quiet: false, kind: 'flush', delay: 0 };
const item = { value: Buffer.from('hello'), flags: 0xdeadbeef, cas: 2n };

const NOT_FOUND = hex('Not found');
const EXISTS = hex('Data exists for key.');
const NOT_STORED = hex('Not stored.');
const TMPFAIL = hex('Temporary failure');

const CASES: Array<[string, Buffer, string]> = [
  // GET family: flags extras, key only for GETK/GATK, CAS of the item.
  ['GET hit', encodeGetHit(get(0x00, 'k1', false), item),
    packet('00', '0000', '04', '0000', '00000009', '0000000000000002', 'deadbeef' + hex('hello'))],
  ['GETQ hit', encodeGetHit(get(0x09, 'k1', false, true), item),
    packet('09', '0000', '04', '0000', '00000009', '0000000000000002', 'deadbeef' + hex('hello'))],
  ['GETK hit', encodeGetHit(get(0x0c, 'k1', true), item),
    packet('0c', '0002', '04', '0000', '0000000b', '0000000000000002', 'deadbeef' + hex('k1hello'))],
  ['GETKQ hit', encodeGetHit(get(0x0d, 'k1', true, true), item),
    packet('0d', '0002', '04', '0000', '0000000b', '0000000000000002', 'deadbeef' + hex('k1hello'))],
  ['GAT hit', encodeGetHit(get(0x1d, 'k1', false), item),
    packet('1d', '0000', '04', '0000', '00000009', '0000000000000002', 'deadbeef' + hex('hello'))],
  ['GATK hit', encodeGetHit(get(0x23, 'k1', true), item),
    packet('23', '0002', '04', '0000', '0000000b', '0000000000000002', 'deadbeef' + hex('k1hello'))],
  ['GATKQ hit', encodeGetHit(get(0x24, 'k1', true, true), item),
    packet('24', '0002', '04', '0000', '0000000b', '0000000000000002', 'deadbeef' + hex('k1hello'))],
  ['GET hit, empty value', encodeGetHit(get(0x23, 'e', true), { value: Buffer.alloc(0), flags: 0xff, cas: 0x15n }),
    packet('23', '0001', '04', '0000', '00000005', '0000000000000015', '000000ff' + hex('e'))],
  ['GET miss', encodeGetMiss(get(0x00, 'nope', false)), packet('00', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],
  ['GAT miss', encodeGetMiss(get(0x1d, 'nope', false)), packet('1d', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],
  // GETK/GATK miss: status 1, the key as key and as the whole body, no text.
  ['GETK miss', encodeGetMiss(get(0x0c, 'nope', true)), packet('0c', '0004', '00', '0001', '00000004', '0000000000000000', hex('nope'))],
  ['GATK miss', encodeGetMiss(get(0x23, 'nope', true)), packet('23', '0004', '00', '0001', '00000004', '0000000000000000', hex('nope'))],

  // Stores.
  ['SET stored', encodeStoreOutcome(store(0x01, 'set'), { status: 'stored', cas: 2n }),
    packet('01', '0000', '00', '0000', '00000000', '0000000000000002')],
  ['ADD stored', encodeStoreOutcome(store(0x02, 'add'), { status: 'stored', cas: 3n }),
    packet('02', '0000', '00', '0000', '00000000', '0000000000000003')],
  ['APPEND stored', encodeStoreOutcome(store(0x0e, 'append'), { status: 'stored', cas: 5n }),
    packet('0e', '0000', '00', '0000', '00000000', '0000000000000005')],
  ['ADD on an existing key', encodeStoreOutcome(store(0x02, 'add'), { status: 'not_stored' }),
    packet('02', '0000', '00', '0002', '00000014', '0000000000000000', EXISTS)],
  ['ADDQ on an existing key', encodeStoreOutcome(store(0x12, 'add', true), { status: 'not_stored' }),
    packet('12', '0000', '00', '0002', '00000014', '0000000000000000', EXISTS)],
  ['REPLACE on a missing key', encodeStoreOutcome(store(0x03, 'replace'), { status: 'not_stored' }),
    packet('03', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],
  ['REPLACEQ on a missing key', encodeStoreOutcome(store(0x13, 'replace', true), { status: 'not_stored' }),
    packet('13', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],
  ['CAS mismatch', encodeStoreOutcome(store(0x01, 'cas'), { status: 'exists' }),
    packet('01', '0000', '00', '0002', '00000014', '0000000000000000', EXISTS)],
  ['SETQ CAS mismatch', encodeStoreOutcome(store(0x11, 'cas', true), { status: 'exists' }),
    packet('11', '0000', '00', '0002', '00000014', '0000000000000000', EXISTS)],
  ['CAS on a missing key', encodeStoreOutcome(store(0x01, 'cas'), { status: 'not_found' }),
    packet('01', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],
  ['ADD with CAS on a missing key', encodeStoreOutcome(store(0x02, 'cas'), { status: 'not_found' }),
    packet('02', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],
  ['APPEND on a missing key', encodeStoreOutcome(store(0x0e, 'append'), { status: 'not_stored' }),
    packet('0e', '0000', '00', '0005', '0000000b', '0000000000000000', NOT_STORED)],
  ['PREPEND on a missing key', encodeStoreOutcome(store(0x0f, 'prepend'), { status: 'not_stored' }),
    packet('0f', '0000', '00', '0005', '0000000b', '0000000000000000', NOT_STORED)],
  ['APPENDQ on a missing key', encodeStoreOutcome(store(0x19, 'append', true), { status: 'not_stored' }),
    packet('19', '0000', '00', '0005', '0000000b', '0000000000000000', NOT_STORED)],
  ['PREPEND with CAS on a missing key', encodeStoreOutcome(store(0x0f, 'prepend'), { status: 'not_stored' }),
    packet('0f', '0000', '00', '0005', '0000000b', '0000000000000000', NOT_STORED)],
  ['APPEND with a CAS mismatch', encodeStoreOutcome(store(0x0e, 'append'), { status: 'exists' }),
    packet('0e', '0000', '00', '0002', '00000014', '0000000000000000', EXISTS)],
  ['SET unavailable (ours)', encodeStoreOutcome(store(0x01, 'set'), { status: 'unavailable' }),
    packet('01', '0000', '00', '0086', '00000011', '0000000000000000', TMPFAIL)],

  // Deletes.
  ['DELETE ok', encodeDeleteOutcome(del(0x04), { status: 'deleted' }), packet('04', '0000', '00', '0000', '00000000', '0000000000000000')],
  ['DELETE miss', encodeDeleteOutcome(del(0x04), { status: 'not_found' }),
    packet('04', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],
  ['DELETEQ miss', encodeDeleteOutcome(del(0x14, true), { status: 'not_found' }),
    packet('14', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],
  ['DELETE CAS mismatch', encodeDeleteOutcome(del(0x04), { status: 'exists' }),
    packet('04', '0000', '00', '0002', '00000014', '0000000000000000', EXISTS)],
  ['DELETE unavailable (ours)', encodeDeleteOutcome(del(0x04), { status: 'unavailable' }),
    packet('04', '0000', '00', '0086', '00000011', '0000000000000000', TMPFAIL)],

  // INCR/DECR: the value as an 8-byte body, no extras, the new CAS.
  ['INCR created', encodeArithOutcome(arith(0x05, 'incr'), { status: 'ok', value: 42n, cas: 6n }),
    packet('05', '0000', '00', '0000', '00000008', '0000000000000006', '000000000000002a')],
  ['INCR hit', encodeArithOutcome(arith(0x05, 'incr'), { status: 'ok', value: 47n, cas: 7n }),
    packet('05', '0000', '00', '0000', '00000008', '0000000000000007', '000000000000002f')],
  ['DECR to zero', encodeArithOutcome(arith(0x06, 'decr'), { status: 'ok', value: 0n, cas: 8n }),
    packet('06', '0000', '00', '0000', '00000008', '0000000000000008', '0000000000000000')],
  ['INCR non-numeric', encodeArithOutcome(arith(0x05, 'incr'), { status: 'non_numeric' }),
    packet('05', '0000', '00', '0006', '0000002e', '0000000000000000', hex('Non-numeric server-side value for incr or decr'))],
  ['INCR miss, not created', encodeArithOutcome(arith(0x05, 'incr'), { status: 'not_found' }),
    packet('05', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],
  ['DECRQ miss, not created', encodeArithOutcome(arith(0x16, 'decr', true), { status: 'not_found' }),
    packet('16', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],
  ['INCR unavailable (ours)', encodeArithOutcome(arith(0x05, 'incr'), { status: 'unavailable' }),
    packet('05', '0000', '00', '0086', '00000011', '0000000000000000', TMPFAIL)],

  // TOUCH: flags extras and CAS, no value; exact when given the item of a get-and-touch.
  ['TOUCH hit (from a GetOutcome)', encodeTouchOutcome(touch, { status: 'hit', item }),
    packet('1c', '0000', '04', '0000', '00000004', '0000000000000002', 'deadbeef')],
  ['TOUCH hit (from a TouchOutcome: flags and CAS unknown)', encodeTouchOutcome(touch, { status: 'touched' }),
    packet('1c', '0000', '04', '0000', '00000004', '0000000000000000', '00000000')],
  ['TOUCH miss', encodeTouchOutcome(touch, { status: 'not_found' }),
    packet('1c', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],
  ['TOUCH miss (from a GetOutcome)', encodeTouchOutcome(touch, { status: 'miss' }),
    packet('1c', '0000', '00', '0001', '00000009', '0000000000000000', NOT_FOUND)],

  // The rest.
  ['FLUSH', encodeFlushOutcome(flush, { status: 'ok' }), packet('08', '0000', '00', '0000', '00000000', '0000000000000000')],
  ['FLUSH unavailable (ours)', encodeFlushOutcome(flush, { status: 'unavailable' }),
    packet('08', '0000', '00', '0086', '00000011', '0000000000000000', TMPFAIL)],
  ['NOOP', encodeEmptySuccess({ opcode: 0x0a, opaque: OPAQUE, quiet: false }), packet('0a', '0000', '00', '0000', '00000000', '0000000000000000')],
  ['QUIT', encodeEmptySuccess({ opcode: 0x07, opaque: OPAQUE, quiet: false }), packet('07', '0000', '00', '0000', '00000000', '0000000000000000')],
  ['VERSION', encodeVersion({ opcode: 0x0b, opaque: OPAQUE, quiet: false }, '1.6.18'),
    packet('0b', '0000', '00', '0000', '00000006', '0000000000000000', hex('1.6.18'))],
  ['STAT entry', encodeStat({ opcode: 0x10, opaque: OPAQUE, quiet: false }, '1:chunk_size', '96'),
    packet('10', '000c', '00', '0000', '0000000e', '0000000000000000', hex('1:chunk_size96'))],
  ['STAT end', encodeStatEnd({ opcode: 0x10, opaque: OPAQUE, quiet: false }), packet('10', '0000', '00', '0000', '00000000', '0000000000000000')],

  // Errors the parser raises.
  ['Unknown command', encodeError(0x20, OPAQUE, 0x81), packet('20', '0000', '00', '0081', '0000000f', '0000000000000000', hex('Unknown command'))],
  ['Invalid arguments', encodeError(0x00, OPAQUE, 0x04), packet('00', '0000', '00', '0004', '00000011', '0000000000000000', hex('Invalid arguments'))],
  ['Too large.', encodeError(0x11, OPAQUE, 0x03), packet('11', '0000', '00', '0003', '0000000a', '0000000000000000', hex('Too large.'))],
  ['Auth failure. (memcached with flush_all disabled)', encodeError(0x08, OPAQUE, 0x20),
    packet('08', '0000', '00', '0020', '0000000d', '0000000000000000', hex('Auth failure.'))],
  ['a status with no text', encodeError(0x00, OPAQUE, 0x85), packet('00', '0000', '00', '0085', '00000000', '0000000000000000')],
];

describe('binary encoder: replies byte for byte as memcached 1.6.18', () => {
  it.each(CASES)('%s', (_name, got, want) => {
    expect(got.toString('hex')).toBe(want);
  });
});

describe('encodeResponse', () => {
  it('lays out extras, key, value, lengths, opaque and CAS', () => {
    const r = encodeResponse({
      opcode: 0x0c, opaque: 0xcafebabe, status: 0, cas: 0xffffffffffffffffn,
      extras: Buffer.from([1, 2, 3, 4]), key: Buffer.from('ab'), value: Buffer.from('xyz'),
    });
    expect(r.toString('hex')).toBe('810c000204000000' + '00000009' + 'cafebabe' + 'ffffffffffffffff' + '01020304' + hex('abxyz'));
  });

  it('never throws on out-of-range flags or arith values', () => {
    expect(() => encodeGetHit(get(0x00, 'k', false), { value: Buffer.alloc(0), flags: -1, cas: 0n })).not.toThrow();
    expect(() => encodeArithOutcome(arith(0x05, 'incr'), { status: 'ok', value: 1n << 64n, cas: 0n })).not.toThrow();
  });

  it('returns a fresh Buffer that does not alias the item', () => {
    const value = Buffer.from('hello');
    const r = encodeGetHit(get(0x00, 'k1', false), { value, flags: 0, cas: 1n });
    value.fill(0);
    expect(r.subarray(28).toString()).toBe('hello');
  });
});
