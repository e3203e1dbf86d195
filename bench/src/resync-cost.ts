// What refilling a restarted memcached costs when many sidecars share the backends.
//
//   node bench/dist/resync-cost.js [--sidecars 10,50] [--keys 20000] [--value-bytes 400] [--cli dist/cli.js] [--out DIR]
//
// For each sidecar count N: 3 memcached, N replicached (2 replicas) over them, `keys`
// items written through one sidecar; then one memcached is SIGKILLed and started again,
// empty, on its port. Measured from the restart:
//   - until every sidecar trusts it again (each logged the end of its resync of it),
//   - until nothing runs anywhere (each sidecar's stats: no resync, fill or shed left),
//   - what the three memcached served meanwhile: requests (their get, set, delete and touch
//     counters) and bytes read and written, the restarted one's from its start,
//   - the keys it holds at the end against those it held before the kill.
// Writes <out>/resync-cost-<stamp>.json and prints one line per N.

import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { option } from './args';
import { freePort, HOST, launch, sleep, waitForPort, type Proc } from './proc';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');

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

/** Keys one memcached lists (lru_crawler metadump all), retried while another crawl runs. */
async function keyCount(port: number): Promise<number> {
  for (;;) {
    const reply = await ask(port, 'lru_crawler metadump all\r\n', (r) => /(^|\n)(END|DONE|BUSY[^\r]*|ERROR[^\r]*)\r\n$/.test(r));
    if (/(^|\n)(END|DONE)\r\n$/.test(reply)) return (reply.match(/^key=/gm) ?? []).length;
    await sleep(200);
  }
}

interface Served {
  requests: number;
  bytesRead: number;
  bytesWritten: number;
}

const REQUEST_COUNTERS = ['cmd_get', 'cmd_set', 'cmd_touch', 'delete_hits', 'delete_misses'];

async function served(port: number): Promise<Served> {
  const s = await stats(port);
  const n = (name: string): number => Number(s.get(name) ?? 0);
  return { requests: REQUEST_COUNTERS.reduce((sum, c) => sum + n(c), 0), bytesRead: n('bytes_read'), bytesWritten: n('bytes_written') };
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
    const batch = Array.from({ length: Math.min(1000, keys - from) }, (_, i) => `set sess:${from + i} 0 0 ${valueBytes}\r\n${value}\r\n`);
    await ask(port, batch.join(''), (r) => (r.match(/STORED\r\n/g) ?? []).length >= batch.length);
  }
}

export interface ResyncCostResult {
  sidecars: number;
  keys: number;
  valueBytes: number;
  /** From the restart until every sidecar trusts the backend again. */
  trustedAfterSeconds: number;
  /** From the restart until no sidecar runs a resync, fill or shed. */
  quietAfterSeconds: number;
  /** Served by the three memcached meanwhile. */
  requests: number;
  bytesRead: number;
  bytesWritten: number;
  /** Keys the restarted memcached held before the kill, and at the end. */
  heldBefore: number;
  heldAfter: number;
  /** Sidecars whose own run copied at least one key (a shared refill: one, plus any takeover). */
  sidecarsThatCopied: number;
  /** Sidecars whose run ended incomplete (a lister's keys not listed) and trust the backend anyway. */
  sidecarsIncomplete: number;
}

async function measure(sidecars: number, keys: number, valueBytes: number, cli: string | undefined): Promise<ResyncCostResult> {
  const ports = await Promise.all([0, 1, 2].map(() => freePort()));
  const mcs = ports.map(memcachedOn);
  const proxies: Proc[] = [];
  try {
    await Promise.all(mcs.map((p, i) => waitForPort(ports[i], p)));
    const addresses = ports.map((p) => `${HOST}:${p}`);
    for (let i = 0; i < sidecars; i++) {
      // At info: each one logs its resync's end, which is what is waited for.
      proxies.push(launch(process.execPath, [cli ?? CLI, '--listen', `${HOST}:0`, '--backends', addresses.join(','), '--replicas', '2', '--metrics-listen', 'off', '--log-level', 'info']));
    }
    const proxyPorts = await Promise.all(proxies.map((p) => listening(p)));
    await load(proxyPorts[0], keys, valueBytes);
    // Every sidecar has read each backend's identity (its first poll), so it tells a restart apart.
    await sleep(4000);
    const victim = 2;
    const heldBefore = await keyCount(ports[victim]);
    const before = await Promise.all([0, 1].map((i) => served(ports[i])));
    const logFrom = proxies.map((p) => p.output().length);

    mcs[victim].child.kill('SIGKILL');
    await mcs[victim].stop('SIGKILL');
    const t0 = performance.now();
    mcs[victim] = memcachedOn(ports[victim]);
    await waitForPort(ports[victim], mcs[victim]);

    // A run that could not list every key (memcached answers BUSY to a crawl while another runs)
    // ends "incomplete", and its sidecar trusts the backend all the same.
    const finished = new RegExp(`"backend":"${addresses[victim]}".*"msg":"resync (finished|incomplete)"`);
    const incomplete = new RegExp(`"backend":"${addresses[victim]}".*"msg":"resync incomplete"`);
    const copiedLine = new RegExp(`"backend":"${addresses[victim]}".*"copied":([1-9]\\d*).*"msg":"resync (finished|incomplete)"`);
    let trustedAt = 0;
    for (;;) {
      if (proxies.every((p, i) => finished.test(p.output().slice(logFrom[i])))) break;
      if (performance.now() - t0 > 900_000) throw new Error('the sidecars did not all finish within 15 minutes');
      await sleep(100);
    }
    trustedAt = performance.now();
    for (const port of proxyPorts) {
      while ((await stats(port)).get('replicached_resyncs_in_progress') !== '0') await sleep(100);
    }
    const quietAt = performance.now();
    const after = await Promise.all([0, 1, 2].map((i) => served(ports[i])));
    const delta = (k: keyof Served): number => after[0][k] - before[0][k] + after[1][k] - before[1][k] + after[2][k];
    return {
      sidecars,
      keys,
      valueBytes,
      trustedAfterSeconds: (trustedAt - t0) / 1000,
      quietAfterSeconds: (quietAt - t0) / 1000,
      requests: delta('requests'),
      bytesRead: delta('bytesRead'),
      bytesWritten: delta('bytesWritten'),
      heldBefore,
      heldAfter: await keyCount(ports[victim]),
      sidecarsThatCopied: proxies.filter((p, i) => copiedLine.test(p.output().slice(logFrom[i]))).length,
      sidecarsIncomplete: proxies.filter((p, i) => incomplete.test(p.output().slice(logFrom[i]))).length,
    };
  } finally {
    await Promise.all(proxies.map((p) => p.stop('SIGKILL')));
    await Promise.all(mcs.map((p) => p.stop('SIGKILL')));
  }
}

async function main(argv: string[]): Promise<void> {
  const counts = (option(argv, 'sidecars') ?? '10,50').split(',').map(Number);
  const keys = Number(option(argv, 'keys') ?? 20_000);
  const valueBytes = Number(option(argv, 'value-bytes') ?? 400);
  const cli = option(argv, 'cli');
  const out = option(argv, 'out') ?? path.resolve(__dirname, '..', 'results');
  const results: ResyncCostResult[] = [];
  for (const n of counts) {
    log(`resync cost: ${n} sidecars, ${keys} keys of ${valueBytes} bytes ...`);
    const r = await measure(n, keys, valueBytes, cli);
    results.push(r);
    log(
      `${n} sidecars: trusted again after ${r.trustedAfterSeconds.toFixed(1)} s, quiet after ${r.quietAfterSeconds.toFixed(1)} s; ` +
        `${r.requests} backend requests, ${(r.bytesRead / 1e6).toFixed(1)} MB read + ${(r.bytesWritten / 1e6).toFixed(1)} MB written by memcached; ` +
        `held ${r.heldAfter}/${r.heldBefore} keys; ${r.sidecarsThatCopied} sidecars copied, ${r.sidecarsIncomplete} incomplete`,
    );
  }
  mkdirSync(out, { recursive: true });
  const file = path.join(out, `resync-cost-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}.json`);
  writeFileSync(file, JSON.stringify({ cli: cli ?? 'dist/cli.js', results }, null, 2));
  log(`wrote ${file}`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  log(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
