// replicached in front of real `memcached -S` (Debian's Cyrus SASL, a sasldb
// written by saslpasswd2): PHP sessions of both extensions through it, the
// password from an environment variable, a file or the config file, and never in
// the log at debug level. Wrong credentials: the backend is down with an error
// line naming SASL, counted under reason "auth", and comes back once fixed.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, test } from 'vitest';
import { Backend } from '../../src/backends/backend';
import { binaryCodec } from '../../src/backends/codec';
import { pollUntil } from '../helpers/wait';
import { reservedItems, startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';
import { readSessions, writeSessions } from '../helpers/php';
import { startProxy, type ProxyProcess } from '../helpers/proxy';
import type { SaslUser } from '../helpers/sasl';
import { configDir, metricValue, scrape, TextClient, waitFor, type ConfigDir } from '../ops/support';
import { binaryExchange, binaryPacket } from '../helpers/wire';

let proxy: ProxyProcess | null = null;
let dir: ConfigDir | null = null;
const direct: Backend[] = [];
afterEach(async () => {
  await proxy?.stop();
  proxy = null;
  dir?.remove();
  dir = null;
  await Promise.all(direct.splice(0).map((b) => b.close()));
  await stopAllMemcached();
});

function user(): SaslUser {
  return { username: 'sessions', password: `pw-${randomBytes(8).toString('hex')}` };
}

async function saslBackends(u: SaslUser, n: number): Promise<MemcachedProcess[]> {
  return Promise.all(Array.from({ length: n }, () => startMemcached({ sasl: u })));
}

/** Items a memcached -S holds, read directly (with the same credentials). */
async function itemsOn(mc: MemcachedProcess, u: SaslUser): Promise<number> {
  const b = new Backend(mc.address, { requestTimeoutMs: 10_000, codec: binaryCodec(u) });
  direct.push(b);
  const stats = await b.stats();
  if (!(stats instanceof Map)) throw new Error(`stats failed: ${stats.reason}`);
  return Number(stats.get('curr_items'));
}

/** The key's value on that backend, asked directly; null: not there. */
async function valueOn(mc: MemcachedProcess, u: SaslUser, key: string): Promise<string | null> {
  const b = new Backend(mc.address, { requestTimeoutMs: 10_000, codec: binaryCodec(u) });
  direct.push(b);
  const r = await b.get(Buffer.from(key));
  if (r.status === 'failed') throw new Error(`get failed: ${r.reason}`);
  return r.status === 'hit' ? r.item.value.toString() : null;
}

/** JSON log lines with this message. */
function logLines(output: string, msg: string): Array<Record<string, unknown>> {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);
}

describe('SASL to the backends', () => {
  test('PHP sessions (php-memcached binary, pecl-memcache text) replicated to two memcached -S; password from the environment, never logged', async () => {
    const u = user();
    const mcs = await saslBackends(u, 2);
    proxy = await startProxy({
      backends: mcs.map((m) => m.address),
      replicas: 2,
      logLevel: 'debug',
      args: ['--backend-sasl-username', u.username],
      env: { REPLICACHED_BACKEND_SASL_PASSWORD: u.password },
    });
    for (const kind of ['memcached-binary', 'memcache'] as const) {
      const prefix = `sasl-${kind}-`;
      const written = await writeSessions(kind, { port: proxy.port, prefix, count: 20 });
      expect(written.problems).toEqual([]);
      const read = await readSessions(kind, { port: proxy.port, prefix, count: 20 });
      expect(read.problems).toEqual([]);
      expect(read.ok).toBe(20);
    }
    // Every session is on both backends.
    for (const mc of mcs) expect(await itemsOn(mc, u)).toBeGreaterThanOrEqual(40);

    // One dies and comes back empty: the sessions are still read (from the other).
    await mcs[0].restart();
    const again = await readSessions('memcached-binary', { port: proxy.port, prefix: 'sasl-memcached-binary-', count: 20 });
    expect(again.problems).toEqual([]);
    expect(again.ok).toBe(20);

    expect(proxy.output()).toContain('"level":"debug"');
    expect(proxy.output()).not.toContain(u.password);
  });

  test('password from a file (trailing newline ignored); the text protocol through to binary backends', async () => {
    const u = user();
    const mcs = await saslBackends(u, 2);
    dir = configDir('logLevel: debug\n');
    const passwordFile = dir.file.replace(/replicached\.yaml$/, 'password');
    writeFileSync(passwordFile, `${u.password}\n`, { mode: 0o600 });
    proxy = await startProxy({
      backends: mcs.map((m) => m.address),
      replicas: 2,
      logLevel: 'debug',
      args: ['--backend-sasl-username', u.username, '--backend-sasl-password-file', passwordFile],
    });
    const client = await TextClient.connect(proxy.port);
    expect(await client.request('set k 5 0 5\r\nhello\r\n', /\r\n/)).toBe('STORED\r\n');
    expect(await client.request('get k\r\n', /END\r\n/)).toBe('VALUE k 5 5\r\nhello\r\nEND\r\n');
    expect(await client.request('incr n 1\r\n', /\r\n/)).toBe('NOT_FOUND\r\n');
    expect(await client.request('stats settings\r\n', /END\r\n/)).toContain('STAT replicached_backend_sasl yes\r\n');
    client.close();
    // A binary key the meta protocol could not carry (over 186 bytes, with spaces) reaches binary backends.
    const key = Buffer.alloc(250, 0x20);
    const [stored] = await binaryExchange(proxy.port, [binaryPacket({ opcode: 0x01, key, extras: Buffer.alloc(8), value: Buffer.from('v') })]);
    expect(stored.status).toBe(0);
    for (const mc of mcs) expect(await itemsOn(mc, u)).toBe(2 + reservedItems());
    expect(proxy.output()).not.toContain(u.password);
  });

  test('--workers 2: each worker authenticates; a missing password stops the start at once (no worker respawn loop)', async () => {
    const u = user();
    const mcs = await saslBackends(u, 2);
    const args = ['--backend-sasl-username', u.username, '--workers', '2'];
    proxy = await startProxy({ backends: mcs.map((m) => m.address), replicas: 2, args, env: { REPLICACHED_BACKEND_SASL_PASSWORD: u.password } });
    const client = await TextClient.connect(proxy.port);
    expect(await client.request('set w 0 0 1\r\nv\r\n', /\r\n/)).toBe('STORED\r\n');
    client.close();
    // Two workers: two sidecars, each with its record (the second may still be starting).
    for (const mc of mcs) await pollUntil(async () => (await itemsOn(mc, u)) === 1 + reservedItems(2), 10_000, 50, 'the item and both records');
    await proxy.stop();
    proxy = null;
    const failed = await startProxy({ backends: mcs.map((m) => m.address), args, env: { REPLICACHED_BACKEND_SASL_PASSWORD: '' } }).catch((err: Error) => err);
    expect(failed).toBeInstanceOf(Error);
    expect((failed as Error).message).toContain('backendSasl: the environment variable REPLICACHED_BACKEND_SASL_PASSWORD holding the password is not set');
  });

  test('wrong password in the config file: down with an error line and reason "auth"; a reload with the right one brings it back; neither password logged', async () => {
    const u = user();
    const wrong = `wrong-${randomBytes(8).toString('hex')}`;
    const [mc] = await saslBackends(u, 1);
    const yaml = (password: string): string => `backendSasl:\n  username: ${u.username}\n  password: "${password}"\n`;
    dir = configDir(yaml(wrong));
    proxy = await startProxy({ backends: [mc.address], metrics: true, logLevel: 'debug', args: ['--config', dir.file] });
    const p = proxy;
    await waitFor('the backend marked down for its credentials', () => logLines(p.output(), 'backend down: SASL authentication refused; check backendSasl').length > 0);
    const line = logLines(p.output(), 'backend down: SASL authentication refused; check backendSasl')[0];
    expect(line).toMatchObject({ level: 'error', backend: mc.address, username: u.username, reason: 'authentication failed: Auth failure.' });
    const metrics = await scrape(p.metricsPort!);
    expect(metricValue(metrics, 'replicached_backend_errors_total', { backend: mc.address, reason: 'auth' })).toBeGreaterThan(0);
    expect(metricValue(metrics, 'replicached_backend_up', { backend: mc.address })).toBe(0);

    dir.write(yaml(u.password));
    p.child.kill('SIGHUP');
    const client = await TextClient.connect(p.port);
    await waitFor('sets succeed once the right password is loaded', async () => (await client.request('set k 0 0 1\r\nv\r\n', /\r\n/)) === 'STORED\r\n');
    client.close();
    // The item itself: a count of items would include the resync's own bookkeeping key.
    expect(await valueOn(mc, u, 'k')).toBe('v');
    const reload = logLines(p.output(), 'config reload: settings changed')[0];
    expect(reload.changed).toEqual({ 'backendSasl.password': { from: '[redacted]', to: '[redacted]' } });
    expect(p.output()).not.toContain(u.password);
    expect(p.output()).not.toContain(wrong);
  });
});
