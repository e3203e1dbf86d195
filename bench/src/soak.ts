// Soak: replicached under steady memaslap load for a long time, its RSS sampled at a
// fixed interval. A leak shows as RSS that keeps rising after the first minute; the
// verdict compares the median of the second tenth of the run to the median of the last.

import { runMemaslap } from './memaslap';
import { sampleProc, sleep } from './proc';
import { startStack } from './targets';

export interface SoakOptions {
  seconds: number;
  intervalSeconds: number;
  /** memaslap -P cap, e.g. "20k"; undefined = as fast as it goes. */
  tps?: string;
  binary: boolean;
  replicachedArgs: string[];
  log: (line: string) => void;
}

export interface SoakSample {
  t: number;
  rssBytes: number;
  cpuSeconds: number;
}

export interface SoakResult {
  samples: SoakSample[];
  ops: number;
  seconds: number;
  /** median RSS in the last tenth over the second tenth (1.00 = flat) */
  growth: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.floor(s.length / 2)];
}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const stack = await startStack({ only: ['replicached'], replicachedArgs: opts.replicachedArgs });
  const target = stack.targets[0];
  const samples: SoakSample[] = [];
  try {
    const load = runMemaslap({ address: target.address, seconds: opts.seconds, concurrency: 32, binary: opts.binary, tps: opts.tps });
    let done = false;
    void load.finally(() => (done = true));
    const t0 = Date.now();
    while (!done) {
      const s = sampleProc(target.proc.pid);
      samples.push({ t: (Date.now() - t0) / 1000, rssBytes: s.rssBytes, cpuSeconds: s.cpuSeconds });
      opts.log(`t=${samples.at(-1)!.t.toFixed(0)}s rss=${(s.rssBytes / 1048576).toFixed(1)} MB`);
      await Promise.race([sleep(opts.intervalSeconds * 1000), load.catch(() => undefined)]);
    }
    const r = await load;
    const tenth = Math.max(1, Math.floor(samples.length / 10));
    const early = median(samples.slice(tenth, 2 * tenth).map((s) => s.rssBytes));
    const late = median(samples.slice(-tenth).map((s) => s.rssBytes));
    return { samples, ops: r.ops, seconds: r.seconds, growth: early > 0 ? late / early : 0 };
  } finally {
    await stack.stop();
  }
}

export function soakMarkdown(r: SoakResult, opts: SoakOptions, env: string): string {
  const MB = 1048576;
  const rows = r.samples.map((s) => `| ${s.t.toFixed(0)} | ${(s.rssBytes / MB).toFixed(1)} | ${s.cpuSeconds.toFixed(1)} |`);
  return [
    `# replicached soak, ${new Date().toISOString()}`,
    '',
    env,
    '',
    `${opts.seconds}s of memaslap (90% get / 10% set, 1 KiB, 32 connections, ${opts.binary ? 'binary' : 'text'}${opts.tps ? `, capped at ${opts.tps} ops/s` : ''}) ` +
      `against replicached (2 replicas, 3 backends). ${Math.round(r.ops / r.seconds)} req/s on average.`,
    '',
    `RSS growth (median of the last tenth / median of the second tenth): **${r.growth.toFixed(3)}**`,
    '',
    '| t s | RSS MB | CPU s |',
    '|---:|---:|---:|',
    ...rows,
    '',
  ].join('\n');
}

export function soakSvg(r: SoakResult): string {
  const W = 700;
  const H = 300;
  const L = 60;
  const T = 30;
  const w = W - L - 20;
  const h = H - T - 40;
  const maxT = Math.max(1, ...r.samples.map((s) => s.t));
  const maxR = Math.max(1, ...r.samples.map((s) => s.rssBytes)) * 1.1;
  const pts = r.samples.map((s) => `${(L + (s.t / maxT) * w).toFixed(1)},${(T + h - (s.rssBytes / maxR) * h).toFixed(1)}`).join(' ');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const y = T + h - f * h;
    return `<text x="${L - 6}" y="${y + 4}" text-anchor="end" font-size="10">${((f * maxR) / 1048576).toFixed(0)}</text><line x1="${L}" y1="${y}" x2="${L + w}" y2="${y}" stroke="#eee"/>`;
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<text x="${W / 2}" y="18" text-anchor="middle" font-weight="bold">replicached RSS (MB) under steady load, growth ${r.growth.toFixed(3)}</text>`,
    ...ticks,
    `<polyline fill="none" stroke="#c0392b" stroke-width="2" points="${pts}"/>`,
    `<text x="${L + w / 2}" y="${H - 8}" text-anchor="middle">seconds (0..${maxT.toFixed(0)})</text>`,
    '</svg>',
    '',
  ].join('\n');
}
