// One persistent connection to a memcached backend. Requests are pipelined and
// their replies matched in FIFO order:
//
//   send(req) ─► encode ─► outq ─(one write per tick)─► socket
//                   └─► fifo (deadline)
//   socket ─► ReplyParser.next(kind of fifo head) ─► head.resolve(reply)
//
// Whatever breaks the FIFO is fatal to the connection: a reply nobody waits for,
// a meta reply whose opaque is not the head's (so `mn`, which has none, is
// not sent on a shared connection), an `ERROR` (we never send an
// unknown command, so it means memcached read our bytes differently), a parse
// failure. So is a head request past its deadline. Either way the socket is
// destroyed, every request on it fails, and the owner learns why.
//
// A connection given up with requests on it is reset (RST), not closed: the kernel
// then drops what it had not yet delivered, so a write whose reply we stopped
// waiting for cannot reach the backend after a frozen path heals, once the trust
// protocol has moved on (docs/trust.md, assumption 5). Only bytes the backend's
// host already received can still be applied. TLS runs over a TCP socket opened
// here, so that the TCP connection under it can be reset too.
//
// With a codec that has a handshake (SASL to a memcached -S), the handshake is
// the first request on the socket, and the connection opens only once it
// succeeds; a refusal ends it as an 'auth' failure, before anything else is sent.

import net from 'node:net';
import tls from 'node:tls';
import type { Failed } from '../routing/node';
import {
  DEFAULT_PARSER_LIMITS,
  type Encoded,
  type FinalReply,
  type ParserLimits,
  type PartReply,
  type ReplyKind,
} from '../protocol/backend/meta';
import { META_CODEC, type BackendCodec, type ReplyReader } from './codec';
import { Fifo } from './fifo';

export interface BackendRequest {
  readonly kind: ReplyKind;
  /** The request's bytes; a 'meta' request must carry `opaque` as its O flag (binary: in its header). */
  readonly encode: (opaque: string) => Encoded;
  /**
   * The request carries a data block (ms). memcached reads the block as commands
   * when it rejects the line before the length (a CLIENT_ERROR): such a reply
   * leaves the stream in doubt, so the connection is dropped after it.
   */
  readonly dataFollows?: boolean;
  /** Each line of a multi-line reply (stats, metadump) before its END. */
  readonly onPart?: (part: PartReply) => void;
  /** Called exactly once: with the final reply, or with the failure. */
  readonly resolve: (result: FinalReply | Failed) => void;
}

/** Why a connection ended, when it was not closed on purpose. */
export interface ConnectionFailure {
  /**
   * connect: refused or timed out; timeout: a stall (the head request past its deadline and no
   * byte from the backend for requestTimeoutMs); desync: a reply that does not fit; closed: by the backend;
   * auth: the backend refused the handshake (SASL credentials).
   */
  kind: 'connect' | 'timeout' | 'desync' | 'closed' | 'auth';
  reason: string;
}

export interface ConnectionOwner {
  /** The socket is connected; send() is accepted from now on. */
  opened(conn: Connection): void;
  /** A final reply arrived, `seconds` after its request was sent: the backend is alive. */
  replied(conn: Connection, seconds: number): void;
  /** The connection is over; `failure` is null when close() ended it; `lost` requests in flight failed with it. */
  closed(conn: Connection, failure: ConnectionFailure | null, lost: number): void;
}

export interface ConnectionOptions {
  host: string;
  port: number;
  connectTimeoutMs: number;
  /**
   * Deadline of each request from send(); a multi-line reply's deadline restarts at each line.
   * Past it, the request still waits while the backend sent something in the last requestTimeoutMs.
   */
  requestTimeoutMs: number;
  parser?: Partial<ParserLimits>;
  /** The protocol spoken (default: meta commands). */
  codec?: BackendCodec;
  /** TLS options (memcached -Z); the connection opens once the handshake, with its certificate checks, is done. */
  tls?: tls.ConnectionOptions | null;
}

interface InFlight {
  req: BackendRequest;
  opaque: string;
  deadline: number;
  /** performance.now() at send(), for the backend latency metric. */
  sent: number;
}

/** Up to this many queued bytes are joined into one buffer; beyond, written as chunks under cork. */
const JOIN_MAX = 64 * 1024;

/** How the reason of a refused handshake (SASL credentials) begins. */
export const AUTH_FAILED = 'authentication failed';

/** The reason of a connect that did not finish in connectTimeoutMs. */
export const CONNECT_TIMEOUT = 'connect timeout';

export function failed(reason: string): Failed {
  return { status: 'failed', reason };
}

export class Connection {
  private state: 'connecting' | 'authenticating' | 'open' | 'closed' = 'connecting';
  private readonly socket: net.Socket;
  /** The TCP connection under `socket`: itself, or the one TLS runs over (kept to reset it, see end). */
  private readonly tcp: net.Socket;
  private readonly parser: ReplyReader;
  private readonly codec: BackendCodec;
  private readonly fifo = new Fifo<InFlight>();
  private outq: Buffer[] = [];
  private outBytes = 0;
  private flushHandle: NodeJS.Immediate | null = null;
  private timer: NodeJS.Timeout | null = null;
  private seq = 0;
  private lastError: string | null = null;
  /** Date.now() when the backend last sent a byte: a reply in progress is not a stall. */
  private lastData = 0;
  /** Resolves when the socket is fully closed. */
  readonly done: Promise<void>;

  constructor(
    private readonly opts: ConnectionOptions,
    private readonly owner: ConnectionOwner,
  ) {
    this.codec = opts.codec ?? META_CODEC;
    this.parser = this.codec.reader({ ...DEFAULT_PARSER_LIMITS, ...opts.parser });
    this.tcp = net.connect({ host: opts.host, port: opts.port });
    // TLS over a TCP socket of our own: a TLS socket has no TCP handle to reset.
    this.socket = opts.tls ? tls.connect({ ...opts.tls, host: opts.host, socket: this.tcp }) : this.tcp;
    this.tcp.setNoDelay(true);
    this.done = new Promise((resolve) => this.socket.once('close', () => resolve()));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.fail({ kind: 'connect', reason: CONNECT_TIMEOUT });
    }, opts.connectTimeoutMs);
    this.socket.once(opts.tls ? 'secureConnect' : 'connect', () => this.onConnect());
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.lastError = err.code ?? err.message;
    });
    // Under TLS the TCP socket's own errors reach `socket` too; this keeps them from being unhandled.
    if (this.tcp !== this.socket) this.tcp.on('error', () => {});
    this.socket.once('close', () => {
      const reason = this.lastError ?? 'connection closed by backend';
      if (this.state === 'authenticating') this.fail({ kind: 'auth', reason: `${AUTH_FAILED}: ${reason}` });
      else this.fail({ kind: this.state === 'connecting' ? 'connect' : 'closed', reason });
    });
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Requests sent and not yet answered. */
  get pending(): number {
    return this.fifo.length;
  }

  send(req: BackendRequest): void {
    if (this.state !== 'open') {
      req.resolve(failed('connection not open'));
      return;
    }
    this.enqueue(req);
  }

  /** Encodes the request, queues its bytes for this tick's write, and awaits its reply. */
  private enqueue(req: BackendRequest): void {
    const opaque = (this.seq = (this.seq + 1) % 0x7fffffff).toString(36);
    const bytes = req.encode(opaque);
    if (Array.isArray(bytes)) for (const b of bytes) this.queue(b);
    else this.queue(bytes);
    this.fifo.push({ req, opaque, deadline: Date.now() + this.opts.requestTimeoutMs, sent: performance.now() });
    if (this.timer === null) this.arm(this.opts.requestTimeoutMs);
    if (this.flushHandle === null) this.flushHandle = setImmediate(() => this.flush());
  }

  /** Ends the connection on purpose; requests still in flight fail. */
  close(reason = 'connection closed'): void {
    this.end(null, reason);
  }

  private queue(b: Buffer): void {
    this.outq.push(b);
    this.outBytes += b.length;
  }

  /** Everything sent during this tick goes out in one write (or one corked batch). */
  private flush(): void {
    this.flushHandle = null;
    if ((this.state !== 'open' && this.state !== 'authenticating') || this.outq.length === 0) return;
    const q = this.outq;
    const bytes = this.outBytes;
    this.outq = [];
    this.outBytes = 0;
    if (q.length === 1) {
      this.socket.write(q[0]);
    } else if (bytes <= JOIN_MAX) {
      this.socket.write(Buffer.concat(q, bytes));
    } else {
      this.socket.cork();
      for (const b of q) this.socket.write(b);
      this.socket.uncork();
    }
  }

  private onConnect(): void {
    if (this.state !== 'connecting') return;
    this.clearTimer();
    const handshake = this.codec.handshake;
    if (handshake === null) {
      this.open();
      return;
    }
    this.state = 'authenticating';
    this.enqueue({
      ...handshake,
      resolve: (r) => {
        if (this.state !== 'authenticating') return; // failed with the connection: already reported
        if (!('status' in r) && r.type === 'line') this.open();
        else {
          const why =
            'status' in r ? r.reason
            : r.type === 'error' && r.code === 'ERROR' ? 'the backend does not support SASL (memcached without -S?)'
            : r.type === 'error' ? r.message || r.code
            : 'unexpected reply';
          this.fail({ kind: 'auth', reason: `${AUTH_FAILED}: ${why}` });
        }
      },
    });
  }

  private open(): void {
    this.state = 'open';
    this.owner.opened(this);
  }

  private onData(chunk: Buffer): void {
    if (this.state !== 'open' && this.state !== 'authenticating') return;
    this.lastData = Date.now();
    this.parser.push(chunk);
    while (this.state === 'open' || this.state === 'authenticating') {
      const head = this.fifo.peek();
      if (head === undefined) {
        if (this.parser.buffered > 0) this.fail({ kind: 'desync', reason: 'reply with no request' });
        return;
      }
      const r = this.parser.next(head.req.kind, head.opaque);
      if (r.kind === 'more') return;
      if (r.kind === 'fatal') {
        this.fail({ kind: 'desync', reason: r.reason });
        return;
      }
      const reply = r.reply;
      if (reply.type === 'stat' || reply.type === 'dump') {
        head.deadline = Date.now() + this.opts.requestTimeoutMs;
        if (head.req.onPart) deliver(() => head.req.onPart?.(reply));
        continue;
      }
      const mismatch = this.mismatch(head, reply);
      if (mismatch) {
        this.fail({ kind: 'desync', reason: mismatch });
        return;
      }
      this.fifo.shift();
      // A refused handshake is an answer, but no sign of a usable backend: only replies on an open connection count.
      if (this.state === 'open') this.owner.replied(this, (performance.now() - head.sent) / 1000);
      deliver(() => head.req.resolve(reply));
      if (head.req.dataFollows && reply.type === 'error' && reply.code === 'CLIENT_ERROR') {
        this.fail({ kind: 'desync', reason: `CLIENT_ERROR to a request with data: ${reply.message}` });
      }
    }
  }

  /** Why `reply` cannot be the answer to `head`, or null when it can. */
  private mismatch(head: InFlight, reply: FinalReply): string | null {
    // A handshake answered ERROR (memcached without -S: "Unknown command") is a refusal, reported as one.
    if (reply.type === 'error' && reply.code === 'ERROR' && head.req.kind !== 'metadump' && head.req.kind !== 'auth') {
      return `ERROR reply${reply.message ? ': ' + reply.message : ''}`;
    }
    if (reply.type === 'meta' && reply.flags.opaque !== head.opaque) {
      return `reply opaque ${reply.flags.opaque ?? 'missing'}, expected ${head.opaque}`;
    }
    return null;
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.onTimer(), Math.max(1, ms));
  }

  /** When the head request times out: its deadline, pushed back while the backend keeps sending. */
  private stallDeadline(head: InFlight): number {
    return Math.max(head.deadline, this.lastData + this.opts.requestTimeoutMs);
  }

  /** One timer per connection, for the head's deadline; re-armed only when it fires early. */
  private onTimer(): void {
    this.timer = null;
    const head = this.fifo.peek();
    if (head === undefined || this.state === 'connecting' || this.state === 'closed') return;
    const left = this.stallDeadline(head) - Date.now();
    if (left > 0) {
      this.arm(left);
      return;
    }
    // A busy event loop can pass the deadline while the reply already waits in
    // the socket: let pending I/O be read once before calling it a stall.
    setImmediate(() => {
      const first = this.fifo.peek();
      if (first === undefined || this.state === 'connecting' || this.state === 'closed') return;
      const left = this.stallDeadline(first) - Date.now();
      if (left <= 0) {
        this.fail({ kind: 'timeout', reason: `timeout after ${this.opts.requestTimeoutMs} ms without a reply` });
        return;
      }
      this.clearTimer(); // send() may have armed it meanwhile, for a later deadline
      this.arm(left);
    });
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private fail(failure: ConnectionFailure): void {
    this.end(failure, failure.reason);
  }

  private end(failure: ConnectionFailure | null, reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.clearTimer();
    if (this.flushHandle !== null) {
      clearImmediate(this.flushHandle);
      this.flushHandle = null;
    }
    const abandoned = failure !== null || this.fifo.length > 0 || this.outBytes > 0;
    this.outq = [];
    this.outBytes = 0;
    // Still connecting, nothing was sent (and resetAndDestroy would wait for the connect).
    const resettable = !this.tcp.connecting && !this.tcp.destroyed;
    if (abandoned && resettable) this.tcp.resetAndDestroy();
    this.socket.destroy();
    const lost = this.fifo.drain();
    const result = failed(reason);
    for (const f of lost) deliver(() => f.req.resolve(result));
    this.owner.closed(this, failure, lost.length);
  }
}

/** Runs a request's callback; an exception in it must not break the reply stream, so it is rethrown later. */
function deliver(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}

