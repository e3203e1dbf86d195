// Does cost per request grow with the number of backends or of client connections?
//   node bench/dist/scaling.js [--seconds 10] [--rounds 1] [--binary] [--workers-curve] [--nutcracker]
// Runs the memaslap mix (text unless --binary) against replicached with
//   3 backends / 32 connections (the baseline), 12 backends / 32 connections,
//   3 backends / 2,000 connections,
// and with --workers-curve also --workers 1 and 2, printing req/s and CPU s per 100k
// requests of replicached (and of replicached + its backends). --nutcracker runs the same
// three cases through nutcracker (text): how much of the growth the workload itself brings.

import { flag, numberOption } from './args';
import { runMemaslap } from './memaslap';
import { sampleProc, sumCpu } from './proc';
import { startStack, type TargetName } from './targets';

interface Case {
  label: string;
  target: Extract<TargetName, 'replicached' | 'nutcracker'>;
  backends: number;
  connections: number;
  args: string[];
}

interface Measured {
  ops: number;
  seconds: number;
  cpu: number;
  cpuAll: number;
  hwmBytes: number;
  errors: number;
  misses: number;
}

async function measure(c: Case, seconds: number, binary: boolean): Promise<Measured> {
  const stack = await startStack({ only: [c.target], backends: c.backends, replicachedArgs: c.args });
  const t = stack.targets[0];
  binary &&= t.binary; // nutcracker speaks text only
  try {
    // warm-up, unmeasured: JIT and key window prefill
    await runMemaslap({ address: t.address, seconds: 3, concurrency: 32, binary });
    const cpu0 = sampleProc(t.proc.pid).cpuSeconds;
    const back0 = sumCpu(t.backendPids);
    const threads = c.connections >= 64 ? 4 : 2;
    const r = await runMemaslap({ address: t.address, seconds, concurrency: c.connections, binary, threads });
    const cpu = sampleProc(t.proc.pid).cpuSeconds - cpu0;
    const back = sumCpu(t.backendPids) - back0;
    return {
      ops: r.ops, seconds: r.seconds, cpu, cpuAll: cpu + back, hwmBytes: sampleProc(t.proc.pid).hwmBytes,
      errors: r.errorReplies, misses: r.getMisses,
    };
  } finally {
    await stack.stop();
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const seconds = numberOption(argv, 'seconds', 10);
  const rounds = numberOption(argv, 'rounds', 1);
  const binary = flag(argv, 'binary');
  const cases: Case[] = [
    { label: '3 backends, 32 connections', target: 'replicached', backends: 3, connections: 32, args: [] },
    { label: '12 backends, 32 connections', target: 'replicached', backends: 12, connections: 32, args: [] },
    { label: '3 backends, 2000 connections', target: 'replicached', backends: 3, connections: 2000, args: [] },
  ];
  if (flag(argv, 'workers-curve')) {
    cases.push({ label: '3 backends, 32 connections, --workers 2', target: 'replicached', backends: 3, connections: 32, args: ['--workers', '2'] });
  }
  if (flag(argv, 'nutcracker')) {
    for (const c of cases.slice(0, 3)) cases.push({ ...c, target: 'nutcracker' });
  }
  // Rounds alternate the cases, so the noise of a shared machine falls on all of them alike.
  const sums = cases.map((): Measured => ({ ops: 0, seconds: 0, cpu: 0, cpuAll: 0, hwmBytes: 0, errors: 0, misses: 0 }));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < cases.length; i++) {
      const at = (i + round) % cases.length;
      const m = await measure(cases[at], seconds, binary);
      const sum = sums[at];
      sum.ops += m.ops;
      sum.seconds += m.seconds;
      sum.cpu += m.cpu;
      sum.cpuAll += m.cpuAll;
      sum.hwmBytes = Math.max(sum.hwmBytes, m.hwmBytes);
      sum.errors += m.errors;
      sum.misses += m.misses;
    }
  }
  const per100k = (cpu: number, ops: number): number => (cpu / ops) * 1e5;
  // Each target's rows are compared with its own first case.
  const base = (target: Case['target']): number => {
    const i = cases.findIndex((c) => c.target === target);
    return per100k(sums[i].cpu, sums[i].ops);
  };
  console.log(`memaslap ${binary ? 'binary (nutcracker: text)' : 'text'}, 90% get / 10% set, 1 KiB, ${rounds} round(s) x ${seconds}s per case, cases alternating`);
  console.log('| target | case | req/s | CPU s/100k (target) | vs its first case | CPU s/100k (+backends) | peak RSS MB | error replies | get misses |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  cases.forEach((c, i) => {
    const m = sums[i];
    const cost = per100k(m.cpu, m.ops);
    console.log(
      `| ${c.target} | ${c.label} | ${Math.round(m.ops / m.seconds)} | ${cost.toFixed(2)} | ${(cost / base(c.target)).toFixed(2)} | ` +
        `${per100k(m.cpuAll, m.ops).toFixed(2)} | ${(m.hwmBytes / 1048576).toFixed(1)} | ${m.errors} | ${m.misses} |`,
    );
  });
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err);
    process.exit(1);
  },
);
