// The admin and meta commands of memcached 1.6.18's text protocol that replicached answers
// on its own, without asking a backend. Pure: the command's words in, the reply out.
//
//   kind of command                          replicached's answer (as memcached words it)
//   settings of one memcached's internals    checked as memcached checks them; OK, no effect:
//     cache_memlimit, lru, slabs automove,   the proxy holds no items, and a backend's own
//     lru_crawler tocrawl|sleep, extstore    settings are set on that backend
//   an LRU crawler or a slab to act on       refused as a memcached with them disabled:
//     lru_crawler crawl|metadump|enable,     "CLIENT_ERROR lru crawler disabled", "ERROR failed
//     slabs reassign, watch, refresh_certs   to start lru crawler thread", "CLIENT_ERROR slab
//                                            reassignment disabled", "CLIENT_ERROR watch commands
//                                            not allowed", "Error TLS not enabled"
//   meta commands                            mn: MN. mg, ms, md, ma, me are not served:
//                                            CLIENT_ERROR bad command line format (ms's data
//                                            block is swallowed, as memcached does on an error)
//
// Malformed lines get memcached's own answer to them (often a bare ERROR), and `noreply` is
// honoured where memcached honours it. `verbosity` and `shutdown` are the parser's own.

import { safeStrtod, safeStrtol, safeStrtoul } from './numbers';

export interface AdminAnswer {
  /** null: the command asked for noreply, nothing is sent. */
  reply: Buffer | null;
  /** Bytes after the line to discard unread (the data block of a refused `ms`). */
  swallow: number;
}

const line = (text: string): Buffer => Buffer.from(`${text}\r\n`, 'latin1');

const OK = line('OK');
const ERROR = line('ERROR');
const MN = line('MN');
const BAD_FORMAT = line('CLIENT_ERROR bad command line format');
const CRAWLER_DISABLED = line('CLIENT_ERROR lru crawler disabled');
const CRAWLER_NOT_STARTED = line('ERROR failed to start lru crawler thread');
const REASSIGN_DISABLED = line('CLIENT_ERROR slab reassignment disabled');
const WATCH_NOT_ALLOWED = line('CLIENT_ERROR watch commands not allowed');
const TLS_NOT_ENABLED = line('Error TLS not enabled');
const FLAGS_TOO_LONG = line('CLIENT_ERROR options flags too long');

const MAX_KEY_LENGTH = 250;
/** memcached's MFLAG_MAX_OPT_LENGTH: tokens of a meta command, its terminal token included. */
const META_MAX_TOKENS = 20;
/** memcached's MAX_NUMBER_OF_SLAB_CLASSES. */
const SLAB_CLASSES = 64;
const EXTSTORE_UINT_SETTINGS = new Set(['item_size', 'item_age', 'low_ttl', 'recache_rate', 'compact_under', 'drop_under', 'max_sleep', 'drop_unread']);

/** The commands answered here. */
export const ADMIN_COMMANDS: ReadonlySet<string> = new Set([
  'cache_memlimit', 'lru', 'lru_crawler', 'slabs', 'watch', 'extstore', 'refresh_certs', 'mn', 'mg', 'ms', 'md', 'ma', 'me',
]);

/**
 * The answer to an admin or meta command; `words` are the line's tokens (latin1), the command
 * first, at most memcached's 23. Call only for a command in ADMIN_COMMANDS.
 */
export function answerAdmin(words: readonly string[]): AdminAnswer {
  // memcached's ntokens counts a terminal token after the words.
  const nt = words.length + 1;
  const noreply = words[nt - 2] === 'noreply';
  const answer = (reply: Buffer, honoursNoreply = true): AdminAnswer => ({ reply: honoursNoreply && noreply ? null : reply, swallow: 0 });
  const sub = words[1];
  switch (words[0]) {
    case 'cache_memlimit': {
      if (nt !== 3 && nt !== 4) return answer(ERROR, false);
      const mb = safeStrtoul(sub);
      if (mb === null) return answer(ERROR);
      const limit = mb & 0xffffffffn;
      if (limit < 8n) return answer(line('MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m'));
      if (limit > 1_000_000_000n) return answer(line('MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes'));
      return answer(OK);
    }
    case 'lru':
      if (nt < 3) return answer(ERROR, false);
      return answer(lru(words, nt));
    case 'lru_crawler':
      return answer(crawler(words, nt), false);
    case 'slabs':
      if (nt === 5 && sub === 'reassign') return answer(REASSIGN_DISABLED, false);
      if (nt >= 4 && sub === 'automove') return answer(automove(words, nt));
      return answer(ERROR, false);
    case 'watch':
      return answer(WATCH_NOT_ALLOWED);
    case 'extstore':
      if (nt < 3) return answer(ERROR, false);
      return answer(extstoreSetting(words, nt) ? OK : ERROR);
    case 'refresh_certs':
      return answer(TLS_NOT_ENABLED, false);
    case 'mn':
      return answer(MN, false);
    case 'ms':
      return metaSet(words, nt);
    case 'me':
      return answer(BAD_FORMAT, false);
    default: // mg, md, ma
      return answer(nt < 3 ? ERROR : BAD_FORMAT, false);
  }
}

function lru(words: readonly string[], nt: number): Buffer {
  const [, sub, a, b, c, d] = words;
  if (sub === 'tune' && nt >= 7) {
    const hot = safeStrtoul(a);
    const warm = safeStrtoul(b);
    const hotFactor = safeStrtod(c);
    const factor = safeStrtod(d);
    if (hot === null || warm === null || hotFactor === null || factor === null) return ERROR;
    if ((hot & 0xffffffffn) + (warm & 0xffffffffn) > 80n) return line('ERROR hot and warm pcts must not exceed 80');
    return factor > 0 && hotFactor > 0 ? OK : line('ERROR hot/warm age factors must be greater than 0');
  }
  if (sub === 'mode' && nt >= 4) return a === 'flat' || a === 'segmented' ? OK : ERROR;
  if (sub === 'temp_ttl' && nt >= 4) return safeStrtol(a) === null ? ERROR : OK;
  return ERROR;
}

function crawler(words: readonly string[], nt: number): Buffer {
  const sub = words[1];
  if (nt === 4) {
    if (sub === 'crawl' || sub === 'metadump') return CRAWLER_DISABLED;
    if (sub === 'tocrawl') return safeStrtoul(words[2]) === null ? BAD_FORMAT : OK;
    if (sub === 'sleep') {
      const us = safeStrtoul(words[2]);
      if (us === null) return BAD_FORMAT;
      return (us & 0xffffffffn) > 1_000_000n ? line('CLIENT_ERROR sleep must be one second or less') : OK;
    }
  }
  if (nt === 3 && sub === 'enable') return CRAWLER_NOT_STARTED;
  if (nt === 3 && sub === 'disable') return OK;
  return ERROR;
}

function automove(words: readonly string[], nt: number): Buffer {
  if (words[2] === 'ratio') return nt < 5 || safeStrtod(words[3]) === null ? ERROR : OK;
  const level = safeStrtoul(words[2]);
  if (level === null) return BAD_FORMAT;
  return (level & 0xffffffffn) <= 2n ? OK : ERROR;
}

function extstoreSetting(words: readonly string[], nt: number): boolean {
  const [, sub, a, b] = words;
  if (nt < 4) return false;
  if (sub === 'free_memchunks') {
    // Deprecated and ignored by memcached, but still checked.
    const cls = safeStrtoul(a);
    return nt > 4 && cls !== null && safeStrtoul(b) !== null && (cls & 0xffffffffn) < SLAB_CLASSES;
  }
  if (sub === 'max_frag') return safeStrtod(a) !== null;
  return EXTSTORE_UINT_SETTINGS.has(sub) && safeStrtoul(a) !== null;
}

/** `ms <key> <datalen> <flag>*`: refused, and its data block swallowed once its length is known. */
function metaSet(words: readonly string[], nt: number): AdminAnswer {
  if (nt < 3) return { reply: ERROR, swallow: 0 };
  if (Buffer.byteLength(words[1], 'latin1') > MAX_KEY_LENGTH || nt === 3) return { reply: BAD_FORMAT, swallow: 0 };
  if (nt > META_MAX_TOKENS) return { reply: FLAGS_TOO_LONG, swallow: 0 };
  // memcached reads it into an int32_t.
  const n = safeStrtol(words[2]);
  const length = n === null ? -1 : Number(BigInt.asIntN(32, n));
  if (length < 0 || length > 2 ** 31 - 1 - 2) return { reply: BAD_FORMAT, swallow: 0 };
  return { reply: BAD_FORMAT, swallow: length + 2 };
}
