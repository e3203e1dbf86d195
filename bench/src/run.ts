// npm run bench [-- --quick] [--seconds N] [--rounds N] [--workers N] [--workloads a,b] [--baseline <other build>/dist/cli.js]
//               [--target-args "<flags for this build's replicached only>"]
//               [--soak SECONDS [--soak-tps 20k] [--soak-interval S]] [--out DIR]
// Writes <out>/<name>.md, .svg and .json (default out: bench/results; name: bench-<stamp>,
// quick-<stamp> for --quick, soak-<stamp> for --soak).

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { flag, numberOption, option } from './args';
import { FULL, QUICK, runBench, WORKLOADS, type WorkloadId } from './harness';
import { environment, markdownReport, svgChart } from './report';
import { runSoak, soakMarkdown, soakSvg } from './soak';

const log = (line: string): void => void process.stderr.write(`${line}\n`);

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
}

function write(out: string, name: string, files: Record<string, string>): void {
  mkdirSync(out, { recursive: true });
  for (const [ext, text] of Object.entries(files)) {
    const file = path.join(out, `${name}.${ext}`);
    writeFileSync(file, text);
    log(`wrote ${file}`);
  }
}

/** --target-args "<flags>": its value starts with "--", which option() takes for a missing value. */
function targetArgs(argv: string[]): string[] | undefined {
  const i = argv.indexOf('--target-args');
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined) throw new Error('--target-args needs a value');
  return v.split(' ').filter((a) => a !== '');
}

async function main(argv: string[]): Promise<void> {
  const out = option(argv, 'out') ?? path.resolve(__dirname, '..', 'results');
  const workers = option(argv, 'workers');
  const replicachedArgs = workers ? ['--workers', workers] : [];
  const env = environment();

  const soak = option(argv, 'soak');
  if (soak !== undefined) {
    const opts = {
      seconds: Number(soak),
      intervalSeconds: numberOption(argv, 'soak-interval', Math.max(1, Math.round(Number(soak) / 60))),
      tps: option(argv, 'soak-tps'),
      binary: flag(argv, 'binary'),
      replicachedArgs,
      log,
    };
    const r = await runSoak(opts);
    const md = soakMarkdown(r, opts, env);
    process.stdout.write(md);
    write(out, option(argv, 'name') ?? `soak-${stamp()}`, { md, svg: soakSvg(r), json: JSON.stringify(r, null, 2) });
    return;
  }

  const quick = flag(argv, 'quick');
  const base = quick ? QUICK : FULL;
  const workloads = (option(argv, 'workloads')?.split(',') ?? base.workloads) as WorkloadId[];
  for (const w of workloads) if (!WORKLOADS.includes(w)) throw new Error(`unknown workload ${w}; one of ${WORKLOADS.join(', ')}`);
  const report = await runBench({
    ...base,
    seconds: numberOption(argv, 'seconds', base.seconds),
    sessionSeconds: numberOption(argv, 'seconds', base.sessionSeconds),
    rounds: numberOption(argv, 'rounds', base.rounds),
    warmupSeconds: numberOption(argv, 'warmup', base.warmupSeconds),
    workloads,
    replicachedArgs,
    baselineCli: option(argv, 'baseline'),
    targetArgs: targetArgs(argv),
    log,
  });
  const md = markdownReport(report, env);
  process.stdout.write(md);
  write(out, option(argv, 'name') ?? `${quick ? 'quick' : 'bench'}-${stamp()}`, {
    md,
    svg: svgChart(report),
    json: JSON.stringify(report, null, 2),
  });
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
