// The systemd unit and the default config the .deb installs (packaging/): the unit's
// directives as the brief of the VM install asks for them, the unit checked by systemd's own
// `systemd-analyze verify` and `security` where systemd is installed, and the config as
// replicached loads it.

import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig, parseArgs, type Config } from '../../src/config';
import { parseUnit, value, values, type Unit } from './unit-file';

const PACKAGING = path.join(__dirname, '..', '..', 'packaging');
const UNIT_PATH = path.join(PACKAGING, 'replicached.service');
const CONFIG_PATH = path.join(PACKAGING, 'replicached.yaml');
const INSTALL_DIR = '/opt/replicached';

const unitText = readFileSync(UNIT_PATH, 'utf8');
const unit: Unit = parseUnit(unitText);
const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

/** The default config, as `replicached --config` loads it. */
function packagedConfig(): Config {
  const args = parseArgs(['--config', CONFIG_PATH]);
  if (args.kind !== 'run') throw new Error(`expected a run, got ${args.kind}`);
  return loadConfig(args);
}

describe('the unit file', () => {
  test('runs the installed launcher on /etc/replicached/replicached.yaml as the replicached user', () => {
    expect(value(unit, 'Service', 'ExecStart')).toBe(`${INSTALL_DIR}/bin/replicached --config /etc/replicached/replicached.yaml`);
    expect(value(unit, 'Service', 'User')).toBe('replicached');
    expect(value(unit, 'Install', 'WantedBy')).toBe('multi-user.target');
  });

  test('reloads with SIGHUP; stops by SIGTERM to the main process only, for longer than the packaged drain', () => {
    expect(value(unit, 'Service', 'ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(value(unit, 'Service', 'KillMode')).toBe('mixed');
    expect(value(unit, 'Service', 'KillSignal') ?? 'SIGTERM').toBe('SIGTERM');
    const stopSeconds = Number(value(unit, 'Service', 'TimeoutStopSec'));
    expect(packagedConfig().drainTimeoutMs).toBeLessThan(stopSeconds * 1000);
    // An invalid config (exit 2) is not restarted in a loop.
    expect(value(unit, 'Service', 'RestartPreventExitStatus')).toBe('2');
  });

  test("starts before php-fpm (Debian 12's, Ubuntu 24.04's, RHEL's names), so that php-fpm stops first", () => {
    const before = values(unit, 'Unit', 'Before').flatMap((v) => v.split(/\s+/));
    for (const name of ['php-fpm.service', 'php8.2-fpm.service', 'php8.3-fpm.service']) expect(before).toContain(name);
    // After= on php-fpm would invert the order; a Requires= would stop replicached with it.
    const after = values(unit, 'Unit', 'After').join(' ');
    expect(after).not.toMatch(/php/);
  });

  test('is hardened', () => {
    const expected: Record<string, string> = {
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      ProtectKernelTunables: 'yes',
      ProtectKernelModules: 'yes',
      ProtectControlGroups: 'yes',
      RestrictSUIDSGID: 'yes',
      CapabilityBoundingSet: '',
      SystemCallArchitectures: 'native',
    };
    for (const [key, want] of Object.entries(expected)) expect(value(unit, 'Service', key), key).toBe(want);
    expect(value(unit, 'Service', 'RestrictAddressFamilies')?.split(/\s+/).sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_UNIX']);
    expect(values(unit, 'Service', 'SystemCallFilter')).toContain('@system-service');
  });
});

describe.runIf(hasSystemdAnalyze)('systemd-analyze, on the unit with ExecStart under a temporary folder', () => {
  let dir: string;
  let unitCopy: string;
  beforeAll(() => {
    // verify checks that ExecStart's program exists and is executable: a stand-in at the same
    // place under a temporary folder (release.test.ts runs the real one).
    dir = mkdtempSync(path.join(tmpdir(), 'replicached-unit-'));
    const launcher = path.join(dir, 'opt', 'replicached', 'bin', 'replicached');
    mkdirSync(path.dirname(launcher), { recursive: true });
    writeFileSync(launcher, '#!/bin/sh\nexit 0\n');
    chmodSync(launcher, 0o755);
    unitCopy = path.join(dir, 'replicached.service');
    writeFileSync(unitCopy, unitText.replaceAll(`${INSTALL_DIR}/`, `${dir}${INSTALL_DIR}/`));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const analyze = (args: string[]): Promise<{ code: number | null; output: string }> =>
    new Promise((resolve) => {
      execFile('systemd-analyze', args, { timeout: 20_000 }, (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, output: stdout + stderr }),
      );
    });

  test('verify: no error and no warning', async () => {
    const { code, output } = await analyze(['verify', unitCopy]);
    expect(code, output).toBe(0);
    expect(output.trim()).toBe('');
  });

  test('security: an overall exposure of at most 2.0 of 10', async () => {
    // --threshold is in tenths of the exposure level shown.
    const { code, output } = await analyze(['security', '--offline=yes', '--threshold=20', unitCopy]);
    expect(code, output).toBe(0);
    expect(output).toMatch(/Overall exposure level for replicached\.service: [01]\.\d/);
  });
});

test('the default config is valid, names its backends (no local memcached) and listens on loopback only', () => {
  const config = packagedConfig();
  expect(config.backends.length).toBeGreaterThanOrEqual(2);
  expect(config.backends.filter((b) => b.local)).toHaveLength(1);
  expect(config.replicas).toBe(2);
  expect(config.listen).toEqual({ host: '127.0.0.1', port: 11211 });
  expect(config.metricsListen?.host).toBe('127.0.0.1');
  expect(config.allowFlushAll).toBe(false);
});
