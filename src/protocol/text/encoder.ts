// Byte-exact memcached text replies, as memcached 1.6 writes them.
// Pure: outcomes in, bytes out. Every constant here is shared: never write into one.
//
// Reads that no replica could answer ('unavailable' GetOutcome) have no encoding on purpose:
// the client session closes the connection instead (a miss or an error would make PHP's
// session handler start an empty session and overwrite the stored one). Writes that are
// 'unavailable' are answered with SERVER_ERROR_UNAVAILABLE.

import type { ArithOutcome, DeleteOutcome, FlushOutcome, Item, StoreOutcome, TouchOutcome } from '../types';

const line = (text: string): Buffer => Buffer.from(`${text}\r\n`, 'latin1');

const CRLF = line('');

export const END = line('END');
export const STORED = line('STORED');
export const NOT_STORED = line('NOT_STORED');
export const EXISTS = line('EXISTS');
export const NOT_FOUND = line('NOT_FOUND');
export const DELETED = line('DELETED');
export const TOUCHED = line('TOUCHED');
export const OK = line('OK');
export const ERROR = line('ERROR');

/** Our reply to a write no replica could take (memcached itself never sends it). */
export const SERVER_ERROR_UNAVAILABLE = line('SERVER_ERROR backend unavailable');
export const SERVER_ERROR_TOO_LARGE = line('SERVER_ERROR object too large for cache');

export const CLIENT_ERROR_BAD_FORMAT = line('CLIENT_ERROR bad command line format');
export const CLIENT_ERROR_BAD_DATA_CHUNK = line('CLIENT_ERROR bad data chunk');
export const CLIENT_ERROR_INVALID_EXPTIME = line('CLIENT_ERROR invalid exptime argument');
export const CLIENT_ERROR_INVALID_DELTA = line('CLIENT_ERROR invalid numeric delta argument');
export const CLIENT_ERROR_NON_NUMERIC = line('CLIENT_ERROR cannot increment or decrement non-numeric value');
// Two spaces after the period: memcached's exact text.
export const CLIENT_ERROR_DELETE_USAGE = line('CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]');
/** Ours: memcached closes silently after 2048 bytes without a newline (except for gets). */
export const CLIENT_ERROR_LINE_TOO_LONG = line('CLIENT_ERROR line too long');
/** Ours: memcached has no bound on the keys of one get. */
export const CLIENT_ERROR_TOO_MANY_KEYS = line('CLIENT_ERROR too many keys');
/** memcached's reply to `shutdown` when started without -A. */
export const ERROR_SHUTDOWN_NOT_ENABLED = line('ERROR: shutdown not enabled');

// Below this, header, data and CRLF go out as one buffer; above it the value is not copied.
const COPY_VALUE_BELOW = 16 * 1024;

/** "VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n", as one buffer for small values, three for large. */
export function encodeValue(key: Buffer, item: Item, withCas: boolean): Buffer[] {
  const value = item.value;
  const suffix = ` ${item.flags} ${value.length}${withCas ? ` ${item.cas}` : ''}\r\n`;
  const headerLength = 6 + key.length + suffix.length;
  const small = value.length < COPY_VALUE_BELOW;
  const out = Buffer.allocUnsafe(small ? headerLength + value.length + 2 : headerLength);
  out.write('VALUE ', 0, 'latin1');
  key.copy(out, 6);
  out.write(suffix, 6 + key.length, 'latin1');
  if (!small) return [out, value, CRLF];
  value.copy(out, headerLength);
  out[out.length - 2] = 0x0d;
  out[out.length - 1] = 0x0a;
  return [out];
}

export function encodeStoreOutcome(o: StoreOutcome): Buffer {
  switch (o.status) {
    case 'stored': return STORED;
    case 'not_stored': return NOT_STORED;
    case 'exists': return EXISTS;
    case 'not_found': return NOT_FOUND;
    case 'too_large': return SERVER_ERROR_TOO_LARGE;
    case 'unavailable': return SERVER_ERROR_UNAVAILABLE;
  }
}

/** 'exists' cannot come from a text delete (it carries no CAS) but is encoded as memcached would. */
export function encodeDeleteOutcome(o: DeleteOutcome): Buffer {
  switch (o.status) {
    case 'deleted': return DELETED;
    case 'not_found': return NOT_FOUND;
    case 'exists': return EXISTS;
    case 'unavailable': return SERVER_ERROR_UNAVAILABLE;
  }
}

export function encodeTouchOutcome(o: TouchOutcome): Buffer {
  switch (o.status) {
    case 'touched': return TOUCHED;
    case 'not_found': return NOT_FOUND;
    case 'unavailable': return SERVER_ERROR_UNAVAILABLE;
  }
}

/** incr/decr: the new value in decimal, or the error memcached gives. */
export function encodeArithOutcome(o: ArithOutcome): Buffer {
  switch (o.status) {
    case 'ok': return line(o.value.toString());
    case 'not_found': return NOT_FOUND;
    case 'non_numeric': return CLIENT_ERROR_NON_NUMERIC;
    case 'unavailable': return SERVER_ERROR_UNAVAILABLE;
  }
}

export function encodeFlushOutcome(o: FlushOutcome): Buffer {
  switch (o.status) {
    case 'ok': return OK;
    case 'unavailable': return SERVER_ERROR_UNAVAILABLE;
  }
}

/** "STAT <name> <value>\r\n" for each pair, then "END\r\n". */
export function encodeStats(pairs: Array<[string, string | number | bigint]>): Buffer {
  let text = '';
  for (const [name, value] of pairs) text += `STAT ${name} ${value}\r\n`;
  return Buffer.from(`${text}END\r\n`, 'utf8');
}

export function encodeVersion(version: string): Buffer {
  return Buffer.from(`VERSION ${version}\r\n`, 'utf8');
}
