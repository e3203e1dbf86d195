// `stats` with arguments and memcached's admin commands through the proxy (3 backends, 2
// replicas), each reply compared with what memcached 1.6 itself answers: the same bytes where
// the proxy answers as memcached does, the same format (STAT lines and END, the same names)
// where the figures are the proxy's or the backends', and never a bare ERROR for a command
// memcached knows.

import { describe, expect, test } from 'vitest';
import { clusterBesideMemcached } from '../helpers/cluster';
import { binaryExchange, binaryPacket, textExchange, type BinaryPacket } from '../helpers/wire';

const started = clusterBesideMemcached();

const proxy = (input: string): Promise<string> => textExchange(started.cluster.proxy.port, input).then((b) => b.toString('latin1'));
const memcached = (input: string): Promise<string> => textExchange(started.reference.port, input).then((b) => b.toString('latin1'));

/** A STAT listing as name -> value; throws unless it is STAT lines then END. */
function table(reply: string): Map<string, string> {
  expect(reply.endsWith('END\r\n'), reply.slice(-200)).toBe(true);
  const lines = reply.slice(0, -'END\r\n'.length).split('\r\n').slice(0, -1);
  const rows = new Map<string, string>();
  for (const l of lines) {
    const m = /^STAT (\S+) (.+)$/.exec(l);
    expect(m, l).not.toBeNull();
    rows.set(m![1], m![2]);
  }
  return rows;
}

/** Items of 10 and 500 bytes (slab classes 1 and 8 or so) through the proxy and into memcached. */
async function storeSome(): Promise<void> {
  const input = Array.from({ length: 20 }, (_, i) => `set admin:${i} 0 0 ${i % 2 ? 500 : 10}\r\n${'x'.repeat(i % 2 ? 500 : 10)}\r\n`).join('');
  expect(await proxy(input)).toBe('STORED\r\n'.repeat(20));
  expect(await memcached(input)).toBe('STORED\r\n'.repeat(20));
}

describe('text protocol', () => {
  test('answers as memcached answers, byte for byte', async () => {
    const inputs = [
      'stats detail\r\n', 'stats detail dump\r\n', 'stats detail on\r\n', 'stats detail off\r\n', 'stats detail x\r\n',
      'stats sizes\r\n', 'stats extstore\r\n', 'stats nonsense\r\n', 'stats proxy\r\n', 'stats cachedump\r\n',
      'stats cachedump x 1\r\n', 'stats cachedump 64 1\r\n', 'stats cachedump 60 1\r\n',
      'cache_memlimit 64\r\n', 'cache_memlimit 1\r\n', 'cache_memlimit x\r\n', 'cache_memlimit 64 noreply\r\n',
      'mn\r\n', 'shutdown\r\n', 'verbosity 1\r\n', 'lru mode segmented\r\n', 'lru_crawler tocrawl 0\r\n',
      'slabs automove 1\r\n', 'extstore item_size 1024\r\n', 'refresh_certs\r\n', 'misbehave\r\n', 'ms\r\n', 'me\r\n',
    ];
    for (const input of inputs) expect(await proxy(input), input).toBe(await memcached(input));
  });

  test('stats reset answers RESET and starts the proxy\'s counts again', async () => {
    await proxy('get reset:a\r\nget reset:b\r\n');
    expect(Number(table(await proxy('stats\r\n')).get('cmd_get'))).toBeGreaterThanOrEqual(2);
    expect(await proxy('stats reset\r\n')).toBe(await memcached('stats reset\r\n'));
    const after = table(await proxy('stats\r\n'));
    expect(after.get('cmd_get')).toBe('0');
    expect(after.get('get_misses')).toBe('0');
    expect(Number(after.get('uptime'))).toBeGreaterThanOrEqual(0); // not a count: not reset
    await proxy('get reset:c\r\n');
    expect(table(await proxy('stats\r\n')).get('cmd_get')).toBe('1');
  });

  test('stats settings: a table under memcached\'s names, with the proxy\'s own values', async () => {
    const ours = table(await proxy('stats settings\r\n'));
    const theirs = table(await memcached('stats settings\r\n'));
    for (const name of ours.keys()) if (!name.startsWith('replicached_')) expect(theirs.has(name), name).toBe(true);
    expect(ours.get('tcpport')).toBe(String(started.cluster.proxy.port));
    expect(ours.get('item_size_max')).toBe('1048576');
    expect(ours.get('replicached_replicas')).toBe('2');
  });

  test('stats items, slabs, sizes: the backends\' tables merged, in memcached\'s shape', async () => {
    await storeSome();
    const refItems = table(await memcached('stats items\r\n'));
    // Every item lives on 2 of the 3 backends, beside replicached's own keys (docs/trust.md):
    // each class's count is the backends' counts summed, and memcached's classes are all there.
    // replicached's own keys come and go meanwhile (a resync mark, stored expired, is reclaimed
    // by memcached's crawler): the backends are read before and after the proxy, until the two
    // agree.
    const backendItems = () => Promise.all(started.cluster.backends.map(async (b) => table((await textExchange(b.port, 'stats items\r\n')).toString('latin1'))));
    const counts = (tables: Array<Map<string, string>>) => JSON.stringify(tables.map((t) => [...t].filter(([k]) => /:number$/.test(k))));
    let items = new Map<string, string>();
    let own: Array<Map<string, string>> = [];
    for (let attempt = 0; attempt < 20; attempt++) {
      const before = await backendItems();
      items = table(await proxy('stats items\r\n'));
      own = await backendItems();
      if (counts(before) === counts(own)) break;
    }
    for (const [name, value] of refItems) {
      expect(items.has(name), name).toBe(true);
      if (/:number$/.test(name)) {
        expect(Number(items.get(name)), name).toBe(own.reduce((n, t) => n + Number(t.get(name) ?? 0), 0));
        expect(Number(items.get(name)), name).toBeGreaterThanOrEqual(2 * Number(value));
      }
    }
    const slabs = table(await proxy('stats slabs\r\n'));
    const refSlabs = table(await memcached('stats slabs\r\n'));
    expect([...slabs.keys()].filter((k) => !/^\d+:/.test(k))).toEqual(['active_slabs', 'total_malloced']);
    for (const [name, value] of refSlabs) {
      if (/:chunk_size$/.test(name)) expect(slabs.get(name), name).toBe(value);
      if (/:used_chunks$/.test(name)) expect(Number(slabs.get(name)), name).toBeGreaterThanOrEqual(2 * Number(value));
    }
    expect(await proxy('stats sizes\r\n')).toBe(await memcached('stats sizes\r\n'));
  });

  test('stats conns and cachedump: END, no table of the proxy\'s clients or of keys', async () => {
    expect(await proxy('stats conns\r\n')).toBe('END\r\n');
    expect((await memcached('stats conns\r\n')).endsWith('END\r\n')).toBe(true);
    expect(await proxy('stats cachedump 1 10\r\n')).toBe('END\r\n');
    expect(await memcached('stats cachedump 1 10\r\n')).toMatch(/^(ITEM \S+ \[\d+ b; \d+ s\]\r\n)*END\r\n$/);
  });

  test('never a bare ERROR for a command memcached knows', async () => {
    const known = [
      'stats reset', 'stats settings', 'stats items', 'stats slabs', 'stats sizes', 'stats conns', 'stats detail on',
      'stats detail off', 'stats detail dump', 'stats cachedump 1 1', 'stats extstore', 'cache_memlimit 100',
      'shutdown', 'shutdown graceful', 'verbosity 1', 'version', 'lru tune 10 10 0.1 2', 'lru mode flat',
      'lru temp_ttl 61', 'lru_crawler crawl all', 'lru_crawler metadump all', 'lru_crawler tocrawl 5',
      'lru_crawler sleep 10', 'lru_crawler enable', 'lru_crawler disable', 'watch', 'slabs reassign 1 2',
      'slabs automove 1', 'extstore item_size 10', 'refresh_certs', 'mn', 'mg k v', 'md k', 'ma k', 'me k',
    ];
    for (const command of known) expect(await proxy(`${command}\r\n`), command).not.toMatch(/^ERROR\r\n/);
    // An ms is refused and its data block swallowed: the next command is read as one.
    expect(await proxy('ms k 5 T0\r\nhello\r\nversion\r\n')).toMatch(/^CLIENT_ERROR bad command line format\r\nVERSION /);
  });
});

describe('binary STAT with a group key', () => {
  const STAT = 0x10;
  const stat = (port: number, group: string): Promise<BinaryPacket[]> =>
    binaryExchange(port, [binaryPacket({ opcode: STAT, key: Buffer.from(group, 'latin1'), opaque: 7 })]);
  /** Each packet's status and key, the empty key of the terminator included. */
  const shape = (packets: BinaryPacket[]): string[] => packets.map((p) => `${p.status}:${p.key.toString('latin1')}`);
  /** A stat's name with its slab class as N: replicached's own keys fill classes a fresh memcached has not. */
  const anyClass = (name: string): string => name.replace(/^(items:)?\d+:/, '$1N:');

  test('statuses and terminators as memcached sends them', async () => {
    for (const group of ['reset', 'detail on', 'detail off', 'detail dump', 'detail', 'detail x', 'conns', 'cachedump', 'nonsense', 'sizes']) {
      const [ours, theirs] = [await stat(started.cluster.proxy.port, group), await stat(started.reference.port, group)];
      expect(shape(ours), group).toEqual(shape(theirs));
      expect(ours.map((p) => p.value.toString('latin1')), group).toEqual(theirs.map((p) => p.value.toString('latin1')));
    }
  });

  test('settings, items and slabs: STAT packets under memcached\'s names, then the empty one', async () => {
    await storeSome();
    for (const group of ['settings', 'items', 'slabs']) {
      const ours = await stat(started.cluster.proxy.port, group);
      const theirs = new Set((await stat(started.reference.port, group)).map((p) => anyClass(p.key.toString('latin1'))));
      expect(ours.length, group).toBeGreaterThan(1);
      expect(ours.every((p) => p.status === 0 && p.opaque === 7), group).toBe(true);
      expect(ours[ours.length - 1].key.length, group).toBe(0);
      for (const p of ours.slice(0, -1)) {
        const name = p.key.toString('latin1');
        if (!name.startsWith('replicached_')) expect(theirs.has(anyClass(name)), `${group}: ${name}`).toBe(true);
      }
    }
  });
});
