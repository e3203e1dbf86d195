// The seeded, model-based randomized check of replication under overlap
// (issue 11). Real memcached, one or two replicached sidecars over them.
//
//   workers   text and binary, each on its own connection to a sidecar, send
//             batches of random ops in one write (pipelined; noreply / quiet
//             opcodes mixed in). Owned keys are written by one worker only, so
//             every answer is compared with the model (model.ts). Shared keys
//             are written by every worker through every sidecar at once;
//             their answers are only checked for form.
//   faults    at seeded random moments a backend is SIGKILLed and restarted
//             (while workers run), then the run waits for the sidecars to
//             resync it before the next fault.
//   at the end, every backend is asked directly:
//             - owned keys: each member of the key's replica set holds the
//               model's item (value, flags), or nothing;
//             - every key: the members agree (value, flags, TTL within 2 s),
//               within a bounded wait for the writes' follow-up steps;
//             - every key is then deleted through a sidecar, the authority of
//               every key is killed, and no sidecar serves any of them again.
// Failures come back as a list of messages naming the seed, so a run can be replayed.

import { startMemcached, type MemcachedProcess } from '../../helpers/memcached';
import { startProxy, waitForStats, type ProxyProcess } from '../../helpers/proxy';
import { itemOn, ringOrder, seeded } from '../support';
import { connect, type BatchClient, type Protocol } from './clients';
import { apply, emptyState, quietly, sameResult, type KeyState, type Op, type Result } from './model';

export interface CheckOptions {
  seed: number;
  sidecars: 1 | 2;
  workers: Array<{ protocol: Protocol }>;
  batches: number;
  opsPerBatch: number;
  ownedKeysPerWorker: number;
  sharedKeys: number;
  /** SIGKILL and restart of a random backend, at random moments during the run. */
  faults: number;
}

export interface CheckReport {
  ops: number;
  checked: number;
  unknown: number;
  faults: number;
  failures: string[];
}

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];

const STRING_OPS = ['set', 'set', 'add', 'replace', 'append', 'prepend', 'cas', 'delete', 'touch', 'get', 'get', 'get'] as const;
const COUNTER_OPS = ['set', 'incr', 'incr', 'decr', 'delete', 'get', 'get'] as const;
const SHARED_OPS = ['set', 'set', 'delete', 'append', 'add', 'touch', 'get'] as const;

export function randomOp(rng: Rng, key: string, s: KeyState | null, quietAllowed: boolean): Op | null {
  const kinds = s === null ? SHARED_OPS : s.counter ? COUNTER_OPS : STRING_OPS;
  // A key whose state a failure left unknown is read first.
  const kind = s?.unknown ? 'get' : pick(rng, kinds);
  if (kind === 'cas' && (s === null || s.token === null)) return null;
  const counter = s?.counter === true;
  const value = counter ? String(Math.floor(rng() * 1000)) : `v${Math.floor(rng() * 1e6)}`.repeat(1 + Math.floor(rng() * 3));
  return {
    kind,
    key,
    value: kind === 'append' || kind === 'prepend' ? `+${Math.floor(rng() * 100)}` : value,
    flags: counter ? 0 : Math.floor(rng() * 4) * 1000,
    exptime: rng() < 0.7 ? 0 : 3600 + Math.floor(rng() * 3600),
    delta: BigInt(1 + Math.floor(rng() * 5)),
    cas: s?.token ?? 0n,
    quiet: quietAllowed && kind !== 'get' && kind !== 'touch' && rng() < 0.25,
  };
}

/** An op in a line of history: what a failure report needs to replay it by eye. */
function show(op: Op): string {
  const q = op.quiet ? ' quiet' : '';
  if (op.kind === 'incr' || op.kind === 'decr') return `${op.kind} ${op.delta}${q}`;
  if (op.kind === 'get' || op.kind === 'delete') return `${op.kind}${q}`;
  if (op.kind === 'touch') return `touch ${op.exptime}`;
  return `${op.kind} ${JSON.stringify(op.value)} f${op.flags} e${op.exptime}${op.kind === 'cas' ? ` cas ${op.cas}` : ''}${q}`;
}

export function describe(r: Result): string {
  return JSON.stringify(r, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

export async function runCheck(o: CheckOptions): Promise<CheckReport> {
  const rng = seeded(o.seed);
  const report: CheckReport = { ops: 0, checked: 0, unknown: 0, faults: 0, failures: [] };
  const fail = (msg: string): void => {
    if (report.failures.length < 50) report.failures.push(`seed ${o.seed}: ${msg}`);
  };
  // What led to a failure: each owned key's last requests and answers, and the faults, timed.
  const t0 = Date.now();
  const at = (): string => `${((Date.now() - t0) / 1000).toFixed(3)}s`;
  const history = new Map<string, string[]>();
  const faultLog: string[] = [];
  const remember = (key: string, line: string): void => {
    const h = history.get(key) ?? [];
    h.push(line);
    if (h.length > 12) h.shift();
    history.set(key, h);
  };
  // Failures on a key are followed by what each backend holds for it (read once the batch is checked).
  const toInspect: Array<{ at: number; key: string }> = [];
  const failOn = (key: string, msg: string): void => {
    fail(`${msg}\n    history of ${key}:\n      ${(history.get(key) ?? []).join('\n      ')}\n    faults: ${faultLog.join('; ')}`);
    if (report.failures.length < 50) toInspect.push({ at: report.failures.length - 1, key });
  };
  const inspect = async (): Promise<void> => {
    for (const { at: i, key } of toInspect.splice(0)) {
      const order = ringOrder(addresses, key);
      const held = await Promise.all(
        order.map(async (a, rank) => {
          const item = await itemOn(backends[addresses.indexOf(a)].port, key).catch(() => 'unreachable');
          return `${a} (${rank < 2 ? 'natural' : 'stand-in'}): ${JSON.stringify(item)}`;
        }),
      );
      report.failures[i] += `\n    now on the backends: ${held.join('; ')}`;
    }
  };
  const backends: MemcachedProcess[] = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const addresses = backends.map((b) => b.address);
  const proxies: ProxyProcess[] = [];
  try {
    for (let i = 0; i < o.sidecars; i++) proxies.push(await startProxy({ backends: addresses, replicas: 2 }));
    const owned = o.workers.map((_, w) =>
      Array.from({ length: o.ownedKeysPerWorker }, (_, i) => `own-${o.seed}-${w}-${i}`),
    );
    const shared = Array.from({ length: o.sharedKeys }, (_, i) => `shared-${o.seed}-${i}`);
    const states = new Map<string, KeyState>();
    owned.forEach((keys) => keys.forEach((k, i) => states.set(k, emptyState(i % 4 === 0))));

    // Faults run beside the workers, at seeded moments. A CAS token is one member's: one
    // taken before a kill or a resync may meet another authority, so `epoch` counts those.
    let epoch = 0;
    let faulting = false;
    const tokenEpoch = new Map<string, number>();
    let running = true;
    let faultsDone = o.faults === 0;
    const faults = (async () => {
      for (let f = 0; f < o.faults && running; f++) {
        await sleep(200 + rng() * 1500);
        if (!running) break;
        const victim = pick(rng, backends);
        faulting = true;
        epoch++;
        faultLog.push(`${at()} kill ${victim.address}`);
        victim.kill('SIGKILL');
        await victim.exited();
        await sleep(100 + rng() * 1000);
        await victim.restart();
        faultLog.push(`${at()} restarted`);
        report.faults++;
        await waitResynced(proxies, addresses.length);
        faultLog.push(`${at()} resynced`);
        epoch++;
        faulting = false;
      }
      faultsDone = true;
    })();

    const worker = async (w: number): Promise<void> => {
      const { protocol } = o.workers[w];
      const sidecar = proxies[w % proxies.length];
      let client: BatchClient = await connect(protocol, sidecar.port);
      const wrng = seeded(o.seed * 1000 + w);
      // Workers go on until every fault has happened (so each one lands among requests), within a
      // bound in time: a fault waits for the sidecars' resync, which takes longer on a busy machine.
      const giveUpAt = Date.now() + 60_000 + o.faults * 30_000;
      for (let b = 0; b < o.batches || (faultsDone === false && Date.now() < giveUpAt); b++) {
        const ops: Op[] = [];
        while (ops.length < o.opsPerBatch) {
          const useShared = wrng() < 0.3;
          const key = useShared ? pick(wrng, shared) : pick(wrng, owned[w]);
          const op = randomOp(wrng, key, useShared ? null : states.get(key)!, true);
          if (op) ops.push(op);
        }
        const sentIn = faulting ? -1 : epoch;
        const sentAt = at();
        let results: Result[];
        try {
          results = await client.run(ops);
        } catch (err) {
          fail(`worker ${w} (${protocol}) batch ${b}: ${(err as Error).message}`);
          return;
        }
        report.ops += ops.length;
        let lost = false;
        ops.forEach((op, i) => {
          const got = results[i];
          if (got.kind === 'unknown') lost = true;
          const s = states.get(op.key);
          if (s === undefined) return; // shared: form only (the client parsed it)
          remember(op.key, `${sentAt}-${at()} batch ${b}#${i}${sentIn < 0 ? ' (fault)' : ''}: ${show(op)} -> ${describe(got)}`);
          if (got.kind === 'unknown') {
            report.unknown++;
            s.unknown = true;
            s.token = null;
            return;
          }
          if (s.unknown) {
            // A read after a failure: adopt what the proxy says (one of the states the lost op could leave).
            if (op.kind === 'get') {
              s.unknown = false;
              s.present = got.kind === 'value';
              if (got.kind === 'value') Object.assign(s, { value: got.value, flags: got.flags, token: got.cas });
              tokenEpoch.set(op.key, sentIn);
            }
            return;
          }
          if (op.quiet && protocol === 'text' && (sentIn !== epoch || faulting)) {
            // noreply hides a failure (the proxy answers a write it could not do with nothing, as
            // memcached would answer its errors): around a fault its effect is not known.
            report.unknown++;
            apply(s, op);
            s.unknown = true;
            s.token = null;
            return;
          }
          if (op.kind === 'cas' && (tokenEpoch.get(op.key) !== sentIn || sentIn !== epoch || faulting)) {
            // The token may be another member's than the one that decides now: either answer is right.
            report.unknown++;
            const before = { ...s };
            const want = apply(s, { ...op, cas: s.token ?? 0n });
            // A text noreply cas answers nothing either way: its outcome is not known.
            if (got.kind === 'silent' && protocol === 'text') s.unknown = true;
            else if (got.kind === 'exists' && before.present) Object.assign(s, before);
            else if (!sameResult(op.quiet ? quietly(want, protocol) : want, got, s.counter)) {
              failOn(op.key, `worker ${w} (${protocol}) batch ${b}: cas ${op.key} (token from before a fault): expected ${describe(want)} or exists, got ${describe(got)}`);
              s.unknown = true;
            }
            s.token = null;
            return;
          }
          const want = apply(s, op);
          const expected = op.quiet ? quietly(want, protocol) : want;
          report.checked++;
          if (!sameResult(expected, got, s.counter)) {
            failOn(op.key, `worker ${w} (${protocol}) batch ${b}: ${op.kind} ${op.key}: expected ${describe(expected)}, got ${describe(got)}`);
            s.unknown = true;
          }
          if (op.kind === 'get' && got.kind === 'value') {
            s.token = got.cas;
            tokenEpoch.set(op.key, sentIn);
          }
        });
        await inspect();
        if (lost) {
          client.close();
          client = await connectWhenUp(protocol, sidecar.port);
        }
      }
      client.close();
    };
    await Promise.all(o.workers.map((_, w) => worker(w)));
    running = false;
    await faults;
    await waitResynced(proxies, addresses.length);

    // Every key's members agree, and owned keys hold the model's item.
    const allKeys = [...owned.flat(), ...shared];
    const membersOf = (key: string): MemcachedProcess[] =>
      ringOrder(addresses, key)
        .slice(0, 2)
        .map((a) => backends[addresses.indexOf(a)]);
    const disagreements = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const key of allKeys) {
        const [x, y] = await Promise.all(membersOf(key).map((m) => itemOn(m.port, key)));
        const same = x === null || y === null ? x === y : x.value === y.value && x.flags === y.flags && Math.abs(x.ttl - y.ttl) <= 2;
        if (!same) out.push(`${key}: members differ: ${JSON.stringify(x)} vs ${JSON.stringify(y)}`);
      }
      return out;
    };
    const deadline = Date.now() + 15_000;
    let differ = await disagreements();
    while (differ.length > 0 && Date.now() < deadline) {
      await sleep(250);
      differ = await disagreements();
    }
    for (const d of differ) fail(d);
    for (const [key, s] of states) {
      if (s.unknown) continue;
      for (const m of membersOf(key)) {
        const item = await itemOn(m.port, key);
        const ok = s.present
          ? item !== null && item.flags === s.flags && (s.counter ? item.value.trim() === s.value : item.value === s.value)
          : item === null;
        if (!ok) failOn(key, `${key} on ${m.address}: model ${s.present ? JSON.stringify(s.value) : 'absent'}, backend ${JSON.stringify(item)}`);
      }
    }

    // No resurrection: delete everything, kill each key's authority, and read through every sidecar.
    const deleter = await connect('text', proxies[0].port);
    const deletes: Op[] = allKeys.map((key) => ({ kind: 'delete', key, value: '', flags: 0, exptime: 0, delta: 0n, cas: 0n, quiet: false }));
    const deleted = await deleter.run(deletes);
    deleter.close();
    deleted.forEach((r, i) => {
      if (r.kind !== 'deleted' && r.kind !== 'not_found') fail(`final delete ${allKeys[i]}: ${describe(r)}`);
    });
    const victim = backends[Math.floor(rng() * backends.length)];
    victim.kill('SIGKILL');
    await victim.exited();
    await waitDown(proxies, addresses.indexOf(victim.address));
    for (const p of proxies) {
      const reader = await connect('text', p.port);
      const gets = await reader.run(allKeys.map((key) => ({ ...deletes[0], kind: 'get' as const, key })));
      reader.close();
      gets.forEach((r, i) => {
        if (r.kind === 'value') fail(`${allKeys[i]} served after its delete (authority-killed ${victim.address}): ${describe(r)}`);
      });
    }
    return report;
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await Promise.all(backends.map((b) => b.stop()));
  }
}

/** Reconnects once the sidecar accepts again (it always does; a closed connection is per request). */
async function connectWhenUp(protocol: Protocol, port: number): Promise<BatchClient> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await connect(protocol, port);
    } catch (err) {
      if (attempt > 50) throw err;
      await sleep(100);
    }
  }
}

/** Every sidecar sees every backend up, and none is resyncing. */
async function waitResynced(proxies: ProxyProcess[], backends: number): Promise<void> {
  for (const p of proxies) {
    await waitForStats(
      p.port,
      (s) =>
        s.get('replicached_resyncs_in_progress') === '0' &&
        Array.from({ length: backends }, (_, i) => s.get(`replicached_backend_${i}`)?.endsWith(' up')).every(Boolean),
      60_000,
    );
  }
}

/** Every sidecar has marked backend `index` down (reads to it then go elsewhere at once). */
async function waitDown(proxies: ProxyProcess[], index: number): Promise<void> {
  for (const p of proxies) {
    // A request is what shows a dead backend soonest; stats alone waits for the probes.
    await waitForStats(p.port, (s) => s.get(`replicached_backend_${index}`)?.endsWith(' down') === true, 60_000);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
