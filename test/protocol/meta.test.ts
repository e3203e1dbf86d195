import { describe, expect, it } from 'vitest';
import {
  ReplyParser,
  canCarryKey,
  encodeArith,
  encodeDelete,
  encodeFlushAll,
  encodeGet,
  encodeMetadump,
  encodeNoop,
  encodeStats,
  encodeStore,
  encodeTouch,
  encodeVersion,
  isRawSafeKey,
  parseU64,
  type BackendReply,
  type Encoded,
  type ParseResult,
  type ParserLimits,
  type ReplyKind,
  type StoreFields,
} from '../../src/protocol/backend/meta';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const flat = (e: Encoded): string => (Array.isArray(e) ? Buffer.concat(e) : e).toString('latin1');

describe('keys', () => {
  it.each([
    ['plain ascii', b('user:42'), true, true],
    ['250 bytes', b('a'.repeat(250)), true, true],
    ['251 bytes', b('a'.repeat(251)), true, false],
    ['empty', b(''), true, false],
    ['utf-8 bytes go raw', Buffer.from('clé-ü', 'utf8'), true, true],
    ['250 high bytes go raw', Buffer.alloc(250, 0x80), true, true],
    // memcached's tokenizer splits on spaces only and ends a line at LF or NUL.
    ['control bytes go raw', b('\x01\x10\x1f\t\x0b\x0c'), true, true],
    ['DEL goes raw', b('a\x7f'), true, true],
    ['CR goes raw', b('a\rb\r'), true, true],
    ['250 control bytes go raw', Buffer.alloc(250, 0x10), true, true],
    ['space needs base64', b('a b'), false, true],
    ['LF needs base64', b('a\nb'), false, true],
    ['NUL needs base64', b('\x00'), false, true],
    ['186 bytes needing base64', Buffer.alloc(186, 0x20), false, true],
    ['187 bytes needing base64', Buffer.alloc(187, 0x00), false, false],
  ])('%s', (_name, key, raw, carry) => {
    expect(isRawSafeKey(key)).toBe(raw);
    expect(canCarryKey(key)).toBe(carry);
  });
});

describe('encoders', () => {
  const store = (over: Partial<StoreFields>): StoreFields => ({
    mode: 'set',
    key: b('k'),
    value: b('hello'),
    flags: 0,
    exptime: 0,
    cas: 0n,
    ...over,
  });

  it.each<[string, Encoded, string]>([
    ['get', encodeGet(b('k')), 'mg k v f t c\r\n'],
    ['get with opaque', encodeGet(b('k'), undefined, 'a1'), 'mg k v f t c Oa1\r\n'],
    ['gat', encodeGet(b('k'), 300, 'z'), 'mg k T300 v f t c Oz\r\n'],
    ['gat negative', encodeGet(b('k'), -1), 'mg k T-1 v f t c\r\n'],
    ['base64 key', encodeGet(b('a b\x01c')), 'mg YSBiAWM= b v f t c\r\n'],
    ['base64 key, gat', encodeGet(b('a b'), 5), 'mg YSBi b T5 v f t c\r\n'],
    ['base64 key, touch', encodeTouch(b('a b'), 5), 'mg YSBi b T5 c\r\n'],
    ['base64 key, ms: length first', encodeStore(store({ key: b('a b') })), 'ms YSBi 5 b F0 T0 c\r\nhello\r\n'],
    ['base64 key, md', encodeDelete(b('a b'), 3n), 'md YSBi b C3\r\n'],
    ['base64 key, ma', encodeArith('incr', b('a b'), 1n), 'ma YSBi b D1 v c\r\n'],
    ['raw high bytes', encodeGet(Buffer.from([0xc3, 0xa9])), 'mg \xc3\xa9 v f t c\r\n'],
    ['touch', encodeTouch(b('k'), 100, '7'), 'mg k T100 c O7\r\n'],
    ['set', encodeStore(store({}), '1'), 'ms k 5 F0 T0 c O1\r\nhello\r\n'],
    ['set flags/exptime', encodeStore(store({ flags: 0xffffffff, exptime: 1795321120 })), 'ms k 5 F4294967295 T1795321120 c\r\nhello\r\n'],
    ['set expired', encodeStore(store({ exptime: -1 })), 'ms k 5 F0 T-1 c\r\nhello\r\n'],
    ['add', encodeStore(store({ mode: 'add' })), 'ms k 5 F0 T0 c ME\r\nhello\r\n'],
    ['replace', encodeStore(store({ mode: 'replace' })), 'ms k 5 F0 T0 c MR\r\nhello\r\n'],
    ['append', encodeStore(store({ mode: 'append' })), 'ms k 5 F0 T0 c MA\r\nhello\r\n'],
    ['prepend', encodeStore(store({ mode: 'prepend' })), 'ms k 5 F0 T0 c MP\r\nhello\r\n'],
    ['cas', encodeStore(store({ mode: 'cas', cas: 42n })), 'ms k 5 F0 T0 c C42\r\nhello\r\n'],
    ['cas 0 still compares', encodeStore(store({ mode: 'cas', cas: 0n })), 'ms k 5 F0 T0 c C0\r\nhello\r\n'],
    ['set with cas', encodeStore(store({ cas: 18446744073709551615n })), 'ms k 5 F0 T0 c C18446744073709551615\r\nhello\r\n'],
    ['empty value', encodeStore(store({ value: b('') })), 'ms k 0 F0 T0 c\r\n\r\n'],
    ['value with CRLF', encodeStore(store({ value: b('a\r\nb') })), 'ms k 4 F0 T0 c\r\na\r\nb\r\n'],
    ['delete', encodeDelete(b('k'), 0n, 'q'), 'md k Oq\r\n'],
    ['delete cas', encodeDelete(b('k'), 9n), 'md k C9\r\n'],
    ['incr', encodeArith('incr', b('n'), 5n, undefined, 'x'), 'ma n D5 v c Ox\r\n'],
    ['decr', encodeArith('decr', b('n'), 18446744073709551615n), 'ma n MD D18446744073709551615 v c\r\n'],
    ['incr create', encodeArith('incr', b('n'), 1n, { initial: 5n, exptime: 0 }), 'ma n D1 v c N0 J5\r\n'],
    ['incr no create', encodeArith('incr', b('n'), 1n, { initial: 5n, exptime: 0xffffffff }), 'ma n D1 v c\r\n'],
    ['noop', encodeNoop(), 'mn\r\n'],
    ['version', encodeVersion(), 'version\r\n'],
    ['stats', encodeStats(), 'stats\r\n'],
    ['stats group', encodeStats('settings'), 'stats settings\r\n'],
    ['flush_all', encodeFlushAll(0), 'flush_all\r\n'],
    ['flush_all delay', encodeFlushAll(30), 'flush_all 30\r\n'],
    ['metadump', encodeMetadump(), 'lru_crawler metadump all\r\n'],
  ])('%s', (_name, encoded, expected) => {
    expect(flat(encoded)).toBe(expected);
  });

  it('does not copy a large value', () => {
    const value = Buffer.alloc(100_000, 0x61);
    const e = encodeStore(store({ value }));
    expect(Array.isArray(e)).toBe(true);
    expect((e as Buffer[])[1]).toBe(value);
    expect(flat(e)).toBe(`ms k 100000 F0 T0 c\r\n${'a'.repeat(100_000)}\r\n`);
  });
});

/** Feeds `chunks` and collects replies, asking for `kinds[n]` for the n-th request (multi-line replies stay on one). */
function run(chunks: Buffer[], kinds: ReplyKind[], limits?: Partial<ParserLimits>): (BackendReply | string)[] {
  const p = new ReplyParser(limits);
  const out: (BackendReply | string)[] = [];
  let n = 0;
  for (const chunk of chunks) {
    p.push(chunk);
    for (;;) {
      const r: ParseResult = p.next(kinds[Math.min(n, kinds.length - 1)]);
      if (r.kind === 'more') break;
      if (r.kind === 'fatal') {
        out.push(`fatal: ${r.reason}`);
        return out;
      }
      out.push(r.reply);
      if (r.reply.type !== 'stat' && r.reply.type !== 'dump') n++;
    }
  }
  return out;
}

/** Every way to cut `bytes` in two, plus byte by byte. */
function splits(bytes: Buffer): Buffer[][] {
  const out: Buffer[][] = [[bytes]];
  for (let i = 1; i < bytes.length; i++) out.push([bytes.subarray(0, i), bytes.subarray(i)]);
  out.push([...bytes].map((x) => Buffer.from([x])));
  return out;
}

const meta = (code: string, flags: object = {}, extra: object = {}) => ({ type: 'meta', code, flags, ...extra });

describe('reply parser', () => {
  const cases: [string, ReplyKind[], string, unknown[]][] = [
    ['HD', ['meta'], 'HD\r\n', [meta('HD')]],
    ['HD with cas and opaque', ['meta'], 'HD c123 Oab\r\n', [meta('HD', { cas: 123n, opaque: 'ab' })]],
    [
      'VA with flags',
      ['meta'],
      'VA 5 f7 t-1 c9 Ox\r\nhello\r\n',
      [meta('VA', { flags: 7, ttl: -1, cas: 9n, opaque: 'x' }, { value: b('hello') })],
    ],
    ['VA empty', ['meta'], 'VA 0 f0\r\n\r\n', [meta('VA', { flags: 0 }, { value: b('') })]],
    ['VA value holding CRLF', ['meta'], 'VA 4\r\na\r\nb\r\n', [meta('VA', {}, { value: b('a\r\nb') })]],
    ['VA max flags and cas', ['meta'], 'VA 1 f4294967295 c18446744073709551615 t100\r\nx\r\n', [
      meta('VA', { flags: 4294967295, cas: 18446744073709551615n, ttl: 100 }, { value: b('x') }),
    ]],
    ['EN', ['meta'], 'EN\r\n', [meta('EN')]],
    ['NS', ['meta'], 'NS O1\r\n', [meta('NS', { opaque: '1' })]],
    ['EX', ['meta'], 'EX c0\r\n', [meta('EX', { cas: 0n })]],
    ['NF', ['meta'], 'NF\r\n', [meta('NF')]],
    ['MN', ['meta'], 'MN\r\n', [meta('MN')]],
    ['base64 key flag', ['meta'], 'EN kYSBiAWM= b\r\n', [meta('EN', { key: b('a b\x01c') })]],
    ['raw key flag', ['meta'], 'HD k\xc3\xa9 s3 l5 h1\r\n', [meta('HD', { key: Buffer.from([0xc3, 0xa9]), size: 3, lastAccess: 5, fetched: true })]],
    ['stale-while-revalidate flags', ['meta'], 'HD W X Z\r\n', [meta('HD', { win: true, stale: true, alreadyWon: true })]],
    ['unknown flags ignored', ['meta'], 'HD q9 Pabc\r\n', [meta('HD')]],
    ['ERROR', ['meta'], 'ERROR\r\n', [{ type: 'error', code: 'ERROR', message: '' }]],
    [
      'CLIENT_ERROR',
      ['meta'],
      'CLIENT_ERROR cannot increment or decrement non-numeric value\r\n',
      [{ type: 'error', code: 'CLIENT_ERROR', message: 'cannot increment or decrement non-numeric value' }],
    ],
    ['SERVER_ERROR', ['line'], 'SERVER_ERROR out of memory\r\n', [{ type: 'error', code: 'SERVER_ERROR', message: 'out of memory' }]],
    ['VERSION', ['line'], 'VERSION 1.6.18\r\n', [{ type: 'line', text: 'VERSION 1.6.18' }]],
    ['OK', ['line'], 'OK\r\n', [{ type: 'line', text: 'OK' }]],
    [
      'stats',
      ['stats'],
      'STAT pid 9125\r\nSTAT libevent 2.1.12-stable\r\nSTAT odd a b c\r\nEND\r\n',
      [
        { type: 'stat', name: 'pid', value: '9125' },
        { type: 'stat', name: 'libevent', value: '2.1.12-stable' },
        { type: 'stat', name: 'odd', value: 'a b c' },
        { type: 'end' },
      ],
    ],
    ['stats empty', ['stats'], 'END\r\n', [{ type: 'end' }]],
    [
      'metadump',
      ['metadump'],
      'key=a%20b%01c exp=1795321120 la=1795321000 cas=1 fetch=yes cls=1 size=71\n' +
        'key=%C3%a9t exp=-1 la=1 cas=18446744073709551615 fetch=no cls=2 size=64\nEND\r\n',
      [
        { type: 'dump', key: b('a b\x01c'), exp: 1795321120, cas: 1n, size: 71 },
        { type: 'dump', key: Buffer.from([0xc3, 0xa9, 0x74]), exp: -1, cas: 18446744073709551615n, size: 64 },
        { type: 'end' },
      ],
    ],
    ['metadump busy', ['metadump'], 'BUSY currently processing crawler request\r\n', [
      { type: 'line', text: 'BUSY currently processing crawler request' },
    ]],
    ['metadump refused', ['metadump'], 'ERROR cannot pipeline other commands before metadump\r\n', [
      { type: 'error', code: 'ERROR', message: 'cannot pipeline other commands before metadump' },
    ]],
    [
      'pipelined mix',
      ['meta', 'meta', 'stats', 'line', 'meta'],
      'HD O1\r\nVA 2 O2\r\nab\r\nSTAT a 1\r\nEND\r\nOK\r\nEN O3\r\n',
      [
        meta('HD', { opaque: '1' }),
        meta('VA', { opaque: '2' }, { value: b('ab') }),
        { type: 'stat', name: 'a', value: '1' },
        { type: 'end' },
        { type: 'line', text: 'OK' },
        meta('EN', { opaque: '3' }),
      ],
    ],
    ['bare LF line end', ['meta'], 'HD\nEN\n', [meta('HD'), meta('EN')]],
    // Fatal: the stream cannot be trusted any further.
    ['unknown meta code', ['meta'], 'XX\r\nHD\r\n', ['fatal: unexpected reply "XX"']],
    ['STAT when a meta reply is due', ['meta'], 'STAT pid 1\r\n', ['fatal: unexpected reply "STAT pid 1"']],
    ['bad VA length', ['meta'], 'VA x\r\n', ['fatal: bad VA length']],
    ['negative VA length', ['meta'], 'VA -1\r\n', ['fatal: bad VA length']],
    ['huge VA length', ['meta'], 'VA 99999999999\r\n', ['fatal: bad VA length']],
    ['value without CRLF', ['meta'], 'VA 3\r\nabcde', ['fatal: value not followed by CRLF']],
    ['bad cas flag', ['meta'], 'HD cxyz\r\n', ['fatal: bad c flag']],
    ['cas over 64 bits', ['meta'], 'HD c18446744073709551616\r\n', ['fatal: bad c flag']],
    ['bad flags flag', ['meta'], 'HD f4294967296\r\n', ['fatal: bad f flag']],
    ['bad ttl flag', ['meta'], 'HD t1.5\r\n', ['fatal: bad t flag']],
    ['garbage in stats', ['stats'], 'hello\r\n', ['fatal: expected STAT or END']],
    ['STAT without value', ['stats'], 'STAT pid\r\n', ['fatal: STAT line without a value']],
    ['bad metadump key', ['metadump'], 'key=%zz exp=1\n', ['fatal: bad metadump key']],
    ['bad metadump exp', ['metadump'], 'key=a exp=x\n', ['fatal: bad metadump exp']],
  ];

  for (const [name, kinds, wire, expected] of cases) {
    it(`${name}, split at every byte`, () => {
      for (const chunks of splits(b(wire))) expect(run(chunks, kinds)).toEqual(expected);
    });
  }

  it('fails a line over the limit before its newline arrives', () => {
    expect(run([b('HD '), b('x'.repeat(20))], ['meta'], { maxLineLength: 16 })).toEqual(['fatal: reply line too long']);
    expect(run([b('HD ' + 'x'.repeat(20) + '\r\n')], ['meta'], { maxLineLength: 16 })).toEqual([
      'fatal: reply line too long',
    ]);
    expect(run([b('HD ' + 'x'.repeat(10) + '\r\n')], ['meta'], { maxLineLength: 16 })).toEqual([meta('HD')]);
  });

  it('stays failed after a fatal error', () => {
    const p = new ReplyParser();
    p.push(b('XX\r\nHD\r\n'));
    expect(p.next('meta').kind).toBe('fatal');
    p.push(b('HD\r\n'));
    expect(p.next('meta').kind).toBe('fatal');
  });

  it('skips a value over the limit without buffering it, at every split', () => {
    const wire = b('VA 10 f1 O5\r\n0123456789\r\nHD O6\r\n');
    const expected = [meta('VA', { flags: 1, opaque: '5' }, { oversize: 10 }), meta('HD', { opaque: '6' })];
    for (const chunks of splits(wire)) expect(run(chunks, ['meta'], { maxValueLength: 4 })).toEqual(expected);
    const p = new ReplyParser({ maxValueLength: 1000 });
    p.push(b('VA 5000000\r\n'));
    expect(p.next('meta').kind).toBe('more');
    for (let i = 0; i < 50; i++) {
      p.push(Buffer.alloc(100_000));
      expect(p.buffered).toBe(0);
    }
    p.push(b('\r\nEN\r\n'));
    expect(p.next('meta')).toEqual({ kind: 'reply', reply: meta('VA', {}, { oversize: 5_000_000 }) });
    expect(p.next('meta')).toEqual({ kind: 'reply', reply: meta('EN') });
  });

  it('reads a 1 MiB value in small chunks', () => {
    const value = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < value.length; i++) value[i] = i % 251;
    const wire = Buffer.concat([b(`VA ${value.length} c1\r\n`), value, b('\r\nHD\r\n')]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < wire.length; i += 1000) chunks.push(wire.subarray(i, i + 1000));
    const out = run(chunks, ['meta']);
    expect(out).toHaveLength(2);
    expect((out[0] as { value: Buffer }).value.equals(value)).toBe(true);
  });

  it('never changes a value it handed out', () => {
    const p = new ReplyParser();
    p.push(b('VA 3\r\nab'));
    expect(p.next('meta').kind).toBe('more');
    p.push(b('c\r\nVA 3\r\n'));
    const r = p.next('meta');
    expect(r.kind).toBe('reply');
    const value = (r as { reply: { value: Buffer } }).reply.value;
    expect(p.next('meta').kind).toBe('more');
    p.push(b('xyz\r\n'));
    p.push(b('EN\r\n'));
    expect(p.next('meta').kind).toBe('reply');
    expect(value.toString()).toBe('abc');
  });

  it('parses a long random stream cut at random places', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const parts: string[] = [];
    const kinds: ReplyKind[] = [];
    const expected: unknown[] = [];
    for (let i = 0; i < 500; i++) {
      if (rand(3) === 0) {
        parts.push(`HD c${i} O${i}\r\n`);
        expected.push(meta('HD', { cas: BigInt(i), opaque: String(i) }));
        kinds.push('meta');
      } else if (rand(2) === 0) {
        const v = 'v'.repeat(rand(300));
        parts.push(`VA ${v.length} f${i} t-1 O${i}\r\n${v}\r\n`);
        expected.push(meta('VA', { flags: i, ttl: -1, opaque: String(i) }, { value: b(v) }));
        kinds.push('meta');
      } else {
        parts.push(`STAT s${i} ${i}\r\nEND\r\n`);
        expected.push({ type: 'stat', name: `s${i}`, value: String(i) }, { type: 'end' });
        kinds.push('stats');
      }
    }
    const wire = b(parts.join(''));
    const chunks: Buffer[] = [];
    for (let at = 0; at < wire.length; ) {
      const n = 1 + rand(200);
      chunks.push(wire.subarray(at, at + n));
      at += n;
    }
    expect(run(chunks, kinds)).toEqual(expected);
  });
});

describe('parseU64', () => {
  it.each([
    ['0', 0n],
    ['18446744073709551615', 18446744073709551615n],
    ['18446744073709551616', null],
    ['', null],
    ['-1', null],
    ['1 ', null],
  ])('%j', (s, n) => expect(parseU64(Buffer.from(s, 'latin1'))).toBe(n));
});
