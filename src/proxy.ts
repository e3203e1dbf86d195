// Wires a Config into a running proxy:
//   config -> backends -> ring -> router -> listener (client sessions)
//                                        -> metrics endpoint

import { Backend } from './backends/backend';
import { AUTH_FAILED } from './backends/connection';
import { DEFAULT_PARSER_LIMITS } from './protocol/backend/meta';
import type { BackendConfig, BackendOptions, Config } from './config';
import type { Logger } from './log';
import { listenError } from './listen-error';
import { createMetrics, type Metrics } from './metrics/registry';
import { startMetricsServer, type MetricsServer } from './metrics/http';
import { ProxyStats, settingsStats } from './proxy-stats';
import { diffConfig, drainAndClose, liveConfig, zoneMatesToRefill, type ReloadChanges, type TlsChanges } from './reload';
import { Resyncer } from './resync/resyncer';
import { REAL_CLOCK } from './resync/rate-limiter';
import { TrustAgent, resyncTrust, routerHooks } from './trust/agent';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { ReplicaRing } from './routing/ring';
import { LockWatchRouter } from './locks/lock-router';
import { DEFAULT_LOCK_PATTERNS, LockPatterns } from './locks/patterns';
import { LockTracker } from './locks/tracker';
import { KeySequencer } from './routing/key-sequencer';
import { OrderedRouter } from './routing/ordered-router';
import { ReplicatedRouter } from './routing/replicated-router';
import type { ServerContext } from './server/context';
import { Listener } from './server/listener';
import { backendTlsOptions, clientTlsOptions, sameTlsOptions, TlsFileError } from './tls';
import { binaryCodec, META_CODEC, type BackendCodec, type SaslPlain } from './backends/codec';
import { sameCredentials, saslCredentials } from './sasl-credentials';

/** The memcached version clients are told: the protocol level replicached speaks. */
export const PROTOCOL_VERSION = '1.6.0';

export interface RunningProxy {
  /** The client port actually bound (useful with port 0). */
  port: number;
  metricsPort: number | null;
  metrics: Metrics;
  backends: Backend[];
  /** The config it runs now (after reloads). */
  readonly config: Config;
  /** What /readyz answers; with --workers, each worker reports it to the primary. */
  isReady(): boolean;
  /**
   * Applies a new, already validated config without closing client connections
   * (see src/reload.ts); listen, metricsListen and workers keep their running values.
   * Throws TlsFileError or SaslCredentialError (sasl-credentials.ts), having changed nothing, when a certificate
   * file or a password cannot be read.
   */
  reload(next: Config): ReloadChanges & TlsChanges & SaslChanges;
  /**
   * Drain: stop accepting, serve the open clients until they close (at most
   * drainTimeoutMs), finish requests in flight, close everything.
   */
  close(): Promise<void>;
  /** Ends a drain in progress now: the clients still open are closed. */
  endDrain(): void;
}

/** What a reload changed in the SASL credentials (the proxy reads the passwords). */
export interface SaslChanges {
  /** Backend credentials changed: every backend is re-created with them. */
  backendSasl: boolean;
}

/** The protocol to speak to the backends: binary with SASL when credentials are configured. */
function backendCodec(credentials: SaslPlain | null): BackendCodec {
  return credentials === null ? META_CODEC : binaryCodec(credentials);
}

/** 127.0.0.0/8, ::1 or localhost: only this machine can connect. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** The lock keys to watch: both extensions' and the configured ones; null when watching is off. */
function lockPatterns(config: Config): LockPatterns | null {
  return config.sessionLocks.enabled ? LockPatterns.parse([...DEFAULT_LOCK_PATTERNS, ...config.sessionLocks.patterns]) : null;
}

/** Resync progress is logged (at debug) every this many keys. */
const RESYNC_PROGRESS_EVERY = 10_000;

export async function startProxy(config: Config, logger: Logger): Promise<RunningProxy> {
  const metrics = createMetrics();
  // Certificate files are read at start and again on every reload (src/tls.ts).
  let backendTls = backendTlsOptions(config.backendTls);
  let clientTls = clientTlsOptions(config.clientTls);
  // Passwords too: read at start and on every reload (src/sasl-credentials.ts).
  let backendSasl = saslCredentials(config.backendSasl, 'backendSasl');
  let codec = backendCodec(backendSasl);
  const clientSasl = saslCredentials(config.clientSasl, 'clientSasl');
  if (clientSasl === null && !isLoopback(config.listen.host)) {
    logger.warn({ listen: config.listen.host }, 'listening beyond loopback without client SASL: whoever reaches the port reads and writes every session (see clientSasl)');
  }
  const warnIfInsecure = (): void => {
    if (backendTls?.rejectUnauthorized !== false) return;
    logger.warn('backend TLS without certificate verification (insecure): the links are encrypted, but anyone on the path can pose as a backend');
  };
  warnIfInsecure();
  /**
   * Addresses that have answered since start (a `version` reply, or the probes that
   * brought the backend up): until one of the current list has, the proxy is not ready.
   */
  const answered = new Set<string>();
  let stopping = false;
  const openBackend = (b: BackendConfig, options: BackendOptions): Backend => {
    // Items up to the client limit must come back from a backend, whatever size it was started with.
    const parser = { ...DEFAULT_PARSER_LIMITS, maxValueLength: Math.max(DEFAULT_PARSER_LIMITS.maxValueLength, current.limits.maxItemSize) };
    const backend = new Backend(b.address, { ...options, parser, tls: backendTls, codec }, metrics.backendRecorder(b.address));
    metrics.addBackend(b.address);
    const address = b.address;
    let since = Date.now();
    // Until this Backend (new connection settings make a new one) has answered, its up gauge
    // reads 0: a backend nobody has heard from is not counted as up.
    let heard = false;
    const hasAnswered = (how: string): void => {
      if (heard) return;
      heard = true;
      logger.debug({ backend: address, how, afterMs: Date.now() - since }, 'backend answered for the first time');
      if (answered.has(address)) return;
      const wasReady = isReady();
      answered.add(address);
      if (!wasReady && isReady()) logger.info({ backend: address }, 'ready: a backend has answered');
    };
    metrics.backendUp.set({ backend: address }, 0);
    backend.on('down', (reason) => {
      metrics.backendUp.set({ backend: address }, 0);
      metrics.backendEjections.inc({ backend: address });
      if (reason.startsWith(AUTH_FAILED)) {
        // It stays down until the credentials are fixed: its probes authenticate too.
        logger.error({ backend: address, reason, username: backendSasl?.username }, 'backend down: SASL authentication refused; check backendSasl');
      } else {
        logger.warn({ backend: address, reason }, 'backend down');
      }
      logger.debug({ backend: address, from: 'up', to: 'down', reason, upForMs: Date.now() - since }, 'backend state change');
      since = Date.now();
    });
    backend.on('up', () => {
      hasAnswered('probes');
      metrics.backendUp.set({ backend: address }, 1);
      metrics.backendReturns.inc({ backend: address });
      logger.info({ backend: address }, 'backend up');
      logger.debug({ backend: address, from: 'down', to: 'up', reason: 'probes answered', downForMs: Date.now() - since }, 'backend state change');
      since = Date.now();
    });
    // The first request also opens the pool's connection. A backend that fails it is asked
    // again until it is marked down; from then on its own probes decide (the 'up' above).
    void (async () => {
      while (backend.isUp() && !heard) {
        if ((await backend.version()).status === 'ok') {
          hasAnswered('version');
          if (backend.isUp()) metrics.backendUp.set({ backend: address }, 1);
          return;
        }
        await new Promise((r) => setTimeout(r, options.probeIntervalMs));
      }
    })();
    return backend;
  };
  // backends[i] runs current.backends[i]; a reload replaces all three.
  let current = config;
  let backends = config.backends.map((b) => openBackend(b, config.backend));
  // Which backend plays which role, agreed with every other sidecar (docs/trust.md).
  const agent: TrustAgent = new TrustAgent({
    id: `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`,
    boards: backends.map((b) => b.control()),
    replicas: current.replicas,
    ringOrder: (key) => ring.ringOrder(key),
    clock: REAL_CLOCK,
    fill: (node, signal) => resyncer.fill(node, signal),
    sweep: (node) => resyncer.sweep(node),
    events: {
      acknowledged: (c) => logger.debug({ backend: c.address, stage: c.to, reason: c.reason }, 'trust: change acknowledged'),
      applied: (c) => {
        metrics.trustChanges.inc({ backend: c.address, role: c.to.role });
        const log = { backend: c.address, from: c.from.role, to: c.to.role, epoch: c.to.epoch, reason: c.reason };
        if (c.to.role === 'out') logger.warn(log, 'trust: backend out, every sidecar agreed');
        else logger.info(log, c.to.role === 'trusted' ? 'trust: backend trusted again, every sidecar agreed' : 'trust: backend being refilled, every sidecar writes to it');
        // This sidecar filled it: the copies stand-ins took while it was away are garbage now.
        if (c.to.role === 'trusted' && c.reason === 'filled') resyncer.shedAll();
      },
    },
  });
  // A dropped connection or a backend marked down is a failure like a failed request.
  const watchConnections = (b: Backend): void => {
    b.on('lost', () => agent.failed(b.address));
    b.on('down', () => agent.failed(b.address));
  };
  for (const b of backends) watchConnections(b);
  const buildRing = () => {
    const r = new ReplicaRing(
      backends.map((node, i) => {
        const { weight, local, zone } = current.backends[i];
        return { node: agent.wrap(node), weight, local, zone: zone ?? undefined };
      }),
      current.replicas,
      { zone: current.zone ?? undefined, tally: metrics.zoneTally },
    );
    r.useRoles((node) => agent.roleOf(node));
    return r;
  };
  let ring = buildRing();
  /** Backends a reload took out, finishing their requests in flight. */
  const draining = new Set<Backend>();
  /** Keys each resync has gone through, for its progress lines at debug. */
  const resyncProgress = new Map<string, { copied: number; skipped: number }>();
  const resyncStep = (backend: string, what: 'copied' | 'skipped'): void => {
    const p = resyncProgress.get(backend) ?? { copied: 0, skipped: 0 };
    p[what]++;
    resyncProgress.set(backend, p);
    if ((p.copied + p.skipped) % RESYNC_PROGRESS_EVERY === 0) logger.debug({ backend, ...p }, 'resync progress');
  };
  // Refills a backend that came back empty; rebuilt with the ring on a reload.
  const buildResyncer = () =>
    new Resyncer(ring, backends, resyncTrust(agent), {
      started: (backend, cause) => {
        // A shed is housekeeping after every complete run: logged at debug, not counted as a run.
        if (cause === 'shed') return void logger.debug({ backend }, 'shed started: dropping copies outside their replica sets');
        resyncProgress.set(backend, { copied: 0, skipped: 0 });
        logger.info({ backend, cause }, 'resync started');
      },
      copied: (backend) => {
        metrics.resyncKeysCopied.inc({ backend });
        resyncStep(backend, 'copied');
      },
      skipped: (backend) => {
        metrics.resyncKeysSkipped.inc({ backend });
        resyncStep(backend, 'skipped');
      },
      holding: (backend, ms) => {
        logger.warn(
          { backend, holdMs: ms },
          'resync: keys could not be listed (SASL backends have no metadump); read last and deciding nothing until the hold ends (backendSasl.maxTtlSeconds)',
        );
      },
      finished: (backend, result) => {
        const { reason, mode, copied, skipped, pruned, failed, unlisted, heldMs } = result;
        const complete = result.outcome !== 'aborted' && unlisted.length === 0 && failed === 0;
        // The log line's outcome is the word of replicached_resync_runs_total's outcome label, so the
        // two can be matched up during an incident. A run that a flush_all ended says so in `reason`.
        const outcome = result.outcome === 'aborted' ? 'aborted' : complete ? 'complete' : 'incomplete';
        const summary = { backend, outcome, reason, mode, copied, skipped, pruned, failed, unlisted, heldMs };
        if (mode === 'shed') return void logger.debug(summary, 'shed finished');
        if (complete) metrics.resyncLastComplete.set({ backend }, Date.now() / 1000);
        metrics.resyncRuns.inc({ backend, outcome });
        resyncProgress.delete(backend);
        if (complete) logger.info(summary, 'resync finished');
        else logger.warn(summary, 'resync incomplete');
      },
    }, { unlistedHoldMs: backendSasl === null ? 0 : current.backendSasl.maxTtlSeconds * 1000 });
  let resyncer = buildResyncer();
  const router = new ReplicatedRouter(
    ring,
    {
      failover: (command) => metrics.failovers.inc({ command }),
      disagreement: (command) => metrics.replicaDisagreements.inc({ command }),
      read: (locality) => metrics.reads.inc({ locality }),
      converged: () => metrics.convergeRepairs.inc(),
    },
    routerHooks(agent, () => resyncer),
  );

  const stats = new ProxyStats(PROTOCOL_VERSION, () => backends, () => ring.replicas, metrics.requestCount);
  const keys = new KeySequencer();
  const locks = new LockTracker({
    attempt: (handler) => metrics.sessionLockAttempts.inc({ handler }),
    grant: (handler) => metrics.sessionLockGrants.inc({ handler }),
    waited: (s) => metrics.sessionLockWait.observe(s),
    held: (s) => metrics.sessionLockHold.observe(s),
    takenOver: () => metrics.sessionLockTakeovers.inc(),
    expired: () => metrics.sessionLockExpired.inc(),
    untracked: () => metrics.sessionLockUntracked.inc(),
  });
  metrics.setLockHoldersSource(() => locks.holding());
  // Read as each connection opens: a reload applies to the connections opened after it.
  let watched = lockPatterns(config);
  const ctx: ServerContext = {
    connectionRouter: () => {
      const ordered = new OrderedRouter(keys, router, agent);
      return watched === null ? ordered : new LockWatchRouter(ordered, locks, watched);
    },
    limits: config.limits,
    version: PROTOCOL_VERSION,
    allowFlushAll: config.allowFlushAll,
    clientSasl,
    canCarryKey: (key) => codec.canCarryKey(key),
    stats: () => [...stats.snapshot(), ...resyncer.statsLines()],
    resetStats: () => stats.reset(),
    settings: () => settingsStats(current, port),
    lockStats: () => [['lock_watch', watched === null ? 'off' : 'on'], ...locks.statsLines(current.sessionLocks.showSessionIds)],
    backendStats: async (group) => {
      const answers = await Promise.all(backends.filter((b) => b.isUp()).map((b) => b.stats(group)));
      return answers.filter((a): a is Map<string, string> => a instanceof Map);
    },
    countProtocolError: metrics.countProtocolError,
    countCommand: (command, result, startedMs) =>
      metrics.countRequest(command, result, (performance.now() - startedMs) / 1000),
  };
  const listener = new Listener(ctx, {
    connectionOpened: () => {
      stats.currConnections++;
      stats.totalConnections++;
      metrics.clientConnections.inc();
    },
    connectionClosed: () => {
      stats.currConnections--;
      metrics.clientConnections.dec();
    },
    connectionRejected: () => {
      stats.rejectedConnections++;
      metrics.clientConnectionsRejected.inc();
    },
    bytesIn: (n) => {
      stats.bytesRead += n;
      metrics.bytesIn(n);
    },
    bytesOut: (n) => {
      stats.bytesWritten += n;
      metrics.bytesOut(n);
    },
  }, clientTls);
  metrics.setInFlightSource(() => listener.inFlight);
  metrics.setBackendsSource(() => backends);
  metrics.setResyncSource(() => resyncer.progress().map((p) => ({ ...p, running: p.state !== 'idle' })));

  /**
   * Ready (for a sidecar: "send this pod traffic") once a backend of the current list has
   * answered, and until the drain starts. A later loss of every backend does not make it
   * unready: every pod sees the same memcached, and taking all of them out of the Service
   * would turn a session outage into a site outage (see docs/operations.md, Health).
   */
  function isReady(): boolean {
    return !stopping && backends.some((b) => answered.has(b.address));
  }

  let metricsServer: MetricsServer | null = null;
  let port: number;
  try {
    ({ port } = await listener.listen(config.listen.host, config.listen.port).catch((err: unknown) => {
      throw listenError(err, 'client', config.listen);
    }));
    if (config.metricsListen) {
      const at = config.metricsListen;
      metricsServer = await startMetricsServer({
        registry: metrics.registry,
        host: at.host,
        port: at.port,
        isReady,
      }).catch((err: unknown) => {
        throw listenError(err, 'metrics', at);
      });
    }
  } catch (err) {
    await listener.shutdown(0);
    for (const b of backends) b.close();
    throw err;
  }
  // Each backend's first round, before the proxy says it listens: requests then find a fresh view.
  await agent.start();

  return {
    port,
    metricsPort: metricsServer?.port ?? null,
    metrics,
    get backends() {
      return backends;
    },
    get config() {
      return current;
    },
    isReady,
    reload: (next) => {
      const live = liveConfig(current, next);
      // Certificate files first: one that cannot be read refuses the reload before anything changes.
      let nextBackendTls: ReturnType<typeof backendTlsOptions>;
      let nextClientTls: ReturnType<typeof clientTlsOptions>;
      let nextBackendSasl: SaslPlain | null;
      let nextClientSasl: SaslPlain | null;
      try {
        nextBackendTls = backendTlsOptions(live.backendTls);
        nextClientTls = clientTlsOptions(live.clientTls);
        nextBackendSasl = saslCredentials(live.backendSasl, 'backendSasl');
        nextClientSasl = saslCredentials(live.clientSasl, 'clientSasl');
      } catch (err) {
        if (err instanceof TlsFileError) metrics.tlsReloads.inc({ side: err.side, result: 'refused' });
        throw err;
      }
      const changes = {
        ...diffConfig(current, next),
        backendTls: !sameTlsOptions(backendTls, nextBackendTls),
        clientTls: !sameTlsOptions(clientTls, nextClientTls),
        backendSasl: !sameCredentials(backendSasl, nextBackendSasl) || current.backendSasl.maxTtlSeconds !== next.backendSasl.maxTtlSeconds,
      };
      if (changes.backendSasl) {
        backendSasl = nextBackendSasl;
        codec = backendCodec(backendSasl);
      }
      if (changes.needsRestart.includes('clientTls')) metrics.tlsReloads.inc({ side: 'client', result: 'needs_restart' });
      if (changes.backendTls) {
        backendTls = nextBackendTls;
        metrics.tlsReloads.inc({ side: 'backend', result: 'applied' });
        warnIfInsecure();
      }
      if (changes.clientTls && nextClientTls !== null) {
        clientTls = nextClientTls;
        listener.setTlsContext(nextClientTls);
        metrics.tlsReloads.inc({ side: 'client', result: 'applied' });
      }
      // New connection settings need new Backend objects; otherwise keep the ones still listed.
      const reuse = new Map(changes.backendOptions || changes.backendTls || changes.backendSasl ? [] : backends.map((b) => [b.address, b]));
      const nextBackends = next.backends.map((b) => reuse.get(b.address) ?? openBackend(b, next.backend));
      const retired = backends.filter((b) => !nextBackends.includes(b));
      const drainMs = 2 * (current.backend.connectTimeoutMs + current.backend.requestTimeoutMs) + 1000;
      const replicasBefore = current.replicas;
      const before = current;
      current = live;
      backends = nextBackends;
      // Placement changes only with the backend list, weights or replicas. A reload that
      // changes none of them (a no-op SIGHUP, a second reload from the file watcher)
      // leaves the ring and the resync runs alone.
      const moved =
        changes.added.length + changes.removed.length + changes.reweighted.length > 0 ||
        changes.zone ||
        changes.backendOptions ||
        changes.backendTls ||
        changes.backendSasl ||
        next.replicas !== replicasBefore;
      if (moved) {
        const ringBefore = ring;
        ring = buildRing();
        // A removal, an addition, other weights or zones, more replicas: a kept backend can become a
        // natural member of keys it never held. ketama's shares are relative, and hashring rounds
        // each backend's point count: adding a seventh of equal weight moves 2% of keys between the six.
        // And a reload while the last one's fills run (the ring settling): closing the resyncer aborts
        // them, so they start again under the new ring (fewer replicas alone would start none).
        const fill = changes.removed.length > 0 || changes.added.length > 0 || changes.reweighted.length > 0 || next.replicas > replicasBefore || ringBefore.isSettling;
        // Until each kept backend's refresh completes, only its former keys are known held (ReplicaRing.holds).
        if (fill) ring.settleFrom(ringBefore, next.backends.filter((b) => before.backends.some((o) => o.address === b.address)).map((b) => b.address));
        router.replaceRing(ring);
        const previousResyncer = resyncer;
        // Kept backends keep their stages; an added one is out until every sidecar reaches it
        // and it was filled (docs/trust.md): until then it is read by no one and decides nothing.
        agent.reconfigure(backends.map((b) => b.control()), next.replicas);
        for (const address of zoneMatesToRefill(before, next)) agent.proposeRefill(address);
        for (const b of backends) if (!reuse.has(b.address)) watchConnections(b);
        resyncer = buildResyncer();
        // Keys a backend lacks, or holds stale copies of from an earlier placement, are refreshed from
        // each key's holder in the background (a refresh also sheds); meanwhile the holders answer and
        // decide for them. Otherwise (fewer replicas) the copies a reload left outside their keys'
        // replica sets are dropped by a shed.
        for (const b of backends) void resyncer.resync(b, fill ? 'membership' : 'shed');
        void previousResyncer.close();
      }
      Object.assign(ctx.limits, next.limits); // the same object every session reads
      ctx.allowFlushAll = next.allowFlushAll;
      watched = lockPatterns(next);
      // Connections authenticate with the user of the moment; those already authenticated stay so.
      ctx.clientSasl = nextClientSasl;
      logger.level = next.logLevel;
      for (const b of retired) {
        b.removeAllListeners(); // its state no longer speaks for the address
        draining.add(b);
        void drainAndClose(b, drainMs).then(() => {
          draining.delete(b);
          if (!backends.some((n) => n.address === b.address)) void metrics.forgetBackend(b.address);
        });
      }
      return changes;
    },
    close: async () => {
      stopping = true;
      const open = listener.connections;
      if (open > 0) logger.info({ connections: open, drainTimeoutMs: current.drainTimeoutMs }, 'draining: serving open clients until they close');
      const cut = await listener.shutdown(current.drainTimeoutMs);
      if (open > 0) logger.info({ closedByClients: open - cut, closedAtDeadline: cut }, 'drained');
      await agent.stop();
      await resyncer.close();
      await metricsServer?.close();
      for (const b of [...backends, ...draining]) b.close();
    },
    endDrain: () => listener.endDrain(),
  };
}
