// Client-side memcached text protocol parser: bytes in, TextRequest out. No sockets.
//
//   push(chunk) ──► line buffer ──► next() ──► TextRequest | null (need more bytes)
//
//   state   waits for                              then
//   Line    "<command> <args>[\r]\n"               a request, an error reply, or Value/Swallow
//   Value   <bytes> + 2 of a storage command        copied out, must end in \r\n
//   Swallow <bytes> + 2 of a refused storage cmd    counted down as they arrive, never buffered
//   Closed  (after quit or a closing error)        everything dropped
//
// A line longer than maxLineLength is answered "CLIENT_ERROR line too long" and closes the
// parser; push() notices it before buffering the excess.
//
// It reproduces memcached 1.6.18's proto_text.c, checked against the real server: a line is a
// C string (it ends at a NUL), tokens are split on spaces only, numbers are read the way
// strtol/strtoul/strtoull read them (leading whitespace, sign, 64-bit then truncated), the
// token counts decide between ERROR and CLIENT_ERROR, and an error on a `noreply` command is
// not answered. Where memcached would take the data block of a malformed storage command as
// the next command, so does this parser. Keys are what memcached's tokenizer leaves: any bytes
// but space, LF and NUL (a CR is a key byte unless it ends the line), up to maxKeyLength. On
// top of memcached it bounds lines and keys per get.
//
// Usage contract: call next() until it returns null after every push(). Then at most
// maxLineLength bytes of an incomplete line are held, plus the received part of one value
// (<= maxItemSize + 2), and the pushed chunk is no longer referenced (it is parsed in place
// until then, and what is left of it copied). Returned keys and values are copies owned by
// the caller.

import type { StoreMode } from '../types';
import type { Limits } from '../limits';
import {
  CLIENT_ERROR_BAD_DATA_CHUNK,
  CLIENT_ERROR_BAD_FORMAT,
  CLIENT_ERROR_DELETE_USAGE,
  CLIENT_ERROR_INVALID_DELTA,
  CLIENT_ERROR_INVALID_EXPTIME,
  CLIENT_ERROR_LINE_TOO_LONG,
  CLIENT_ERROR_TOO_MANY_KEYS,
  ERROR,
  ERROR_SHUTDOWN_NOT_ENABLED,
} from './encoder';
import { ADMIN_COMMANDS, answerAdmin } from './admin';
import { readInteger, strtoull } from './numbers';

export type TextRequest =
  /** get, gets, gat <exptime> k.., gats (and memcached's legacy bget). `keys` may be empty for `gat <exptime>`. */
  | { kind: 'get'; keys: Buffer[]; withCas: boolean; touch?: number }
  /** set/add/replace/append/prepend/cas; `cas` is 0n unless the command is `cas`. */
  | { kind: 'store'; mode: StoreMode; key: Buffer; flags: number; exptime: number; value: Buffer; cas: bigint; noreply: boolean }
  | { kind: 'delete'; key: Buffer; noreply: boolean }
  | { kind: 'touch'; key: Buffer; exptime: number; noreply: boolean }
  | { kind: 'arith'; op: 'incr' | 'decr'; key: Buffer; delta: bigint; noreply: boolean }
  /** `delay` is >= 0: memcached treats a negative delay as 0. */
  | { kind: 'flush_all'; delay: number; noreply: boolean }
  | { kind: 'version' }
  | { kind: 'verbosity'; noreply: boolean }
  /**
   * A value over the item limit, swallowed unread: memcached answers SERVER_ERROR object too
   * large for cache (not with noreply) and, for `set` only (`dropStale`), also drops what the key
   * held, so that a stale value does not outlive the write that failed.
   */
  | { kind: 'too_large'; key: Buffer; dropStale: boolean; noreply: boolean }
  /** A reply the parser decided on its own that is no error (an admin command's, see admin.ts). */
  | { kind: 'answer'; reply: Buffer }
  /** The words after `stats`, latin1-decoded. */
  | { kind: 'stats'; args: string[] }
  /** The parser is closed after it: send what is pending, then close. */
  | { kind: 'quit' }
  /** A reply the parser decided on its own. `close`: send it, then close the connection
      (the parser is closed after it). An empty `reply` with `close` is memcached's silent
      close on a line that looks like HTTP. */
  | { kind: 'error'; reply: Buffer; close: boolean };

const enum State { Line, Value, Swallow, Closed }

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const NUL = 0x00;

// memcached tokenizes at most 23 words (MAX_TOKENS 24 with its terminal token); commands
// other than the gets see only those, and their token counts saturate at 24.
const MEMCACHED_MAX_TOKENS = 24;
// A storage length above INT_MAX - 2 is refused (the +2 of the data block would overflow).
const MAX_VALUE_LENGTH = 2 ** 31 - 1 - 2;
// An idle owned buffer larger than this is released rather than kept for reuse.
const KEEP_IDLE_BUFFER = 16 * 1024;
const EMPTY = Buffer.alloc(0);
const NOREPLY = Buffer.from('noreply', 'latin1');
const ZERO = Buffer.from('0', 'latin1');
const HTTP = Buffer.from('HTTP/', 'latin1');
const CLOSE_SILENTLY: TextRequest = { kind: 'error', reply: EMPTY, close: true };

const STORE_COMMANDS: ReadonlyMap<string, StoreMode> = new Map<string, StoreMode>(
  (['set', 'add', 'replace', 'append', 'prepend', 'cas'] as const).map((m) => [m, m]),
);

interface PendingValue {
  mode: StoreMode;
  key: Buffer;
  flags: number;
  exptime: number;
  cas: bigint;
  noreply: boolean;
  /** Value bytes announced; `size + 2` bytes are read, the last two must be \r\n. */
  size: number;
  parts: Buffer[];
  received: number;
}

export class TextParser {
  private buf: Buffer = EMPTY;
  /** buf is ours to write into (else it is a pushed chunk, read only). */
  private owned = false;
  private start = 0;
  private end = 0;
  /** Bytes from `start` already searched for a newline without finding one. */
  private scanned = 0;
  private state = State.Line;
  private swallowLeft = 0;
  /** The first pending line is over maxLineLength: its bytes were dropped, the reply is due. */
  private tooLong = false;
  private pending: PendingValue | null = null;
  /** Token i of the current line is buf[toks[2i], toks[2i+1]). */
  private readonly toks: number[] = [];
  private ntok = 0;

  constructor(private readonly limits: Limits) {}

  get buffered(): number {
    return this.end - this.start + (this.pending ? this.pending.received : 0);
  }

  push(chunk: Buffer): void {
    if (this.tooLong || this.state === State.Closed) return;
    let c = chunk;
    if (this.start === this.end) {
      c = this.feedBulk(c);
      if (c.length === 0) return;
    }
    // What remains of the chunk is command-line bytes: bound the first pending line first.
    if (!this.firstLineFits(c)) {
      this.tooLong = true;
      this.drop();
      return;
    }
    if (this.start === this.end) {
      this.buf = c;
      this.owned = false;
      this.start = 0;
      this.end = c.length;
      this.scanned = 0;
    } else {
      this.append(c);
    }
  }

  next(): TextRequest | null {
    for (;;) {
      switch (this.state) {
        case State.Closed:
          return null;
        case State.Swallow: {
          const n = Math.min(this.end - this.start, this.swallowLeft);
          this.consume(n);
          this.swallowLeft -= n;
          if (this.swallowLeft > 0) return this.idle();
          this.state = State.Line;
          break;
        }
        case State.Value: {
          const p = this.pending!;
          const n = Math.min(this.end - this.start, p.size + 2 - p.received);
          if (n > 0) {
            p.parts.push(copy(this.buf, this.start, this.start + n));
            p.received += n;
            this.consume(n);
          }
          if (p.received < p.size + 2) return this.idle();
          const request = this.completeValue();
          if (request) return request;
          break;
        }
        case State.Line: {
          const request = this.nextLine();
          if (request !== undefined) return request;
          break;
        }
      }
    }
  }

  // ---- buffering ----

  /** In Value/Swallow state with nothing buffered, take the chunk's bytes directly. */
  private feedBulk(c: Buffer): Buffer {
    if (this.state === State.Swallow) {
      const n = Math.min(c.length, this.swallowLeft);
      this.swallowLeft -= n;
      if (this.swallowLeft === 0) this.state = State.Line;
      return c.subarray(n);
    }
    const p = this.pending;
    if (this.state === State.Value && p) {
      const n = Math.min(c.length, p.size + 2 - p.received);
      if (n > 0) {
        p.parts.push(copy(c, 0, n));
        p.received += n;
      }
      return c.subarray(n);
    }
    return c;
  }

  /** False when the first pending line would exceed maxLineLength with `c` appended. */
  private firstLineFits(c: Buffer): boolean {
    const max = this.limits.maxLineLength;
    const pending = this.end - this.start;
    if (pending + c.length <= max) return true;
    const inBuffer = Math.min(pending, max + 1);
    if (this.scanned < inBuffer) {
      if (this.buf.subarray(this.start + this.scanned, this.start + inBuffer).indexOf(LF) >= 0) return true;
      this.scanned = inBuffer;
    }
    const room = max + 1 - pending;
    return room > 0 && c.subarray(0, room).indexOf(LF) >= 0;
  }

  private append(c: Buffer): void {
    const pending = this.end - this.start;
    if (this.owned && this.end + c.length <= this.buf.length) {
      c.copy(this.buf, this.end);
    } else if (this.owned && pending + c.length <= this.buf.length) {
      this.buf.copyWithin(0, this.start, this.end);
      c.copy(this.buf, pending);
      this.start = 0;
    } else {
      this.moveTo(pending + c.length);
      c.copy(this.buf, pending);
    }
    this.end = this.start + pending + c.length;
  }

  private consume(n: number): void {
    this.start += n;
    this.scanned = 0;
  }

  /**
   * Returns null (need more bytes). From here on no pushed chunk is referenced: the rest of an
   * incomplete line is copied into a buffer of ours, and a large idle buffer is released.
   */
  private idle(): null {
    if (this.start === this.end) {
      this.start = this.end = 0;
      if (!this.owned || this.buf.length > KEEP_IDLE_BUFFER) this.drop();
    } else if (!this.owned) {
      this.moveTo(this.end - this.start);
    }
    return null;
  }

  /** Moves the pending bytes to the front of a new buffer of ours with room for `needed` bytes. */
  private moveTo(needed: number): void {
    let size = 4096;
    while (size < needed) size *= 2;
    const fresh = Buffer.allocUnsafe(size);
    const pending = this.buf.copy(fresh, 0, this.start, this.end);
    this.buf = fresh;
    this.owned = true;
    this.start = 0;
    this.end = pending;
  }

  private drop(): void {
    this.buf = EMPTY;
    this.owned = false;
    this.start = this.end = this.scanned = 0;
  }

  private close(): void {
    this.state = State.Closed;
    this.tooLong = false;
    this.pending = null;
    this.drop();
  }

  // ---- lines ----

  /** A request, null for more bytes, undefined when the line was an unanswered (noreply) error. */
  private nextLine(): TextRequest | null | undefined {
    const max = this.limits.maxLineLength;
    const available = this.end - this.start;
    if (this.tooLong) return this.lineTooLong();
    const searchable = Math.min(available, max + 1);
    let lf = -1;
    if (this.scanned < searchable) {
      lf = this.buf.subarray(this.start + this.scanned, this.start + searchable).indexOf(LF);
      if (lf >= 0) lf += this.start + this.scanned;
      else this.scanned = searchable;
    }
    if (lf < 0) {
      return available > max ? this.lineTooLong() : this.idle();
    }
    const lineStart = this.start;
    // memcached strips one \r before the \n, unless it is the line's only byte.
    const lineEnd = lf - lineStart > 1 && this.buf[lf - 1] === CR ? lf - 1 : lf;
    // Consumed first: parsing may close the parser or start reading a value after the line;
    // the line's bytes stay in place until the next push().
    this.consume(lf + 1 - lineStart);
    return this.parseLine(lineStart, lineEnd) ?? undefined;
  }

  private lineTooLong(): TextRequest {
    this.close();
    return { kind: 'error', reply: CLIENT_ERROR_LINE_TOO_LONG, close: true };
  }

  private tokenize(from: number, to: number): void {
    const buf = this.buf;
    const toks = this.toks;
    let n = 0;
    let tokenStart = -1;
    let i = from;
    for (; i < to; i++) {
      const b = buf[i];
      if (b === NUL) break;
      if (b === SPACE) {
        if (tokenStart >= 0) {
          toks[2 * n] = tokenStart;
          toks[2 * n + 1] = i;
          n++;
          tokenStart = -1;
        }
      } else if (tokenStart < 0) {
        tokenStart = i;
      }
    }
    if (tokenStart >= 0) {
      toks[2 * n] = tokenStart;
      toks[2 * n + 1] = i;
      n++;
    }
    this.ntok = n;
  }

  /** Parses buf[from, to); null when the line's reply is suppressed by noreply or a value follows. */
  private parseLine(from: number, to: number): TextRequest | null {
    this.tokenize(from, to);
    const n = this.ntok;
    if (n === 0 || this.tokLength(0) < 2) return error(ERROR);
    // memcached's ntokens for everything but the key lists of the gets.
    const nt = Math.min(n, MEMCACHED_MAX_TOKENS - 1) + 1;
    const command = this.buf.toString('latin1', this.toks[0], this.toks[1]);
    const mode = STORE_COMMANDS.get(command);
    if (mode) {
      const ok = mode === 'cas' ? nt === 7 || nt === 8 : nt === 6 || nt === 7;
      return ok ? this.parseStore(mode, nt) : error(ERROR);
    }
    switch (command) {
      case 'get':
      case 'bget':
        return n < 2 ? error(ERROR) : this.parseGet(false, false);
      case 'gets':
        return n < 2 ? error(ERROR) : this.parseGet(true, false);
      case 'gat':
        return n < 2 ? error(ERROR) : this.parseGet(false, true);
      case 'gats':
        return n < 2 ? error(ERROR) : this.parseGet(true, true);
      case 'delete':
        return nt < 3 || nt > 5 ? error(ERROR) : this.parseDelete(nt);
      case 'incr':
      case 'decr':
        return nt === 4 || nt === 5 ? this.parseArith(command, nt) : error(ERROR);
      case 'touch':
        return nt === 4 || nt === 5 ? this.parseTouch(nt) : error(ERROR);
      case 'flush_all':
        return nt < 2 || nt > 4 ? error(ERROR) : this.parseFlush(nt);
      case 'verbosity':
        return nt === 3 || nt === 4 ? this.parseVerbosity(nt) : error(ERROR);
      case 'version':
        return { kind: 'version' };
      case 'quit':
        this.close();
        return { kind: 'quit' };
      case 'stats': {
        const args: string[] = [];
        for (let i = 1; i < n; i++) args.push(this.buf.toString('latin1', this.toks[2 * i], this.toks[2 * i + 1]));
        return { kind: 'stats', args };
      }
      case 'shutdown':
        return error(ERROR_SHUTDOWN_NOT_ENABLED);
    }
    if (ADMIN_COMMANDS.has(command)) return this.admin(n);
    // Not ours. memcached answers ERROR to the names it dispatches (any starting with one of
    // "gsacidt", two-letter meta commands "m?", the admin words above) and closes without a
    // word on anything else whose last word starts with "HTTP/".
    const dispatched = 'gsacidt'.includes(command[0]) || (command.charCodeAt(0) === 0x6d && command.length === 2);
    if (!dispatched && this.tokStartsWith(nt - 2, HTTP)) {
      this.close();
      return CLOSE_SILENTLY;
    }
    return error(ERROR);
  }

  // ---- commands (memcached's process_*_command, check for check) ----

  /** An admin or meta command answered without a backend (admin.ts); null when noreply. */
  private admin(n: number): TextRequest | null {
    const words: string[] = [];
    for (let i = 0; i < Math.min(n, MEMCACHED_MAX_TOKENS - 1); i++) {
      words.push(this.buf.toString('latin1', this.toks[2 * i], this.toks[2 * i + 1]));
    }
    const { reply, swallow } = answerAdmin(words);
    if (swallow > 0) {
      this.state = State.Swallow;
      this.swallowLeft = swallow;
    }
    return reply && { kind: 'answer', reply };
  }

  private parseGet(withCas: boolean, touch: boolean): TextRequest {
    let first = 1;
    let exptime: number | undefined;
    if (touch) {
      const t = this.int32(1);
      if (t === null) return error(CLIENT_ERROR_INVALID_EXPTIME);
      exptime = t;
      first = 2;
    }
    if (this.ntok - first > this.limits.maxKeysPerGet) return error(CLIENT_ERROR_TOO_MANY_KEYS);
    const keys: Buffer[] = [];
    for (let i = first; i < this.ntok; i++) {
      const key = this.key(i);
      if (!key) return error(CLIENT_ERROR_BAD_FORMAT);
      keys.push(key);
    }
    return exptime === undefined ? { kind: 'get', keys, withCas } : { kind: 'get', keys, withCas, touch: exptime };
  }

  private parseStore(mode: StoreMode, nt: number): TextRequest | null {
    const noreply = this.tokIs(nt - 2, NOREPLY);
    const key = this.key(1);
    if (!key) return reply(CLIENT_ERROR_BAD_FORMAT, noreply);
    const flags = this.uint32(2);
    const exptime = this.int32(3);
    const size = this.int32(4);
    if (flags === null || exptime === null || size === null) return reply(CLIENT_ERROR_BAD_FORMAT, noreply);
    let cas = 0n;
    if (mode === 'cas') {
      const c = this.uint64(5);
      if (c === null) return reply(CLIENT_ERROR_BAD_FORMAT, noreply);
      cas = c;
    }
    if (size < 0 || size > MAX_VALUE_LENGTH) return reply(CLIENT_ERROR_BAD_FORMAT, noreply);
    if (size > this.limits.maxItemSize) {
      this.state = State.Swallow;
      this.swallowLeft = size + 2;
      return { kind: 'too_large', key, dropStale: mode === 'set', noreply };
    }
    this.pending = { mode, key, flags, exptime, cas, noreply, size, parts: [], received: 0 };
    this.state = State.Value;
    return null;
  }

  private completeValue(): TextRequest | null {
    const p = this.pending!;
    this.pending = null;
    this.state = State.Line;
    const { parts, size } = p;
    const last = parts[parts.length - 1];
    const end0 = last.length >= 2 ? last[last.length - 2] : parts[parts.length - 2][parts[parts.length - 2].length - 1];
    const end1 = last[last.length - 1];
    if (end0 !== CR || end1 !== LF) return reply(CLIENT_ERROR_BAD_DATA_CHUNK, p.noreply);
    let value: Buffer;
    if (parts.length === 1) {
      value = last.subarray(0, size);
    } else {
      value = Buffer.allocUnsafe(size);
      let at = 0;
      for (const part of parts) {
        const n = Math.min(part.length, size - at);
        if (n <= 0) break;
        part.copy(value, at, 0, n);
        at += n;
      }
    }
    return { kind: 'store', mode: p.mode, key: p.key, flags: p.flags, exptime: p.exptime, value, cas: p.cas, noreply: p.noreply };
  }

  private parseDelete(nt: number): TextRequest | null {
    let noreply = false;
    if (nt > 3) {
      // The legacy "delete <key> 0" hold time is accepted; any other extra word is an error.
      const holdIsZero = this.tokIs(2, ZERO);
      noreply = this.tokIs(nt - 2, NOREPLY);
      const valid = (nt === 4 && (holdIsZero || noreply)) || (nt === 5 && holdIsZero && noreply);
      if (!valid) return reply(CLIENT_ERROR_DELETE_USAGE, noreply);
    }
    const key = this.key(1);
    if (!key) return reply(CLIENT_ERROR_BAD_FORMAT, noreply);
    return { kind: 'delete', key, noreply };
  }

  private parseArith(op: 'incr' | 'decr', nt: number): TextRequest | null {
    const noreply = this.tokIs(nt - 2, NOREPLY);
    const key = this.key(1);
    if (!key) return reply(CLIENT_ERROR_BAD_FORMAT, noreply);
    const delta = this.uint64(2);
    if (delta === null) return reply(CLIENT_ERROR_INVALID_DELTA, noreply);
    return { kind: 'arith', op, key, delta, noreply };
  }

  private parseTouch(nt: number): TextRequest | null {
    const noreply = this.tokIs(nt - 2, NOREPLY);
    const key = this.key(1);
    if (!key) return reply(CLIENT_ERROR_BAD_FORMAT, noreply);
    const exptime = this.int32(2);
    if (exptime === null) return reply(CLIENT_ERROR_INVALID_EXPTIME, noreply);
    return { kind: 'touch', key, exptime, noreply };
  }

  private parseFlush(nt: number): TextRequest | null {
    const noreply = this.tokIs(nt - 2, NOREPLY);
    let delay = 0;
    // memcached reads a delay whenever there is a word besides a final noreply.
    if (nt !== (noreply ? 3 : 2)) {
      const d = this.int32(1);
      if (d === null) return reply(CLIENT_ERROR_INVALID_EXPTIME, noreply);
      delay = Math.max(0, d);
    }
    return { kind: 'flush_all', delay, noreply };
  }

  private parseVerbosity(nt: number): TextRequest | null {
    const noreply = this.tokIs(nt - 2, NOREPLY);
    if (this.uint32(1) === null) return reply(CLIENT_ERROR_BAD_FORMAT, noreply);
    return { kind: 'verbosity', noreply };
  }

  // ---- tokens ----

  private tokLength(i: number): number {
    return this.toks[2 * i + 1] - this.toks[2 * i];
  }

  private tokIs(i: number, word: Buffer): boolean {
    if (i >= this.ntok || this.tokLength(i) !== word.length) return false;
    return this.buf.compare(word, 0, word.length, this.toks[2 * i], this.toks[2 * i + 1]) === 0;
  }

  private tokStartsWith(i: number, prefix: Buffer): boolean {
    if (i >= this.ntok || this.tokLength(i) < prefix.length) return false;
    const s = this.toks[2 * i];
    return this.buf.compare(prefix, 0, prefix.length, s, s + prefix.length) === 0;
  }

  /** A copy of token i if it is a valid key (memcached checks only its length), else null. */
  private key(i: number): Buffer | null {
    return this.tokLength(i) <= this.limits.maxKeyLength ? copy(this.buf, this.toks[2 * i], this.toks[2 * i + 1]) : null;
  }

  private int32(i: number): number | null {
    const r = readInteger(this.buf, this.toks[2 * i], this.toks[2 * i + 1]);
    if (r === null) return null;
    if (typeof r === 'number') return r | 0;
    // strtol: long is 64-bit; memcached then stores it in an int32_t.
    if (r < -(2n ** 63n) || r >= 2n ** 63n) return null;
    return Number(BigInt.asIntN(32, r));
  }

  private uint32(i: number): number | null {
    const r = this.uint64(i);
    // strtoul's unsigned long is 64-bit; memcached then stores it in a uint32_t.
    return r === null ? null : Number(r & 0xffffffffn);
  }

  /** strtoull as memcached's safe_strtoull uses it. */
  private uint64(i: number): bigint | null {
    return strtoull(this.buf, this.toks[2 * i], this.toks[2 * i + 1]);
  }

}

function error(reply: Buffer): TextRequest {
  return { kind: 'error', reply, close: false };
}

/** An error reply, or null when the command asked for noreply (memcached then says nothing). */
function reply(bytes: Buffer, noreply: boolean): TextRequest | null {
  return noreply ? null : error(bytes);
}

function copy(from: Buffer, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  from.copy(out, 0, start, end);
  return out;
}
