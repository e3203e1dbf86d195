// package.json and package-lock.json stay in step, so that a fresh clone's `npm ci`
// (and the Dockerfile's) works and `npm install` leaves the lock file as committed.
// Both checks run npm offline, from the cache the `npm install` before `npm test` filled,
// on copies of the two files in a temporary directory: no network, a few seconds.

import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, expect, test } from 'vitest';

const ROOT = path.join(__dirname, '..', '..');
const FILES = ['package.json', 'package-lock.json'];
// Neither --dry-run nor --package-lock-only runs a script.
const OFFLINE = ['--offline', '--no-audit', '--no-fund'];

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'replicached-lockfile-'));
  for (const f of FILES) copyFileSync(path.join(ROOT, f), path.join(dir, f));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Runs npm in the copy; resolves with its exit code and output (ENOTCACHED: the cache lacks a package). */
async function npm(args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)('npm', args, { cwd: dir, timeout: 60_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

test('npm ci accepts the lock file (what a fresh clone and the Dockerfile run), with no install-scripts warning', async () => {
  const { code, output } = await npm(['ci', '--dry-run', ...OFFLINE]);
  expect(code, output).toBe(0);
  // npm 11 warns about dependencies' install scripts that package.json's allowScripts does not cover.
  expect(output).not.toContain('install-scripts');
}, 60_000);

test('npm install leaves the lock file byte for byte as committed', async () => {
  const before = readFileSync(path.join(dir, 'package-lock.json'), 'utf8');
  const { code, output } = await npm(['install', '--package-lock-only', ...OFFLINE]);
  expect(code, output).toBe(0);
  expect(readFileSync(path.join(dir, 'package-lock.json'), 'utf8'), 'npm install rewrote package-lock.json').toBe(before);
}, 60_000);

// The lock file fd75605 fixed: another platform's optional packages left out (npm 11 refuses it).
test('the check catches drift: a lock file without the macOS rollup packages fails npm ci', async () => {
  const lockPath = path.join(dir, 'package-lock.json');
  const lock = JSON.parse(readFileSync(lockPath, 'utf8')) as { packages: Record<string, unknown> };
  const platformPackages = Object.keys(lock.packages).filter((k) => k.startsWith('node_modules/@rollup/rollup-darwin-'));
  expect(platformPackages.length).toBeGreaterThan(0);
  for (const k of platformPackages) delete lock.packages[k];
  writeFileSync(lockPath, JSON.stringify(lock, null, 2) + '\n');
  const { code, output } = await npm(['ci', '--dry-run', ...OFFLINE]);
  expect(code, output).not.toBe(0);
  expect(output).toMatch(/not in sync|Missing: @rollup\/rollup-darwin/);
}, 60_000);
