// The resync runs of one sidecar: the copies that make a backend hold what it
// should. Which backend is trusted, and when a run starts or counts, is the
// trust protocol's (src/trust/, docs/trust.md); this class only runs them.
//
//   fill        the trust agent's filler: a reconcile of a backend in refill; the
//               agent proposes it trusted once the run completed
//   membership  a reload moved keys to the backend (removal, more replicas, weights):
//               a refresh from each key's authority, the backend staying trusted; also
//               the sweep after a sidecar died unannounced (a write it had in flight may
//               have landed on some members only)
//   shed        copies a backend holds outside their keys' replica sets (a stand-in's,
//               once the member it stood in for is trusted again) are deleted
//
// It also answers the router's deleting() and flushing(): a copy in flight lands
// before a client's delete of the same key goes out (see resync-run.ts).

import type { Backend } from '../backends/backend';
import type { MemcachedNode } from '../routing/node';
import type { ReplicaRing } from '../routing/ring';
import { REAL_CLOCK } from './rate-limiter';
import { ResyncRun, type ResyncMode, type ResyncResult, type ResyncRunOptions, type RunContext } from './resync-run';

export interface ResyncOptions extends ResyncRunOptions {
  /**
   * After a fill that could not list every key (SASL backends cannot be listed at all), the
   * target stays in refill this long: the longest item lifetime (see resync-run.ts, hold).
   */
  unlistedHoldMs: number;
}

export const DEFAULT_RESYNC_OPTIONS: Readonly<ResyncOptions> = Object.freeze({
  keysPerSecond: 5000,
  maxInFlight: 32,
  quietMs: 1000,
  listAttempts: 5,
  unlistedHoldMs: 0,
  clock: REAL_CLOCK,
});

/** The wait before a refresh or shed that ended short runs again, doubled per failure in a row, and its cap. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 60_000;
/** Sheds in a row that each dropped strays before one more is not started (see shedAgain). */
const SHED_PASSES = 4;

/** Why a run started: the trust agent's refill, a reload that moved keys, a sidecar's death, a shed, or asked for. */
export type ResyncCause = 'refill' | 'membership' | 'sweep' | 'shed' | 'manual';

/** Where progress goes: metrics and logs. `backend` is the address being refilled. */
export interface ResyncEvents {
  started(backend: string, cause: ResyncCause): void;
  copied(backend: string): void;
  skipped(backend: string): void;
  /** Its keys could not all be listed: it stays in refill `ms` longer (see resync-run.ts, hold). */
  holding(backend: string, ms: number): void;
  /**
   * A run ended. `stillResyncing`: a newer run for the same backend goes on (this
   * one was replaced: outcome 'aborted', reason 'restarted'); set gauges from it.
   */
  finished(backend: string, result: ResyncResult, stillResyncing: boolean): void;
}

export const SILENT_RESYNC_EVENTS: ResyncEvents = {
  started() {},
  copied() {},
  skipped() {},
  holding() {},
  finished() {},
};

export interface ResyncProgress {
  backend: string;
  /** elsewhere: no run here, but the backend is not trusted (another sidecar fills it, or it is out). */
  state: 'idle' | 'elsewhere' | 'listing' | 'copying' | 'pruning' | 'holding';
  /** Totals since the proxy started, over every run for this backend. */
  copied: number;
  skipped: number;
  pruned: number;
  /** Of the runs going on (fill, membership, shed): keys still to copy or check, and copies in flight. */
  pending: number;
  inFlight: number;
}

type Totals = { copied: number; skipped: number; pruned: number };

/** Whether the trust protocol trusts a node, and which stand-in copies are sources (the agent's answers: trust/agent.ts, resyncTrust). */
export type ResyncTrust = Pick<RunContext, 'isResyncing' | 'standInSince' | 'stoodInThroughout' | 'stoodInSince' | 'refillingSince' | 'refillTookSince' | 'refillSince' | 'outageRefillSince' | 'missedSince' | 'leftBefore'>;

/** A completed fill: every key listed (or held out the longest lifetime) and none failed. */
export function isComplete(result: ResyncResult): boolean {
  return result.outcome === 'done' && result.failed === 0 && (result.unlisted.length === 0 || result.heldMs > 0);
}

export class Resyncer {
  private readonly opts: ResyncOptions;
  /** Per kind of run, the current one per backend. */
  private readonly runs = { fill: new Map<Backend, ResyncRun>(), membership: new Map<Backend, ResyncRun>(), shed: new Map<Backend, ResyncRun>() };
  /** Every run not yet settled, current or aborted: their copies in flight still matter to deletes. */
  private readonly live = new Set<ResyncRun>();
  /** Earlier refills copies whose copied record is not written yet (RunContext.recording), across runs. */
  private readonly recording = new Map<string, number>();
  private readonly totals = new Map<Backend, Totals>();
  /** Refreshes and sheds that ended short, in a row, per backend (see retryLater). */
  private readonly retries = new Map<Backend, number>();
  /** Sheds in a row that dropped strays, per backend (see shedAgain). */
  private readonly shedPasses = new Map<Backend, number>();
  private closed = false;

  constructor(
    private readonly ring: ReplicaRing,
    private readonly backends: readonly Backend[],
    private readonly trust: ResyncTrust,
    private readonly events: ResyncEvents = SILENT_RESYNC_EVENTS,
    options: Partial<ResyncOptions> = {},
  ) {
    this.opts = { ...DEFAULT_RESYNC_OPTIONS, ...options };
    for (const b of backends) this.totals.set(b, { copied: 0, skipped: 0, pruned: 0 });
  }

  /** The agent's filler (AgentOptions.fill): true when the reconcile completed. */
  async fill(node: MemcachedNode, signal: AbortSignal): Promise<boolean> {
    const backend = this.backends.find((b) => b.address === node.address);
    if (backend === undefined) return false;
    const result = await this.resync(backend, 'refill', signal);
    return result !== null && isComplete(result);
  }

  /** The agent's sweep (AgentOptions.sweep): a refresh of a trusted backend from each key's authority. */
  sweep(node: MemcachedNode): void {
    const backend = this.backends.find((b) => b.address === node.address);
    if (backend !== undefined) void this.resync(backend, 'sweep');
  }

  /**
   * Starts a run on `backend` (restarting one of the same kind already going). Resolves with
   * the run's result; null when it cannot start (closed, or the backend is not up).
   */
  resync(backend: Backend, cause: ResyncCause = 'manual', signal?: AbortSignal): Promise<ResyncResult | null> {
    if (this.closed || !backend.isUp()) return Promise.resolve(null);
    const kind = cause === 'shed' ? 'shed' : cause === 'membership' || cause === 'sweep' ? 'membership' : 'fill';
    const runs = this.runs[kind];
    runs.get(backend)?.abort('restarted');
    const totals = this.totals.get(backend) ?? { copied: 0, skipped: 0, pruned: 0 };
    this.totals.set(backend, totals);
    const address = backend.address;
    const mode: ResyncMode = kind === 'fill' ? 'reconcile' : kind === 'membership' ? 'refresh' : 'shed';
    const run = new ResyncRun(
      backend,
      this.backends,
      this.ring,
      this.opts,
      {
        copied: () => {
          totals.copied++;
          this.events.copied(address);
        },
        skipped: () => {
          totals.skipped++;
          this.events.skipped(address);
        },
        pruned: () => totals.pruned++,
        holding: (ms) => this.events.holding(address, ms),
      },
      {
        mode: Promise.resolve(mode),
        isResyncing: (node) => this.trust.isResyncing(node),
        ...(this.trust.standInSince !== undefined && { standInSince: this.trust.standInSince }),
        ...(this.trust.stoodInThroughout !== undefined && { stoodInThroughout: this.trust.stoodInThroughout }),
        ...(this.trust.stoodInSince !== undefined && { stoodInSince: this.trust.stoodInSince }),
        ...(this.trust.refillingSince !== undefined && { refillingSince: this.trust.refillingSince }),
        ...(this.trust.refillTookSince !== undefined && { refillTookSince: this.trust.refillTookSince }),
        ...(this.trust.refillSince !== undefined && { refillSince: this.trust.refillSince }),
        ...(this.trust.outageRefillSince !== undefined && { outageRefillSince: this.trust.outageRefillSince }),
        ...(this.trust.missedSince !== undefined && { missedSince: this.trust.missedSince }),
        ...(this.trust.leftBefore !== undefined && { leftBefore: this.trust.leftBefore }),
        // A fill's hold keeps its backend untrusted; a refresh's keeps it from holding the keys a
        // reload gave it (ReplicaRing.holds) until every item it could not list has expired.
        holdMs: kind === 'shed' ? 0 : this.opts.unlistedHoldMs,
        recording: this.recording,
      },
    );
    const onAbort = (): void => run.abort('left refill');
    signal?.addEventListener('abort', onAbort, { once: true });
    runs.set(backend, run);
    this.live.add(run);
    this.events.started(address, cause);
    return run.done.then((result) => {
      signal?.removeEventListener('abort', onAbort);
      this.live.delete(run);
      const current = runs.get(backend) === run;
      if (current) runs.delete(backend);
      this.events.finished(address, result, runs.has(backend));
      // A refresh or a fill that completed copied every key the backend is a natural member of.
      // The last one to settle ends the former holders' membership: their copies are strays now.
      if (result.mode !== 'shed' && isComplete(result) && this.ring.settled(address)) this.shedAll();
      if (kind !== 'fill' && current) this.retryLater(backend, kind, cause, result);
      if (kind === 'shed' && current) this.shedAgain(backend, result);
      return result;
    });
  }

  /**
   * A refresh or shed that ended short of its work (a listing met another sidecar's crawl, a
   * copy failed) runs again, after a wait that doubles per failure: otherwise its strays and
   * stale copies would stay until the next reload. A fill is the trust agent's to retry, and a
   * backend that can never be listed (SASL) is not waited for again.
   */
  private retryLater(backend: Backend, kind: 'membership' | 'shed', cause: ResyncCause, result: ResyncResult): void {
    const short =
      result.outcome === 'done' &&
      (result.failed > 0 || result.unlisted.some((a) => this.backends.find((b) => b.address === a)?.canListKeys === true));
    if (!short) return void this.retries.delete(backend);
    const failures = (this.retries.get(backend) ?? 0) + 1;
    this.retries.set(backend, failures);
    void this.opts.clock.sleep(Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (failures - 1))).then(() => {
      // A newer run of the kind took over meanwhile: it is the one that counts.
      if (!this.closed && !this.runs[kind].has(backend)) void this.resync(backend, cause);
    });
  }

  /**
   * A shed's crawl is no snapshot (an item the LRU moves during it is skipped: a busy backend's
   * reads move them), so one that dropped strays runs once more, until a pass drops none, at
   * most SHED_PASSES in a row.
   */
  private shedAgain(backend: Backend, result: ResyncResult): void {
    const passes = (this.shedPasses.get(backend) ?? 0) + 1;
    if (result.outcome !== 'done' || result.pruned === 0 || passes >= SHED_PASSES) return void this.shedPasses.delete(backend);
    this.shedPasses.set(backend, passes);
    void this.resync(backend, 'shed');
  }

  /** The backend is trusted again after a fill: what stand-ins hold of its keys is garbage now. */
  shedAll(): void {
    if (this.closed) return;
    // Only trusted ones: a backend away (or in refill) is in no key's placement now, yet what
    // it holds may be the newest copy of its own keys, for its refill to reconcile.
    for (const b of this.backends) if (!this.trust.isResyncing(b)) void this.resync(b, 'shed');
  }

  /** A refill of this process copies into it (the trust agent's fill, or one asked for). */
  isRefilling(node: MemcachedNode): boolean {
    for (const b of this.runs.fill.keys()) if (b.address === node.address) return true;
    return false;
  }

  deleting(key: Buffer): Promise<void> | undefined {
    if (this.live.size === 0) return undefined;
    const name = key.toString('latin1');
    const waits: Promise<void>[] = [];
    for (const run of this.live) {
      const w = run.deleting(name);
      if (w !== undefined) waits.push(w);
    }
    return waits.length === 0 ? undefined : Promise.all(waits).then(() => undefined);
  }

  flushing(): Promise<void> | undefined {
    if (this.live.size === 0) return undefined;
    return Promise.all([...this.live].map((run) => run.flushing())).then(() => undefined);
  }

  progress(): ResyncProgress[] {
    return this.backends.map((b) => {
      const runs = [this.runs.fill.get(b), this.runs.membership.get(b), this.runs.shed.get(b)].filter((r): r is ResyncRun => r !== undefined);
      const run = runs[0];
      const totals = this.totals.get(b) ?? { copied: 0, skipped: 0, pruned: 0 };
      return {
        backend: b.address,
        state: run !== undefined ? (run.phase === 'finished' ? 'copying' : run.phase) : this.trust.isResyncing(b) ? 'elsewhere' : 'idle',
        copied: totals.copied,
        skipped: totals.skipped,
        pruned: totals.pruned,
        pending: runs.reduce((n, r) => n + r.pending, 0),
        inFlight: runs.reduce((n, r) => n + r.copying, 0),
      };
    });
  }

  /** For the `stats` command, numbered like the replicached_backend_<i> lines. */
  statsLines(): Array<[string, string | number]> {
    const progress = this.progress();
    const lines: Array<[string, string | number]> = [
      // A backend not trusted counts: this sidecar reads it last until it is.
      ['replicached_resyncs_in_progress', progress.filter((p) => p.state !== 'idle').length],
      ['replicached_resync_keys_copied', progress.reduce((n, p) => n + p.copied, 0)],
      ['replicached_resync_keys_skipped', progress.reduce((n, p) => n + p.skipped, 0)],
    ];
    progress.forEach((p, i) => {
      lines.push([
        `replicached_resync_${i}`,
        `${p.backend} ${p.state} copied=${p.copied} skipped=${p.skipped} pruned=${p.pruned} pending=${p.pending} in_flight=${p.inFlight}`,
      ]);
    });
    return lines;
  }

  /** Stops every run; resolves when their copies in flight have landed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const runs = [...this.live];
    for (const run of runs) run.abort('closing');
    await Promise.all(runs.map((run) => run.done));
  }
}
