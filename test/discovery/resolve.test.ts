// One resolution of backendsFrom against scripted lookups: the list (sorted, without
// duplicates), the TTL, and the reason for each kind of failure.

import type { RecordWithTtl, SrvRecord } from 'node:dns';
import { describe, expect, it } from 'vitest';
import type { BackendsFrom } from '../../src/config';
import { compareAddresses, resolveBackends, type DnsLookups } from '../../src/discovery/resolve';

const A: BackendsFrom = { url: 'dns://m.test:11211', scheme: 'dns', name: 'm.test', port: 11211 };
const SRV: BackendsFrom = { url: 'dnssrv://_m._tcp.test', scheme: 'dnssrv', name: '_m._tcp.test', port: null };

type Outcome<T> = T[] | string; // records, or the error code node:dns rejects with

function lookups(v4: Outcome<RecordWithTtl>, v6: Outcome<RecordWithTtl>, srv: Outcome<SrvRecord> = []): DnsLookups {
  const answer = <T>(o: Outcome<T>): Promise<T[]> =>
    typeof o === 'string' ? Promise.reject(Object.assign(new Error(`query ${o} m.test`), { code: o })) : Promise.resolve(o);
  return { resolve4: () => answer(v4), resolve6: () => answer(v6), resolveSrv: () => answer(srv) };
}

const srvRecord = (name: string, port: number, weight = 50): SrvRecord => ({ name, port, weight, priority: 0 });

describe('dns://', () => {
  it('A and AAAA together, sorted by number, duplicates once, the smallest TTL', async () => {
    const v4 = [{ address: '10.0.0.10', ttl: 30 }, { address: '10.0.0.9', ttl: 5 }, { address: '10.0.0.9', ttl: 5 }];
    const answer = await resolveBackends(A, lookups(v4, [{ address: 'fd00::1', ttl: 20 }]));
    expect(answer).toEqual({
      ok: true,
      ttlMs: 5000,
      backends: [
        { address: '10.0.0.9:11211', host: '10.0.0.9', port: 11211, weight: 1, local: false, zone: null },
        { address: '10.0.0.10:11211', host: '10.0.0.10', port: 11211, weight: 1, local: false, zone: null },
        { address: '[fd00::1]:11211', host: 'fd00::1', port: 11211, weight: 1, local: false, zone: null },
      ],
    });
  });

  it('only A records (no AAAA: ENODATA), or only AAAA', async () => {
    expect(await resolveBackends(A, lookups([{ address: '10.0.0.1', ttl: 0 }], 'ENODATA'))).toMatchObject({ ok: true, ttlMs: 0 });
    expect(await resolveBackends(A, lookups('ENODATA', [{ address: '::1', ttl: 1 }]))).toMatchObject({ ok: true, backends: [{ address: '[::1]:11211' }] });
  });

  it.each([
    ['ENOTFOUND', 'ENOTFOUND', 'nxdomain'],
    ['ESERVFAIL', 'ESERVFAIL', 'servfail'],
    ['ETIMEOUT', 'ETIMEOUT', 'timeout'],
    ['EREFUSED', 'EREFUSED', 'refused'],
    ['ECONNREFUSED', 'ECONNREFUSED', 'error'],
    ['ENODATA', 'ENODATA', 'empty'],
  ])('%s: %s', async (v4, v6, reason) => {
    expect(await resolveBackends(A, lookups(v4, v6))).toMatchObject({ ok: false, reason });
  });

  it('a failure of one family fails the answer: a partial answer never removes members', async () => {
    expect(await resolveBackends(A, lookups([{ address: '10.0.0.1', ttl: 5 }], 'ETIMEOUT'))).toMatchObject({ ok: false, reason: 'timeout' });
    expect(await resolveBackends(A, lookups('ESERVFAIL', [{ address: '::1', ttl: 5 }]))).toMatchObject({ ok: false, reason: 'servfail' });
  });
});

describe('dnssrv://', () => {
  it('each target on its port, names kept (lower case, no trailing dot), weight and priority not used, no TTL', async () => {
    const records = [srvRecord('Memcached-1.memcached.test.', 11211, 33), srvRecord('memcached-0.memcached.test', 11211, 34), srvRecord('memcached-0.memcached.test', 11212, 33)];
    const answer = await resolveBackends(SRV, lookups([], [], records));
    expect(answer).toEqual({
      ok: true,
      ttlMs: null,
      backends: [
        { address: 'memcached-0.memcached.test:11211', host: 'memcached-0.memcached.test', port: 11211, weight: 1, local: false, zone: null },
        { address: 'memcached-0.memcached.test:11212', host: 'memcached-0.memcached.test', port: 11212, weight: 1, local: false, zone: null },
        { address: 'memcached-1.memcached.test:11211', host: 'memcached-1.memcached.test', port: 11211, weight: 1, local: false, zone: null },
      ],
    });
  });

  it('a target of "." offers nothing; none left is an empty answer', async () => {
    expect(await resolveBackends(SRV, lookups([], [], [srvRecord('.', 0), srvRecord('a.test', 1)]))).toMatchObject({ ok: true, backends: [{ address: 'a.test:1' }] });
    expect(await resolveBackends(SRV, lookups([], [], [srvRecord('.', 0)]))).toMatchObject({ ok: false, reason: 'empty' });
    expect(await resolveBackends(SRV, lookups([], [], 'ENODATA'))).toMatchObject({ ok: false, reason: 'empty' });
    expect(await resolveBackends(SRV, lookups([], [], 'ENOTFOUND'))).toMatchObject({ ok: false, reason: 'nxdomain' });
  });
});

it('addresses compare digit runs as numbers', () => {
  const sorted = ['10.0.0.10:11211', '10.0.0.9:11211', '10.0.0.9:2', '9.1.1.1:1', 'b.test:1', 'a.test:1'].sort(compareAddresses);
  expect(sorted).toEqual(['9.1.1.1:1', '10.0.0.9:2', '10.0.0.9:11211', '10.0.0.10:11211', 'a.test:1', 'b.test:1']);
});
