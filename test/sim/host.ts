// One web node: its links to the backends, the sidecar running on it (if any),
// and the way its PHP clients reach that sidecar.
//
// A sidecar is a Process with a drifting clock and its own paths. Stalling it
// defers everything it would do; killing it drops everything it would do, and
// its clients' requests in progress end as unavailable (their connection
// closed), while what it had already sent keeps travelling and may still land.
// A new sidecar can then arrive on the node, with a new id and fresh paths
// over the same links.

import type { Router } from '../../src/protocol/types';
import { LocalClock, Process, type Scheduler } from './clock';
import type { SimMemcached } from './memcached';
import { Link } from './link';
import { Path } from './network';
import type { Rng } from './random';
import { buildSidecar, type Protocol, type Sidecar } from './sidecar';
import type { Trace } from './trace';

const UNAVAILABLE = { status: 'unavailable' } as const;
export type Unavailable = typeof UNAVAILABLE;

interface Incarnation {
  readonly id: string;
  readonly process: Process;
  readonly paths: Path[];
  readonly sidecar: Sidecar;
  /** Client requests in progress: ended as unavailable if it dies. */
  readonly open: Set<() => void>;
}

/** A client's connection to the sidecar of its node. */
export class ClientConnection {
  private readonly router: Router;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly inc: Incarnation,
  ) {
    this.router = inc.sidecar.connect();
  }

  get sidecarId(): string {
    return this.inc.id;
  }

  get alive(): boolean {
    return !this.inc.process.dead;
  }

  /**
   * Sends one request. It reaches the sidecar as an event of its process (deferred
   * while it stalls); the answer comes back as soon as the router gives it.
   */
  call<T extends { status: string }>(send: (router: Router) => Promise<T>): Promise<T | Unavailable> {
    const { process, open } = this.inc;
    if (process.dead) return Promise.resolve(UNAVAILABLE);
    return new Promise((resolve) => {
      const end = (): void => resolve(UNAVAILABLE);
      open.add(end);
      this.scheduler.after(
        0,
        () =>
          void send(this.router).then((outcome) => {
            if (open.delete(end)) resolve(outcome);
          }),
        process,
      );
    });
  }
}

export interface HostEnv {
  scheduler: Scheduler;
  rng: Rng;
  trace: Trace;
  backends: readonly SimMemcached[];
  replicas: number;
  /** Each backend's zone, by index; none: no zones. */
  zones?: readonly string[];
  protocol: Protocol;
  requestTimeoutMs: number;
  quickRounds: number;
  rosterPruneMs: number;
}

export class Host {
  readonly links: Link[];
  private current: Incarnation | null = null;
  private arrivals = 0;
  /** The ids of its sidecars that died. */
  readonly deadIds: string[] = [];

  constructor(
    readonly index: number,
    private readonly env: HostEnv,
  ) {
    this.links = env.backends.map((_, b) => new Link(env.scheduler, env.rng.stream(`link ${index}-${b}`)));
  }

  get sidecar(): Sidecar | null {
    return this.current?.sidecar ?? null;
  }

  get sidecarId(): string | null {
    return this.current?.id ?? null;
  }

  get paths(): readonly Path[] {
    return this.current?.paths ?? [];
  }

  /** A new sidecar starts on the node. */
  arrive(): void {
    if (this.current !== null) return;
    const { scheduler, rng, trace, backends, replicas, zones, protocol, requestTimeoutMs, quickRounds, rosterPruneMs } = this.env;
    const id = `s${this.index}.${this.arrivals++}`;
    const streams = rng.stream(id);
    const process = new Process(id);
    // Half of the clocks at an edge of the ±10% the protocol assumes, where it is tightest.
    const rate = streams.chance(0.5) ? streams.pick([0.9, 1.1]) : streams.between(0.9, 1.1);
    const clock = new LocalClock(scheduler, process, rate, streams.between(1e6, 1e9));
    const paths = backends.map(
      (mc, b) =>
        new Path(mc.address, { who: id, backendName: `b${b}`, link: this.links[b], backend: mc, clock, rng: streams.stream(`path ${b}`), trace, requestTimeoutMs }),
    );
    const names = new Map(backends.map((mc, b) => [mc.address, `b${b}`]));
    const note = (address: string, op: string, detail: string): void => trace.record(id, names.get(address) ?? address, op, '', detail);
    const sidecar = buildSidecar({ id, clock, paths, replicas, zones, quickRounds, rosterPruneMs, note }, protocol);
    this.current = { id, process, paths, sidecar, open: new Set() };
    trace.record(id, '', 'arrive', '', '');
  }

  /** The sidecar process dies. */
  die(): void {
    const inc = this.current;
    if (inc === null) return;
    this.current = null;
    this.deadIds.push(inc.id);
    inc.process.dead = true;
    for (const end of inc.open) end();
    inc.open.clear();
    this.env.trace.record(inc.id, '', 'die', '', '');
  }

  /** The sidecar's event loop is blocked for `ms` (virtual). */
  stall(ms: number): void {
    const inc = this.current;
    if (inc === null) return;
    const { scheduler, trace } = this.env;
    inc.process.stalledUntil = Math.max(inc.process.stalledUntil, scheduler.now + ms);
    trace.record(inc.id, '', 'stall', '', `${Math.round(ms)} ms`);
  }

  connect(): ClientConnection | null {
    return this.current === null ? null : new ClientConnection(this.env.scheduler, this.current);
  }
}
