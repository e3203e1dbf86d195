// PHP session locks made visible, with real PHP and real memcached, for both extensions:
// a second request of a session waiting ~3 s while the first sleeps holding the lock shows
// in the wait histogram and in `stats locks`; a PHP worker killed holding the lock shows as
// taken over once the lock expired. Only lower bounds on time are asserted. The four cases
// run at once, each on a sidecar of its own (the metrics are per sidecar), over two memcached.

import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { sessionHash } from '../../src/locks/tracker';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import { incrementCounter, phpArgv, type PhpClientKind } from '../helpers/php';
import { proxyStats, startProxy, waitForStats, type ProxyProcess } from '../helpers/proxy';
import { metricValue, scrape } from '../ops/support';
import { binaryExchange, binaryPacket } from '../helpers/wire';

/** php-memcached's default (binary) and pecl-memcache's (text); the other two protocols are unit-tested on their bytes. */
const KINDS: PhpClientKind[] = ['memcached-binary', 'memcache'];

/**
 * Lock settings: php-memcached polls every 20..100 ms for up to ~20 s (its default gives up
 * after 0.75 s); pecl-memcache polls 5 ms doubling to 1 s, for twice its lock timeout. The
 * expiry is the lock key's exptime: long enough for the 3 s hold, or short for the killed worker.
 */
function lockIni(kind: PhpClientKind, expirySeconds: number): Record<string, number> {
  return kind.startsWith('memcached')
    ? { 'memcached.sess_lock_wait_min': 20, 'memcached.sess_lock_wait_max': 100, 'memcached.sess_lock_retries': 200, 'memcached.sess_lock_expire': expirySeconds }
    : { 'memcache.lock_timeout': expirySeconds };
}

const HOLD_MS = 3000;

let backends: MemcachedProcess[];
const sidecars: ProxyProcess[] = [];

beforeAll(async () => {
  backends = await Promise.all([startMemcached(), startMemcached()]);
});
afterAll(async () => {
  await Promise.all(sidecars.map((s) => s.stop()));
  await Promise.all((backends ?? []).map((b) => b.stop()));
});

/** A sidecar of its own for one case, stopped after the file. */
async function sidecar(): Promise<ProxyProcess> {
  const proxy = await startProxy({ backends: backends.map((b) => b.address), replicas: 2, metrics: true });
  sidecars.push(proxy);
  return proxy;
}

const locks = (proxy: ProxyProcess) => proxyStats(proxy.port, 'locks');
/** Resolves once the sidecar sees a session lock held. */
const lockHeld = (proxy: ProxyProcess) => waitForStats(proxy.port, (s) => Number(s.get('lock_holders')) >= 1, 15_000, 'locks');

describe.concurrent.each(KINDS)('%s', (kind) => {
  test('two requests of one session, the first sleeping 3 s holding the lock: the second waited at least 1.5 s', async () => {
    const id = `tabs${kind.replace(/\W/g, '')}0123456789abcdef`;
    const ini = lockIni(kind, 10);
    const proxy = await sidecar();
    const first = incrementCounter(kind, { port: proxy.port, id, times: 1, holdMs: HOLD_MS, ini });
    await lockHeld(proxy);
    const second = await incrementCounter(kind, { port: proxy.port, id, times: 1, holdMs: 0, ini });
    const firstDone = await first;
    expect(firstDone.problems).toEqual([]);
    expect(second.problems).toEqual([]);
    expect(second.counter).toBe(2); // it read the first one's write: it did wait for the lock

    const m = await scrape(proxy.metricsPort!);
    const handler = kind.startsWith('memcached') ? 'memcached' : 'memcache';
    const waits = metricValue(m, 'replicached_session_lock_wait_seconds_count')!;
    expect(waits).toBe(2);
    expect(waits - metricValue(m, 'replicached_session_lock_wait_seconds_bucket', { le: '1' })!).toBe(1);
    expect(metricValue(m, 'replicached_session_lock_wait_seconds_sum')).toBeGreaterThanOrEqual(1.5);
    expect(metricValue(m, 'replicached_session_lock_hold_seconds_count')).toBe(2);
    expect(metricValue(m, 'replicached_session_lock_hold_seconds_sum')).toBeGreaterThanOrEqual(1.5);
    expect(metricValue(m, 'replicached_session_lock_grants_total', { handler })).toBe(2);
    expect(metricValue(m, 'replicached_session_lock_attempts_total', { handler })).toBeGreaterThan(2);
    expect(metricValue(m, 'replicached_session_lock_holders')).toBe(0);

    const s = await locks(proxy);
    expect(s.get('lock:1:session')).toBe(sessionHash(id));
    expect(Number(s.get('lock:1:longest_wait_ms'))).toBeGreaterThanOrEqual(1500);
    expect(s.get('lock:1:waits')).toBe('1');
    expect(s.has('lock:2:session')).toBe(false);
    // The binary protocol's STAT with the key "locks": the same lines, one packet each, then the empty one.
    const packets = await binaryExchange(proxy.port, [binaryPacket({ opcode: 0x10, key: Buffer.from('locks') })]);
    const binary = new Map(packets.filter((p) => p.key.length > 0).map((p) => [p.key.toString(), p.value.toString()]));
    expect(binary.get('lock:1:session')).toBe(sessionHash(id));
    expect(packets.at(-1)?.key.length).toBe(0);
  });

  test('a PHP worker killed holding the lock: the next request takes it over once it expired', async () => {
    const id = `killed${kind.replace(/\W/g, '')}0123456789abcdef`;
    const ini = lockIni(kind, 3);
    const proxy = await sidecar();
    const worker = spawn('php', phpArgv(kind, 'increment_counter.php', { id, times: 1, holdMs: 60_000 }, { port: proxy.port, ini }), { stdio: 'ignore' });
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    try {
      await lockHeld(proxy);
    } finally {
      worker.kill('SIGKILL');
      await exited;
    }
    const next = await incrementCounter(kind, { port: proxy.port, id, times: 1, holdMs: 0, ini });
    expect(next.problems).toEqual([]);
    expect(next.counter).toBe(1); // the killed worker never wrote

    const s = await locks(proxy);
    expect(s.get('lock_takeovers')).toBe('1');
    expect(s.get('lock_expired')).toBe('1');
    expect(s.get('lock_holders')).toBe('0');
    const m = await scrape(proxy.metricsPort!);
    expect(metricValue(m, 'replicached_session_lock_takeovers_total')).toBe(1);
    expect(metricValue(m, 'replicached_session_lock_expired_total')).toBe(1);
  });
});
