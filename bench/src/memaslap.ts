// libmemcached's memaslap (Debian: `memcaslap`) with the mix: 90% get / 10% set,
// 1 KiB values, 64-byte keys. Its own figures are read from its final report: ops and
// run time for throughput, and the "Total Statistics" log2 latency histogram for
// percentiles. memaslap only keeps power-of-two buckets, so its percentiles are the upper
// bound of a bucket (e.g. "p99 = 1024 us" means 513..1024 us): coarse, but the same scale
// for every target.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { build, type Histogram } from 'hdr-histogram-js';

export const MEMASLAP = process.env.MEMASLAP ?? 'memcaslap';

export interface MemaslapOptions {
  address: string;
  seconds: number;
  concurrency: number;
  binary: boolean;
  /** memaslap threads (default 2, the machine's cores; must divide concurrency). */
  threads?: number;
  /** Keys per connection ("window"); 1k x 32 connections x 1 KiB fits in 64 MB. */
  window?: string;
  /** Cap on ops/s (memaslap -P), e.g. "20k"; default: as fast as possible. */
  tps?: string;
}

export interface MemaslapResult {
  ops: number;
  seconds: number;
  getMisses: number;
  /** error replies memaslap logged ("<fd CLIENT_ERROR ...", "<fd ERROR") */
  errorReplies: number;
  histogram: Histogram;
  raw: string;
}

function configFile(): string {
  const file = path.join(os.tmpdir(), `bench-memaslap-${process.pid}.cfg`);
  // key: min max proportion / value: min max proportion / cmd: 0=set 1=get, proportion
  writeFileSync(file, 'key\n64 64 1\nvalue\n1024 1024 1\ncmd\n0 0.1\n1 0.9\n');
  return file;
}

export function parseMemaslap(raw: string): Omit<MemaslapResult, 'raw'> {
  const run = /Run time: ([\d.]+)s Ops: (\d+)/.exec(raw);
  if (!run) throw new Error(`memaslap gave no final report:\n${raw.slice(-2000)}`);
  const misses = /get_misses: (\d+)/.exec(raw);
  const histogram = build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 });
  const total = raw.indexOf('Total Statistics (');
  if (total >= 0) {
    const dist = raw.slice(raw.indexOf('Log2 Dist:', total));
    // rows "  4:  c4 c5 c6 c7": bucket b counts latencies in (2^(b-1), 2^b] us
    // (memaslap's ms_local_log2 rounds up)
    for (const line of dist.split('\n').slice(1)) {
      const m = /^\s*(\d+):((?:\s+\d+)+)\s*$/.exec(line);
      if (!m) break;
      const first = Number(m[1]);
      m[2].trim().split(/\s+/).forEach((count, i) => {
        const n = Number(count);
        if (n > 0) histogram.recordValueWithCount(2 ** (first + i), n);
      });
    }
  }
  const errorReplies = (raw.match(/^<\d+ (?:CLIENT_|SERVER_)?ERROR/gm) ?? []).length;
  return { ops: Number(run[2]), seconds: Number(run[1]), getMisses: misses ? Number(misses[1]) : 0, errorReplies, histogram };
}

export function runMemaslap(opts: MemaslapOptions): Promise<MemaslapResult> {
  const args = [
    '-s', opts.address,
    '-F', configFile(),
    '-t', `${opts.seconds}s`,
    '-T', String(opts.threads ?? 2),
    '-c', String(opts.concurrency),
    '-w', opts.window ?? '1k',
    // without a stats period memaslap prints no latency figures at all
    '-S', `${opts.seconds}s`,
    ...(opts.binary ? ['-B'] : []),
    ...(opts.tps ? ['-P', opts.tps] : []),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(MEMASLAP, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let raw = '';
    child.stdout.on('data', (d: Buffer) => (raw += d.toString()));
    child.stderr.on('data', (d: Buffer) => (raw += d.toString()));
    // memaslap sometimes hangs at exit when a server misbehaves: give it a margin
    const timer = setTimeout(() => child.kill('SIGKILL'), (opts.seconds + 30) * 1000);
    child.once('error', reject);
    child.once('exit', () => {
      clearTimeout(timer);
      try {
        resolve({ ...parseMemaslap(raw), raw });
      } catch (err) {
        reject(err);
      }
    });
  });
}
