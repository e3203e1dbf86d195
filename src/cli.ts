#!/usr/bin/env node
// Command line: arguments, the local-memcached default, signals, exit codes.
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
import { ConfigReloader } from './reload';
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

/**
 * Loads the config again for a reload: same arguments, so the flags still win over
 * the file. Without backends in it, the local memcached started at start-up stay.
 */
function reloadLoader(args: RunArgs, localBackends: BackendConfig[] | null): () => Config {
  return () => {
    const next = loadConfig(args);
    if (next.backends.length > 0) return next;
    if (localBackends !== null) return { ...next, backends: localBackends };
    throw new ConfigError('backends', 'cannot be left out on reload (starting local memcached needs a restart)', next.configPath);
  };
}

/** --workers N: this process only forks, reloads, serves the workers' metrics, and relays signals. */
async function runPrimary(config: Config, logger: Logger, local: LocalMemcached | null, load: () => Config): Promise<void> {
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
function announce(config: Config, logger: Logger, proxy: RunningProxy, local: LocalMemcached | null): void {
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
  announce(config, logger, proxy, null);
}

async function main(): Promise<void> {
  if (isWorker()) {
    await runWorker();
    return;
  }
  const { args, config } = configOrExit(process.argv.slice(2));
  const logger = createLogger(config.logLevel);

  let local: LocalMemcached | null = null;
  if (config.backends.length === 0) {
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
  const load = reloadLoader(args, local === null ? null : config.backends);

  if (config.workers > 1) {
    await runPrimary(config, logger, local, load);
    return;
  }
  const proxy = await serve(config, logger, local);
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
}

main().catch((err: Error) => {
  process.stderr.write(`replicached: ${err.message}\n`);
  process.exit(1);
});
