// Real memcached processes for tests, on free loopback ports.
//
//   const mc = await startMemcached();   // accepting connections when it resolves
//   mc.address                           // "127.0.0.1:<port>"
//   await mc.pause() / mc.resume()        // SIGSTOP (waits until stopped) / SIGCONT
//   mc.kill('SIGKILL')
//   await mc.restart()                   // same port, empty
//   await mc.stop()                      // or stopAllMemcached() in afterAll
//
// Every process started here is tracked and SIGKILLed when the test process exits,
// whatever the tests did.

import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { saslEnvironment, saslPlainPayload, type SaslUser } from './sasl';
import { binaryPacket, parsePackets } from './wire';

export interface MemcachedOptions {
  /** A loopback address to listen on (127.0.0.2, ...: several on one port); default 127.0.0.1. */
  host?: string;
  /** A fixed port; default: a free one. */
  port?: number;
  /** -m, megabytes of memory (default 64). */
  memoryMb?: number;
  /** -I, largest item, e.g. "2m" (default memcached's 1m). */
  maxItemSize?: string;
  /** -t, worker threads (default 2). */
  threads?: number;
  /** Further command line arguments. */
  args?: string[];
  /** Run `memcached -S` with this user (binary protocol only; see sasl.ts). */
  sasl?: SaslUser;
}

export interface MemcachedProcess {
  readonly port: number;
  readonly host: string;
  /** "127.0.0.1:<port>" (its host:port) */
  readonly address: string;
  /** The current process's pid (a restart changes it). */
  readonly pid: number;
  /** True while the process has not exited. */
  readonly running: boolean;
  /** SIGKILL and wait for the exit. Safe to call twice, or on a stopped (SIGSTOP) process. */
  stop(): Promise<void>;
  /** Sends a signal (SIGKILL, SIGSTOP, SIGCONT, ...), nothing more. */
  kill(signal: NodeJS.Signals): void;
  /** SIGSTOP, resolved once every thread has stopped (a thread may run on briefly after kill()). */
  pause(): Promise<void>;
  /** SIGCONT. */
  resume(): void;
  /** Stops the current process if it runs, then starts an empty one on the same port. */
  restart(): Promise<void>;
  /** Resolves when the current process has exited. */
  exited(): Promise<void>;
}

const HOST = '127.0.0.1';
const START_ATTEMPTS = 5;

const children = new Set<ChildProcess>();
let exitHookInstalled = false;

function killAllNow(): void {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', killAllNow);
  // A signal skips 'exit': kill the children, then die of the signal as we would have.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllNow();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.once(signal, onSignal);
  }
}

/** A port the kernel just handed out for 127.0.0.1 (or `host`); someone else may take it first, hence the retries. */
export function freePort(host = HOST): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function exitedPromise(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** The pid of the memcached answering on the port, or null (not accepting, not memcached). */
function pidOnPort(host: string, port: number, sasl?: SaslUser): Promise<number | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let data = Buffer.alloc(0);
    const done = (pid: number | null): void => {
      s.destroy();
      resolve(pid);
    };
    s.setTimeout(1000, () => done(null));
    s.once('connect', () => s.write(sasl ? binaryStatsRequest(sasl) : 'stats\r\n'));
    s.on('data', (d: Buffer) => {
      data = Buffer.concat([data, d]);
      if (!sasl) {
        const text = data.toString('latin1');
        if (!text.includes('END\r\n')) return;
        const m = /STAT pid (\d+)/.exec(text);
        done(m ? Number(m[1]) : null);
        return;
      }
      // SASL_AUTH's reply, then STAT packets: the one keyed "pid" holds it.
      const pid = parsePackets(data).packets.find((p) => p.opcode === 0x10 && p.key.toString() === 'pid');
      if (pid) done(Number(pid.value.toString()));
    });
    s.once('error', () => done(null));
    s.once('close', () => done(null));
  });
}

/** SASL_AUTH PLAIN then STAT, pipelined (binary protocol). */
function binaryStatsRequest(user: SaslUser): Buffer {
  return Buffer.concat([binaryPacket({ opcode: 0x21, key: Buffer.from('PLAIN'), value: saslPlainPayload(user) }), binaryPacket({ opcode: 0x10 })]);
}

/**
 * Resolves true once our child answers on the port (its pid in `stats`: another
 * test's memcached may hold the port), false if it exits (memcached exits when it cannot
 * listen). No deadline: a slow start on a loaded machine is waited for, within the test's timeout.
 */
async function waitAccepting(child: ChildProcess, host: string, port: number, sasl?: SaslUser): Promise<boolean> {
  while (isRunning(child)) {
    if ((await pidOnPort(host, port, sasl)) === child.pid && isRunning(child)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

function memcachedArgs(port: number, opts: MemcachedOptions): string[] {
  const args = ['-l', opts.host ?? HOST, '-p', String(port), '-U', '0', '-m', String(opts.memoryMb ?? 64), '-t', String(opts.threads ?? 2)];
  if (opts.maxItemSize) args.push('-I', opts.maxItemSize);
  if (process.getuid?.() === 0) args.push('-u', 'root');
  if (opts.sasl) args.push('-S');
  return [...args, ...(opts.args ?? [])];
}

/** Spawns memcached on `port`; null when it could not listen there (port taken). */
async function spawnOn(port: number, opts: MemcachedOptions): Promise<ChildProcess | null> {
  installExitHook();
  const env = opts.sasl ? { ...process.env, ...saslEnvironment([opts.sasl]) } : process.env;
  const child = spawn('memcached', memcachedArgs(port, opts), { stdio: ['ignore', 'ignore', 'pipe'], env });
  children.add(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  child.once('exit', () => children.delete(child));
  // 'close' comes after 'exit' once stderr is drained: the bind error is in it by then.
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const spawnError = new Promise<Error | null>((resolve) => {
    child.once('error', (err) => resolve(err));
    child.once('spawn', () => resolve(null));
  });
  const err = await spawnError;
  if (err) throw new Error(`cannot run memcached: ${err.message} (is it installed?)`);
  const host = opts.host ?? HOST;
  if (await waitAccepting(child, host, port, opts.sasl)) return child;
  child.kill('SIGKILL');
  await closed;
  if (/address already in use|failed to listen/i.test(stderr) || (await pidOnPort(host, port, opts.sasl)) !== null) return null;
  throw new Error(`memcached on port ${port} did not start: ${stderr.trim() || 'no output'}`);
}

async function spawnWithRetry(opts: MemcachedOptions, fixedPort: number | undefined): Promise<ChildProcess & { port: number }> {
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const port = fixedPort ?? (await freePort(opts.host));
    const child = await spawnOn(port, opts);
    if (child) return Object.assign(child, { port });
    // A fixed port (a restart) may still be held for a moment: wait and try again.
    await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
  }
  throw new Error(`memcached could not listen after ${START_ATTEMPTS} attempts`);
}

export async function startMemcached(opts: MemcachedOptions = {}): Promise<MemcachedProcess> {
  let child = await spawnWithRetry(opts, opts.port);
  const port = child.port;
  const host = opts.host ?? HOST;
  const stop = async (): Promise<void> => {
    if (isRunning(child)) child.kill('SIGKILL');
    await exitedPromise(child);
  };
  return {
    port,
    host,
    address: `${host}:${port}`,
    get pid() {
      return child.pid ?? -1;
    },
    get running() {
      return isRunning(child);
    },
    stop,
    kill(signal) {
      if (isRunning(child)) child.kill(signal);
    },
    async pause() {
      if (!isRunning(child)) return;
      child.kill('SIGSTOP');
      await waitStopped(child.pid ?? -1);
    },
    resume() {
      if (isRunning(child)) child.kill('SIGCONT');
    },
    async restart() {
      await stop();
      child = await spawnWithRetry(opts, port);
    },
    exited: () => exitedPromise(child),
  };
}

/** Waits until every thread of `pid` is in state T (stopped), per /proc; a short sleep where there is no /proc. */
export async function waitStopped(pid: number): Promise<void> {
  const deadline = Date.now() + 2000;
  while (Date.now() < deadline) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      await new Promise((r) => setTimeout(r, 50));
      return;
    }
    const stopped = tids.every((tid) => {
      try {
        // The state follows the ")" that closes the command name.
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
        const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
        return state === 'T' || state === 't';
      } catch {
        return true;
      }
    });
    if (stopped) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`memcached ${pid} did not stop`);
}

/** Stops every memcached this process started (for afterAll). */
export async function stopAllMemcached(): Promise<void> {
  const all = [...children];
  for (const child of all) if (isRunning(child)) child.kill('SIGKILL');
  await Promise.all(all.map(exitedPromise));
}

/**
 * Items replicached keeps on each backend for itself (src/trust/reserved-keys.ts): the
 * roster, the incarnation key, and one trust record per sidecar (a proxy process, or
 * each of its workers).
 */
export function reservedItems(sidecars = 1): number {
  return 2 + sidecars;
}
