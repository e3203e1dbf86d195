// Client SASL, as memcached -S answers it, for the one mechanism replicached
// offers: PLAIN (RFC 4616), checked against the configured user. Pure: no
// sockets, no state; the binary session keeps whether its client is authenticated.
//
// Checked against memcached 1.6.18 -S (Cyrus SASL, sasldb):
//   SASL_LIST_MECHS          -> 0x0000, the mechanisms ("PLAIN")
//   SASL_AUTH PLAIN, right   -> 0x0000 "Authenticated"
//   SASL_AUTH, anything else -> 0x0020 "Auth failure.", connection kept, client unauthenticated
//   SASL_STEP (PLAIN has no second step) -> 0x0020 "Auth failure."
//   any other command before authenticating, VERSION aside -> 0x0020 "Auth failure.", then close
//     (frame errors of VERSION and the SASL commands are answered as usual: they pass the check)
//   a text-protocol client   -> read as binary: its first 24 bytes have a bad magic, closed silently

import { createHash, timingSafeEqual } from 'node:crypto';
import type { SaslPlain } from '../protocol/types';

export const SASL_MECHANISMS = 'PLAIN';

/**
 * Whether `payload` ("[authzid] NUL authcid NUL passwd") under mechanism `mech` is `user`.
 * An authorization identity other than the user itself is refused (no proxy authorization).
 * The comparison takes the same time wherever the strings differ.
 */
export function plainAuthenticates(mech: Buffer, payload: Buffer, user: SaslPlain): boolean {
  if (mech.toString('latin1') !== SASL_MECHANISMS) return false;
  const first = payload.indexOf(0);
  const second = first < 0 ? -1 : payload.indexOf(0, first + 1);
  if (second < 0) return false;
  const authzid = payload.subarray(0, first).toString('utf8');
  const given = Buffer.concat([payload.subarray(first + 1, second), Buffer.from([0]), payload.subarray(second + 1)]);
  const expected = Buffer.concat([Buffer.from(user.username, 'utf8'), Buffer.from([0]), Buffer.from(user.password, 'utf8')]);
  const same = timingSafeEqual(digest(given), digest(expected));
  return same && (authzid === '' || authzid === user.username);
}

function digest(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}
