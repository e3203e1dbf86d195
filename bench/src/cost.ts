// Where a request's CPU goes: user and system time, and read/write syscalls, per request.
//   node bench/dist/cost.js [--seconds 6] [--rounds 2] [--connections 32]
// memaslap's mix (binary through replicached and node-pipe, text through nutcracker, which
// has no binary protocol) against each target in turn, rounds alternating. User and system
// time come from /proc/<pid>/stat (the process tree), syscalls from /proc/<pid>/io
// (syscr, syscw; the main process: replicached without --workers). Equal system time and
// syscalls with unequal user time say the difference is the program, not the kernel work
// it asks for.

import { readFileSync } from 'node:fs';
import { numberOption } from './args';
import { runMemaslap } from './memaslap';
import { sampleProc } from './proc';
import { startStack, type Target } from './targets';

interface Counters {
  userSeconds: number;
  systemSeconds: number;
  reads: number;
  writes: number;
}

/** CPU from proc.ts's sample; read and write syscalls from /proc/<pid>/io (syscr, syscw). */
function counters(pid: number): Counters {
  const { userSeconds, systemSeconds } = sampleProc(pid);
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
  return { userSeconds, systemSeconds, reads: field('syscr'), writes: field('syscw') };
}

interface Sum extends Counters {
  ops: number;
  seconds: number;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const seconds = numberOption(argv, 'seconds', 6);
  const rounds = numberOption(argv, 'rounds', 2);
  // Few connections: requests arrive one at a time and nothing is batched.
  const connections = numberOption(argv, 'connections', 32);
  const stack = await startStack({ only: ['nutcracker', 'replicached', 'node-pipe'] });
  const sums = new Map<Target, Sum>(stack.targets.map((t) => [t, { ops: 0, seconds: 0, userSeconds: 0, systemSeconds: 0, reads: 0, writes: 0 }]));
  try {
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < stack.targets.length; i++) {
        const t = stack.targets[(i + round) % stack.targets.length];
        const before = counters(t.proc.pid);
        const r = await runMemaslap({ address: t.address, seconds, concurrency: connections, binary: t.binary });
        const after = counters(t.proc.pid);
        const sum = sums.get(t)!;
        sum.ops += r.ops;
        sum.seconds += r.seconds;
        sum.userSeconds += after.userSeconds - before.userSeconds;
        sum.systemSeconds += after.systemSeconds - before.systemSeconds;
        sum.reads += after.reads - before.reads;
        sum.writes += after.writes - before.writes;
      }
    }
  } finally {
    await stack.stop();
  }
  console.log(`memaslap 90% get / 10% set, 1 KiB, ${connections} connections, ${rounds} round(s) x ${seconds}s per target, alternating`);
  console.log('| target | protocol | req/s | user µs/request | system µs/request | read syscalls/request | write syscalls/request |');
  console.log('|---|---|---:|---:|---:|---:|---:|');
  for (const [t, s] of sums) {
    const per = (n: number): string => (n / s.ops).toFixed(2);
    const us = (sec: number): string => ((sec / s.ops) * 1e6).toFixed(1);
    console.log(
      `| ${t.name} | ${t.binary ? 'binary' : 'text'} | ${Math.round(s.ops / s.seconds)} | ${us(s.userSeconds)} | ${us(s.systemSeconds)} | ${per(s.reads)} | ${per(s.writes)} |`,
    );
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err);
    process.exit(1);
  },
);
