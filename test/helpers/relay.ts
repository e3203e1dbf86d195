// A TCP relay to a real memcached that the test can freeze: while frozen it
// forwards nothing either way, and connections made meanwhile get no answer.
// It stands for a network path that stalls for one client only, which a real
// memcached cannot produce on its own (SIGSTOP stalls it for every client), and
// it can reset the connections through it (one client's connection dropped
// while the memcached lives: a kill drops every client's).

import net from 'node:net';
import { Backend, type BackendOptions } from '../../src/backends/backend';

/** A real Backend that dials `dial` (a relay) but is named, and placed on the ring, as the memcached behind it. */
export class RelayedBackend extends Backend {
  constructor(name: string, dial: string, options: Partial<BackendOptions>) {
    super(dial, options);
    (this as { address: string }).address = name;
  }
}

export interface Relay {
  /** "127.0.0.1:<port>": dial this instead of the memcached. */
  address: string;
  freeze(): void;
  /** Forwards what waited, and everything from now on. */
  thaw(): void;
  /** Resets every connection through it now, both ways (a middlebox's reset); new ones go through. */
  drop(): void;
  close(): Promise<void>;
}

export async function startRelay(target: string): Promise<Relay> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  let frozen = false;
  const held: Array<() => void> = [];
  const sockets = new Set<net.Socket>();
  /** Forwards a chunk now, or once thawed (in order: everything after it waits behind it). */
  const forward = (to: net.Socket, chunk: Buffer): void => {
    if (frozen || held.length > 0) held.push(() => to.write(chunk));
    else to.write(chunk);
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk) => forward(upstream, chunk));
    upstream.on('data', (chunk) => forward(client, chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: relayPort } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${relayPort}`,
    freeze: () => {
      frozen = true;
    },
    thaw: () => {
      frozen = false;
      for (const send of held.splice(0)) send();
    },
    drop: () => {
      for (const s of sockets) s.resetAndDestroy();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
