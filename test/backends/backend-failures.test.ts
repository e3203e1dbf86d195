// A real memcached dies (SIGKILL), hangs (SIGSTOP), comes back: the backend fails
// requests instead of hanging them, is marked down, and up again after its probes.

import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createHook } from 'node:async_hooks';
import { once } from 'node:events';
import { Backend, type BackendOptions } from '../../src/backends/backend';
import type { StoreRequest } from '../../src/routing/node';
import { freePort, startMemcached, stopAllMemcached } from '../helpers/memcached';

const k = (s: string): Buffer => Buffer.from(s, 'latin1');
const set = (key: string, value = 'v'): StoreRequest => ({
  mode: 'set',
  key: k(key),
  value: k(value),
  flags: 0,
  exptime: 0,
  cas: 0n,
});

// Short probe intervals keep the suite fast; the logic is the same as with the defaults.
// Timeouts stay long enough for a loaded 2-core machine not to time out a healthy memcached.
const FAST: Partial<BackendOptions> = {
  connectTimeoutMs: 1000,
  requestTimeoutMs: 1000,
  probeIntervalMs: 50,
  retryMaxMs: 400,
};

const backends: Backend[] = [];
function track(b: Backend): Backend {
  backends.push(b);
  return b;
}

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()));
  await stopAllMemcached();
});

afterAll(stopAllMemcached);

describe('SIGKILL', () => {
  it('fails requests, marks the backend down, and up again after a restart and its probes', async () => {
    const mc = await startMemcached();
    const backend = track(new Backend(mc.address, { ...FAST, connections: 2 }));
    const events: string[] = [];
    backend.on('down', (reason) => events.push(`down: ${reason}`));
    backend.on('up', () => events.push('up'));
    expect((await backend.store(set('a'))).status).toBe('stored');
    const before = await backend.identity();

    const down = once(backend, 'down');
    mc.kill('SIGKILL');
    await mc.exited();
    // In flight or not, nothing hangs: every request resolves, failed.
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => backend.get(k(`x${i}`))));
    for (const r of results) expect(r.status).toBe('failed');
    await down;
    expect(backend.isUp()).toBe(false);
    expect(await backend.get(k('a'))).toEqual({ status: 'failed', reason: expect.stringMatching(/^backend down/) });

    await mc.restart();
    await once(backend, 'up');
    expect(backend.isUp()).toBe(true);
    expect(events).toHaveLength(2);
    expect(events[0]).toMatch(/^down: /);
    expect(events[1]).toBe('up');
    // Restarted empty, and a different process.
    expect(await backend.get(k('a'))).toEqual({ status: 'miss' });
    const after = await backend.identity();
    expect(after.status === 'ok' && before.status === 'ok' && after.pid !== before.pid).toBe(true);
  });

  it('is marked down by idle connections closing, without any request', async () => {
    const mc = await startMemcached();
    const backend = track(new Backend(mc.address, { ...FAST, connections: 2 }));
    await Promise.all(Array.from({ length: 20 }, () => backend.version()));
    expect(backend.openConnections).toBe(2);
    const down = once(backend, 'down');
    mc.kill('SIGKILL');
    await down;
    expect(backend.isUp()).toBe(false);
  });

  it('a backend that never listened is marked down after failureLimit refusals, then fails at once', async () => {
    const port = await freePort();
    const backend = track(new Backend(`127.0.0.1:${port}`, { ...FAST, failureLimit: 2 }));
    const first = await backend.get(k('a'));
    expect(first).toEqual({ status: 'failed', reason: 'ECONNREFUSED' });
    expect(backend.isUp()).toBe(true);
    const down = once(backend, 'down');
    expect((await backend.get(k('a'))).status).toBe('failed');
    await down;
    expect(backend.isUp()).toBe(false);
    expect(await backend.store(set('a'))).toEqual({ status: 'failed', reason: 'backend down: ECONNREFUSED' });
  });
});

describe('SIGSTOP', () => {
  it('costs one timeout, marks down at once, and comes back after SIGCONT', async () => {
    const mc = await startMemcached();
    const backend = track(new Backend(mc.address, { ...FAST, upAfterProbes: 2 }));
    expect((await backend.store(set('a'))).status).toBe('stored');
    let downs = 0;
    backend.on('down', () => downs++);

    await mc.pause();
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => backend.get(k(`s${i}`))));
    for (const r of results) expect(r).toEqual({ status: 'failed', reason: expect.stringMatching(/timeout/) });
    expect(backend.isUp()).toBe(false);
    expect(downs).toBe(1);
    // Down: the next requests do not wait for anything.
    expect(await backend.get(k('a'))).toEqual({ status: 'failed', reason: expect.stringMatching(/^backend down: timeout/) });

    // Probes connect (the kernel accepts) but get no answer: it stays down.
    await new Promise((r) => setTimeout(r, 600));
    expect(backend.isUp()).toBe(false);

    const up = once(backend, 'up');
    mc.resume();
    await up;
    expect(backend.isUp()).toBe(true);
    const r = await backend.get(k('a'));
    expect(r.status === 'hit' && r.item.value.toString()).toBe('v');
    expect(downs).toBe(1);
  });

  it('a write it gave up on never lands after SIGCONT: the connection is reset, not closed', async () => {
    // A value larger than what the hung memcached's socket takes in, small enough for this side's
    // kernel to queue whole: the rest waits in the send queue when the request times out. A
    // graceful close would deliver it once memcached resumes, and the abandoned write would land;
    // a reset drops the queue.
    const mc = await startMemcached({ maxItemSize: '2m' });
    const backend = track(new Backend(mc.address, { ...FAST, upAfterProbes: 2 }));
    expect((await backend.store(set('before'))).status).toBe('stored');

    await mc.pause();
    const big = 'x'.repeat(1024 * 1024);
    expect(await backend.store(set('late', big))).toEqual({ status: 'failed', reason: expect.stringMatching(/timeout/) });

    const up = once(backend, 'up');
    mc.resume();
    await up;
    expect((await backend.get(k('before'))).status).toBe('hit');
    expect((await backend.get(k('late'))).status).toBe('miss');
  });

  it('fails requests beyond maxPending at once', async () => {
    const mc = await startMemcached();
    const backend = track(new Backend(mc.address, { ...FAST, maxPending: 10, connections: 1 }));
    await backend.version();
    await mc.pause();
    const pending = Array.from({ length: 10 }, () => backend.get(k('a')));
    expect(await backend.get(k('a'))).toEqual({ status: 'failed', reason: 'too many requests pending' });
    for (const r of await Promise.all(pending)) expect(r.status).toBe('failed');
  });
});

describe('close', () => {
  it('leaves no timer, immediate or socket behind: idle, in flight, probing, or waiting to probe', async () => {
    const mc = await startMemcached();
    const resources = trackResources();

    const idle = new Backend(mc.address, FAST);
    await idle.version();
    await idle.close();

    const busy = new Backend(mc.address, { ...FAST, requestTimeoutMs: 10_000 });
    await busy.version();
    await mc.pause();
    const inflight = busy.get(k('a'));
    await busy.close();
    expect(await inflight).toEqual({ status: 'failed', reason: 'backend closed' });
    expect(await busy.get(k('a'))).toEqual({ status: 'failed', reason: 'backend closed' });

    const probing = new Backend(mc.address, FAST);
    const down = once(probing, 'down');
    expect((await probing.get(k('a'))).status).toBe('failed');
    await down;
    // Let a probe start (its connection is accepted by the kernel, then hangs).
    await new Promise((r) => setTimeout(r, 120));
    await probing.close();
    mc.resume();

    // Down, with the next probe a long way off.
    const waiting = new Backend(`127.0.0.1:${await freePort()}`, { ...FAST, failureLimit: 1, probeIntervalMs: 60_000 });
    await waiting.get(k('a'));
    expect(waiting.isUp()).toBe(false);
    await waiting.close();

    expect(await resources.leftAfterClose()).toEqual([]);
  });
});

/** Timers, immediates and TCP handles created from now on, and still alive when asked. */
function trackResources(): { leftAfterClose(): Promise<string[]> } {
  const kinds = new Set(['Timeout', 'Immediate', 'TCPWRAP', 'TCPCONNECTWRAP']);
  const live = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      if (kinds.has(type)) live.set(id, type);
    },
    destroy(id) {
      live.delete(id);
    },
  }).enable();
  return {
    async leftAfterClose() {
      // Destroy hooks run a little after a handle closes or a timer is cleared. This
      // sleep's own timer (its primitive value is its async id) is not a leak.
      await new Promise<void>((resolve) => {
        const sleep = setTimeout(resolve, 50);
        live.delete(Number(sleep));
      });
      hook.disable();
      return [...live.values()].sort();
    },
  };
}
