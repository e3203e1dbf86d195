// Half-close: a client that writes its requests and then shuts down its write side
// (`printf ... | nc -N`, scripted health checks) gets a reply to every request it sent
// before the FIN, then the connection closes: what memcached itself does. Each case runs
// against memcached directly and through the proxy (3 real memcached, 2 replicas).

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster';
import { binaryPacket } from '../helpers/wire';

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster({ backends: 3, replicas: 2 });
});
afterAll(() => cluster?.stop());

/** Writes `request`, then end() (FIN); resolves with every byte received once the server closes. */
function sendThenHalfClose(port: number, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => socket.end(request));
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error(`the server did not close; got ${Buffer.concat(chunks).length} bytes`)));
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', reject);
    socket.on('end', () => {
      socket.end();
      resolve(Buffer.concat(chunks));
    });
  });
}

/** Both answers: memcached's own, and the proxy's. */
async function both(request: (key: string) => Buffer): Promise<{ direct: Buffer; proxied: Buffer }> {
  const direct = await sendThenHalfClose(cluster.backends[0].port, request(`hc-direct-${Date.now()}`));
  const proxied = await sendThenHalfClose(cluster.proxy.port, request(`hc-proxy-${Date.now()}`));
  return { direct, proxied };
}

describe('text protocol', () => {
  test('set then get, then FIN: both replies, then the close (as memcached)', async () => {
    const { direct, proxied } = await both((k) => Buffer.from(`set ${k} 0 0 1\r\n1\r\nget ${k}\r\n`));
    const expected = (k: string) => `STORED\r\nVALUE ${k} 0 1\r\n1\r\nEND\r\n`;
    expect(direct.toString().replace(/hc-direct-\d+/, 'K')).toBe(expected('K'));
    expect(proxied.toString().replace(/hc-proxy-\d+/, 'K')).toBe(expected('K'));
  });

  test('a request cut short by the FIN is dropped; the complete ones before it are answered', async () => {
    const { direct, proxied } = await both((k) => Buffer.from(`set ${k} 0 0 2\r\nab\r\nget ${k}\r\nget ${k}`));
    expect(proxied.toString().replace(/hc-proxy-\d+/, 'K')).toBe(direct.toString().replace(/hc-direct-\d+/, 'K'));
    expect(proxied.toString()).toMatch(/^STORED\r\nVALUE \S+ 0 2\r\nab\r\nEND\r\n$/);
  });

  test('FIN with no request: closed at once, nothing written', async () => {
    const { direct, proxied } = await both(() => Buffer.alloc(0));
    expect(direct.length).toBe(0);
    expect(proxied.length).toBe(0);
  });

  test('3,000 pipelined sets then FIN (past the in-flight bound): every reply, in order', async () => {
    const n = 3000;
    const request = (k: string) => Buffer.from(Array.from({ length: n }, (_, i) => `set ${k}:${i} 0 0 5\r\nvalue\r\n`).join('') + `get ${k}:${n - 1}\r\n`);
    const { direct, proxied } = await both(request);
    const tail = (k: string) => `${'STORED\r\n'.repeat(n)}VALUE ${k}:${n - 1} 0 5\r\nvalue\r\nEND\r\n`;
    expect(direct.toString().replace(/hc-direct-\d+/, 'K')).toBe(tail('K'));
    expect(proxied.toString().replace(/hc-proxy-\d+/, 'K')).toBe(tail('K'));
  });
});

describe('binary protocol', () => {
  const SET = 0x01;
  const GET = 0x00;

  const frame = (opcode: number, key: string, extras: Buffer, value: Buffer, opaque: number): Buffer =>
    binaryPacket({ opcode, key: Buffer.from(key), extras, value, opaque });

  /** Each response as opcode, status, opaque and value: the CAS differs between servers. */
  function responses(buf: Buffer): Array<{ opcode: number; status: number; opaque: number; value: string }> {
    const out = [];
    for (let at = 0; at + 24 <= buf.length; ) {
      const body = buf.readUInt32BE(at + 8);
      const extlen = buf[at + 4];
      const keylen = buf.readUInt16BE(at + 2);
      const value = buf.subarray(at + 24 + extlen + keylen, at + 24 + body).toString();
      out.push({ opcode: buf[at + 1], status: buf.readUInt16BE(at + 6), opaque: buf.readUInt32BE(at + 12), value });
      at += 24 + body;
    }
    return out;
  }

  test('SET then GET, then FIN: both responses, then the close (as memcached)', async () => {
    const request = (k: string) =>
      Buffer.concat([frame(SET, k, Buffer.alloc(8), Buffer.from('half'), 1), frame(GET, k, Buffer.alloc(0), Buffer.alloc(0), 2)]);
    const { direct, proxied } = await both(request);
    const expected = [
      { opcode: SET, status: 0, opaque: 1, value: '' },
      { opcode: GET, status: 0, opaque: 2, value: 'half' },
    ];
    expect(responses(direct)).toEqual(expected);
    expect(responses(proxied)).toEqual(expected);
  });
});
