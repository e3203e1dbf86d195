// Shared by the resync tests against real memcached: 3 backends, 2 replicas,
// real Backend objects, the ring, the router and the resyncer in-process.
//
//   const c = await startResyncCluster({ requestTimeoutMs: 1000 }, { quietMs: 0 });
//   afterEach(stopResyncCluster);
//
// Or, for one run with every role set by hand (no resyncer, no agent):
//
//   const c = await startHandRolesCluster(4);   // afterEach(stopHandRolesCluster)
//   c.ring.useRoles(...); await runOn(c, target, context);

import { Backend, type BackendOptions } from '../../src/backends/backend';
import { Resyncer, type ResyncCause, type ResyncEvents, type ResyncOptions } from '../../src/resync/resyncer';
import type { MemcachedNode } from '../../src/routing/node';
import { ResyncRun, type ResyncResult, type RunContext } from '../../src/resync/resync-run';
import { REAL_CLOCK, type Clock } from '../../src/resync/rate-limiter';
import { ReplicatedRouter } from '../../src/routing/replicated-router';
import { ReplicaRing } from '../../src/routing/ring';
import { TrustAgent, resyncTrust, routerHooks, type AgentOptions } from '../../src/trust/agent';
import { binaryCodec } from '../../src/backends/codec';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import type { SaslUser } from '../helpers/sasl';

export const k = (s: string) => Buffer.from(s);

export interface ResyncCluster {
  mcs: MemcachedProcess[];
  backends: Backend[];
  ring: ReplicaRing;
  router: ReplicatedRouter;
  resyncer: Resyncer;
  /** With `trust: 'agent'`, started; else null. */
  agent: TrustAgent | null;
  /** What the resyncer reported, in order; the sheds a complete run starts are kept apart, in `sheds`. */
  started: Array<{ backend: string; cause: ResyncCause }>;
  finished: ResyncResult[];
  sheds: ResyncResult[];
  stillResyncing: boolean[];
  /** Holds begun (ms), in order. */
  holds: number[];
  copiedEvents: number;
}

let current: ResyncCluster | null = null;

/**
 * Backends that probe every 30 ms and count as up after one probe (plus
 * `backendOptions`), a resyncer that polls identities only when asked (plus
 * `resyncOptions`), not started. One cluster per test: stopResyncCluster stops it.
 * With `sasl`: memcached -S, spoken to in the binary protocol as that user.
 */
export async function startResyncCluster(
  backendOptions: Partial<BackendOptions>,
  resyncOptions: Partial<ResyncOptions>,
  sasl?: SaslUser,
  trust: 'agent' | 'runs' = 'runs',
): Promise<ResyncCluster> {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached({ sasl })));
  const codec = sasl ? { codec: binaryCodec(sasl) } : {};
  const backends = mcs.map((m) => new Backend(m.address, { probeIntervalMs: 30, retryMaxMs: 100, upAfterProbes: 1, ...codec, ...backendOptions }));
  const c: ResyncCluster = {
    mcs,
    backends,
    ring: null as unknown as ReplicaRing,
    router: null as unknown as ReplicatedRouter,
    resyncer: null as unknown as Resyncer,
    agent: null,
    started: [],
    finished: [],
    sheds: [],
    stillResyncing: [],
    holds: [],
    copiedEvents: 0,
  };
  const events: ResyncEvents = {
    started: (backend, cause) => {
      if (cause !== 'shed') c.started.push({ backend, cause });
    },
    copied: () => c.copiedEvents++,
    skipped: () => {},
    holding: (_, ms) => c.holds.push(ms),
    finished: (_, result, still) => {
      if (result.mode === 'shed') {
        c.sheds.push(result);
        return;
      }
      c.finished.push(result);
      c.stillResyncing.push(still);
    },
  };
  if (trust === 'agent') {
    const sidecar = inProcessSidecar(backends, resyncOptions, events);
    Object.assign(c, { ring: sidecar.ring, router: sidecar.router, resyncer: sidecar.resyncer, agent: sidecar.agent });
    await sidecar.agent.start();
  } else {
    // The resync runs alone: a backend is distrusted while a refill run of this process copies into it.
    const ring = new ReplicaRing(backends.map((node) => ({ node, weight: 1 })), 2);
    const refilling = (node: MemcachedNode): boolean => c.resyncer.isRefilling(node);
    c.ring = ring;
    c.resyncer = new Resyncer(ring, backends, { isResyncing: refilling }, events, { quietMs: 0, ...resyncOptions });
    c.router = new ReplicatedRouter(ring, undefined, {
      isResyncing: refilling,
      deleting: (key) => c.resyncer.deleting(key),
      flushing: () => c.resyncer.flushing(),
      catchingUp: () => undefined,
      handingOver: () => undefined,
    });
  }
  current = c;
  return c;
}

/** For afterEach: stops the test's cluster, if it started one. */
export async function stopResyncCluster(): Promise<void> {
  if (current === null) return;
  // A backend the test left SIGSTOPped would hold up the closes.
  for (const m of current.mcs) m.resume();
  await current.agent?.stop();
  await current.resyncer.close();
  await Promise.all(current.backends.map((b) => b.close()));
  await Promise.all(current.mcs.map((m) => m.stop()));
  current = null;
}

/** Real memcached, a Backend each and their ring (2 replicas), for tests that set every role by hand. */
export interface HandRolesCluster {
  backends: Backend[];
  ring: ReplicaRing;
}

let handRoles: { mcs: MemcachedProcess[]; backends: Backend[] } | null = null;

/** `count` memcached and their ring; one per test, stopped by stopHandRolesCluster. */
export async function startHandRolesCluster(count: number): Promise<HandRolesCluster> {
  const mcs = await Promise.all(Array.from({ length: count }, () => startMemcached()));
  const backends = mcs.map((m) => new Backend(m.address, { requestTimeoutMs: 1000 }));
  handRoles = { mcs, backends };
  return { backends, ring: new ReplicaRing(backends.map((node) => ({ node, weight: 1 })), 2) };
}

/** For afterEach: stops the test's hand-roles cluster, if it started one. */
export async function stopHandRolesCluster(): Promise<void> {
  if (handRoles === null) return;
  await Promise.all(handRoles.backends.map((b) => b.close()));
  await Promise.all(handRoles.mcs.map((m) => m.stop()));
  handRoles = null;
}

/** One run on `target` in `context`: copies unthrottled, no quiet time, no events. */
export function runOn(c: HandRolesCluster, target: Backend, context: RunContext, clock: Clock = REAL_CLOCK): Promise<ResyncResult> {
  const options = { keysPerSecond: 1000, maxInFlight: 4, quietMs: 0, listAttempts: 3, clock };
  return new ResyncRun(target, c.backends, c.ring, options, { copied: () => {}, skipped: () => {}, pruned: () => {}, holding: () => {} }, context).done;
}

/** `set` on `b` itself: no flags, no expiry. */
export async function storeOn(b: Backend, key: string | Buffer, value: string): Promise<void> {
  await b.store({ mode: 'set', key: typeof key === 'string' ? k(key) : key, value: k(value), flags: 0, exptime: 0, cas: 0n });
}

/** The value `b` itself holds for `key`, or null. */
export async function valueOn(b: Backend, key: string): Promise<string | null> {
  const r = await b.get(k(key));
  if (r.status === 'failed') throw new Error(r.reason);
  return r.status === 'hit' ? r.item.value.toString() : null;
}

/** One sidecar's parts in-process, wired as src/proxy.ts wires them: for tests that run several over the same memcached. */
export interface InProcessSidecar<B extends Backend = Backend> {
  backends: B[];
  ring: ReplicaRing;
  router: ReplicatedRouter;
  resyncer: Resyncer;
  agent: TrustAgent;
}

/** For cleanup: stops the sidecar's agent and resync runs, then closes its backends. */
export async function stopSidecar(s: Pick<InProcessSidecar, 'agent' | 'resyncer' | 'backends'>): Promise<void> {
  await s.agent.stop();
  await s.resyncer.close();
  await Promise.all(s.backends.map((b) => b.close()));
}

/**
 * A sidecar over `backends` (2 replicas): its trust agent (not started: `await s.agent.start()`),
 * the ring over the agent's guarded nodes, a resyncer with no quiet time before copies, plus
 * `options` (which must agree across the sidecars of a test).
 */
export function inProcessSidecar<B extends Backend>(
  backends: B[],
  options: Partial<ResyncOptions>,
  events?: ConstructorParameters<typeof Resyncer>[3],
  agentOptions: Partial<AgentOptions> = {},
): InProcessSidecar<B> {
  const holder: { resyncer: Resyncer | null } = { resyncer: null };
  let ring: ReplicaRing | null = null;
  const agent = new TrustAgent({
    id: `test-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
    boards: backends.map((b) => b.control()),
    replicas: 2,
    ringOrder: (key) => ring!.ringOrder(key),
    clock: REAL_CLOCK,
    fill: (node, signal) => holder.resyncer!.fill(node, signal),
    events: { applied: (c) => c.to.role === 'trusted' && c.reason === 'filled' && holder.resyncer!.shedAll() },
    ...agentOptions,
  });
  for (const b of backends) {
    b.on('lost', () => agent.failed(b.address));
    b.on('down', () => agent.failed(b.address));
  }
  ring = new ReplicaRing(backends.map((node) => ({ node: agent.wrap(node), weight: 1 })), 2);
  ring.useRoles((node) => agent.roleOf(node));
  const resyncer = new Resyncer(ring, backends, resyncTrust(agent), events, { quietMs: 0, ...options });
  holder.resyncer = resyncer;
  const router = new ReplicatedRouter(ring, undefined, routerHooks(agent, () => resyncer));
  return { backends, ring, router, resyncer, agent };
}
