// Client-side parser for memcached's binary protocol: bytes in, requests out.
//
//   push(chunk) ──> chunk queue ──> next():
//     header  (24 bytes) ── every bound checked here, from the header alone
//       ├─ bad magic / malformed / key too long ──> error, close: parser goes dead
//       ├─ unknown opcode / value too large ──────> error, then skip the body unbuffered
//       └─ ok ──> body (extras + key, both small) ──> value (straight into its own Buffer)
//
// Frame checks follow memcached 1.6.18's dispatch_bin_command() in order:
//   1. magic != 0x80                       -> close silently (memcached sends nothing)
//   2. keylen > bodylen or key+extras > body -> 0x81 "Unknown command", close
//   3. keylen > maxKeyLength                 -> 0x04 "Invalid arguments", close
//   4. per-opcode extras/key/body shape      -> 0x04, close
//   5. unknown opcode (incl. VERBOSITY)       -> 0x81, body skipped, keep going
//      SASL_LIST_MECHS, SASL_AUTH, SASL_STEP are parsed: the session answers them
//      (0x81 as memcached without -S, unless client SASL is configured); a SASL
//      payload over MAX_SASL_PAYLOAD is treated as an unknown opcode
//   6. value longer than maxItemSize         -> 0x03 "Too large.", body skipped, keep going
// Where memcached reads fewer bytes than bodylen (STAT, TOUCH, GAT*), the rest of the
// body is parsed as the next request, as memcached does.
// Deliberate deviation: for an unknown opcode memcached swallows `bodylen` bytes *after*
// extras and key (eating into the next request); we skip exactly the frame.
//
// Each byte is copied once: into a fresh key or value Buffer that nothing else
// references, so returned Buffers never alias memory the parser reuses.

import type { Limits } from '../limits';
import type { StoreMode } from '../types';
import { HEADER_LENGTH, Opcode, REQUEST_MAGIC, Status } from './opcodes';

/** What every request carries; `quiet` marks the Q opcodes (GETQ, SETQ, ...). */
export type BinaryRequestHead = { opcode: number; opaque: number; quiet: boolean };

export type BinaryRequest = BinaryRequestHead &
  (
    | /** GET/GETQ/GETK/GETKQ, and GAT/GATQ/GATK/GATKQ when `touch` (the new exptime) is set. */
      { kind: 'get'; key: Buffer; withKey: boolean; touch?: number }
    | /** SET/ADD/REPLACE with a CAS in the header are CAS operations in memcached: mode 'cas'.
          APPEND/PREPEND keep their mode and `cas` (memcached checks it too). */
      { kind: 'store'; mode: StoreMode; key: Buffer; flags: number; exptime: number; value: Buffer; cas: bigint }
    | { kind: 'delete'; key: Buffer; cas: bigint }
    | /** exptime ARITH_DO_NOT_CREATE (0xffffffff): do not create the key when it is missing. */
      { kind: 'arith'; op: 'incr' | 'decr'; key: Buffer; delta: bigint; initial: bigint; exptime: number }
    | { kind: 'touch'; key: Buffer; exptime: number }
    | { kind: 'flush'; delay: number }
    | { kind: 'noop' }
    | { kind: 'version' }
    | /** group '' = all; the key's bytes as latin1. */
      { kind: 'stat'; group: string }
    | { kind: 'quit' }
    | { kind: 'sasl_list' }
    | /** SASL_AUTH (step false) or SASL_STEP: the mechanism name is the key, its data the value. */
      { kind: 'sasl'; step: boolean; mech: Buffer; payload: Buffer }
    | /** The parser answered on its own. `close`: send the error, then close (the parser is
          dead and ignores further input). `silent`: close without sending anything (bad magic).
          `dropStale`: a SET too large; memcached also drops what this key held. */
      { kind: 'error'; status: number; close: boolean; silent?: boolean; dropStale?: Buffer }
  );

export type BinaryRequestOf<K extends BinaryRequest['kind']> = Extract<BinaryRequest, { kind: K }>;

/** The value of requests that carry none: shared, never written to. */
const EMPTY = Buffer.alloc(0);

/** A SASL PLAIN message is two names and a password: anything longer is not one. */
export const MAX_SASL_PAYLOAD = 1024;

/** The longest extras of any request that gets past the header checks (INCR/DECR). */
const MAX_EXTRAS = 20;

interface Header {
  opcode: number;
  keylen: number;
  extlen: number;
  bodylen: number;
  opaque: number;
  cas: bigint;
}

type State = 'header' | 'body' | 'value' | 'skip' | 'dead';

const QUIET = new Set<number>([
  Opcode.GetQ, Opcode.GetKQ, Opcode.SetQ, Opcode.AddQ, Opcode.ReplaceQ, Opcode.DeleteQ, Opcode.IncrementQ,
  Opcode.DecrementQ, Opcode.QuitQ, Opcode.FlushQ, Opcode.AppendQ, Opcode.PrependQ, Opcode.GatQ, Opcode.GatKQ,
]);

/** Whether memcached accepts the frame's extras/key/body lengths for this opcode (unknown opcodes: true). */
function wellFormed(h: Header): boolean {
  const { extlen: e, keylen: k, bodylen: b } = h;
  switch (h.opcode) {
    case Opcode.Version:
    case Opcode.Noop:
    case Opcode.Quit:
    case Opcode.QuitQ:
    case Opcode.SaslListMechs:
      return e === 0 && k === 0 && b === 0;
    case Opcode.Flush:
    case Opcode.FlushQ:
      return k === 0 && b === e && (e === 0 || e === 4);
    case Opcode.Set:
    case Opcode.SetQ:
    case Opcode.Add:
    case Opcode.AddQ:
    case Opcode.Replace:
    case Opcode.ReplaceQ:
      return e === 8 && k > 0 && b >= k + 8;
    case Opcode.Get:
    case Opcode.GetQ:
    case Opcode.GetK:
    case Opcode.GetKQ:
    case Opcode.Delete:
    case Opcode.DeleteQ:
      return e === 0 && k > 0 && b === k;
    case Opcode.Increment:
    case Opcode.IncrementQ:
    case Opcode.Decrement:
    case Opcode.DecrementQ:
      return e === 20 && k > 0 && b === k + 20;
    case Opcode.Append:
    case Opcode.AppendQ:
    case Opcode.Prepend:
    case Opcode.PrependQ:
    case Opcode.SaslAuth:
    case Opcode.SaslStep:
      return e === 0 && k > 0;
    case Opcode.Stat:
      return e === 0;
    case Opcode.Touch:
    case Opcode.Gat:
    case Opcode.GatQ:
    case Opcode.GatK:
    case Opcode.GatKQ:
      return e === 4 && k > 0;
    default:
      return true;
  }
}

/** Bytes of value that follow extras and key for opcodes that carry one, else null. */
function valueLength(h: Header): number | null {
  switch (h.opcode) {
    case Opcode.Set:
    case Opcode.SetQ:
    case Opcode.Add:
    case Opcode.AddQ:
    case Opcode.Replace:
    case Opcode.ReplaceQ:
    case Opcode.Append:
    case Opcode.AppendQ:
    case Opcode.Prepend:
    case Opcode.PrependQ:
    case Opcode.SaslAuth:
    case Opcode.SaslStep:
      return h.bodylen - h.extlen - h.keylen;
    default:
      return null;
  }
}

function isKnown(opcode: number): boolean {
  return (opcode >= Opcode.Get && opcode <= Opcode.GatQ && opcode !== Opcode.Verbosity) ||
    (opcode >= Opcode.SaslListMechs && opcode <= Opcode.GatKQ);
}

function isSasl(opcode: number): boolean {
  return opcode === Opcode.SaslAuth || opcode === Opcode.SaslStep;
}

export class BinaryParser {
  private readonly limits: Limits;
  /** Pushed chunks not yet consumed; `offset` is the read position in chunks[0]. */
  private readonly chunks: Buffer[] = [];
  private offset = 0;
  private queued = 0;
  private state: State = 'header';
  private readonly scratch = Buffer.alloc(HEADER_LENGTH + MAX_EXTRAS);
  // The frame being read (states body and value).
  private header: Header = { opcode: 0, keylen: 0, extlen: 0, bodylen: 0, opaque: 0, cas: 0n };
  private head: BinaryRequestHead = { opcode: 0, opaque: 0, quiet: false };
  private readonly extras = Buffer.alloc(MAX_EXTRAS);
  private key: Buffer = Buffer.alloc(0);
  private value: Buffer = Buffer.alloc(0);
  private filled = 0;
  /** Body bytes still to discard (state skip); may exceed any buffer size. */
  private skipLeft = 0;
  /** The frame's value is over the item limit: read its key, then skip the value. */
  private tooLarge = false;

  constructor(limits: Limits) {
    this.limits = limits;
  }

  /** Bytes held: queued input plus the part of a value already assembled. */
  get buffered(): number {
    return this.queued + (this.state === 'value' ? this.filled : 0);
  }

  /** Keeps a reference to `chunk` until it is consumed: the caller must not reuse it. */
  push(chunk: Buffer): void {
    if (this.state === 'dead' || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.queued += chunk.length;
  }

  /** The next request, or null when more bytes are needed (or the parser is dead). Never throws. */
  next(): BinaryRequest | null {
    for (;;) {
      switch (this.state) {
        case 'dead':
          this.drop(this.queued);
          return null;
        case 'skip': {
          const n = Math.min(this.queued, this.skipLeft);
          this.drop(n);
          this.skipLeft -= n;
          if (this.skipLeft > 0) return null;
          this.state = 'header';
          break;
        }
        case 'header': {
          if (this.queued < HEADER_LENGTH) return null;
          const error = this.readHeader();
          if (error) return error;
          break;
        }
        case 'body': {
          const h = this.header;
          if (this.queued < h.extlen + h.keylen) return null;
          this.take(this.extras, h.extlen);
          this.key = Buffer.allocUnsafe(h.keylen);
          this.take(this.key, h.keylen);
          if (this.tooLarge) {
            const refused = this.skipBody(this.head, Status.TooLarge, h.bodylen - h.extlen - h.keylen);
            return { ...refused, dropStale: this.key };
          }
          const vlen = valueLength(h);
          if (vlen === null || vlen === 0) {
            this.value = EMPTY;
            this.state = 'header';
            return this.request();
          }
          this.value = Buffer.allocUnsafe(vlen);
          this.filled = 0;
          this.state = 'value';
          break;
        }
        case 'value': {
          const n = Math.min(this.queued, this.value.length - this.filled);
          this.take(this.value, n, this.filled);
          this.filled += n;
          if (this.filled < this.value.length) return null;
          this.state = 'header';
          return this.request();
        }
      }
    }
  }

  /** Parses and checks a header; returns an error to answer, or null with the state advanced. */
  private readHeader(): BinaryRequest | null {
    const [buf, at] = this.peek(HEADER_LENGTH);
    const h: Header = {
      opcode: buf[at + 1],
      keylen: buf.readUInt16BE(at + 2),
      extlen: buf[at + 4],
      bodylen: buf.readUInt32BE(at + 8),
      opaque: buf.readUInt32BE(at + 12),
      // Most requests carry no CAS: skip the BigInt allocation for them.
      cas: buf.readUInt32BE(at + 16) === 0 && buf.readUInt32BE(at + 20) === 0 ? 0n : buf.readBigUInt64BE(at + 16),
    };
    const magic = buf[at];
    this.drop(HEADER_LENGTH);
    const head = { opcode: h.opcode, opaque: h.opaque, quiet: QUIET.has(h.opcode) };

    if (magic !== REQUEST_MAGIC) return this.fail(head, 0, true);
    if (h.keylen + h.extlen > h.bodylen) return this.fail(head, Status.UnknownCommand);
    if (h.keylen > this.limits.maxKeyLength || !wellFormed(h)) return this.fail(head, Status.InvalidArguments);
    if (!isKnown(h.opcode)) return this.skipBody(head, Status.UnknownCommand, h.bodylen);
    const vlen = valueLength(h);
    if (isSasl(h.opcode) && vlen !== null && vlen > MAX_SASL_PAYLOAD) return this.skipBody(head, Status.UnknownCommand, h.bodylen);
    // memcached reads a SET's key before it refuses the value (the key's old item is dropped,
    // see 'body'); every other opcode's body is skipped whole.
    this.tooLarge = vlen !== null && vlen > this.limits.maxItemSize;
    if (this.tooLarge && h.opcode !== Opcode.Set) return this.skipBody(head, Status.TooLarge, h.bodylen);

    this.header = h;
    this.head = head;
    this.state = 'body';
    return null;
  }

  private fail(head: BinaryRequestHead, status: number, silent = false): BinaryRequest {
    this.state = 'dead';
    this.drop(this.queued);
    return silent ? { ...head, kind: 'error', status, close: true, silent } : { ...head, kind: 'error', status, close: true };
  }

  private skipBody(head: BinaryRequestHead, status: number, bodylen: number): BinaryRequestOf<'error'> {
    this.skipLeft = bodylen;
    this.state = 'skip';
    return { ...head, kind: 'error', status, close: false };
  }

  /** Builds the request for the frame whose extras, key and value are now read. */
  private request(): BinaryRequest {
    const h = this.header;
    const { opcode, opaque, quiet } = this.head;
    const x = this.extras;
    const key = this.key;
    switch (h.opcode) {
      case Opcode.Get:
      case Opcode.GetQ:
        return { opcode, opaque, quiet, kind: 'get', key, withKey: false, touch: undefined };
      case Opcode.GetK:
      case Opcode.GetKQ:
        return { opcode, opaque, quiet, kind: 'get', key, withKey: true, touch: undefined };
      case Opcode.Gat:
      case Opcode.GatQ:
        return { opcode, opaque, quiet, kind: 'get', key, withKey: false, touch: x.readUInt32BE(0) };
      case Opcode.GatK:
      case Opcode.GatKQ:
        return { opcode, opaque, quiet, kind: 'get', key, withKey: true, touch: x.readUInt32BE(0) };
      case Opcode.Touch:
        return { opcode, opaque, quiet, kind: 'touch', key, exptime: x.readUInt32BE(0) };
      case Opcode.Set:
      case Opcode.SetQ:
      case Opcode.Add:
      case Opcode.AddQ:
      case Opcode.Replace:
      case Opcode.ReplaceQ:
        return {
          opcode, opaque, quiet, kind: 'store', mode: h.cas !== 0n ? 'cas' : storeMode(h.opcode), key,
          flags: x.readUInt32BE(0), exptime: x.readUInt32BE(4), value: this.value, cas: h.cas,
        };
      case Opcode.Append:
      case Opcode.AppendQ:
      case Opcode.Prepend:
      case Opcode.PrependQ:
        return { opcode, opaque, quiet, kind: 'store', mode: storeMode(h.opcode), key, flags: 0, exptime: 0, value: this.value, cas: h.cas };
      case Opcode.Delete:
      case Opcode.DeleteQ:
        return { opcode, opaque, quiet, kind: 'delete', key, cas: h.cas };
      case Opcode.Increment:
      case Opcode.IncrementQ:
      case Opcode.Decrement:
      case Opcode.DecrementQ:
        return {
          opcode, opaque, quiet, kind: 'arith', op: h.opcode === Opcode.Increment || h.opcode === Opcode.IncrementQ ? 'incr' : 'decr',
          key, delta: x.readBigUInt64BE(0), initial: x.readBigUInt64BE(8), exptime: x.readUInt32BE(16),
        };
      case Opcode.Flush:
      case Opcode.FlushQ:
        return { opcode, opaque, quiet, kind: 'flush', delay: h.extlen === 4 ? x.readUInt32BE(0) : 0 };
      case Opcode.Stat:
        return { opcode, opaque, quiet, kind: 'stat', group: key.toString('latin1') };
      case Opcode.Version:
        return { opcode, opaque, quiet, kind: 'version' };
      case Opcode.Quit:
      case Opcode.QuitQ:
        return { opcode, opaque, quiet, kind: 'quit' };
      case Opcode.SaslListMechs:
        return { opcode, opaque, quiet, kind: 'sasl_list' };
      case Opcode.SaslAuth:
      case Opcode.SaslStep:
        return { opcode, opaque, quiet, kind: 'sasl', step: h.opcode === Opcode.SaslStep, mech: key, payload: this.value };
      default: // Noop: readHeader() lets no other opcode through.
        return { opcode, opaque, quiet, kind: 'noop' };
    }
  }

  /** The first n (<= queued, <= scratch) bytes, contiguous, without consuming them. */
  private peek(n: number): [Buffer, number] {
    const first = this.chunks[0];
    if (first.length - this.offset >= n) return [first, this.offset];
    this.copy(this.scratch, 0, n);
    return [this.scratch, 0];
  }

  /** Consumes n bytes into dst at dstOffset. */
  private take(dst: Buffer, n: number, dstOffset = 0): void {
    this.copy(dst, dstOffset, n);
    this.drop(n);
  }

  private copy(dst: Buffer, dstOffset: number, n: number): void {
    let chunk = 0;
    let from = this.offset;
    let done = 0;
    while (done < n) {
      const c = this.chunks[chunk];
      const m = Math.min(n - done, c.length - from);
      c.copy(dst, dstOffset + done, from, from + m);
      done += m;
      chunk++;
      from = 0;
    }
  }

  private drop(n: number): void {
    this.queued -= n;
    while (n > 0) {
      const c = this.chunks[0];
      const left = c.length - this.offset;
      if (n < left) {
        this.offset += n;
        return;
      }
      n -= left;
      this.chunks.shift();
      this.offset = 0;
    }
  }
}

function storeMode(opcode: number): StoreMode {
  switch (opcode) {
    case Opcode.Add:
    case Opcode.AddQ:
      return 'add';
    case Opcode.Replace:
    case Opcode.ReplaceQ:
      return 'replace';
    case Opcode.Append:
    case Opcode.AppendQ:
      return 'append';
    case Opcode.Prepend:
    case Opcode.PrependQ:
      return 'prepend';
    default:
      return 'set';
  }
}
