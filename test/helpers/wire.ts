// Raw protocol exchanges for tests that compare replicached's bytes with memcached's.
//
//   await textExchange(port, 'set k 0 0 1\r\nv\r\nget k\r\n')   // every reply byte, up to "mn"'s MN
//   await binaryExchange(port, [binaryPacket({ opcode: 0x01, ... })])  // every response packet, up to NOOP's

import net from 'node:net';

/** Sends `request` on a fresh connection and resolves with every byte received once `complete` holds. */
export function exchange(port: number, request: Buffer, complete: (reply: Buffer) => boolean, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(request));
    let reply = Buffer.alloc(0);
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`incomplete reply: ${JSON.stringify(reply.toString('latin1').slice(-500))}`)));
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      reply = Buffer.concat([reply, d]);
      if (complete(reply)) {
        socket.destroy();
        resolve(reply);
      }
    });
    socket.on('close', () => reject(new Error(`closed after ${JSON.stringify(reply.toString('latin1').slice(-500))}`)));
  });
}

const MN = Buffer.from('MN\r\n');

/** How many lines of `text` are exactly `line` (CRLF-ended). */
function countLines(text: Buffer, line: Buffer): number {
  let n = 0;
  for (let at = text.indexOf(line); at >= 0; at = text.indexOf(line, at + 1)) {
    if (at === 0 || text[at - 1] === 0x0a) n++;
  }
  return n;
}

/**
 * Sends `input` then `mn` (a no-op both memcached and replicached answer MN); the replies before
 * that MN. The input's own `mn` lines are counted: their MN can arrive before the rest.
 */
export async function textExchange(port: number, input: Buffer | string): Promise<Buffer> {
  const body = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const request = Buffer.concat([body, Buffer.from('mn\r\n')]);
  const sentinels = countLines(request, Buffer.from('mn\r\n'));
  const reply = await exchange(
    port,
    request,
    (r) => r.length >= MN.length && r.subarray(r.length - MN.length).equals(MN) && countLines(r, MN) >= sentinels,
  );
  return reply.subarray(0, reply.length - MN.length);
}

export interface BinaryPacket {
  magic: number;
  opcode: number;
  key: Buffer;
  extras: Buffer;
  value: Buffer;
  /** Response status (request: vbucket). */
  status: number;
  opaque: number;
  cas: bigint;
}

/** A binary request; fields left out are empty or zero. */
export function binaryPacket(p: Partial<BinaryPacket> & { opcode: number }): Buffer {
  const key = p.key ?? Buffer.alloc(0);
  const extras = p.extras ?? Buffer.alloc(0);
  const value = p.value ?? Buffer.alloc(0);
  const header = Buffer.alloc(24);
  header[0] = p.magic ?? 0x80;
  header[1] = p.opcode;
  header.writeUInt16BE(key.length, 2);
  header[4] = extras.length;
  header.writeUInt16BE(p.status ?? 0, 6);
  header.writeUInt32BE(extras.length + key.length + value.length, 8);
  header.writeUInt32BE(p.opaque ?? 0, 12);
  header.writeBigUInt64BE(p.cas ?? 0n, 16);
  return Buffer.concat([header, extras, key, value]);
}

/** Splits complete packets off `buf`; the rest (an incomplete packet) is returned as `rest`. */
export function parsePackets(buf: Buffer): { packets: BinaryPacket[]; rest: Buffer } {
  const packets: BinaryPacket[] = [];
  let at = 0;
  while (buf.length - at >= 24 && buf.length - at >= 24 + buf.readUInt32BE(at + 8)) {
    const keylen = buf.readUInt16BE(at + 2);
    const extlen = buf[at + 4];
    const bodylen = buf.readUInt32BE(at + 8);
    const body = buf.subarray(at + 24, at + 24 + bodylen);
    packets.push({
      magic: buf[at],
      opcode: buf[at + 1],
      status: buf.readUInt16BE(at + 6),
      opaque: buf.readUInt32BE(at + 12),
      cas: buf.readBigUInt64BE(at + 16),
      extras: body.subarray(0, extlen),
      key: body.subarray(extlen, extlen + keylen),
      value: body.subarray(extlen + keylen),
    });
    at += 24 + bodylen;
  }
  return { packets, rest: buf.subarray(at) };
}

const NOOP_OPCODE = 0x0a;

/** Sends the packets then a NOOP; the response packets before the NOOP's. */
export async function binaryExchange(port: number, requests: Buffer[]): Promise<BinaryPacket[]> {
  const reply = await exchange(port, Buffer.concat([...requests, binaryPacket({ opcode: NOOP_OPCODE, opaque: 0xffffffff })]), (r) => {
    const { packets } = parsePackets(r);
    return packets.some((p) => p.opcode === NOOP_OPCODE);
  });
  return parsePackets(reply).packets.filter((p) => p.opcode !== NOOP_OPCODE);
}
