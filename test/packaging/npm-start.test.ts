// `npm start` under a process manager: SIGTERM or SIGINT sent to the npm process (what
// `kill <pid>` or systemd does) must reach replicached, which stops its local memcached and
// exits; nothing may be left holding the ports. npm runs the start script through `sh -c`,
// and a shell that does not exec its last command dies of the signal and orphans node.
//
// `--ignore-scripts` skips prestart (the build and ensure-deps.sh): `npm test` has built dist/
// already, and a second tsc rewriting dist/ would race the other test files that run it.

import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { expect, test } from 'vitest';
import { pollUntil, waitForOutput } from '../helpers/wait';

const ROOT = path.join(__dirname, '..', '..');

interface Proc {
  pid: number;
  ppid: number;
  command: string;
}

/** Every live process (zombies left out: they have exited), from /proc. */
function processes(): Proc[] {
  const procs: Proc[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z') continue;
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
      procs.push({ pid: Number(entry), ppid: Number(ppid), command });
    } catch {
      // gone while we looked
    }
  }
  return procs;
}

function descendants(pid: number): Proc[] {
  const all = processes();
  const found: Proc[] = [];
  let parents = [pid];
  while (parents.length > 0) {
    const children = all.filter((p) => parents.includes(p.ppid));
    found.push(...children);
    parents = children.map((p) => p.pid);
  }
  return found;
}

const alive = (pid: number) => processes().some((p) => p.pid === pid);

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', () => resolve(true));
  });
}

test.each(['SIGTERM', 'SIGINT'] as const)('%s to the npm start process stops replicached and its memcached', async (signal) => {
  const npm = spawn('npm', ['start', '--ignore-scripts', '--', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  npm.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
  let left: number[] = [];
  try {
    const listening = /replicached listening on 127\.0\.0\.1:(\d+)\nmetrics on http:\/\/127\.0\.0\.1:(\d+)\//;
    await waitForOutput(npm, () => out, (text) => listening.test(text));
    const [, port, metricsPort] = listening.exec(out)!.map(Number);
    const proxy = descendants(npm.pid!).find((p) => /^\S*node dist\/cli\.js /.test(p.command));
    expect(proxy, out).toBeDefined();
    const memcached = descendants(proxy!.pid).filter((p) => p.command.startsWith('memcached '));
    left = [proxy!.pid, ...memcached.map((p) => p.pid)];
    expect(memcached).toHaveLength(3);

    npm.kill(signal);
    const npmGone = () => npm.exitCode !== null || npm.signalCode !== null;
    await pollUntil(npmGone, 15_000, 50, `npm start still running 15 s after ${signal}:\n${out}`);
    expect(await exited, out).toBe(0);
    // replicached drains (at most 5 s), stops its memcached and exits before npm does; allow for a slow machine.
    await pollUntil(() => !left.some(alive), 15_000, 50, `still running after npm exited: ${left.filter(alive).join(', ')}\n${out}`);
    expect(out).toContain(`"signal":"${signal}","msg":"shutting down"`);
    for (const p of [port, metricsPort]) expect(await refused(p), `port ${p} still answers`).toBe(true);
  } finally {
    npm.kill('SIGKILL');
    for (const pid of left) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
}, 40_000);
