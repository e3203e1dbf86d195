// The seeded, randomized reconfiguration check (issue 12): one replicached on a
// config file over a pool of real memcached, reconfigured at random moments
// while clients write and a backend is SIGKILLed and restarted.
//
//   workers  text and binary, each on its own connection, send pipelined
//            batches of set / delete / add (noreply or quiet opcodes mixed in)
//            on keys only they write, and keep a model of each key: present
//            (value, flags), absent, or unknown (the answer was lost).
//            Checked as they go: an `add` of a key the model holds never
//            answers STORED (a session lock handed out twice), an `add` of an
//            absent key is never refused and a `delete` of a present key never
//            answers NOT_FOUND (a deleted key back, a live one lost).
//   events   at seeded moments: add a backend, remove one, give one another
//            weight, replicas up or down, a no-op SIGHUP, a config edit picked
//            up by the file watcher alone or together with a SIGHUP, and a
//            SIGKILL of a backend with its restart a moment later. One copy is
//            lost at a time: a kill, a removal, a reweight or an addition (which
//            takes a key's place from one of its members) waits until every
//            backend is up and nothing is being resynced; the other events may
//            land during a kill or a resync.
//            (Two additions in a row can leave a key whose members are all being
//            resynced: replicated-router.ts then lets an empty one decide.)
//   at the end, once the proxy runs the last config and every resync and fill
//   has finished (read from `stats`), every backend of the list is asked
//   directly: each live key is on all R members of its replica set with the
//   model's value and flags, each deleted key is on no backend, and the members
//   of each key whose state is unknown agree.

import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startMemcached, type MemcachedProcess } from '../../helpers/memcached';
import { waitForStats } from '../../helpers/proxy';
import { connect, type BatchClient, type Protocol } from '../../replication/checker/clients';
import type { Op, Result } from '../../replication/checker/model';
import { ringOrder, seeded } from '../../replication/support';
import { configYaml, startConfigured, waitFor, type ConfiguredRun } from '../support';
import { itemsOn, listKeys, type HeldItem } from './backends';

export interface ReconfOptions {
  seed: number;
  /** Reconfiguration events (each kill counts as one). */
  events: number;
  workers: Protocol[];
  keysPerWorker: number;
  opsPerBatch: number;
}

export interface ReconfReport {
  ops: number;
  adds: number;
  /** Events by kind. */
  events: Record<string, number>;
  /** Each event with its time (ms since the workers started), for a failing seed's story. */
  timeline: string[];
  /** Keys left live / deleted / unknown by the model at the end. */
  live: number;
  deleted: number;
  unknown: number;
  /** Copies of live keys found on backends outside the key's replica set (left over, harmless). */
  strays: number;
  failures: string[];
}

type KeyModel = { state: 'present'; value: string; flags: number } | { state: 'absent' } | { state: 'unknown' };
type Rng = () => number;

/** Backends in the pool; the config lists between MIN_LISTED of them and all. */
const POOL = 5;
const MIN_LISTED = 3;
const INITIAL_REPLICAS = 2;

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runReconfigure(o: ReconfOptions): Promise<ReconfReport> {
  const rng = seeded(o.seed);
  const report: ReconfReport = { ops: 0, adds: 0, events: {}, timeline: [], live: 0, deleted: 0, unknown: 0, strays: 0, failures: [] };
  const t0 = Date.now();
  const fail = (msg: string): void => {
    if (report.failures.length < 50) report.failures.push(`seed ${o.seed}, ${Date.now() - t0} ms: ${msg}`);
  };
  const pool: MemcachedProcess[] = await Promise.all(Array.from({ length: POOL }, () => startMemcached()));
  let listed = pool.slice(0, MIN_LISTED);
  let replicas = INITIAL_REPLICAS;
  /** Each backend's ring weight; 1 unless a reweight event changed it. */
  const weights = new Map<string, number>();
  const weightOf = (m: MemcachedProcess): number => weights.get(m.address) ?? 1;
  let run: ConfiguredRun | null = null;
  try {
    run = await startConfigured(listed.map((m) => ({ address: m.address })), replicas, 0);
    const proxy = run.proxy;
    const dir = run.dir;
    const models = new Map<string, KeyModel>();
    const owned = o.workers.map((_, w) => Array.from({ length: o.keysPerWorker }, (_, i) => `rc-${o.seed}-${w}-${i}`));
    for (const k of owned.flat()) models.set(k, { state: 'absent' });

    // ---- events ----------------------------------------------------------
    const count = (kind: string, detail = ''): void => {
      report.events[kind] = (report.events[kind] ?? 0) + 1;
      report.timeline.push(`${Date.now() - t0} ms: ${kind} ${detail}`);
    };
    /** Where the proxy's output stood when the config file was last written (null: not yet). */
    let writtenAt: number | null = null;
    /** Writes the config; the watcher reloads it, and with `signal` a SIGHUP does at once too. */
    const writeConfig = (signal: boolean): void => {
      writtenAt = proxy.output().length;
      dir.write(configYaml(listed.map((m) => ({ address: m.address, weight: weightOf(m) })), replicas));
      if (signal) proxy.child.kill('SIGHUP');
    };
    /**
     * The last config written is applied (a reload logged after the write: a reweight alone
     * changes no stats line, so the stats cannot tell it), every listed backend is up and no
     * resync or fill runs.
     */
    const settled = async (): Promise<unknown> => {
      const from = writtenAt;
      if (from !== null) await waitFor('the last config written to be reloaded', () => proxy.output().slice(from).includes('"msg":"config reloaded"'), 60_000);
      return waitForStats(
        proxy.port,
        (s) =>
          s.get('replicached_resyncs_in_progress') === '0' &&
          s.get('replicached_replicas') === String(replicas) &&
          s.get('replicached_backends') === String(listed.length) &&
          s.get('replicached_backends_up') === String(listed.length) &&
          listed.every((m, i) => s.get(`replicached_backend_${i}`) === `${m.address} up`),
        90_000,
      );
    };
    /** SIGKILL, a pause, a restart, and the proxy's resync of it under way (it refills the backend). */
    const fault = async (victim: MemcachedProcess): Promise<void> => {
      victim.kill('SIGKILL');
      await victim.exited();
      await sleep(100 + rng() * 1200);
      const from = proxy.output().length;
      await victim.restart();
      const started = new RegExp(`"backend":"${victim.address}","cause":"(?!membership|shed)[a-z]+","msg":"resync started"`);
      const deadline = Date.now() + 60_000;
      while (!started.test(proxy.output().slice(from))) {
        if (Date.now() > deadline) throw new Error(`no resync of ${victim.address} after its restart`);
        await sleep(50);
      }
    };
    let faulting: Promise<void> | null = null;
    let eventsDone = false;
    const events = (async () => {
      for (let e = 0; e < o.events; e++) {
        await sleep(100 + rng() * 700);
        const spare = pool.filter((m) => !listed.includes(m));
        const kinds: string[] = ['noop', 'kill', 'replicas', 'reweight'];
        if (spare.length > 0) kinds.push('add', 'add');
        if (listed.length > MIN_LISTED && listed.length > replicas) kinds.push('remove', 'remove');
        const kind = pick(rng, kinds);
        // How a config change reaches the proxy: the file watcher alone, or an edit plus SIGHUP together.
        const signal = rng() < 0.6;
        if (kind === 'kill' || kind === 'remove' || kind === 'add' || kind === 'reweight') {
          // One copy lost at a time: the previous kill's resync (or a removal's fills) must be over.
          await faulting;
          await settled();
        }
        switch (kind) {
          case 'noop':
            count('noop SIGHUP');
            proxy.child.kill('SIGHUP');
            break;
          case 'kill':
            {
              const victim = pick(rng, listed);
              count('kill and restart', victim.address);
              faulting = fault(victim);
            }
            break;
          case 'replicas':
            replicas = replicas === 2 && listed.length >= 3 ? 3 : 2;
            count(`replicas ${replicas}${signal ? ' +SIGHUP' : ''}`);
            writeConfig(signal);
            break;
          case 'reweight': {
            // ketama's shares are relative: every backend's keys move, some to members that never held them.
            const changed = pick(rng, listed);
            weights.set(changed.address, pick(rng, [1, 2, 3, 5].filter((w) => w !== weightOf(changed))));
            count(`reweight ${weightOf(changed)}${signal ? ' +SIGHUP' : ''}`, changed.address);
            writeConfig(signal);
            break;
          }
          case 'add': {
            const added = pick(rng, spare);
            // At a random place in the list: the ring does not depend on the order, the stats lines do.
            const at = Math.floor(rng() * (listed.length + 1));
            listed = [...listed.slice(0, at), added, ...listed.slice(at)];
            count(`add${signal ? ' +SIGHUP' : ''}`, added.address);
            writeConfig(signal);
            break;
          }
          case 'remove': {
            const removed = pick(rng, listed);
            listed = listed.filter((m) => m !== removed);
            if (replicas > listed.length) replicas = listed.length;
            count(`remove${signal ? ' +SIGHUP' : ''}`, removed.address);
            writeConfig(signal);
            break;
          }
        }
      }
      await faulting;
      eventsDone = true;
    })();

    // ---- workers ---------------------------------------------------------
    const worker = async (w: number): Promise<void> => {
      const protocol = o.workers[w];
      const wrng = seeded(o.seed * 1000 + w);
      let client: BatchClient = await connect(protocol, proxy.port);
      for (let b = 0; !eventsDone || b < 3; b++) {
        const ops: Op[] = Array.from({ length: o.opsPerBatch }, () => randomOp(wrng, pick(wrng, owned[w]), protocol));
        const results = await client.run(ops);
        report.ops += ops.length;
        ops.forEach((op, i) => apply(op, results[i], protocol));
        if (results.some((r) => r.kind === 'unknown')) {
          client.close();
          client = await connect(protocol, proxy.port);
        }
      }
      client.close();
    };
    const apply = (op: Op, got: Result, protocol: Protocol): void => {
      const before = models.get(op.key)!;
      const where = `${protocol} ${op.kind}${op.quiet ? ' (quiet)' : ''} ${op.key}`;
      if (op.kind === 'add') report.adds++;
      // A lost answer, or a text noreply (it answers nothing, failed or not): the state is not known.
      if (got.kind === 'unknown' || (got.kind === 'silent' && protocol === 'text')) {
        models.set(op.key, { state: 'unknown' });
        return;
      }
      const ok = got.kind === 'stored' || got.kind === 'deleted' || got.kind === 'silent';
      switch (op.kind) {
        case 'set':
          if (!ok) fail(`${where}: answered ${got.kind}`);
          models.set(op.key, ok ? { state: 'present', value: op.value, flags: op.flags } : { state: 'unknown' });
          return;
        case 'delete':
          if (got.kind === 'not_found' && before.state === 'present') fail(`${where}: NOT_FOUND for a key the model holds (lost)`);
          models.set(op.key, ok || got.kind === 'not_found' ? { state: 'absent' } : { state: 'unknown' });
          return;
        case 'add':
          if (ok) {
            if (before.state === 'present') fail(`${where}: STORED over a key the model holds (a lock handed out twice)`);
            models.set(op.key, { state: 'present', value: op.value, flags: op.flags });
          } else if (got.kind === 'refused') {
            if (before.state === 'absent') fail(`${where}: refused for a key the model has deleted (it came back)`);
            if (before.state !== 'present') models.set(op.key, { state: 'unknown' });
          } else {
            fail(`${where}: answered ${got.kind}`);
            models.set(op.key, { state: 'unknown' });
          }
          return;
        default:
          throw new Error(`unexpected op ${op.kind}`);
      }
    };
    await Promise.all([events, ...o.workers.map((_, w) => worker(w))]);

    // ---- the end state, read from the backends -----------------------------
    // One more SIGHUP: the last edit applies even if the watcher has not seen it yet.
    writeConfig(true);
    await settled();
    const addresses = listed.map((m) => m.address);
    const keys = [...models.keys()];
    const held = await Promise.all(listed.map(async (m) => ({ m, listedKeys: await listKeys(m.port), items: await itemsOn(m.port, keys) })));
    for (const { m, listedKeys, items } of held) {
      // A crawl is no snapshot (an item the LRU maintainer moves meanwhile can be skipped), so mg
      // is the record of each key; what the dump lists must be there, and nothing else may be.
      for (const k of listedKeys) {
        if (k.startsWith('replicached:')) continue; // the proxy's own (a refill's mark)
        if (!models.has(k)) fail(`${k} on ${m.address}: a key no client wrote`);
        else if (items.get(k) === null) fail(`${k} on ${m.address}: listed by metadump, missed by mg`);
      }
    }
    const on = (address: string, key: string): HeldItem | null => held.find((h) => h.m.address === address)!.items.get(key)!;
    for (const [key, model] of models) {
      const members = ringOrder(addresses, key, listed.map(weightOf)).slice(0, replicas);
      const others = addresses.filter((a) => !members.includes(a));
      const show = (a: string): string => `${a}=${JSON.stringify(on(a, key))}`;
      if (model.state === 'present') {
        report.live++;
        for (const a of members) {
          const item = on(a, key);
          if (item === null || item.value !== model.value || item.flags !== model.flags) {
            fail(`live ${key}: member ${show(a)}, model ${JSON.stringify({ value: model.value, flags: model.flags })}`);
          }
        }
        report.strays += others.filter((a) => on(a, key) !== null).length;
      } else if (model.state === 'absent') {
        report.deleted++;
        const holders = addresses.filter((a) => on(a, key) !== null);
        if (holders.length > 0) fail(`deleted ${key} still on ${holders.map(show).join(', ')} (members ${members.join(', ')})`);
      } else {
        report.unknown++;
        const first = on(members[0], key);
        for (const a of members.slice(1)) {
          const item = on(a, key);
          const same = first === null || item === null ? first === item : first.value === item.value && first.flags === item.flags;
          if (!same) fail(`unknown ${key}: members differ: ${members.map(show).join(', ')}`);
        }
      }
    }
    if (report.failures.length > 0) {
      const log = path.join(tmpdir(), `replicached-reconfigure-${o.seed}.log`);
      writeFileSync(log, proxy.output());
      report.timeline.push(`replicached's log: ${log}`);
    }
    return report;
  } finally {
    await run?.stop();
    await Promise.all(pool.map((m) => m.stop()));
  }
}

function randomOp(rng: Rng, key: string, protocol: Protocol): Op {
  const r = rng();
  const kind = r < 0.4 ? 'set' : r < 0.65 ? 'delete' : 'add';
  // Text noreply only on set and delete (its outcome is then unknown to the model); binary quiet on all three.
  const quiet = (protocol === 'binary' || kind !== 'add') && rng() < 0.2;
  return {
    kind,
    key,
    value: `v${Math.floor(rng() * 1e6)}`.repeat(1 + Math.floor(rng() * 4)),
    flags: Math.floor(rng() * 4) * 1000,
    exptime: 0,
    delta: 0n,
    cas: 0n,
    quiet,
  };
}
