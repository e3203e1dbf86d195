// One simulated cluster, all of it driven by one seed: N web nodes, each with a
// sidecar (sidecar.ts) and PHP workers (workload.ts), M memcached (memcached.ts),
// a path per (node, backend) (network.ts), a fault schedule (faults.ts), and the
// checker (checker.ts) told of every client operation as it completes.
//
// The run goes in cycles:
//
//   chaos   faults start and end at random, the workers keep going
//   heal    every fault ends at once
//   calm    a while with no faults (CALM_MS), the workers keep going
//   quiet   the workers stop starting requests; once nothing is in flight anywhere,
//           every sidecar trusts every backend again and every live sidecar has taken
//           each dead one for silent (its sweep ran): the members of every key are
//           compared (diverged), the checker settles what was never
//           acknowledged, and the next cycle begins. Not there TRUST_WAIT_MS after
//           the faults stopped: stuck (it still waits for quiet, then goes on with
//           the backends every sidecar trusts)
//
// It stops after `steps` scheduler events, or when stopWhen says so (by default
// at the first violation). A violation carries the trace of the events before
// it; the same options give the same run, event for event (traceHash).

import { DEFAULT_BACKEND_OPTIONS } from '../../src/backends/backend';
import { ReplicaRing } from '../../src/routing/ring';
import { QUICK_ROUNDS } from '../../src/trust/agent';
import { ROSTER_PRUNE_AFTER_MS } from '../../src/trust/reserved-keys';
import { Checker, type Violation, type ViolationKind } from './checker';
import { Scheduler } from './clock';
import { DEFAULT_FAULTS, Faults, type FaultOptions } from './faults';
import { Host } from './host';
import { SimMemcached } from './memcached';
import type { Protocol } from './sidecar';
import { Rng } from './random';
import { Trace } from './trace';
import { Workload, type WorkloadOptions } from './workload';

export interface SimOptions {
  seed: number;
  /** Web nodes, each with a sidecar: 2 to 10. */
  sidecars: number;
  /** memcached backends: 3 to 5. */
  backends: number;
  replicas?: number;
  /** Backends spread over this many zones (backend b in zone b mod zones); 0 or none: no zones. */
  zones?: number;
  /** What the sidecars agree with (sidecar.ts); the trust protocol by default. */
  protocol?: Protocol;
  /** Scheduler events to run. */
  steps: number;
  /** The sidecars' backend request timeout; the product's default by default. */
  requestTimeoutMs?: number;
  /** The trust agents' rounds just after an acknowledgement (AgentOptions.quickRounds); the product's default by default. */
  quickRounds?: number;
  /** AgentOptions.rosterPruneMs; the product's default (longer than any run) by default. */
  rosterPruneMs?: number;
  faults?: Partial<FaultOptions>;
  workload?: Partial<WorkloadOptions>;
  /** Stop early once this holds; by default at the first violation. */
  stopWhen?: (counts: ReadonlyMap<ViolationKind, number>) => boolean;
  /** Where the first violation's report (report()) is printed. */
  log?: (text: string) => void;
}

export interface SimResult {
  options: SimOptions;
  steps: number;
  virtualMs: number;
  ops: number;
  /** Quiet moments reached (each one a convergence check). */
  quietChecks: number;
  /** The first few of each kind, with their traces. */
  violations: Violation[];
  counts: Partial<Record<ViolationKind, number>>;
  /** Over every event: equal for two runs of the same options. */
  traceHash: number;
  events: number;
}

const CALM_MS = 2000;
const QUIET_POLL_MS = 100;
const TRUST_WAIT_MS = 30_000;
/** An item this close to its expiry may be gone from one member and not yet from another. */
const EXPIRY_MARGIN_MS = 2000;

export async function simulate(options: SimOptions): Promise<SimResult> {
  const { seed, sidecars, backends: backendCount, replicas = 2, protocol = 'trust', steps } = options;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_BACKEND_OPTIONS.requestTimeoutMs;
  const quickRounds = options.quickRounds ?? QUICK_ROUNDS;
  const rosterPruneMs = options.rosterPruneMs ?? ROSTER_PRUNE_AFTER_MS;
  const faultOptions: FaultOptions = { ...DEFAULT_FAULTS, ...options.faults };
  const workloadOptions: WorkloadOptions = { clientsPerHost: 3, sessions: 2 * sidecars + 2, plainKeys: 16, ...options.workload };
  const stopWhen = options.stopWhen ?? ((counts) => counts.size > 0);

  const rng = new Rng(seed);
  const scheduler = new Scheduler();
  const trace = new Trace(() => scheduler.now, Number(process.env.SIM_TRACE_KEEP ?? 200));
  const checker = new Checker(() => scheduler.now, () => scheduler.steps, () => trace.lines());
  let pids = 1000;
  const backends = Array.from({ length: backendCount }, (_, b) => new SimMemcached(`10.0.0.${b + 1}:11211`, scheduler, () => pids++));
  const zones = options.zones ? backends.map((_, b) => `z${b % options.zones!}`) : undefined;
  const hosts = Array.from({ length: sidecars }, (_, i) => new Host(i, { scheduler, rng, trace, backends, replicas, zones, protocol, requestTimeoutMs, quickRounds, rosterPruneMs }));
  for (const host of hosts) host.arrive();
  // Placement depends on the addresses and zones alone: any sidecar's paths give every sidecar's ring.
  const ring = new ReplicaRing(hosts[0].paths.map((node, b) => ({ node, weight: 1, zone: zones?.[b] })), replicas);
  const byAddress = new Map(backends.map((mc) => [mc.address, mc]));
  const workload = new Workload(scheduler, rng.stream('workload'), checker, hosts, workloadOptions);
  for (const mc of backends) {
    mc.onLoss = (items) => {
      for (const [key, value] of items) {
        if (!backends.some((other) => other !== mc && other.peek(key)?.value === value)) checker.copiesLost(key, value);
      }
      for (const key of checker.keyNames()) {
        if (!items.has(key) && backends.some((other) => other !== mc && other.peek(key) !== undefined)) checker.absenceLost(key);
      }
    };
  }
  const trusted = (address: string): boolean => hosts.every((h) => h.sidecar === null || h.sidecar.trusts(address));
  const faults = new Faults(
    { scheduler, trace, backends, hosts, requestTimeoutMs, trusted: (b) => trusted(backends[b].address) },
    rng.stream('faults'),
    faultOptions,
    replicas,
  );
  const phases = rng.stream('phases');
  let quietChecks = 0;
  const quiet = (): boolean =>
    workload.busy === 0 && hosts.every((h) => (h.sidecar === null || h.sidecar.idle()) && h.links.every((l) => l.inFlight === 0));

  /** Every key's natural members that every sidecar trusts hold the same. */
  const compareMembers = (): void => {
    for (const key of checker.keyNames()) {
      const members = ring.naturalSet(Buffer.from(key)).filter((node) => trusted(node.address));
      const held = members.map((node) => byAddress.get(node.address)!.peek(key));
      if (held.some((item) => item !== undefined && item.expiresAt - scheduler.now < EXPIRY_MARGIN_MS)) continue;
      const values = held.map((item) => item?.value ?? '(none)');
      if (values.some((v) => v !== values[0])) checker.diverged(key, members.map((node, i) => `${node.address}=${values[i]}`).join(' '));
    }
  };

  /**
   * Every live sidecar has taken every sidecar that died for silent (or never knew it): the lowest
   * live one has then started its sweep (docs/trust.md, Sweep), and quiet() waits for the run.
   * Before then a dead sidecar's writes may still be half landed, and members are not compared.
   */
  const swept = (): boolean => {
    const dead = hosts.flatMap((h) => h.deadIds);
    return hosts.every((h) => h.sidecar === null || dead.every((id) => !h.sidecar!.awaitsSilenceOf(id)));
  };

  /** What keeps the cluster from its quiet moment: untrusted backends, work in flight. */
  const stuckness = (): string => {
    const untrusted = backends.flatMap((mc, b) =>
      hosts.flatMap((h) => (h.sidecar === null || h.sidecar.trusts(mc.address) ? [] : [`b${b} not trusted by ${h.sidecarId}`])),
    );
    const busy = hosts.flatMap((h) => (h.sidecar !== null && !h.sidecar.idle() ? [`${h.sidecarId} busy`] : []));
    const inFlight = hosts.reduce((n, h) => n + h.links.reduce((m, l) => m + l.inFlight, 0), 0);
    return [...untrusted, ...busy, `${workload.busy} client requests and ${inFlight} messages in flight`].join(', ');
  };

  const cycle = (): void => {
    const chaosMs = phases.between(faultOptions.chaosMs[0], faultOptions.chaosMs[1]);
    faults.chaos(chaosMs);
    scheduler.after(chaosMs, () => {
      faults.healAll();
      scheduler.after(CALM_MS, () => {
        workload.pause();
        awaitQuiet(scheduler.now);
      });
    });
  };

  const awaitQuiet = (since: number, flagged = false): void => {
    const allTrusted = backends.every((mc) => trusted(mc.address));
    const late = scheduler.now - since >= TRUST_WAIT_MS;
    if (late && !flagged && (!allTrusted || !quiet())) {
      checker.stuck(`${TRUST_WAIT_MS / 1000} s after the faults stopped: ${stuckness()}`);
      flagged = true;
    }
    if (!quiet() || ((!allTrusted || !swept()) && !late)) {
      scheduler.after(QUIET_POLL_MS, () => awaitQuiet(since, flagged));
      return;
    }
    quietChecks++;
    trace.record('checker', '', 'quiet', '', allTrusted ? 'all trusted' : 'not all trusted');
    backends.forEach((mc, b) => trusted(mc.address) && faults.refilled(b));
    if (swept()) compareMembers();
    checker.settle();
    workload.resume();
    cycle();
  };

  workload.start();
  cycle();
  await scheduler.run(() => scheduler.steps >= steps || stopWhen(checker.counts));
  const result: SimResult = {
    options: { ...options, requestTimeoutMs, quickRounds, rosterPruneMs },
    steps: scheduler.steps,
    virtualMs: scheduler.now,
    ops: checker.ops,
    quietChecks,
    violations: checker.violations,
    counts: Object.fromEntries(checker.counts),
    traceHash: trace.hash,
    events: trace.count,
  };
  const first = checker.violations[0];
  if (first !== undefined) options.log?.(report(result, first));
  return result;
}

/** A violation as a human reads it: what, when, how to replay, and the events before it. */
export function report(result: SimResult, violation: Violation): string {
  const { stopWhen: _, log: __, ...replay } = result.options;
  return [
    `seed ${result.options.seed}: ${violation.kind} at ${(violation.at / 1000).toFixed(4)}s, step ${violation.step}`,
    `  ${violation.message}`,
    `  replay: simulate(${JSON.stringify(replay)})`,
    `  the last ${violation.trace.length} events (time, sidecar, backend, op, key, result):`,
    ...violation.trace.map((line) => `    ${line}`),
  ].join('\n');
}

/** A seed's cluster shape, drawn from the seed: 2 to 10 sidecars, 3 to 5 backends. */
export function shapeOf(seed: number): Pick<SimOptions, 'sidecars' | 'backends'> {
  const rng = new Rng(seed, 'shape');
  return { sidecars: rng.int(2, 10), backends: rng.int(3, 5) };
}
