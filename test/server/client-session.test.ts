// ClientSession over a real loopback socket with a scripted protocol: each
// line "name" is a request whose reply the test gives by hand. Proves order,
// noreply gaps, one write per tick, back-pressure on requests in flight and on
// unread output, and close after the replies before it.

import net from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { DEFAULT_LIMITS, type Limits } from '../../src/protocol/limits';
import { ClientSession, CLOSE, type Protocol, type StartRequest } from '../../src/server/client-session';
import type { SlotResult } from '../../src/server/ordered-replies';

type Reply = (r: SlotResult) => void;

/** Requests are lines; started ones wait in `started` for the test to answer them. */
class ScriptedProtocol implements Protocol {
  private buf = '';
  readonly started = new Map<string, Reply>();
  /** Lines answered at once with their own text, e.g. "echo:x". */
  push(chunk: Buffer): void {
    this.buf += chunk.toString('latin1');
  }
  next(): StartRequest | null {
    const nl = this.buf.indexOf('\n');
    if (nl < 0) return null;
    const name = this.buf.slice(0, nl);
    this.buf = this.buf.slice(nl + 1);
    return (reply) => {
      if (name.startsWith('echo:')) reply(Buffer.from(name.slice(5) + '\n'));
      else this.started.set(name, reply);
    };
  }
}

interface Setup {
  client: net.Socket;
  protocol: ScriptedProtocol;
  session: ClientSession;
  serverSocket: net.Socket;
  received(): string;
  writes(): number;
}

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

async function setup(limits: Partial<Limits> = {}): Promise<Setup> {
  const protocol = new ScriptedProtocol();
  let session!: ClientSession;
  let serverSocket!: net.Socket;
  let writes = 0;
  const server = net.createServer((s) => {
    serverSocket = s;
    const write = s.write.bind(s) as (b: Buffer) => boolean;
    s.write = ((b: Buffer) => {
      writes++;
      return write(b);
    }) as typeof s.write;
    session = new ClientSession(s, { ...DEFAULT_LIMITS, ...limits }, () => protocol, {
      bytesIn: () => {},
      bytesOut: () => {},
      closed: () => {},
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  let got = '';
  client.on('data', (d: Buffer) => (got += d.toString('latin1')));
  client.on('error', () => {});
  await new Promise<void>((r) => client.once('connect', () => r()));
  cleanup.push(() => {
    client.destroy();
    server.close();
    serverSocket?.destroy();
  });
  await until(() => session !== undefined);
  return { client, protocol, session, serverSocket, received: () => got, writes: () => writes };
}

async function until(check: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('ClientSession', () => {
  test('replies leave in request order; a noreply slot shifts nothing', async () => {
    const s = await setup();
    s.client.write('a\nb\nc\nd\n');
    await until(() => s.protocol.started.size === 4);
    s.protocol.started.get('d')!(Buffer.from('D\n'));
    s.protocol.started.get('b')!(null); // noreply
    s.protocol.started.get('c')!(Buffer.from('C\n'));
    await new Promise((r) => setTimeout(r, 30));
    expect(s.received()).toBe('');
    s.protocol.started.get('a')!(Buffer.from('A\n'));
    await until(() => s.received() === 'A\nC\nD\n');
    expect(s.session.inFlight).toBe(0);
  });

  test('replies released in one tick go out in one write', async () => {
    const s = await setup();
    s.client.write('a\nb\nc\n');
    await until(() => s.protocol.started.size === 3);
    const before = s.writes();
    s.protocol.started.get('a')!(Buffer.from('A\n'));
    s.protocol.started.get('b')!([Buffer.from('B1\n'), Buffer.from('B2\n')]);
    s.protocol.started.get('c')!(Buffer.from('C\n'));
    await until(() => s.received() === 'A\nB1\nB2\nC\n');
    expect(s.writes() - before).toBe(1);
  });

  test('requests answered at once in one chunk: one write', async () => {
    const s = await setup();
    s.client.write('echo:1\necho:2\necho:3\n');
    await until(() => s.received() === '1\n2\n3\n');
    expect(s.writes()).toBe(1);
  });

  test('stops starting requests at maxInflightPerClient, resumes as replies leave', async () => {
    const s = await setup({ maxInflightPerClient: 2 });
    s.client.write('a\nb\nc\nd\n');
    await until(() => s.protocol.started.size === 2);
    await new Promise((r) => setTimeout(r, 30));
    expect([...s.protocol.started.keys()]).toEqual(['a', 'b']);
    s.protocol.started.get('a')!(Buffer.from('A\n'));
    await until(() => s.protocol.started.size === 3);
    expect(s.protocol.started.has('c')).toBe(true);
    s.protocol.started.get('b')!(Buffer.from('B\n'));
    s.protocol.started.get('c')!(Buffer.from('C\n'));
    await until(() => s.protocol.started.size === 4);
    s.protocol.started.get('d')!(Buffer.from('D\n'));
    await until(() => s.received() === 'A\nB\nC\nD\n');
  });

  test('over maxClientOutputBytes unread, no more requests start until the client reads', async () => {
    const s = await setup({ maxClientOutputBytes: 64 * 1024 });
    s.client.pause(); // the client reads nothing
    const big = Buffer.alloc(32 * 1024 * 1024, 'x'); // more than the kernel's socket buffers hold
    s.client.write('a\n' + Array.from({ length: 50 }, (_, i) => `echo:${i}\n`).join(''));
    await until(() => s.protocol.started.size === 1);
    s.protocol.started.get('a')!(big);
    await new Promise((r) => setTimeout(r, 50));
    // Nothing after the 32 MiB reply was started (the echoes would have answered at once).
    expect(s.session.inFlight).toBe(0);
    expect(s.serverSocket.writableLength).toBeGreaterThan(64 * 1024);
    s.client.resume();
    await until(() => s.received().endsWith('49\n'), 25_000); // 32 MiB: seconds on a loaded machine
    expect(s.received().length).toBe(big.length + Array.from({ length: 50 }, (_, i) => `${i}\n`).join('').length);
  });

  test('CLOSE ends the connection after the replies before it', async () => {
    const s = await setup();
    const closed = new Promise<void>((r) => s.client.once('close', () => r()));
    s.client.write('a\nb\n');
    await until(() => s.protocol.started.size === 2);
    s.protocol.started.get('b')!(CLOSE);
    s.protocol.started.get('a')!(Buffer.from('A\n'));
    await closed;
    expect(s.received()).toBe('A\n');
  });
});
