// Property tests of the client binary parser (fast-check): valid, random and mutated
// frames, cut at random and at every split point. Properties:
//   - nothing throws, whatever the bytes;
//   - the requests do not depend on how the bytes were cut;
//   - after each push and drain, `buffered` stays under one header + extras + key + value;
//   - garbage closes: after an error with `close`, nothing more is ever parsed;
//   - an unknown opcode or a too-large value is skipped by its body length and the next
//     frame parses as on a fresh connection (where the protocol allows a resync).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, type Limits } from '../../src/protocol/limits';
import { BinaryParser, type BinaryRequest } from '../../src/protocol/binary/parser';
import { cuts, split } from './cuts';
import { check, params, TEST_TIMEOUT_MS } from './fuzz-config';

const LIMITS: Limits = { ...DEFAULT_LIMITS, maxItemSize: 2048 };
const HEADER = 24;
const MAX_EXTRAS = 20;
const BOUND = HEADER + MAX_EXTRAS + LIMITS.maxKeyLength + LIMITS.maxItemSize;

interface Frame {
  magic?: number;
  opcode: number;
  extras?: Buffer;
  key?: Buffer;
  value?: Buffer;
  opaque?: number;
  cas?: bigint;
  bodylen?: number;
}

function encode(f: Frame): Buffer {
  const extras = f.extras ?? Buffer.alloc(0);
  const key = f.key ?? Buffer.alloc(0);
  const value = f.value ?? Buffer.alloc(0);
  const h = Buffer.alloc(HEADER);
  h[0] = f.magic ?? 0x80;
  h[1] = f.opcode;
  h.writeUInt16BE(key.length, 2);
  h[4] = extras.length;
  h.writeUInt32BE(f.bodylen ?? extras.length + key.length + value.length, 8);
  h.writeUInt32BE(f.opaque ?? 0, 12);
  h.writeBigUInt64BE(f.cas ?? 0n, 16);
  return Buffer.concat([h, extras, key, value]);
}

// ---- generators ----

// fast-check keeps lengths small by default; half the cases use the whole range.
const bytes = (min: number, max: number): fc.Arbitrary<Buffer> =>
  fc
    .oneof(fc.uint8Array({ minLength: min, maxLength: max }), fc.uint8Array({ minLength: min, maxLength: max, size: 'max' }))
    .map((a) => Buffer.from(a));
const key = bytes(1, LIMITS.maxKeyLength);
const opaque = fc.integer({ min: 0, max: 0xffffffff });
const cas = fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));

const validFrame: fc.Arbitrary<Buffer> = fc.oneof(
  // GET GETQ GETK GETKQ DELETE DELETEQ
  fc.tuple(fc.constantFrom(0x00, 0x09, 0x0c, 0x0d, 0x04, 0x14), key, opaque).map(([opcode, k, o]) => encode({ opcode, key: k, opaque: o })),
  // SET ADD REPLACE (+Q), flags and exptime in 8 bytes of extras
  fc
    .tuple(fc.constantFrom(0x01, 0x02, 0x03, 0x11, 0x12, 0x13), bytes(8, 8), key, bytes(0, LIMITS.maxItemSize), opaque, cas)
    .map(([opcode, x, k, v, o, c]) => encode({ opcode, extras: x, key: k, value: v, opaque: o, cas: c })),
  // APPEND PREPEND (+Q)
  fc
    .tuple(fc.constantFrom(0x0e, 0x0f, 0x19, 0x1a), key, bytes(0, 256), opaque)
    .map(([opcode, k, v, o]) => encode({ opcode, key: k, value: v, opaque: o })),
  // INCR DECR (+Q): delta, initial, exptime
  fc.tuple(fc.constantFrom(0x05, 0x06, 0x15, 0x16), bytes(20, 20), key, opaque).map(([opcode, x, k, o]) => encode({ opcode, extras: x, key: k, opaque: o })),
  // TOUCH GAT GATQ GATK GATKQ
  fc.tuple(fc.constantFrom(0x1c, 0x1d, 0x1e, 0x23, 0x24), bytes(4, 4), key, opaque).map(([opcode, x, k, o]) => encode({ opcode, extras: x, key: k, opaque: o })),
  // FLUSH FLUSHQ, with or without a delay
  fc.tuple(fc.constantFrom(0x08, 0x18), fc.oneof(bytes(0, 0), bytes(4, 4))).map(([opcode, x]) => encode({ opcode, extras: x })),
  // NOOP VERSION STAT
  fc.constantFrom(0x0a, 0x0b).map((opcode) => encode({ opcode })),
  fc.constantFrom('', 'items', 'slabs').map((g) => encode({ opcode: 0x10, key: Buffer.from(g) })),
);

const validStream = fc.array(validFrame, { minLength: 1, maxLength: 6 }).map((a) => Buffer.concat(a));

/** Frames whose body the parser must skip: unknown opcodes, values over maxItemSize. */
const skippedFrame: fc.Arbitrary<Buffer> = fc.oneof(
  fc
    .tuple(fc.integer({ min: 0x25, max: 0xff }), bytes(0, 300), opaque)
    .map(([opcode, body, o]) => encode({ opcode, value: body, opaque: o })),
  fc
    .tuple(key, fc.integer({ min: LIMITS.maxItemSize + 1, max: LIMITS.maxItemSize + 600 }))
    .map(([k, n]) => encode({ opcode: 0x01, extras: Buffer.alloc(8), key: k, value: Buffer.alloc(n, 0x76) })),
);

/** Headers with lengths that lie or exceed the bounds: huge bodies, keys over 250, extras of any size. */
const lyingHeader: fc.Arbitrary<Buffer> = fc
  .tuple(fc.integer({ min: 0, max: 0x30 }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xff }), fc.integer({ min: 0, max: 0xffffffff }))
  .map(([opcode, keylen, extlen, bodylen]) => {
    const h = Buffer.alloc(HEADER);
    h[0] = 0x80;
    h[1] = opcode;
    h.writeUInt16BE(keylen, 2);
    h[4] = extlen;
    h.writeUInt32BE(bodylen, 8);
    return h;
  });

const mutated: fc.Arbitrary<Buffer> = fc
  .tuple(validStream, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }))
  .map(([buf, flips]) => {
    const out = Buffer.from(buf);
    for (const [at, b] of flips) out[at % out.length] = b;
    return out;
  });

const anyInput = fc.oneof(
  validStream,
  bytes(0, 4096),
  mutated,
  fc.tuple(lyingHeader, bytes(0, 2048)).map(([h, rest]) => Buffer.concat([h, rest])),
  fc.array(fc.oneof(validFrame, skippedFrame, lyingHeader), { maxLength: 6 }).map((a) => Buffer.concat(a)),
);

/** Pushes each chunk and drains; checks the memory bound and that a closing error is the last request. */
function parse(chunks: Buffer[], parser = new BinaryParser(LIMITS)): BinaryRequest[] {
  const out: BinaryRequest[] = [];
  for (const chunk of chunks) {
    parser.push(chunk);
    for (let r = parser.next(); r !== null; r = parser.next()) out.push(r);
    expect(parser.buffered).toBeLessThanOrEqual(BOUND);
  }
  const closing = out.findIndex((r) => r.kind === 'quit' || (r.kind === 'error' && r.close));
  if (closing >= 0 && out[closing].kind === 'error') expect(closing).toBe(out.length - 1);
  return out;
}

describe('binary parser, fuzzed', () => {
  it(
    'valid frames parse to no error, whatever the cuts',
    async () => {
      await check(
        'binary: valid stream, random cuts',
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
    'every split point of a frame gives the same result',
    async () => {
      await check(
        'binary: every split point',
        fc.property(validFrame.filter((b) => b.length < 600), (buf) => {
          const whole = parse([buf]);
          expect(whole.length).toBe(1);
          for (let i = 1; i < buf.length; i++) expect(parse([buf.subarray(0, i), buf.subarray(i)])).toEqual(whole);
        }),
        params(25, 0.1),
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'random, lying and mutated frames: no throw, bounded, independent of the cuts',
    async () => {
      await check(
        'binary: hostile input, random cuts',
        fc.property(anyInput, cuts, (buf, points) => {
          const whole = parse([buf]);
          expect(parse(split(buf, points))).toEqual(whole);
          if (buf.length < 512) expect(parse([...buf].map((b) => Buffer.from([b])))).toEqual(whole);
        }),
        params(250),
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a skipped frame (unknown opcode, value too large) leaves the next frame intact',
    async () => {
      await check(
        'binary: resync after a skipped frame',
        fc.property(fc.array(skippedFrame, { minLength: 1, maxLength: 3 }), validFrame, cuts, (skipped, frame, points) => {
          const expected = parse([frame]);
          const got = parse(split(Buffer.concat([...skipped, frame]), points));
          expect(got.slice(0, skipped.length).every((r) => r.kind === 'error' && !r.close)).toBe(true);
          expect(got.slice(skipped.length)).toEqual(expected);
        }),
        params(200),
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'garbage closes: after a closing error nothing more is parsed, and nothing is held',
    async () => {
      const closer = fc.oneof(
        // bad magic
        fc.tuple(fc.integer({ min: 0, max: 255 }).filter((m) => m !== 0x80), bytes(23, 23)).map(([m, rest]) => Buffer.concat([Buffer.from([m]), rest])),
        // key longer than extras + key fit in the body / than maxKeyLength
        fc.integer({ min: 1, max: 0xffff }).map((k) => {
          const h = encode({ opcode: 0x00 });
          h.writeUInt16BE(k, 2); // bodylen stays 0
          return h;
        }),
        fc.integer({ min: LIMITS.maxKeyLength + 1, max: 0xffff }).map((k) => {
          const h = encode({ opcode: 0x00 });
          h.writeUInt16BE(k, 2);
          h.writeUInt32BE(k, 8);
          return h;
        }),
      );
      await check(
        'binary: closed stays closed',
        fc.property(closer, fc.array(validFrame, { maxLength: 3 }), cuts, (bad, after, points) => {
          const p = new BinaryParser(LIMITS);
          const got = parse(split(Buffer.concat([bad, ...after]), points), p);
          expect(got.length).toBe(1);
          expect(got[0]).toMatchObject({ kind: 'error', close: true });
          expect(parse([encode({ opcode: 0x0a })], p)).toEqual([]);
          expect(p.buffered).toBe(0);
        }),
        params(200),
      );
    },
    TEST_TIMEOUT_MS,
  );

  it('a body length of 4 GiB that never comes holds only what arrived of the header', () => {
    const p = new BinaryParser(LIMITS);
    const h = Buffer.alloc(HEADER);
    h[0] = 0x80;
    h[1] = 0x01; // SET
    h.writeUInt16BE(3, 2);
    h[4] = 8;
    h.writeUInt32BE(0xffffffff, 8);
    p.push(h);
    // As memcached, a SET's extras and key are read before its value is refused.
    expect(p.next()).toBeNull();
    p.push(Buffer.concat([Buffer.alloc(8), Buffer.from('abc')]));
    expect(p.next()).toMatchObject({ kind: 'error', status: 0x03, close: false, dropStale: Buffer.from('abc') });
    for (let i = 0; i < 1000; i++) {
      p.push(Buffer.alloc(4096));
      expect(p.next()).toBeNull();
      expect(p.buffered).toBe(0);
    }
  });
});
