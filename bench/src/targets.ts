// The systems under test, started on free loopback ports:
//   backends     N memcached shared by replicached and nutcracker
//   replicached  dist/cli.js over the backends, R replicas
//   nutcracker   twemproxy over the same backends, ketama, one copy (memcached text only)
//   memcached    one memcached alone, the floor every proxy is compared to
//   node-pipe    a Node.js program that forwards bytes to one backend and parses nothing:
//                what the runtime's sockets cost before any proxy logic

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, HOST, launch, waitForPort, type Proc } from './proc';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');

/** replicached-baseline: another build of replicached (--baseline), to compare two versions in one run. */
export type TargetName = 'memcached' | 'nutcracker' | 'replicached' | 'replicached-baseline' | 'node-pipe';

export interface Target {
  readonly name: TargetName;
  readonly port: number;
  readonly address: string;
  /** The process whose CPU and memory the row reports. */
  readonly proc: Proc;
  /** Processes doing the storage behind it (empty for memcached alone). */
  readonly backendPids: number[];
  readonly binary: boolean;
}

export interface MemcachedOptions {
  memoryMb?: number;
  threads?: number;
  /** This port (a restart where one ran), else a free one. */
  port?: number;
}

export async function startMemcached(opts: MemcachedOptions = {}): Promise<{ proc: Proc; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const proc = launch('memcached', [
      '-u', 'root', '-l', HOST, '-p', String(port), '-U', '0',
      '-m', String(opts.memoryMb ?? 256), '-t', String(opts.threads ?? 2), '-c', '20000',
    ]);
    try {
      await waitForPort(port, proc, 5000);
      return { proc, port };
    } catch (err) {
      await proc.stop('SIGKILL');
      if (attempt >= 4) throw err;
    }
  }
}

export async function startReplicached(
  backends: string[],
  replicas: number,
  opts: { args?: string[]; nodeArgs?: string[]; cli?: string; logLevel?: string } = {},
): Promise<{ proc: Proc; port: number }> {
  const proc = launch(process.execPath, [
    ...(opts.nodeArgs ?? []),
    opts.cli ?? CLI,
    '--listen', `${HOST}:0`,
    '--backends', backends.join(','),
    '--replicas', String(replicas),
    '--metrics-listen', 'off',
    '--log-level', opts.logLevel ?? 'warn',
    '--max-connections', '20000',
    ...(opts.args ?? []),
  ]);
  return { proc, port: await listeningPort(proc, 'replicached', /replicached listening on [\d.]+:(\d+)/, 15_000) };
}

/** The port `proc` says it listens on (the pattern's first group); it is killed if it does not say so in time. */
async function listeningPort(proc: Proc, name: string, pattern: RegExp, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = pattern.exec(proc.output());
    if (m) return Number(m[1]);
    if (proc.child.exitCode !== null || Date.now() > deadline) {
      await proc.stop('SIGKILL');
      throw new Error(`${name} did not start:\n${proc.output()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function startNutcracker(backends: string[]): Promise<{ proc: Proc; port: number; cleanup(): void }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-nutcracker-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const statsPort = await freePort();
    const conf = path.join(dir, 'nutcracker.yml');
    // Mirrors replicached's defaults where they have a counterpart: ketama, no ejection.
    writeFileSync(
      conf,
      [
        'bench:',
        `  listen: ${HOST}:${port}`,
        '  hash: fnv1a_64',
        '  distribution: ketama',
        '  timeout: 500',
        '  backlog: 1024',
        '  preconnect: true',
        '  auto_eject_hosts: false',
        '  server_connections: 2',
        '  servers:',
        ...backends.map((b) => `   - ${b}:1`),
        '',
      ].join('\n'),
    );
    const proc = launch('nutcracker', ['-c', conf, '-s', String(statsPort), '-a', HOST, '-o', path.join(dir, 'log'), '-v', '4']);
    try {
      await waitForPort(port, proc, 5000);
      return { proc, port, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
    } catch (err) {
      await proc.stop('SIGKILL');
      if (attempt >= 4) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
}

// Each client connection gets its own connection to the backend; bytes go through untouched.
const NODE_PIPE_SOURCE = `
const net = require('node:net');
const [host, port] = process.argv[1].split(':');
const server = net.createServer((client) => {
  const backend = net.connect(Number(port), host);
  for (const s of [client, backend]) { s.setNoDelay(true); s.on('error', () => {}); }
  client.on('data', (d) => backend.write(d));
  backend.on('data', (d) => client.write(d));
  client.on('close', () => backend.destroy());
  backend.on('close', () => client.destroy());
});
server.listen(0, '${HOST}', () => console.log('node-pipe listening on ' + server.address().port));
`;

export async function startNodePipe(backend: string): Promise<{ proc: Proc; port: number }> {
  const proc = launch(process.execPath, ['-e', NODE_PIPE_SOURCE, backend]);
  return { proc, port: await listeningPort(proc, 'node-pipe', /node-pipe listening on (\d+)/, 10_000) };
}

export interface Stack {
  readonly targets: Target[];
  readonly backends: Proc[];
  stop(): Promise<void>;
}

export interface StackOptions {
  backends?: number;
  replicas?: number;
  replicachedArgs?: string[];
  replicachedNodeArgs?: string[];
  /** Which targets to start (default all four, and the baseline when baselineCli is set). */
  only?: TargetName[];
  /** The dist/cli.js of another replicached build, run as target replicached-baseline over the same backends. */
  baselineCli?: string;
  /** Flags for replicached only, not for the baseline. */
  targetArgs?: string[];
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const want = new Set<TargetName>(opts.only ?? ['memcached', 'nutcracker', 'replicached', 'node-pipe']);
  const backends: Proc[] = [];
  const stops: Array<() => Promise<void>> = [];
  const targets: Target[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(stops.map((s) => s()));
  };
  try {
    const started = await Promise.all(Array.from({ length: opts.backends ?? 3 }, () => startMemcached()));
    for (const b of started) {
      backends.push(b.proc);
      stops.push(() => b.proc.stop('SIGKILL'));
    }
    const addresses = started.map((b) => `${HOST}:${b.port}`);
    const backendPids = backends.map((b) => b.pid);
    if (want.has('memcached')) {
      const alone = await startMemcached();
      stops.push(() => alone.proc.stop('SIGKILL'));
      targets.push({ name: 'memcached', port: alone.port, address: `${HOST}:${alone.port}`, proc: alone.proc, backendPids: [], binary: true });
    }
    if (want.has('nutcracker')) {
      const nc = await startNutcracker(addresses);
      stops.push(async () => {
        await nc.proc.stop('SIGKILL');
        nc.cleanup();
      });
      targets.push({ name: 'nutcracker', port: nc.port, address: `${HOST}:${nc.port}`, proc: nc.proc, backendPids, binary: false });
    }
    if (want.has('replicached')) {
      const rc = await startReplicached(addresses, opts.replicas ?? 2, {
        args: [...(opts.replicachedArgs ?? []), ...(opts.targetArgs ?? [])],
        nodeArgs: opts.replicachedNodeArgs,
      });
      stops.push(() => rc.proc.stop('SIGTERM', 8000));
      targets.push({ name: 'replicached', port: rc.port, address: `${HOST}:${rc.port}`, proc: rc.proc, backendPids, binary: true });
    }
    if (opts.baselineCli !== undefined) {
      const base = await startReplicached(addresses, opts.replicas ?? 2, { args: opts.replicachedArgs, cli: opts.baselineCli });
      stops.push(() => base.proc.stop('SIGTERM', 8000));
      targets.push({ name: 'replicached-baseline', port: base.port, address: `${HOST}:${base.port}`, proc: base.proc, backendPids, binary: true });
    }
    if (want.has('node-pipe')) {
      const pipe = await startNodePipe(addresses[0]);
      stops.push(() => pipe.proc.stop('SIGKILL'));
      targets.push({ name: 'node-pipe', port: pipe.port, address: `${HOST}:${pipe.port}`, proc: pipe.proc, backendPids: [backendPids[0]], binary: true });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { targets, backends, stop };
}
