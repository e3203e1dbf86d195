// Shared by the replication tests: a raw client for pipelined text and binary
// requests, direct reads from each memcached (bypassing the proxy), and the
// key's placement as every replicached computes it.

import net from 'node:net';
import type { MemcachedNode } from '../../src/routing/node';
import { ReplicaRing } from '../../src/routing/ring';
import { binaryPacket, parsePackets } from '../helpers/wire';

/** A connection that sends raw bytes and reads replies as they come. */
export class RawClient {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  closed = false;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => {});
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new RawClient(s)));
      s.setNoDelay(true);
      s.once('error', reject);
    });
  }

  send(bytes: Buffer | string): void {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  /** Waits until `complete(buffered)` returns a length, then takes that many bytes. */
  async read(complete: (buf: Buffer) => number | null, timeoutMs = 15_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const n = complete(this.buf);
      if (n !== null) {
        const out = this.buf.subarray(0, n);
        this.buf = this.buf.subarray(n);
        return out;
      }
      if (this.closed) throw new Error(`connection closed; got ${JSON.stringify(this.buf.toString('latin1'))}`);
      if (Date.now() > deadline) throw new Error(`no complete reply; got ${JSON.stringify(this.buf.toString('latin1'))}`);
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 200);
      });
      this.waiter = null;
    }
  }

  /** Text: sends `request` and reads until `lines` reply terminators (END, STORED, DELETED, ...) have come. */
  async text(request: string, terminators: number, timeoutMs?: number): Promise<string> {
    this.send(request);
    const reply = await this.read((b) => textRepliesLength(b, terminators), timeoutMs);
    return reply.toString('latin1');
  }

  /** Binary: reads `count` response packets. */
  async packets(count: number): Promise<BinaryResponse[]> {
    const raw = await this.read((b) => packetsLength(b, count));
    return parsePackets(raw).packets.map((p) => ({
      opcode: p.opcode,
      status: p.status,
      opaque: p.opaque,
      cas: p.cas,
      key: p.key.toString('latin1'),
      value: p.value.toString('latin1'),
    }));
  }

  close(): void {
    this.socket.destroy();
  }
}

const TEXT_TERMINATOR =
  /^(END|STORED|NOT_STORED|EXISTS|NOT_FOUND|DELETED|TOUCHED|OK|ERROR|\d+|(CLIENT|SERVER)_ERROR[^\r]*)\r\n/;

/** Bytes taken by `count` complete text replies at the start of `buf`, or null. VALUE blocks are skipped whole. */
function textRepliesLength(buf: Buffer, count: number): number | null {
  let at = 0;
  let seen = 0;
  const s = buf.toString('latin1');
  while (seen < count) {
    const eol = s.indexOf('\r\n', at);
    if (eol < 0) return null;
    const line = s.slice(at, eol);
    const value = /^VALUE \S+ \d+ (\d+)/.exec(line);
    if (value) {
      at = eol + 2 + Number(value[1]) + 2;
      if (at > s.length) return null;
      continue;
    }
    if (!TEXT_TERMINATOR.test(s.slice(at, eol + 2))) throw new Error(`unexpected reply line ${JSON.stringify(line)}`);
    at = eol + 2;
    seen++;
  }
  return at;
}

function packetsLength(buf: Buffer, count: number): number | null {
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (buf.length < at + 24) return null;
    at += 24 + buf.readUInt32BE(at + 8);
    if (buf.length < at) return null;
  }
  return at;
}

export interface BinaryResponse {
  opcode: number;
  status: number;
  opaque: number;
  cas: bigint;
  key: string;
  value: string;
}

export const Op = {
  get: 0x00,
  set: 0x01,
  add: 0x02,
  delete: 0x04,
  increment: 0x05,
  noop: 0x0a,
  getk: 0x0c,
  append: 0x0e,
  setq: 0x11,
  deleteq: 0x14,
  appendq: 0x19,
} as const;

/** One binary request packet (test/helpers/wire.ts's binaryPacket, with latin1 key and value). */
export function packet(
  opcode: number,
  o: { key?: string; value?: string; extras?: Buffer; cas?: bigint; opaque?: number } = {},
): Buffer {
  const key = Buffer.from(o.key ?? '', 'latin1');
  const value = Buffer.from(o.value ?? '', 'latin1');
  return binaryPacket({ opcode, key, value, extras: o.extras, cas: o.cas, opaque: o.opaque });
}

/** SET/ADD extras: flags and expiry. */
export function storeExtras(flags = 0, exptime = 0): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(flags, 0);
  b.writeUInt32BE(exptime, 4);
  return b;
}

/** INCR/DECR extras: delta, initial value, expiry (0xffffffff: do not create). */
export function arithExtras(delta: bigint, initial: bigint, exptime: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeBigUInt64BE(delta, 0);
  b.writeBigUInt64BE(initial, 8);
  b.writeUInt32BE(exptime >>> 0, 16);
  return b;
}

/** The length of the `mg ... v` reply at the head of `b` (VA with its value, or one line), or null until it is all there. */
export function mgReplyLength(b: Buffer): number | null {
  const s = b.toString('latin1');
  const eol = s.indexOf('\r\n');
  if (eol < 0) return null;
  const m = /^VA (\d+)/.exec(s);
  if (!m) return eol + 2;
  const end = eol + 2 + Number(m[1]) + 2;
  return s.length >= end ? end : null;
}

/** What one memcached holds for `key`, read directly: value, flags and remaining TTL (-1: none), or null. */
export async function itemOn(port: number, key: string): Promise<{ value: string; flags: number; ttl: number } | null> {
  const c = await RawClient.connect(port);
  try {
    c.send(`mg ${key} v f t\r\n`);
    const reply = await c.read(mgReplyLength);
    const s = reply.toString('latin1');
    if (s.startsWith('EN')) return null;
    const m = /^VA \d+ (.*)\r\n([\s\S]*)\r\n$/.exec(s);
    if (!m) throw new Error(`unexpected mg reply ${JSON.stringify(s)}`);
    const flags = Number(/\bf(\d+)/.exec(m[1])?.[1] ?? 0);
    const ttl = Number(/\bt(-?\d+)/.exec(m[1])?.[1] ?? -1);
    return { value: m[2], flags, ttl };
  } finally {
    c.close();
  }
}

/** The values every listed memcached holds for `key` (null: none), in the order given. */
export function valuesOn(ports: number[], key: string): Promise<Array<string | null>> {
  return Promise.all(ports.map(async (p) => (await itemOn(p, key))?.value ?? null));
}

/** Ring order of `key` over `addresses` (every replicached computes the same): authority first. Weights: 1 each unless given. */
export function ringOrder(addresses: string[], key: string, weights?: number[]): string[] {
  const nodes = addresses.map((address) => ({ address, isUp: () => true }) as unknown as MemcachedNode);
  const ring = new ReplicaRing(
    nodes.map((node, i) => ({ node, weight: weights?.[i] ?? 1 })),
    addresses.length,
  );
  return ring.ringOrder(Buffer.from(key, 'latin1')).map((n) => n.address);
}

/** A key whose ring order over `addresses` starts with `first` then `second` (found by trying names). */
export function keyPlacedOn(addresses: string[], first: string, second: string, prefix: string): string {
  for (let i = 0; ; i++) {
    const key = `${prefix}-${i}`;
    const order = ringOrder(addresses, key);
    if (order[0] === first && order[1] === second) return key;
  }
}

/** A small seeded PRNG (mulberry32): the same seed gives the same run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Shuffles in place with `rng` (Fisher-Yates). */
export function shuffle<T>(items: T[], rng: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}
