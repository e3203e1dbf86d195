// What the text and binary sides share: feed a request parser, stop reading after
// the request that ends the session (quit, or an error that closes), and hand each
// parsed request to the side's own run() once the session starts it.

import type { Protocol, StartRequest } from './client-session';
import type { SlotResult } from './ordered-replies';

export interface RequestParser<R> {
  push(chunk: Buffer): void;
  /** The next complete request, or null when more bytes are needed. */
  next(): R | null;
}

/** Requests of either protocol: `quit`, and errors that may close the connection. */
type SessionRequest = { kind: string; close?: boolean };

export abstract class ParsedProtocol<R extends SessionRequest> implements Protocol {
  private finished = false;

  constructor(
    private readonly parser: RequestParser<R>,
    /** Told of every request the parser refused (an 'error' request), and whether the connection closes. */
    private readonly protocolError: (closes: boolean) => void,
  ) {}

  push(chunk: Buffer): void {
    if (!this.finished) this.parser.push(chunk);
  }

  next(): StartRequest | null {
    if (this.finished) return null;
    const req = this.parser.next();
    if (req === null) return null;
    if (req.kind === 'error') this.protocolError(req.close === true);
    // Nothing after this request is read: quit, or an error after which the connection closes.
    if (req.kind === 'quit' || (req.kind === 'error' && req.close === true)) this.finished = true;
    return (done) => this.run(req, done);
  }

  /** Reads no request after those already parsed (the side's run() decides what they get). */
  protected stopReading(): void {
    this.finished = true;
  }

  /** Answers the request; `done` is called exactly once, possibly at once. */
  protected abstract run(req: R, done: (r: SlotResult) => void): void;
}
