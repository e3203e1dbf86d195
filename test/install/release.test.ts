// `npm run package` (scripts/package.sh), built once for this file into a temporary folder:
// the tarball runs on its own node where PATH holds none, and the .deb holds what a VM install
// needs. The build takes about a minute on a loaded 2-core machine (tsc, npm ci from the cache,
// gzip and xz over a 100 MB node binary).

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startMemcached, stopAllMemcached } from '../helpers/memcached';
import { waitForOutput } from '../helpers/wait';

const ROOT = path.join(__dirname, '..', '..');
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const NAME = `replicached-${VERSION}-linux-x64`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeout?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: options.timeout ?? 60_000, env: options.env, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr }),
    );
  });
}

async function ok(file: string, args: string[], options?: { env?: NodeJS.ProcessEnv; timeout?: number }): Promise<string> {
  const r = await run(file, args, options);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

let dir: string;
let tarball: string;
let deb: string;
beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'replicached-release-'));
  const out = path.join(dir, 'release');
  // At normal priority: at nice 19 two busy loops beside the suite starved it past its timeout.
  // On a timeout bash gets SIGTERM: once the step running finishes, it removes its staging folder.
  await ok('bash', [path.join(ROOT, 'scripts', 'package.sh'), '--out', out], { timeout: 500_000 });
  tarball = path.join(out, `${NAME}.tar.gz`);
  deb = path.join(out, `replicached_${VERSION}_amd64.deb`);
}, 530_000);
afterAll(async () => {
  await stopAllMemcached();
  rmSync(dir, { recursive: true, force: true });
});

/** One text-protocol exchange: sends `request`, resolves with the reply once it ends with `end`. */
function exchange(port: number, request: string, end: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(request));
    let reply = '';
    s.setTimeout(10_000, () => s.destroy(new Error(`no complete reply from ${port}: ${JSON.stringify(reply)}`)));
    s.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      if (!reply.endsWith(end)) return;
      s.end();
      resolve(reply);
    });
    s.on('error', reject);
  });
}

describe('the tarball', () => {
  let app: string;
  let pathWithoutNode: string;
  beforeAll(async () => {
    const extracted = path.join(dir, 'extracted');
    mkdirSync(extracted);
    await ok('tar', ['-xzf', tarball, '-C', extracted]);
    app = path.join(extracted, NAME);
    // The launcher's one outside command. Nothing else is on PATH: no node.
    pathWithoutNode = path.join(dir, 'path-without-node');
    mkdirSync(pathWithoutNode);
    const readlink = ['/usr/bin/readlink', '/bin/readlink'].find((f) => existsSync(f));
    symlinkSync(readlink!, path.join(pathWithoutNode, 'readlink'));
  });

  test('holds the launcher, its node, dist/ and production dependencies only', async () => {
    for (const f of ['bin/replicached', 'node/bin/node', 'node/LICENSE', 'dist/cli.js', 'package.json', 'share/replicached.yaml', 'share/replicached.service', 'share/doc/install.md', 'share/doc/CHANGELOG.md']) {
      expect(existsSync(path.join(app, f)), f).toBe(true);
    }
    for (const dev of ['typescript', 'vitest', 'fast-check', '@types/node']) expect(existsSync(path.join(app, 'node_modules', dev)), dev).toBe(false);
    for (const dep of ['pino', 'prom-client', 'yaml', 'hashring']) expect(existsSync(path.join(app, 'node_modules', dep)), dep).toBe(true);
    expect(await ok(path.join(app, 'node', 'bin', 'node'), ['--version'], { env: {} })).toMatch(/^v20\./);
  });

  test('runs where PATH holds no node, on its own node: a set/get through it, stored on both memcached', async () => {
    const [a, b] = [await startMemcached(), await startMemcached()];
    const env = { PATH: pathWithoutNode };
    expect((await run('bash', ['-c', 'command -v node'], { env })).code, 'a node on the test PATH').not.toBe(0);
    // The packaged default config, its backends and ports replaced by flags.
    const args = ['--config', path.join(app, 'share', 'replicached.yaml'), '--backends', `${a.address},${b.address}`, '--listen', '127.0.0.1:0', '--metrics-listen', 'off'];
    const child = spawn(path.join(app, 'bin', 'replicached'), args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitForOutput(child, () => out, (text) => /replicached listening on 127\.0\.0\.1:\d+/.test(text));
      // The launcher execs node: the process is node, and it is the tarball's.
      expect(readlinkSync(`/proc/${child.pid}/exe`)).toBe(path.join(app, 'node', 'bin', 'node'));
      const port = Number(/replicached listening on 127\.0\.0\.1:(\d+)/.exec(out)![1]);
      const value = `from-the-tarball-${process.pid}`;
      const reply = await exchange(port, `set release-check 0 0 ${value.length}\r\n${value}\r\nget release-check\r\n`, 'END\r\n');
      expect(reply).toBe(`STORED\r\nVALUE release-check 0 ${value.length}\r\n${value}\r\nEND\r\n`);
      for (const mc of [a, b]) {
        expect(await exchange(mc.port, 'get release-check\r\n', 'END\r\n'), mc.address).toContain(value);
      }
      child.kill('SIGTERM');
      expect(await exited, out).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('its launcher, reached through a symlink as /usr/bin/replicached is, finds its tree', async () => {
    const link = path.join(dir, 'replicached-link');
    symlinkSync(path.join(app, 'bin', 'replicached'), link);
    expect(await ok(link, ['--version'], { env: { PATH: pathWithoutNode } })).toBe(`replicached ${VERSION}\n`);
  });
});

describe('the .deb', () => {
  test('control: name, version, architecture, dependencies; the config is a conffile', async () => {
    const field = async (name: string) => (await ok('dpkg-deb', ['-f', deb, name])).trim();
    expect(await field('Package')).toBe('replicached');
    expect(await field('Version')).toBe(VERSION);
    expect(await field('Architecture')).toBe('amd64');
    expect(await field('Depends')).toMatch(/\badduser\b.*\blibc6 \(>= 2\.28\)/);
    expect((await ok('dpkg-deb', ['-I', deb, 'conffiles'])).trim()).toBe('/etc/replicached/replicached.yaml');
    const info = await ok('dpkg-deb', ['-I', deb]);
    for (const script of ['postinst', 'prerm', 'postrm']) expect(info).toMatch(new RegExp(`\\*\\s+${script}\\s+#!/bin/bash`));
  });

  test('files: the tarball tree under /opt/replicached, /usr/bin/replicached, the unit, the config; all owned by root', async () => {
    const listing = (await ok('dpkg-deb', ['-c', deb])).trim().split('\n');
    const entries = new Map(
      listing.map((line) => {
        // "-rwxr-xr-x root/root  451 2026-01-01 00:00 ./opt/replicached/bin/replicached", symlinks "... -> target"
        const m = /^(\S+) (\S+)\s+\d+ \S+ \S+ \.(\/.*?)(?: -> (.+))?$/.exec(line);
        if (!m) throw new Error(`unexpected dpkg-deb -c line: ${line}`);
        return [m[3].replace(/\/$/, '') || '/', { mode: m[1], owner: m[2], target: m[4] }] as const;
      }),
    );
    for (const { owner } of entries.values()) expect(owner).toBe('root/root');
    expect(entries.get('/opt/replicached/bin/replicached')?.mode).toBe('-rwxr-xr-x');
    expect(entries.get('/opt/replicached/node/bin/node')?.mode).toBe('-rwxr-xr-x');
    expect(entries.get('/usr/bin/replicached')?.target).toBe('/opt/replicached/bin/replicached');
    expect(entries.get('/usr/lib/systemd/system/replicached.service')?.mode).toBe('-rw-r--r--');
    expect(entries.get('/etc/replicached/replicached.yaml')?.mode).toBe('-rw-r--r--');

    const inTarball = (await ok('tar', ['-tzf', tarball]))
      .trim()
      .split('\n')
      .map((f) => f.replace(new RegExp(`^${NAME}/?`), '/opt/replicached/').replace(/\/$/, ''));
    const inOpt = [...entries.keys()].filter((f) => f.startsWith('/opt/replicached/'));
    expect(inOpt.sort()).toEqual(inTarball.filter((f) => f !== '/opt/replicached').sort());
  });

  test('the unit and the config are the ones in packaging/', async () => {
    const extracted = path.join(dir, 'deb-root');
    await ok('dpkg-deb', ['-x', deb, extracted]);
    const same = (installed: string, source: string) =>
      expect(readFileSync(path.join(extracted, installed), 'utf8'), installed).toBe(readFileSync(path.join(ROOT, 'packaging', source), 'utf8'));
    same('usr/lib/systemd/system/replicached.service', 'replicached.service');
    same('etc/replicached/replicached.yaml', 'replicached.yaml');
    expect(await ok(path.join(extracted, 'opt', 'replicached', 'bin', 'replicached'), ['--version'], { env: { PATH: '/usr/bin:/bin' } })).toBe(
      `replicached ${VERSION}\n`,
    );
  });
});
