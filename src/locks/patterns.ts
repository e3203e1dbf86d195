// Which keys are PHP session locks, and which extension's protocol takes them.
// Pure: key bytes in, a pattern (or null) out. What each extension sends, read
// from their session handlers and seen on the wire:
//
//   save_handler  lock key             take                           release
//   memcached     <prefix>lock.<id>    add, value "1", exptime        delete
//   (php-memcached; prefix memcached.sess_prefix, default "memc.sess.key.";
//    exptime memcached.sess_lock_expire, else max_execution_time, else 0: never)
//   memcache      <prefix><id>.lock    incr by 1 (binary: creating    set, value "0" (session write);
//   (pecl-memcache; prefix empty        it at 1), then add "1"; taken  delete (session destroy)
//    by default)                        when incr answers 1 or add
//                                       stores; exptime memcache.lock_timeout
//
// A pattern is "<handler>:<prefix>*<suffix>": the * stands for the session id (at
// least one byte), e.g. "memcached:myapp.lock.*" for php-memcached with
// memcached.sess_prefix=myapp. and "memcache:*.lock" for pecl-memcache.
//
// Checked on every store, delete and incr, so matching allocates nothing and
// rejects most keys on their first or last byte.

import type { Parsed } from '../config/address';

export type LockStyle = 'memcached' | 'memcache';
export const LOCK_STYLES: readonly LockStyle[] = ['memcached', 'memcache'];

export interface LockPattern {
  /** As written: "memcached:memc.sess.key.lock.*". */
  readonly text: string;
  readonly style: LockStyle;
  readonly prefix: Buffer;
  readonly suffix: Buffer;
}

/** Both extensions' lock keys with their default prefixes. */
export const DEFAULT_LOCK_PATTERNS: readonly string[] = ['memcached:memc.sess.key.lock.*', 'memcache:*.lock'];

/** Longest key memcached takes: a longer pattern could never match. */
const MAX_KEY = 250;

/** Reads "<handler>:<prefix>*<suffix>", or says what is wrong with it. */
export function parseLockPattern(text: string): Parsed<LockPattern> {
  const colon = text.indexOf(':');
  const style = LOCK_STYLES.find((s) => s === text.slice(0, colon));
  const bad = (why: string): Parsed<LockPattern> => ({
    ok: false,
    problem: `${why}: a pattern is "memcached:<prefix>*<suffix>" or "memcache:<prefix>*<suffix>" (* is the session id), got ${JSON.stringify(text)}`,
  });
  if (colon < 0 || style === undefined) return bad('must start with "memcached:" or "memcache:" (the session.save_handler)');
  const glob = text.slice(colon + 1);
  const star = glob.indexOf('*');
  if (star < 0 || glob.indexOf('*', star + 1) >= 0) return bad('needs exactly one *');
  if (/[\s\0]/.test(glob)) return bad('a key holds no space, control character or NUL');
  const prefix = Buffer.from(glob.slice(0, star), 'latin1');
  const suffix = Buffer.from(glob.slice(star + 1), 'latin1');
  if (prefix.length === 0 && suffix.length === 0) return bad('"*" alone would take every key for a lock');
  if (prefix.length + suffix.length >= MAX_KEY) return bad(`longer than a key (${MAX_KEY} bytes)`);
  return { ok: true, value: { text, style, prefix, suffix } };
}

function startsWith(key: Buffer, prefix: Buffer): boolean {
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}

function endsWith(key: Buffer, suffix: Buffer): boolean {
  const at = key.length - suffix.length;
  for (let i = 0; i < suffix.length; i++) if (key[at + i] !== suffix[i]) return false;
  return true;
}

/** The patterns in force; match*() return the first pattern a key fits, or null. */
export class LockPatterns {
  private readonly all: readonly LockPattern[];
  /** pecl-memcache's patterns: the only ones incr and set take or release. */
  private readonly memcache: readonly LockPattern[];

  constructor(patterns: readonly LockPattern[]) {
    this.all = patterns;
    this.memcache = patterns.filter((p) => p.style === 'memcache');
  }

  static parse(texts: readonly string[]): LockPatterns {
    return new LockPatterns(
      texts.map((t) => {
        const p = parseLockPattern(t);
        if (!p.ok) throw new Error(p.problem);
        return p.value;
      }),
    );
  }

  get texts(): string[] {
    return this.all.map((p) => p.text);
  }

  /** add and delete: either extension's lock. */
  match(key: Buffer): LockPattern | null {
    return find(this.all, key);
  }

  /** incr and set: pecl-memcache's lock only. */
  matchMemcache(key: Buffer): LockPattern | null {
    return find(this.memcache, key);
  }

  /** The session id part of a lock key `p` matched, the key as a latin1 string (one char per byte). */
  static sessionId(p: LockPattern, lockKey: string): string {
    return lockKey.slice(p.prefix.length, lockKey.length - p.suffix.length);
  }
}

function find(patterns: readonly LockPattern[], key: Buffer): LockPattern | null {
  for (let i = 0; i < patterns.length; i++) {
    const p = patterns[i];
    if (key.length > p.prefix.length + p.suffix.length && startsWith(key, p.prefix) && endsWith(key, p.suffix)) return p;
  }
  return null;
}
