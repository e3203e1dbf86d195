// What refilling a restarted memcached costs when several sidecars share the backends, and
// what the trust protocol's rounds cost the backends when nothing happens.
//
//   node bench/dist/resync-cost.js [--sidecars 1,2,4] [--keys 10000] [--value-bytes 400]
//                                  [--idle-seconds 10] [--cli dist/cli.js] [--out DIR] [--name NAME]
//
// For each sidecar count N, in one run: 3 memcached, N replicached (2 replicas, each with its
// metrics endpoint) over them, `keys` items written through the first sidecar. Then:
//   1. idle: the three memcached's `stats` (cmd_get + cmd_set + cmd_touch: a meta get counts in
//      exactly one of get and touch) over `idle-seconds` with no client traffic: the trust
//      rounds' backend ops/s, against docs/trust.md's model 20·N·M·(N+2) (M = 3 backends);
//   2. refill: one memcached is SIGKILLed and started again, empty, on its port. Each sidecar's
//      /metrics is read every 100 ms. From the restart:
//        - until every sidecar applied `refill` of it, and until every sidecar applied `trusted`
//          (replicached_trust_changes_total{backend,role} grew: true on every sidecar, whereas
//          only the filler runs the copy and logs "resync finished"),
//        - until no sidecar runs a resync, fill or shed (replicached_resync_in_progress all 0),
//        - keys copied (replicached_resync_keys_copied_total, summed over the sidecars) and
//          how many sidecars copied any,
//        - the ops the three memcached served from the kill (the restarted one's from its start)
//          until quiet, and those less the idle rounds' rate over that time,
//        - the loaded keys it holds at the end against those it held before the kill.
// Ratios compare each N with the first of the list. Writes <out>/<name>.md and .json
// (default name resync-cost-<stamp>) and prints the table.

import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { numberOption, option } from './args';
import { freePort, HOST, launch, sleep, waitForPort, type Proc } from './proc';
import { environment } from './report';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');
const BACKENDS = 3;
/** docs/trust.md: a round every 50 ms. */
const ROUNDS_PER_SECOND = 20;
const POLL_MS = 100;
const KEY_PREFIX = 'sess:';

const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** One request on a fresh connection; resolves with the reply once `done` says it is complete. */
function ask(port: number, request: string, done: (reply: string) => boolean, timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, HOST, () => s.write(request));
    let reply = '';
    const timer = setTimeout(() => s.destroy(new Error(`no complete reply from ${port}`)), timeoutMs);
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      reply += d;
      if (!done(reply)) return;
      clearTimeout(timer);
      s.destroy();
      resolve(reply);
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function stats(port: number): Promise<Map<string, string>> {
  const reply = await ask(port, 'stats\r\n', (r) => r.endsWith('END\r\n'));
  return new Map([...reply.matchAll(/^STAT (\S+) (.*)\r$/gm)].map((m) => [m[1], m[2]]));
}

/** The bench's own keys one memcached lists (lru_crawler metadump all), retried while another crawl runs. */
async function keyCount(port: number): Promise<number> {
  for (;;) {
    const reply = await ask(port, 'lru_crawler metadump all\r\n', (r) => /(^|\n)(END|DONE|BUSY[^\r]*|ERROR[^\r]*)\r\n$/.test(r));
    if (/(^|\n)(END|DONE)\r\n$/.test(reply)) return (reply.match(new RegExp(`^key=${encodeURIComponent(KEY_PREFIX)}`, 'gm')) ?? []).length;
    await sleep(200);
  }
}

interface Ops {
  get: number;
  set: number;
  touch: number;
  /** Every request: get, set, touch and delete. */
  total: number;
}

async function ops(port: number): Promise<Ops> {
  const s = await stats(port);
  const n = (name: string): number => Number(s.get(name) ?? 0);
  const get = n('cmd_get');
  const set = n('cmd_set');
  const touch = n('cmd_touch');
  return { get, set, touch, total: get + set + touch + n('delete_hits') + n('delete_misses') };
}

function minus(a: Ops, b: Ops): Ops {
  return { get: a.get - b.get, set: a.set - b.set, touch: a.touch - b.touch, total: a.total - b.total };
}

function plus(a: Ops, b: Ops): Ops {
  return { get: a.get + b.get, set: a.set + b.set, touch: a.touch + b.touch, total: a.total + b.total };
}

const NO_OPS: Ops = { get: 0, set: 0, touch: 0, total: 0 };

/** A sidecar's Prometheus exposition: series (name and labels as written) to value. */
function scrape(port: number): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: HOST, port, path: '/metrics', timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        const series = new Map<string, number>();
        for (const line of body.split('\n')) {
          const m = /^(\w+(?:\{[^}]*\})?) (\S+)$/.exec(line);
          if (m) series.set(m[1], Number(m[2]));
        }
        resolve(series);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`metrics on ${port}: no reply`)));
    req.on('error', reject);
  });
}

/** The value of `name` whose labels include every one given (0 when absent). */
function metric(series: Map<string, number>, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const [key, value] of series) {
    if (!key.startsWith(`${name}{`)) continue;
    const have = key.slice(name.length + 1, -1).split(',');
    if (want.every((w) => have.includes(w))) sum += value;
  }
  return sum;
}

async function listening(proc: Proc): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const m = /replicached listening on [\d.]+:(\d+)/.exec(proc.output());
    if (m) return Number(m[1]);
    if (proc.child.exitCode !== null || Date.now() > deadline) throw new Error(`replicached did not start:\n${proc.output()}`);
    await sleep(50);
  }
}

function memcachedOn(port: number): Proc {
  return launch('memcached', ['-u', 'root', '-l', HOST, '-p', String(port), '-U', '0', '-m', '256', '-t', '2', '-c', '20000']);
}

async function load(port: number, keys: number, valueBytes: number): Promise<void> {
  const value = 'x'.repeat(valueBytes);
  for (let from = 0; from < keys; from += 1000) {
    const batch = Array.from({ length: Math.min(1000, keys - from) }, (_, i) => `set ${KEY_PREFIX}${from + i} 0 0 ${valueBytes}\r\n${value}\r\n`);
    await ask(port, batch.join(''), (r) => (r.match(/STORED\r\n/g) ?? []).length >= batch.length);
  }
}

export interface ResyncCostResult {
  sidecars: number;
  keys: number;
  valueBytes: number;
  idle: {
    seconds: number;
    /** Ops per second the three memcached served with no client traffic, by counter. */
    perSecond: Ops;
    /** docs/trust.md's 20·N·M·(N+2). */
    modelPerSecond: number;
  };
  refill: {
    /** From the restart until every sidecar applied `refill` of the backend. */
    refillAppliedSeconds: number;
    /** From the restart until the first sidecar, and until every sidecar, applied `trusted`. */
    firstTrustedSeconds: number;
    trustedSeconds: number;
    /** From the restart until no sidecar runs a resync, fill or shed. */
    quietSeconds: number;
    /** Summed over the sidecars: keys copied to the backend. */
    keysCopied: number;
    /** Summed over the sidecars: keys a run left alone, the fill's second listing and the shed after it included. */
    keysSkipped: number;
    /** Sidecars that copied at least one key (the filler; more if one took over). */
    sidecarsThatCopied: number;
    /** Served by the three memcached from the kill until quiet, and that window's length. */
    ops: Ops;
    opsSeconds: number;
    /** ops.total less what the idle rounds would have cost over the window: the refill's own share, roughly. */
    opsBeyondIdle: number;
    /** The bench's keys the restarted memcached held before the kill, and when quiet. */
    heldBefore: number;
    heldAfter: number;
  };
}

async function measure(sidecars: number, keys: number, valueBytes: number, idleSeconds: number, cli: string): Promise<ResyncCostResult> {
  const ports = await Promise.all(Array.from({ length: BACKENDS }, () => freePort()));
  const mcs = ports.map(memcachedOn);
  const proxies: Proc[] = [];
  try {
    await Promise.all(mcs.map((p, i) => waitForPort(ports[i], p)));
    const addresses = ports.map((p) => `${HOST}:${p}`);
    const metricsPorts: number[] = [];
    for (let i = 0; i < sidecars; i++) {
      const m = await freePort();
      metricsPorts.push(m);
      proxies.push(
        launch(process.execPath, [cli, '--listen', `${HOST}:0`, '--backends', addresses.join(','), '--replicas', '2', '--metrics-listen', `${HOST}:${m}`, '--log-level', 'warn']),
      );
    }
    const proxyPorts = await Promise.all(proxies.map((p) => listening(p)));
    await load(proxyPorts[0], keys, valueBytes);
    // Let the load's follow-up requests end before the idle window.
    await sleep(2000);

    const idle0 = await Promise.all(ports.map(ops));
    const i0 = performance.now();
    await sleep(idleSeconds * 1000);
    const idle1 = await Promise.all(ports.map(ops));
    const idleElapsed = (performance.now() - i0) / 1000;
    const idleOps = idle1.reduce((sum, o, i) => plus(sum, minus(o, idle0[i])), NO_OPS);
    const perSecond = (k: keyof Ops): number => idleOps[k] / idleElapsed;

    const victim = BACKENDS - 1;
    const backend = addresses[victim];
    const heldBefore = await keyCount(ports[victim]);
    const counters = async (): Promise<Array<{ refill: number; trusted: number; copied: number; skipped: number; running: number }>> =>
      (await Promise.all(metricsPorts.map(scrape))).map((s) => ({
        refill: metric(s, 'replicached_trust_changes_total', { backend, role: 'refill' }),
        trusted: metric(s, 'replicached_trust_changes_total', { backend, role: 'trusted' }),
        copied: metric(s, 'replicached_resync_keys_copied_total', { backend }),
        skipped: metric(s, 'replicached_resync_keys_skipped_total', { backend }),
        running: metric(s, 'replicached_resync_in_progress', {}),
      }));
    const start = await counters();
    const before = await Promise.all(ports.map(ops));
    const k0 = performance.now();

    await mcs[victim].stop('SIGKILL');
    const t0 = performance.now();
    mcs[victim] = memcachedOn(ports[victim]);
    await waitForPort(ports[victim], mcs[victim]);

    const refillAt: Array<number | null> = proxies.map(() => null);
    const trustedAt: Array<number | null> = proxies.map(() => null);
    let now = start;
    for (;;) {
      now = await counters();
      const at = (performance.now() - t0) / 1000;
      now.forEach((c, i) => {
        if (refillAt[i] === null && c.refill > start[i].refill) refillAt[i] = at;
        if (trustedAt[i] === null && c.trusted > start[i].trusted) trustedAt[i] = at;
      });
      if (trustedAt.every((t) => t !== null) && now.every((c) => c.running === 0)) break;
      if (at > 900) throw new Error('the sidecars did not all trust the backend again, and go quiet, within 15 minutes');
      await sleep(POLL_MS);
    }
    const quietSeconds = (performance.now() - t0) / 1000;
    const after = await Promise.all(ports.map(ops));
    const opsSeconds = (performance.now() - k0) / 1000;
    const served = after.reduce((sum, o, i) => plus(sum, i === victim ? o : minus(o, before[i])), NO_OPS);
    const times = (xs: Array<number | null>): number[] => xs.map((x) => x ?? Number.NaN);
    return {
      sidecars,
      keys,
      valueBytes,
      idle: {
        seconds: idleElapsed,
        perSecond: { get: perSecond('get'), set: perSecond('set'), touch: perSecond('touch'), total: perSecond('total') },
        modelPerSecond: ROUNDS_PER_SECOND * sidecars * BACKENDS * (sidecars + 2),
      },
      refill: {
        refillAppliedSeconds: Math.max(...times(refillAt)),
        firstTrustedSeconds: Math.min(...times(trustedAt)),
        trustedSeconds: Math.max(...times(trustedAt)),
        quietSeconds,
        keysCopied: now.reduce((n, c, i) => n + c.copied - start[i].copied, 0),
        keysSkipped: now.reduce((n, c, i) => n + c.skipped - start[i].skipped, 0),
        sidecarsThatCopied: now.filter((c, i) => c.copied > start[i].copied).length,
        ops: served,
        opsSeconds,
        opsBeyondIdle: served.total - perSecond('total') * opsSeconds,
        heldBefore,
        heldAfter: await keyCount(ports[victim]),
      },
    };
  } finally {
    await Promise.all(proxies.map((p) => p.stop('SIGKILL')));
    await Promise.all(mcs.map((p) => p.stop('SIGKILL')));
  }
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const sec = (n: number): string => n.toFixed(2);
const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}×` : '–');

export function resyncCostMarkdown(results: ResyncCostResult[], command: string, env: string): string {
  const first = results[0];
  const idle = [
    '| sidecars | backend ops/s | get | set | touch | model 20·N·3·(N+2) | measured / model | ops/s vs first |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map((r) => {
      const p = r.idle.perSecond;
      return `| ${r.sidecars} | ${int(p.total)} | ${int(p.get)} | ${int(p.set)} | ${int(p.touch)} | ${int(r.idle.modelPerSecond)} | ${ratio(p.total, r.idle.modelPerSecond)} | ${ratio(p.total, first.idle.perSecond.total)} |`;
    }),
  ];
  const refill = [
    '| sidecars | refill applied everywhere s | first trusted s | all trusted s | vs first | quiet s | keys copied | sidecars that copied | backend ops | beyond idle rounds | per key copied | held after / before |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map((r) => {
      const f = r.refill;
      return (
        `| ${r.sidecars} | ${sec(f.refillAppliedSeconds)} | ${sec(f.firstTrustedSeconds)} | ${sec(f.trustedSeconds)} | ${ratio(f.trustedSeconds, first.refill.trustedSeconds)} | ` +
        `${sec(f.quietSeconds)} | ${int(f.keysCopied)} | ${f.sidecarsThatCopied} | ${int(f.ops.total)} | ` +
        `${int(f.opsBeyondIdle)} | ${f.keysCopied > 0 ? (f.opsBeyondIdle / f.keysCopied).toFixed(1) : '–'} | ${int(f.heldAfter)} / ${int(f.heldBefore)} |`
      );
    }),
  ];
  return [
    '# Refill cost and idle trust rounds',
    '',
    `\`${command}\`; ${env}.`,
    '',
    `${first.keys.toLocaleString('en-US')} keys of ${first.valueBytes} bytes through the first sidecar; 3 memcached, 2 replicas. ` +
      `Idle: backend ops over ${sec(first.idle.seconds)} s with no client traffic (cmd_get + cmd_set + cmd_touch, the three memcached summed). ` +
      `Refill: one memcached SIGKILLed and started again empty; times from its restart, each sidecar's /metrics read every ${POLL_MS} ms ` +
      '(replicached_trust_changes_total{role="refill"} and {role="trusted"}); quiet: no resync, fill or shed left on any sidecar; ' +
      'backend ops from the kill until quiet, trust rounds included; beyond idle rounds: less the idle rate over that time; per key copied: of those. Ratios against the first sidecar count of the run.',
    '',
    '## Idle: trust rounds',
    '',
    ...idle,
    '',
    '## Refill of a restarted memcached',
    '',
    ...refill,
    '',
  ].join('\n');
}

async function main(argv: string[]): Promise<void> {
  const counts = (option(argv, 'sidecars') ?? '1,2,4').split(',').map(Number);
  if (counts.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--sidecars: a list of counts, like 1,2,4`);
  const keys = numberOption(argv, 'keys', 10_000);
  const valueBytes = numberOption(argv, 'value-bytes', 400);
  const idleSeconds = numberOption(argv, 'idle-seconds', 10);
  const cli = path.resolve(option(argv, 'cli') ?? CLI);
  const out = option(argv, 'out') ?? path.resolve(__dirname, '..', 'results');
  const name = option(argv, 'name') ?? `resync-cost-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
  const env = environment();
  const results: ResyncCostResult[] = [];
  for (const n of counts) {
    log(`resync cost: ${n} sidecar(s), ${keys} keys of ${valueBytes} bytes, ${idleSeconds} s idle ...`);
    const r = await measure(n, keys, valueBytes, idleSeconds, cli);
    results.push(r);
    const f = r.refill;
    log(
      `${n} sidecar(s): idle ${int(r.idle.perSecond.total)} backend ops/s (model ${int(r.idle.modelPerSecond)}); ` +
        `trusted by all ${sec(f.trustedSeconds)} s after the restart, quiet after ${sec(f.quietSeconds)} s; ` +
        `${f.keysCopied} keys copied by ${f.sidecarsThatCopied} sidecar(s), ${f.ops.total} backend ops; held ${f.heldAfter}/${f.heldBefore}`,
    );
  }
  const command = ['node bench/dist/resync-cost.js', ...argv].join(' ');
  const md = resyncCostMarkdown(results, command, env);
  process.stdout.write(md);
  mkdirSync(out, { recursive: true });
  for (const [ext, text] of [
    ['md', md],
    ['json', JSON.stringify({ command, environment: env, cli, results }, null, 2)],
  ]) {
    const file = path.join(out, `${name}.${ext}`);
    writeFileSync(file, text);
    log(`wrote ${file}`);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: unknown) => {
      log(err instanceof Error ? (err.stack ?? err.message) : String(err));
      process.exit(1);
    },
  );
}
