// A scripted fake memcached: replies that break the FIFO are caught (the
// connection is dropped, its requests fail), writes are coalesced, probes count.

import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { once } from 'node:events';
import { Backend, type BackendOptions } from '../../src/backends/backend';

const k = (s: string): Buffer => Buffer.from(s, 'latin1');

interface Fake {
  port: number;
  address: string;
  /** Connections accepted so far. */
  accepted: number;
  /** Connections the client closed (or reset: it gave up on requests) so far. */
  closedByClient: number;
  /** `data` events received so far, over all connections. */
  chunks: number;
  /** What the server does with each request line it reads. */
  reply: (line: string, socket: net.Socket) => void;
  close(): Promise<void>;
}

const fakes: Fake[] = [];
const backends: Backend[] = [];

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()));
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

/** The O flag of a meta request line. */
const opaqueOf = (line: string): string => / O(\S+)/.exec(line)?.[1] ?? '';

async function fake(reply: Fake['reply']): Promise<Fake> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    f.accepted++;
    sockets.add(socket);
    let buf = '';
    let skip = 0;
    socket.on('data', (d: Buffer) => {
      f.chunks++;
      buf += d.toString('latin1');
      for (;;) {
        if (skip > 0) {
          const n = Math.min(skip, buf.length);
          buf = buf.slice(n);
          skip -= n;
          if (skip > 0) return;
        }
        const nl = buf.indexOf('\r\n');
        if (nl === -1) return;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        // An ms line is followed by its data block.
        const ms = /^ms \S+ (\d+)/.exec(line);
        if (ms) skip = Number(ms[1]) + 2;
        if (!socket.destroyed) f.reply(line, socket);
      }
    });
    let ended = false;
    const byClient = (): void => {
      if (!ended) f.closedByClient++;
      ended = true;
    };
    socket.on('end', byClient);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') byClient();
    });
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const f: Fake = {
    port,
    address: `127.0.0.1:${port}`,
    accepted: 0,
    closedByClient: 0,
    chunks: 0,
    reply,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  fakes.push(f);
  return f;
}

function backend(address: string, opts: Partial<BackendOptions> = {}): Backend {
  const b = new Backend(address, { connections: 1, requestTimeoutMs: 5000, probeIntervalMs: 20, ...opts });
  backends.push(b);
  return b;
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

describe('replies that do not fit the FIFO', () => {
  it('a meta reply with another opaque fails every request on the connection and drops it', async () => {
    const f = await fake((line, s) => s.write(line.startsWith('mg a') ? 'EN Owrong\r\n' : `EN O${opaqueOf(line)}\r\n`));
    const b = backend(f.address);
    const results = await Promise.all([b.get(k('a')), b.get(k('b')), b.get(k('c'))]);
    for (const r of results) expect(r).toEqual({ status: 'failed', reason: expect.stringMatching(/opaque wrong/) });
    await until(() => f.closedByClient === 1);
    // One failure, under failureLimit: still up, and a new connection serves the next request.
    expect(b.isUp()).toBe(true);
    expect(await b.get(k('b'))).toEqual({ status: 'miss' });
    expect(f.accepted).toBe(2);
  });

  it('a reply nobody asked for drops the connection', async () => {
    const f = await fake((line, s) => s.write(`EN O${opaqueOf(line)}\r\nEN O${opaqueOf(line)}\r\n`));
    const b = backend(f.address);
    expect(await b.get(k('a'))).toEqual({ status: 'miss' });
    await until(() => f.closedByClient === 1);
  });

  it('ERROR means memcached read our bytes differently: desync', async () => {
    const f = await fake((_line, s) => s.write('ERROR\r\n'));
    const b = backend(f.address);
    expect(await b.get(k('a'))).toEqual({ status: 'failed', reason: 'ERROR reply' });
    await until(() => f.closedByClient === 1);
  });

  it('a CLIENT_ERROR to a request with data fails it and drops the connection', async () => {
    const f = await fake((line, s) =>
      s.write(line.startsWith('ms') ? 'CLIENT_ERROR bad data chunk\r\n' : `HD O${opaqueOf(line)}\r\n`),
    );
    const b = backend(f.address);
    const r = await b.store({ mode: 'set', key: k('a'), value: k('v'), flags: 0, exptime: 0, cas: 0n });
    expect(r).toEqual({ status: 'failed', reason: 'CLIENT_ERROR bad data chunk' });
    await until(() => f.closedByClient === 1);
    expect(await b.touch(k('a'), 1)).toMatchObject({ status: 'touched' });
  });

  it('a CLIENT_ERROR to a request without data is that request failing, nothing more', async () => {
    const f = await fake((line, s) => s.write(line.startsWith('mg a') ? 'CLIENT_ERROR bad key\r\n' : `EN O${opaqueOf(line)}\r\n`));
    const b = backend(f.address);
    const [a, x] = await Promise.all([b.get(k('a')), b.get(k('x'))]);
    expect(a).toEqual({ status: 'failed', reason: 'CLIENT_ERROR bad key' });
    expect(x).toEqual({ status: 'miss' });
    expect(f.accepted).toBe(1);
  });

  it('unparseable bytes drop the connection', async () => {
    const f = await fake((_line, s) => s.write('HELLO there\r\n'));
    const b = backend(f.address);
    expect(await b.get(k('a'))).toEqual({ status: 'failed', reason: 'unexpected reply "HELLO there"' });
    await until(() => f.closedByClient === 1);
  });

  it('failureLimit desyncs in a row mark the backend down', async () => {
    const f = await fake((_line, s) => s.write('ERROR\r\n'));
    const b = backend(f.address, { failureLimit: 2, probeIntervalMs: 60_000 });
    const down = once(b, 'down');
    await b.get(k('a'));
    expect(b.isUp()).toBe(true);
    await b.get(k('a'));
    expect(await down).toEqual(['ERROR reply']);
  });
});

describe('writes', () => {
  it('coalesces requests made in the same tick into few writes', async () => {
    const f = await fake((line, s) => s.write(`EN O${opaqueOf(line)}\r\n`));
    const b = backend(f.address);
    await b.get(k('warm-up'));
    const before = f.chunks;
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => b.get(k(`key${i}`))));
    for (const r of results) expect(r).toEqual({ status: 'miss' });
    // 200 requests, ~5 KB: one write (a loopback read may still split it).
    expect(f.chunks - before).toBeLessThan(10);
  });
});

describe('probes', () => {
  it(
    'needs upAfterProbes good probes in a row, each a fresh connection sending version',
    async () => {
      let healthy = false;
      const f = await fake((line, s) => {
        if (!healthy) s.destroy();
        else if (line === 'version') s.write('VERSION 1.6.18\r\n');
        else s.write(`EN O${opaqueOf(line)}\r\n`);
      });
      const b = backend(f.address, { failureLimit: 1, upAfterProbes: 3 });
      const down = once(b, 'down');
      expect((await b.get(k('a'))).status).toBe('failed');
      await down;
      await until(() => f.accepted >= 3);
      healthy = true;
      const acceptedBefore = f.accepted;
      await once(b, 'up');
      // The probe under way when healthy flipped may have been refused or answered.
      expect(f.accepted - acceptedBefore).toBeGreaterThanOrEqual(2);
      expect(f.accepted - acceptedBefore).toBeLessThanOrEqual(3);
      expect(await b.get(k('a'))).toEqual({ status: 'miss' });
    },
  );

  it('backs off while probes fail', async () => {
    const f = await fake((_line, s) => s.destroy());
    const b = backend(f.address, { failureLimit: 1, probeIntervalMs: 20, retryMaxMs: 160 });
    await b.get(k('a'));
    expect(b.isUp()).toBe(false);
    await new Promise((r) => setTimeout(r, 1000));
    // Without backoff, ~50 probes (more with jitter); with it, about 10.
    expect(f.accepted).toBeLessThan(25);
    expect(f.accepted).toBeGreaterThanOrEqual(2);
  });
});
