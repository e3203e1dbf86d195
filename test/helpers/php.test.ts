// Self-test of the PHP and memccapable harnesses against a plain memcached: what passes
// here is the baseline replicached must match, and the negative cases prove the harness
// can see a failure at all.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  PHP_CLIENT_KINDS,
  concurrentIncrements,
  incrementCounter,
  readCounter,
  readSessions,
  writeSessions,
} from './php';
import { MEMCCAPABLE_TESTS, parseMemccapable, runMemccapable } from './memccapable';
import { freePort, startMemcached, type MemcachedProcess } from './memcached';

describe('PHP session harness against plain memcached', () => {
  let mc: MemcachedProcess;
  beforeAll(async () => {
    mc = await startMemcached();
  });
  afterAll(async () => {
    await mc?.stop();
  });

  it.each(PHP_CLIENT_KINDS)('%s: 50 sessions written and read back intact, no PHP warning', async (kind) => {
    const o = { port: mc.port, prefix: `self-${kind}-`, count: 50 };
    const w = await writeSessions(kind, o);
    expect(w.problems).toEqual([]);
    expect(w.ok).toBe(50);
    const r = await readSessions(kind, o);
    expect(r.problems).toEqual([]);
    expect(r.missing).toEqual([]);
    expect(r.mismatches).toEqual([]);
    expect(r.ok).toBe(50);
  });

  it('a session written by one generation does not pass for another', async () => {
    const o = { port: mc.port, prefix: 'self-gen-', count: 5 };
    await writeSessions('memcached-binary', o);
    const r = await readSessions('memcached-binary', { ...o, gen: 2 });
    expect(r.ok).toBe(0);
    expect(r.mismatches.map((m) => m.reason)).toEqual(Array(5).fill('field rc_gen is 1, want 2'));
    expect(r.problems).toEqual([]);
  });

  it('sessions never written are reported missing', async () => {
    const r = await readSessions('memcached-text', { port: mc.port, prefix: 'self-never-', count: 3 });
    expect(r.ok).toBe(0);
    expect(r.missing).toEqual(['self-never-000000', 'self-never-000001', 'self-never-000002']);
  });

  it.each(PHP_CLIENT_KINDS)('%s: an unreachable server shows up as PHP warnings', async (kind) => {
    const port = await freePort(); // nothing listens there
    const w = await writeSessions(kind, { port, prefix: 'self-down-', count: 2 });
    expect(w.warnings.length).toBeGreaterThan(0);
    expect(w.problems.length).toBeGreaterThan(0);
  });

  it.each(PHP_CLIENT_KINDS)('%s: two processes incrementing one session lose no increment', async (kind) => {
    const r = await concurrentIncrements(kind, { ports: [mc.port, mc.port], id: `self-counter-${kind}`, times: 40 });
    expect(r.problems).toEqual([]);
    expect(r.expected).toBe(81);
    expect(r.counter).toBe(81);
  });

  it('readCounter sees what incrementCounter left', async () => {
    const id = 'self-counter-plain';
    expect((await readCounter('memcached-text', { port: mc.port, id })).counter).toBeNull();
    const inc = await incrementCounter('memcached-text', { port: mc.port, id, times: 3 });
    expect(inc.problems).toEqual([]);
    expect(inc.counter).toBe(3);
    expect((await readCounter('memcached-binary', { port: mc.port, id })).counter).toBe(3);
  });
});

describe('memccapable harness', () => {
  let mc: MemcachedProcess;
  beforeAll(async () => {
    mc = await startMemcached(); // its own server: memccapable flushes
  });
  afterAll(async () => {
    await mc?.stop();
  });

  it.each(['ascii', 'binary'] as const)('memccapable %s: all 27 tests pass against memcached', async (protocol) => {
    const r = await runMemccapable(protocol, { port: mc.port });
    expect(r.failed).toEqual([]);
    expect(r.notRun).toEqual([]);
    expect(r.passed).toEqual(MEMCCAPABLE_TESTS[protocol]);
    expect(r.passed).toHaveLength(27);
    expect(r.allPassed).toBe(true);
  });

  it('a server that answers ERROR and hangs up fails every ascii test', async () => {
    const server = net.createServer((c) => {
      c.once('data', () => c.end('ERROR\r\n'));
      c.on('error', () => c.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const addr = server.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    try {
      const r = await runMemccapable('ascii', { port, ioTimeoutSec: 1 });
      expect(r.allPassed).toBe(false);
      expect(r.exitCode).not.toBe(0);
      expect(r.passed).toEqual([]);
      expect(r.failed.length).toBeGreaterThan(0);
      expect([...r.failed, ...r.notRun].sort()).toEqual([...MEMCCAPABLE_TESTS.ascii].sort());
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('parses failures whose -v assertion text runs into the next name', () => {
    const pad = (s: string) => s.padEnd(40);
    const out =
      `${pad('ascii version')}\n[FAIL]\n\n./src/bin/memcapable.cc:1106: strncmp(buffer, "VERSION ", 8) == 0` +
      `${pad('ascii quit')}[pass]\n${pad('ascii verbosity')}Errno: 104 Connection reset by peer\n\n[FAIL]\n` +
      `${pad('ascii set')}[skip]\n${pad('ascii set noreply')}`;
    expect(parseMemccapable(out)).toEqual([
      { name: 'ascii version', status: 'FAIL' },
      { name: 'ascii quit', status: 'pass' },
      { name: 'ascii verbosity', status: 'FAIL' },
      { name: 'ascii set', status: 'skip' },
      { name: 'ascii set noreply', status: null },
    ]);
  });
});
