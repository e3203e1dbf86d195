// Draining on SIGTERM, as a sidecar needs it: php-fpm may still be finishing requests
// (writing sessions, releasing their locks) when the proxy is told to stop. The proxy
// stops accepting, keeps serving the connections already open until their clients
// close them, and exits 0 then, or when --drain-timeout passes. With no client it
// exits at once; a second SIGTERM ends the drain.
//
// What ended each drain is read from the proxy's own "drained" line and from drain timeouts
// long enough that waiting them out would fail the test; how long the exits took is a
// wall-clock figure, recorded here and asserted by scripts/timing-check.sh (test/helpers/timing.ts).

import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import { startProxy, type ProxyProcess } from '../helpers/proxy';
import { timingClaim } from '../helpers/timing';
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

/** Longer than the test timeout (vitest.config.ts): a proxy that waited it out would fail the test. */
const LONG_DRAIN = ['--drain-timeout', '600000'];

/** How long `promise` takes to settle, and what it settled with. No limit of its own: the test's timeout is it. */
async function timed<T>(promise: Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  const value = await promise;
  return { value, ms: Date.now() - t0 };
}

test('an open client is still served after SIGTERM; new ones are refused; exit 0 once it closes', async () => {
  const { p, exit } = await start();
  const client = await TextClient.connect(p.port);
  expect(await client.set('drain:before', 'v1')).toBe('STORED\r\n');
  expect(await readyz(p.metricsPort!)).toBe(200);

  p.child.kill('SIGTERM');
  await pollUntil(() => refused(p.port), 20_000, 20, 'the listener still accepts after SIGTERM');
  // The client keeps working: this is php-fpm finishing a request that writes its session.
  expect(await client.set('drain:after', 'v2')).toBe('STORED\r\n');
  expect(await client.get('drain:before')).toBe('v1');
  expect(await client.request('delete drain:after\r\n', /^[A-Z_]+\r\n/m)).toBe('DELETED\r\n');
  expect(await readyz(p.metricsPort!)).toBe(503); // taken out of rotation, still alive
  expect((await fetch(`http://127.0.0.1:${p.metricsPort}/healthz`)).status).toBe(200);
  expect(p.child.exitCode).toBeNull();
  expect(client.closed).toBe(false);

  // Its last client gone, it exits without waiting out the default 30 s drain (which would
  // outlast the test): the "drained" line below says the clients closed, none at the deadline.
  client.close();
  const { value: code, ms } = await timed(exit);
  expect(code).toBe(0);
  timingClaim('drain: exit once the last client closed', ms, 2000);
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
  await pollUntil(() => client.closed, 25_000, 20, 'the client was never closed');
  const closedAfter = Date.now() - t0;
  // Not before the deadline (a loaded machine only makes it later); closed by the deadline, the line below says.
  expect(closedAfter).toBeGreaterThanOrEqual(1400);
  timingClaim('drain: an open client closed at --drain-timeout 1500', closedAfter, 4500);
  expect(await exit).toBe(0);
  expect(p.output()).toMatch(/"closedByClients":0,"closedAtDeadline":1,"msg":"drained"/);
});

test('with no client connected, SIGTERM exits at once, whatever the drain timeout', async () => {
  const { p, exit } = await start(LONG_DRAIN);
  p.child.kill('SIGTERM');
  const { value, ms } = await timed(exit);
  expect(value).toBe(0);
  expect(p.output()).not.toMatch(/"msg":"draining/); // nothing to drain: no wait at all
  timingClaim('drain: exit on SIGTERM with no client', ms, 1500);
});

test('a second SIGTERM ends the drain now', async () => {
  const { p, exit } = await start(LONG_DRAIN);
  const client = await TextClient.connect(p.port);
  expect(await client.set('drain:k2', 'v')).toBe('STORED\r\n');
  p.child.kill('SIGTERM');
  await pollUntil(() => refused(p.port), 20_000, 20, 'the listener still accepts after SIGTERM');
  expect(await client.get('drain:k2')).toBe('v');
  p.child.kill('SIGTERM');
  const { value, ms } = await timed(exit);
  expect(value).toBe(0);
  expect(client.closed).toBe(true);
  timingClaim('drain: exit on a second SIGTERM', ms, 4000);
});
