// Issue 19, case 9: ten sidecars (dist/cli.js processes, as on ten PHP web nodes) over
// three real memcached, two replicas, while one backend is SIGKILLed and restarted empty
// 10 s later (and, second, SIGSTOPped and resumed). Through every sidecar at once:
//
//   counters   `incr` on counters every sidecar shares; each acknowledged reply counted
//   sessions   `set` (login, rewrite) and `delete` (logout) on keys one worker owns; a
//              logout is read back at once through another sidecar
//   locks      what a PHP session handler does: `add` a lock every sidecar contends for,
//              read the session it guards, write it plus one, `delete` the lock
//
// Checked as it runs: no two acknowledged increments of a counter return the same value;
// no lock granted while the test knows another worker holds it; a session read under its
// lock holds every acknowledged increment; no read serves a deleted session or misses an
// acknowledged write. Once every sidecar trusts the backend again (their
// replicached_trust_changes_total), with no resync left: each counter holds its acknowledged
// increments (more are reported, not failed: see Run.overcounted), every sidecar reads each session
// as last acknowledged, and each key's two natural members, read directly, hold the same.
//
// REPLICACHED_SIDECARS=<n> runs it with n sidecars instead of ten (the issue: 0 failures with 1
// or 2); REPLICACHED_OUTAGE_MS the kill's length (default 10 s, as in the issue).

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import { startProxy, waitForStats, type ProxyProcess } from '../helpers/proxy';
import { LOADED_MACHINE_ARGS } from '../helpers/timing';
import { pollUntil } from '../helpers/wait';
import { metricValue, scrape } from '../ops/support';
import { RawClient, itemOn, ringOrder, seeded } from '../replication/support';

const SIDECARS = Number(process.env.REPLICACHED_SIDECARS ?? 10);
const OUTAGE_MS = Number(process.env.REPLICACHED_OUTAGE_MS ?? 10_000);
/** How long a SIGSTOPped backend stays hung: past the request timeout, and past a hold (1 s). */
const HANG_MS = 3000;
const COUNTERS = 8;
const LOCKS = 4;
const SESSIONS_PER_WORKER = 4;
/** A lock's expiry (s): a grant whose answer was lost frees it again after this. */
const LOCK_TTL_S = 5;
/** Steps of a lock kept for a failure's message. */
const LOCK_HISTORY = 24;
/** Lines of the sidecars' merged logs printed with failures. */
const LOG_TAIL = 150;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A lock added at `since` may have expired by now: memcached counts whole seconds, so an item
 * stored with a TTL of LOCK_TTL_S can be gone a second early. A holder slower than that (a
 * loaded machine) loses its lock as it would against one memcached.
 */
const mayHaveExpired = (since: number): boolean => performance.now() - since >= (LOCK_TTL_S - 1) * 1000;

/** One connection to a sidecar, one request at a time; reconnects after the sidecar closed it. */
class Conn {
  private client: RawClient | null = null;
  /** The slowest request (ms) since the last `slowest()`. */
  private slow = 0;

  constructor(private readonly port: number) {}

  /**
   * The reply (every line up to the terminator), or null when the sidecar closed the connection:
   * it could not answer (a hold in vain, no trusted natural member), and the outcome is unknown.
   */
  async ask(request: string): Promise<string | null> {
    const started = Date.now();
    try {
      this.client ??= await RawClient.connect(this.port);
      return await this.client.text(request, 1);
    } catch (err) {
      if (this.client?.closed !== true) throw err;
      this.client = null;
      return null;
    } finally {
      this.slow = Math.max(this.slow, Date.now() - started);
    }
  }

  slowest(): number {
    const s = this.slow;
    this.slow = 0;
    return s;
  }

  close(): void {
    this.client?.close();
  }
}

/** A get's value, null on a miss, 'unknown' when the sidecar closed the connection. */
function valueOf(reply: string | null): string | null | 'unknown' {
  if (reply === null) return 'unknown';
  if (reply === 'END\r\n') return null;
  const m = /^VALUE \S+ \d+ \d+\r\n([\s\S]*)\r\nEND\r\n$/.exec(reply);
  if (!m) throw new Error(`unexpected get reply ${JSON.stringify(reply)}`);
  return m[1];
}

const setCmd = (key: string, value: string, mode = 'set', exptime = 0): string => `${mode} ${key} 0 ${exptime} ${value.length}\r\n${value}\r\n`;

interface Run {
  failures: string[];
  /** Per counter: acknowledged increments, increments whose answer was lost, the values acknowledged. */
  counters: Array<{ acked: number; unknown: number; values: Set<number> }>;
  /** Per session key: what it may hold (null: absent); one entry unless a write's answer was lost. */
  sessions: Map<string, Set<string | null>>;
  /** Per lock: increments of its session acknowledged under it, and writes whose answer was lost. */
  /**
   * Per lock: the increments written under it; who holds it since when (performance.now() before
   * its add was sent); loose: a holder released it after it may have expired, which may have
   * deleted the next holder's lock (a plain delete, as PHP's), and each such release another:
   * from then on its exclusivity is not checked (the summary counts such locks).
   */
  locked: Array<{ acked: number; unknown: number; holder: string | null; since: number; loose: boolean; history: string[] }>;
  ops: number;
  unknown: number;
  /**
   * Counts beyond the acknowledged and the unknown increments: reported, not failed. An incr whose
   * authority failed between counting and being read is counted again on the next member (see
   * ReplicatedRouter.arith), and another sidecar may have copied the first count there already.
   */
  overcounted: number;
  grants: number;
  logouts: number;
}

describe(`${SIDECARS} sidecars over three memcached while one backend fails`, () => {
  let backends: MemcachedProcess[];
  let addresses: string[];
  let sidecars: ProxyProcess[];

  beforeAll(async () => {
    backends = await Promise.all([0, 1, 2].map(() => startMemcached()));
    addresses = backends.map((b) => b.address);
    // LOADED_MACHINE_ARGS: ten sidecars, three memcached and the test share 2 cores; a healthy
    // memcached starved of CPU for 500 ms is not taken for a second failure.
    // At info, each sidecar logs every trust change it applies and every resync: printed with failures.
    const start = (): Promise<ProxyProcess> => startProxy({ backends: addresses, replicas: 2, metrics: true, logLevel: 'info', args: [...LOADED_MACHINE_ARGS] });
    // One first: it writes the incarnation keys a new cluster starts with, which the others find.
    sidecars = [await start()];
    sidecars.push(...(await Promise.all(Array.from({ length: SIDECARS - 1 }, start))));
  }, 60_000);
  afterAll(async () => {
    for (const b of backends ?? []) b.resume();
    await Promise.all((sidecars ?? []).map((s) => s.stop()));
    await Promise.all((backends ?? []).map((b) => b.stop()));
  });

  /** Applied stages of `address` on one sidecar, by role (replicached_trust_changes_total). */
  async function changes(s: ProxyProcess, address: string): Promise<{ out: number; refill: number; trusted: number }> {
    const text = await scrape(s.metricsPort!);
    const n = (role: string): number => metricValue(text, 'replicached_trust_changes_total', { backend: address, role }) ?? 0;
    return { out: n('out'), refill: n('refill'), trusted: n('trusted') };
  }

  /** Every sidecar routes by `address` trusted (every out was followed by its trust again), more than `since` times out. */
  async function trustedEverywhere(address: string, since: number[] = []): Promise<void> {
    await pollUntil(
      async () => {
        const all = await Promise.all(sidecars.map((s) => changes(s, address)));
        return all.every((c, i) => c.out === c.trusted && c.out > (since[i] ?? -1));
      },
      45_000,
      100,
      `not every sidecar trusts ${address} again`,
    );
  }

  /** No sidecar has a resync running (the stand-ins' copies shed, the fills done). */
  async function settled(): Promise<void> {
    for (const s of sidecars) await waitForStats(s.port, (st) => st.get('replicached_resyncs_in_progress') === '0', 45_000);
  }

  /**
   * The workload through every sidecar until `stop()`; `phase()` names the fault's phase a
   * failure or a slow request happened in.
   */
  async function workload(tag: string, stop: () => boolean, phase: () => string, slowest: Map<string, number>): Promise<Run> {
    const t0 = performance.now();
    const run: Run = {
      failures: [],
      counters: Array.from({ length: COUNTERS }, () => ({ acked: 0, unknown: 0, values: new Set<number>() })),
      sessions: new Map(),
      locked: Array.from({ length: LOCKS }, () => ({ acked: 0, unknown: 0, holder: null, since: 0, loose: false, history: [] })),
      ops: 0,
      unknown: 0,
      overcounted: 0,
      grants: 0,
      logouts: 0,
    };
    const fail = (msg: string): void => {
      if (run.failures.length < 40) run.failures.push(`[${phase()}] ${msg}`);
    };
    const conns: Conn[] = [];
    const conn = (s: ProxyProcess): Conn => {
      const c = new Conn(s.port);
      conns.push(c);
      return c;
    };
    const ask = async (c: Conn, request: string): Promise<string | null> => {
      const p = phase();
      const reply = await c.ask(request);
      run.ops++;
      if (reply === null) run.unknown++;
      slowest.set(p, Math.max(slowest.get(p) ?? 0, c.slowest()));
      return reply;
    };
    const counter = (i: number) => `${tag}-counter-${i}`;
    const lock = (i: number) => `${tag}-lock-${i}`;
    const guarded = (i: number) => `${tag}-locked-session-${i}`;

    const setup = conn(sidecars[0]);
    for (let i = 0; i < COUNTERS; i++) expect(await ask(setup, setCmd(counter(i), '0'))).toBe('STORED\r\n');
    for (let i = 0; i < LOCKS; i++) expect(await ask(setup, setCmd(guarded(i), '0'))).toBe('STORED\r\n');

    const counting = async (w: number): Promise<void> => {
      const rng = seeded(w * 31 + 1);
      const c = conn(sidecars[w]);
      while (!stop()) {
        const i = Math.floor(rng() * COUNTERS);
        const reply = await ask(c, `incr ${counter(i)} 1\r\n`);
        const st = run.counters[i];
        if (reply === null) st.unknown++;
        else if (!/^\d+\r\n$/.test(reply)) fail(`incr ${counter(i)} through sidecar ${w}: ${JSON.stringify(reply)}`);
        else {
          const v = Number(reply);
          if (st.values.has(v)) fail(`incr ${counter(i)} through sidecar ${w} answered ${v} a second time: an acknowledged increment was lost`);
          st.values.add(v);
          st.acked++;
        }
      }
    };

    const sessions = async (w: number): Promise<void> => {
      const rng = seeded(w * 31 + 2);
      const c = conn(sidecars[w]);
      const other = conn(sidecars[(w + 1 + Math.floor(rng() * (SIDECARS - 1))) % SIDECARS]);
      const keys = Array.from({ length: SESSIONS_PER_WORKER }, (_, i) => `${tag}-session-${w}-${i}`);
      for (const key of keys) run.sessions.set(key, new Set([null]));
      for (let n = 0; !stop(); n++) {
        const key = keys[Math.floor(rng() * keys.length)];
        const may = run.sessions.get(key)!;
        const r = rng();
        if (r < 0.6) {
          const value = `w${w}-${n}`;
          const reply = await ask(c, setCmd(key, value));
          if (reply === null) may.add(value);
          else if (reply === 'STORED\r\n') run.sessions.set(key, new Set([value]));
          else fail(`set ${key} through sidecar ${w}: ${JSON.stringify(reply)}`);
        } else if (r < 0.8) {
          // A logout, then the next page of that user, through another web node.
          const reply = await ask(c, `delete ${key}\r\n`);
          if (reply === null) {
            may.add(null);
            continue;
          }
          if (reply !== 'DELETED\r\n' && reply !== 'NOT_FOUND\r\n') fail(`delete ${key} through sidecar ${w}: ${JSON.stringify(reply)}`);
          if (reply === 'NOT_FOUND\r\n' && !may.has(null)) fail(`delete ${key} through sidecar ${w}: NOT_FOUND, but it held ${[...may].join(' or ')}`);
          run.sessions.set(key, new Set([null]));
          run.logouts++;
          const after = valueOf(await ask(other, `get ${key}\r\n`));
          if (after !== null && after !== 'unknown') fail(`deleted session ${key} served through another sidecar: ${after}`);
        } else {
          const got = valueOf(await ask(c, `get ${key}\r\n`));
          if (got !== 'unknown' && !may.has(got)) fail(`get ${key} through sidecar ${w}: ${JSON.stringify(got)}, acknowledged ${[...may].map((v) => JSON.stringify(v)).join(' or ')}`);
        }
      }
    };

    const locking = async (w: number): Promise<void> => {
      const rng = seeded(w * 31 + 3);
      const c = conn(sidecars[w]);
      const me = `sidecar-${w}`;
      while (!stop()) {
        const i = Math.floor(rng() * LOCKS);
        const l = run.locked[i];
        // What this lock went through lately, for a failure's message: a double grant seen once in
        // CI could not be reproduced, and the sidecars' logs alone do not say who asked what when.
        const step = async (request: string, what: string): Promise<string | null> => {
          const asked = performance.now();
          const reply = await ask(c, request);
          const answer = reply === null ? 'closed' : reply.trim().replaceAll('\r\n', ' | ');
          l.history.push(`${(asked - t0).toFixed(0)}+${(performance.now() - asked).toFixed(0)} ms ${me} ${what}: ${answer}`);
          if (l.history.length > LOCK_HISTORY) l.history.shift();
          return reply;
        };
        const failLock = (msg: string): void => fail(`${msg}; ${lock(i)} lately (ms since the workload began + duration, in completion order):\n    ${l.history.join('\n    ')}`);
        const asked = performance.now();
        const granted = await step(setCmd(lock(i), me, 'add', LOCK_TTL_S), 'add');
        if (granted !== 'STORED\r\n') {
          if (granted !== null && granted !== 'NOT_STORED\r\n') failLock(`add ${lock(i)} through sidecar ${w}: ${JSON.stringify(granted)}`);
          await sleep(2 + rng() * 8);
          continue;
        }
        if (l.holder !== null && !mayHaveExpired(l.since) && !l.loose) failLock(`${lock(i)} granted to ${me} while ${l.holder} holds it`);
        l.holder = me;
        l.since = asked;
        run.grants++;
        const read = valueOf(await step(`get ${guarded(i)}\r\n`, 'get session'));
        if (read === null || (read !== 'unknown' && (Number(read) < l.acked || Number(read) > l.acked + l.unknown))) {
          failLock(`${guarded(i)} read under its lock through sidecar ${w}: ${read}, ${l.acked} increments acknowledged (${l.unknown} unknown)`);
        }
        if (read !== null && read !== 'unknown') {
          const wrote = await step(setCmd(guarded(i), String(Number(read) + 1)), `set session ${Number(read) + 1}`);
          if (wrote === 'STORED\r\n') l.acked = Number(read) + 1;
          else if (wrote === null) l.unknown++;
          else failLock(`set ${guarded(i)} under its lock through sidecar ${w}: ${JSON.stringify(wrote)}`);
        }
        if (l.holder === me) l.holder = null;
        const released = await step(`delete ${lock(i)}\r\n`, 'delete');
        const late = mayHaveExpired(asked);
        if (released !== null && released !== 'DELETED\r\n' && !late && !l.loose) failLock(`delete ${lock(i)} (held by ${me}) through sidecar ${w}: ${JSON.stringify(released)}`);
        if (late) l.loose = true;
      }
    };

    try {
      await Promise.all(sidecars.flatMap((_, w) => [counting(w), sessions(w), locking(w)]));
    } finally {
      for (const c of conns) c.close();
    }
    return run;
  }

  /** The checks once every sidecar trusts every backend again and no resync is left. */
  async function checkEnd(run: Run, tag: string): Promise<void> {
    await settled();
    const c = new Conn(sidecars[SIDECARS - 1].port);
    try {
      for (let i = 0; i < COUNTERS; i++) {
        const key = `${tag}-counter-${i}`;
        const { acked, unknown } = run.counters[i];
        const got = valueOf(await c.ask(`get ${key}\r\n`));
        if (got === null || got === 'unknown' || Number(got) < acked) {
          run.failures.push(`[end] ${key} holds ${got}: ${acked} increments acknowledged, ${unknown} unknown`);
        } else run.overcounted += Math.max(0, Number(got) - acked - unknown);
      }
      for (const [key, may] of run.sessions) {
        for (const [w, s] of sidecars.entries()) {
          const through = new Conn(s.port);
          const got = valueOf(await through.ask(`get ${key}\r\n`));
          through.close();
          if (got === 'unknown' || !may.has(got)) run.failures.push(`[end] ${key} through sidecar ${w}: ${JSON.stringify(got)}, acknowledged ${[...may].map((v) => JSON.stringify(v)).join(' or ')}`);
        }
      }
    } finally {
      c.close();
    }
    // Each key's natural members hold the same (the writes' follow-up steps are done: settled).
    const keys = [
      ...Array.from({ length: COUNTERS }, (_, i) => `${tag}-counter-${i}`),
      ...Array.from({ length: LOCKS }, (_, i) => `${tag}-locked-session-${i}`),
      ...Array.from({ length: LOCKS }, (_, i) => `${tag}-lock-${i}`),
      ...run.sessions.keys(),
    ];
    let apart = 0;
    for (const key of keys) {
      const members = ringOrder(addresses, key).slice(0, 2);
      const [x, y] = await Promise.all(members.map((a) => itemOn(backends[addresses.indexOf(a)].port, key)));
      if ((x?.value ?? null) !== (y?.value ?? null)) {
        apart++;
        run.failures.push(`[end] ${key}: members differ: ${members[0]} ${JSON.stringify(x?.value ?? null)}, ${members[1]} ${JSON.stringify(y?.value ?? null)}`);
      }
    }
    if (apart > 0) run.failures.push(`[end] ${apart} of ${keys.length} keys with members apart`);
  }

  /** Every sidecar's log lines since `since` (Date.now()), in time order, the last LOG_TAIL: for a failure's diagnosis. */
  function mergedLogs(since: number): string {
    const lines: Array<{ at: number; text: string }> = [];
    for (const [i, s] of sidecars.entries()) {
      for (const line of s.output().split('\n')) {
        if (!line.startsWith('{')) continue;
        const entry = JSON.parse(line) as Record<string, unknown>;
        const at = Date.parse(String(entry.time));
        if (!(at >= since)) continue;
        const { time: _time, level, name: _name, pid: _pid, hostname: _host, msg, ...rest } = entry;
        lines.push({ at, text: `+${at - since} ms sidecar-${i} ${String(level)} ${String(msg)} ${JSON.stringify(rest)}` });
      }
    }
    return lines.sort((a, b) => a.at - b.at).slice(-LOG_TAIL).map((l) => `  ${l.text}`).join('\n');
  }

  function summary(run: Run): string {
    const acked = run.counters.reduce((n, c) => n + c.acked, 0);
    const locked = run.locked.reduce((n, l) => n + l.acked, 0);
    return `${run.ops} requests (${run.unknown} unanswered), ${acked} increments (${run.overcounted} counted twice), ${run.grants} locks (${locked} session writes under them, ${run.locked.filter((l) => l.loose).length} of ${LOCKS} locks released late once), ${run.logouts} logouts`;
  }

  /**
   * The workload through every sidecar, with `fault` done to `victim` after a second of it; then,
   * once every sidecar trusts the victim again, a second more and the end checks. `fault` sets
   * the phase each request is counted in, and returns what to log of it once trust is back.
   */
  async function faultRun(
    tag: string,
    victim: MemcachedProcess,
    fault: (setPhase: (p: string) => void, before: Array<{ out: number }>) => Promise<() => string>,
  ): Promise<void> {
    for (const a of addresses) await trustedEverywhere(a);
    const before = await Promise.all(sidecars.map((s) => changes(s, victim.address)));
    let phase = 'before';
    let done = false;
    const slowest = new Map<string, number>();
    const working = workload(tag, () => done, () => phase, slowest);
    const t0 = Date.now();
    await sleep(1000);
    const measured = await fault((p) => (phase = p), before);
    await trustedEverywhere(victim.address, before.map((c) => c.out));
    const note = measured();
    phase = 'after';
    await sleep(1000);
    done = true;
    const run = await working;
    await checkEnd(run, tag);
    const slow = [...slowest].map(([p, ms]) => `${p} ${ms} ms`).join(', ');
    console.log(`${SIDECARS} sidecars, ${tag}: ${summary(run)} in ${Date.now() - t0} ms; ${note}slowest request: ${slow}; ${run.failures.length} failures`);
    if (run.failures.length > 0) console.log(`the sidecars' logs, merged (last ${LOG_TAIL} lines; ${victim.address} is the victim):\n${mergedLogs(t0)}`);
    expect(run.failures).toEqual([]);
  }

  test('a backend SIGKILLed and restarted empty: no acknowledged increment lost, no deleted session served, one lock holder, members equal', async () => {
    const victim = backends[1];
    await faultRun('kill', victim, async (setPhase, before) => {
      setPhase('down');
      victim.kill('SIGKILL');
      await victim.exited();
      const killedAt = Date.now();
      await pollUntil(
        async () => (await Promise.all(sidecars.map((s) => changes(s, victim.address)))).every((c, i) => c.out > before[i].out),
        20_000,
        50,
        'not every sidecar put the killed backend out',
      );
      const outAfter = Date.now() - killedAt;
      await sleep(Math.max(0, OUTAGE_MS - (Date.now() - killedAt)));
      setPhase('refill');
      await victim.restart();
      return () => `out everywhere ${outAfter} ms after the kill, trusted everywhere ${Date.now() - killedAt - OUTAGE_MS} ms after the restart; `;
    });
  }, 90_000);

  test('a backend SIGSTOPped past the request timeout and resumed: the same', async () => {
    const victim = backends[2];
    await faultRun('stop', victim, async (setPhase) => {
      setPhase('hung');
      await victim.pause();
      await sleep(HANG_MS);
      setPhase('refill');
      victim.resume();
      return () => '';
    });
  }, 60_000);
});
