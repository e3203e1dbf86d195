// CPU profile of replicached under the memaslap mix, or the PHP-session load.
//   node bench/dist/profile.js [--seconds 15] [--binary] [--session] [--top 15]
// Starts replicached under `node --cpu-prof`, drives it with memaslap (or, with --session,
// bench's session load: add lock, get, set, delete lock per page), stops it (SIGTERM
// makes it exit, which writes the profile), then prints the functions with the most
// self time, aggregated by function + file + line.

import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { flag, numberOption } from './args';
import { runMemaslap } from './memaslap';
import { runSessionLoad } from './session-load';
import { startStack } from './targets';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export function topSelfTime(profile: CpuProfile, top: number): Array<{ name: string; ms: number; share: number }> {
  const frameOf = new Map<number, string>();
  for (const n of profile.nodes) {
    const f = n.callFrame;
    const file = f.url ? f.url.replace(/^file:\/\//, '').replace(process.cwd() + '/', '') : '';
    frameOf.set(n.id, `${f.functionName || '(anonymous)'} ${file ? `${file}:${f.lineNumber + 1}` : ''}`.trim());
  }
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const key = frameOf.get(id) ?? '?';
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  });
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => ({ name, ms: us / 1000, share: total > 0 ? us / total : 0 }));
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const seconds = numberOption(argv, 'seconds', 15);
  const binary = flag(argv, 'binary');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-cpuprof-'));
  const stack = await startStack({ only: ['replicached'], replicachedNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
  const t = stack.targets[0];
  const protocol = binary ? 'binary' : 'text';
  const load = flag(argv, 'session')
    ? runSessionLoad({ port: t.port, protocol, connections: 64, sessions: 10_000, seconds }).then((r) => ({
        what: `session-${protocol}`,
        perSecond: r.ops / r.seconds,
        errors: r.errors,
      }))
    : runMemaslap({ address: t.address, seconds, concurrency: 32, binary }).then((r) => ({
        what: `memaslap ${protocol}`,
        perSecond: r.ops / r.seconds,
        errors: r.errorReplies,
      }));
  const r = await load.finally(() => stack.stop());
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written in ${dir}`);
  const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
  console.log(`${r.what} ${seconds}s: ${Math.round(r.perSecond)} req/s, ${r.errors} errors; profile ${path.join(dir, file)}`);
  console.log('| # | self ms | self % | function (file:line) |');
  console.log('|---:|---:|---:|---|');
  topSelfTime(profile, numberOption(argv, 'top', 15)).forEach((f, i) =>
    console.log(`| ${i + 1} | ${f.ms.toFixed(0)} | ${(f.share * 100).toFixed(1)} | \`${f.name}\` |`),
  );
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err);
    process.exit(1);
  },
);
