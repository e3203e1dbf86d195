// Shared by the operations tests: replicached started from a YAML config file
// (test/helpers/proxy.ts always passes --backends, which would override the
// file), a small text-protocol client, and metrics scraping.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pollUntil, waitForOutput } from '../helpers/wait';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli.js');
const LISTENING = /replicached listening on [\d.]+:(\d+)/;
const METRICS = /metrics on http:\/\/[\d.]+:(\d+)\//;

export interface BackendEntry {
  address: string;
  local?: boolean;
  zone?: string;
  weight?: number;
}

/** A replicached.yaml for these backends (extra: more top-level YAML lines). */
export function configYaml(backends: BackendEntry[], replicas: number, extra = ''): string {
  const field = (name: string, value: string | number | undefined): string => (value === undefined ? '' : `, ${name}: ${value}`);
  const list = backends.map((b) => `  - { address: "${b.address}", local: ${b.local === true}${field('zone', b.zone)}${field('weight', b.weight)} }`).join('\n');
  return `backends:\n${list}\nreplicas: ${replicas}\n${extra}`;
}

export interface ConfigDir {
  file: string;
  write(text: string): void;
  remove(): void;
}

export function configDir(text: string): ConfigDir {
  const dir = mkdtempSync(path.join(tmpdir(), 'replicached-ops-'));
  const file = path.join(dir, 'replicached.yaml');
  writeFileSync(file, text);
  return {
    file,
    write: (t) => writeFileSync(file, t),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface ConfiguredProxy {
  port: number;
  metricsPort: number;
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/** dist/cli.js --config <file>, client and metrics ports chosen by the kernel, logs at info. */
export async function startConfiguredProxy(configFile: string): Promise<ConfiguredProxy> {
  const args = [CLI, '--config', configFile, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--log-level', 'info'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      running.delete(child);
      resolve();
    }),
  );
  try {
    await waitForOutput(child, () => out, (text) => LISTENING.test(text) && METRICS.test(text));
  } catch (err) {
    throw new Error(`replicached did not start: ${(err as Error).message}`);
  }
  return {
    port: Number(LISTENING.exec(out)![1]),
    metricsPort: Number(METRICS.exec(out)![1]),
    child,
    output: () => out,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

export interface ConfiguredRun {
  proxy: ConfiguredProxy;
  /** The config the proxy reads: write() to it, then SIGHUP (or let the proxy see the file change). */
  dir: ConfigDir;
  clients: TextClient[];
  /** Closes the clients, stops the proxy, removes the config; the backends are the caller's to stop. */
  stop(): Promise<void>;
}

/** A config file for `backends`, replicached started on it, and `clients` connections open to it. */
export async function startConfigured(backends: BackendEntry[], replicas: number, clients: number): Promise<ConfiguredRun> {
  const dir = configDir(configYaml(backends, replicas));
  const open: TextClient[] = [];
  let proxy: ConfiguredProxy | null = null;
  const stop = async (): Promise<void> => {
    for (const c of open) c.close();
    await proxy?.stop();
    dir.remove();
  };
  try {
    proxy = await startConfiguredProxy(dir.file);
    for (let i = 0; i < clients; i++) open.push(await TextClient.connect(proxy.port));
  } catch (err) {
    // The caller gets no handle to stop them with.
    await stop();
    throw err;
  }
  return { proxy, dir, clients: open, stop };
}

/**
 * Polls `check` until it returns true; throws with `what` after timeoutMs. The default stays just
 * under the test timeout (vitest.config.ts, 30 s): on a loaded machine a reload or a probe may
 * take several seconds (8 s once ran out), and the message still names what never happened.
 */
export function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 25_000): Promise<void> {
  return pollUntil(check, timeoutMs, 50, `timed out waiting for ${what}`);
}

/**
 * One text-protocol connection; requests go one at a time. `closed` turns
 * true if the server ends the connection, which these tests must never see.
 */
export class TextClient {
  closed = false;
  private buf = '';
  private waiter: (() => void) | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => {});
  }

  static connect(port: number): Promise<TextClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new TextClient(s)));
      s.once('error', reject);
    });
  }

  /** Sends `command` and resolves with the reply up to and including the first line matching `end`. */
  async request(command: string, end: RegExp): Promise<string> {
    this.socket.write(command);
    const deadline = Date.now() + 5000;
    for (;;) {
      const m = end.exec(this.buf);
      if (m) {
        const upTo = m.index + m[0].length;
        const reply = this.buf.slice(0, upTo);
        this.buf = this.buf.slice(upTo);
        return reply;
      }
      if (this.closed) throw new Error(`connection closed; got ${JSON.stringify(this.buf)}`);
      if (Date.now() > deadline) throw new Error(`no reply to ${JSON.stringify(command)}; got ${JSON.stringify(this.buf)}`);
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 100);
      });
      this.waiter = null;
    }
  }

  set(key: string, value: string): Promise<string> {
    return this.store('set', key, value);
  }

  /** add, as a session lock is taken: STORED, or NOT_STORED while another holds it. */
  add(key: string, value: string): Promise<string> {
    return this.store('add', key, value);
  }

  private store(command: 'set' | 'add', key: string, value: string): Promise<string> {
    return this.request(`${command} ${key} 0 0 ${value.length}\r\n${value}\r\n`, /^[A-Z_ ]+\r\n/m);
  }

  /** The value, null on a miss; throws on anything else. */
  async get(key: string): Promise<string | null> {
    const reply = await this.request(`get ${key}\r\n`, /^(END|SERVER_ERROR.*|ERROR.*)\r\n/m);
    if (reply === 'END\r\n') return null;
    const m = /^VALUE \S+ \d+ \d+\r\n([\s\S]*)\r\nEND\r\n$/.exec(reply);
    if (!m) throw new Error(`unexpected reply to get ${key}: ${JSON.stringify(reply)}`);
    return m[1];
  }

  close(): void {
    this.socket.destroy();
  }
}

/** `stats` of a memcached (or of replicached) as name -> value. */
export async function stats(port: number): Promise<Map<string, string>> {
  const c = await TextClient.connect(port);
  try {
    const reply = await c.request('stats\r\n', /^END\r\n/m);
    const out = new Map<string, string>();
    for (const m of reply.matchAll(/^STAT (\S+) (.*)\r$/gm)) out.set(m[1], m[2]);
    return out;
  } finally {
    c.close();
  }
}

export async function httpGet(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`);
  return { status: res.status, body: await res.text() };
}

function* series(exposition: string, name: string, labels: Record<string, string>): Generator<number> {
  for (const line of exposition.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map([...(m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) yield Number(m[4]);
  }
}

/** The value of the first series of `name` with these labels; undefined when there is none. */
export function metricValue(exposition: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const v of series(exposition, name, labels)) return v;
  return undefined;
}

/** Sum of every series of `name` with these labels (0 when none). */
export function metricSum(exposition: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const v of series(exposition, name, labels)) sum += v;
  return sum;
}

export async function scrape(metricsPort: number): Promise<string> {
  const { status, body } = await httpGet(metricsPort, '/metrics');
  if (status !== 200) throw new Error(`/metrics answered ${status}`);
  return body;
}
