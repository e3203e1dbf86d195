// The client-facing listener: accepts connections up to the limit, gives each
// a session whose protocol is decided by its first byte, and drains on shutdown:
//
//   shutdown(drainMs) ─> stop accepting ─> open clients are served as usual
//        until every client has closed ──┐  (or drainMs passed, or endDrain())
//                                        ▼
//   read no more ─> requests in flight finish ─> FIN to every client ─> linger ─> cut

import net from 'node:net';
import tls from 'node:tls';
import { BinaryProtocol } from './binary-protocol';
import { ClientSession } from './client-session';
import type { ServerContext } from './context';
import { TextProtocol } from './text-protocol';

/** After the drain: how long requests in flight may take to finish (backend timeouts are well under it). */
const IN_FLIGHT_GRACE_MS = 2000;
/** How long a closing client may take to read its last replies at shutdown. */
const SHUTDOWN_LINGER_MS = 1000;
const SHUTDOWN_POLL_MS = 10;

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
  /**
   * Every TCP connection, sessions or not: with TLS a connection has no session until its
   * handshake ends, and one whose handshake failed is, with allowHalfOpen, never closed by
   * Node; server.close() would wait for it forever.
   */
  private readonly connectionsOpen = new Set<net.Socket>();
  private drainCut = false;

  constructor(
    private readonly ctx: ServerContext,
    private readonly events: ListenerEvents,
    /** Serve clients over TLS: a session starts once the handshake is done. */
    tlsOptions: tls.TlsOptions | null = null,
  ) {
    // allowHalfOpen: a client's FIN does not close the socket; its session answers first.
    this.server = tlsOptions
      ? tls.createServer({ handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS, allowHalfOpen: true, ...tlsOptions }, (socket) =>
          this.accept(socket),
        )
      : net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server.on('connection', (socket: net.Socket) => {
      this.connectionsOpen.add(socket);
      socket.once('close', () => this.connectionsOpen.delete(socket));
    });
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
   * Stop accepting; serve the open clients until they have all closed, or
   * `drainMs` passes, or endDrain() is called. Then read no more, let requests
   * in flight finish (their writes reach the replicas) and close every client.
   * With no client connected it returns at once. Resolves with the number of
   * clients still connected when the drain ended (closed by the proxy).
   */
  async shutdown(drainMs: number): Promise<number> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await waitFor(() => this.sockets.size === 0 || this.drainCut, drainMs);
    const cut = this.sockets.size;
    for (const session of this.sessions) session.stopReading();
    await waitFor(() => [...this.sessions].every((s) => s.inFlight === 0), IN_FLIGHT_GRACE_MS);
    for (const session of this.sessions) session.finish();
    // Clients get a moment to read their last replies and close; then they are cut.
    await waitFor(() => this.sockets.size === 0, SHUTDOWN_LINGER_MS);
    for (const socket of this.sockets) socket.destroy();
    for (const socket of this.connectionsOpen) socket.destroy();
    await closed;
    return cut;
  }

  /** New client connections get this certificate and key (a reload rotated them); open ones keep theirs. */
  setTlsContext(options: tls.SecureContextOptions): void {
    if (this.server instanceof tls.Server) this.server.setSecureContext(options);
  }

  /** Ends a drain in progress now (a second signal): the clients still open are closed. */
  endDrain(): void {
    this.drainCut = true;
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
      // SASL exists only in the binary protocol: memcached -S reads every connection as binary,
      // so a text client's first 24 bytes are a header with a bad magic, and it is closed silently.
      (firstByte) =>
        firstByte === BINARY_REQUEST_MAGIC || this.ctx.clientSasl !== null ? new BinaryProtocol(this.ctx) : new TextProtocol(this.ctx),
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

/** Polls `done` until it holds or `ms` have passed. */
async function waitFor(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, SHUTDOWN_POLL_MS));
}
