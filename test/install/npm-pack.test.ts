// The npm package: `npm pack` on a copy of the checkout (its prepack script builds dist/ there,
// not in the dist/ other tests run), then `npm install -g` of the tarball into a temporary
// prefix, which installs the production dependencies only (from the npm cache; from the
// registry for what it lacks), and the installed `replicached` runs.

import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';

const ROOT = path.join(__dirname, '..', '..');
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function ok(file: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, timeout: 500_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      err === null ? resolve(stdout) : reject(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stdout}${stderr}`)),
    );
  });
}

let dir: string;
let files: string[];
let prefix: string;
beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'replicached-npm-pack-'));
  // What a clone holds: git's tracked and untracked files, .gitignore applied (no dist/).
  const checkout = path.join(dir, 'checkout');
  const tracked = (await ok('git', ['ls-files', '-co', '--exclude-standard', '-z'], ROOT)).split('\0').filter((f) => f !== '');
  for (const f of tracked) {
    if (!existsSync(path.join(ROOT, f))) continue; // deleted in the work tree, not yet in git
    mkdirSync(path.dirname(path.join(checkout, f)), { recursive: true });
    copyFileSync(path.join(ROOT, f), path.join(checkout, f));
  }
  // The dev dependencies prepack's build needs, as `npm install` left them.
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(checkout, 'node_modules'));
  // At normal priority: at nice 19 two busy loops beside the suite starved it past its timeout
  // (no test beside it asserts wall-clock time; scripts/timing-check.sh does, on a calm machine).
  const packed = JSON.parse(await ok('npm', ['pack', '--json', '--pack-destination', dir], checkout)) as {
    filename: string;
    files: { path: string }[];
  }[];
  files = packed[0].files.map((f) => f.path);
  prefix = path.join(dir, 'prefix');
  await ok('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', path.join(dir, packed[0].filename)], dir);
}, 560_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('the package holds the built program and its docs, not the sources, tests or source maps', () => {
  for (const f of ['package.json', 'README.md', 'CHANGELOG.md', 'dist/cli.js', 'dist/proxy.js', 'examples/replicached.yaml']) expect(files).toContain(f);
  expect(files.filter((f) => /^(src|test|bench|scripts|packaging)\//.test(f) || f.endsWith('.map'))).toEqual([]);
});

test('npm install -g installs the production dependencies only', () => {
  const installed = path.join(prefix, 'lib', 'node_modules', 'replicached', 'node_modules');
  for (const dep of ['pino', 'prom-client', 'yaml', 'hashring']) expect(existsSync(path.join(installed, dep)), dep).toBe(true);
  for (const dev of ['typescript', 'vitest', 'fast-check', '@types/node']) expect(existsSync(path.join(installed, dev)), dev).toBe(false);
});

test('the installed replicached runs: --help and --version', async () => {
  const bin = path.join(prefix, 'bin', 'replicached');
  expect(await ok(bin, ['--help'], dir)).toMatch(/^Usage: replicached/);
  expect(await ok(bin, ['--version'], dir)).toBe(`replicached ${VERSION}\n`);
});
