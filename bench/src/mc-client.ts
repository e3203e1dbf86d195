// A minimal memcached client over one raw socket, text or binary, for the session load.
// Requests may be pipelined; replies are matched to a FIFO of requests in flight. Only
// what the load needs: add, get, set, delete, each resolving to a coarse status.

import net from 'node:net';

export type Protocol = 'text' | 'binary';
export type Status = 'ok' | 'miss' | 'not_stored' | 'error';

const CRLF = Buffer.from('\r\n');

const enum Op {
  Get = 0x00,
  Set = 0x01,
  Add = 0x02,
  Delete = 0x04,
}

export class McClient {
  private readonly pending: Array<(s: Status) => void> = [];
  private buf: Buffer = Buffer.alloc(0);
  private closed = false;

  private constructor(
    private readonly socket: net.Socket,
    readonly protocol: Protocol,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => this.fail());
    socket.on('close', () => this.fail());
  }

  static connect(port: number, host: string, protocol: Protocol): Promise<McClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host);
      socket.once('connect', () => resolve(new McClient(socket, protocol)));
      socket.once('error', reject);
    });
  }

  get(key: string): Promise<Status> {
    return this.protocol === 'text'
      ? this.send(Buffer.from(`get ${key}\r\n`))
      : this.send(binaryRequest(Op.Get, key, null, null));
  }

  set(key: string, value: Buffer, exptime: number): Promise<Status> {
    return this.store('set', Op.Set, key, value, exptime);
  }

  add(key: string, value: Buffer, exptime: number): Promise<Status> {
    return this.store('add', Op.Add, key, value, exptime);
  }

  delete(key: string): Promise<Status> {
    return this.protocol === 'text'
      ? this.send(Buffer.from(`delete ${key}\r\n`))
      : this.send(binaryRequest(Op.Delete, key, null, null));
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private store(verb: string, op: Op, key: string, value: Buffer, exptime: number): Promise<Status> {
    if (this.protocol === 'binary') {
      const extras = Buffer.alloc(8);
      extras.writeUInt32BE(exptime, 4);
      return this.send(binaryRequest(op, key, extras, value));
    }
    return this.send(Buffer.concat([Buffer.from(`${verb} ${key} 0 ${exptime} ${value.length}\r\n`), value, CRLF]));
  }

  private send(bytes: Buffer): Promise<Status> {
    if (this.closed) return Promise.resolve('error');
    return new Promise((resolve) => {
      this.pending.push(resolve);
      this.socket.write(bytes);
    });
  }

  private fail(): void {
    this.closed = true;
    for (const resolve of this.pending.splice(0)) resolve('error');
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let off = 0;
    for (;;) {
      const r = this.protocol === 'text' ? parseTextReply(this.buf, off) : parseBinaryReply(this.buf, off);
      if (r === null) break;
      off = r.next;
      const resolve = this.pending.shift();
      if (!resolve) {
        // a reply nobody asked for: the stream is out of step, stop trusting it
        this.socket.destroy();
        return;
      }
      resolve(r.status);
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
  }
}

function binaryRequest(op: Op, key: string, extras: Buffer | null, value: Buffer | null): Buffer {
  const keyLen = Buffer.byteLength(key);
  const extLen = extras?.length ?? 0;
  const valLen = value?.length ?? 0;
  const out = Buffer.alloc(24 + extLen + keyLen + valLen);
  out[0] = 0x80;
  out[1] = op;
  out.writeUInt16BE(keyLen, 2);
  out[4] = extLen;
  out.writeUInt32BE(extLen + keyLen + valLen, 8);
  if (extras) extras.copy(out, 24);
  out.write(key, 24 + extLen, 'latin1');
  if (value) value.copy(out, 24 + extLen + keyLen);
  return out;
}

interface Reply {
  status: Status;
  next: number;
}

const TEXT_STATUS: Record<string, Status> = {
  STORED: 'ok',
  DELETED: 'ok',
  NOT_STORED: 'not_stored',
  EXISTS: 'not_stored',
  NOT_FOUND: 'miss',
  END: 'miss',
};

export function parseTextReply(buf: Buffer, off: number): Reply | null {
  const eol = buf.indexOf(CRLF, off);
  if (eol < 0) return null;
  const line = buf.toString('latin1', off, eol);
  if (line.startsWith('VALUE ')) {
    const bytes = Number(line.slice(line.lastIndexOf(' ') + 1));
    const end = eol + 2 + bytes + 2 + 5; // data CRLF "END\r\n"
    return buf.length < end ? null : { status: 'ok', next: end };
  }
  return { status: TEXT_STATUS[line] ?? 'error', next: eol + 2 };
}

export function parseBinaryReply(buf: Buffer, off: number): Reply | null {
  if (buf.length - off < 24) return null;
  const end = off + 24 + buf.readUInt32BE(off + 8);
  if (buf.length < end) return null;
  const code = buf.readUInt16BE(off + 6);
  const status: Status = code === 0 ? 'ok' : code === 1 ? 'miss' : code === 2 || code === 5 ? 'not_stored' : 'error';
  return { status, next: end };
}
