// A Cyrus SASL setup for `memcached -S`, as Debian's packages make one: a sasldb
// written by saslpasswd2 (sasl2-bin) and a memcached.conf naming it, found through
// SASL_CONF_PATH. One directory per call, removed when the test process exits.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface SaslUser {
  username: string;
  password: string;
}

/** Debian installs it in /usr/sbin, which a non-root PATH may lack. */
const SASLPASSWD2 = existsSync('/usr/sbin/saslpasswd2') ? '/usr/sbin/saslpasswd2' : 'saslpasswd2';

const dirs: string[] = [];
process.once('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The environment memcached -S needs to authenticate `users` (SASL PLAIN against a sasldb). */
export function saslEnvironment(users: SaslUser[]): Record<string, string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'replicached-sasl-'));
  dirs.push(dir);
  const db = path.join(dir, 'sasldb2');
  for (const u of users) {
    // -p: the password from stdin, not the command line; -a memcached: the application name memcached uses.
    const r = spawnSync(SASLPASSWD2, ['-p', '-c', '-a', 'memcached', '-f', db, u.username], { input: u.password });
    if (r.error) throw new Error(`cannot run saslpasswd2 (install sasl2-bin): ${r.error.message}`);
    if (r.status !== 0) throw new Error(`saslpasswd2 failed: ${r.stderr.toString()}`);
  }
  writeFileSync(path.join(dir, 'memcached.conf'), `mech_list: plain\nsasldb_path: ${db}\n`);
  return { SASL_CONF_PATH: dir };
}

/** A SASL_AUTH PLAIN request (binary protocol), as a client sends it. */
export function saslPlainPayload(user: SaslUser): Buffer {
  return Buffer.concat([Buffer.from([0]), Buffer.from(user.username), Buffer.from([0]), Buffer.from(user.password)]);
}
