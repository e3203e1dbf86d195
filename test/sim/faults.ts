// The fault schedule, drawn from the seed. During a chaos phase a fault starts
// every meanGapMs on average (a quarter of the time two or three at once), each
// on a random node, backend or path, and ends after its own random duration;
// healAll() ends every fault at once.
//
//   freeze          a path holds its messages both ways (they arrive late, or never)
//   one-way         the same, one way only: requests land but replies do not, or
//                   the reverse
//   delay           a path's messages take longer: each way, under the request timeout
//                   (a slow path) or over it (one that stalls)
//   reset           one sidecar's connection to a backend is reset
//   refuse          reset, then that node's connects are refused for a while
//   kill            a memcached is killed; restarted (empty) when it ends
//   restart         a memcached is killed and restarted at once (empty)
//   sigstop         a memcached stops (SIGSTOP) and resumes (SIGCONT)
//   stall           a sidecar's event loop blocks
//   death           a sidecar dies; a new one arrives on its node when it ends
//   death-in-refill a memcached restarts, and a sidecar dies shortly after, while
//                   the restarted one is being refilled
//
// The faults that lose data (kill, restart, death-in-refill) hit at most R - 1
// backends until those are refilled: with R copies of each key, that much loss is
// what replication promises to survive.
//
// With oneBackend, trouble on a backend (every kind but stall and death) starts only
// while no other backend has a fault in progress and every live sidecar trusts every
// other backend: one backend at a time is away, the loss the product promises to
// survive. Faults on that backend may still overlap, and the sidecars' faults come
// as before.

import type { Scheduler, Timer } from './clock';
import type { Host } from './host';
import type { SimMemcached } from './memcached';
import type { Rng } from './random';
import type { Trace } from './trace';

export const FAULT_KINDS = [
  'freeze',
  'one-way',
  'delay',
  'reset',
  'refuse',
  'kill',
  'restart',
  'sigstop',
  'stall',
  'death',
  'death-in-refill',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultOptions {
  kinds: readonly FaultKind[];
  /** Mean time between faults in a chaos phase, ms. */
  meanGapMs: number;
  /** How long a chaos phase lasts, ms: drawn between the two. */
  chaosMs: readonly [number, number];
  /** Trouble on one backend at a time (see above). */
  oneBackend: boolean;
}

export const DEFAULT_FAULTS: FaultOptions = { kinds: FAULT_KINDS, meanGapMs: 1000, chaosMs: [2000, 10_000], oneBackend: false };

export interface Cluster {
  scheduler: Scheduler;
  trace: Trace;
  backends: readonly SimMemcached[];
  hosts: readonly Host[];
  /** The sidecars' backend request timeout, which a delay falls under or over. */
  requestTimeoutMs: number;
  /** Every live sidecar trusts backend b. */
  trusted(b: number): boolean;
}

/** The faults that lose a memcached's data. */
const LOSING: ReadonlySet<FaultKind> = new Set(['kill', 'restart', 'death-in-refill']);
/** The faults that hit a sidecar, not a backend or a path to one. */
const SIDECAR_ONLY: ReadonlySet<FaultKind> = new Set(['stall', 'death']);

export class Faults {
  /** Faults in progress: the timer that ends each. */
  private readonly active = new Set<Timer>();
  private chaosEnd = 0;
  /**
   * Backends that lost their data and were not refilled yet. With R copies the contract
   * covers the loss of R - 1 of them at a time: a fault that would lose more is not started.
   */
  private readonly emptied = new Set<number>();
  /** Backend faults in progress, by backend (for oneBackend). */
  private readonly troubled = new Map<number, number>();

  constructor(
    private readonly cluster: Cluster,
    private readonly rng: Rng,
    private readonly options: FaultOptions,
    private readonly replicas: number,
  ) {}

  /** Every sidecar trusts the backend again: it holds what it should (run.ts, at a quiet moment). */
  refilled(b: number): void {
    this.emptied.delete(b);
  }

  /** Faults start from now for `ms`. */
  chaos(ms: number): void {
    const { scheduler } = this.cluster;
    if (this.options.kinds.length === 0) return;
    this.chaosEnd = scheduler.now + ms;
    const next = (): void => {
      if (scheduler.now >= this.chaosEnd) return;
      const burst = this.rng.chance(0.25) ? this.rng.int(2, 3) : 1;
      for (let i = 0; i < burst; i++) this.start(this.rng.pick(this.options.kinds));
      scheduler.after(this.gap(), next);
    };
    scheduler.after(this.gap(), next);
  }

  /** Ends every fault: paths heal, memcached processes run, every node has a sidecar. */
  healAll(): void {
    const { backends, hosts, trace } = this.cluster;
    this.chaosEnd = 0;
    for (const timer of this.active) timer.cancel();
    this.active.clear();
    this.troubled.clear();
    for (const host of hosts) {
      for (const link of host.links) {
        if (link.outFrozen || link.inFrozen) link.heal(this.rng.chance(0.5));
        link.delayMs = 0;
        link.refusing = false;
      }
      host.arrive();
    }
    for (const mc of backends) {
      if (mc.state === 'dead') mc.restart();
      mc.cont();
    }
    trace.record('faults', '', 'heal all', '', '');
  }

  private gap(): number {
    return -Math.log(1 - this.rng.next()) * this.options.meanGapMs;
  }

  private start(kind: FaultKind): void {
    const { backends, hosts, trace } = this.cluster;
    const rng = this.rng;
    const host = rng.pick(hosts);
    const b = rng.int(0, backends.length - 1);
    if (this.options.oneBackend && !SIDECAR_ONLY.has(kind) && !this.alone(b)) return;
    if (LOSING.has(kind)) {
      if (!this.emptied.has(b) && this.emptied.size >= this.replicas - 1) return;
      this.emptied.add(b);
    }
    const link = host.links[b];
    const mc = backends[b];
    /** Who the fault hits: a node's path or sidecar, or a backend itself. */
    const note = (detail: string, who = `n${host.index}`): void => trace.record(who, `b${b}`, kind, '', detail);
    /** Ends the fault on b after `ms`. */
    const lasting = (ms: number, end: () => unknown): void => {
      this.troubled.set(b, (this.troubled.get(b) ?? 0) + 1);
      this.until(ms, () => {
        const left = (this.troubled.get(b) ?? 1) - 1;
        if (left === 0) this.troubled.delete(b);
        else this.troubled.set(b, left);
        end();
      });
    };
    switch (kind) {
      case 'freeze':
      case 'one-way': {
        const way = kind === 'freeze' ? 'both' : rng.pick(['out', 'in'] as const);
        link.outFrozen ||= way !== 'in';
        link.inFrozen ||= way !== 'out';
        const late = rng.chance(0.5);
        const ms = rng.between(100, 5000);
        note(`${way} for ${ms.toFixed(0)} ms, then ${late ? 'late' : 'lost'}`);
        return lasting(ms, () => link.heal(late));
      }
      case 'delay': {
        const t = this.cluster.requestTimeoutMs;
        const delay = rng.chance(0.5) ? rng.between(20, (t * 9) / 10) : rng.between((t * 11) / 10, t * 5);
        link.delayMs = delay;
        const ms = rng.between(1000, 8000);
        note(`${delay.toFixed(0)} ms each way for ${ms.toFixed(0)} ms`);
        return lasting(ms, () => (link.delayMs = 0));
      }
      case 'reset':
        note('');
        return host.paths[b]?.reset();
      case 'refuse': {
        link.refusing = true;
        host.paths[b]?.reset();
        const ms = rng.between(200, 5000);
        note(`for ${ms.toFixed(0)} ms`);
        return lasting(ms, () => (link.refusing = false));
      }
      case 'kill': {
        mc.kill();
        const ms = rng.between(500, 12_000);
        note(`restart in ${ms.toFixed(0)} ms`, 'faults');
        return lasting(ms, () => mc.state === 'dead' && mc.restart());
      }
      case 'restart':
        mc.restart();
        return note(`pid ${mc.pid}`, 'faults');
      case 'sigstop': {
        mc.stop();
        const ms = rng.between(200, 6000);
        note(`for ${ms.toFixed(0)} ms`, 'faults');
        return lasting(ms, () => mc.cont());
      }
      case 'stall':
        return host.stall(rng.between(50, 2000));
      case 'death':
        return this.death(host, 0);
      case 'death-in-refill':
        mc.restart();
        note(`pid ${mc.pid}`, 'faults');
        return this.death(host, rng.between(50, 1500), true);
    }
  }

  /** No other backend has a fault in progress, and every live sidecar trusts every other backend. */
  private alone(b: number): boolean {
    const { backends, trusted } = this.cluster;
    return backends.every((_, other) => other === b || (!this.troubled.has(other) && trusted(other)));
  }

  /**
   * A sidecar dies after `afterMs` (`filling`: one that is copying then, if any, else the
   * node's); a new one arrives on its node later.
   */
  private death(host: Host, afterMs: number, filling = false): void {
    this.until(afterMs, () => {
      const victim = (filling && this.cluster.hosts.find((h) => h.sidecar?.filling() === true)) || host;
      victim.die();
      this.until(this.rng.between(500, 10_000), () => victim.arrive());
    });
  }

  /** Runs `end` after `ms`, unless healAll() came first. */
  private until(ms: number, end: () => unknown): void {
    const timer = this.cluster.scheduler.after(ms, () => {
      this.active.delete(timer);
      end();
    });
    this.active.add(timer);
  }
}
