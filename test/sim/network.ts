// One sidecar's view of one backend: a Path is the MemcachedNode the sidecar's ring
// and router use, with the health rules of src/backends/backend.ts: down after
// failureLimit connection failures or timeoutLimit stalls; while down every request
// fails at once, and probes (a fresh connection and `version`, jittered, backing
// off) bring it up after upAfterProbes good ones. isUp() is this sidecar's view
// only. Its connections (connection.ts) go over the node's link (link.ts).

import { DEFAULT_BACKEND_OPTIONS } from '../../src/backends/backend';
import type { DumpLine } from '../../src/protocol/backend/meta';
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
} from '../../src/routing/node';
import { isReserved } from '../../src/trust/reserved-keys';
import { Conn, failed, type Command, type ConnOwner, type PathEnv, type Request } from './connection';

const OPTIONS = DEFAULT_BACKEND_OPTIONS;

const VERSION: Command<{ status: 'ok' }> = { op: 'version', key: '', run: () => ({ status: 'ok' }) };

/** MemcachedNode's requests, as the simulated memcached runs them. */
const commands = {
  get: (key: Buffer, touch?: number): Command<NodeGet> => ({
    op: touch === undefined ? 'get' : 'gat',
    key: key.toString('latin1'),
    run: (mc) => mc.get(key, touch),
  }),
  casOf: (key: Buffer): Command<NodeCas> => ({ op: 'casOf', key: key.toString('latin1'), run: (mc) => mc.casOf(key) }),
  store: (req: StoreRequest): Command<NodeStore> => {
    const key = req.key.toString('latin1');
    const op = `${req.mode}${req.cas !== 0n ? ` C${req.cas}` : ''}`;
    return { op, key, value: isReserved(key) ? undefined : req.value.toString('latin1'), run: (mc) => mc.store(req) };
  },
  delete: (key: Buffer, cas: bigint): Command<NodeDelete> => ({
    op: cas === 0n ? 'delete' : `delete C${cas}`,
    key: key.toString('latin1'),
    run: (mc) => mc.delete(key, cas),
  }),
  touch: (key: Buffer, exptime: number): Command<NodeTouch> => ({
    op: `touch ${exptime}`,
    key: key.toString('latin1'),
    run: (mc) => mc.touch(key, exptime),
  }),
  arith: (kind: 'incr' | 'decr', key: Buffer, delta: bigint, create?: { initial: bigint; exptime: number }): Command<NodeArith> => ({
    op: kind,
    key: key.toString('latin1'),
    run: (mc) => mc.arith(kind, key, delta, create),
  }),
  flush: (delay: number): Command<NodeFlush> => ({ op: 'flush_all', key: '', run: (mc) => mc.flush(delay) }),
};

/** What a Path tells its sidecar, as src/backends/backend.ts emits 'down' and 'lost'. */
export interface PathWatcher {
  /** Marked down: requests fail at once until probes bring it up. */
  down(): void;
  /** A connection that was open ended while up: the process may have restarted. */
  lost(): void;
}

export class Path implements MemcachedNode {
  readonly address: string;
  private watcher: PathWatcher | null = null;
  private status: 'up' | 'down' = 'up';
  private downReason = '';
  private conn: Conn | null = null;
  /** Requests waiting for the connection to open. */
  private waiting: Request[] = [];
  private failures = 0;
  private timeouts = 0;
  private goodProbes = 0;
  private probeDelay = OPTIONS.probeIntervalMs;
  private readonly poolOwner: ConnOwner = {
    opened: (conn) => {
      if (this.status !== 'up') return void conn.close(`backend down: ${this.downReason}`);
      for (const req of this.waiting.splice(0)) conn.send(req);
    },
    replied: () => {
      this.failures = 0;
      this.timeouts = 0;
    },
    closed: (conn, failure) => {
      if (this.conn === conn) this.conn = null;
      if (failure === null || this.status !== 'up') return;
      if (failure.kind !== 'connect') this.watcher?.lost();
      const evidence = failure.kind === 'timeout' ? ++this.timeouts >= OPTIONS.timeoutLimit : ++this.failures >= OPTIONS.failureLimit;
      if (evidence) this.markDown(failure.reason);
      else if (this.conn === null) this.failWaiting(failure.reason);
    },
  };

  private controlConn: Conn | null = null;
  private readonly controlWaiting: Request[] = [];
  private readonly controlOwner: ConnOwner = {
    opened: (conn) => {
      for (const req of this.controlWaiting.splice(0)) conn.send(req);
    },
    replied: () => {},
    closed: (conn, failure) => {
      if (this.controlConn === conn) this.controlConn = null;
      for (const req of this.controlWaiting.splice(0)) req.resolve(failed(failure?.reason ?? 'connection closed'));
      // As Backend's control connection: dropped once open, the process may have restarted.
      if (failure !== null && failure.kind !== 'connect' && failure.kind !== 'timeout' && this.status === 'up') this.watcher?.lost();
    },
  };

  constructor(
    address: string,
    private readonly env: PathEnv,
  ) {
    this.address = address;
  }

  isUp(): boolean {
    return this.status === 'up';
  }

  watch(watcher: PathWatcher): void {
    this.watcher = watcher;
  }

  /** The path fault: this sidecar's connections are reset (their requests fail at once). */
  reset(): void {
    this.conn?.reset();
    this.controlConn?.reset();
  }

  get(key: Buffer, touch?: number): Promise<NodeGet> {
    return this.request(commands.get(key, touch));
  }

  casOf(key: Buffer): Promise<NodeCas> {
    return this.request(commands.casOf(key));
  }

  store(req: StoreRequest): Promise<NodeStore> {
    return this.request(commands.store(req));
  }

  delete(key: Buffer, cas: bigint): Promise<NodeDelete> {
    return this.request(commands.delete(key, cas));
  }

  touch(key: Buffer, exptime: number): Promise<NodeTouch> {
    return this.request(commands.touch(key, exptime));
  }

  arith(kind: 'incr' | 'decr', key: Buffer, delta: bigint, create?: { initial: bigint; exptime: number }): Promise<NodeArith> {
    return this.request(commands.arith(kind, key, delta, create));
  }

  flush(delay: number): Promise<NodeFlush> {
    return this.request(commands.flush(delay));
  }

  /**
   * This path as a node whose requests go on a connection of their own, outside the pool
   * (Backend.control(): the trust agent's rounds). Fails at once while the path is down;
   * its failures count for nothing here.
   */
  control(): MemcachedNode {
    const send = <R extends { status: string }>(command: Command<R>): Promise<R | Failed> =>
      new Promise((resolve) => this.controlDispatch({ command, resolve: resolve as (reply: { status: string }) => void }));
    return {
      address: this.address,
      isUp: () => this.isUp(),
      get: (key, touch) => send(commands.get(key, touch)),
      casOf: (key) => send(commands.casOf(key)),
      store: (req) => send(commands.store(req)),
      delete: (key, cas) => send(commands.delete(key, cas)),
      touch: (key, exptime) => send(commands.touch(key, exptime)),
      arith: (kind, key, delta, create) => send(commands.arith(kind, key, delta, create)),
      flush: (delay) => send(commands.flush(delay)),
    };
  }

  /** Resyncs list keys with it (as Backend: a metadump on a connection of its own). */
  readonly canListKeys = true;

  metadumpEach(onLine: (line: DumpLine) => void): Promise<{ status: 'ok'; count: number } | Failed> {
    if (this.status !== 'up') return Promise.resolve(failed(`backend down: ${this.downReason}`));
    return new Promise((resolve) => {
      let settled = false;
      const settle = (r: { status: 'ok'; count: number } | Failed): void => {
        if (settled) return;
        settled = true;
        resolve(r);
      };
      const dump: Command<{ status: 'ok'; lines: DumpLine[] }> = { op: 'metadump', key: '', run: (mc) => ({ status: 'ok', lines: mc.dump() }) };
      const owner: ConnOwner = {
        opened: (conn) =>
          conn.send({
            command: dump,
            resolve: (reply) => {
              if (reply.status !== 'ok') settle(reply as Failed);
              else {
                const { lines } = reply as { status: 'ok'; lines: DumpLine[] };
                for (const line of lines) onLine(line);
                settle({ status: 'ok', count: lines.length });
              }
              conn.close('metadump done');
            },
          }),
        replied: () => {},
        closed: (_conn, failure) => settle(failed(failure?.reason ?? 'connection closed')),
      };
      new Conn(this.env, owner, OPTIONS.metadumpIdleTimeoutMs);
    });
  }

  private request<R extends { status: string }>(command: Command<R>): Promise<R | Failed> {
    return new Promise((resolve) => this.dispatch({ command, resolve: resolve as (reply: { status: string }) => void }));
  }

  private dispatch(req: Request): void {
    if (this.status !== 'up') return req.resolve(failed(`backend down: ${this.downReason}`));
    if (this.conn === null) this.conn = new Conn(this.env, this.poolOwner, this.env.requestTimeoutMs);
    if (this.conn.state === 'open') this.conn.send(req);
    else this.waiting.push(req);
  }

  private controlDispatch(req: Request): void {
    if (this.status !== 'up') return req.resolve(failed(`backend down: ${this.downReason}`));
    if (this.controlConn === null) this.controlConn = new Conn(this.env, this.controlOwner, this.env.requestTimeoutMs);
    if (this.controlConn.state === 'open') this.controlConn.send(req);
    else this.controlWaiting.push(req);
  }

  private failWaiting(reason: string): void {
    for (const req of this.waiting.splice(0)) req.resolve(failed(reason));
  }

  private markDown(reason: string): void {
    this.status = 'down';
    this.downReason = reason;
    this.failures = 0;
    this.timeouts = 0;
    this.goodProbes = 0;
    this.conn?.close(`backend down: ${reason}`);
    this.failWaiting(`backend down: ${reason}`);
    this.probeDelay = OPTIONS.probeIntervalMs;
    this.scheduleProbe();
    this.env.trace.record(this.env.who, this.env.backendName, 'mark', '', `down: ${reason}`);
    this.watcher?.down();
  }

  /** Equal jitter, as backend.ts: between half and all of the delay. */
  private scheduleProbe(): void {
    this.env.clock.timer(this.probeDelay * (0.5 + this.env.rng.next() * 0.5), () => this.probe());
  }

  private probe(): void {
    let settled = false;
    const settle = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      if (ok && ++this.goodProbes >= OPTIONS.upAfterProbes) {
        this.status = 'up';
        this.downReason = '';
        this.failures = 0;
        this.timeouts = 0;
        this.goodProbes = 0;
        this.env.trace.record(this.env.who, this.env.backendName, 'mark', '', 'up');
        return;
      }
      if (ok) this.probeDelay = OPTIONS.probeIntervalMs;
      else {
        this.goodProbes = 0;
        this.probeDelay = Math.min(OPTIONS.retryMaxMs, this.probeDelay * 2);
      }
      this.scheduleProbe();
    };
    const owner: ConnOwner = {
      opened: (conn) =>
        conn.send({
          command: VERSION,
          resolve: (reply) => {
            settle(reply.status === 'ok');
            conn.close('probe done');
          },
        }),
      replied: () => {},
      closed: () => settle(false),
    };
    new Conn(this.env, owner, this.env.requestTimeoutMs);
  }
}
