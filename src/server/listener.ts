// The client-facing listener: accepts connections up to the limit, gives each
// a session whose protocol is decided by its first byte, and drains on shutdown.

import net from 'node:net';
import tls from 'node:tls';
import { BinaryProtocol } from './binary-protocol';
import { ClientSession } from './client-session';
import type { ServerContext } from './context';
import { TextProtocol } from './text-protocol';

/** How long a closing client may take to read its last replies at shutdown. */
const SHUTDOWN_LINGER_MS = 1000;

/** memcached's binary request magic; any other first byte means text. */
const BINARY_REQUEST_MAGIC = 0x80;
/** A TLS client that has not finished its handshake by then is dropped (Node's default is 120 s). */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface ListenerEvents {
  connectionOpened(): void;
  connectionClosed(): void;
  connectionRejected(): void;
  bytesIn(n: number): void;
  bytesOut(n: number): void;
}

export class Listener {
  private readonly server: net.Server;
  private readonly sessions = new Set<ClientSession>();
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly ctx: ServerContext,
    private readonly events: ListenerEvents,
    /** Serve clients over TLS: a session starts once the handshake is done. */
    tlsOptions: tls.TlsOptions | null = null,
  ) {
    this.server = tlsOptions
      ? tls.createServer({ handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS, ...tlsOptions }, (socket) => this.accept(socket))
      : net.createServer((socket) => this.accept(socket));
  }

  /** Open client connections. */
  get connections(): number {
    return this.sockets.size;
  }

  /** Client requests received and not yet answered, over every session (read at scrape time). */
  get inFlight(): number {
    let n = 0;
    for (const s of this.sessions) n += s.inFlight;
    return n;
  }

  listen(host: string, port: number): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port, backlog: 1024 }, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  /**
   * Stop accepting, let requests in flight finish (their writes reach the
   * replicas), then close every client, at the latest after `deadlineMs`.
   */
  async shutdown(deadlineMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const deadline = Date.now() + deadlineMs;
    for (const session of this.sessions) session.stopReading();
    while (Date.now() < deadline && [...this.sessions].some((s) => s.inFlight > 0)) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const session of this.sessions) session.finish();
    // Clients get a moment to read their last replies and close; then they are cut.
    const lingerUntil = Math.min(deadline, Date.now() + SHUTDOWN_LINGER_MS);
    while (Date.now() < lingerUntil && this.sockets.size > 0) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private accept(socket: net.Socket): void {
    if (this.sockets.size >= this.ctx.limits.maxClientConnections) {
      this.events.connectionRejected();
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    this.events.connectionOpened();
    const session = new ClientSession(
      socket,
      this.ctx.limits,
      (firstByte) => (firstByte === BINARY_REQUEST_MAGIC ? new BinaryProtocol(this.ctx) : new TextProtocol(this.ctx)),
      {
        bytesIn: this.events.bytesIn,
        bytesOut: this.events.bytesOut,
        closed: () => {
          this.sockets.delete(socket);
          this.sessions.delete(session);
          this.events.connectionClosed();
        },
      },
    );
    this.sessions.add(session);
  }
}
