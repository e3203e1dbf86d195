// The binary (SASL) backend codec against a real `memcached -S`: every
// MemcachedNode operation gives the outcome the meta codec gives against a plain
// memcached, step for step (the same sequence on two fresh processes, so even
// the CAS values agree); only the remaining TTL differs (binary cannot read it).
// Then the SASL handshake: a refused one fails requests with a clear reason,
// counts as 'auth', and keeps the backend down.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backend, type BackendErrorReason } from '../../src/backends/backend';
import { binaryCodec } from '../../src/backends/codec';
import type { StoreRequest } from '../../src/routing/node';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';
import type { SaslUser } from '../helpers/sasl';

const USER: SaslUser = { username: 'proxy', password: 'pa ss\u00e9:word' };
const k = (s: string): Buffer => Buffer.from(s, 'latin1');
const store = (over: Partial<StoreRequest>): StoreRequest => ({ mode: 'set', key: k('key'), value: k('value'), flags: 0, exptime: 0, cas: 0n, ...over });

let plain: MemcachedProcess;
let sasl: MemcachedProcess;
let meta: Backend;
let bin: Backend;
const opened: Backend[] = [];

function open(address: string, codec?: ReturnType<typeof binaryCodec>, extra: Partial<ConstructorParameters<typeof Backend>[1]> = {}, failures?: BackendErrorReason[]): Backend {
  const observer = { replied: () => {}, timedOut: () => {}, failed: (reason: BackendErrorReason) => failures?.push(reason) };
  const b = new Backend(address, { requestTimeoutMs: 10_000, ...(codec ? { codec } : {}), ...extra }, observer);
  opened.push(b);
  return b;
}

beforeAll(async () => {
  [plain, sasl] = await Promise.all([startMemcached({ maxItemSize: '1m' }), startMemcached({ maxItemSize: '1m', sasl: USER })]);
  meta = open(plain.address);
  bin = open(sasl.address, binaryCodec(USER));
});

afterAll(async () => {
  await Promise.all(opened.map((b) => b.close()));
  await stopAllMemcached();
});

/** Outcomes with the TTL taken out (checked on its own below). */
function comparable(outcome: unknown): unknown {
  return JSON.parse(
    JSON.stringify(outcome, (name, v: unknown) => {
      if (name === 'ttl') return undefined;
      return typeof v === 'bigint' ? `${v}n` : v;
    }),
  );
}

const big = Buffer.alloc(200_000, 0x61);
const bytes = Buffer.from([0x00, 0x0d, 0x0a, 0x20, 0xff, 0x80, 0x7f]);
const awkward = [k('has space'), k('line\nfeed'), Buffer.from([0x41, 0x00, 0x42]), Buffer.alloc(250, 0x10), Buffer.alloc(186, 0x20)];
const U64_MAX = (1n << 64n) - 1n;

/** One step: a name and the operation. Each runs on both backends, in this order. */
const STEPS: Array<[string, (b: Backend) => Promise<unknown>]> = [
  ['get miss', (b) => b.get(k('a'))],
  ['casOf miss', (b) => b.casOf(k('a'))],
  ['touch miss', (b) => b.touch(k('a'), 100)],
  ['gat miss', (b) => b.get(k('a'), 100)],
  ['set', (b) => b.store(store({ key: k('a'), value: bytes, flags: 0xffffffff, exptime: 100 }))],
  ['get hit', (b) => b.get(k('a'))],
  ['casOf hit', (b) => b.casOf(k('a'))],
  ['touch hit', (b) => b.touch(k('a'), 200)],
  ['gat hit', (b) => b.get(k('a'), 300)],
  ['add existing', (b) => b.store(store({ mode: 'add', key: k('a') }))],
  ['add missing', (b) => b.store(store({ mode: 'add', key: k('b'), flags: 7 }))],
  ['replace missing', (b) => b.store(store({ mode: 'replace', key: k('c') }))],
  ['replace existing', (b) => b.store(store({ mode: 'replace', key: k('b'), value: k('B') }))],
  ['append missing', (b) => b.store(store({ mode: 'append', key: k('c'), value: k('x') }))],
  ['append existing', (b) => b.store(store({ mode: 'append', key: k('b'), value: k('>') }))],
  ['prepend existing', (b) => b.store(store({ mode: 'prepend', key: k('b'), value: k('<') }))],
  ['get appended', (b) => b.get(k('b'))],
  ['append with a stale cas', (b) => b.store(store({ mode: 'append', key: k('b'), value: k('!'), cas: 1n }))],
  ['cas missing', (b) => b.store(store({ mode: 'cas', key: k('c'), cas: 5n }))],
  ['cas mismatch', (b) => b.store(store({ mode: 'cas', key: k('a'), cas: 1n }))],
  ['cas zero', (b) => b.store(store({ mode: 'cas', key: k('a'), cas: 0n }))],
  ['cas zero, missing', (b) => b.store(store({ mode: 'cas', key: k('c'), cas: 0n }))],
  ['cas match', async (b) => {
    const r = await b.casOf(k('a'));
    return b.store(store({ mode: 'cas', key: k('a'), value: k('new'), cas: r.status === 'hit' ? r.cas : 0n }));
  }],
  ['set with a stale cas', (b) => b.store(store({ key: k('a'), cas: 2n }))],
  ['delete missing', (b) => b.delete(k('c'), 0n)],
  ['delete with a stale cas', (b) => b.delete(k('a'), 1n)],
  ['delete with its cas', async (b) => {
    const r = await b.casOf(k('a'));
    return b.delete(k('a'), r.status === 'hit' ? r.cas : 0n);
  }],
  ['delete', (b) => b.delete(k('b'), 0n)],
  ['incr missing, no create', (b) => b.arith('incr', k('n'), 1n)],
  ['incr missing, do-not-create expiry', (b) => b.arith('incr', k('n'), 1n, { initial: 5n, exptime: 0xffffffff })],
  ['incr missing, create', (b) => b.arith('incr', k('n'), 1n, { initial: 41n, exptime: 0 })],
  ['incr', (b) => b.arith('incr', k('n'), 1n)],
  ['decr below zero', (b) => b.arith('decr', k('n'), 1000n)],
  ['set max', (b) => b.store(store({ key: k('n'), value: k(U64_MAX.toString()) }))],
  ['incr wraps', (b) => b.arith('incr', k('n'), 2n)],
  ['get counter', (b) => b.get(k('n'))],
  ['incr non-numeric', async (b) => {
    await b.store(store({ key: k('t'), value: k('text') }));
    return b.arith('incr', k('t'), 1n);
  }],
  ['set already expired', (b) => b.store(store({ key: k('e'), exptime: -1 }))],
  ['get expired', (b) => b.get(k('e'))],
  ['set with an absolute past time', (b) => b.store(store({ key: k('e'), exptime: 1_000_000_000 }))],
  ['get past', (b) => b.get(k('e'))],
  ['large value', (b) => b.store(store({ key: k('big'), value: big }))],
  ['get large', (b) => b.get(k('big'))],
  ['too large', (b) => b.store(store({ key: k('huge'), value: Buffer.alloc(2 * 1024 * 1024) }))],
  ['awkward keys', (b) => Promise.all(awkward.map(async (key) => [await b.store(store({ key, value: key })), await b.get(key)]))],
  ['flush', (b) => b.flush(0)],
  ['get after flush', (b) => b.get(k('n'))],
  ['version', (b) => b.version()],
];

describe('the binary codec gives the meta codec outcomes', () => {
  it('every step, in order, against memcached and memcached -S', async () => {
    for (const [name, step] of STEPS) {
      const want = await step(meta);
      const got = await step(bin);
      expect({ step: name, outcome: comparable(got) }).toEqual({ step: name, outcome: comparable(want) });
    }
  });

  it('reports no TTL for items it reads (the binary protocol has none), and real stats', async () => {
    await bin.store(store({ key: k('ttl'), exptime: 50 }));
    const r = await bin.get(k('ttl'));
    expect(r.status === 'hit' && r.item.ttl).toBe(null);
    expect(await bin.casOf(k('ttl'))).toMatchObject({ status: 'hit', ttl: null });
    const stats = await bin.stats();
    expect(stats instanceof Map && stats.get('pid')).toBe(String(sasl.pid));
    expect(await bin.identity()).toMatchObject({ status: 'ok', pid: sasl.pid });
    expect(await bin.stats('settings')).toBeInstanceOf(Map);
  });

  it('carries keys the meta protocol cannot (over 186 bytes, with a space)', async () => {
    const key = Buffer.alloc(250, 0x20);
    expect(await meta.store(store({ key }))).toMatchObject({ status: 'failed' });
    expect(await bin.store(store({ key, value: k('v') }))).toMatchObject({ status: 'stored' });
    expect(await bin.get(key)).toMatchObject({ status: 'hit', item: { value: k('v') } });
  });

  it('cannot list keys', async () => {
    expect(await bin.metadump()).toEqual({ status: 'failed', reason: 'the binary protocol cannot list keys' });
  });
});

describe('the SASL handshake', () => {
  it('the meta codec is refused by memcached -S (it closes without a word)', async () => {
    const b = open(sasl.address, undefined, { failureLimit: 100, requestTimeoutMs: 300 });
    const r = await b.version();
    expect(r.status).toBe('failed');
  });

  it('wrong password: requests fail with the reason, counted as auth, and the backend goes and stays down', async () => {
    const failures: BackendErrorReason[] = [];
    const b = open(sasl.address, binaryCodec({ ...USER, password: 'wrong' }), { failureLimit: 2, probeIntervalMs: 20, retryMaxMs: 40, upAfterProbes: 1 }, failures);
    const downs: string[] = [];
    b.on('down', (reason) => downs.push(reason));
    let ups = 0;
    b.on('up', () => ups++);
    expect(await b.version()).toEqual({ status: 'failed', reason: 'authentication failed: Auth failure.' });
    expect(await b.version()).toEqual({ status: 'failed', reason: 'backend down: authentication failed: Auth failure.' });
    expect(b.isUp()).toBe(false);
    expect(downs).toEqual(['authentication failed: Auth failure.']);
    expect(failures.every((f) => f === 'auth' || f === 'down')).toBe(true);
    expect(failures).toContain('auth');
    // Probes authenticate too: many of them run meanwhile, and none brings it up.
    await new Promise((r) => setTimeout(r, 500));
    expect(ups).toBe(0);
    expect(b.isUp()).toBe(false);
  });

  it('a memcached without -S: refused as not supporting SASL (never used without authenticating)', async () => {
    const b = open(plain.address, binaryCodec(USER));
    expect(await b.version()).toEqual({ status: 'failed', reason: 'authentication failed: the backend does not support SASL (memcached without -S?)' });
  });

  it('unknown user: the same', async () => {
    const b = open(sasl.address, binaryCodec({ username: 'nobody', password: USER.password }));
    expect(await b.version()).toEqual({ status: 'failed', reason: 'authentication failed: Auth failure.' });
  });
});
