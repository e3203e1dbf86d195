// One memcached backend: a small pool of pipelined connections, and its health.
//
//            up ──(failureLimit consecutive connection failures,
//             ▲    or timeoutLimit consecutive stalls)──► down: every connection
//             │                               destroyed, requests fail at once
//             └──(upAfterProbes good probes in a row)── probe: a fresh
//                 connection + `version`, every probeIntervalMs, backing off
//                 exponentially (with jitter) to retryMaxMs while probes fail
//
// Any reply resets both counts. Requests go to the least-loaded open connection;
// the pool grows to its size when the open connections are busy. A request that
// finds no open connection waits for one being opened, and fails with it if the
// connect fails.
//
// Ejection is on evidence, not on one slow moment. A request times out only on a
// stall: past its deadline while the backend has sent nothing on its connection
// for requestTimeoutMs (see connection.ts). A backend working through a
// pipelined burst keeps sending replies, so however long its queue, nothing
// times out and nothing counts against it. A hung backend (SIGSTOP, a frozen
// VM) sends nothing: with the default timeoutLimit of 1 its first stall marks it
// down and fails everything pending on it, so a hang costs each request at most
// one timeout.

import { EventEmitter } from 'node:events';
import type tls from 'node:tls';
import { DEFAULT_PARSER_LIMITS, type DumpLine, type FinalReply, type ParserLimits, type PartReply } from '../protocol/backend/meta';
import type {
  Failed,
  MemcachedNode,
  NodeArith,
  NodeCas,
  NodeDelete,
  NodeFlush,
  NodeGet,
  NodeStore,
  NodeTouch,
  StoreRequest,
} from '../routing/node';
import {
  CONNECT_TIMEOUT,
  Connection,
  failed,
  type BackendRequest,
  type ConnectionFailure,
  type ConnectionOptions,
  type ConnectionOwner,
} from './connection';
import { META_CODEC, type BackendCodec, type Op } from './codec';
import { Fifo } from './fifo';
import { describe, toArith, toCas, toDelete, toFlush, toGet, toStore, toTouch, toVersion } from './outcomes';

export interface BackendOptions {
  /** Persistent connections in the pool. */
  connections: number;
  connectTimeoutMs: number;
  /**
   * Per request, from the moment it is sent; past it, the request fails only if the
   * backend also sent nothing on its connection for this long (a stall).
   */
  requestTimeoutMs: number;
  /** Consecutive connection-level failures (refused, reset, closed, desync) that mark it down. */
  failureLimit: number;
  /** Consecutive stalls (request timeouts with no reply progress) that mark it down. */
  timeoutLimit: number;
  /** First probe delay once down; the delay doubles while probes fail. */
  probeIntervalMs: number;
  /** Longest delay between probes. */
  retryMaxMs: number;
  /** Good probes in a row before a down backend is marked up. */
  upAfterProbes: number;
  /** Requests in flight or waiting for a connection; over it, a request fails at once. */
  maxPending: number;
  /** A metadump fails when no line arrives for this long. */
  metadumpIdleTimeoutMs: number;
  parser: ParserLimits;
  /** TLS options for every connection (see src/tls.ts); null: plain TCP. */
  tls: tls.ConnectionOptions | null;
  /** The protocol spoken: meta commands, or binary with SASL (see codec.ts). */
  codec: BackendCodec;
}

export const DEFAULT_BACKEND_OPTIONS: Readonly<BackendOptions> = Object.freeze({
  // One connection keeps a client's pipelined requests for a key in order.
  connections: 1,
  // Both timeouts stay well under a second: pecl-memcache gives up after 1 s, and a
  // session lock held through a hang must be free before its waiters' polls pass 0.6 s
  // (pecl-memcache doubles its wait: 0.635 s, then 1.275 s; php-memcached tries 5 times, 150 ms apart).
  connectTimeoutMs: 300,
  requestTimeoutMs: 300,
  failureLimit: 2,
  // A stall is already strong evidence: the backend answered nothing for a whole timeout.
  timeoutLimit: 1,
  probeIntervalMs: 250,
  retryMaxMs: 5000,
  upAfterProbes: 2,
  maxPending: 16_384,
  metadumpIdleTimeoutMs: 5000,
  parser: DEFAULT_PARSER_LIMITS,
  tls: null,
  codec: META_CODEC,
});

export interface BackendEvents {
  /** Marked down; requests fail at once until it is up again. */
  down: [reason: string];
  /** Marked up again after enough good probes. */
  up: [];
  /**
   * A connection that was open ended without us closing it, while the backend is
   * up: the memcached process may have restarted (empty) and be reconnected to
   * before anything marks it down. Its identity must be checked before it is trusted.
   */
  lost: [];
}

/** Who the memcached process is: a restart changes both (its data is gone). */
export interface BackendIdentity {
  status: 'ok';
  pid: number;
  /** Unix time the process started (stats time - uptime). */
  startedAt: number;
}

export type BackendState = 'up' | 'down' | 'closed';

/** Why pool requests failed, as counted for metrics: a fixed set. */
export type BackendErrorReason = 'timeout' | 'connect' | 'auth' | 'closed' | 'desync' | 'server_error' | 'down' | 'overload';

/** Told about every pool request (not probes or metadumps); must be cheap. */
export interface BackendObserver {
  /** A reply arrived this long after the request was sent. */
  replied(seconds: number): void;
  /** `count` requests failed for this reason. */
  failed(reason: BackendErrorReason, count: number): void;
  /** A request (or a connect) passed its deadline. */
  timedOut(): void;
}

const NO_OBSERVER: BackendObserver = { replied: () => {}, failed: () => {}, timedOut: () => {} };

export class Backend extends EventEmitter<BackendEvents> implements MemcachedNode {
  readonly address: string;
  private readonly host: string;
  private readonly port: number;
  private readonly opts: BackendOptions;
  private readonly codec: BackendCodec;
  private status: BackendState = 'up';
  /** The last metadump asked for: the next one starts when it ends (see metadumpEach). */
  private crawling: Promise<void> = Promise.resolve();
  private downReason = '';
  private readonly pool = new Set<Connection>();
  /** Probe and metadump connections: outside the pool, closed with the backend. */
  private readonly side = new Set<Connection>();
  /** The control connection (see control()) and what waits for it to open. */
  private controlConn: Connection | null = null;
  private controlOpen = false;
  private readonly controlWaiting: BackendRequest[] = [];
  private readonly waiting = new Fifo<BackendRequest>();
  private failures = 0;
  private timeouts = 0;
  private goodProbes = 0;
  private probeDelay: number;
  private probeTimer: NodeJS.Timeout | null = null;
  private readonly poolOwner: ConnectionOwner = {
    opened: (conn) => this.onOpened(conn),
    replied: (_conn, seconds) => {
      this.failures = 0;
      this.timeouts = 0;
      this.observer.replied(seconds);
    },
    closed: (conn, failure, lost) => this.onClosed(conn, failure, lost),
  };

  /** `address` is "host:port" (IPv6 as "[::1]:11211"). */
  constructor(
    address: string,
    options: Partial<BackendOptions> = {},
    private readonly observer: BackendObserver = NO_OBSERVER,
  ) {
    super();
    this.address = address;
    const { host, port } = splitAddress(address);
    this.host = host;
    this.port = port;
    const opts = { ...DEFAULT_BACKEND_OPTIONS, ...options };
    // Config validation names bad values; these floors only keep a zero from hanging requests.
    opts.connections = Math.max(1, opts.connections);
    opts.failureLimit = Math.max(1, opts.failureLimit);
    opts.timeoutLimit = Math.max(1, opts.timeoutLimit);
    opts.upAfterProbes = Math.max(1, opts.upAfterProbes);
    this.opts = opts;
    this.codec = opts.codec;
    this.probeDelay = this.opts.probeIntervalMs;
  }

  isUp(): boolean {
    return this.status === 'up';
  }

  get state(): BackendState {
    return this.status;
  }

  /** Whether metadump can list its keys (not over the binary protocol a SASL backend speaks). */
  get canListKeys(): boolean {
    return this.codec.metadump !== null;
  }

  /** Pool connections open now (not counting those still connecting). */
  get openConnections(): number {
    let n = 0;
    for (const c of this.pool) if (c.isOpen) n++;
    return n;
  }

  /** Requests in flight on the pool plus those waiting for a connection. */
  get load(): number {
    let n = this.waiting.length;
    for (const c of this.pool) n += c.pending;
    return n;
  }

  get(key: Buffer, touch?: number): Promise<NodeGet> {
    if (!this.codec.canCarryKey(key)) return Promise.resolve(uncarriable());
    return this.request(this.codec.get(key, touch), toGet);
  }

  casOf(key: Buffer): Promise<NodeCas> {
    if (!this.codec.canCarryKey(key)) return Promise.resolve(uncarriable());
    return this.request(this.codec.casOnly(key), toCas);
  }

  store(req: StoreRequest): Promise<NodeStore> {
    if (!this.codec.canCarryKey(req.key)) return Promise.resolve(uncarriable());
    return this.request(this.codec.store(req), toStore);
  }

  delete(key: Buffer, cas: bigint): Promise<NodeDelete> {
    if (!this.codec.canCarryKey(key)) return Promise.resolve(uncarriable());
    return this.request(this.codec.delete(key, cas), toDelete);
  }

  touch(key: Buffer, exptime: number): Promise<NodeTouch> {
    if (!this.codec.canCarryKey(key)) return Promise.resolve(uncarriable());
    return this.request(this.codec.touch(key, exptime), toTouch);
  }

  arith(
    kind: 'incr' | 'decr',
    key: Buffer,
    delta: bigint,
    create?: { initial: bigint; exptime: number },
  ): Promise<NodeArith> {
    if (!this.codec.canCarryKey(key)) return Promise.resolve(uncarriable());
    return this.request(this.codec.arith(kind, key, delta, create), toArith);
  }

  flush(delay: number): Promise<NodeFlush> {
    return this.request(this.codec.flushAll(delay), toFlush);
  }

  version(): Promise<{ status: 'ok'; version: string } | Failed> {
    return this.request(this.codec.version(), toVersion);
  }

  /** `stats [group]` as name -> value. */
  stats(group?: string): Promise<Map<string, string> | Failed> {
    const stats = new Map<string, string>();
    return new Promise((resolve) =>
      this.dispatch({
        ...this.codec.stats(group),
        onPart: (part) => {
          if (part.type === 'stat') stats.set(part.name, part.value);
        },
        resolve: (r) => resolve(isFailed(r) ? r : r.type === 'end' ? stats : failed(describe(r))),
      }),
    );
  }

  /** pid and start time from `stats`: compare two answers to tell a restart (an empty backend). */
  async identity(): Promise<BackendIdentity | Failed> {
    const s = await this.stats();
    if (!(s instanceof Map)) return s;
    const pid = Number(s.get('pid'));
    const startedAt = Number(s.get('time')) - Number(s.get('uptime'));
    if (!Number.isInteger(pid) || !Number.isInteger(startedAt)) return failed('stats without pid, time or uptime');
    return { status: 'ok', pid, startedAt };
  }

  /**
   * Every key the backend holds (`lru_crawler metadump all`, on a connection of
   * its own), raw bytes. Large caches: prefer metadumpEach, which keeps nothing.
   */
  async metadump(): Promise<Buffer[] | Failed> {
    const keys: Buffer[] = [];
    const r = await this.metadumpEach((line) => keys.push(line.key));
    return r.status === 'ok' ? keys : r;
  }

  /**
   * Streams the metadump line by line; resolves when it ends. memcached runs one crawl at a
   * time and answers BUSY to another: this process's crawls of the backend take turns.
   */
  metadumpEach(onLine: (line: DumpLine) => void): Promise<{ status: 'ok'; count: number } | Failed> {
    const turn = this.crawling.then(() => this.crawl(onLine));
    this.crawling = turn.then(
      () => undefined,
      () => undefined,
    );
    return turn;
  }

  private crawl(onLine: (line: DumpLine) => void): Promise<{ status: 'ok'; count: number } | Failed> {
    if (this.status !== 'up') return Promise.resolve(this.unavailable());
    let count = 0;
    const onPart = (part: PartReply): void => {
      if (part.type !== 'dump') return;
      count++;
      onLine(part);
    };
    if (this.codec.metadump === null) return Promise.resolve(failed(`the ${this.codec.protocol} protocol cannot list keys`));
    return this.oneShot(this.codec.metadump, this.opts.metadumpIdleTimeoutMs, onPart).then((r) =>
      isFailed(r) ? r : r.type === 'end' ? { status: 'ok', count } : failed(describe(r)),
    );
  }

  /** Ends every connection, probe and timer; requests still pending fail. */
  async close(): Promise<void> {
    if (this.status === 'closed') return;
    this.status = 'closed';
    if (this.probeTimer !== null) {
      clearTimeout(this.probeTimer);
      this.probeTimer = null;
    }
    const all = [...this.pool, ...this.side];
    for (const c of all) c.close('backend closed');
    this.failWaiting('backend closed', 'closed');
    await Promise.all(all.map((c) => c.done));
  }

  // -------------------------------------------------------------------------
  // Pool

  private request<T>(op: Op, map: (r: FinalReply) => T): Promise<T | Failed> {
    return new Promise((resolve) =>
      // Every request the same shape (no spread): the connection's hot paths stay monomorphic.
      this.dispatch({
        kind: op.kind,
        encode: op.encode,
        dataFollows: op.dataFollows === true,
        resolve: (r) => {
          if (!isFailed(r) && r.type === 'error' && r.code === 'SERVER_ERROR') this.observer.failed('server_error', 1);
          resolve(isFailed(r) ? r : map(r));
        },
      }),
    );
  }

  private dispatch(req: BackendRequest): void {
    if (this.status !== 'up') {
      this.observer.failed(this.status === 'closed' ? 'closed' : 'down', 1);
      req.resolve(this.unavailable());
      return;
    }
    let best: Connection | null = null;
    let load = this.waiting.length;
    for (const c of this.pool) {
      load += c.pending;
      if (c.isOpen && (best === null || c.pending < best.pending)) best = c;
    }
    if (load >= this.opts.maxPending) {
      this.observer.failed('overload', 1);
      req.resolve(failed('too many requests pending'));
      return;
    }
    if ((best === null || best.pending > 0) && this.pool.size < this.opts.connections) this.openConnection();
    if (best !== null) best.send(req);
    else this.waiting.push(req);
  }

  /**
   * This backend as a node whose requests go on one connection of their own, outside
   * the pool: the trust agent's rounds (src/trust/agent.ts), which must not wait behind
   * a client's burst of thousands of requests. Fails at once while the backend is down.
   */
  control(): MemcachedNode {
    const send = <T>(op: Op, map: (r: FinalReply) => T): Promise<T | Failed> =>
      new Promise((resolve) => this.controlDispatch({ kind: op.kind, encode: op.encode, dataFollows: op.dataFollows === true, resolve: (r) => resolve(isFailed(r) ? r : map(r)) }));
    const carry = (key: Buffer): Failed | null => (this.codec.canCarryKey(key) ? null : uncarriable());
    return {
      address: this.address,
      isUp: () => this.isUp(),
      get: (key, touch) => Promise.resolve(carry(key) ?? send(this.codec.get(key, touch), toGet)),
      casOf: (key) => Promise.resolve(carry(key) ?? send(this.codec.casOnly(key), toCas)),
      store: (req) => Promise.resolve(carry(req.key) ?? send(this.codec.store(req), toStore)),
      delete: (key, cas) => Promise.resolve(carry(key) ?? send(this.codec.delete(key, cas), toDelete)),
      touch: (key, exptime) => Promise.resolve(carry(key) ?? send(this.codec.touch(key, exptime), toTouch)),
      arith: (kind, key, delta, create) => Promise.resolve(carry(key) ?? send(this.codec.arith(kind, key, delta, create), toArith)),
      flush: (delay) => send(this.codec.flushAll(delay), toFlush),
    };
  }

  private controlDispatch(req: BackendRequest): void {
    if (this.status !== 'up') {
      req.resolve(this.unavailable());
      return;
    }
    if (this.controlConn === null) this.openControl();
    if (this.controlOpen) this.controlConn!.send(req);
    else this.controlWaiting.push(req);
  }

  private openControl(): void {
    const owner: ConnectionOwner = {
      opened: (conn) => {
        this.controlOpen = true;
        for (const req of this.controlWaiting.splice(0)) conn.send(req);
      },
      replied: () => {},
      closed: (conn, failure, lost) => {
        this.side.delete(conn);
        const failedRequests = lost + this.controlWaiting.length;
        if (failure !== null && failedRequests > 0) this.observer.failed(failure.kind, failedRequests);
        if (this.controlConn === conn) {
          this.controlConn = null;
          this.controlOpen = false;
        }
        for (const req of this.controlWaiting.splice(0)) req.resolve(failed(failure?.reason ?? 'connection closed'));
        // A refused or dropped connection is evidence about the backend like a pool connection's
        // (the rounds may be all it is asked); a slow reply is not: the pool, which sees whether
        // replies still flow, judges stalls.
        if (failure === null || failure.kind === 'timeout' || this.status !== 'up') return;
        // Dropped once open: the process may have restarted, and a pool with no connection open
        // would not tell before the next round reads the incarnation key.
        if (failure.kind !== 'connect' && failure.kind !== 'auth') this.notify('lost');
        if (++this.failures >= this.opts.failureLimit) this.markDown(failure.reason);
      },
    };
    const conn = new Connection(this.connectionOptions(), owner);
    this.controlConn = conn;
    this.side.add(conn);
  }

  /** A pool or control connection's settings (probes and metadumps set their own timeout). */
  private connectionOptions(): ConnectionOptions {
    return {
      host: this.host,
      port: this.port,
      connectTimeoutMs: this.opts.connectTimeoutMs,
      requestTimeoutMs: this.opts.requestTimeoutMs,
      parser: this.opts.parser,
      tls: this.opts.tls,
      codec: this.codec,
    };
  }

  private openConnection(): void {
    const conn = new Connection(this.connectionOptions(), this.poolOwner);
    this.pool.add(conn);
  }

  private leastLoaded(): Connection | null {
    let best: Connection | null = null;
    for (const c of this.pool) if (c.isOpen && (best === null || c.pending < best.pending)) best = c;
    return best;
  }

  private onOpened(conn: Connection): void {
    if (this.status !== 'up') {
      conn.close();
      return;
    }
    for (let req = this.waiting.shift(); req !== undefined; req = this.waiting.shift()) {
      (this.leastLoaded() ?? conn).send(req);
    }
  }

  private onClosed(conn: Connection, failure: ConnectionFailure | null, lost: number): void {
    this.pool.delete(conn);
    // A connection that never opened (refused, or its SASL handshake refused) lost nothing.
    if (failure !== null && failure.kind !== 'connect' && failure.kind !== 'auth' && this.status === 'up') this.notify('lost');
    if (lost > 0) this.observer.failed(failure?.kind ?? (this.status === 'closed' ? 'closed' : 'down'), lost);
    const stall = failure?.kind === 'timeout' || failure?.reason === CONNECT_TIMEOUT;
    if (stall) this.observer.timedOut();
    if (failure === null || this.status !== 'up') return;
    const evidence = failure.kind === 'timeout' ? ++this.timeouts >= this.opts.timeoutLimit : ++this.failures >= this.opts.failureLimit;
    if (evidence) {
      this.markDown(failure.reason);
      return;
    }
    // Requests waiting for a connection never wait on one that is not coming.
    if (this.pool.size === 0) this.failWaiting(failure.reason, failure.kind);
  }

  private failWaiting(reason: string, counted: BackendErrorReason): void {
    if (this.waiting.length > 0) this.observer.failed(counted, this.waiting.length);
    const result = failed(reason);
    for (const req of this.waiting.drain()) req.resolve(result);
  }

  private unavailable(): Failed {
    return failed(this.status === 'closed' ? 'backend closed' : `backend down: ${this.downReason}`);
  }

  // -------------------------------------------------------------------------
  // Health

  private markDown(reason: string): void {
    if (this.status !== 'up') return;
    this.status = 'down';
    this.downReason = reason;
    this.failures = 0;
    this.timeouts = 0;
    this.goodProbes = 0;
    for (const c of [...this.pool]) c.close(`backend down: ${reason}`);
    this.controlConn?.close(`backend down: ${reason}`);
    this.failWaiting(`backend down: ${reason}`, 'down');
    this.probeDelay = this.opts.probeIntervalMs;
    this.scheduleProbe();
    this.notify('down', reason);
  }

  private markUp(): void {
    this.status = 'up';
    this.downReason = '';
    this.failures = 0;
    this.timeouts = 0;
    this.goodProbes = 0;
    this.notify('up');
  }

  private notify(...args: ['down', string] | ['up'] | ['lost']): void {
    // A listener's exception must not unwind into the socket code that noticed the change.
    try {
      if (args[0] === 'down') this.emit('down', args[1]);
      else this.emit(args[0]);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  /** Equal jitter: between half and all of the delay, so probes from many proxies spread out. */
  private scheduleProbe(): void {
    const ms = this.probeDelay * (0.5 + Math.random() * 0.5);
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      void this.probe();
    }, ms);
  }

  private async probe(): Promise<void> {
    const r = await this.oneShot(this.codec.version(), this.opts.requestTimeoutMs);
    if (this.status !== 'down') return;
    if (!isFailed(r) && toVersion(r).status === 'ok') {
      if (++this.goodProbes >= this.opts.upAfterProbes) {
        this.markUp();
        return;
      }
      this.probeDelay = this.opts.probeIntervalMs;
    } else {
      this.goodProbes = 0;
      this.probeDelay = Math.min(this.opts.retryMaxMs, this.probeDelay * 2);
    }
    this.scheduleProbe();
  }

  /** One request on a fresh connection of its own, closed after the reply. */
  private oneShot(
    op: Op,
    timeoutMs: number,
    onPart?: (part: PartReply) => void,
  ): Promise<FinalReply | Failed> {
    return new Promise((resolve) => {
      let settled = false;
      const settle = (r: FinalReply | Failed): void => {
        if (settled) return;
        settled = true;
        resolve(r);
      };
      const owner: ConnectionOwner = {
        opened: (conn) =>
          conn.send({
            ...op,
            onPart,
            resolve: (r) => {
              settle(r);
              conn.close();
            },
          }),
        replied: () => {},
        closed: (conn, failure) => {
          this.side.delete(conn);
          settle(failed(failure?.reason ?? 'connection closed'));
        },
      };
      const conn = new Connection(
        {
          host: this.host,
          port: this.port,
          connectTimeoutMs: this.opts.connectTimeoutMs,
          requestTimeoutMs: timeoutMs,
          parser: this.opts.parser,
          tls: this.opts.tls,
          codec: this.codec,
        },
        owner,
      );
      this.side.add(conn);
    });
  }
}

function isFailed(r: FinalReply | Failed): r is Failed {
  return 'status' in r;
}

function uncarriable(): Failed {
  return failed('key cannot be sent to memcached (needs base64 and is over 186 bytes)');
}

/** "host:port" or "[v6]:port". */
export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  let host = address.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(address.slice(colon + 1)) };
}
