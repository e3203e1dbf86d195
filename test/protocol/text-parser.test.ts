import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, type Limits } from '../../src/protocol/limits';
import { TextParser, type TextRequest } from '../../src/protocol/text/parser';
import {
  DELETED,
  END,
  encodeArithOutcome,
  encodeStoreOutcome,
  encodeTouchOutcome,
  encodeValue,
  NOT_FOUND,
  OK,
  SERVER_ERROR_TOO_LARGE,
} from '../../src/protocol/text/encoder';
import type { ArithOutcome, StoreOutcome } from '../../src/protocol/types';

// ---- helpers ----

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
const b251 = 'b'.repeat(251);

/** One readable line per request; an error is its exact reply bytes, "CLOSE:" first when it closes. */
function show(r: TextRequest): string {
  const k = (b: Buffer): string => b.toString('latin1');
  const nr = (noreply: boolean): string => (noreply ? ' noreply' : '');
  switch (r.kind) {
    case 'get': {
      const name = (r.touch === undefined ? 'get' : 'gat') + (r.withCas ? 's' : '');
      return [name, ...(r.touch === undefined ? [] : [String(r.touch)]), ...r.keys.map(k)].join(' ');
    }
    case 'store':
      return `${r.mode} ${k(r.key)} ${r.flags} ${r.exptime}${r.mode === 'cas' ? ` ${r.cas}` : ''}${nr(r.noreply)} [${k(r.value)}]`;
    case 'delete':
      return `delete ${k(r.key)}${nr(r.noreply)}`;
    case 'touch':
      return `touch ${k(r.key)} ${r.exptime}${nr(r.noreply)}`;
    case 'arith':
      return `${r.op} ${k(r.key)} ${r.delta}${nr(r.noreply)}`;
    case 'flush_all':
      return `flush_all ${r.delay}${nr(r.noreply)}`;
    case 'verbosity':
      return `verbosity${nr(r.noreply)}`;
    case 'stats':
      return ['stats', ...r.args].join(' ');
    case 'version':
    case 'quit':
      return r.kind;
    case 'too_large':
      return `too_large ${k(r.key)}${r.dropStale ? ' drop' : ''}${nr(r.noreply)}`;
    case 'answer':
      return k(r.reply);
    case 'error':
      return (r.close ? 'CLOSE:' : '') + k(r.reply);
  }
}

function drain(p: TextParser, into: TextRequest[]): void {
  for (let r = p.next(); r; r = p.next()) into.push(r);
}

/** Feeds `input` in pieces cut at `cuts`, draining after each push. */
function parse(input: Buffer, cuts: number[] = [], limits: Limits = DEFAULT_LIMITS): TextRequest[] {
  const p = new TextParser(limits);
  const out: TextRequest[] = [];
  let at = 0;
  for (const cut of [...cuts, input.length]) {
    p.push(input.subarray(at, cut));
    drain(p, out);
    at = cut;
  }
  return out;
}

const transcript = (input: Buffer, cuts: number[] = [], limits?: Limits): string[] => parse(input, cuts, limits).map(show);

// memcached's replies, as sent by memcached 1.6.18.
const ERROR = 'ERROR\r\n';
const BAD_FORMAT = 'CLIENT_ERROR bad command line format\r\n';
const BAD_CHUNK = 'CLIENT_ERROR bad data chunk\r\n';
const BAD_EXPTIME = 'CLIENT_ERROR invalid exptime argument\r\n';
const BAD_DELTA = 'CLIENT_ERROR invalid numeric delta argument\r\n';
const DELETE_USAGE = 'CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n';
const TOO_LARGE = 'SERVER_ERROR object too large for cache\r\n';
const LINE_TOO_LONG = 'CLOSE:CLIENT_ERROR line too long\r\n';
const HTTP_CLOSE = 'CLOSE:';
const OK_LINE = 'OK\r\n';
const MN = 'MN\r\n';

/**
 * [input, what the parser yields]. `live`: replaying the input into a tiny in-memory server built
 * on this parser and the encoder gives memcached 1.6.18's exact bytes (checked below when a
 * memcached binary is installed). Cases without it differ from memcached on purpose.
 */
type Case = [input: string, expected: string[], live?: 'live'];

const GOOD: Case[] = [
  ['get k\r\n', ['get k'], 'live'],
  ['get k\n', ['get k'], 'live'],
  ['get a b  c\r\n', ['get a b c'], 'live'],
  ['  get   k  \r\n', ['get k'], 'live'],
  ['gets a b\r\n', ['gets a b']],
  ['bget k\r\n', ['get k'], 'live'],
  ['gat 10 a b\r\n', ['gat 10 a b'], 'live'],
  ['gats -1 k\r\n', ['gats -1 k'], 'live'],
  ['gat 10\r\n', ['gat 10'], 'live'], // no key: memcached answers END
  ['gat \t10 k\r\n', ['gat 10 k'], 'live'],
  ['gat 2147483648 k\r\n', ['gat -2147483648 k'], 'live'], // strtol, then stored in an int32
  ['get k0 k1 k2 k3 k4 k5 k6 k7 k8 k9 k10 k11 k12 k13 k14 k15 k16 k17 k18 k19 k20 k21 k22 k23 k24 k25\r\n',
    ['get k0 k1 k2 k3 k4 k5 k6 k7 k8 k9 k10 k11 k12 k13 k14 k15 k16 k17 k18 k19 k20 k21 k22 k23 k24 k25'], 'live'],
  [`get ${'a'.repeat(250)}\r\n`, [`get ${'a'.repeat(250)}`], 'live'],
  ['get a\x00 b\r\n', ['get a'], 'live'], // memcached reads the line as a C string
  ['set k 0 0 1\r\na\r\nget k\r\n', ['set k 0 0 [a]', 'get k'], 'live'],
  ['set k 0 0 1 noreply\r\na\r\nget k\r\n', ['set k 0 0 noreply [a]', 'get k'], 'live'],
  ['set k 0 0 1 garbage\r\na\r\nget k\r\n', ['set k 0 0 [a]', 'get k'], 'live'],
  ['set k 4294967295 0 1\r\na\r\nget k\r\n', ['set k 4294967295 0 [a]', 'get k'], 'live'],
  ['set k 4294967296 0 1\r\na\r\nget k\r\n', ['set k 0 0 [a]', 'get k'], 'live'], // flags wrap to 32 bits
  ['set k 18446744073709551615 0 1\r\na\r\nget k\r\n', ['set k 4294967295 0 [a]', 'get k'], 'live'],
  ['set k -18446744073709551615 0 1\r\na\r\nget k\r\n', ['set k 1 0 [a]', 'get k'], 'live'], // strtoul wraps "-n"
  ['set k 9223372036854775808 0 1\r\na\r\nget k\r\n', ['set k 0 0 [a]', 'get k'], 'live'],
  ['set k +5 +0 +1\r\na\r\nget k\r\n', ['set k 5 0 [a]', 'get k'], 'live'],
  ['set k 5\tx 0 1\r\na\r\nget k\r\n', ['set k 5 0 [a]', 'get k'], 'live'], // strtoul stops at whitespace
  ['set k \t5 0 1\r\na\r\nget k\r\n', ['set k 5 0 [a]', 'get k'], 'live'],
  ['set k 0 2147483648 1\r\na\r\n', ['set k 0 -2147483648 [a]'], 'live'],
  ['set k 0 -2147483649 1\r\na\r\n', ['set k 0 2147483647 [a]'], 'live'],
  ['set k 0 0 4294967298\r\nab\r\nget k\r\n', ['set k 0 0 [ab]', 'get k'], 'live'], // length wraps to int32 too
  ['set k 0 0 1\r\r\na\r\n', ['set k 0 0 [a]'], 'live'], // "1\r": the \r ends the number
  ['set k 0 0 1\v\r\na\r\nget k\r\n', ['set k 0 0 [a]', 'get k'], 'live'],
  ['set k 0 0 1\x00 foo\r\na\r\n', ['set k 0 0 [a]'], 'live'],
  ['set k 0 0 0\r\n\r\nget k\r\n', ['set k 0 0 []', 'get k'], 'live'],
  ['set k 0 0 3\nabc\r\nget k\n', ['set k 0 0 [abc]', 'get k'], 'live'],
  ['set k 0 0 4\r\na\r\nb\r\nget k\r\n', ['set k 0 0 [a\r\nb]', 'get k'], 'live'],
  ['set k 3 0 2\r\n\x00\xff\r\nget k\r\n', ['set k 3 0 [\x00\xff]', 'get k'], 'live'],
  ['add k 1 2 1\r\na\r\nadd k 1 2 1\r\nb\r\nget k\r\n', ['add k 1 2 [a]', 'add k 1 2 [b]', 'get k'], 'live'],
  ['replace k 0 0 1\r\na\r\nset k 0 0 1\r\na\r\nreplace k 7 0 1\r\nb\r\nget k\r\n',
    ['replace k 0 0 [a]', 'set k 0 0 [a]', 'replace k 7 0 [b]', 'get k'], 'live'],
  ['append k 0 0 1\r\na\r\nset k 5 0 1\r\nb\r\nappend k 0 0 1\r\nc\r\nprepend k 0 0 1\r\na\r\nget k\r\n',
    ['append k 0 0 [a]', 'set k 5 0 [b]', 'append k 0 0 [c]', 'prepend k 0 0 [a]', 'get k'], 'live'],
  ['cas k 0 0 1 18446744073709551615\r\na\r\n', ['cas k 0 0 18446744073709551615 [a]'], 'live'],
  ['cas k 0 0 1 5 noreply\r\na\r\n', ['cas k 0 0 5 noreply [a]'], 'live'],
  ['delete k\r\nset k 0 0 1\r\na\r\ndelete k\r\n', ['delete k', 'set k 0 0 [a]', 'delete k'], 'live'],
  ['delete k 0\r\n', ['delete k'], 'live'],
  ['delete k noreply\r\n', ['delete k noreply'], 'live'],
  ['delete k 0 noreply\r\n', ['delete k noreply'], 'live'],
  ['delete noreply\r\n', ['delete noreply'], 'live'], // the key is "noreply"
  ['touch k 10\r\nset k 0 0 1\r\na\r\ntouch k 10\r\n', ['touch k 10', 'set k 0 0 [a]', 'touch k 10'], 'live'],
  ['touch k 10 foo\r\n', ['touch k 10'], 'live'],
  ['touch k 10 noreply\r\n', ['touch k 10 noreply'], 'live'],
  ['touch k -9223372036854775808\r\n', ['touch k 0'], 'live'],
  ['incr k 1\r\n', ['incr k 1'], 'live'],
  ['set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nincr n 18446744073709551615\r\n',
    ['set n 0 0 [10]', 'incr n 5', 'decr n 100', 'incr n 18446744073709551615'], 'live'],
  ['set n 0 0 1\r\n5\r\nincr n -0\r\nincr n -18446744073709551615\r\nincr n \t5\r\nincr n 5\t-\r\nincr n 00000000000000000000000000001\r\n',
    ['set n 0 0 [5]', 'incr n 0', 'incr n 1', 'incr n 5', 'incr n 5', 'incr n 1'], 'live'],
  ['set n 0 0 2\r\nab\r\nincr n 1\r\n', ['set n 0 0 [ab]', 'incr n 1'], 'live'],
  ['incr k 1 foo\r\n', ['incr k 1'], 'live'],
  ['decr k 1 noreply\r\n', ['decr k 1 noreply'], 'live'],
  ['flush_all\r\n', ['flush_all 0'], 'live'],
  ['flush_all 0\r\n', ['flush_all 0'], 'live'],
  ['flush_all 10\r\n', ['flush_all 10'], 'live'],
  ['flush_all -1\r\n', ['flush_all 0'], 'live'], // memcached treats a negative delay as none
  ['flush_all noreply\r\n', ['flush_all 0 noreply'], 'live'],
  ['flush_all 10 noreply\r\n', ['flush_all 10 noreply'], 'live'],
  ['flush_all 1 2\r\n', ['flush_all 1'], 'live'],
  ['flush_all 0 foo\r\n', ['flush_all 0'], 'live'],
  ['verbosity 1\r\n', ['verbosity'], 'live'],
  ['verbosity 1 noreply\r\n', ['verbosity noreply'], 'live'],
  ['verbosity 1 2\r\n', ['verbosity'], 'live'],
  ['verbosity 4294967296\r\n', ['verbosity'], 'live'],
  ['version\r\n', ['version'], 'live'],
  ['version x y\r\n', ['version'], 'live'],
  ['version\x00xx\r\n', ['version'], 'live'],
  ['version HTTP/1.1\r\n', ['version'], 'live'],
  ['version a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n', ['version'], 'live'],
  ['stats\r\n', ['stats']],
  ['stats slabs\r\n', ['stats slabs']],
  ['stats detail on\r\n', ['stats detail on']],
  ['quit\r\n', ['quit'], 'live'],
  ['quit x\r\nversion\r\n', ['quit'], 'live'], // nothing after quit
];

const BAD: Case[] = [
  ['\r\n', [ERROR], 'live'],
  ['\n', [ERROR], 'live'],
  [' \r\n', [ERROR], 'live'],
  ['a\r\n', [ERROR], 'live'],
  ['g\r\n', [ERROR], 'live'],
  ['\x00\r\n', [ERROR], 'live'],
  ['version\r\r\n', [ERROR], 'live'], // only one \r is stripped: the command is "version\r"
  ['get\r\n', [ERROR], 'live'],
  ['get \r\n', [ERROR], 'live'],
  ['gets\r\n', [ERROR], 'live'],
  ['gat\r\n', [ERROR], 'live'],
  ['getx k\r\n', [ERROR], 'live'],
  ['GET k\r\n', [ERROR], 'live'],
  ['gat x k\r\n', [BAD_EXPTIME], 'live'],
  ['gat 9223372036854775808 k\r\n', [BAD_EXPTIME], 'live'],
  [`get x ${b251} y\r\n`, [BAD_FORMAT], 'live'],
  [`gat 1 ${b251}\r\n`, [BAD_FORMAT], 'live'],
  [`gat x ${b251}\r\n`, [BAD_EXPTIME], 'live'],
  // Storage commands: the data block of a malformed command is read as the next command ...
  ['set k 0 0\r\na\r\n', [ERROR, ERROR], 'live'],
  ['set k 0 0 \r\na\r\n', [ERROR, ERROR], 'live'],
  ['set k 0 0 1 noreply x\r\na\r\n', [ERROR, ERROR], 'live'],
  ['set k 0 0 1 noreply a b c d e f g h i j k l m n o p q r s t u v w x y z\r\na\r\n', [ERROR, ERROR], 'live'],
  ['set k\x000 0 1\r\na\r\n', [ERROR, ERROR], 'live'],
  ['set k x 0 1\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['set k 0 x 1\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['set k 0 0 x\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['set k 0 0 1x\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['set k 0 0 -1\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['set k -1 0 1\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['set k 1- 0 1\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['set k 18446744073709551616 0 1\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['set k 18446744073709551615\t- 0 1\r\na\r\n', [BAD_FORMAT, ERROR], 'live'], // looks negative and has a '-'
  ['set k 0 9223372036854775808 1\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['set k 0 0 4294967295\r\na\r\n', [BAD_FORMAT, ERROR], 'live'], // int32 -1
  ['set k 0 0 2147483647\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['set k 0 0 2147483646\r\na\r\n', [BAD_FORMAT, ERROR], 'live'], // > INT_MAX - 2
  [`set ${b251} 0 0 1\r\na\r\n`, [BAD_FORMAT, ERROR], 'live'],
  ['cas k 0 0 1\r\na\r\n', [ERROR, ERROR], 'live'],
  ['cas k 0 0 1 x\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['cas k 0 0 1 -1\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  ['cas k 0 0 1 18446744073709551616\r\na\r\n', [BAD_FORMAT, ERROR], 'live'],
  // ... and with noreply the error itself is not answered.
  ['set k 0 0 noreply\r\na\r\n', [ERROR], 'live'],
  ['set k 0 0 -1 noreply\r\na\r\n', [ERROR], 'live'],
  [`set ${b251} 0 0 1 noreply\r\na\r\n`, [ERROR], 'live'],
  // Exactly <bytes> + 2 are read; if they do not end in \r\n, what follows is a new command.
  ['set k 0 0 3\r\nabcde\r\n', [BAD_CHUNK, ERROR], 'live'],
  ['set k 0 0 3\r\nabc\r\r\n', [BAD_CHUNK, ERROR], 'live'],
  ['set k 0 0 1\r\r\nab\r\n', [BAD_CHUNK, ERROR], 'live'],
  ['set k 0 0 1\n1\nget k\r\n', [BAD_CHUNK, ERROR], 'live'],
  ['set k 0 0 3 noreply\r\nabcde\r\n', [ERROR], 'live'],
  ['touch k\r\n', [ERROR], 'live'],
  ['touch k x\r\n', [BAD_EXPTIME], 'live'],
  ['touch k -9223372036854775809\r\n', [BAD_EXPTIME], 'live'],
  ['touch k x noreply\r\nversion\r\n', ['version'], 'live'],
  ['touch k 10 noreply foo\r\n', [ERROR], 'live'],
  [`touch ${b251} x\r\n`, [BAD_FORMAT], 'live'],
  ['delete\r\n', [ERROR], 'live'],
  ['delete k 1\r\n', [DELETE_USAGE], 'live'],
  ['delete k x\r\n', [DELETE_USAGE], 'live'],
  ['delete k 0 0\r\n', [DELETE_USAGE], 'live'],
  ['delete k 0 noreply x\r\n', [ERROR], 'live'],
  ['delete k 1 noreply\r\n', [], 'live'],
  ['delete k noreply noreply\r\n', [], 'live'],
  [`delete ${b251}\r\n`, [BAD_FORMAT], 'live'],
  [`delete ${b251} 1\r\n`, [DELETE_USAGE], 'live'],
  ['incr k\r\n', [ERROR], 'live'],
  ['incr k x\r\n', [BAD_DELTA], 'live'],
  ['incr k -1\r\n', [BAD_DELTA], 'live'],
  ['incr k +\r\n', [BAD_DELTA], 'live'],
  ['incr k \t\r\n', [BAD_DELTA], 'live'],
  ['incr k 0x10\r\n', [BAD_DELTA], 'live'],
  ['incr k 18446744073709551616\r\n', [BAD_DELTA], 'live'],
  ['incr k 9223372036854775808\t-\r\n', [BAD_DELTA], 'live'],
  [`incr k ${'9'.repeat(5000)}\r\n`, [BAD_DELTA], 'live'],
  ['incr k x noreply\r\nversion\r\n', ['version'], 'live'],
  [`incr ${b251} x\r\n`, [BAD_FORMAT], 'live'],
  ['flush_all x\r\n', [BAD_EXPTIME], 'live'],
  ['flush_all 9223372036854775808\r\n', [BAD_EXPTIME], 'live'],
  ['flush_all x noreply\r\nversion\r\n', ['version'], 'live'],
  ['flush_all 1 2 3\r\n', [ERROR], 'live'],
  ['verbosity\r\n', [ERROR], 'live'],
  ['verbosity x\r\n', [BAD_FORMAT], 'live'],
  ['verbosity -1\r\n', [BAD_FORMAT], 'live'],
  ['verbosity 18446744073709551616\r\n', [BAD_FORMAT], 'live'],
  ['verbosity HTTP/1.1\r\n', [BAD_FORMAT], 'live'],
  ['verbosity noreply\r\n', [], 'live'],
  ['verbosity 1 2 3\r\n', [ERROR], 'live'],
  ['shutdown\r\n', ['ERROR: shutdown not enabled\r\n'], 'live'],
  ['shutdown graceful\r\n', ['ERROR: shutdown not enabled\r\n'], 'live'],
  ['slabs\r\n', [ERROR], 'live'],
  ['lru_crawler\r\n', [ERROR], 'live'],
  ['lru x\r\n', [ERROR], 'live'],
  ['extstore a b\r\n', [ERROR], 'live'],
  ['cache_memlimit\r\n', [ERROR], 'live'],
  ['stats a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n', ['stats a b c d e f g h i j k l m n o p q r s t u v w x y z']],
  // memcached closes without a word on an unknown command whose last word starts with HTTP/.
  ['GET / HTTP/1.1\r\nversion\r\n', [HTTP_CLOSE], 'live'],
  ['foo HTTP/1.0\r\nversion\r\n', [HTTP_CLOSE], 'live'],
  ['mxx HTTP/1.1\r\n', [HTTP_CLOSE], 'live'],
  ['misbehave HTTP/\r\n', [HTTP_CLOSE], 'live'],
  ['zz x HTTP/\r\n', [HTTP_CLOSE], 'live'],
  ['xHTTP/ a\r\nversion\r\n', [ERROR, 'version'], 'live'],
  ['zz HTTP/1.1 x\r\n', [ERROR], 'live'],
  ['aHTTP/ HTTP/1.1\r\n', [ERROR], 'live'],
  ['mz HTTP/1.1\r\n', [ERROR], 'live'],
  ['lru_crawler HTTP/1.1\r\n', [ERROR], 'live'],
  ['bget HTTP/\r\n', ['get HTTP/'], 'live'],
  ['quit HTTP/1.1\r\n', ['quit'], 'live'],
  // Keys: memcached's tokenizer splits on spaces only; control bytes, DEL, high bytes and a CR
  // that does not end the line are key bytes.
  ['set k\r 0 0 1\r\nz\r\nget k\r\r\n', ['set k\r 0 0 [z]', 'get k\r'], 'live'],
  ['set a\tb 0 0 1\r\nz\r\nget a\tb\r\n', ['set a\tb 0 0 [z]', 'get a\tb'], 'live'],
  ['set \x7f 0 0 1\r\nz\r\nget ok \x7f\r\n', ['set \x7f 0 0 [z]', 'get ok \x7f'], 'live'],
  ['set a\x01b 0 0 1\r\nz\r\nget a\x01b\r\n', ['set a\x01b 0 0 [z]', 'get a\x01b'], 'live'],
  ['set \x10\x10\x80\xff 0 0 1 noreply\r\nz\r\nget \x10\x10\x80\xff\r\n', ['set \x10\x10\x80\xff 0 0 noreply [z]', 'get \x10\x10\x80\xff'], 'live'],
  ['delete a\x1fb\r\n', ['delete a\x1fb'], 'live'],
  ['touch a\tb 1\r\n', ['touch a\tb 1'], 'live'],
  ['incr a\vb 1\r\n', ['incr a\vb 1'], 'live'],
];

/** Where we differ from memcached on purpose. */
const DELIBERATE: Case[] = [
  // Admin commands that act on a backend's LRU, slabs or logs: refused as a memcached with
  // them disabled refuses them (admin.ts).
  ['watch\r\n', ['CLIENT_ERROR watch commands not allowed\r\n']], // memcached: OK, then streams its logs
  ['watch HTTP/1.1\r\n', ['CLIENT_ERROR watch commands not allowed\r\n']], // memcached: ERROR
  ['watch noreply\r\n', []],
  ['lru_crawler crawl all\r\n', ['CLIENT_ERROR lru crawler disabled\r\n']], // memcached: OK
  ['lru_crawler metadump all\r\n', ['CLIENT_ERROR lru crawler disabled\r\n']], // memcached: the dump
  ['lru_crawler enable\r\n', ['ERROR failed to start lru crawler thread\r\n']], // the same while it runs
  ['lru_crawler disable\r\n', [OK_LINE]], // the same, but not run live: it would stop memcached's crawler
  ['slabs reassign 1 2\r\n', ['CLIENT_ERROR slab reassignment disabled\r\n']], // memcached: OK, BUSY, NOSPARE...
  // Meta commands are not served through the client port; ms's data block is swallowed.
  ['mg k v\r\n', [BAD_FORMAT]], // memcached: EN
  ['md k\r\n', [BAD_FORMAT]], // memcached: NF
  ['ma k\r\n', [BAD_FORMAT]], // memcached: NF
  ['me k\r\n', [BAD_FORMAT]], // memcached: EN
  ['ms k 3 T0\r\nabc\r\nmn\r\n', [BAD_FORMAT, MN]], // memcached: HD, MN
  ['ms k 2 q\r\nab\r\nversion\r\n', [BAD_FORMAT, 'version']],
];

/** memcached's admin commands: settings are checked as memcached checks them and answered OK. */
const ADMIN: Case[] = [
  ['cache_memlimit 100\r\n', [OK_LINE], 'live'],
  ['cache_memlimit 2\r\n', ['MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n'], 'live'],
  ['cache_memlimit 2000000000\r\n', ['MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n'], 'live'],
  ['cache_memlimit x\r\n', [ERROR], 'live'],
  ['cache_memlimit\r\n', [ERROR], 'live'],
  ['cache_memlimit 1 2 3\r\n', [ERROR], 'live'],
  ['cache_memlimit 100 noreply\r\n', [], 'live'],
  ['cache_memlimit x noreply\r\n', [], 'live'],
  ['lru tune 10 10 0.1 2\r\n', [OK_LINE], 'live'],
  ['lru tune 50 50 0.1 2\r\n', ['ERROR hot and warm pcts must not exceed 80\r\n'], 'live'],
  ['lru tune 10 10 0 2\r\n', ['ERROR hot/warm age factors must be greater than 0\r\n'], 'live'],
  ['lru tune 10 x 0.1 2\r\n', [ERROR], 'live'],
  ['lru mode segmented\r\n', [OK_LINE], 'live'],
  ['lru mode x\r\n', [ERROR], 'live'],
  ['lru temp_ttl 61\r\n', [OK_LINE], 'live'],
  ['lru temp_ttl x\r\n', [ERROR], 'live'],
  ['lru temp_ttl 61 noreply\r\n', [], 'live'],
  ['lru\r\n', [ERROR], 'live'],
  ['lru_crawler tocrawl 5\r\n', [OK_LINE], 'live'],
  ['lru_crawler tocrawl x\r\n', [BAD_FORMAT], 'live'],
  ['lru_crawler sleep 100\r\n', [OK_LINE], 'live'],
  ['lru_crawler sleep 2000000\r\n', ['CLIENT_ERROR sleep must be one second or less\r\n'], 'live'],
  ['lru_crawler crawl\r\n', [ERROR], 'live'],
  ['slabs automove 1\r\n', [OK_LINE], 'live'],
  ['slabs automove 3\r\n', [ERROR], 'live'],
  ['slabs automove x\r\n', [BAD_FORMAT], 'live'],
  ['slabs automove ratio\r\n', [ERROR], 'live'],
  ['slabs automove ratio 0.8\r\n', [OK_LINE], 'live'],
  ['slabs automove 1 noreply\r\n', [], 'live'],
  ['slabs reassign 1\r\n', [ERROR], 'live'],
  ['extstore item_size 10\r\n', [OK_LINE], 'live'],
  ['extstore max_frag 0.8\r\n', [OK_LINE], 'live'],
  ['extstore free_memchunks 1 2\r\n', [OK_LINE], 'live'],
  ['extstore free_memchunks 64 2\r\n', [ERROR], 'live'],
  ['extstore foo 1\r\n', [ERROR], 'live'],
  ['extstore item_size\r\n', [ERROR], 'live'],
  ['extstore item_size 10 noreply\r\n', [], 'live'],
  ['refresh_certs\r\n', ['Error TLS not enabled\r\n'], 'live'],
  ['mn\r\n', [MN], 'live'],
  ['mn HTTP/1.1\r\n', [MN], 'live'],
  ['mg\r\n', [ERROR], 'live'],
  ['md\r\n', [ERROR], 'live'],
  ['ma\r\n', [ERROR], 'live'],
  ['me\r\n', [BAD_FORMAT], 'live'],
  ['ms\r\n', [ERROR], 'live'],
  ['ms k\r\n', [BAD_FORMAT], 'live'],
  ['ms k x\r\n', [BAD_FORMAT], 'live'],
  ['ms k -1\r\n', [BAD_FORMAT], 'live'],
  [`ms ${b251} 1\r\nversion\r\n`, [BAD_FORMAT, 'version'], 'live'],
  ['mx k\r\n', [ERROR], 'live'],
];

const ALL = [...GOOD, ...BAD, ...DELIBERATE, ...ADMIN];

// ---- tables ----

describe('TextParser tables', () => {
  it.each(GOOD)('good %j', (input, expected) => {
    expect(transcript(bytes(input))).toEqual(expected);
  });
  it.each(BAD)('bad %j', (input, expected) => {
    expect(transcript(bytes(input))).toEqual(expected);
  });
  it.each(DELIBERATE)('deliberately unlike memcached %j', (input, expected) => {
    expect(transcript(bytes(input))).toEqual(expected);
  });
  it.each(ADMIN)('admin %j', (input, expected) => {
    expect(transcript(bytes(input))).toEqual(expected);
  });
});

describe('TextParser framing', () => {
  it('gives identical results with every frame split at every byte boundary', () => {
    for (const [input] of ALL) {
      const buf = bytes(input);
      const whole = transcript(buf);
      for (let cut = 1; cut < buf.length; cut++) expect(transcript(buf, [cut]), `${JSON.stringify(input)} cut at ${cut}`).toEqual(whole);
      const everyByte = Array.from({ length: buf.length - 1 }, (_, i) => i + 1);
      expect(transcript(buf, everyByte), `${JSON.stringify(input)} byte by byte`).toEqual(whole);
    }
  });

  it('answers pipelined requests in order, across every case', () => {
    // A case that closes the connection ends the pipeline, so those go last, one of them.
    const open = ALL.filter(([, expected]) => !expected.some((e) => e === 'quit' || e.startsWith('CLOSE:')));
    const input = bytes(open.map(([i]) => i).join('') + 'version\r\nquit\r\nget never\r\n');
    const expected = [...open.flatMap(([, e]) => e), 'version', 'quit'];
    expect(transcript(input)).toEqual(expected);
    // Random piece sizes give the same.
    let seed = 7;
    const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n) + 1;
    for (let round = 0; round < 20; round++) {
      const cuts: number[] = [];
      for (let at = rand(40); at < input.length; at += rand(round < 10 ? 40 : 3000)) cuts.push(at);
      expect(transcript(input, cuts)).toEqual(expected);
    }
  });

  it('returns keys and values that later input does not overwrite', () => {
    const p = new TextParser(DEFAULT_LIMITS);
    const got: TextRequest[] = [];
    const chunk = bytes('set key0 0 0 5\r\nval');
    p.push(chunk);
    drain(p, got);
    chunk.fill(0x58); // the caller may reuse its chunk once it is consumed
    // Split pushes make the parser copy into its own buffer and compact it over and over.
    const rest = bytes('ue\r\n' + Array.from({ length: 200 }, (_, i) => `set key${i + 1} 0 0 5\r\nv${String(i).padStart(4, '0')}\r\nget g${i}\r\n`).join(''));
    for (let at = 0; at < rest.length; at += 7) {
      const piece = Buffer.from(rest.subarray(at, at + 7));
      p.push(piece);
      drain(p, got);
      piece.fill(0x58);
    }
    expect(show(got[0])).toBe('set key0 0 0 [value]');
    expect(got.length).toBe(401);
    for (let i = 0; i < 200; i++) {
      expect(show(got[1 + 2 * i])).toBe(`set key${i + 1} 0 0 [v${String(i).padStart(4, '0')}]`);
      expect(show(got[2 + 2 * i])).toBe(`get g${i}`);
    }
  });

  it('never throws and stays bounded on random bytes', () => {
    const limits: Limits = { ...DEFAULT_LIMITS, maxLineLength: 64, maxItemSize: 64, maxKeysPerGet: 4 };
    let seed = 12345;
    const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    const alphabet = bytes('get gat set cas incr delete touch noreply 0 1 -1 99999999999 \r\n\r\n\n\x00\t ');
    for (let round = 0; round < 300; round++) {
      const p = new TextParser(limits);
      for (let pushes = 0; pushes < 20; pushes++) {
        const chunk = Buffer.alloc(rand(200));
        for (let i = 0; i < chunk.length; i++) chunk[i] = round % 2 ? rand(256) : alphabet[rand(alphabet.length)];
        p.push(chunk);
        for (let r = p.next(); r; r = p.next()) expect(r.kind).toBeTypeOf('string');
        expect(p.buffered).toBeLessThanOrEqual(limits.maxLineLength + 1 + limits.maxItemSize + 2);
      }
    }
  });
});

describe('TextParser bounds', () => {
  const small: Limits = { ...DEFAULT_LIMITS, maxLineLength: 16, maxItemSize: 10, maxKeysPerGet: 3, maxKeyLength: 5 };

  it('accepts a line of maxLineLength bytes and refuses one more, then closes', () => {
    expect(transcript(bytes('get kkkk kkkkk a\n'), [], small)).toEqual(['get kkkk kkkkk a']); // 16 bytes
    expect(transcript(bytes('get kkkk kkkkk a\r\n'), [], small)).toEqual([LINE_TOO_LONG]); // the \r counts
    const twoLines = bytes('version\r\nget kkkkk kkkkk aa\nversion\r\n');
    for (let cut = 0; cut <= twoLines.length; cut++) expect(transcript(twoLines, [cut], small)).toEqual(['version', LINE_TOO_LONG]);
  });

  it('drops an endless line without buffering it and ignores everything after', () => {
    const p = new TextParser(DEFAULT_LIMITS);
    const junk = Buffer.alloc(64 * 1024, 0x61);
    const got: TextRequest[] = [];
    for (let i = 0; i < 64; i++) {
      p.push(junk); // 4 MiB in all
      expect(p.buffered).toBeLessThanOrEqual(DEFAULT_LIMITS.maxLineLength);
    }
    drain(p, got);
    expect(got.map(show)).toEqual([LINE_TOO_LONG]);
    p.push(bytes('version\r\n'));
    expect(p.next()).toBeNull();
    expect(p.buffered).toBe(0);
  });

  it('notices an endless line even when next() is not called between pushes', () => {
    const p = new TextParser(small);
    for (let i = 0; i < 1000; i++) p.push(bytes('abcdefg'));
    expect(p.buffered).toBe(0);
    expect(show(p.next()!)).toBe(LINE_TOO_LONG);
    expect(p.next()).toBeNull();
  });

  it('refuses a value over maxItemSize and swallows <bytes>+2 as memcached does', () => {
    const ok = bytes('set k 0 0 10\r\n0123456789\r\n');
    expect(transcript(ok, [], small)).toEqual(['set k 0 0 [0123456789]']);
    const big = bytes('set k 0 0 11\r\n0123456789X\r\nget k\r\n');
    for (let cut = 0; cut <= big.length; cut++) expect(transcript(big, [cut], small)).toEqual(['too_large k drop', 'get k']);
    // The 13 bytes are skipped whatever they are, like memcached's conn_swallow.
    expect(transcript(bytes('set k 0 0 11\r\n0123456789XYZversion\r\n'), [], small)).toEqual(['too_large k drop', 'version']);
    const wide = { ...small, maxLineLength: 64 };
    expect(transcript(bytes('set k 0 0 11 noreply\r\n0123456789X\r\nget k\r\n'), [], wide)).toEqual(['too_large k drop noreply', 'get k']);
    // Only a set drops what the key held (memcached's NREAD_SET); add, replace, append, prepend and cas do not.
    for (const command of ['add k 0 0 11', 'replace k 0 0 11', 'append k 0 0 11', 'prepend k 0 0 11', 'cas k 0 0 11 5']) {
      expect(transcript(bytes(`${command}\r\n0123456789X\r\n`), [], wide)).toEqual(['too_large k']);
    }
  });

  it('swallows a 1 MiB + 1 value with almost nothing buffered', () => {
    const p = new TextParser(DEFAULT_LIMITS);
    const got: TextRequest[] = [];
    p.push(bytes('set k 0 0 1048577\r\n'));
    drain(p, got);
    expect(got.map(show)).toEqual(['too_large k drop']);
    const piece = Buffer.alloc(60_000, 0x78);
    let left = 1048577 + 2;
    while (left > 0) {
      const n = Math.min(left, piece.length);
      p.push(piece.subarray(0, n));
      left -= n;
      drain(p, got);
      expect(p.buffered).toBe(0);
    }
    p.push(bytes('get k\r\n'));
    drain(p, got);
    expect(got.map(show)).toEqual(['too_large k drop', 'get k']);
  });

  it('accepts a value of exactly maxItemSize bytes, counted while it arrives', () => {
    const p = new TextParser(DEFAULT_LIMITS);
    const got: TextRequest[] = [];
    p.push(bytes('set k 0 0 1048576\r\n'));
    const piece = Buffer.alloc(65536, 0x79);
    for (let i = 0; i < 16; i++) {
      p.push(piece);
      drain(p, got);
      expect(got).toEqual([]);
      expect(p.buffered).toBe((i + 1) * 65536);
    }
    p.push(bytes('\r\nversion\r\n'));
    drain(p, got);
    expect(got.length).toBe(2);
    const store = got[0];
    expect(store.kind === 'store' && store.value.length === 1048576 && store.value.every((b) => b === 0x79)).toBe(true);
    expect(show(got[1])).toBe('version');
    expect(p.buffered).toBe(0);
  });

  it('bounds keys per get and key length', () => {
    expect(transcript(bytes('get a b c\r\n'), [], small)).toEqual(['get a b c']);
    expect(transcript(bytes('get a b c d\r\n'), [], small)).toEqual(['CLIENT_ERROR too many keys\r\n']);
    expect(transcript(bytes('gat 1 a b c\r\n'), [], small)).toEqual(['gat 1 a b c']);
    expect(transcript(bytes('gat 1 a b c d\r\n'), [], small)).toEqual(['CLIENT_ERROR too many keys\r\n']);
    expect(transcript(bytes('get kkkkk\r\nget kkkkkk\r\n'), [], small)).toEqual(['get kkkkk', BAD_FORMAT]);
    expect(transcript(bytes(`get ${'a'.repeat(251)}\r\n`))).toEqual([BAD_FORMAT]);
  });

  it('counts a partly received value in buffered', () => {
    const p = new TextParser(DEFAULT_LIMITS);
    p.push(bytes('set k 0 0 100\r\n'));
    expect(p.next()).toBeNull();
    expect(p.buffered).toBe(0);
    p.push(Buffer.alloc(40, 0x61));
    expect(p.next()).toBeNull();
    expect(p.buffered).toBe(40);
  });

  it('keeps nothing after quit', () => {
    const p = new TextParser(DEFAULT_LIMITS);
    p.push(bytes('quit\r\nset k 0 0 1\r\n'));
    expect(p.next()).toEqual({ kind: 'quit' });
    expect(p.next()).toBeNull();
    p.push(bytes('a\r\nversion\r\n'));
    expect(p.next()).toBeNull();
    expect(p.buffered).toBe(0);
  });
});

// ---- against the real memcached ----

/** A toy memcached built on the parser and the encoder: enough to replay the 'live' cases. */
function replay(input: Buffer): { out: string; closed: boolean } {
  const items = new Map<string, { value: Buffer; flags: number }>();
  const parser = new TextParser(DEFAULT_LIMITS);
  parser.push(input);
  const out: Buffer[] = [];
  const say = (noreply: boolean, b: Buffer): void => {
    if (!noreply) out.push(b);
  };
  for (let r = parser.next(); r; r = parser.next()) {
    switch (r.kind) {
      case 'get':
        for (const key of r.keys) {
          const it = items.get(key.toString('latin1'));
          if (it) out.push(...encodeValue(key, { ...it, cas: 0n }, r.withCas));
        }
        out.push(END);
        break;
      case 'store': {
        const name = r.key.toString('latin1');
        const old = items.get(name);
        let o: StoreOutcome = { status: 'stored', cas: 0n };
        if (r.mode === 'add' && old) o = { status: 'not_stored' };
        else if ((r.mode === 'replace' || r.mode === 'append' || r.mode === 'prepend') && !old) o = { status: 'not_stored' };
        else if (r.mode === 'cas') o = old ? { status: 'exists' } : { status: 'not_found' };
        else if (r.mode === 'append') items.set(name, { value: Buffer.concat([old!.value, r.value]), flags: old!.flags });
        else if (r.mode === 'prepend') items.set(name, { value: Buffer.concat([r.value, old!.value]), flags: old!.flags });
        else items.set(name, { value: r.value, flags: r.flags });
        say(r.noreply, encodeStoreOutcome(o));
        break;
      }
      case 'delete':
        say(r.noreply, items.delete(r.key.toString('latin1')) ? DELETED : NOT_FOUND);
        break;
      case 'too_large':
        if (r.dropStale) items.delete(r.key.toString('latin1'));
        say(r.noreply, SERVER_ERROR_TOO_LARGE);
        break;
      case 'touch':
        say(r.noreply, encodeTouchOutcome(items.has(r.key.toString('latin1')) ? { status: 'touched' } : { status: 'not_found' }));
        break;
      case 'arith': {
        const name = r.key.toString('latin1');
        const it = items.get(name);
        let o: ArithOutcome = { status: 'not_found' };
        if (it && !/^\d+$/.test(it.value.toString('latin1'))) o = { status: 'non_numeric' };
        else if (it) {
          const cur = BigInt(it.value.toString('latin1'));
          const value = r.op === 'incr' ? BigInt.asUintN(64, cur + r.delta) : cur > r.delta ? cur - r.delta : 0n;
          items.set(name, { value: Buffer.from(value.toString()), flags: it.flags });
          o = { status: 'ok', value, cas: 0n };
        }
        say(r.noreply, encodeArithOutcome(o));
        break;
      }
      case 'flush_all':
        if (r.delay === 0) items.clear();
        say(r.noreply, OK);
        break;
      case 'verbosity':
        say(r.noreply, OK);
        break;
      case 'version':
        out.push(bytes('VERSION 1.6.18\r\n'));
        break;
      case 'stats':
        throw new Error('stats are not replayed');
      case 'answer':
        out.push(r.reply);
        break;
      case 'quit':
        return { out: Buffer.concat(out).toString('latin1'), closed: true };
      case 'error':
        out.push(r.reply);
        if (r.close) return { out: Buffer.concat(out).toString('latin1'), closed: true };
        break;
    }
  }
  return { out: Buffer.concat(out).toString('latin1'), closed: false };
}

const memcachedBinary = spawnSync('memcached', ['-V']).stdout?.toString().startsWith('memcached 1.6') ?? false;

describe.skipIf(!memcachedBinary)('TextParser against memcached 1.6', () => {
  let server: ChildProcess | undefined;
  let port = 0;

  beforeAll(async () => {
    for (let attempt = 0; attempt < 5 && !server; attempt++) {
      port = await freePort();
      const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-t', '1'];
      if (process.getuid?.() === 0) args.push('-u', 'root');
      const child = spawn('memcached', args, { stdio: 'ignore' });
      if (await reachable(child, port)) server = child;
      else child.kill('SIGKILL');
    }
    if (!server) throw new Error('could not start memcached');
  });

  afterAll(() => {
    server?.kill('SIGKILL');
  });

  it('answers every live case byte for byte like memcached', async () => {
    const mismatches: string[] = [];
    for (const [input] of ALL.filter(([, , live]) => live)) {
      const ours = replay(bytes(input));
      const theirs = await exchange(port, bytes(input), ours);
      if (theirs.out !== ours.out || theirs.closed !== ours.closed) {
        mismatches.push(`${JSON.stringify(input)}: memcached ${JSON.stringify(theirs)}, ours ${JSON.stringify(ours)}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('swallows a too-large value exactly as memcached does', async () => {
    const value = 'x'.repeat(1048577);
    const input = bytes(`set big 0 0 1048577\r\n${value}\r\nversion\r\nset big 0 0 1048577 noreply\r\n${value}XYversion\r\n`);
    const ours = replay(input);
    expect(ours.out).toBe(`${TOO_LARGE}VERSION 1.6.18\r\nVERSION 1.6.18\r\n`);
    expect(await exchange(port, input, ours)).toEqual(ours);
  });

  it('drops what the key held when a set is too large, and only a set, as memcached does', async () => {
    const value = 'x'.repeat(1048577);
    const input = bytes(
      'set kept 0 0 3\r\nold\r\nset gone 0 0 3\r\nold\r\nset quiet 0 0 3\r\nold\r\n' +
        `add kept 0 0 1048577\r\n${value}\r\nappend kept 0 0 1048577\r\n${value}\r\n` +
        `set gone 0 0 1048577\r\n${value}\r\nset quiet 0 0 1048577 noreply\r\n${value}\r\n` +
        'get kept gone quiet\r\n',
    );
    const ours = replay(input);
    expect(ours.out).toBe(`STORED\r\nSTORED\r\nSTORED\r\n${TOO_LARGE}${TOO_LARGE}${TOO_LARGE}VALUE kept 0 3\r\nold\r\nEND\r\n`);
    expect(await exchange(port, input, ours)).toEqual(ours);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** True once `child` accepts on the port; false if it exits first (it could not listen). No deadline but the hook's timeout. */
async function reachable(child: ChildProcess, port: number): Promise<boolean> {
  while (child.exitCode === null) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/**
 * On a fresh connection: flush_all and wait for its OK, then send `input` followed by a meta
 * no-op (unless `ours` closed), so memcached's reply is complete at the no-op's "MN" or at
 * the close. Returns what came back in between. No deadline that a loaded machine could
 * pass: it ends at the close, or once as many bytes as ours and the "MN" have come; only a
 * memcached that sent nothing more for 20 s (a shorter reply than ours) is given up on, to
 * show the difference before the test's own timeout.
 */
function exchange(port: number, input: Buffer, ours: { out: string; closed: boolean }): Promise<{ out: string; closed: boolean }> {
  const OK_LINE = 'OK\r\n';
  const MN = 'MN\r\n';
  return new Promise((resolve) => {
    let text = '';
    let sent = false;
    let closed = false;
    const s = net.connect(port, '127.0.0.1');
    const finish = (): void => {
      clearTimeout(giveUp);
      s.destroy();
      const out = text.slice(OK_LINE.length);
      resolve({ out: !ours.closed && out.endsWith(MN) ? out.slice(0, -MN.length) : out, closed });
    };
    let giveUp = setTimeout(finish, 20_000);
    s.on('data', (d: Buffer) => {
      clearTimeout(giveUp);
      giveUp = setTimeout(finish, 20_000);
      text += d.toString('latin1');
      if (!sent && text.length >= OK_LINE.length) {
        sent = true;
        s.write(ours.closed ? input : Buffer.concat([input, bytes('mn\r\n')]));
      }
      if (!sent || ours.closed) return;
      if (text.length >= OK_LINE.length + ours.out.length + MN.length) finish();
    });
    s.on('close', () => {
      closed = true;
      finish();
    });
    s.on('error', () => undefined);
    s.write(bytes('flush_all\r\n'));
  });
}
