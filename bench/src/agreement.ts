// How long the sidecars take to agree that a SIGKILLed memcached is out: the part of a killed
// backend's cost that the trust protocol adds (docs/trust.md, Costs), with no client traffic.
//
//   node bench/dist/agreement.js [--sidecars 10] [--kills 4] [--rounds 1] [--settle-ms 1000]
//                                [--cli dist/cli.js] [--baseline <other build>/dist/cli.js]
//                                [--out DIR] [--name NAME]
//
// Each round starts, per build (with --baseline the two take turns, round by round), 3 memcached
// and N replicached over them, waits --settle-ms after every sidecar listens (a cluster's first
// kill is slower soon after the start), then kills a memcached `kills` times, a different one each time:
// SIGKILL, then the ms until each sidecar logs "trust: backend out, every sidecar agreed" (the log
// line's own time, the same wall clock), then the memcached started again on its port and trusted
// again everywhere before the next kill. Per kill: the slowest and the median sidecar. Per build:
// the median and the largest of the kills' slowest. Writes <out>/<name>.md and .json (default
// name agreement-<stamp>) and prints the table.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { numberOption, option } from './args';
import { HOST, sleep, type Proc } from './proc';
import { environment } from './report';
import { startMemcached, startReplicached } from './targets';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');
const BACKENDS = 3;
const REPLICAS = 2;
const AGREED_OUT = 'trust: backend out, every sidecar agreed';
const TRUSTED_AGAIN = 'trust: backend trusted again, every sidecar agreed';
/** Longest wait for every sidecar to agree (out, or trusted again) before the kill counts as missing. */
const AGREE_TIMEOUT_MS = 30_000;

const log = (line: string): void => void process.stderr.write(`${line}\n`);

interface Kill {
  build: string;
  round: number;
  backend: string;
  /** From the SIGKILL to each sidecar's agreed-out line, ascending; a sidecar that never logged it is left out. */
  agreedMs: number[];
  missing: number;
}

/** The `time` of each log line of `proc` with message `msg` about `backend`, from `sinceMs` on. */
function logTimes(proc: Proc, msg: string, backend: string, sinceMs: number): number[] {
  const times: number[] = [];
  for (const line of proc.output().split('\n')) {
    if (!line.includes(msg) || !line.includes(`"backend":"${backend}"`)) continue;
    try {
      const t = Date.parse((JSON.parse(line) as { time: string }).time);
      if (t >= sinceMs) times.push(t);
    } catch {
      // a line cut by the output buffer's trimming
    }
  }
  return times;
}

/** Resolves once every sidecar logged `msg` about `backend` since `sinceMs` (false: not within the timeout). */
async function allLogged(proxies: Proc[], msg: string, backend: string, sinceMs: number): Promise<boolean> {
  const deadline = Date.now() + AGREE_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proxies.every((p) => logTimes(p, msg, backend, sinceMs).length > 0)) return true;
    await sleep(20);
  }
  return false;
}

async function cluster(build: string, cli: string, round: number, sidecars: number, kills: number, settleMs: number): Promise<Kill[]> {
  const mcs: Proc[] = [];
  const proxies: Proc[] = [];
  const out: Kill[] = [];
  try {
    const ports: number[] = [];
    for (let b = 0; b < BACKENDS; b++) {
      const { proc, port } = await startMemcached({ memoryMb: 64 });
      mcs.push(proc);
      ports.push(port);
    }
    const addresses = ports.map((p) => `${HOST}:${p}`);
    const started = await Promise.all(Array.from({ length: sidecars }, () => startReplicached(addresses, REPLICAS, { cli, logLevel: 'info' })));
    proxies.push(...started.map((s) => s.proc));
    await sleep(settleMs);
    for (let k = 0; k < kills; k++) {
      const b = k % BACKENDS;
      const killedAt = Date.now();
      mcs[b].child.kill('SIGKILL');
      await allLogged(proxies, AGREED_OUT, addresses[b], killedAt);
      const agreedMs = proxies
        .map((p) => logTimes(p, AGREED_OUT, addresses[b], killedAt)[0])
        .filter((t): t is number => t !== undefined)
        .map((t) => t - killedAt)
        .sort((x, y) => x - y);
      out.push({ build, round, backend: addresses[b], agreedMs, missing: sidecars - agreedMs.length });
      log(`${build} round ${round} kill ${k + 1}: ${agreedMs.join(' ')} ms`);
      await mcs[b].stop('SIGKILL');
      const restartedAt = Date.now();
      mcs[b] = (await startMemcached({ memoryMb: 64, port: ports[b] })).proc;
      if (!(await allLogged(proxies, TRUSTED_AGAIN, addresses[b], restartedAt))) throw new Error(`${addresses[b]} not trusted again within ${AGREE_TIMEOUT_MS} ms`);
      await sleep(1000);
    }
  } finally {
    await Promise.all([...proxies, ...mcs].map((p) => p.stop('SIGKILL')));
  }
  return out;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)];
};

function markdown(kills: Kill[], command: string, env: string): string {
  const builds = [...new Set(kills.map((k) => k.build))];
  const lines = [
    `# Agreement on a killed memcached`,
    '',
    `\`${command}\``,
    '',
    `${env}.`,
    '',
    '| build | round | backend | slowest sidecar (ms) | median sidecar (ms) | missing |',
    '|---|---|---|---|---|---|',
    ...kills.map((k) => `| ${k.build} | ${k.round} | ${k.backend} | ${k.agreedMs.at(-1) ?? '-'} | ${median(k.agreedMs)} | ${k.missing} |`),
    '',
    '| build | kills | median of the slowest (ms) | largest (ms) |',
    '|---|---|---|---|',
    ...builds.map((b) => {
      const slowest = kills.filter((k) => k.build === b).map((k) => k.agreedMs.at(-1) ?? NaN);
      return `| ${b} | ${slowest.length} | ${median(slowest)} | ${Math.max(...slowest)} |`;
    }),
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const sidecars = numberOption(argv, 'sidecars', 10);
  const kills = numberOption(argv, 'kills', 4);
  const rounds = numberOption(argv, 'rounds', 1);
  const settleMs = numberOption(argv, 'settle-ms', 1000);
  const cli = path.resolve(option(argv, 'cli') ?? CLI);
  const baseline = option(argv, 'baseline');
  const builds: Array<[string, string]> = [['replicached', cli], ...(baseline === undefined ? [] : [['baseline', path.resolve(baseline)] as [string, string]])];
  const env = environment();
  const all: Kill[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const [build, file] of round % 2 === 1 ? builds : [...builds].reverse()) all.push(...(await cluster(build, file, round, sidecars, kills, settleMs)));
  }
  const command = `node bench/dist/agreement.js ${argv.join(' ')}`.trim();
  const md = markdown(all, command, env);
  process.stdout.write(md);
  const outDir = path.resolve(option(argv, 'out') ?? path.join(__dirname, '..', 'results'));
  const name = option(argv, 'name') ?? `agreement-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, `${name}.md`), md);
  writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify({ command, environment: env, sidecars, kills: all }, null, 2));
}

main().catch((err: unknown) => {
  log(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
