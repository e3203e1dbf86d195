// A port already taken: replicached exits 1 with a message naming the setting to change,
// for the client port and the metrics port, and names the usual holder of 11211.

import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { listenError } from '../src/listen-error';
import { startMemcached, type MemcachedProcess } from './helpers/memcached';

const CLI = path.join(__dirname, '..', 'dist', 'cli.js');

let taken: net.Server;
let takenPort: number;
let backend: MemcachedProcess;
beforeAll(async () => {
  backend = await startMemcached();
  taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  takenPort = (taken.address() as net.AddressInfo).port;
});
afterAll(async () => {
  taken.close();
  await backend.stop();
});

/** Runs the CLI to its exit; resolves with the exit code and stderr. */
async function run(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await promisify(execFile)(process.execPath, [CLI, '--backends', backend.address, ...args]);
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

test('the client port in use: exit 1, and the message names --listen and listen:', async () => {
  const { code, stderr } = await run(['--listen', `127.0.0.1:${takenPort}`, '--metrics-listen', 'off']);
  expect(code).toBe(1);
  expect(stderr).toBe(
    `replicached: cannot listen for clients on 127.0.0.1:${takenPort}: another process holds that port ` +
      '(EADDRINUSE; another replicached?). Stop it, or change --listen host:port (listen: in the config file).\n',
  );
});

test('the metrics port in use: exit 1, and the message names --metrics-listen and metricsListen:', async () => {
  const { code, stderr } = await run(['--listen', '127.0.0.1:0', '--metrics-listen', `127.0.0.1:${takenPort}`]);
  expect(code).toBe(1);
  expect(stderr).toContain(`cannot serve metrics on 127.0.0.1:${takenPort}: another process holds that port`);
  expect(stderr).toContain('change --metrics-listen host:port or off (metricsListen: in the config file)');
});

test('11211 in use points at a packaged memcached', () => {
  const inUse = Object.assign(new Error('listen EADDRINUSE: address already in use 127.0.0.1:11211'), { code: 'EADDRINUSE' });
  const err = listenError(inUse, 'client', { host: '127.0.0.1', port: 11211 }) as Error;
  expect(err.message).toContain("on 11211 often a packaged memcached (Debian: 'systemctl disable --now memcached')");
  // Any other failure passes through untouched.
  const other = Object.assign(new Error('boom'), { code: 'EMFILE' });
  expect(listenError(other, 'client', { host: '127.0.0.1', port: 11211 })).toBe(other);
});
