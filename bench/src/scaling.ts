// Does cost per request grow with the number of backends or of client connections?
//   node bench/dist/scaling.js [--seconds 10] [--workers-curve]
// Runs the memaslap mix (text unless --binary) against replicached with
//   3 backends / 32 connections (the baseline), 12 backends / 32 connections,
//   3 backends / 2,000 connections,
// and with --workers-curve also --workers 1 and 2, printing req/s and CPU s per 100k
// requests of replicached (and of replicached + its backends).

import { flag, numberOption } from './args';
import { runMemaslap } from './memaslap';
import { sampleProc, sumCpu } from './proc';
import { startStack } from './targets';

interface Case {
  label: string;
  backends: number;
  connections: number;
  args: string[];
}

async function measure(c: Case, seconds: number, binary: boolean): Promise<string> {
  const stack = await startStack({ only: ['replicached'], backends: c.backends, replicachedArgs: c.args });
  const t = stack.targets[0];
  try {
    // warm-up, unmeasured: JIT and key window prefill
    await runMemaslap({ address: t.address, seconds: 3, concurrency: 32, binary });
    const cpu0 = sampleProc(t.proc.pid).cpuSeconds;
    const back0 = sumCpu(t.backendPids);
    const threads = c.connections >= 64 ? 4 : 2;
    const r = await runMemaslap({ address: t.address, seconds, concurrency: c.connections, binary, threads });
    const cpu = sampleProc(t.proc.pid).cpuSeconds - cpu0;
    const back = sumCpu(t.backendPids) - back0;
    const errors = r.errorReplies;
    return `| ${c.label} | ${Math.round(r.ops / r.seconds)} | ${((cpu / r.ops) * 1e5).toFixed(2)} | ${(((cpu + back) / r.ops) * 1e5).toFixed(2)} | ${(sampleProc(t.proc.pid).hwmBytes / 1048576).toFixed(1)} | ${errors} |`;
  } finally {
    await stack.stop();
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const seconds = numberOption(argv, 'seconds', 10);
  const binary = flag(argv, 'binary');
  const cases: Case[] = [
    { label: '3 backends, 32 connections', backends: 3, connections: 32, args: [] },
    { label: '12 backends, 32 connections', backends: 12, connections: 32, args: [] },
    { label: '3 backends, 2000 connections', backends: 3, connections: 2000, args: [] },
  ];
  if (flag(argv, 'workers-curve')) {
    cases.push({ label: '3 backends, 32 connections, --workers 2', backends: 3, connections: 32, args: ['--workers', '2'] });
  }
  console.log(`memaslap ${binary ? 'binary' : 'text'}, 90% get / 10% set, 1 KiB, ${seconds}s per case`);
  console.log('| case | req/s | CPU s/100k (replicached) | CPU s/100k (+backends) | peak RSS MB | error replies |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const c of cases) console.log(await measure(c, seconds, binary));
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err);
    process.exit(1);
  },
);
