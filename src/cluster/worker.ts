// A worker's side of --workers N (see primary.ts): it asks the primary for the
// config, applies every config the primary sends after a reload, answers the
// primary's metrics requests, and reports its readiness when it changes.

import type { Config } from '../config';
import type { Logger } from '../log';
import type { RunningProxy } from '../proxy';
import { isOurs, type ToPrimary, type ToWorker } from './messages';

/** How often a worker checks its own readiness, to report a change to the primary. */
const READY_CHECK_MS = 250;

function send(message: ToPrimary): void {
  process.send?.(message);
}

export class PrimaryLink {
  /** The newest config the primary sent. */
  private latest: Config | null = null;
  private gotFirst: (() => void) | null = null;
  private proxy: RunningProxy | null = null;
  private logger: Logger | null = null;

  /** Listens from now on: a reload's config sent while the proxy starts is not lost. */
  constructor() {
    process.on('message', (message) => {
      if (isOurs<ToWorker>(message)) void this.onMessage(message);
    });
    send({ replicached: 'config?' });
  }

  /** The config to start with: the primary's current one. */
  async config(): Promise<Config> {
    if (this.latest === null) await new Promise<void>((resolve) => (this.gotFirst = resolve));
    return this.latest!;
  }

  /** From now on `proxy` runs the primary's configs, and the primary can read its metrics and readiness. */
  follow(proxy: RunningProxy, logger: Logger): void {
    this.proxy = proxy;
    this.logger = logger;
    // A reload that came while the proxy started.
    if (this.latest !== null && this.latest !== proxy.config) this.apply(this.latest);
    let ready = proxy.isReady();
    send({ replicached: 'ready', ready });
    setInterval(() => {
      if (proxy.isReady() === ready) return;
      ready = !ready;
      send({ replicached: 'ready', ready });
    }, READY_CHECK_MS).unref();
  }

  private async onMessage(message: ToWorker): Promise<void> {
    if (message.replicached === 'config') {
      this.latest = message.config;
      this.gotFirst?.();
      this.gotFirst = null;
      if (this.proxy !== null) this.apply(message.config);
      return;
    }
    const metrics = this.proxy === null ? [] : await this.proxy.metrics.registry.getMetricsAsJSON();
    send({ replicached: 'metrics', id: message.id, metrics });
  }

  private apply(config: Config): void {
    const changes = this.proxy!.reload(config);
    this.logger?.debug({ ...changes, backends: config.backends.length, replicas: config.replicas }, 'worker applied the config from the primary');
  }
}
