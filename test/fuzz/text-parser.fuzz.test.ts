// Property tests of the client text parser (fast-check): valid, random and mutated input,
// cut at random and at every split point. Properties:
//   - nothing throws, whatever the bytes;
//   - the requests do not depend on how the bytes were cut (no state leaks across pushes);
//   - after each push and drain, `buffered` stays under maxLineLength + maxItemSize + 2;
//   - a request after a garbage line (not a storage command, quit or HTTP probe, which
//     memcached itself never resyncs from) parses as it would on a fresh connection;
//   - returned keys and values are copies: zeroing the pushed chunks changes nothing.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, type Limits } from '../../src/protocol/limits';
import { TextParser, type TextRequest } from '../../src/protocol/text/parser';
import { cuts, split } from './cuts';
import { check, params, TEST_TIMEOUT_MS } from './fuzz-config';

// Small bounds so random input reaches them.
const LIMITS: Limits = { ...DEFAULT_LIMITS, maxLineLength: 1024, maxItemSize: 2048, maxKeysPerGet: 16 };
const BOUND = LIMITS.maxLineLength + LIMITS.maxItemSize + 2;

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

// ---- generators ----

// Any byte memcached's tokenizer leaves in a key: all but space, LF and NUL (issue 13).
const keyChar = fc
  .integer({ min: 0x01, max: 0xff })
  .filter((c) => c !== 0x20 && c !== 0x0a)
  .map((c) => String.fromCharCode(c));
// fast-check keeps lengths small by default; half the cases use the whole range.
const key = fc
  .oneof(fc.array(keyChar, { minLength: 1, maxLength: LIMITS.maxKeyLength }), fc.array(keyChar, { minLength: 1, maxLength: LIMITS.maxKeyLength, size: 'max' }))
  .map((a) => a.join(''));
const shortKey = fc.array(keyChar, { minLength: 1, maxLength: 20 }).map((a) => a.join(''));
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const exptime = fc.integer({ min: -1, max: 2 ** 31 - 1 });
const noreply = fc.boolean().map((b) => (b ? ' noreply' : ''));
const value = fc
  .oneof(fc.uint8Array({ maxLength: LIMITS.maxItemSize }), fc.uint8Array({ maxLength: LIMITS.maxItemSize, size: 'max' }))
  .map((a) => Buffer.from(a));

/** One valid request's bytes (a storage command with its data block). */
const validRequest: fc.Arbitrary<Buffer> = fc.oneof(
  fc
    .tuple(fc.constantFrom('get', 'gets', 'bget'), fc.array(shortKey, { minLength: 1, maxLength: LIMITS.maxKeysPerGet }))
    .map(([cmd, keys]) => latin1(`${cmd} ${keys.join(' ')}\r\n`)),
  fc
    .tuple(fc.constantFrom('gat', 'gats'), exptime, fc.array(shortKey, { minLength: 1, maxLength: 4 }))
    .map(([cmd, t, keys]) => latin1(`${cmd} ${t} ${keys.join(' ')}\r\n`)),
  fc
    .tuple(fc.constantFrom('set', 'add', 'replace', 'append', 'prepend'), key, u32, exptime, value, noreply)
    .map(([cmd, k, f, t, v, nr]) => Buffer.concat([latin1(`${cmd} ${k} ${f} ${t} ${v.length}${nr}\r\n`), v, latin1('\r\n')])),
  fc
    .tuple(key, u32, exptime, value, fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), noreply)
    .map(([k, f, t, v, c, nr]) => Buffer.concat([latin1(`cas ${k} ${f} ${t} ${v.length} ${c}${nr}\r\n`), v, latin1('\r\n')])),
  fc.tuple(key, noreply).map(([k, nr]) => latin1(`delete ${k}${nr}\r\n`)),
  fc
    .tuple(fc.constantFrom('incr', 'decr'), key, fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), noreply)
    .map(([op, k, d, nr]) => latin1(`${op} ${k} ${d}${nr}\r\n`)),
  fc.tuple(key, exptime, noreply).map(([k, t, nr]) => latin1(`touch ${k} ${t}${nr}\r\n`)),
  fc.constantFrom('version\r\n', 'stats\r\n', 'verbosity 1\r\n', 'flush_all\r\n', 'flush_all 10 noreply\r\n', 'get k\n').map(latin1),
  // Admin and meta commands answered by the parser itself; a refused ms's data block is swallowed.
  fc.constantFrom('mn\r\n', 'stats items\r\n', 'cache_memlimit 64\r\n', 'lru_crawler metadump all\r\n', 'mg k v\r\n').map(latin1),
  fc.tuple(key, value).map(([k, v]) => Buffer.concat([latin1(`ms ${k} ${v.length} T0\r\n`), v, latin1('\r\n')])),
);

const validStream = fc.array(validRequest, { minLength: 1, maxLength: 8 }).map((a) => Buffer.concat(a));

/** Bytes that look like the protocol: words, numbers, separators, and a few random bytes. */
const protocolish: fc.Arbitrary<Buffer> = fc
  .array(
    fc.oneof(
      fc.constantFrom('get', 'set', 'cas', 'incr', 'delete', 'touch', 'gat', 'noreply', 'quit', 'HTTP/1.1', 'stats', 'flush_all'),
      fc.constantFrom('ms', 'mg', 'mn', 'me', 'lru', 'lru_crawler', 'slabs', 'cache_memlimit', 'extstore', 'watch', 'tune', 'automove'),
      fc.constantFrom(' ', '  ', '\r\n', '\n', '\r', '\0', '-1', '4294967295', '18446744073709551616', '99999999999999999999999'),
      shortKey,
      fc.integer({ min: -5, max: 5000 }).map(String),
      fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a).toString('latin1')),
    ),
    { maxLength: 40 },
  )
  .map((parts) => latin1(parts.join('')));

const randomBytes = fc
  .oneof(fc.uint8Array({ maxLength: 4096 }), fc.uint8Array({ maxLength: 4096, size: 'max' }))
  .map((a) => Buffer.from(a));

/** Flips, inserts and deletes bytes of a valid stream. */
const mutated: fc.Arbitrary<Buffer> = fc
  .tuple(validStream, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'insert', 'delete')), { minLength: 1, maxLength: 8 }))
  .map(([buf, edits]) => {
    const bytes = [...buf];
    for (const [at, byte, op] of edits) {
      const i = bytes.length === 0 ? 0 : at % bytes.length;
      if (op === 'flip') bytes[i] = byte;
      else if (op === 'insert') bytes.splice(i, 0, byte);
      else bytes.splice(i, 1);
    }
    return Buffer.from(bytes);
  });

const anyInput = fc.oneof(validStream, protocolish, randomBytes, mutated);

// ---- the parser under test ----

/** Pushes each chunk (a private copy, zeroed once drained) and drains; checks the memory bound each time. */
function parse(chunks: Buffer[], parser = new TextParser(LIMITS)): TextRequest[] {
  const out: TextRequest[] = [];
  for (const original of chunks) {
    const chunk = Buffer.from(original);
    parser.push(chunk);
    for (let r = parser.next(); r !== null; r = parser.next()) out.push(r);
    expect(parser.buffered).toBeLessThanOrEqual(BOUND);
    chunk.fill(0); // the parser promised not to keep a reference
  }
  return out;
}

const closes = (r: TextRequest): boolean => r.kind === 'quit' || (r.kind === 'error' && r.close);

describe('text parser, fuzzed', () => {
  it(
    'valid requests parse to no error, whatever the cuts',
    async () => {
      await check(
        'text: valid stream, random cuts',
        fc.property(validStream, cuts, (buf, points) => {
          const whole = parse([buf]);
          expect(whole.filter((r) => r.kind === 'error')).toEqual([]);
          expect(parse(split(buf, points))).toEqual(whole);
        }),
        params(200),
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'every split point of a request gives the same result',
    async () => {
      await check(
        'text: every split point',
        fc.property(validRequest.filter((b) => b.length < 600), (buf) => {
          const whole = parse([buf]);
          expect(whole.length).toBeGreaterThan(0);
          for (let i = 1; i < buf.length; i++) expect(parse([buf.subarray(0, i), buf.subarray(i)])).toEqual(whole);
        }),
        params(25, 0.1),
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'random, protocol-like and mutated bytes: no throw, bounded, independent of the cuts',
    async () => {
      await check(
        'text: hostile input, random cuts',
        fc.property(anyInput, cuts, (buf, points) => {
          const whole = parse([buf]);
          expect(parse(split(buf, points))).toEqual(whole);
          // One byte at a time too: the worst case for the incremental line search.
          if (buf.length < 512) expect(parse([...buf].map((b) => Buffer.from([b])))).toEqual(whole);
        }),
        params(250),
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a request after a garbage line parses as on a fresh connection',
    async () => {
      const garbageLine = fc
        .uint8Array({ maxLength: 600, size: 'max' })
        .map((a) => Buffer.from(a.filter((b) => b !== 0x0a)))
        .filter((line) => {
          // memcached cannot resync after these either: a storage header takes the next
          // bytes as its data, quit and an HTTP probe close the connection.
          const nul = line.indexOf(0);
          const text = line.subarray(0, nul < 0 ? line.length : nul).toString('latin1');
          const first = text.replace(/\r$/, '').split(' ').find((w) => w !== '') ?? '';
          return !['set', 'add', 'replace', 'append', 'prepend', 'cas', 'quit'].includes(first) && !text.includes('HTTP/');
        });
      await check(
        'text: resync after garbage',
        fc.property(fc.array(garbageLine, { minLength: 1, maxLength: 4 }), validRequest, cuts, (lines, request, points) => {
          const garbage = Buffer.concat(lines.flatMap((l) => [l, latin1('\r\n')]));
          const expected = parse([request]);
          const got = parse(split(Buffer.concat([garbage, request]), points));
          expect(got.some(closes)).toBe(false);
          expect(got.slice(got.length - expected.length)).toEqual(expected);
        }),
        params(200),
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'after a closing reply nothing more is parsed',
    async () => {
      await check(
        'text: closed stays closed',
        fc.property(fc.constantFrom('quit\r\n', 'GET / HTTP/1.1\r\n', 'x'.repeat(LIMITS.maxLineLength + 1)), anyInput, (closer, rest) => {
          const p = new TextParser(LIMITS);
          const out = parse([latin1(closer)], p);
          expect(out.length).toBe(1);
          expect(closes(out[0])).toBe(true);
          expect(parse([rest, latin1('get k\r\n')], p)).toEqual([]);
          expect(p.buffered).toBe(0);
        }),
        params(100),
      );
    },
    TEST_TIMEOUT_MS,
  );

  it('an endless line is refused once it passes maxLineLength, holding at most that much', () => {
    const p = new TextParser(LIMITS);
    const out: TextRequest[] = [];
    const chunk = Buffer.alloc(100, 0x61);
    for (let i = 0; i < 10_000; i++) {
      p.push(chunk);
      for (let r = p.next(); r !== null; r = p.next()) out.push(r);
      expect(p.buffered).toBeLessThanOrEqual(LIMITS.maxLineLength);
    }
    expect(out).toEqual([{ kind: 'error', reply: latin1('CLIENT_ERROR line too long\r\n'), close: true }]);
  });
});
