// One TCP connection over a link, as src/backends/connection.ts keeps it: requests
// pipelined and answered in order; the head request fails the whole connection once
// it is past its deadline and nothing came back for requestTimeoutMs (a stall). A
// request the connection gave up on may still land on the backend later: nothing
// fences it.

import { DEFAULT_BACKEND_OPTIONS } from '../../src/backends/backend';
import { CONNECT_TIMEOUT } from '../../src/backends/connection';
import type { Failed } from '../../src/routing/node';
import { isReserved } from '../../src/trust/reserved-keys';
import type { LocalClock, Timer } from './clock';
import type { Link } from './link';
import type { Peer, SimMemcached } from './memcached';
import type { Rng } from './random';
import { describe, type Trace } from './trace';

/** Below this a timer that fired is on time (local and real time convert with rounding). */
const EPSILON_MS = 1e-6;

/** What a request asks of the backend: run whole when it lands. */
export interface Command<R> {
  op: string;
  key: string;
  /** The value it writes, for the trace. */
  value?: string;
  run(mc: SimMemcached): R;
}

export interface Request {
  command: Command<{ status: string }>;
  resolve(reply: { status: string }): void;
}

/** A request sent on a connection. */
interface Entry {
  req: Request;
  deadline: number;
  /** About a client's key (see Link.inFlight). */
  counted: boolean;
}

interface ConnFailure {
  /** As ConnectionFailure: connect (refused, timed out), timeout (a stall), closed (reset). */
  kind: 'connect' | 'timeout' | 'closed';
  reason: string;
}

export interface ConnOwner {
  opened(conn: Conn): void;
  replied(): void;
  /** failure null: closed by us. */
  closed(conn: Conn, failure: ConnFailure | null): void;
}

/** Everything one sidecar's connections to one backend go through. */
export interface PathEnv {
  who: string;
  backendName: string;
  link: Link;
  backend: SimMemcached;
  clock: LocalClock;
  rng: Rng;
  trace: Trace;
  /** The sidecar's backend request timeout (a stall: past it, nothing came back). */
  requestTimeoutMs: number;
}

export function failed(reason: string): Failed {
  return { status: 'failed', reason };
}

export class Conn implements Peer {
  state: 'connecting' | 'open' | 'closed' = 'connecting';
  /** The memcached process that accepted it. */
  private pid = -1;
  private readonly fifo: Entry[] = [];
  private lastData = -Infinity;
  private timer: Timer | null = null;
  /** A message of this connection was lost (Message.lost): the sidecar sees a reset. */
  private readonly broken = (): void => void this.env.clock.timer(0, () => this.reset());

  constructor(
    private readonly env: PathEnv,
    private readonly owner: ConnOwner,
    private readonly timeoutMs: number,
  ) {
    const { link, clock } = env;
    const refused = (): void => this.fail({ kind: 'connect', reason: 'connection refused' });
    if (link.refusing) {
      this.timer = clock.timer(0, refused);
      return;
    }
    this.timer = clock.timer(DEFAULT_BACKEND_OPTIONS.connectTimeoutMs, () => this.fail({ kind: 'connect', reason: CONNECT_TIMEOUT }));
    link.toBackend(() => {
      const mc = env.backend;
      if (mc.state === 'dead') {
        link.toSidecar(refused, clock.process, false);
        return;
      }
      mc.accept(this);
      const pid = mc.pid;
      link.toSidecar(() => this.opened(pid), clock.process, false);
    }, false);
  }

  send(req: Request): void {
    const { key } = req.command;
    const entry = { req, deadline: this.env.clock.now() + this.timeoutMs, counted: key !== '' && !isReserved(key) };
    this.fifo.push(entry);
    this.env.link.toBackend(() => this.land(entry), entry.counted, this.broken);
    if (this.timer === null) this.arm(this.timeoutMs);
  }

  /** Closed by us: what is pending fails with `reason`. */
  close(reason: string): void {
    if (this.end(reason)) this.owner.closed(this, null);
  }

  /** The memcached process at the other end died: its reset travels back. */
  peerGone(): void {
    this.env.link.toSidecar(() => this.fail({ kind: 'closed', reason: 'connection reset' }), this.env.clock.process, false);
  }

  /** A reset seen here (the sidecar's side of a path fault). */
  reset(): void {
    this.fail({ kind: 'closed', reason: 'connection reset' });
  }

  private opened(pid: number): void {
    if (this.state !== 'connecting') return;
    this.state = 'open';
    this.pid = pid;
    this.timer?.cancel();
    this.timer = null;
    this.owner.opened(this);
  }

  private land(entry: Entry): void {
    const { backend: mc, link, clock } = this.env;
    if (mc.state === 'dead' || mc.pid !== this.pid) {
      link.toSidecar(() => this.fail({ kind: 'closed', reason: 'connection reset' }), clock.process, entry.counted);
      return;
    }
    mc.land(() => {
      const { command } = entry.req;
      const reply = command.run(mc);
      if (command.op !== 'version') {
        // The trust protocol's records: hashed, not kept, and without their values.
        const { who, backendName, trace } = this.env;
        if (isReserved(command.key)) trace.record(who, backendName, command.op, command.key, reply.status, false);
        else trace.record(who, backendName, command.op, command.key, `${command.value === undefined ? '' : `${command.value} -> `}${describe(reply)}`);
      }
      link.toSidecar(() => this.replied(entry, reply), clock.process, entry.counted, this.broken);
    });
  }

  private replied(entry: Entry, reply: { status: string }): void {
    this.lastData = this.env.clock.now();
    if (this.state !== 'open') return; // closed here: the kernel drops it
    const head = this.fifo.shift();
    if (head !== entry) throw new Error('simulated connection answered out of order');
    this.owner.replied();
    entry.req.resolve(reply);
  }

  private arm(ms: number): void {
    this.timer = this.env.clock.timer(ms, () => this.onTimer());
  }

  /** The head's deadline, pushed back while the backend keeps answering (connection.ts). */
  private onTimer(): void {
    this.timer = null;
    const head = this.fifo[0];
    if (head === undefined || this.state !== 'open') return;
    const left = this.left(head);
    if (left > EPSILON_MS) return this.arm(left);
    // As connection.ts: after a stall of this event loop the reply may be waiting in the
    // socket. A zero timer runs after every delivery the stall deferred (clock.ts).
    this.timer = this.env.clock.timer(0, () => {
      this.timer = null;
      const first = this.fifo[0];
      if (first === undefined || this.state !== 'open') return;
      const still = this.left(first);
      if (still > EPSILON_MS) this.arm(still);
      else this.fail({ kind: 'timeout', reason: 'timeout' });
    });
  }

  private left(head: Entry): number {
    return Math.max(head.deadline, this.lastData + this.timeoutMs) - this.env.clock.now();
  }

  private fail(failure: ConnFailure): void {
    if (this.end(failure.reason)) this.owner.closed(this, failure);
  }

  /** Closes it; false if it was closed already. */
  private end(reason: string): boolean {
    if (this.state === 'closed') return false;
    this.state = 'closed';
    this.timer?.cancel();
    this.timer = null;
    this.env.backend.forget(this);
    const lost = this.fifo.splice(0);
    for (const { req } of lost) req.resolve(failed(reason));
    return true;
  }
}
