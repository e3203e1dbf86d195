// --log-level debug explains an incident: backend state changes with their reason, the
// first answer of each backend, and what a reload changed, setting by setting. It never
// logs per-request data: no key and no value a client sent appears, at any level.

import { randomBytes } from 'node:crypto';
import { afterEach, expect, test } from 'vitest';
import { startMemcached, stopAllMemcached } from '../helpers/memcached';
import { startProxy, type ProxyProcess } from '../helpers/proxy';
import { configDir, TextClient, waitFor, type ConfigDir } from './support';

let proxy: ProxyProcess | null = null;
let dir: ConfigDir | null = null;
afterEach(async () => {
  await proxy?.stop();
  proxy = null;
  dir?.remove();
  dir = null;
  await stopAllMemcached();
});

/** The JSON log lines at `level` whose msg is `msg`. */
function lines(output: string, level: string, msg: string): Array<Record<string, unknown>> {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.level === level && l.msg === msg);
}

test('debug: backend down and up with reasons, a reload diff; never a key or a value', async () => {
  const mcs = [await startMemcached(), await startMemcached()];
  dir = configDir('replicas: 2\n');
  proxy = await startProxy({ backends: mcs.map((m) => m.address), logLevel: 'debug', args: ['--config', dir.file] });
  const p = proxy;

  // Client data, in both protocols' worth of shapes: what must never reach the log.
  const keyMark = `secretkey${randomBytes(6).toString('hex')}`;
  const valueMark = `secretvalue${randomBytes(6).toString('hex')}`;
  const client = await TextClient.connect(p.port);
  for (let i = 0; i < 50; i++) expect(await client.set(`${keyMark}:${i}`, `${valueMark}:${i}`)).toBe('STORED\r\n');
  expect(await client.get(`${keyMark}:7`)).toBe(`${valueMark}:7`);
  await waitFor('both backends answered', () => lines(p.output(), 'debug', 'backend answered for the first time').length === 2);

  // A backend dies: the state change, with its reason, once traffic finds it.
  const [, victim] = mcs;
  victim.kill('SIGKILL');
  await victim.exited();
  await waitFor('a debug line for the backend going down', async () => {
    await client.get(`${keyMark}:1`).catch(() => null);
    return lines(p.output(), 'debug', 'backend state change').some((l) => l.backend === victim.address && l.to === 'down');
  });
  const down = lines(p.output(), 'debug', 'backend state change').find((l) => l.to === 'down')!;
  expect(down).toMatchObject({ backend: victim.address, from: 'up', to: 'down' });
  expect(String(down.reason)).toMatch(/ECONNREFUSED|closed|reset|connect/i);

  // It comes back: the probes bring it up.
  await victim.restart();
  await waitFor(
    'a debug line for the backend coming up',
    () => lines(p.output(), 'debug', 'backend state change').some((l) => l.backend === victim.address && l.to === 'up'),
    15_000,
  );

  // A reload: every changed setting, before and after.
  dir.write('replicas: 1\nlimits:\n  maxKeysPerGet: 500\n');
  p.child.kill('SIGHUP');
  await waitFor('the reload diff', () => lines(p.output(), 'debug', 'config reload: settings changed').length > 0);
  const diff = lines(p.output(), 'debug', 'config reload: settings changed')[0];
  expect(diff.changed).toEqual({
    replicas: { from: 2, to: 1 },
    'limits.maxKeysPerGet': { from: 10_000, to: 500 },
  });

  // More requests at debug after the reload (their replies are not this test's concern).
  for (let i = 0; i < 50; i++) await client.get(`${keyMark}:${i}`).catch(() => null);
  client.close();
  expect(p.output()).not.toContain(keyMark);
  expect(p.output()).not.toContain(valueMark);
});
