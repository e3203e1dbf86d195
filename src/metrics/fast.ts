// Per-request metrics without prom-client on the hot path. prom-client hashes
// the label object on every inc() and observe(), even through labels()
// children; at tens of thousands of requests a second that shows in profiles.
// Here a series is looked up once and kept: counting is a number increment,
// observing a short bucket scan. prom-client sees the figures at scrape time.

import { Counter, Histogram, type HistogramConfiguration, type LabelValues, type MetricValueWithName } from 'prom-client';

type HistogramData<T extends string> = Awaited<ReturnType<Histogram<T>['get']>>;

/** One histogram series: counts per bucket (not cumulative; the last is +Inf), sum and count. */
export class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

/**
 * A prom-client Histogram whose series live in plain arrays: registered and
 * exported like any other, and `observe(labels, v)` still works, but the hot
 * path takes a series once with series() and calls its observe(v).
 */
export class FastHistogram<T extends string> extends Histogram<T> {
  private readonly bounds: number[];
  private readonly names: readonly T[];
  private readonly fullName: string;
  private readonly all = new Map<string, HistogramSeries>();

  constructor(config: HistogramConfiguration<T> & { buckets: number[] }) {
    super(config);
    this.bounds = [...config.buckets].sort((a, b) => a - b);
    this.names = config.labelNames ?? [];
    this.fullName = config.name;
    // prom-client's constructor sets observe as an own property; ours must win.
    this.observe = FastHistogram.prototype.observe;
  }

  /** The series for these labels, created on first use; keep it. */
  series(labels: LabelValues<T>): HistogramSeries {
    const key = this.key(labels);
    let s = this.all.get(key);
    if (s === undefined) {
      const own: Record<string, string> = {};
      for (const n of this.names) own[n] = String(labels[n] ?? '');
      s = new HistogramSeries(own, this.bounds);
      this.all.set(key, s);
    }
    return s;
  }

  override observe(labelsOrValue: LabelValues<T> | number | { labels?: LabelValues<T>; value: number }, value?: number): void {
    if (typeof labelsOrValue === 'number') this.series({}).observe(labelsOrValue);
    else if (value !== undefined) this.series(labelsOrValue as LabelValues<T>).observe(value);
    else if ('value' in labelsOrValue && typeof labelsOrValue.value === 'number') {
      this.series(labelsOrValue.labels ?? {}).observe(labelsOrValue.value);
    }
  }

  override remove(...args: [LabelValues<T>] | string[]): void {
    const first = args[0];
    const labels: LabelValues<T> = {};
    if (typeof first === 'object') Object.assign(labels, first);
    else this.names.forEach((n, i) => ((labels as Record<string, string | undefined>)[n] = args[i] as string | undefined));
    this.all.delete(this.key(labels));
  }

  override reset(): void {
    // prom-client's constructor calls reset() before this class's fields exist.
    super.reset();
    if (this.all !== undefined) this.all.clear();
  }

  override zero(labels: LabelValues<T>): void {
    const s = this.series(labels);
    s.counts.fill(0);
    s.sum = 0;
    s.count = 0;
  }

  override get(): Promise<HistogramData<T>> {
    return Promise.resolve(this.export());
  }

  /** What the registry exports (prom-client calls this instead of get() when it exists). */
  getForPromString(): Promise<HistogramData<T>> {
    return Promise.resolve(this.export());
  }

  private export(): HistogramData<T> {
    // prom-client keeps these on the instance; its typings do not declare them.
    const { name, help, type, aggregator, collect } = this as unknown as HistogramData<T>;
    const values: MetricValueWithName<T>[] = [];
    for (const s of this.all.values()) {
      const labels = s.labels as LabelValues<T>;
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += s.counts[i];
        const le = i < this.bounds.length ? this.bounds[i] : '+Inf';
        values.push({ metricName: `${this.fullName}_bucket`, labels: { le, ...labels } as LabelValues<T>, value: cumulative });
      }
      values.push({ metricName: `${this.fullName}_sum`, labels, value: s.sum });
      values.push({ metricName: `${this.fullName}_count`, labels, value: s.count });
    }
    return { name, help, type, aggregator, collect, values };
  }

  private key(labels: LabelValues<T>): string {
    let k = '';
    for (const n of this.names) k += `${labels[n] ?? ''}\u0000`;
    return k;
  }
}

/** One counter series counted in a plain number. */
export class CounterCell {
  n = 0;
  /** How much of n prom-client has been given. */
  folded = 0;

  constructor(readonly labels: Readonly<Record<string, string>>) {}
}

/** Plain-number cells for a prom-client Counter, added to it when it is collected (pass fold() as its collect). */
export class CounterCells<T extends string> {
  private readonly cells = new Map<string, CounterCell>();
  private counter: Counter<T> | null = null;

  constructor(private readonly labelNames: readonly T[]) {}

  attach(counter: Counter<T>): void {
    this.counter = counter;
  }

  /** The cell for these labels, created on first use; keep it. */
  cell(labels: Readonly<Record<T, string>>): CounterCell {
    let key = '';
    for (const n of this.labelNames) key += `${labels[n]}\u0000`;
    let c = this.cells.get(key);
    if (c === undefined) {
      c = new CounterCell({ ...labels });
      this.cells.set(key, c);
      // The series is exported from now on, at 0 until its first count.
      this.counter?.inc(c.labels as LabelValues<T>, 0);
    }
    return c;
  }

  /** Forgets the cells matching every given label (their series are removed from the counter by the caller). */
  drop(match: Partial<Record<T, string>>): void {
    for (const [key, c] of this.cells) {
      if (this.labelNames.every((n) => match[n] === undefined || c.labels[n] === match[n])) this.cells.delete(key);
    }
  }

  fold(): void {
    if (this.counter === null) return;
    for (const c of this.cells.values()) {
      if (c.n > c.folded) {
        this.counter.inc(c.labels as LabelValues<T>, c.n - c.folded);
        c.folded = c.n;
      }
    }
  }
}
