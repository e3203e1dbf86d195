// Client SASL: replicached with clientSasl answers SASL and unauthenticated
// requests byte for byte as a real `memcached -S` does; without it, as a memcached
// without -S does (0x81 "Unknown command"). php-memcached with
// memcached.sess_sasl_username/_password works through it, is refused with a
// wrong password, and fails (as against memcached without -S) when the proxy has
// no client SASL configured.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';
import { readSessions, writeSessions, type PhpReport } from '../helpers/php';
import { startProxy, type ProxyProcess } from '../helpers/proxy';
import { saslPlainPayload, type SaslUser } from '../helpers/sasl';
import { binaryPacket, parsePackets, type BinaryPacket } from '../helpers/wire';
import { configDir } from '../ops/support';
import { pollUntil } from '../helpers/wait';

const USER: SaslUser = { username: 'app', password: 'app-pw-5f1c' };
const WRONG: SaslUser = { ...USER, password: 'not-it' };

let saslMc: MemcachedProcess;
let plainMc: MemcachedProcess;
let withSasl: ProxyProcess;
let withoutSasl: ProxyProcess;

beforeAll(async () => {
  const [s, p, b1, b2] = await Promise.all([startMemcached({ sasl: USER }), startMemcached(), startMemcached(), startMemcached()]);
  saslMc = s;
  plainMc = p;
  [withSasl, withoutSasl] = await Promise.all([
    startProxy({ backends: [b1.address], args: ['--client-sasl-username', USER.username], env: { REPLICACHED_CLIENT_SASL_PASSWORD: USER.password } }),
    startProxy({ backends: [b2.address] }),
  ]);
});

afterAll(async () => {
  await Promise.all([withSasl?.stop(), withoutSasl?.stop()]);
  await stopAllMemcached();
});

const auth = (u: SaslUser, opaque = 0) => binaryPacket({ opcode: 0x21, key: Buffer.from('PLAIN'), value: saslPlainPayload(u), opaque });
const NOOP = binaryPacket({ opcode: 0x0a, opaque: 0xfeed });

/** Sends `bytes` on a new connection; every response packet until the NOOP's (excluded) or the close, and whether it closed. */
function converse(port: number, bytes: Buffer): Promise<{ packets: BinaryPacket[]; closed: boolean; raw: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(bytes));
    let raw = Buffer.alloc(0);
    const finish = (closed: boolean): void => {
      socket.destroy();
      const packets = parsePackets(raw).packets;
      resolve({ packets: packets.filter((p) => !(p.opcode === 0x0a && p.opaque === 0xfeed)), closed, raw });
    };
    socket.setTimeout(10_000, () => reject(new Error(`no end: ${raw.toString('hex')}`)));
    socket.on('data', (d: Buffer) => {
      raw = Buffer.concat([raw, d]);
      if (parsePackets(raw).packets.some((p) => p.opcode === 0x0a && p.opaque === 0xfeed)) finish(false);
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => {});
  });
}

/** The packets as comparable values; VERSION's body is each server's own version. */
function shown(packets: BinaryPacket[]): unknown[] {
  return packets.map((p) => ({
    opcode: p.opcode,
    status: p.status,
    opaque: p.opaque,
    // A CAS is memcached's token for one item's version: present or not, as memcached gives
    // it; its number counts every write the backend took (replicached's own among them).
    cas: p.cas === 0n ? '0' : 'a token',
    extras: p.extras.toString('hex'),
    key: p.key.toString('latin1'),
    value: p.opcode === 0x0b ? '<version>' : p.value.toString('latin1'),
  }));
}

async function same(proxyPort: number, memcachedPort: number, bytes: Buffer): Promise<{ packets: unknown[]; closed: boolean }> {
  const [fromProxy, fromMemcached] = await Promise.all([converse(proxyPort, bytes), converse(memcachedPort, bytes)]);
  const theirs = { packets: shown(fromMemcached.packets), closed: fromMemcached.closed };
  expect({ packets: shown(fromProxy.packets), closed: fromProxy.closed }).toEqual(theirs);
  return theirs;
}

describe('client SASL, as memcached -S answers it', () => {
  test('mechanisms, a wrong then a right password, VERSION before auth, SASL_STEP, then commands', async () => {
    const bytes = Buffer.concat([
      binaryPacket({ opcode: 0x20, opaque: 1 }),
      auth(WRONG, 2),
      binaryPacket({ opcode: 0x0b, opaque: 3 }),
      binaryPacket({ opcode: 0x22, key: Buffer.from('PLAIN'), value: saslPlainPayload(USER), opaque: 4 }),
      auth(USER, 5),
      binaryPacket({ opcode: 0x01, key: Buffer.from('k'), extras: Buffer.from([0, 0, 0, 9, 0, 0, 0, 0]), value: Buffer.from('v'), opaque: 6 }),
      binaryPacket({ opcode: 0x00, key: Buffer.from('k'), opaque: 7 }),
      NOOP,
    ]);
    const r = await same(withSasl.port, saslMc.port, bytes);
    expect(r.closed).toBe(false);
    expect(r.packets.map((p) => (p as { status: number }).status)).toEqual([0, 0x20, 0, 0x20, 0, 0, 0]);
  });

  test('a command before authenticating: "Auth failure." and the connection closes; what was pipelined after it never runs', async () => {
    const k2 = Buffer.from('never-written');
    const bytes = Buffer.concat([
      binaryPacket({ opcode: 0x00, key: Buffer.from('k'), opaque: 1 }),
      binaryPacket({ opcode: 0x01, key: k2, extras: Buffer.alloc(8), value: Buffer.from('x'), opaque: 2 }),
      NOOP,
    ]);
    const r = await same(withSasl.port, saslMc.port, bytes);
    expect(r).toMatchObject({ closed: true, packets: [{ status: 0x20, value: 'Auth failure.' }] });
    const check = await same(withSasl.port, saslMc.port, Buffer.concat([auth(USER), binaryPacket({ opcode: 0x00, key: k2, opaque: 9 }), NOOP]));
    expect(check.packets).toMatchObject([{ status: 0 }, { status: 0x01 }]);
  });

  test('a failed authentication after a good one leaves the client unauthenticated', async () => {
    const bytes = Buffer.concat([auth(USER, 1), auth(WRONG, 2), binaryPacket({ opcode: 0x00, key: Buffer.from('k'), opaque: 3 }), NOOP]);
    const r = await same(withSasl.port, saslMc.port, bytes);
    expect(r).toMatchObject({ closed: true, packets: [{ status: 0 }, { status: 0x20 }, { status: 0x20 }] });
  });

  test('malformed and unknown frames before authenticating', async () => {
    await same(withSasl.port, saslMc.port, Buffer.concat([binaryPacket({ opcode: 0x00, key: Buffer.alloc(251, 0x61) }), NOOP]));
    await same(withSasl.port, saslMc.port, Buffer.concat([binaryPacket({ opcode: 0x50 }), NOOP]));
    await same(withSasl.port, saslMc.port, Buffer.concat([binaryPacket({ opcode: 0x21, value: Buffer.from('x') }), NOOP]));
    await same(withSasl.port, saslMc.port, Buffer.concat([binaryPacket({ magic: 0x81, opcode: 0x00, key: Buffer.from('k') }), NOOP]));
  });

  test('a text-protocol client is read as binary: closed without a reply once 24 bytes (a bad magic) are in', async () => {
    const text = Buffer.from('get session-key-of-some-length\r\n');
    const [fromProxy, fromMemcached] = await Promise.all([converse(withSasl.port, text), converse(saslMc.port, text)]);
    expect(fromMemcached).toMatchObject({ closed: true, raw: Buffer.alloc(0) });
    expect(fromProxy).toMatchObject({ closed: true, raw: Buffer.alloc(0) });
  });
});

describe('client SASL on reload', () => {
  test('a new password applies to authentications from then on; an authenticated connection stays so', async () => {
    const dir = configDir(`clientSasl:\n  username: app\n  password: "first-pw"\n`);
    const b = await startMemcached();
    const p = await startProxy({ backends: [b.address], args: ['--config', dir.file] });
    try {
      const socket = net.connect({ host: '127.0.0.1', port: p.port });
      let raw = Buffer.alloc(0);
      socket.on('data', (d: Buffer) => (raw = Buffer.concat([raw, d])));
      await new Promise((r) => socket.once('connect', r));
      socket.write(auth({ username: 'app', password: 'first-pw' }, 1));
      await pollUntil(() => parsePackets(raw).packets.length === 1, 10_000, 10, 'no reply to SASL_AUTH');
      expect(parsePackets(raw).packets[0].status).toBe(0);

      dir.write(`clientSasl:\n  username: app\n  password: "second-pw"\n`);
      p.child.kill('SIGHUP');
      await pollUntil(
        async () => (await converse(p.port, Buffer.concat([auth({ username: 'app', password: 'second-pw' }), NOOP]))).packets[0]?.status === 0,
        10_000,
        50,
        'the new password was never accepted',
      );
      expect((await converse(p.port, Buffer.concat([auth({ username: 'app', password: 'first-pw' }), NOOP]))).packets[0].status).toBe(0x20);
      socket.write(binaryPacket({ opcode: 0x00, key: Buffer.from('k'), opaque: 2 }));
      await pollUntil(() => parsePackets(raw).packets.length === 2, 10_000, 10, 'no reply to GET');
      expect(parsePackets(raw).packets[1]).toMatchObject({ opaque: 2, status: 0x01 });
      socket.destroy();
    } finally {
      await p.stop();
      dir.remove();
    }
  });
});

describe('without client SASL, as memcached without -S answers it', () => {
  test('SASL_LIST_MECHS, SASL_AUTH and SASL_STEP: "Unknown command", connection kept', async () => {
    const bytes = Buffer.concat([
      binaryPacket({ opcode: 0x20, opaque: 1 }),
      auth(USER, 2),
      binaryPacket({ opcode: 0x22, key: Buffer.from('PLAIN'), value: Buffer.from('x'), opaque: 3 }),
      NOOP,
    ]);
    const r = await same(withoutSasl.port, plainMc.port, bytes);
    expect(r).toMatchObject({ closed: false, packets: [{ status: 0x81 }, { status: 0x81 }, { status: 0x81 }] });
  });
});

describe('php-memcached sessions with memcached.sess_sasl_username/_password', () => {
  const saslIni = (u: SaslUser) => ({ 'memcached.sess_sasl_username': u.username, 'memcached.sess_sasl_password': u.password });
  const problemsOf = (r: PhpReport): string => r.problems.join('\n');

  test('through the proxy with client SASL: sessions written and read back', async () => {
    const written = await writeSessions('memcached-binary', { port: withSasl.port, prefix: 'php-sasl-', count: 10, ini: saslIni(USER) });
    expect(written.problems).toEqual([]);
    const read = await readSessions('memcached-binary', { port: withSasl.port, prefix: 'php-sasl-', count: 10, ini: saslIni(USER) });
    expect(read.problems).toEqual([]);
    expect(read.ok).toBe(10);
  });

  test('the php.ini lines replicached prints at start, used as printed (with the password filled in), work', async () => {
    // The hint after "replicached listening on ...": "  name = value" lines, values quoted as in a php.ini.
    const hint = withSasl.output().slice(withSasl.output().indexOf('replicached listening on'));
    const lines = [...hint.matchAll(/^ {2}([a-z_.]+) = (.+)$/gm)].map((m) => [m[1], m[2]] as const);
    const ini = Object.fromEntries(lines.map(([name, value]) => [name, value.replace('<the clientSasl password>', USER.password)]));
    expect(ini).toEqual({
      'session.save_handler': 'memcached',
      'session.save_path': `"127.0.0.1:${withSasl.port}"`,
      'memcached.sess_binary_protocol': 'On',
      'memcached.sess_sasl_username': `"${USER.username}"`,
      'memcached.sess_sasl_password': `"${USER.password}"`,
    });
    // Nothing for pecl-memcache, which has no SASL: the hint says so instead.
    expect(hint).toContain('pecl-memcache (session.save_handler = memcache) cannot do SASL');
    expect(hint).not.toContain('tcp://');
    // php-memcached with the text protocol as the base, so the hint's own lines must switch it to binary.
    const written = await writeSessions('memcached-text', { port: withSasl.port, prefix: 'php-hint-', count: 3, ini });
    expect(written.problems).toEqual([]);
    const read = await readSessions('memcached-text', { port: withSasl.port, prefix: 'php-hint-', count: 3, ini });
    expect(read.problems).toEqual([]);
    expect(read.ok).toBe(3);
  });

  test('a wrong password is refused, as memcached -S refuses it', async () => {
    const [viaProxy, viaMemcached] = await Promise.all([
      writeSessions('memcached-binary', { port: withSasl.port, prefix: 'php-wrong-', count: 1, ini: saslIni(WRONG) }),
      writeSessions('memcached-binary', { port: saslMc.port, prefix: 'php-wrong-', count: 1, ini: saslIni(WRONG) }),
    ]);
    expect(problemsOf(viaMemcached)).toContain('AUTHENTICATION FAILURE');
    expect(problemsOf(viaProxy)).toContain('AUTHENTICATION FAILURE');
  });

  test('against a proxy without client SASL it fails as against memcached without -S (the documented choice)', async () => {
    const [viaProxy, viaMemcached] = await Promise.all([
      writeSessions('memcached-binary', { port: withoutSasl.port, prefix: 'php-nosasl-', count: 1, ini: saslIni(USER) }),
      writeSessions('memcached-binary', { port: plainMc.port, prefix: 'php-nosasl-', count: 1, ini: saslIni(USER) }),
    ]);
    expect(problemsOf(viaMemcached)).toContain('UNKNOWN READ FAILURE');
    expect(problemsOf(viaProxy)).toContain('UNKNOWN READ FAILURE');
  });
});
