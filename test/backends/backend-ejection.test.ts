// Ejection on evidence: a fake memcached that answers at a pace the test sets.
// A backend that keeps answering, however late, is slow and stays up; one that
// sends nothing for a request timeout has stalled, and timeoutLimit stalls in a
// row mark it down.

import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { once } from 'node:events';
import { Backend, type BackendOptions } from '../../src/backends/backend';
import { timingClaim } from '../helpers/timing';

const k = (s: string): Buffer => Buffer.from(s, 'latin1');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How the fake answers: every `paceMs` one queued `mg` gets its EN, or nothing at all while `silent`. */
interface Pacer {
  address: string;
  paceMs: number;
  silent: boolean;
  /** Replies sent so far. */
  answered: number;
  close(): Promise<void>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function pacer(paceMs: number): Promise<Pacer> {
  const sockets = new Set<net.Socket>();
  const queue: Array<{ socket: net.Socket; opaque: string }> = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    let buf = '';
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\r\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (line === 'version') socket.write('VERSION 1.6.0\r\n');
        else queue.push({ socket, opaque: / O(\S+)/.exec(line)?.[1] ?? '' });
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const p: Pacer = {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    paceMs,
    silent: false,
    answered: 0,
    close: () =>
      new Promise((resolve) => {
        clearTimeout(timer);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  let timer: NodeJS.Timeout;
  const tick = (): void => {
    const next = p.silent ? undefined : queue.shift();
    if (next !== undefined && !next.socket.destroyed) {
      next.socket.write(`EN O${next.opaque}\r\n`);
      p.answered++;
    }
    timer = setTimeout(tick, p.paceMs);
  };
  timer = setTimeout(tick, paceMs);
  cleanups.push(() => p.close());
  return p;
}

function backend(address: string, opts: Partial<BackendOptions>): Backend {
  const b = new Backend(address, { connections: 1, probeIntervalMs: 10_000, ...opts });
  cleanups.push(() => b.close());
  return b;
}

describe('ejection on evidence', () => {
  it('a backend answering steadily, far past the request timeout, is slow: every request is answered, nothing is ejected', async () => {
    const p = await pacer(4);
    const b = backend(p.address, { requestTimeoutMs: 100 });
    let downs = 0;
    b.on('down', () => downs++);
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 150 }, (_, i) => b.get(k(`slow${i}`))));
    // The last reply came many timeouts after its request was sent.
    expect(Date.now() - started).toBeGreaterThan(3 * 100);
    for (const r of results) expect(r).toEqual({ status: 'miss' });
    expect(downs).toBe(0);
    expect(b.isUp()).toBe(true);
  });

  it('a backend that goes silent with requests waiting is ejected about one timeout after its last reply', async () => {
    const p = await pacer(2);
    const b = backend(p.address, { requestTimeoutMs: 150 });
    expect(await b.get(k('warm'))).toEqual({ status: 'miss' });
    const down = once(b, 'down');
    let isDown = false;
    b.on('down', () => (isDown = true));
    const pending = Array.from({ length: 50 }, (_, i) => b.get(k(`hang${i}`)));
    // A request that failed on its own, before the backend was marked down, would be one
    // timeout per request instead of one for the backend: the 50 would take 50 timeouts.
    let failedBeforeDown = 0;
    for (const r of pending) {
      void r.then((o) => {
        if (o.status === 'failed' && !isDown) failedBeforeDown++;
      });
    }
    await sleep(20);
    p.silent = true;
    const silentAt = Date.now();
    const [reason] = (await down) as [string];
    expect(reason).toMatch(/^timeout/);
    timingClaim('backend: a silent backend ejected after its last reply (timeout 150 ms)', Date.now() - silentAt, 150 + 400);
    const results = await Promise.all(pending);
    // The first stall marked it down and failed every request still waiting, at once.
    expect(failedBeforeDown).toBe(0);
    expect(results.filter((r) => r.status === 'failed').length).toBeGreaterThan(0);
    expect(results.filter((r) => r.status === 'failed').length + p.answered - 1).toBe(50);
    expect(b.isUp()).toBe(false);
  });

  it('with timeoutLimit 2, one stall drops the connection but not the backend; a second stall in a row does', async () => {
    const p = await pacer(1);
    const b = backend(p.address, { requestTimeoutMs: 100, timeoutLimit: 2 });
    let downs = 0;
    b.on('down', () => downs++);
    p.silent = true;
    expect(await b.get(k('first'))).toEqual({ status: 'failed', reason: expect.stringMatching(/^timeout/) });
    expect(b.isUp()).toBe(true);
    // A reply in between resets the count.
    p.silent = false;
    expect(await b.get(k('between'))).toEqual({ status: 'miss' });
    p.silent = true;
    expect((await b.get(k('second'))).status).toBe('failed');
    expect(b.isUp()).toBe(true);
    const down = once(b, 'down');
    expect((await b.get(k('third'))).status).toBe('failed');
    await down;
    expect(b.isUp()).toBe(false);
    expect(downs).toBe(1);
  });
});
