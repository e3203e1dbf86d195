#!/usr/bin/env node
// Command line: arguments, the local-memcached default, the first DNS answer of
// backendsFrom (src/discovery/), signals, exit codes.
//   exit 0  stopped by a signal, after draining (a second signal ends the drain at once)
//   exit 1  could not start (port in use, memcached missing, ...)
//   exit 2  invalid flags or config file

import cluster from 'node:cluster';
import { splitAddress } from './backends/backend';
import {
  ConfigError,
  HELP_TEXT,
  LOCAL_BACKEND_COUNT,
  loadConfig,
  parseArgs,
  type BackendConfig,
  type Config,
  type RunArgs,
} from './config';
import { startLocalMemcached, type LocalMemcached } from './local-memcached';
import { localHint, phpIniHint } from './start-hints';
import { createLogger, type Logger } from './log';
import { startProxy, type RunningProxy } from './proxy';
import { isWorker, startPrimary } from './cluster/primary';
import { PrimaryLink } from './cluster/worker';
import { ConfigReloader, type Reloadable } from './reload';
import { BackendDiscovery } from './discovery/discovery';
import type { DiscoveryMetrics } from './metrics/registry';
import { saslFiles } from './sasl-credentials';
import { tlsFiles } from './tls';
import { VERSION } from './version';

function configOrExit(argv: string[]): { args: RunArgs; config: Config } {
  try {
    const args = parseArgs(argv);
    if (args.kind === 'help') {
      process.stdout.write(HELP_TEXT);
      process.exit(0);
    }
    if (args.kind === 'version') {
      process.stdout.write(`replicached ${VERSION}\n`);
      process.exit(0);
    }
    return { args, config: loadConfig(args) };
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`replicached: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** A backend the CLI itself chose: one of its local memcached. */
function backendAt(address: string): BackendConfig {
  return { address, ...splitAddress(address), weight: 1, local: false, zone: null };
}

/** `next` over these backends (DNS's, or the running ones), its replicas checked against them. */
function overBackends(next: Config, backends: BackendConfig[], whose: string): Config {
  if (next.replicas > backends.length) {
    throw new ConfigError('replicas', `must be at most ${backends.length}, the number of backends ${whose}, got ${next.replicas}`, next.configPath);
  }
  return { ...next, backends };
}

/**
 * Loads the config again for a reload: same arguments, so the flags still win over
 * the file. Without backends in it, the local memcached started at start-up stay.
 * With backendsFrom running, the backends are DNS's last usable answer; turning it on,
 * off or to another name needs a restart (the reload says so), and the running list stays.
 */
function reloadLoader(
  args: RunArgs,
  localBackends: BackendConfig[] | null,
  discovery: BackendDiscovery | null,
  running: () => Config,
): () => Config {
  return () => {
    const next = loadConfig(args);
    if (discovery !== null) return overBackends(next, discovery.backends, `DNS gave for ${running().backendsFrom?.url}`);
    if (next.backendsFrom !== null) return overBackends(next, running().backends, 'running (backendsFrom needs a restart)');
    if (next.backends.length > 0) return next;
    if (localBackends !== null) return { ...next, backends: localBackends };
    throw new ConfigError('backends', 'cannot be left out on reload (starting local memcached needs a restart)', next.configPath);
  };
}

/** What the process that owns the config reloads (the proxy, or with --workers the primary), and its reloader. */
interface ConfigOwner {
  target: Reloadable;
  reloader: ConfigReloader;
  metrics: DiscoveryMetrics;
}

/** --workers N: this process only forks, reloads, serves the workers' metrics, and relays signals. */
async function runPrimary(config: Config, logger: Logger, local: LocalMemcached | null, load: () => Config): Promise<ConfigOwner> {
  const primary = await startPrimary(config, logger);
  const port = await primary.listening;
  const listen = `${config.listen.host}:${port}`;
  const metricsAt =
    primary.metricsPort === null ? '' : `metrics on http://${config.metricsListen!.host}:${primary.metricsPort}/metrics\n`;
  let stopping = false;
  const stop = async () => {
    if (stopping) {
      // A second signal: the workers end their drains now.
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      return;
    }
    stopping = true;
    await primary.stop();
    await local?.stop();
    process.exit(0);
  };
  // The primary reloads for the whole tree and sends the result to every worker.
  const reloader = new ConfigReloader({ load, target: primary, logger, metrics: primary.metrics });
  process.on('SIGHUP', () => void reloader.reload('SIGHUP'));
  if (config.configPath !== null) reloader.watch(config.configPath);
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  // Announced after the handlers: whoever waits for this line may signal at once.
  process.stderr.write(`replicached listening on ${listen} (${config.workers} workers)\n${metricsAt}${localHint(local)}${phpIniHint(listen, config)}\n`);
  return { target: primary, reloader, metrics: primary.metrics };
}

/**
 * Waits for DNS's first usable answer for backendsFrom (nothing is served meanwhile: there is
 * no backend to serve from). SIGTERM or SIGINT during the wait exits 0.
 */
async function firstAnswer(discovery: BackendDiscovery): Promise<BackendConfig[]> {
  const stop = (): void => {
    discovery.stop();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  try {
    return await discovery.first();
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  }
}

/** From now on a change in DNS's answer is applied as a reload, with trigger "dns". */
function followDns(discovery: BackendDiscovery, { target, reloader, metrics }: ConfigOwner): void {
  discovery.follow(
    metrics,
    (backends) => reloader.reload('dns', () => ({ ...target.config, backends })),
    () => target.config.backends,
  );
}

/** Starts the proxy and stops it on SIGTERM or SIGINT (draining; a second signal ends the drain). */
async function serve(config: Config, logger: Logger, local: LocalMemcached | null): Promise<RunningProxy> {
  const proxy = await startProxy(config, logger).catch(async (err: Error) => {
    await local?.stop();
    throw err;
  });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      logger.info({ signal }, 'second signal: ending the drain now');
      proxy.endDrain();
      return;
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    await proxy.close();
    await local?.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  return proxy;
}

/**
 * Says where the proxy listens. Called last, once every signal handler is in place:
 * whoever waits for this line may signal at once, and a signal that came before its
 * handler would kill the process with the default action.
 */
function announce(config: Config, logger: Logger, proxy: RunningProxy, local: LocalMemcached | null, banner = true): void {
  const listen = `${config.listen.host}:${proxy.port}`;
  logger.info(
    {
      listen,
      backends: config.backends.map((b) => b.address),
      replicas: config.replicas,
      metrics: proxy.metricsPort === null ? null : `${config.metricsListen!.host}:${proxy.metricsPort}`,
    },
    'replicached listening',
  );
  if (!banner) return;
  const metricsAt = proxy.metricsPort === null ? '' : `metrics on http://${config.metricsListen!.host}:${proxy.metricsPort}/metrics\n`;
  process.stderr.write(`replicached listening on ${listen}\n${metricsAt}${localHint(local)}${phpIniHint(listen, config)}\n`);
}

/**
 * A worker of --workers N: it runs the config its primary sends (at start, after
 * every reload, and when it is a respawned worker) and loads none itself.
 */
async function runWorker(): Promise<void> {
  const link = new PrimaryLink();
  const config = await link.config();
  const logger = createLogger(config.logLevel);
  const proxy = await serve(config, logger, null);
  link.follow(proxy, logger);
  // A SIGHUP sent to a worker alone is ignored: the primary reloads the whole tree.
  process.on('SIGHUP', () => logger.warn('SIGHUP to a worker ignored: send it to the primary, which reloads every worker'));
  // The primary prints the banner for the tree; each worker only logs that it listens.
  announce(config, logger, proxy, null, false);
}

async function main(): Promise<void> {
  if (isWorker()) {
    await runWorker();
    return;
  }
  const { args, config } = configOrExit(process.argv.slice(2));
  const logger = createLogger(config.logLevel);

  let local: LocalMemcached | null = null;
  let discovery: BackendDiscovery | null = null;
  /** The config running now: the start's, until the proxy (or the primary) runs one. */
  let running = (): Config => config;
  if (config.backendsFrom !== null) {
    const from = config.backendsFrom;
    discovery = new BackendDiscovery({
      from,
      settings: () => running(),
      logger,
      waiting: (reason, detail, retryMs) =>
        process.stderr.write(`replicached: waiting for DNS to list the backends (${from.url}): ${reason} (${detail}); asking again every ${retryMs} ms, serving nothing until then\n`),
    });
    config.backends = await firstAnswer(discovery);
  } else if (config.backends.length === 0) {
    local = await startLocalMemcached(LOCAL_BACKEND_COUNT, (exit) => {
      logger.warn({ backend: exit.address, reason: exit.reason, restart: exit.restart }, 'local memcached exited');
      process.stderr.write(
        `replicached: local memcached ${exit.address} exited (${exit.reason}); its keys are served by the other replicas.\n` +
          `  To bring it back (empty; replicached probes it and copies its keys back), run in another shell:\n` +
          `    ${exit.restart}\n  replicached does not stop that one on exit.\n`,
      );
    });
    config.backends = local.addresses.map(backendAt);
    logger.info({ backends: local.addresses, pids: local.pids }, 'no backends configured: started local memcached processes');
  }
  const load = reloadLoader(args, local === null ? null : config.backends, discovery, () => running());

  if (config.workers > 1) {
    const owner = await runPrimary(config, logger, local, load);
    running = () => owner.target.config;
    if (discovery !== null) followDns(discovery, owner);
    return;
  }
  const proxy = await serve(config, logger, local);
  running = () => proxy.config;
  const reloader = new ConfigReloader({ load, target: proxy, logger, metrics: proxy.metrics, applied: () => watchFiles() });
  // The config file, every certificate file and every password file in use are watched: a change reloads.
  const watching = new Map<string, () => void>();
  const watchFiles = (): void => {
    const files = new Set([...(config.configPath === null ? [] : [config.configPath]), ...tlsFiles(proxy.config), ...saslFiles(proxy.config)]);
    for (const [file, unwatch] of watching) {
      if (files.has(file)) continue;
      unwatch();
      watching.delete(file);
    }
    for (const file of files) if (!watching.has(file)) watching.set(file, reloader.watch(file));
  };
  process.on('SIGHUP', () => void reloader.reload('SIGHUP'));
  watchFiles();
  announce(config, logger, proxy, local);
  if (discovery !== null) followDns(discovery, { target: proxy, reloader, metrics: proxy.metrics });
}

main().catch((err: Error) => {
  process.stderr.write(`replicached: ${err.message}\n`);
  process.exit(1);
});
