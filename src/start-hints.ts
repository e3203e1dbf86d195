// What replicached prints on stderr once it listens, after "replicached listening on ...":
// the local memcached of the demo (with their pids) and the php.ini lines that reach it.

import type { Config } from './config';
import type { LocalMemcached } from './local-memcached';

/**
 * The php.ini lines for this proxy, printed at start. With clientSasl on, only php-memcached
 * can connect: it authenticates with its memcached.sess_sasl_* settings, over the binary
 * protocol (SASL exists only there). pecl-memcache has no SASL at all.
 */
export function phpIniHint(listen: string, config: Pick<Config, 'clientSasl'>): string {
  const username = config.clientSasl.username;
  if (username === null) {
    return [
      'php.ini for php-memcached (binary protocol, its default, works as is):',
      '  session.save_handler = memcached',
      `  session.save_path = "${listen}"`,
      'php.ini for pecl-memcache:',
      '  session.save_handler = memcache',
      `  session.save_path = "tcp://${listen}"`,
    ].join('\n');
  }
  return [
    'php.ini for php-memcached (clientSasl is on: SASL needs the binary protocol and these credentials):',
    '  session.save_handler = memcached',
    `  session.save_path = "${listen}"`,
    '  memcached.sess_binary_protocol = On',
    `  memcached.sess_sasl_username = "${username}"`,
    '  memcached.sess_sasl_password = "<the clientSasl password>"',
    'pecl-memcache (session.save_handler = memcache) cannot do SASL: it cannot use this proxy while clientSasl is on.',
  ].join('\n');
}

/** The demo's memcached: where they listen and their pids, for `kill -9 <pid>`. */
export function localHint(local: Pick<LocalMemcached, 'addresses' | 'pids'> | null): string {
  if (local === null) return '';
  const lines = local.addresses.map((address, i) => `  ${address}  pid ${local.pids[i]}`);
  return [
    'local memcached (no backends configured; stopped when replicached stops):',
    ...lines,
    '  to try failover: kill -9 one of these pids; replicached then prints the command that brings it back',
    '',
  ].join('\n');
}
