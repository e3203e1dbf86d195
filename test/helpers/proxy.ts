// Starts the built replicached CLI (dist/cli.js) as a child process on a free
// port, as a user would run it, and stops it. `npm test` builds dist/ first.

import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { waitForOutput } from './wait';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli.js');
const LISTENING = /replicached listening on [\d.]+:(\d+)/;

export interface ProxyProcess {
  readonly port: number;
  readonly metricsPort: number | null;
  readonly child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** SIGTERM, wait for the exit; returns the exit code. */
  stop(): Promise<number | null>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export interface ProxyOptions {
  backends: string[];
  replicas?: number;
  /** Serve metrics on a free port (default off). */
  metrics?: boolean;
  /** --log-level (default warn). */
  logLevel?: string;
  args?: string[];
  /** Added to the environment the proxy runs in. */
  env?: Record<string, string>;
}

export async function startProxy(opts: ProxyOptions): Promise<ProxyProcess> {
  const args = [
    CLI,
    '--listen',
    '127.0.0.1:0',
    '--backends',
    opts.backends.join(','),
    '--metrics-listen',
    opts.metrics ? '127.0.0.1:0' : 'off',
    '--log-level',
    opts.logLevel ?? 'warn',
    ...(opts.replicas === undefined ? [] : ['--replicas', String(opts.replicas)]),
    ...(opts.args ?? []),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  running.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );

  // With metrics, wait for their line too (with --workers the primary prints it after the workers).
  const ready = (text: string) => LISTENING.test(text) && (!opts.metrics || text.includes('metrics on http://'));
  try {
    await waitForOutput(child, () => out, ready);
  } catch (err) {
    throw new Error(`replicached did not start: ${(err as Error).message}`);
  }
  const port = Number(LISTENING.exec(out)![1]);
  const metrics = /metrics on http:\/\/[\d.]+:(\d+)\//.exec(out);
  return {
    port,
    metricsPort: metrics ? Number(metrics[1]) : null,
    child,
    output: () => out,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      // SIGKILL only once a clean stop is overdue: on a machine with far more runnable work than
      // cores, finishing the requests in flight has taken over 8 s. 25 s keeps it inside a hook's
      // 30 s (vitest.config.ts).
      const timer = setTimeout(() => child.kill('SIGKILL'), 25_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** The proxy's `stats` reply (text protocol), or `stats <group>`'s, as name -> value. */
export function proxyStats(port: number, group = ''): Promise<Map<string, string>> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(group === '' ? 'stats\r\n' : `stats ${group}\r\n`));
    let text = '';
    socket.setTimeout(5000, () => socket.destroy(new Error('stats: no reply in 5 s')));
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (!text.endsWith('END\r\n')) return;
      socket.end();
      const stats = new Map<string, string>();
      for (const line of text.split('\r\n')) {
        const m = /^STAT (\S+) (.*)$/.exec(line);
        if (m) stats.set(m[1], m[2]);
      }
      resolve(stats);
    });
  });
}

/**
 * Polls until `check` passes on the proxy's stats, or throws with the last stats after `timeoutMs`.
 * A stats request that fails (no reply in 5 s from a proxy a loaded machine holds back) is asked again.
 */
export async function waitForStats(
  port: number,
  check: (stats: Map<string, string>) => boolean,
  timeoutMs = 20_000,
  group = '',
): Promise<Map<string, string>> {
  const deadline = Date.now() + timeoutMs;
  let last: Map<string, string> | Error = new Error('no stats asked yet');
  for (;;) {
    last = await proxyStats(port, group).catch((err: Error) => err);
    if (!(last instanceof Error) && check(last)) return last;
    if (Date.now() > deadline) {
      const seen = last instanceof Error ? last.message : [...last].map((e) => e.join(' ')).join('\n');
      throw new Error(`stats never matched:\n${seen}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
