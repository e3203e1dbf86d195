// A listen that failed, said in terms of the setting to change: Node's own message
// ("listen EADDRINUSE: address already in use 127.0.0.1:11211") names neither the
// flag nor the config field, nor the usual culprit on 11211, a packaged memcached.

import { formatHostPort, type HostPort } from './config';

export type ListenRole = 'client' | 'metrics';

const SETTING: Record<ListenRole, string> = {
  client: '--listen host:port (listen: in the config file)',
  metrics: '--metrics-listen host:port or off (metricsListen: in the config file)',
};

/** `err` from listening on `address` for `role`, reworded when the address is taken or not allowed. */
export function listenError(err: unknown, role: ListenRole, address: HostPort): unknown {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const where = `${role === 'client' ? 'cannot listen for clients' : 'cannot serve metrics'} on ${formatHostPort(address)}`;
  if (code === 'EADDRINUSE') {
    const culprit =
      role === 'client' && address.port === 11211
        ? "on 11211 often a packaged memcached (Debian: 'systemctl disable --now memcached') or another replicached"
        : 'another replicached?';
    return new Error(`${where}: another process holds that port (EADDRINUSE; ${culprit}). Stop it, or change ${SETTING[role]}.`);
  }
  if (code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    return new Error(`${where}: ${(err as Error).message}. Change ${SETTING[role]}.`);
  }
  return err;
}
