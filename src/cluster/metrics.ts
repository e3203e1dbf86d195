// The primary's /metrics with --workers N: the workers' registries combined by
// each metric's `aggregator` (src/metrics/registry.ts), then the primary's own
// (the reload and discovery metrics).
//
// Counters never go backwards when a worker dies: the primary keeps the last
// counters and histograms it read from each worker (on every scrape, and every
// REFRESH_MS), and when a worker exits, adds them to the retired totals that
// every later scrape includes. What a crashed worker counted after the primary
// last read it (at most REFRESH_MS) is lost; nothing already exported is taken back.

import { AggregatorRegistry, Registry } from 'prom-client';
import { DISCOVERY_METRIC_NAMES, RELOAD_METRIC_NAMES } from '../metrics/registry';

/** The metrics of what only the primary does: reloading, asking DNS. */
const PRIMARY_METRIC_NAMES: readonly string[] = [...RELOAD_METRIC_NAMES, ...DISCOVERY_METRIC_NAMES];
import type { MetricsJson } from './messages';

/** How long a scrape waits for a worker's answer; one that is late counts with its last answer. */
const ANSWER_TIMEOUT_MS = 1000;
/** How often the primary reads the workers' metrics between scrapes, to bound what a crash loses. */
const REFRESH_MS = 5000;

/** How the primary asks one worker for its metrics. */
export interface MetricsSource {
  readonly id: number;
  request(requestId: number): void;
}

// prom-client's typings say MetricType is a numeric enum; at run time `type` is the exposition's word.
const isMonotonic = (m: MetricsJson[number]): boolean => ['counter', 'histogram'].includes(String(m.type));

export class ClusterMetrics extends Registry {
  /** The last metrics each live worker sent. */
  private readonly last = new Map<number, MetricsJson>();
  /** Counters and histograms of the workers that exited, summed. */
  private retired: MetricsJson = [];
  /** The backends listed now (null: not told yet): retired series of any other backend are dropped. */
  private listed: readonly string[] | null = null;
  private retiring: Promise<void> = Promise.resolve();
  private nextId = 0;
  private readonly waiting = new Map<number, { pending: Set<number>; done: () => void }>();
  private readonly refresher: NodeJS.Timeout;

  constructor(private readonly workers: () => MetricsSource[]) {
    super();
    this.refresher = setInterval(() => void this.refresh(), REFRESH_MS).unref();
  }

  /** A worker's answer to a request. */
  answer(workerId: number, requestId: number, metrics: MetricsJson): void {
    // The primary's own metrics are not the workers' to report.
    this.last.set(workerId, metrics.filter((m) => !PRIMARY_METRIC_NAMES.includes(m.name)));
    const w = this.waiting.get(requestId);
    if (w === undefined) return;
    w.pending.delete(workerId);
    if (w.pending.size === 0) w.done();
  }

  /** A worker exited: its last counters and histograms join the retired totals. */
  retire(workerId: number): void {
    const last = this.last.get(workerId);
    this.last.delete(workerId);
    if (last === undefined) return;
    const monotonic = last.filter(isMonotonic);
    this.retiring = this.retiring.then(async () => {
      this.retired = this.onlyListed(await AggregatorRegistry.aggregate([this.retired, monotonic]).getMetricsAsJSON());
    });
  }

  /** After a reload: the retired series of backends no longer listed go, as the workers drop theirs. */
  keepBackends(addresses: readonly string[]): void {
    this.retiring = this.retiring.then(() => {
      this.listed = addresses;
      this.retired = this.onlyListed(this.retired);
    });
  }

  private onlyListed(metrics: MetricsJson): MetricsJson {
    const listed = this.listed;
    if (listed === null) return metrics;
    const keep = (labels: Partial<Record<string, string | number>>): boolean => labels.backend === undefined || listed.includes(String(labels.backend));
    return metrics.map((m) => ({ ...m, values: m.values.filter((v) => keep(v.labels)) }));
  }

  override async metrics(): Promise<string> {
    await this.refresh();
    await this.retiring;
    const combined = AggregatorRegistry.aggregate([...this.last.values(), this.retired]);
    return (await combined.metrics()) + (await super.metrics());
  }

  stop(): void {
    clearInterval(this.refresher);
  }

  /** Asks every worker for its metrics; resolves when all answered, or after ANSWER_TIMEOUT_MS. */
  private refresh(): Promise<void> {
    const sources = this.workers();
    if (sources.length === 0) return Promise.resolve();
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(), ANSWER_TIMEOUT_MS);
      const finish = (): void => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve();
      };
      this.waiting.set(id, { pending: new Set(sources.map((s) => s.id)), done: finish });
      for (const s of sources) s.request(id);
    });
  }
}
