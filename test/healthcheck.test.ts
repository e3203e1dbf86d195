// dist/healthcheck.js, the image's HEALTHCHECK: it reads the metrics address from the same
// flags and config file as replicached (no port written into the Dockerfile) and asks /healthz.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startMemcached, type MemcachedProcess } from './helpers/memcached';
import { startProxy, type ProxyProcess } from './helpers/proxy';

const HEALTHCHECK = path.join(__dirname, '..', 'dist', 'healthcheck.js');

let backend: MemcachedProcess;
let proxy: ProxyProcess;
let dir: string;
beforeAll(async () => {
  backend = await startMemcached();
  proxy = await startProxy({ backends: [backend.address], metrics: true });
  dir = mkdtempSync(path.join(tmpdir(), 'replicached-healthcheck-'));
});
afterAll(async () => {
  await proxy.stop();
  await backend.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the healthcheck with a config file holding `yaml` (and extra flags); resolves with its exit code and stderr. */
async function healthcheck(yaml: string, flags: string[] = []): Promise<{ code: number; stderr: string }> {
  const file = path.join(dir, 'replicached.yaml');
  writeFileSync(file, yaml);
  try {
    await promisify(execFile)(process.execPath, [HEALTHCHECK, '--config', file, ...flags]);
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

test('the metrics port comes from the config file; a wildcard address is asked on loopback', async () => {
  const backends = `backends: [${backend.address}]\n`;
  expect(await healthcheck(`${backends}metricsListen: 127.0.0.1:${proxy.metricsPort}\n`)).toEqual({ code: 0, stderr: '' });
  expect(await healthcheck(`${backends}metricsListen: 0.0.0.0:${proxy.metricsPort}\n`)).toEqual({ code: 0, stderr: '' });
  // A flag wins over the file, as for replicached.
  const viaFlag = await healthcheck(`${backends}metricsListen: 127.0.0.1:1\n`, ['--metrics-listen', `127.0.0.1:${proxy.metricsPort}`]);
  expect(viaFlag.code).toBe(0);
});

test('unhealthy when nothing answers there, when metrics are off, and on a bad config', async () => {
  const backends = `backends: [${backend.address}]\n`;
  const refused = await healthcheck(`${backends}metricsListen: 127.0.0.1:1\n`);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain('http://127.0.0.1:1/healthz');
  expect(await healthcheck(`${backends}metricsListen: off\n`)).toEqual({
    code: 1,
    stderr: 'replicached healthcheck: metrics are off (metricsListen: off): nothing to check\n',
  });
  const bad = await healthcheck('replicas: many\n');
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('replicas');
});
