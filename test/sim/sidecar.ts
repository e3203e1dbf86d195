// How one simulated sidecar is built: the one place that wires a protocol to the
// simulation. It gets the parts src/proxy.ts wires together (a ring over the
// backends, the router, one KeySequencer for the process, an OrderedRouter per
// client connection), with the simulation's paths for backends and the
// sidecar's own clock.
//
//   trust  the trust agent (src/trust/agent.ts) decides each backend's role; the
//          ring places keys by the agreed roles and the router asks it first
//   none   no agreement: each sidecar routes around the backends it alone sees
//          down (the router with NO_RESYNC, no resync); the simulation must find
//          it unsafe

import type { Router } from '../../src/protocol/types';
import { KeySequencer } from '../../src/routing/key-sequencer';
import { OrderedRouter } from '../../src/routing/ordered-router';
import { NO_RESYNC, ReplicatedRouter, SILENT_EVENTS } from '../../src/routing/replicated-router';
import { ReplicaRing } from '../../src/routing/ring';
import type { Backend } from '../../src/backends/backend';
import { Resyncer, SILENT_RESYNC_EVENTS } from '../../src/resync/resyncer';
import { TrustAgent, resyncTrust, routerHooks } from '../../src/trust/agent';
import type { StageChange } from '../../src/trust/protocol';
import type { LocalClock } from './clock';
import type { Path } from './network';

export type Protocol = 'trust' | 'none';

export interface SidecarEnv {
  /** Unique per sidecar process (a replacement on the same node gets a new one). */
  id: string;
  clock: LocalClock;
  /** One per backend, in configuration order. */
  paths: Path[];
  replicas: number;
  /** Each path's zone, in the same order; none: no zones. */
  zones?: readonly string[];
  /** AgentOptions.quickRounds. */
  quickRounds: number;
  /** AgentOptions.rosterPruneMs. */
  rosterPruneMs: number;
  /** Into the trace: what the sidecar decided about a backend. */
  note(address: string, op: string, detail: string): void;
}

export interface Sidecar {
  /** A new client connection. */
  connect(): Router;
  /** No request, follow-up step or resync run in progress. */
  idle(): boolean;
  /** Whether this sidecar lets the backend hold and answer for its keys now. */
  trusts(address: string): boolean;
  /** A resync of this sidecar is copying (a moment to kill it at). */
  filling(): boolean;
  /** It has not yet taken sidecar `id` (one that died) for silent: the sweep after it has not started. */
  awaitsSilenceOf(id: string): boolean;
}

export function buildSidecar(env: SidecarEnv, protocol: Protocol): Sidecar {
  return protocol === 'trust' ? withTrust(env) : withoutAgreement(env);
}

function withTrust(env: SidecarEnv): Sidecar {
  const agent: TrustAgent = new TrustAgent({
    id: env.id,
    boards: env.paths.map((path) => path.control()),
    replicas: env.replicas,
    ringOrder: (key) => ring.ringOrder(key),
    clock: env.clock,
    quickRounds: env.quickRounds,
    rosterPruneMs: env.rosterPruneMs,
    fill: (node, signal) => resyncer.fill(node, signal),
    sweep: (node) => resyncer.sweep(node),
    events: {
      acknowledged: (c) => env.note(c.address, 'ack', stageChange(c)),
      applied: (c) => {
        env.note(c.address, 'apply', stageChange(c));
        // This sidecar filled it: the copies stand-ins took while it was away are garbage now.
        if (c.to.role === 'trusted' && c.reason === 'filled') resyncer.shedAll();
      },
    },
  });
  // A dropped connection or a backend marked down is a failure like a failed request.
  for (const path of env.paths) path.watch({ down: () => agent.failed(path.address), lost: () => agent.failed(path.address) });
  const ring = new ReplicaRing(
    env.paths.map((path, b) => ({ node: agent.wrap(path), weight: 1, zone: env.zones?.[b] })),
    env.replicas,
  );
  ring.useRoles((node) => agent.roleOf(node));
  // Resyncer is typed for src/backends' Backend but uses only what a Path has too (MemcachedNode,
  // canListKeys, metadumpEach): this cast goes once it takes an interface.
  const resyncer = new Resyncer(ring, env.paths as unknown as Backend[], resyncTrust(agent), SILENT_RESYNC_EVENTS, {
    clock: env.clock,
  });
  const router = new ReplicatedRouter(ring, SILENT_EVENTS, routerHooks(agent, () => resyncer));
  const keys = new KeySequencer();
  void agent.start();
  const resyncing = (): boolean => resyncer.progress().some((p) => p.state !== 'idle' && p.state !== 'elsewhere');
  return {
    connect: () => new OrderedRouter(keys, router, agent),
    // A resync run (a sweep after a dead peer, say) is repair still under way.
    idle: () => keys.activeKeys === 0 && !resyncing(),
    // Trusted, with no change of it acknowledged and not yet applied (a newcomer waits out a dead peer's silence).
    trusts: (address) => agent.state.isTrusted(address),
    filling: resyncing,
    awaitsSilenceOf: (id) => agent.state.awaitsSilenceOf(id),
  };
}

function stageChange({ from, to, reason }: StageChange): string {
  return `${from.role}(${from.epoch}) -> ${to.role}(${to.epoch})${reason === undefined ? '' : ` ${reason}`}`;
}

function withoutAgreement(env: SidecarEnv): Sidecar {
  const ring = new ReplicaRing(
    env.paths.map((node, b) => ({ node, weight: 1, zone: env.zones?.[b] })),
    env.replicas,
  );
  const router = new ReplicatedRouter(ring, SILENT_EVENTS, NO_RESYNC);
  const keys = new KeySequencer();
  return {
    connect: () => new OrderedRouter(keys, router),
    idle: () => keys.activeKeys === 0,
    trusts: (address) => env.paths.some((p) => p.address === address && p.isUp()),
    filling: () => false,
    awaitsSilenceOf: () => false,
  };
}
