// Child processes for the bench (memcached, nutcracker, replicached, memaslap) and what
// /proc says about them: CPU seconds (utime+stime) and memory (VmRSS, VmHWM), summed over
// a process and its descendants (so `--workers N` is measured as a whole).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

export const HOST = '127.0.0.1';

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const c of children) c.kill('SIGKILL');
    process.exit(130);
  });
}

export interface Proc {
  readonly pid: number;
  readonly child: ChildProcess;
  /** stdout+stderr so far. */
  output(): string;
  /** signal (default SIGTERM), SIGKILL after graceMs, resolves on exit. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function launch(cmd: string, args: string[]): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  const keep = (d: Buffer): void => {
    out += d.toString();
    if (out.length > 1 << 20) out = out.slice(-(1 << 19));
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      children.delete(child);
      resolve();
    }),
  );
  child.once('error', (err) => (out += `spawn error: ${err.message}\n`));
  return {
    pid: child.pid ?? -1,
    child,
    output: () => out,
    stop: async (signal = 'SIGTERM', graceMs = 5000) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Resolves once something accepts TCP connections on port, rejects after timeoutMs or if proc exits. */
export async function waitForPort(port: number, proc: Proc, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`process exited before listening:\n${proc.output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, HOST);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${port} after ${timeoutMs} ms:\n${proc.output()}`);
    await sleep(25);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parentOf.set(Number(name), Number(fields[1]));
    } catch {
      // exited while we looked
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    for (const [child, parent] of parentOf) if (parent === out[i]) out.push(child);
  }
  return out;
}

export interface ProcSample {
  /** utime + stime, seconds, summed over the tree. */
  cpuSeconds: number;
  /** utime and stime alone, seconds, summed over the tree. */
  userSeconds: number;
  systemSeconds: number;
  /** VmRSS, bytes, summed over the tree. */
  rssBytes: number;
  /** VmHWM (peak RSS), bytes, summed over the tree. */
  hwmBytes: number;
}

function statusKb(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) : 0;
}

export function sampleProc(pid: number): ProcSample {
  const sample = { cpuSeconds: 0, userSeconds: 0, systemSeconds: 0, rssBytes: 0, hwmBytes: 0 };
  for (const p of descendants(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // fields after "pid (comm) ": state is [0], utime is field 14 => [11], stime [12]
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const user = Number(fields[11]) / CLK_TCK;
      const system = Number(fields[12]) / CLK_TCK;
      sample.userSeconds += user;
      sample.systemSeconds += system;
      sample.cpuSeconds += user + system;
      const status = readFileSync(`/proc/${p}/status`, 'utf8');
      sample.rssBytes += statusKb(status, 'VmRSS') * 1024;
      sample.hwmBytes += statusKb(status, 'VmHWM') * 1024;
    } catch {
      // exited while we looked
    }
  }
  return sample;
}

export function sumCpu(pids: number[]): number {
  return pids.reduce((acc, pid) => acc + sampleProc(pid).cpuSeconds, 0);
}
