// Hot reload: the config is loaded again (same RunArgs, so the flags still win)
// on SIGHUP and when the config file changes, and the running proxy applies it.
//
//   SIGHUP ──┐
//   file  ───┴─(debounce)─> load ──invalid──> log line, configReloads{error}; the old config stays
//                             └──valid──> proxy.reload(next) ──> log line, configReloads{ok}
//
// Applied live: backends added, removed, reweighted, marked local or given other
// zones, the sidecar's own zone, replicas,
// backend timeouts and retry settings, limits, allowFlushAll, drainTimeoutMs,
// logLevel, backend TLS (settings and certificate files: every backend is
// re-created with them), client TLS certificates (new connections get them),
// backend SASL credentials (every backend is re-created with them) and the
// client SASL user (authentications from then on check it), the discovery settings.
// Client connections stay open; requests already routed finish on the backends
// they started on. listen, metricsListen, workers, turning client TLS on or off,
// and backendsFrom (turned on or off, or another name) need a restart: a reload
// keeps their running values and says so. A certificate file or a password that
// cannot be read refuses the whole reload.
// A change in DNS's answer for backendsFrom (src/discovery/) is applied as a reload
// too, with the trigger "dns": the running config with the answer's backends.
// At debug level each reload also logs every setting it changed, before and after.

import { watchFile, unwatchFile, type Stats } from 'node:fs';
import type { BackendConfig, Config } from './config';
import type { Logger } from './log';
import { recordReload, type ReloadMetrics } from './metrics/registry';

/** Settings a running process cannot change: they own sockets or processes. */
export const RESTART_FIELDS = ['listen', 'metricsListen', 'workers', 'clientTls', 'backendsFrom'] as const;
type RestartField = (typeof RESTART_FIELDS)[number];

/** What a reload changed, for its log line. */
export interface ReloadChanges {
  added: string[];
  removed: string[];
  /** Backends still listed whose weight, `local` or zone changed. */
  reweighted: string[];
  /** The sidecar's own zone changed: reads prefer other members, placement is the same. */
  zone: boolean;
  /** Connection settings changed: every backend is re-created with them. */
  backendOptions: boolean;
  limits: boolean;
  /** Changed in the file but kept at their running values until a restart. */
  needsRestart: RestartField[];
}

/** What a reload changed in the TLS options, certificate contents included (the proxy reads the files). */
export interface TlsChanges {
  /** Backend TLS settings or files changed: every backend is re-created with them. */
  backendTls: boolean;
  /** The client certificate or key changed: connections accepted from now on get it. */
  clientTls: boolean;
}

/** Objects whose own enumerable fields are equal, one level deep (limits, backend options, host:port). */
function sameFields<T extends object>(a: T, b: T): boolean {
  const ka = Object.keys(a) as Array<keyof T>;
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

function sameRestartField(current: Config, next: Config, field: RestartField): boolean {
  if (field === 'workers') return current.workers === next.workers;
  // The listen socket is TLS or not for its life; a certificate change is applied live.
  if (field === 'clientTls') return current.clientTls.enabled === next.clientTls.enabled;
  // The name asked is fixed for the process's life; the discovery settings apply live.
  if (field === 'backendsFrom') return current.backendsFrom?.url === next.backendsFrom?.url;
  const a = current[field];
  const b = next[field];
  return a === null || b === null ? a === b : sameFields(a, b);
}

/**
 * With zones, a backend gone from a zone (removed, or moved to another) hands the first place
 * of some keys to a zone-mate that held no copy of them, and one moved into a zone takes some
 * from the mates there: the backends kept in those zones, which must be refilled before they
 * decide (the moved one included). Without zones the first place goes to the next on the
 * ring, which held a copy: none.
 */
export function zoneMatesToRefill(current: Config, next: Config): string[] {
  const before = new Map(current.backends.map((b) => [b.address, b]));
  const after = new Map(next.backends.map((b) => [b.address, b]));
  const zones = new Set<string>();
  for (const b of current.backends) {
    const now = after.get(b.address);
    if (b.zone === null || now?.zone === b.zone) continue;
    zones.add(b.zone);
    if (now?.zone !== null && now?.zone !== undefined) zones.add(now.zone);
  }
  return next.backends.filter((b) => b.zone !== null && zones.has(b.zone) && before.has(b.address)).map((b) => b.address);
}

export function diffConfig(current: Config, next: Config): ReloadChanges {
  const before = new Map(current.backends.map((b) => [b.address, b]));
  const after = new Set(next.backends.map((b) => b.address));
  const changed = (b: BackendConfig): boolean => {
    const old = before.get(b.address);
    return old !== undefined && (old.weight !== b.weight || old.local !== b.local || old.zone !== b.zone);
  };
  return {
    added: next.backends.filter((b) => !before.has(b.address)).map((b) => b.address),
    removed: current.backends.filter((b) => !after.has(b.address)).map((b) => b.address),
    reweighted: next.backends.filter(changed).map((b) => b.address),
    zone: current.zone !== next.zone,
    backendOptions: !sameFields(current.backend, next.backend),
    limits: !sameFields(current.limits, next.limits),
    needsRestart: RESTART_FIELDS.filter((f) => !sameRestartField(current, next, f)),
  };
}

/** The config the process runs after a reload: `next`, with the restart-only fields left as they run now. */
export function liveConfig(current: Config, next: Config): Config {
  const clientTls = current.clientTls.enabled === next.clientTls.enabled ? next.clientTls : current.clientTls;
  return { ...next, listen: current.listen, metricsListen: current.metricsListen, workers: current.workers, clientTls, backendsFrom: current.backendsFrom };
}

/** Settings whose values never reach a log line: a diff says that they changed, not to what. */
const SECRET_SETTINGS = new Set(['backendSasl.password', 'clientSasl.password']);
const REDACTED = '[redacted]';

/**
 * Every setting that differs, by its path in the config ("backend.requestTimeoutMs"), with
 * both values; a password's values are shown as "[redacted]" (or null when there was none).
 */
export function settingsDiff(current: Config, next: Config): Record<string, { from: unknown; to: unknown }> {
  const diff: Record<string, { from: unknown; to: unknown }> = {};
  const hide = (v: unknown): unknown => (v === null || v === undefined ? v : REDACTED);
  const walk = (a: unknown, b: unknown, path: string): void => {
    if (isRecord(a) && isRecord(b)) {
      for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[k], b[k], path === '' ? k : `${path}.${k}`);
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      diff[path] = SECRET_SETTINGS.has(path) ? { from: hide(a), to: hide(b) } : { from: a, to: b };
    }
  };
  walk(current, next, '');
  return diff;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What Backend offers for a graceful retirement. */
export interface Drainable {
  /** Requests in flight plus those waiting for a connection. */
  readonly load: number;
  close(): Promise<void>;
}

const DRAIN_POLL_MS = 25;

/**
 * Waits until the backend has nothing in flight, or `deadlineMs` passes, then
 * closes it. Requests routed before a reload keep their backend until they end.
 */
export async function drainAndClose(backend: Drainable, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (backend.load > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
  }
  await backend.close();
}

/** The running proxy, as a reload sees it. */
export interface Reloadable {
  /** The config it runs now. */
  readonly config: Config;
  /** Applies a valid config; throws, having changed nothing, when it cannot (an unreadable certificate file). */
  reload(next: Config): ReloadChanges & TlsChanges;
}

export type ReloadTrigger = 'SIGHUP' | 'file' | 'dns';

export interface ReloaderOptions {
  /** Loads and checks the config again; throws (ConfigError) when it is invalid. */
  load: () => Config;
  target: Reloadable;
  logger: Logger;
  metrics: ReloadMetrics;
  /** After a reload was applied (e.g. to watch the certificate files the new config names). */
  applied?: () => void;
}

/** How often the config file's stat is polled, and how long a burst of changes is waited out. */
const WATCH_INTERVAL_MS = 1000;
const WATCH_DEBOUNCE_MS = 300;

export class ConfigReloader {
  constructor(private readonly opts: ReloaderOptions) {}

  /**
   * Loads and applies the config; one log line either way. True when it was applied.
   * `load` replaces the options' (DNS's answer: the running config with other backends).
   */
  reload(trigger: ReloadTrigger, load: () => Config = this.opts.load): boolean {
    const { target, logger, metrics } = this.opts;
    const before = structuredClone(target.config); // a reload updates some of its objects in place
    let next: Config;
    let changes: ReloadChanges & TlsChanges;
    try {
      next = load();
      changes = target.reload(next);
    } catch (err) {
      recordReload(metrics, false);
      logger.error({ trigger, error: err instanceof Error ? err.message : String(err) }, 'config reload refused; the running config stays');
      return false;
    }
    logger.debug({ trigger, changed: settingsDiff(before, target.config) }, 'config reload: settings changed');
    recordReload(metrics, true);
    this.opts.applied?.();
    const line = { trigger, ...changes, replicas: next.replicas, backends: next.backends.length };
    if (changes.needsRestart.length > 0) {
      const settings = changes.needsRestart;
      const verb = settings.length === 1 ? 'needs' : 'need';
      logger.warn(line, `config reloaded; ${settings.join(', ')} changed and ${verb} a restart to apply`);
    } else {
      logger.info(line, 'config reloaded');
    }
    return true;
  }

  /**
   * Reloads when the file's stat changes. Polling stat (not fs.watch) follows
   * editors that replace the file and Kubernetes ConfigMaps that swap a symlink.
   * Returns the function that stops watching.
   */
  watch(path: string): () => void {
    let timer: NodeJS.Timeout | null = null;
    const onChange = (now: Stats, before: Stats): void => {
      if (now.mtimeMs === before.mtimeMs && now.ino === before.ino && now.size === before.size) return;
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        this.reload('file');
      }, WATCH_DEBOUNCE_MS);
    };
    watchFile(path, { interval: WATCH_INTERVAL_MS, persistent: false }, onChange);
    return () => {
      unwatchFile(path, onChange);
      if (timer !== null) clearTimeout(timer);
    };
  }
}
