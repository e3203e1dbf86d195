// The newcomer's default: with no backends configured, replicached starts three
// memcached processes of its own, proxies to them, prints the php.ini lines,
// and stops them on exit.

import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { expect, test } from 'vitest';
import { waitForOutput } from '../helpers/wait';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli.js');

/** Pids of the memcached processes whose parent is `ppid`. */
function memcachedChildren(ppid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (stat.includes('(memcached)') && Number(fields[1]) === ppid && fields[0] !== 'Z') pids.push(Number(entry));
    } catch {
      // the process went away while we looked
    }
  }
  return pids;
}

function ask(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(request));
    let reply = '';
    socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      if (reply.endsWith('END\r\n')) socket.end();
    });
    socket.on('close', () => resolve(reply));
  });
}

test('no backends: three local memcached with their pids printed, php.ini hint, the kill -9 demo, all stopped on SIGTERM', async () => {
  const child = spawn(process.execPath, [CLI, '--listen', '127.0.0.1:0', '--metrics-listen', 'off'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    const listening = /replicached listening on 127\.0\.0\.1:(\d+)/;
    await waitForOutput(child, () => out, (text) => listening.test(text));
    const port = Number(listening.exec(out)![1]);
    expect(out).toContain('session.save_handler = memcached');
    expect(out).toContain(`session.save_path = "127.0.0.1:${port}"`);
    expect(out).toContain(`session.save_path = "tcp://127.0.0.1:${port}"`);
    expect(memcachedChildren(child.pid!)).toHaveLength(3);
    // The demo says "kill -9 <pid>": the banner names each local memcached's address and pid.
    const printed = [...out.matchAll(/^ {2}127\.0\.0\.1:(\d+) {2}pid (\d+)$/gm)].map((m) => ({ port: Number(m[1]), pid: Number(m[2]) }));
    expect(printed.map((p) => p.pid).sort()).toEqual(memcachedChildren(child.pid!).sort());
    for (const { port: mcPort } of printed) expect(await ask(mcPort, 'get nothing\r\n')).toBe('END\r\n');
    expect(out).toContain('kill -9 one of these pids');
    expect(await ask(port, 'set k 0 0 1\r\nv\r\nget k\r\n')).toBe('STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n');

    // The demo, as the banner tells it: kill -9 one of those pids; its keys are still served,
    // and replicached prints the command that brings it back.
    process.kill(printed[0].pid, 'SIGKILL');
    await waitForOutput(child, () => out, (text) => text.includes(`local memcached 127.0.0.1:${printed[0].port} exited (signal SIGKILL)`));
    expect(await ask(port, 'get k\r\n')).toBe('VALUE k 0 1\r\nv\r\nEND\r\n');
    expect(out).toContain(`memcached -l 127.0.0.1 -p ${printed[0].port} `);

    const children = memcachedChildren(child.pid!);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of children) expect(() => process.kill(pid, 0), `memcached ${pid} left behind`).toThrow();
  } finally {
    child.kill('SIGKILL');
  }
});
