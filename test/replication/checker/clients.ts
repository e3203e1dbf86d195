// The checker's two clients: a batch of ops goes out in one write (pipelined),
// text with noreply or binary with quiet opcodes, and each op's answer comes
// back in the model's words. A closed connection or a SERVER_ERROR leaves the
// ops without an answer `unknown`.

import net from 'node:net';
import { binaryPacket, parsePackets, type BinaryPacket } from '../../helpers/wire';
import type { Op, Result } from './model';

export type Protocol = 'text' | 'binary';

export interface BatchClient {
  readonly protocol: Protocol;
  /** Sends the ops in one write; resolves with one result per op (unknown where the answer was lost). */
  run(ops: Op[]): Promise<Result[]>;
  close(): void;
}

const UNKNOWN: Result = { kind: 'unknown' };
const SILENT: Result = { kind: 'silent' };

/** A socket that buffers what it reads and says when it closed. */
class Wire {
  buf: Buffer = Buffer.alloc(0);
  closed = false;
  private wake: (() => void) | null = null;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new Wire(s)));
      s.setNoDelay(true);
      s.once('error', reject);
    });
  }

  /** Waits for more bytes or the close; false once closed with nothing new, or after `timeoutMs`. */
  more(deadline: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve(true);
      };
    });
  }

  take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
}

/** How long a batch may wait for its answers (a backend hang is bounded by the proxy's timeouts). */
const BATCH_TIMEOUT_MS = 20_000;

// ---------------------------------------------------------------------------
// text
// ---------------------------------------------------------------------------

function textRequest(op: Op): string {
  const nr = op.quiet ? ' noreply' : '';
  const data = (cmd: string, extra = ''): string =>
    `${cmd} ${op.key} ${op.flags} ${op.exptime} ${Buffer.byteLength(op.value, 'latin1')}${extra}${nr}\r\n${op.value}\r\n`;
  switch (op.kind) {
    case 'get':
      return `gets ${op.key}\r\n`;
    case 'set':
    case 'add':
    case 'replace':
    case 'append':
    case 'prepend':
      return data(op.kind);
    case 'cas':
      return data('cas', ` ${op.cas}`);
    case 'delete':
      return `delete ${op.key}${nr}\r\n`;
    case 'touch':
      return `touch ${op.key} ${op.exptime}${nr}\r\n`;
    case 'incr':
    case 'decr':
      return `${op.kind} ${op.key} ${op.delta}${nr}\r\n`;
  }
}

function textWord(op: Op, line: string): Result {
  switch (line) {
    case 'STORED':
      return { kind: 'stored' };
    case 'DELETED':
      return { kind: 'deleted' };
    case 'TOUCHED':
      return { kind: 'touched' };
    case 'NOT_FOUND':
      return { kind: 'not_found' };
    case 'EXISTS':
      return { kind: 'exists' };
    case 'NOT_STORED':
      return { kind: 'refused', op: op.kind === 'add' ? 'add' : op.kind === 'replace' ? 'replace' : 'append' };
  }
  if (/^\d+$/.test(line)) return { kind: 'number', n: BigInt(line) };
  if (line.startsWith('SERVER_ERROR')) return UNKNOWN;
  throw new Error(`unexpected reply ${JSON.stringify(line)} to ${op.kind} ${op.key}`);
}

export async function textClient(port: number): Promise<BatchClient> {
  const wire = await Wire.open(port);
  return {
    protocol: 'text',
    close: () => wire.socket.destroy(),
    async run(ops) {
      // A trailing `version` is answered only after every noreply op before it has run (replies
      // leave in request order): so the batch ends when all of it has taken effect, as with memcached.
      wire.socket.write(ops.map(textRequest).join('') + 'version\r\n', 'latin1');
      const results: Result[] = [];
      const deadline = Date.now() + BATCH_TIMEOUT_MS;
      let closed = false;
      for (const op of ops) {
        if (op.quiet && op.kind !== 'get') {
          results.push(SILENT);
          continue;
        }
        const r = await readText(wire, op, deadline);
        if (r === null) {
          closed = true; // this and every later op unknown
          break;
        }
        results.push(r);
      }
      if (!closed) closed = !(await readVersion(wire, deadline));
      // Closed: a silent op after the last answered one may or may not have run.
      let lastAnswered = results.length - 1;
      while (lastAnswered >= 0 && results[lastAnswered].kind === 'silent') lastAnswered--;
      if (closed) for (let i = lastAnswered + 1; i < results.length; i++) results[i] = UNKNOWN;
      while (results.length < ops.length) results.push(UNKNOWN);
      return results;
    },
  };
}

/** The batch's closing VERSION line; false if the connection closed first. */
async function readVersion(wire: Wire, deadline: number): Promise<boolean> {
  for (;;) {
    const s = wire.buf.toString('latin1');
    const eol = s.indexOf('\r\n');
    if (eol >= 0) {
      const line = s.slice(0, eol);
      if (!line.startsWith('VERSION ')) throw new Error(`unexpected reply ${JSON.stringify(line)} to version`);
      wire.take(eol + 2);
      return true;
    }
    if (!(await wire.more(deadline))) {
      if (wire.closed) return false;
      throw new Error(`no reply to version within ${BATCH_TIMEOUT_MS} ms`);
    }
  }
}

/** One op's reply; null if the connection closed first. */
async function readText(wire: Wire, op: Op, deadline: number): Promise<Result | null> {
  for (;;) {
    const s = wire.buf.toString('latin1');
    const eol = s.indexOf('\r\n');
    if (eol >= 0) {
      const line = s.slice(0, eol);
      if (op.kind !== 'get') {
        wire.take(eol + 2);
        return textWord(op, line);
      }
      if (line === 'END') {
        wire.take(eol + 2);
        return { kind: 'miss' };
      }
      const m = /^VALUE \S+ (\d+) (\d+) (\d+)$/.exec(line);
      if (!m) {
        if (line.startsWith('SERVER_ERROR')) {
          wire.take(eol + 2);
          return UNKNOWN;
        }
        throw new Error(`unexpected reply ${JSON.stringify(line)} to get ${op.key}`);
      }
      const end = eol + 2 + Number(m[2]) + 2 + 5; // value, CRLF, END CRLF
      if (wire.buf.length >= end) {
        const value = wire.buf.subarray(eol + 2, eol + 2 + Number(m[2])).toString('latin1');
        if (wire.buf.subarray(end - 5, end).toString('latin1') !== 'END\r\n') throw new Error(`get ${op.key}: no END`);
        wire.take(end);
        return { kind: 'value', value, flags: Number(m[1]), cas: BigInt(m[3]) };
      }
    }
    if (!(await wire.more(deadline))) {
      if (wire.closed) return null;
      throw new Error(`no reply to ${op.kind} ${op.key} within ${BATCH_TIMEOUT_MS} ms`);
    }
  }
}

// ---------------------------------------------------------------------------
// binary
// ---------------------------------------------------------------------------

const OPCODE: Record<Op['kind'], [normal: number, quiet: number]> = {
  get: [0x00, 0x09],
  set: [0x01, 0x11],
  add: [0x02, 0x12],
  replace: [0x03, 0x13],
  delete: [0x04, 0x14],
  incr: [0x05, 0x15],
  decr: [0x06, 0x16],
  append: [0x0e, 0x19],
  prepend: [0x0f, 0x1a],
  cas: [0x01, 0x11], // SET with a CAS
  touch: [0x1c, 0x1c], // TOUCH has no quiet form
};
const NOOP = 0x0a;

function binaryRequest(op: Op, opaque: number): Buffer {
  const key = Buffer.from(op.key, 'latin1');
  let extras = Buffer.alloc(0);
  let value = Buffer.alloc(0);
  switch (op.kind) {
    case 'set':
    case 'add':
    case 'replace':
    case 'cas':
      extras = Buffer.alloc(8);
      extras.writeUInt32BE(op.flags >>> 0, 0);
      extras.writeUInt32BE(op.exptime, 4);
      value = Buffer.from(op.value, 'latin1');
      break;
    case 'append':
    case 'prepend':
      value = Buffer.from(op.value, 'latin1');
      break;
    case 'incr':
    case 'decr':
      extras = Buffer.alloc(20);
      extras.writeBigUInt64BE(op.delta, 0);
      extras.writeUInt32BE(0xffffffff, 16); // never create: as text incr
      break;
    case 'touch':
      extras = Buffer.alloc(4);
      extras.writeUInt32BE(op.exptime, 0);
      break;
  }
  return binaryPacket({
    opcode: OPCODE[op.kind][op.quiet && op.kind !== 'get' ? 1 : 0],
    key,
    extras,
    value,
    opaque,
    cas: op.kind === 'cas' ? op.cas : 0n,
  });
}

function binaryResult(op: Op, { status, extras, value, cas }: BinaryPacket): Result {
  if (status === 0) {
    switch (op.kind) {
      case 'get':
        return { kind: 'value', value: value.toString('latin1'), flags: extras.readUInt32BE(0), cas };
      case 'delete':
        return { kind: 'deleted' };
      case 'touch':
        return { kind: 'touched' };
      case 'incr':
      case 'decr':
        return { kind: 'number', n: value.readBigUInt64BE(0) };
      default:
        return { kind: 'stored' };
    }
  }
  switch (status) {
    case 0x0001:
      if (op.kind === 'get') return { kind: 'miss' };
      return op.kind === 'replace' ? { kind: 'refused', op: 'replace' } : { kind: 'not_found' };
    case 0x0002:
      return op.kind === 'add' ? { kind: 'refused', op: 'add' } : { kind: 'exists' };
    case 0x0005:
      return { kind: 'refused', op: 'append' };
    default:
      return UNKNOWN; // 0x0086 and the like: the proxy could not do it
  }
}

export async function binaryClient(port: number): Promise<BatchClient> {
  const wire = await Wire.open(port);
  return {
    protocol: 'binary',
    close: () => wire.socket.destroy(),
    async run(ops) {
      // The NOOP's opaque is ops.length: once it answers, every quiet op before it has.
      wire.socket.write(Buffer.concat([...ops.map((op, i) => binaryRequest(op, i)), binaryPacket({ opcode: NOOP, opaque: ops.length })]));
      const answered = new Map<number, Result>();
      const deadline = Date.now() + BATCH_TIMEOUT_MS;
      let done = false;
      while (!done) {
        const { packets, rest } = parsePackets(wire.buf);
        wire.buf = rest;
        for (const packet of packets) {
          if (packet.opaque === ops.length) {
            done = true;
            break;
          }
          const op = ops[packet.opaque];
          if (op === undefined) throw new Error(`reply with unknown opaque ${packet.opaque}`);
          answered.set(packet.opaque, binaryResult(op, packet));
        }
        if (done) break;
        if (!(await wire.more(deadline))) {
          if (wire.closed) break;
          throw new Error(`no NOOP reply within ${BATCH_TIMEOUT_MS} ms`);
        }
      }
      const lastAnswered = Math.max(-1, ...answered.keys());
      return ops.map((op, i) => {
        const r = answered.get(i);
        if (r !== undefined) return r;
        // Quiet and unanswered: it succeeded, if the NOOP (or a later op) answered after it.
        return op.quiet && op.kind !== 'get' && (done || i < lastAnswered) ? SILENT : UNKNOWN;
      });
    },
  };
}

export function connect(protocol: Protocol, port: number): Promise<BatchClient> {
  return protocol === 'text' ? textClient(port) : binaryClient(port);
}
