// Draining on SIGTERM, as a sidecar needs it: php-fpm may still be finishing requests
// (writing sessions, releasing their locks) when the proxy is told to stop. The proxy
// stops accepting, keeps serving the connections already open until their clients
// close them, and exits 0 then, or when --drain-timeout passes. With no client it
// exits at once; a second SIGTERM ends the drain.

import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import { startProxy, type ProxyProcess } from '../helpers/proxy';
import { pollUntil } from '../helpers/wait';
import { TextClient } from '../ops/support';

let backends: MemcachedProcess[] = [];
let proxy: ProxyProcess | null = null;

beforeAll(async () => {
  backends = await Promise.all([0, 1].map(() => startMemcached()));
});
afterEach(async () => {
  await proxy?.stop();
  proxy = null;
});
afterAll(async () => {
  await Promise.all(backends.map((b) => b.stop()));
});

async function start(args: string[] = []): Promise<{ p: ProxyProcess; exit: Promise<number | null> }> {
  proxy = await startProxy({ backends: backends.map((b) => b.address), replicas: 2, metrics: true, logLevel: 'info', args });
  return { p: proxy, exit: exitOf(proxy.child) };
}

function exitOf(child: ChildProcess): Promise<number | null> {
  // 'close' comes after 'exit' once stdout is drained: the last log lines are in output() by then.
  return new Promise((resolve) => child.once('close', (code) => resolve(code)));
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

async function readyz(metricsPort: number): Promise<number> {
  return (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status;
}

/** Resolves with the milliseconds until `promise` settles, or `Infinity` after `limitMs`. */
async function within<T>(promise: Promise<T>, limitMs: number): Promise<{ value: T | undefined; ms: number }> {
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const value = await Promise.race([promise, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), limitMs)))]);
  clearTimeout(timer);
  return { value, ms: Date.now() - t0 };
}

test('an open client is still served after SIGTERM; new ones are refused; exit 0 once it closes', async () => {
  const { p, exit } = await start();
  const client = await TextClient.connect(p.port);
  expect(await client.set('drain:before', 'v1')).toBe('STORED\r\n');
  expect(await readyz(p.metricsPort!)).toBe(200);

  p.child.kill('SIGTERM');
  await pollUntil(() => refused(p.port), 5000, 20, 'the listener still accepts after SIGTERM');
  // The client keeps working: this is php-fpm finishing a request that writes its session.
  expect(await client.set('drain:after', 'v2')).toBe('STORED\r\n');
  expect(await client.get('drain:before')).toBe('v1');
  expect(await client.request('delete drain:after\r\n', /^[A-Z_]+\r\n/m)).toBe('DELETED\r\n');
  expect(await readyz(p.metricsPort!)).toBe(503); // taken out of rotation, still alive
  expect((await fetch(`http://127.0.0.1:${p.metricsPort}/healthz`)).status).toBe(200);
  expect(p.child.exitCode).toBeNull();
  expect(client.closed).toBe(false);

  client.close();
  const { value: code, ms } = await within(exit, 5000);
  expect(code).toBe(0);
  expect(ms).toBeLessThan(2000);
  // (a probe of refused() may have connected just before the SIGTERM took effect: one more client)
  expect(p.output()).toMatch(/"connections":[12],"drainTimeoutMs":30000,"msg":"draining/);
  expect(p.output()).toMatch(/"closedByClients":[12],"closedAtDeadline":0,"msg":"drained"/);
});

test('a client that stays open is closed at --drain-timeout; exit 0', async () => {
  const { p, exit } = await start(['--drain-timeout', '1500']);
  const client = await TextClient.connect(p.port);
  expect(await client.set('drain:k', 'v')).toBe('STORED\r\n');
  const t0 = Date.now();
  p.child.kill('SIGTERM');
  await pollUntil(() => client.closed, 8000, 20, 'the client was never closed');
  const closedAfter = Date.now() - t0;
  expect(closedAfter).toBeGreaterThanOrEqual(1400);
  expect(closedAfter).toBeLessThan(4500);
  expect((await within(exit, 5000)).value).toBe(0);
  expect(p.output()).toMatch(/"closedByClients":0,"closedAtDeadline":1,"msg":"drained"/);
});

test('with no client connected, SIGTERM exits at once (default 30 s drain)', async () => {
  const { p, exit } = await start();
  p.child.kill('SIGTERM');
  const { value, ms } = await within(exit, 5000);
  expect(value).toBe(0);
  expect(ms).toBeLessThan(1500);
});

test('a second SIGTERM ends the drain now', async () => {
  const { p, exit } = await start();
  const client = await TextClient.connect(p.port);
  expect(await client.set('drain:k2', 'v')).toBe('STORED\r\n');
  p.child.kill('SIGTERM');
  await pollUntil(() => refused(p.port), 5000, 20, 'the listener still accepts after SIGTERM');
  expect(await client.get('drain:k2')).toBe('v');
  p.child.kill('SIGTERM');
  const { value, ms } = await within(exit, 5000);
  expect(value).toBe(0);
  expect(ms).toBeLessThan(4000);
  expect(client.closed).toBe(true);
});
