// One client connection: detect its protocol from the first byte (0x80 is a
// binary request, as memcached decides), feed the parser, dispatch requests,
// and write replies in order. Back-pressure: the socket stops being read while
// the client has too many requests in flight or too many reply bytes unread.
// Half-close: a client that shuts down its write side (FIN, `nc -N`) still gets
// the replies to every request it sent before, then the connection closes, as
// memcached does; an unfinished request at the FIN is dropped.
// Replies released in one tick (a chunk of pipelined requests, or the backend
// replies of one read) leave in one socket write: a write is a syscall, and
// syscalls were most of the proxy's CPU time.

import type { Socket } from 'node:net';
import type { Limits } from '../protocol/limits';
import { CLOSE, OrderedReplies, type SlotResult } from './ordered-replies';

/** A parser and the code that answers what it parses, for one protocol. */
export interface Protocol {
  push(chunk: Buffer): void;
  /**
   * The next complete request, ready to start, or null when none is buffered
   * or the protocol has finished (quit, fatal error) and reads nothing more.
   */
  next(): StartRequest | null;
}

/** Starts one request; `reply` must be called exactly once, possibly at once. */
export type StartRequest = (reply: (result: SlotResult) => void) => void;

export interface SessionObserver {
  bytesIn(n: number): void;
  bytesOut(n: number): void;
  closed(): void;
}

export type ProtocolFactory = (firstByte: number) => Protocol;

/** Up to this many reply bytes of one tick are joined into one buffer; beyond, written as chunks under cork. */
const JOIN_MAX = 64 * 1024;

export class ClientSession {
  private protocol: Protocol | null = null;
  private readonly replies: OrderedReplies;
  private pumping = false;
  private paused = false;
  private ended = false;
  private stopped = false;
  /** The client sent FIN: nothing more will arrive. */
  private inputEnded = false;
  /** Replies released this tick, written together by flushOut(). */
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  private readonly flushOut = (): void => this.writeOut();

  constructor(
    private readonly socket: Socket,
    private readonly limits: Limits,
    private readonly makeProtocol: ProtocolFactory,
    private readonly observer: SessionObserver,
  ) {
    this.replies = new OrderedReplies({
      write: (chunks) => this.write(chunks),
      close: () => this.end(),
      settled: () => {
        if (!this.pumping) this.pump();
      },
    });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.pump());
    socket.on('end', () => this.onInputEnd());
    socket.on('error', () => this.socket.destroy());
    socket.on('close', () => {
      this.ended = true;
      this.observer.closed();
    });
    if (limits.clientIdleTimeoutMs > 0) {
      socket.setTimeout(limits.clientIdleTimeoutMs, () => this.socket.destroy());
    }
  }

  /** Requests whose replies are not yet written. */
  get inFlight(): number {
    return this.replies.pending;
  }

  /** Shutting down: read no more requests; those in flight still get their replies. */
  stopReading(): void {
    this.stopped = true;
    this.socket.pause();
  }

  /**
   * Shutting down, nothing left in flight: send what is written, then FIN.
   * Unread requests are read and dropped, so closing does not reset the
   * connection (a reset can discard the replies the client has not read yet).
   */
  finish(): void {
    this.end();
    this.socket.resume();
  }

  private onData(chunk: Buffer): void {
    this.observer.bytesIn(chunk.length);
    if (this.ended) return;
    if (this.protocol === null) this.protocol = this.makeProtocol(chunk[0]);
    this.protocol.push(chunk);
    this.pump();
  }

  /** The socket was created with allowHalfOpen: the session decides when to close its side. */
  private onInputEnd(): void {
    this.inputEnded = true;
    if (this.protocol === null) this.end();
    else this.pump();
  }

  /** Start every buffered request the bounds allow, then decide whether to keep reading. */
  private pump(): void {
    if (this.pumping || this.protocol === null) return;
    this.pumping = true;
    let exhausted = false;
    try {
      // The output bound is checked per request, not only after the loop: one chunk can hold
      // thousands of pipelined gets, and a client that never reads must not get them all answered.
      while (!this.ended && !this.stopped && !this.overloaded()) {
        const start = this.protocol.next();
        if (start === null) {
          exhausted = true;
          break;
        }
        start(this.replies.reserve());
      }
    } finally {
      this.pumping = false;
    }
    // Half-closed, every request started and answered: close, after the replies are written.
    if (this.inputEnded && exhausted && this.replies.pending === 0) this.end();
    else this.updateReading();
  }

  private overloaded(): boolean {
    return (
      this.replies.pending >= this.limits.maxInflightPerClient ||
      this.socket.writableLength + this.outBytes > this.limits.maxClientOutputBytes
    );
  }

  private updateReading(): void {
    if (this.ended || this.stopped) return;
    const overloaded = this.overloaded();
    if (overloaded && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!overloaded && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private write(chunks: Buffer[]): void {
    if (this.ended) return;
    for (const c of chunks) {
      this.out.push(c);
      this.outBytes += c.length;
    }
    // nextTick runs after the promise callbacks of this tick: replies resolved
    // by one backend read are all filed by then. No timer, so no added latency.
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flushOut);
    }
  }

  private writeOut(): void {
    this.flushScheduled = false;
    const q = this.out;
    const n = this.outBytes;
    if (q.length === 0 || this.socket.destroyed) return;
    this.out = [];
    this.outBytes = 0;
    if (q.length === 1) {
      this.socket.write(q[0]);
    } else if (n <= JOIN_MAX) {
      this.socket.write(Buffer.concat(q, n));
    } else {
      this.socket.cork();
      for (const c of q) this.socket.write(c);
      this.socket.uncork();
    }
    this.observer.bytesOut(n);
    // The output bound counted these bytes while they waited here; if the socket
    // took them at once no 'drain' follows, so look again for requests to start.
    if (!this.pumping) this.pump();
  }

  /** Close after what was written so far has been sent. */
  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.writeOut();
    this.socket.end();
    // A client that never reads its socket must not hold the connection open.
    setTimeout(() => this.socket.destroy(), 5000).unref();
  }
}

export { CLOSE };
