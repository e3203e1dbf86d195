import { describe, expect, it } from 'vitest';
import * as enc from '../../src/protocol/text/encoder';
import type { Item } from '../../src/protocol/types';

const text = (b: Buffer | Buffer[]): string => (Array.isArray(b) ? Buffer.concat(b) : b).toString('latin1');
const item = (value: string | Buffer, flags = 0, cas = 0n): Item => ({
  value: typeof value === 'string' ? Buffer.from(value, 'latin1') : value,
  flags,
  cas,
});

// Expected bytes below are memcached 1.6.18's own replies (seen on the wire).
describe('text encoder', () => {
  it('has memcached reply lines as constants', () => {
    const table: Array<[Buffer, string]> = [
      [enc.END, 'END\r\n'],
      [enc.STORED, 'STORED\r\n'],
      [enc.NOT_STORED, 'NOT_STORED\r\n'],
      [enc.EXISTS, 'EXISTS\r\n'],
      [enc.NOT_FOUND, 'NOT_FOUND\r\n'],
      [enc.DELETED, 'DELETED\r\n'],
      [enc.TOUCHED, 'TOUCHED\r\n'],
      [enc.OK, 'OK\r\n'],
      [enc.ERROR, 'ERROR\r\n'],
      [enc.SERVER_ERROR_TOO_LARGE, 'SERVER_ERROR object too large for cache\r\n'],
      [enc.CLIENT_ERROR_BAD_FORMAT, 'CLIENT_ERROR bad command line format\r\n'],
      [enc.CLIENT_ERROR_BAD_DATA_CHUNK, 'CLIENT_ERROR bad data chunk\r\n'],
      [enc.CLIENT_ERROR_INVALID_EXPTIME, 'CLIENT_ERROR invalid exptime argument\r\n'],
      [enc.CLIENT_ERROR_INVALID_DELTA, 'CLIENT_ERROR invalid numeric delta argument\r\n'],
      [enc.CLIENT_ERROR_NON_NUMERIC, 'CLIENT_ERROR cannot increment or decrement non-numeric value\r\n'],
      [enc.CLIENT_ERROR_DELETE_USAGE, 'CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n'],
      [enc.ERROR_SHUTDOWN_NOT_ENABLED, 'ERROR: shutdown not enabled\r\n'],
      // Ours, not memcached's:
      [enc.SERVER_ERROR_UNAVAILABLE, 'SERVER_ERROR backend unavailable\r\n'],
      [enc.CLIENT_ERROR_LINE_TOO_LONG, 'CLIENT_ERROR line too long\r\n'],
      [enc.CLIENT_ERROR_TOO_MANY_KEYS, 'CLIENT_ERROR too many keys\r\n'],
    ];
    for (const [bytes, expected] of table) expect(text(bytes)).toBe(expected);
  });

  it('encodes a hit as VALUE <key> <flags> <bytes>[ <cas>]', () => {
    const key = Buffer.from('k');
    expect(text(enc.encodeValue(key, item('a'), false))).toBe('VALUE k 0 1\r\na\r\n');
    expect(text(enc.encodeValue(key, item('z', 0, 34n), true))).toBe('VALUE k 0 1 34\r\nz\r\n');
    expect(text(enc.encodeValue(key, item('', 4294967295, 18446744073709551615n), true))).toBe(
      'VALUE k 4294967295 0 18446744073709551615\r\n\r\n',
    );
    // Binary keys and values are copied byte for byte.
    const binary = Buffer.from([0x00, 0xff, 0x0d, 0x0a]);
    expect(Buffer.concat(enc.encodeValue(Buffer.from([0xc3, 0xa9]), item(binary, 3), false))).toEqual(
      Buffer.concat([Buffer.from('VALUE '), Buffer.from([0xc3, 0xa9]), Buffer.from(' 3 4\r\n'), binary, Buffer.from('\r\n')]),
    );
  });

  it('sends small values as one buffer and large ones without copying them', () => {
    const small = enc.encodeValue(Buffer.from('k'), item('x'.repeat(100)), false);
    expect(small).toHaveLength(1);
    const big = Buffer.alloc(1024 * 1024, 0x62);
    const parts = enc.encodeValue(Buffer.from('big'), item(big, 9, 7n), true);
    expect(parts).toHaveLength(3);
    expect(parts[1]).toBe(big);
    expect(text(parts[0])).toBe('VALUE big 9 1048576 7\r\n');
    expect(text(parts[2])).toBe('\r\n');
    // Around the threshold both forms carry the same bytes.
    for (const n of [16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1]) {
      const v = Buffer.alloc(n, 0x63);
      expect(Buffer.concat(enc.encodeValue(Buffer.from('t'), item(v), false))).toEqual(
        Buffer.concat([Buffer.from(`VALUE t 0 ${n}\r\n`), v, Buffer.from('\r\n')]),
      );
    }
  });

  it('encodes storage outcomes', () => {
    expect(text(enc.encodeStoreOutcome({ status: 'stored', cas: 5n }))).toBe('STORED\r\n');
    expect(text(enc.encodeStoreOutcome({ status: 'not_stored' }))).toBe('NOT_STORED\r\n');
    expect(text(enc.encodeStoreOutcome({ status: 'exists' }))).toBe('EXISTS\r\n');
    expect(text(enc.encodeStoreOutcome({ status: 'not_found' }))).toBe('NOT_FOUND\r\n');
    expect(text(enc.encodeStoreOutcome({ status: 'unavailable' }))).toBe('SERVER_ERROR backend unavailable\r\n');
  });

  it('encodes delete, touch and flush outcomes', () => {
    expect(text(enc.encodeDeleteOutcome({ status: 'deleted' }))).toBe('DELETED\r\n');
    expect(text(enc.encodeDeleteOutcome({ status: 'not_found' }))).toBe('NOT_FOUND\r\n');
    expect(text(enc.encodeDeleteOutcome({ status: 'exists' }))).toBe('EXISTS\r\n');
    expect(text(enc.encodeDeleteOutcome({ status: 'unavailable' }))).toBe('SERVER_ERROR backend unavailable\r\n');
    expect(text(enc.encodeTouchOutcome({ status: 'touched' }))).toBe('TOUCHED\r\n');
    expect(text(enc.encodeTouchOutcome({ status: 'not_found' }))).toBe('NOT_FOUND\r\n');
    expect(text(enc.encodeTouchOutcome({ status: 'unavailable' }))).toBe('SERVER_ERROR backend unavailable\r\n');
    expect(text(enc.encodeFlushOutcome({ status: 'ok' }))).toBe('OK\r\n');
    expect(text(enc.encodeFlushOutcome({ status: 'unavailable' }))).toBe('SERVER_ERROR backend unavailable\r\n');
  });

  it('encodes incr/decr results in decimal', () => {
    expect(text(enc.encodeArithOutcome({ status: 'ok', value: 15n, cas: 1n }))).toBe('15\r\n');
    expect(text(enc.encodeArithOutcome({ status: 'ok', value: 0n, cas: 1n }))).toBe('0\r\n');
    expect(text(enc.encodeArithOutcome({ status: 'ok', value: 18446744073709551615n, cas: 1n }))).toBe('18446744073709551615\r\n');
    expect(text(enc.encodeArithOutcome({ status: 'not_found' }))).toBe('NOT_FOUND\r\n');
    expect(text(enc.encodeArithOutcome({ status: 'non_numeric' }))).toBe(
      'CLIENT_ERROR cannot increment or decrement non-numeric value\r\n',
    );
    expect(text(enc.encodeArithOutcome({ status: 'unavailable' }))).toBe('SERVER_ERROR backend unavailable\r\n');
  });

  it('encodes stats and version', () => {
    expect(text(enc.encodeStats([]))).toBe('END\r\n');
    expect(text(enc.encodeStats([['pid', 42], ['version', '0.1.0'], ['total_items', 18446744073709551615n]]))).toBe(
      'STAT pid 42\r\nSTAT version 0.1.0\r\nSTAT total_items 18446744073709551615\r\nEND\r\n',
    );
    expect(text(enc.encodeVersion('1.6.18'))).toBe('VERSION 1.6.18\r\n');
  });
});
