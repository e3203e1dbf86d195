// Latency at a fixed offered rate (issue 6: "added p99 latency over direct memcached
// ≤ 1 ms at half of replicached's peak throughput"):
//   node bench/dist/latency.js [--seconds 10] [--binary] [--connections 32] [--fraction 0.5] [--rounds 2]
// 1. peak: replicached driven closed-loop (one request in flight per connection) with a
//    memaslap-like mix: 90% get / 10% set, 1 KiB values, keys key:0 .. key:9999 (preloaded).
// 2. open loop at fraction × peak, same mix and connections, against replicached, memcached
//    alone and (text only) nutcracker, alternating the order round after round.
// Writes the table to bench/results/latency-<protocol>-<stamp>.md.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { build, type Histogram } from 'hdr-histogram-js';
import { flag, numberOption } from './args';
import { McClient, type Protocol, type Status } from './mc-client';
import { HOST } from './proc';
import { environment } from './report';
import { startStack, type Target, type TargetName } from './targets';

export interface LatencyOptions {
  /** Seconds of the peak run and of each open-loop run. */
  seconds: number;
  protocol: Protocol;
  connections: number;
  /** Offered rate as a fraction of replicached's closed-loop peak. */
  fraction: number;
  rounds: number;
  log: (line: string) => void;
}

export interface LatencyRow {
  target: TargetName;
  /** req/s */
  offered: number;
  achieved: number;
  ops: number;
  errors: number;
  misses: number;
  /** µs, from each request's scheduled send time */
  p50: number;
  p99: number;
  p999: number;
}

export interface LatencyReport {
  startedAt: string;
  /** replicached closed-loop req/s */
  peak: number;
  rows: LatencyRow[];
}

/** Added p99 over memcached alone that the issue accepts, µs. */
export const TARGET_ADDED_P99_US = 1000;

/** ms, on the clock the pacer thread shares (performance.now() has a per-thread origin). */
const now = (): number => Number(process.hrtime.bigint()) / 1e6;

const KEYS = Array.from({ length: 10_000 }, (_, n) => `key:${n}`);
const VALUE = Buffer.alloc(1024, 'v');

interface Tally {
  ops: number;
  errors: number;
  misses: number;
  histogram: Histogram;
}

function newTally(): Tally {
  return { ops: 0, errors: 0, misses: 0, histogram: build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 }) };
}

/** One request of the mix; its latency (from `since`, ms) and status go into the tally. */
async function request(client: McClient, since: number, tally: Tally): Promise<void> {
  const key = KEYS[Math.floor(Math.random() * KEYS.length)];
  const status: Status = Math.random() < 0.1 ? await client.set(key, VALUE, 0) : await client.get(key);
  tally.histogram.recordValue(Math.max(1, Math.round((now() - since) * 1000)));
  tally.ops++;
  if (status === 'error') tally.errors++;
  else if (status === 'miss') tally.misses++;
}

function connect(target: Target, opts: LatencyOptions): Promise<McClient[]> {
  return Promise.all(Array.from({ length: opts.connections }, () => McClient.connect(target.port, HOST, opts.protocol)));
}

/** Every key set once, so that gets hit (each target routes keys its own way). */
async function preload(clients: McClient[]): Promise<void> {
  await Promise.all(
    clients.map(async (c, i) => {
      for (let k = i; k < KEYS.length; k += clients.length) {
        if ((await c.set(KEYS[k], VALUE, 0)) !== 'ok') throw new Error(`preload: set ${KEYS[k]} failed`);
      }
    }),
  );
}

/** Closed loop: every connection sends its next request as soon as the last one is answered. */
async function closedLoop(clients: McClient[], seconds: number): Promise<{ rate: number; tally: Tally }> {
  const tally = newTally();
  const start = now();
  const deadline = start + seconds * 1000;
  await Promise.all(
    clients.map(async (c) => {
      while (now() < deadline) await request(c, now(), tally);
    }),
  );
  return { rate: tally.ops / ((now() - start) / 1000), tally };
}

// Node timers fire on whole milliseconds, up to ~1 ms late, and that lateness would count as
// latency, most of all against a fast target (its client sits idle until the timer). This
// thread sleeps in Atomics.wait instead (µs-precise) and posts each request's due time as it
// comes up; the main thread only sends.
const PACER = `
const { parentPort, workerData } = require('node:worker_threads');
const { rate, total } = workerData;
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const now = () => Number(process.hrtime.bigint()) / 1e6;
const start = now();
for (let i = 0; i < total; i++) {
  const due = start + (i * 1000) / rate;
  const wait = due - now();
  if (wait > 0) Atomics.wait(sleeper, 0, 0, wait);
  parentPort.postMessage(due);
}`;

/**
 * Open loop: request i is due at start + i/rate, on connection i mod N. A connection still
 * busy with an earlier request queues it, and its latency counts from the due time, so a
 * stalled target is charged for every request it held up (no coordinated omission).
 */
function openLoop(clients: McClient[], rate: number, seconds: number): Promise<{ seconds: number; tally: Tally }> {
  const tally = newTally();
  const total = Math.max(1, Math.round(rate * seconds));
  const queues: number[][] = clients.map(() => []);
  const busy = clients.map(() => false);
  let received = 0;
  let first = 0;
  return new Promise((resolve, reject) => {
    const pacer = new Worker(PACER, { eval: true, workerData: { rate, total } });
    pacer.once('error', reject);
    const drain = async (lane: number): Promise<void> => {
      busy[lane] = true;
      for (let due = queues[lane].shift(); due !== undefined; due = queues[lane].shift()) await request(clients[lane], due, tally);
      busy[lane] = false;
      if (tally.ops === total) resolve({ seconds: (now() - first) / 1000, tally });
    };
    pacer.on('message', (due: number) => {
      if (received === 0) first = due;
      const lane = received++ % clients.length;
      queues[lane].push(due);
      if (!busy[lane]) void drain(lane);
    });
  });
}

export async function runLatency(opts: LatencyOptions): Promise<LatencyReport> {
  const startedAt = new Date().toISOString();
  // node-pipe: what a Node.js program that parses nothing adds, the floor under replicached's figure.
  const only: TargetName[] =
    opts.protocol === 'binary' ? ['memcached', 'replicached', 'node-pipe'] : ['memcached', 'nutcracker', 'replicached', 'node-pipe'];
  const stack = await startStack({ only });
  const clients = new Map<TargetName, McClient[]>();
  try {
    for (const t of stack.targets) {
      const c = await connect(t, opts);
      await preload(c);
      clients.set(t.name, c);
    }
    const peakRun = await closedLoop(clients.get('replicached')!, opts.seconds);
    const peak = peakRun.rate;
    const rate = peak * opts.fraction;
    opts.log(`replicached closed-loop peak ${Math.round(peak)} req/s (p99 ${peakRun.tally.histogram.getValueAtPercentile(99)} µs); open loop at ${Math.round(rate)} req/s`);

    const acc = new Map<TargetName, { seconds: number; tally: Tally }>();
    for (let round = 0; round < opts.rounds; round++) {
      for (let i = 0; i < stack.targets.length; i++) {
        const t = stack.targets[(i + round) % stack.targets.length];
        const r = await openLoop(clients.get(t.name)!, rate, opts.seconds);
        opts.log(`round ${round + 1} ${t.name}: ${Math.round(r.tally.ops / r.seconds)} req/s, p99 ${r.tally.histogram.getValueAtPercentile(99)} µs`);
        const a = acc.get(t.name) ?? { seconds: 0, tally: newTally() };
        a.seconds += r.seconds;
        a.tally.ops += r.tally.ops;
        a.tally.errors += r.tally.errors;
        a.tally.misses += r.tally.misses;
        a.tally.histogram.add(r.tally.histogram);
        acc.set(t.name, a);
      }
    }

    const rows = only.map((name): LatencyRow => {
      const { seconds, tally } = acc.get(name)!;
      const h = tally.histogram;
      return {
        target: name,
        offered: rate,
        achieved: tally.ops / seconds,
        ops: tally.ops,
        errors: tally.errors,
        misses: tally.misses,
        p50: h.getValueAtPercentile(50),
        p99: h.getValueAtPercentile(99),
        p999: h.getValueAtPercentile(99.9),
      };
    });
    return { startedAt, peak, rows };
  } finally {
    for (const c of clients.values()) for (const client of c) client.close();
    await stack.stop();
  }
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function latencyTable(report: LatencyReport): string {
  const floor = report.rows.find((r) => r.target === 'memcached')!.p99;
  const lines = [
    '| target | offered req/s | achieved req/s | p50 µs | p99 µs | p99.9 µs | added p99 vs memcached µs | ≤ 1,000 µs | errors / misses |',
    '|---|---:|---:|---:|---:|---:|---:|---|---:|',
  ];
  for (const r of report.rows) {
    const added = r.p99 - floor;
    const vs = r.target === 'memcached' ? ['–', '–'] : [fmtInt(added), added <= TARGET_ADDED_P99_US ? 'yes' : '**no**'];
    lines.push(`| ${r.target} | ${fmtInt(r.offered)} | ${fmtInt(r.achieved)} | ${fmtInt(r.p50)} | ${fmtInt(r.p99)} | ${fmtInt(r.p999)} | ${vs.join(' | ')} | ${r.errors} / ${r.misses} |`);
  }
  return lines.join('\n');
}

export function latencyMarkdown(report: LatencyReport, opts: Omit<LatencyOptions, 'log'>, env: string): string {
  return [
    `# replicached latency at ${opts.fraction} × peak, ${opts.protocol}, ${report.startedAt}`,
    '',
    env,
    '',
    `3 memcached backends; replicached --replicas 2; nutcracker (text only) over the same backends; memcached alone; ` +
      `node-pipe (Node.js forwarding bytes to one backend, parsing nothing). ` +
      `Mix: 90% get / 10% set, 1 KiB values, ${KEYS.length} keys (preloaded), ${opts.connections} connections, one request in flight per connection.`,
    `Peak: replicached closed loop, ${opts.seconds}s: **${fmtInt(report.peak)} req/s**. ` +
      `Then open loop at ${opts.fraction} × peak, ${opts.rounds} round(s) × ${opts.seconds}s per target, alternating; ` +
      'latency from each request’s scheduled send time (HdrHistogram, µs).',
    '',
    latencyTable(report),
    '',
  ].join('\n');
}

function stamp(iso: string): string {
  return iso.replace(/[:.]/g, '-').slice(0, 19);
}

async function main(argv: string[]): Promise<void> {
  const opts = {
    seconds: numberOption(argv, 'seconds', 10),
    protocol: flag(argv, 'binary') ? 'binary' : 'text',
    connections: numberOption(argv, 'connections', 32),
    fraction: numberOption(argv, 'fraction', 0.5),
    rounds: numberOption(argv, 'rounds', 2),
  } as const;
  const env = environment();
  const report = await runLatency({ ...opts, log: (line) => void process.stderr.write(`${line}\n`) });
  const md = latencyMarkdown(report, opts, env);
  process.stdout.write(md);
  const out = path.resolve(__dirname, '..', 'results');
  mkdirSync(out, { recursive: true });
  const file = path.join(out, `latency-${opts.protocol}-${stamp(report.startedAt)}.md`);
  writeFileSync(file, md);
  process.stderr.write(`wrote ${file}\n`);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`latency: ${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
