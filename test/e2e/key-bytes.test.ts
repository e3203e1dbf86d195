// Keys through the proxy byte for byte, in both protocols, against memcached 1.6's own answers:
// every byte value 0x00-0xff at the start and the end of a key, sent to replicached (3 backends,
// 2 replicas) and to a lone memcached, must get the same reply bytes (VALUE lines echo the key),
// and each stored key must sit on exactly 2 backends under the very same bytes.

import { describe, expect, test } from 'vitest';
import { clusterBesideMemcached } from '../helpers/cluster';
import { binaryExchange, binaryPacket, textExchange, type BinaryPacket } from '../helpers/wire';

const ALL_BYTES = Array.from({ length: 256 }, (_, b) => b);
const hex = (b: number): string => `0x${b.toString(16).padStart(2, '0')}`;
/** The byte at both ends of the key: `<b>k<b>`. */
const keyWith = (b: number): Buffer => Buffer.from([b, 0x6b, b]);
const text = (...parts: Array<string | Buffer>): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));

const started = clusterBesideMemcached();

/** How many backends hold the key under exactly these bytes (asked with a binary GETK, which carries any byte). */
async function copiesOnBackends(key: Buffer): Promise<number> {
  const replies = await Promise.all(
    started.cluster.backends.map((b) => binaryExchange(b.port, [binaryPacket({ opcode: 0x0c, key })])),
  );
  return replies.filter(([r]) => r.status === 0 && r.key.equals(key)).length;
}

describe('text protocol', () => {
  /** A set, then a get, of `key`: memcached's tokenizer decides what the key really is. */
  const setGet = (key: Buffer): Buffer => text('set ', key, ' 7 0 1\r\nv\r\nget ', key, '\r\n');

  test('every byte value gives the reply memcached gives, byte for byte', async () => {
    const mismatches: string[] = [];
    for (const b of ALL_BYTES) {
      const input = setGet(keyWith(b));
      const [ours, theirs] = await Promise.all([textExchange(started.cluster.proxy.port, input), textExchange(started.reference.port, input)]);
      if (!ours.equals(theirs)) mismatches.push(`${hex(b)}: memcached ${JSON.stringify(theirs.toString('latin1'))}, replicached ${JSON.stringify(ours.toString('latin1'))}`);
    }
    expect(mismatches).toEqual([]);
  }, 60_000);

  test('stores every key memcached stores, on 2 backends, under the same bytes, and deletes it there', async () => {
    // Space, LF and NUL end a text key; every other byte belongs to it.
    const stored = ALL_BYTES.filter((b) => b !== 0x20 && b !== 0x0a && b !== 0x00);
    const missing: string[] = [];
    for (const b of stored) {
      const key = keyWith(b);
      const reply = await textExchange(started.cluster.proxy.port, setGet(key));
      expect(reply.equals(text('STORED\r\nVALUE ', key, ' 7 1\r\nv\r\nEND\r\n')), `${hex(b)}: ${JSON.stringify(reply.toString('latin1'))}`).toBe(true);
      const copies = await copiesOnBackends(key);
      if (copies !== 2) missing.push(`${hex(b)}: ${copies} copies`);
      // And a delete reaches both copies under the same bytes.
      expect((await textExchange(started.cluster.proxy.port, text('delete ', key, '\r\n'))).toString()).toBe('DELETED\r\n');
      const left = await copiesOnBackends(key);
      if (left !== 0) missing.push(`${hex(b)}: ${left} copies after delete`);
    }
    expect(missing).toEqual([]);
  }, 60_000);

  test("a CR that ends the line is not part of the key, one before it is (memcached's rule)", async () => {
    const input = 'set cr\r 0 0 1\r\nz\r\nget cr\r\r\nget cr\r\n';
    const ours = await textExchange(started.cluster.proxy.port, input);
    expect(ours.toString('latin1')).toBe('STORED\r\nVALUE cr\r 0 1\r\nz\r\nEND\r\nEND\r\n');
    expect(ours.equals(await textExchange(started.reference.port, input))).toBe(true);
  });

  test('250-byte keys of control bytes (memaslap\'s) are served; 251 bytes are refused as memcached refuses them', async () => {
    const control = Buffer.from(Array.from({ length: 250 }, (_, i) => (i % 31) + 1).map((b) => (b === 0x0a ? 0x10 : b)));
    for (const key of [Buffer.alloc(250, 0x10), control, Buffer.alloc(251, 0x10)]) {
      // Apart: memcached drops the replies still queued when a get fails in the same read.
      for (const input of [text('set ', key, ' 7 0 1\r\nv\r\n'), text('get ', key, '\r\n')]) {
        const ours = await textExchange(started.cluster.proxy.port, input);
        expect(ours.equals(await textExchange(started.reference.port, input)), `${key.length} bytes: ${ours.toString('latin1').slice(0, 80)}`).toBe(true);
      }
      if (key.length <= 250) expect(await copiesOnBackends(key)).toBe(2);
    }
  });
});

describe('binary protocol', () => {
  const SET = 0x01;
  const GETK = 0x0c;
  const setGetK = (key: Buffer): Buffer[] => [
    binaryPacket({ opcode: SET, key, extras: Buffer.from([0, 0, 0, 7, 0, 0, 0, 0]), value: Buffer.from('v'), opaque: 1 }),
    binaryPacket({ opcode: GETK, key, opaque: 2 }),
  ];
  /** A response without its CAS, which differs from one memcached to another. */
  const shown = (packets: BinaryPacket[]): string =>
    JSON.stringify(packets.map((p) => ({ ...p, cas: undefined, key: p.key.toString('hex'), extras: p.extras.toString('hex'), value: p.value.toString('latin1') })));

  test('every byte value, stored and read back like memcached, on 2 backends', async () => {
    const mismatches: string[] = [];
    for (const b of ALL_BYTES) {
      const key = keyWith(b);
      const [ours, theirs] = await Promise.all([binaryExchange(started.cluster.proxy.port, setGetK(key)), binaryExchange(started.reference.port, setGetK(key))]);
      if (shown(ours) !== shown(theirs)) mismatches.push(`${hex(b)}: memcached ${shown(theirs)}, replicached ${shown(ours)}`);
      const copies = await copiesOnBackends(key);
      if (copies !== 2) mismatches.push(`${hex(b)}: ${copies} copies`);
    }
    expect(mismatches).toEqual([]);
  }, 60_000);

  test('250 raw-safe bytes and 186 bytes of spaces are served like memcached', async () => {
    for (const key of [Buffer.alloc(250, 0x10), Buffer.alloc(250, 0x0d), Buffer.alloc(186, 0x20)]) {
      const [ours, theirs] = await Promise.all([binaryExchange(started.cluster.proxy.port, setGetK(key)), binaryExchange(started.reference.port, setGetK(key))]);
      expect(shown(ours)).toBe(shown(theirs));
      expect(await copiesOnBackends(key)).toBe(2);
    }
  });

  test('deliberately unlike memcached: a key over 186 bytes with a space, LF or NUL is refused, 0x0004', async () => {
    // The meta protocol carries such keys only in base64, limited to 250 characters.
    for (const byte of [0x20, 0x0a, 0x00]) {
      const key = Buffer.alloc(187, byte);
      const [set, get] = await binaryExchange(started.cluster.proxy.port, setGetK(key));
      expect([set.status, get.status]).toEqual([0x0004, 0x0004]);
      expect(set.value.toString()).toBe('Invalid arguments');
      const [mset] = await binaryExchange(started.reference.port, setGetK(key));
      expect(mset.status).toBe(0); // memcached stores it
    }
  });
});
