// The side-by-side run: one stack (3 memcached backends; replicached with 2 replicas and
// nutcracker over them; one memcached alone), then each workload drives every target in
// turn, round after round, with the starting target rotated each round, so that noise
// from the shared 2-core machine falls on all targets alike.

import type { Histogram } from 'hdr-histogram-js';
import { build } from 'hdr-histogram-js';
import { runMemaslap } from './memaslap';
import { sampleProc, sumCpu } from './proc';
import { runSessionLoad } from './session-load';
import { startStack, type Target, type TargetName } from './targets';

export type WorkloadId = 'memaslap-text' | 'memaslap-binary' | 'session-text' | 'session-binary';

export const WORKLOADS: WorkloadId[] = ['memaslap-text', 'memaslap-binary', 'session-text', 'session-binary'];

export interface BenchOptions {
  /** Seconds per measured memaslap run (memaslap takes whole seconds). */
  seconds: number;
  /** Seconds per measured session-load run. */
  sessionSeconds: number;
  /** Rounds over all targets per workload; results are summed over rounds. */
  rounds: number;
  /** Unmeasured memaslap seconds per target before the first workload (JIT, caches). */
  warmupSeconds: number;
  /** memaslap concurrency (the issue: 32). */
  memaslapConnections: number;
  /** Session load: sockets, and distinct session ids. */
  sessionConnections: number;
  sessions: number;
  backends: number;
  replicas: number;
  workloads: WorkloadId[];
  /** Extra replicached flags, e.g. ["--workers", "2"]. */
  replicachedArgs: string[];
  /** Another build's dist/cli.js, run beside replicached as replicached-baseline (before/after in one run). */
  baselineCli?: string;
  /** Flags for this build's replicached only, not the baseline (a flag the baseline lacks). */
  targetArgs?: string[];
  log: (line: string) => void;
}

export const FULL: Omit<BenchOptions, 'log'> = {
  seconds: 10,
  sessionSeconds: 10,
  rounds: 2,
  warmupSeconds: 3,
  memaslapConnections: 32,
  sessionConnections: 64,
  sessions: 10_000,
  backends: 3,
  replicas: 2,
  workloads: WORKLOADS,
  replicachedArgs: [],
};

export const QUICK: Omit<BenchOptions, 'log'> = {
  ...FULL,
  seconds: 1,
  sessionSeconds: 0.5,
  rounds: 1,
  warmupSeconds: 0,
  sessionConnections: 16,
  sessions: 1000,
};

export interface Row {
  workload: WorkloadId;
  target: TargetName;
  ops: number;
  seconds: number;
  /** requests per second */
  throughput: number;
  /** microseconds */
  p50: number;
  p99: number;
  p999: number;
  /** CPU seconds per 100k requests: the target process alone, and with its backends. */
  cpuPer100k: number;
  cpuPer100kWithBackends: number;
  /** VmHWM of the target process (tree) after the workload, bytes. */
  peakRssBytes: number;
  /** errors (session load) or get misses (memaslap) */
  errors: number;
}

export interface Report {
  options: Omit<BenchOptions, 'log'>;
  startedAt: string;
  rows: Row[];
}

interface Accumulator {
  ops: number;
  seconds: number;
  cpu: number;
  cpuAll: number;
  errors: number;
  histogram: Histogram;
}

function supports(target: Target, workload: WorkloadId): boolean {
  return !workload.endsWith('binary') || target.binary;
}

async function runOnce(workload: WorkloadId, target: Target, opts: BenchOptions): Promise<Omit<Accumulator, 'cpu' | 'cpuAll'>> {
  const binary = workload.endsWith('binary');
  if (workload.startsWith('memaslap')) {
    const r = await runMemaslap({ address: target.address, seconds: opts.seconds, concurrency: opts.memaslapConnections, binary });
    return { ops: r.ops, seconds: r.seconds, errors: r.getMisses + r.errorReplies, histogram: r.histogram };
  }
  const r = await runSessionLoad({
    port: target.port,
    protocol: binary ? 'binary' : 'text',
    connections: opts.sessionConnections,
    sessions: opts.sessions,
    seconds: opts.sessionSeconds,
  });
  return { ops: r.ops, seconds: r.seconds, errors: r.errors, histogram: r.histogram };
}

export async function runBench(opts: BenchOptions): Promise<Report> {
  const startedAt = new Date().toISOString();
  const stack = await startStack({
    backends: opts.backends,
    replicas: opts.replicas,
    replicachedArgs: opts.replicachedArgs,
    baselineCli: opts.baselineCli,
    targetArgs: opts.targetArgs,
  });
  const rows: Row[] = [];
  try {
    if (opts.warmupSeconds > 0) {
      for (const t of stack.targets) {
        opts.log(`warm-up ${t.name} (${opts.warmupSeconds}s)`);
        await runMemaslap({ address: t.address, seconds: opts.warmupSeconds, concurrency: opts.memaslapConnections, binary: false });
      }
    }
    for (const workload of opts.workloads) {
      const targets = stack.targets.filter((t) => supports(t, workload));
      const acc = new Map<TargetName, Accumulator>();
      for (let round = 0; round < opts.rounds; round++) {
        for (let i = 0; i < targets.length; i++) {
          const target = targets[(i + round) % targets.length];
          const cpu0 = sampleProc(target.proc.pid).cpuSeconds;
          const back0 = sumCpu(target.backendPids);
          const r = await runOnce(workload, target, opts);
          const cpu = sampleProc(target.proc.pid).cpuSeconds - cpu0;
          const back = sumCpu(target.backendPids) - back0;
          opts.log(`${workload} round ${round + 1} ${target.name}: ${Math.round(r.ops / r.seconds)} req/s`);
          const a = acc.get(target.name) ?? { ops: 0, seconds: 0, cpu: 0, cpuAll: 0, errors: 0, histogram: build() };
          a.ops += r.ops;
          a.seconds += r.seconds;
          a.cpu += cpu;
          a.cpuAll += cpu + back;
          a.errors += r.errors;
          a.histogram.add(r.histogram);
          acc.set(target.name, a);
        }
      }
      for (const target of targets) {
        const a = acc.get(target.name)!;
        rows.push({
          workload,
          target: target.name,
          ops: a.ops,
          seconds: a.seconds,
          throughput: a.seconds > 0 ? a.ops / a.seconds : 0,
          p50: a.histogram.getValueAtPercentile(50),
          p99: a.histogram.getValueAtPercentile(99),
          p999: a.histogram.getValueAtPercentile(99.9),
          cpuPer100k: a.ops > 0 ? (a.cpu / a.ops) * 1e5 : 0,
          cpuPer100kWithBackends: a.ops > 0 ? (a.cpuAll / a.ops) * 1e5 : 0,
          peakRssBytes: sampleProc(target.proc.pid).hwmBytes,
          errors: a.errors,
        });
      }
    }
  } finally {
    await stack.stop();
  }
  const { log: _log, ...options } = opts;
  return { options, startedAt, rows };
}
