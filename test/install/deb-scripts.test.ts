// The .deb's maintainer scripts (packaging/deb/), run with stand-ins for the commands they
// call (getent, adduser, systemctl) that record their arguments: nothing on this machine
// changes. Whether they talk to systemd depends on /run/systemd/system, as on a real machine,
// so the expectations follow this machine's.

import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';

const SCRIPTS = path.join(__dirname, '..', '..', 'packaging', 'deb');
const SYSTEMD_RUNS = existsSync('/run/systemd/system');

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'replicached-deb-scripts-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in: appends "<name> <args>" to calls.log, exits `status`. */
function stub(name: string, status = 0): void {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/bash\necho "${name} $*" >>"${path.join(dir, 'calls.log')}"\nexit ${status}\n`);
  chmodSync(file, 0o755);
}

function calls(): string[] {
  const log = path.join(dir, 'calls.log');
  return existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [];
}

function run(script: string, args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const env = { PATH: `${dir}:/usr/bin:/bin` };
    execFile('bash', [path.join(SCRIPTS, script), ...args], { env, timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout: stdout + stderr }),
    );
  });
}

test('postinst on a first install: creates the system user, leaves the service stopped and says what to do', async () => {
  stub('getent', 2); // no such user yet
  stub('adduser');
  stub('systemctl');
  const { code, stdout } = await run('postinst', ['configure', '']);
  expect(code, stdout).toBe(0);
  expect(calls()).toEqual([
    'getent passwd replicached',
    'adduser --system --group --no-create-home --home /nonexistent --quiet replicached',
    ...(SYSTEMD_RUNS ? ['systemctl daemon-reload'] : []),
  ]);
  expect(stdout).toContain('/etc/replicached/replicached.yaml');
  expect(stdout).toContain('systemctl enable --now replicached');
});

test('postinst on an upgrade: keeps the user, restarts the service only if it runs', async () => {
  stub('getent', 0);
  stub('adduser');
  stub('systemctl');
  const { code, stdout } = await run('postinst', ['configure', '0.0.9']);
  expect(code, stdout).toBe(0);
  expect(calls()).toEqual([
    'getent passwd replicached',
    ...(SYSTEMD_RUNS ? ['systemctl daemon-reload', 'systemctl try-restart replicached.service'] : []),
  ]);
  expect(stdout).toBe('');
});

test('prerm: stops and disables the service on removal, touches nothing on an upgrade', async () => {
  stub('systemctl');
  expect((await run('prerm', ['upgrade', '0.2.0'])).code).toBe(0);
  expect(calls()).toEqual([]);
  expect((await run('prerm', ['remove'])).code).toBe(0);
  expect(calls()).toEqual([...(SYSTEMD_RUNS ? ['systemctl stop replicached.service'] : []), 'systemctl disable --quiet replicached.service']);
});

test('a failing command fails the script (set -e), so dpkg reports it', async () => {
  stub('getent', 2);
  stub('adduser', 1);
  stub('systemctl');
  const { code } = await run('postinst', ['configure', '']);
  expect(code).toBe(1);
});
