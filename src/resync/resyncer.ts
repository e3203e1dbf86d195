// Rejoin resync: notices a backend that must be refilled and runs one
// ResyncRun per such backend.
//
//   backend 'up' (it was down) ─────────────────────────┐
//   identity poll: pid or start time changed (restart) ─┴─> run (a run already going restarts)
//   backend 'down' ──> its run aborts      close() ──> every run aborts
//
// The mode (see resync-run.ts): a restart found by the poll is a refill. A
// backend back 'up' is a refill when its pid or start time differs from the last
// seen before it went away, else (the same process: it hung, or the network cut
// it off, and it kept its now stale items) a reconcile; when unknown, a reconcile,
// which is also right for an empty backend, at one more read per key.
//
// A refill (a restart) is shared with the other sidecars on the same backends:
// one of them holds a claim on the restarted process and refills it, the others
// wait for its mark, distrusting the backend meanwhile (refill-claim.ts).
//
// A reload that moves keys starts a refresh (cause 'membership') on every
// backend, and every run that ends complete starts a shed on every backend: the
// copies stand-ins took while the backend was away are garbage once it is back.
// Neither distrusts its backend.
//
// It is also the router's ResyncHooks: a backend is resyncing from the moment it
// is up again until its run ends, and while any sidecar's run copies into it
// (the runs' count, run-beacon.ts), and while any sidecar has it marked down
// (down-marks.ts, mark-watch.ts); a backend any sidecar fills is only 'filling'
// (the fills' count: its hits are not served after a trusted miss); deletes and
// flushes are passed to the runs.

import type { Backend } from '../backends/backend';
import type { MemcachedNode } from '../routing/node';
import type { ResyncHooks } from '../routing/replicated-router';
import type { ReplicaRing } from '../routing/ring';
import { randomUUID } from 'node:crypto';
import { REAL_CLOCK } from './rate-limiter';
import { DEFAULT_CLAIM_OPTIONS, RefillClaim, type ClaimOptions } from './refill-claim';
import {
  BeaconWatch,
  DEFAULT_BEACON_OPTIONS,
  FILL_BEACON_KEY,
  RUN_BEACON_KEY,
  RunBeacon,
  SETTLE_MARGIN_MS,
  type BeaconOptions,
  type BeaconsSeen,
} from './run-beacon';
import { DownMarks, type MarksHandOver } from './down-marks';
import { MarkWatch, type MarksSeen } from './mark-watch';
import { ResyncRun, type ResyncMode, type ResyncResult, type ResyncRunOptions } from './resync-run';

/** How often a request held back by a stale watch looks again (see catchingUp). */
const STALE_NAP_MS = 20;

const now = (): number => performance.now();

export interface ResyncOptions extends ResyncRunOptions {
  /** How often each live backend's pid and start time are read, to catch a restart no probe noticed. */
  identityPollMs: number;
  /** The refill claim shared with other sidecars (refill-claim.ts). */
  claim: Omit<ClaimOptions, 'clock'>;
  /** The count of runs each backend keeps for every sidecar to see (run-beacon.ts). */
  beacon: BeaconOptions;
  /**
   * After a run that could not list every key (SASL backends cannot be listed at all), the
   * target stays distrusted this long: the longest item lifetime (see resync-run.ts, hold).
   */
  unlistedHoldMs: number;
}

export const DEFAULT_RESYNC_OPTIONS: Readonly<ResyncOptions> = Object.freeze({
  keysPerSecond: 5000,
  maxInFlight: 32,
  quietMs: 1000,
  listAttempts: 5,
  identityPollMs: 3000,
  claim: DEFAULT_CLAIM_OPTIONS,
  beacon: DEFAULT_BEACON_OPTIONS,
  unlistedHoldMs: 0,
  clock: REAL_CLOCK,
});

/**
 * Why a run started: marked up again, a restart seen by the identity poll, a lost connection
 * to the same process (reconcile: it may have missed writes), added by a
 * config reload, a run a reload interrupted (started again under the new ring), a
 * membership change that moved keys to the backend (removal, more replicas, weights:
 * a fill, in refresh mode), copies left outside their replica sets to drop (a shed,
 * after another run completed), or asked for.
 */
export type ResyncCause = 'up' | 'restarted' | 'reconnected' | 'added' | 'reload' | 'membership' | 'shed' | 'manual';

/** Where progress goes: metrics and logs. `backend` is the address being refilled. */
export interface ResyncEvents {
  started(backend: string, cause: ResyncCause): void;
  copied(backend: string): void;
  skipped(backend: string): void;
  /** Its keys could not all be listed: it stays distrusted `ms` longer (see resync-run.ts, hold). */
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
  /** elsewhere: no run here, but another sidecar's run copies into it or it is marked down (or a count cannot be read): distrusted. */
  state: 'idle' | 'elsewhere' | 'waiting' | 'listing' | 'copying' | 'pruning' | 'holding';
  /** Totals since the proxy started, over every run for this backend. */
  copied: number;
  skipped: number;
  pruned: number;
  /** Of the runs going on (resync, fill, shed): keys still to copy or check, and copies in flight. */
  pending: number;
  inFlight: number;
}

type Identity = { pid: number; startedAt: number };
type Totals = { copied: number; skipped: number; pruned: number };

export class Resyncer implements ResyncHooks {
  private readonly opts: ResyncOptions;
  /** The current run per backend: it is resyncing (read last, deciding nothing) until the run ends. */
  private readonly current = new Map<Backend, ResyncRun>();
  /**
   * Fills: runs that copy in the keys a membership change gave a backend, while it
   * stays trusted (it decides nothing for those keys: their authority is a member
   * that held them before the change).
   */
  private readonly fills = new Map<Backend, ResyncRun>();
  /** Sheds: runs that delete the copies a backend holds outside their keys' replica sets. Trusted too. */
  private readonly sheds = new Map<Backend, ResyncRun>();
  /** Every run not yet settled, current or aborted: their copies in flight still matter to deletes. */
  private readonly live = new Set<ResyncRun>();
  private readonly totals = new Map<Backend, Totals>();
  /** Last identity seen per backend, kept while it is down; null = unknown (the next poll records it). */
  private readonly identities = new Map<Backend, Identity | null>();
  /**
   * Backends that lost a connection and whose identity is not yet checked: they
   * count as resyncing (read last, deciding nothing) until it is.
   */
  private readonly suspects = new Set<Backend>();
  private readonly unsubscribe: Array<() => void> = [];
  private pollTimer: NodeJS.Timeout | null = null;
  /** The identity round running now, if any: a caller arriving meanwhile waits for it. */
  private round: Promise<void> | null = null;
  private closed = false;
  /** Who this process is in a refill claim. */
  private readonly owner = randomUUID();
  /** Every sidecar's runs, as the backends count them. */
  private readonly watch: BeaconWatch;
  /** Every sidecar's fills, as the backends count them. */
  private readonly fillWatch: BeaconWatch;
  /** Every sidecar's down-marks, as the backends hold them (mark-watch.ts). */
  private readonly markWatch: MarkWatch;
  /** This sidecar's own down-marks, and the notice after a stall (down-marks.ts). */
  private readonly marks: DownMarks;
  /** Backends this sidecar trusts again since a moment ago: writes of their keys wait (see settle()). */
  private readonly settling = new Map<Backend, Promise<void>>();
  /** The nap requests take while a watch is stale (see catchingUp). */
  private napping: Promise<void> | null = null;
  /** Runs whose part of the count could not be taken back (the target went down): tried again when it is up. */
  private readonly unlowered = new Map<Backend, RunBeacon[]>();

  constructor(
    private readonly ring: ReplicaRing,
    private readonly backends: readonly Backend[],
    private readonly events: ResyncEvents = SILENT_RESYNC_EVENTS,
    options: Partial<ResyncOptions> = {},
  ) {
    this.opts = { ...DEFAULT_RESYNC_OPTIONS, ...options };
    // Another sidecar's run or mark ended: a third sidecar may still distrust the backend for
    // a watch round, deciding its keys elsewhere, so this one settles as after a run of its own.
    const settle = (node: MemcachedNode): void => this.trustedAgain(node as Backend);
    this.watch = new BeaconWatch(backends, RUN_BEACON_KEY, this.opts.beacon, settle);
    this.fillWatch = new BeaconWatch(backends, FILL_BEACON_KEY, this.opts.beacon);
    this.markWatch = new MarkWatch(backends, this.opts.beacon, settle);
    this.marks = new DownMarks(backends, this.markWatch);
    for (const b of backends) {
      this.totals.set(b, { copied: 0, skipped: 0, pruned: 0 });
      this.identities.set(b, null);
    }
  }

  /** Listens to the backends and starts the identity poll (its first round records who they are). */
  start(): void {
    for (const b of this.backends) {
      // The identity is kept across down and up: the 'up' run compares it.
      const onUp = (): void => {
        for (const beacon of this.unlowered.get(b) ?? []) void beacon.lower();
        this.unlowered.delete(b);
        void this.resync(b, 'up');
      };
      const onDown = (): void => {
        this.marks.raise(b, b.stalled);
        this.suspects.delete(b); // out of the ring until its return, which starts a run
        this.current.get(b)?.abort('backend down');
        this.fills.get(b)?.abort('backend down');
        this.sheds.get(b)?.abort('backend down');
      };
      const onLost = (): void => void this.verify(b);
      b.on('up', onUp);
      b.on('down', onDown);
      b.on('lost', onLost);
      this.unsubscribe.push(() => {
        b.off('up', onUp);
        b.off('down', onDown);
        b.off('lost', onLost);
      });
    }
    this.watch.start();
    this.fillWatch.start();
    this.markWatch.start();
    void this.checkIdentities();
    this.pollTimer = setInterval(() => void this.checkIdentities(), this.opts.identityPollMs);
    this.pollTimer.unref();
  }

  /**
   * Starts refilling `backend` (restarting a run already going). Resolves with
   * the run's result; null when it cannot start (closed, or the backend is not up).
   */
  resync(backend: Backend, cause: ResyncCause = 'manual'): Promise<ResyncResult | null> {
    if (this.closed || !backend.isUp()) return Promise.resolve(null);
    // A fill or a shed leaves the backend trusted; any other run distrusts it until it ends.
    const runs = cause === 'membership' ? this.fills : cause === 'shed' ? this.sheds : this.current;
    if (runs === this.current) this.suspects.delete(backend); // the run covers it from now on
    runs.get(backend)?.abort('restarted');
    const totals = this.totals.get(backend) ?? { copied: 0, skipped: 0, pruned: 0 };
    this.totals.set(backend, totals);
    const address = backend.address;
    // The count the run keeps on its target, and this sidecar's watch of it; a shed only deletes: none.
    const watch = runs === this.current ? this.watch : runs === this.fills ? this.fillWatch : null;
    const beacon = watch === null ? null : new RunBeacon(backend, watch);
    const run = new ResyncRun(backend, this.backends, this.ring, this.opts, {
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
    }, {
      mode: this.modeOf(backend, cause),
      isResyncing: (node) => this.isResyncing(node),
      claim: () => {
        const id = this.identities.get(backend) ?? null;
        return id === null ? null : new RefillClaim(backend, id, this.owner, { ...this.opts.claim, clock: this.opts.clock });
      },
      // A fill or a shed leaves its backend trusted: holding it would change nothing.
      holdMs: runs === this.current ? this.opts.unlistedHoldMs : 0,
      ...(beacon !== null && { beacon }),
    });
    runs.set(backend, run);
    this.live.add(run);
    this.events.started(address, cause);
    return run.done.then((result) => {
      this.live.delete(run);
      if (beacon?.owes) this.unlowered.set(backend, [...(this.unlowered.get(backend) ?? []), beacon]);
      if (runs.get(backend) === run) runs.delete(backend);
      // Trusted here again (a run ended, and no newer one goes on): the other sidecars may trust it too.
      if (runs === this.current && !this.current.has(backend) && backend.isUp()) {
        // From now, and again from when the holders took the mark down: others read it from then.
        this.trustedAgain(backend);
        void this.marks.lower(backend).then(() => this.trustedAgain(backend));
      }
      this.events.finished(address, result, this.current.has(backend));
      // The backend is a full member again: what stand-ins hold of its keys is garbage now.
      if (runs === this.current && result.outcome === 'done' && !this.closed) {
        for (const b of this.backends) void this.resync(b, 'shed');
      }
      return result;
    });
  }

  private modeOf(backend: Backend, cause: ResyncCause): Promise<ResyncMode> {
    if (cause === 'restarted') return Promise.resolve('refill');
    // An added backend may hold copies from an earlier time in the list, and a run a reload
    // interrupted may have been any mode: the key's authority decides each of its keys.
    if (cause === 'membership' || cause === 'added' || cause === 'reload') return Promise.resolve('refresh');
    if (cause === 'shed') return Promise.resolve('shed');
    return this.modeFor(backend);
  }

  /** refill when the backend's identity changed since last seen, else reconcile (see the head comment). */
  private async modeFor(backend: Backend): Promise<ResyncMode> {
    const id = await backend.identity();
    if (id.status !== 'ok') return 'reconcile';
    return this.recordIdentity(backend, id) ? 'refill' : 'reconcile';
  }

  /** Records the identity just read; true when it is another process than the one last seen (a restart). */
  private recordIdentity(backend: Backend, id: Identity): boolean {
    const known = this.identities.get(backend) ?? null;
    this.identities.set(backend, { pid: id.pid, startedAt: id.startedAt });
    return known !== null && (known.pid !== id.pid || known.startedAt !== id.startedAt);
  }

  /**
   * A reload builds a new Resyncer over the new ring. What it takes from this one:
   * who each backend was (so a restart is still told from a dropped connection),
   * which backends this sidecar did not yet trust (their runs start again), and
   * what its watch saw of every sidecar's runs.
   */
  handOver(): {
    identities: Map<string, Identity | null>;
    distrusted: string[];
    beacons: BeaconsSeen;
    fillBeacons: BeaconsSeen;
    marksSeen: { marks: MarksSeen; othersSeenAt: number };
    marks: MarksHandOver;
  } {
    // By address: a reload that changes connection settings opens new Backend objects.
    return {
      identities: new Map(this.backends.map((b) => [b.address, this.identities.get(b) ?? null])),
      distrusted: this.backends.filter((b) => this.resyncingHere(b)).map((b) => b.address),
      beacons: this.watch.handOver(),
      fillBeacons: this.fillWatch.handOver(),
      marksSeen: this.markWatch.handOver(),
      marks: this.marks.handOver(),
    };
  }

  /** Takes over what a previous Resyncer knew (see handOver); before start(). */
  adopt(previous: Omit<ReturnType<Resyncer['handOver']>, 'distrusted'>): void {
    for (const b of this.backends) {
      const known = previous.identities.get(b.address);
      if (known !== undefined) this.identities.set(b, known);
    }
    this.watch.adopt(previous.beacons);
    this.fillWatch.adopt(previous.fillBeacons);
    this.markWatch.adopt(previous.marksSeen.marks, previous.marksSeen.othersSeenAt);
    this.marks.adopt(previous.marks);
  }

  isResyncing(node: MemcachedNode): boolean {
    return this.resyncingHere(node) || this.watch.busy(node) || this.markWatch.marked(node);
  }

  /**
   * Resolves once this sidecar may write the key: its natural members' watches fresh
   * (catchingUp), none marked down here for a stall or a one-sided drop (the notice,
   * down-marks.ts) or with a lost connection not yet checked, none just trusted again
   * (settle). Undefined: at once (the common case).
   */
  handingOver(key: Buffer): Promise<void> | undefined {
    const stale = this.heldBack(key, true);
    if (stale !== undefined) return stale;
    if (!this.marks.noticing && this.settling.size === 0 && this.suspects.size === 0) return undefined;
    const order = this.ring.ringOrder(key);
    for (let i = 0; i < this.ring.replicas; i++) {
      const node = order[i] as Backend;
      // A lost connection not yet checked: a notice may follow (see verify). Reads need not wait.
      if (this.suspects.has(node)) return this.nap();
      const wait = this.marks.notice(node) ?? this.settling.get(node);
      if (wait !== undefined) return wait;
    }
    return undefined;
  }

  /**
   * Resolves (after a short nap: the caller asks again) while a watch is stale for a
   * natural member of the key, and holds requests back (see WatchRounds, run-beacon.ts);
   * undefined: at once, the common case.
   */
  catchingUp(key: Buffer): Promise<void> | undefined {
    return this.heldBack(key, false);
  }

  /** catchingUp, and with `decisions` (writes) a count seen above 0 in an answer too old to act on. */
  private heldBack(key: Buffer, decisions: boolean): Promise<void> | undefined {
    const t = now();
    if (!this.backends.some((b) => this.holdsBack(b, t, decisions))) return undefined;
    const order = this.ring.ringOrder(key);
    for (let i = 0; i < this.ring.replicas; i++) if (this.holdsBack(order[i], t, decisions)) return this.nap();
    return undefined;
  }

  private holdsBack(node: MemcachedNode, t: number, decisions: boolean): boolean {
    // The common case first.
    if (!this.watch.holdsBack(node, t, decisions) && !this.markWatch.holdsBack(node, t, decisions)) return false;
    // Its own run distrusts it anyway; a backend down is no member.
    return node.isUp() && !this.resyncingHere(node);
  }

  /** One timer for every request waiting on a stale watch. */
  private nap(): Promise<void> {
    this.napping ??= new Promise<void>((resolve) => setTimeout(resolve, STALE_NAP_MS)).finally(() => {
      this.napping = null;
    });
    return this.napping;
  }

  /**
   * This sidecar trusts `backend` again (its run ended, or it read another sidecar's
   * count lowered); the others follow when they read the lowered count, within a watch
   * round. Until then they may still decide its keys on another member: writes of its
   * keys wait here that long.
   */
  private settle(backend: Backend): void {
    if (this.closed || !backend.isUp()) return;
    const settled = new Promise<void>((resolve) => setTimeout(resolve, this.opts.beacon.watchMs + SETTLE_MARGIN_MS)).finally(() => {
      if (this.settling.get(backend) === settled) this.settling.delete(backend);
    });
    this.settling.set(backend, settled);
  }

  /**
   * One of this sidecar's reasons to distrust `backend` went away: it settles if none
   * is left. Only then: each settling pause holds writes, and a pause per reason would
   * add up (a run's end, its count lowered, another sidecar's mark lowered, within a
   * second) past what a PHP client waits for one request. Staleness is not a reason
   * here: a stale watch holds requests back anyway (catchingUp), and trust it regains
   * when fresh again is trust it never gave up.
   */
  private trustedAgain(backend: Backend): void {
    if (this.resyncingHere(backend) || this.watch.countSeen(backend) || this.markWatch.countSeen(backend)) return;
    this.settle(backend);
  }

  /** A fill through any sidecar may be copying into it (FILL_BEACON_KEY). */
  isFilling(node: MemcachedNode): boolean {
    return this.fillWatch.busy(node);
  }

  /** This sidecar's own reasons: a run of its own, or a lost connection not yet checked. */
  resyncingHere(node: MemcachedNode): boolean {
    for (const [backend] of this.current) if (backend === node) return true;
    for (const backend of this.suspects) if (backend === node) return true;
    return false;
  }

  /**
   * A backend lost a connection: distrust it until its identity is read, and hold
   * writes of its keys meanwhile (see handingOver). A new pid or start time is a
   * restart (refill), which every sidecar saw: their connections dropped too. The
   * same process (or none read in trustMs) is a dropped connection, reconciled (it
   * may have missed writes); it may have dropped for this sidecar only, which the
   * others cannot see, so it is marked down to them, with the notice of a stall,
   * before writes of its keys go on without it. Down meanwhile: its return starts a run.
   */
  private async verify(backend: Backend): Promise<void> {
    if (this.closed) return;
    this.suspects.add(backend);
    const since = now();
    for (let attempt = 0; this.suspects.has(backend) && !this.closed; attempt++) {
      if (!backend.isUp()) return; // the 'up' run takes over
      const id = await backend.identity();
      if (!this.suspects.has(backend) || this.closed) return;
      if (id.status === 'ok' || now() - since > this.opts.beacon.trustMs) {
        const restarted = id.status === 'ok' && this.recordIdentity(backend, id);
        // Before the run takes the backend off the suspects: the notice holds its keys' writes from here.
        if (!restarted) this.marks.raise(backend, true);
        // The same process: requests that failed with the connection may have missed it (or
        // run on it after their timeout), so it is reconciled before it is trusted again.
        void this.resync(backend, restarted ? 'restarted' : 'reconnected');
        return;
      }
      await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt)));
    }
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

  /**
   * One round of the restart check: a backend whose pid or start time changed
   * since the last round restarted (its data is gone) and is refilled.
   */
  checkIdentities(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.round ??= this.identityRound().finally(() => {
      this.round = null;
    });
    return this.round;
  }

  private async identityRound(): Promise<void> {
    await Promise.all(
      this.backends.map(async (b) => {
        if (!b.isUp()) return;
        const id = await b.identity();
        if (id.status !== 'ok' || this.closed || !b.isUp()) return;
        if (this.recordIdentity(b, id)) void this.resync(b, 'restarted');
      }),
    );
  }

  progress(): ResyncProgress[] {
    return this.backends.map((b) => {
      const runs = [this.current.get(b), this.fills.get(b), this.sheds.get(b)].filter((r): r is ResyncRun => r !== undefined);
      const run = runs[0];
      const totals = this.totals.get(b) ?? { copied: 0, skipped: 0, pruned: 0 };
      return {
        backend: b.address,
        state:
          run !== undefined
            ? run.phase === 'finished'
              ? 'copying'
              : run.phase
            : this.watch.busy(b) || this.markWatch.marked(b)
              ? 'elsewhere'
              : 'idle',
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
      // Another sidecar's run counts: this sidecar distrusts the backend until it ends.
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

  /** Stops polling and every run; resolves when their copies in flight have landed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    this.pollTimer = null;
    this.watch.stop();
    this.fillWatch.stop();
    this.markWatch.stop();
    this.marks.close();
    for (const off of this.unsubscribe.splice(0)) off();
    const runs = [...this.live];
    for (const run of runs) run.abort('closing');
    await Promise.all(runs.map((run) => run.done));
  }
}
