// backendsFrom: the backend list DNS gives, asked again at the answer's TTL.
//
//   start ── first() ── asks until an answer is usable (waiting, not serving, meanwhile)
//              │
//              └─> the proxy starts on it ── follow(apply) ──┐
//                                                            ▼
//        ┌──────────── wait: TTL clamped to minRefreshMs..maxRefreshMs ◄─────┐
//        ▼                                                                   │
//      resolve ──usable, same list──────────────────────────────────────────┤
//        ├──usable, another list──> apply (a reload, trigger "dns") ────────┤
//        └──failed or unusable──> the last good list stays; logged once per ┘
//                                 episode, counted by reason; wait minRefreshMs
//
// A failure (NXDOMAIN, SERVFAIL, timeout, refused), an empty answer, or one with fewer
// backends than `replicas`, never changes the membership: a name that briefly fails to
// resolve does not empty the ring or flap it. Only a usable answer that lists other
// backends is a membership change, and it goes through the reload path
// (src/reload.ts -> proxy.reload: trust agreement, refill, re-replication).

import { Resolver } from 'node:dns/promises';
import type { BackendConfig, BackendsFrom, DiscoveryConfig } from '../config';
import type { Logger } from '../log';
import type { DiscoveryFailureReason, DiscoveryMetrics } from '../metrics/registry';
import { resolveBackends, type Answer } from './resolve';

/** A query's first timeout; c-ares doubles it on the second try. */
const QUERY_TIMEOUT_MS = 2000;
const QUERY_TRIES = 2;

/** The settings of the moment: a reload may change them. */
export interface DiscoverySettings {
  discovery: DiscoveryConfig;
  replicas: number;
}

export interface DiscoveryOptions {
  from: BackendsFrom;
  settings: () => DiscoverySettings;
  logger: Logger;
  /** Asks DNS once; default: a node:dns Resolver on the configured servers. */
  resolve?: (from: BackendsFrom, discovery: DiscoveryConfig) => Promise<Answer>;
  /** Waits `ms`, or until `signal` aborts; default: a timer (it keeps the process alive while it waits for a first answer). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Unix time in seconds: the last-success metric, how long an episode of failures lasted. */
  now?: () => number;
  /** Told once per episode of failures before the first usable answer (the CLI prints it). */
  waiting?: (reason: DiscoveryFailureReason, detail: string, retryMs: number) => void;
}

/** node:dns on the configured servers (the system's when none are). */
export function resolveWithNodeDns(from: BackendsFrom, discovery: DiscoveryConfig): Promise<Answer> {
  const resolver = new Resolver({ timeout: QUERY_TIMEOUT_MS, tries: QUERY_TRIES });
  if (discovery.servers !== null) resolver.setServers(discovery.servers);
  return resolveBackends(from, resolver);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

const sameList = (a: readonly BackendConfig[], b: readonly BackendConfig[]): boolean =>
  a.length === b.length && a.every((x, i) => x.address === b[i].address && x.weight === b[i].weight);

export class BackendDiscovery {
  private good: BackendConfig[] | null = null;
  /** The episode of failures under way: since when (now()'s seconds), how many. */
  private failing: { since: number; count: number } | null = null;
  private metrics: DiscoveryMetrics | null = null;
  /** Failures before the metrics were attached (while the proxy was not started yet). */
  private readonly early = new Map<DiscoveryFailureReason, number>();
  private lastSuccess = 0;
  /** The wait the last answer asked for. */
  private next = 0;
  private readonly stopping = new AbortController();
  private readonly resolve: (from: BackendsFrom, discovery: DiscoveryConfig) => Promise<Answer>;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly now: () => number;

  constructor(private readonly opts: DiscoveryOptions) {
    this.resolve = opts.resolve ?? resolveWithNodeDns;
    this.sleep = opts.sleep ?? sleep;
    this.now = opts.now ?? (() => Date.now() / 1000);
  }

  /** The last usable answer's backends; empty before the first. */
  get backends(): BackendConfig[] {
    return this.good ?? [];
  }

  /** Asks until an answer is usable, waiting minRefreshMs between tries; its backends. */
  async first(): Promise<BackendConfig[]> {
    for (;;) {
      const delay = await this.step();
      if (this.good !== null) return this.good;
      if (this.stopping.signal.aborted) return [];
      await this.sleep(delay, this.stopping.signal);
    }
  }

  /**
   * From now on asks again at each answer's TTL (within the bounds), and calls `apply` whenever
   * a usable answer differs from what `running` returns: the membership the proxy runs. An
   * `apply` that was refused (false) is tried again after the next answer.
   */
  follow(metrics: DiscoveryMetrics, apply: (backends: BackendConfig[]) => boolean, running: () => BackendConfig[]): void {
    this.metrics = metrics;
    for (const [reason, n] of this.early) metrics.discoveryFailures.inc({ reason }, n);
    this.early.clear();
    metrics.discoveryBackends.set(this.backends.length);
    metrics.discoveryLastSuccess.set(this.lastSuccess);
    void (async () => {
      let delay = this.next;
      while (!this.stopping.signal.aborted) {
        await this.sleep(delay, this.stopping.signal);
        if (this.stopping.signal.aborted) return;
        delay = await this.step();
        if (this.good !== null && !sameList(this.good, running()) && apply(this.good)) metrics.discoveryChanges.inc();
      }
    })();
  }

  stop(): void {
    this.stopping.abort();
  }

  /** How long to wait after this answer: its TTL within the bounds; the lower bound after a failure or without a TTL. */
  private delayAfter(answer: Answer): number {
    const { minRefreshMs, maxRefreshMs } = this.opts.settings().discovery;
    if (!answer.ok || answer.ttlMs === null) return minRefreshMs;
    return Math.min(maxRefreshMs, Math.max(minRefreshMs, answer.ttlMs));
  }

  /** Asks once and takes the answer in: the last good list, the log, the metrics. Returns the wait before the next. */
  private async step(): Promise<number> {
    const { from, logger } = this.opts;
    const settings = this.opts.settings();
    let answer: Answer;
    try {
      answer = await this.resolve(from, settings.discovery);
    } catch (err) {
      answer = { ok: false, reason: 'error', detail: err instanceof Error ? err.message : String(err) };
    }
    if (answer.ok && answer.backends.length < settings.replicas) {
      const listed = answer.backends.map((b) => b.address).join(', ');
      answer = { ok: false, reason: 'too_few', detail: `${answer.backends.length} backends (${listed}), fewer than replicas (${settings.replicas})` };
    }
    const delay = this.delayAfter(answer);
    this.next = delay;
    if (!answer.ok) {
      const { reason, detail } = answer;
      if (this.metrics === null) this.early.set(reason, (this.early.get(reason) ?? 0) + 1);
      else this.metrics.discoveryFailures.inc({ reason });
      const log = { backendsFrom: from.url, reason, detail, retryMs: delay };
      if (this.failing !== null) {
        this.failing.count++;
        logger.debug(log, 'DNS: still no usable answer');
      } else {
        this.failing = { since: this.now(), count: 1 };
        if (this.good === null) {
          logger.warn(log, 'DNS: no usable answer yet; not serving until one comes');
          this.opts.waiting?.(reason, detail, delay);
        } else {
          logger.warn({ ...log, kept: this.good.map((b) => b.address) }, 'DNS: no usable answer; the last good backends stay');
        }
      }
      return delay;
    }
    if (this.failing !== null) {
      logger.info({ backendsFrom: from.url, failures: this.failing.count, forMs: Math.round((this.now() - this.failing.since) * 1000) }, 'DNS: usable answers again');
      this.failing = null;
    }
    if (this.good === null) logger.info({ backendsFrom: from.url, backends: answer.backends.map((b) => b.address) }, 'DNS: backends found');
    this.good = answer.backends;
    this.lastSuccess = this.now();
    this.metrics?.discoveryBackends.set(this.good.length);
    this.metrics?.discoveryLastSuccess.set(this.lastSuccess);
    return delay;
  }
}
