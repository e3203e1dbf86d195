// Property tests of the backend binary reply parser (what a memcached -S sends
// back): random bytes and valid responses, cut anywhere. Properties:
//   - nothing throws, whatever the bytes;
//   - the replies do not depend on how the bytes were cut;
//   - after a fatal result it keeps answering it and buffers nothing more.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BinaryReplyParser } from '../../src/protocol/backend/binary';
import type { ParseResult, ReplyKind } from '../../src/protocol/backend/meta';
import { cuts, split } from './cuts';
import { check, params, TEST_TIMEOUT_MS } from './fuzz-config';

const KINDS: ReplyKind[] = ['meta', 'line', 'stats', 'auth', 'metadump'];
const OPAQUE = 10;

const response = fc
  .record({
    magic: fc.constantFrom(0x81, 0x81, 0x81, 0x80, 0),
    opcode: fc.constantFrom(0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08, 0x0b, 0x0e, 0x0f, 0x10, 0x1c, 0x1d, 0x21, 0x50),
    status: fc.constantFrom(0, 0, 1, 2, 3, 5, 6, 0x20, 0x81, 0x84),
    opaque: fc.constantFrom(OPAQUE, OPAQUE, OPAQUE, 11),
    extras: fc.uint8Array({ maxLength: 8 }),
    key: fc.uint8Array({ maxLength: 8 }),
    value: fc.uint8Array({ maxLength: 200 }),
    cas: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  })
  .map((r) => {
    const h = Buffer.alloc(24);
    h[0] = r.magic;
    h[1] = r.opcode;
    h.writeUInt16BE(r.key.length, 2);
    h[4] = r.extras.length;
    h.writeUInt16BE(r.status, 6);
    h.writeUInt32BE(r.extras.length + r.key.length + r.value.length, 8);
    h.writeUInt32BE(r.opaque, 12);
    h.writeBigUInt64BE(r.cas, 16);
    return Buffer.concat([h, r.extras, r.key, r.value]);
  });

const stream = fc.oneof(
  fc.array(response, { minLength: 1, maxLength: 6 }).map((rs) => Buffer.concat(rs)),
  fc.uint8Array({ minLength: 1, maxLength: 400 }).map((b) => Buffer.from(b)),
);

/** Everything the parser gives for `chunks`, asking for `kind` replies to opaque "a" (10). */
function drain(chunks: Buffer[], kind: ReplyKind): ParseResult[] {
  const p = new BinaryReplyParser({ maxValueLength: 64 });
  const out: ParseResult[] = [];
  for (const c of chunks) {
    p.push(c);
    for (let r = p.next(kind, OPAQUE.toString(36)); r.kind !== 'more'; r = p.next(kind, OPAQUE.toString(36))) {
      out.push(r);
      if (r.kind === 'fatal') {
        expect(p.next(kind, 'a')).toEqual(r);
        p.push(Buffer.alloc(10));
        expect(p.buffered).toBe(0);
        return out;
      }
    }
  }
  return out;
}

describe('BinaryReplyParser (backend, memcached -S) properties', () => {
  it(
    'never throws, and the replies do not depend on the cuts',
    () =>
      check(
        'backend binary replies: cuts',
        fc.property(stream, fc.constantFrom(...KINDS), cuts, (bytes, kind, at) => {
          expect(drain(split(bytes, at), kind)).toEqual(drain([bytes], kind));
        }),
        params(400),
      ),
    TEST_TIMEOUT_MS,
  );
});
