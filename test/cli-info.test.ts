// --version and --help of the built CLI, and the exit statuses --help lists: each one is what
// the CLI gives in that case (listen-error.test.ts covers exit 1 for a port in use).

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'replicached-cli-info-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('--version prints the version in package.json and exits 0', async () => {
  const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const run = await cli(['--version']);
  expect(run).toEqual({ code: 0, stdout: `replicached ${version}\n`, stderr: '' });
});

test('--help lists the exit statuses 0, 1 and 2 and exits 0', async () => {
  const run = await cli(['--help']);
  expect(run.code, run.stderr).toBe(0);
  const statuses = run.stdout.slice(run.stdout.indexOf('Exit status:'));
  expect(statuses).toMatch(/^ {2}0 {2}stopped by SIGTERM or SIGINT/m);
  expect(statuses).toMatch(/^ {2}1 {2}could not start/m);
  expect(statuses).toMatch(/^ {2}2 {2}an invalid flag or config file/m);
});

test('exit 2: an unknown flag, and a config file with an unknown field', async () => {
  const flag = await cli(['--no-such-flag']);
  expect(flag.code, flag.stderr).toBe(2);
  expect(flag.stderr).toContain('--no-such-flag: unknown flag');

  const file = path.join(dir, 'bad.yaml');
  writeFileSync(file, 'listen: 127.0.0.1:0\nno_such_field: 1\n');
  const config = await cli(['--config', file]);
  expect(config.code, config.stderr).toBe(2);
  expect(config.stderr).toContain(file);
});

test('exit 1: it could not start (a certificate that cannot be read)', async () => {
  const missing = path.join(dir, 'missing.pem');
  const run = await cli(['--backends', '127.0.0.1:1', '--listen', '127.0.0.1:0', '--metrics-listen', 'off', '--tls-cert', missing, '--tls-key', missing]);
  expect(run.code, run.stderr).toBe(1);
  expect(run.stderr).toContain(`cannot read "${missing}"`);
});
