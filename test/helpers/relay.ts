// A TCP relay to a real memcached that the test can freeze: while frozen it
// forwards nothing either way, and connections made meanwhile get no answer.
// It stands for a network path that stalls for one client only, which a real
// memcached cannot produce on its own (SIGSTOP stalls it for every client), and
// it can reset the connections through it (one client's connection dropped
// while the memcached lives: a kill drops every client's), refuse new ones (a
// firewall REJECT, a load balancer with no endpoint, for this client only), or
// freeze one direction only.

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
  /** Both directions, or only what the client sends ('up') or only what memcached answers ('down'). */
  freeze(direction?: 'both' | 'up' | 'down'): void;
  /** Forwards what waited, and everything from now on. */
  thaw(): void;
  /** Resets every connection through it now, both ways (a middlebox's reset); new ones go through. */
  drop(): void;
  /** While on, a new connection is reset as soon as it is accepted. */
  refuse(on: boolean): void;
  close(): Promise<void>;
}

export async function startRelay(target: string): Promise<Relay> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const frozen = { up: false, down: false };
  const held = { up: [] as Array<() => void>, down: [] as Array<() => void> };
  let refusing = false;
  const sockets = new Set<net.Socket>();
  /** Forwards a chunk now, or once thawed (in order: everything after it waits behind it). */
  const forward = (way: 'up' | 'down', to: net.Socket, chunk: Buffer): void => {
    if (frozen[way] || held[way].length > 0) held[way].push(() => to.write(chunk));
    else to.write(chunk);
  };
  const server = net.createServer((client) => {
    if (refusing) {
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
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
    client.on('data', (chunk) => forward('up', upstream, chunk));
    upstream.on('data', (chunk) => forward('down', client, chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: relayPort } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${relayPort}`,
    freeze: (direction = 'both') => {
      if (direction !== 'down') frozen.up = true;
      if (direction !== 'up') frozen.down = true;
    },
    thaw: () => {
      frozen.up = false;
      frozen.down = false;
      for (const send of [...held.up.splice(0), ...held.down.splice(0)]) send();
    },
    drop: () => {
      for (const s of sockets) s.resetAndDestroy();
    },
    refuse: (on) => {
      refusing = on;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
