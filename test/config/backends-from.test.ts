// backendsFrom and discovery: the forms accepted, the errors that name the field, and how
// they combine with backends (two ways to give one setting) and with replicas.

import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config';
import { errorOf, load } from './support';
import { diffConfig, liveConfig } from '../../src/reload';

describe('backendsFrom', () => {
  it.each([
    ['dns://memcached.default.svc.cluster.local:11211', { scheme: 'dns', name: 'memcached.default.svc.cluster.local', port: 11211 }],
    ['DNS://Memcached.Example.:11211', { url: 'dns://memcached.example:11211', name: 'memcached.example', port: 11211 }],
    ['dnssrv://_memcache._tcp.example.com', { scheme: 'dnssrv', name: '_memcache._tcp.example.com', port: null }],
    ['dnssrv://_memcache._tcp.memcached.default.svc.cluster.local.', { url: 'dnssrv://_memcache._tcp.memcached.default.svc.cluster.local' }],
  ])('%s', (text, want) => {
    const config = load([], `backendsFrom: "${text}"\n`);
    expect(config.backendsFrom).toMatchObject(want);
    expect(config.backends).toEqual([]);
    expect(config.replicas).toBe(2);
    expect(load(['--backends-from', text]).backendsFrom).toEqual(config.backendsFrom);
  });

  it.each([
    ['memcached:11211', 'must be "dns://<name>:<port>" (A/AAAA records) or "dnssrv://<name>" (SRV records), got "memcached:11211"'],
    ['http://memcached:11211', 'must be "dns://<name>:<port>"'],
    ['dns://memcached', 'needs the backends\' port, as in "dns://memcached.default.svc.cluster.local:11211"'],
    ['dns://10.0.0.1:11211', '"10.0.0.1" is not a DNS name (an address goes in backends)'],
    ['dns://memcached:0', 'port must be 1..65535, got "0"'],
    ['dnssrv://_memcache._tcp.example.com:11211', 'takes no port: each SRV record carries its own'],
    ['dnssrv://bad name', '"bad name" is not a DNS name'],
  ])('%s is refused', (text, problem) => {
    expect(errorOf(() => load([], `backendsFrom: "${text}"\n`))).toContain(`r.yaml: backendsFrom: ${problem}`);
    expect(errorOf(() => load(['--backends-from', text]))).toContain(`--backends-from: ${problem}`);
  });

  it('is not a list or a number', () => {
    expect(errorOf(() => parseConfigText('backendsFrom: [a]\n', 'r.yaml'))).toBe('r.yaml: backendsFrom: must be a "dns://<name>:<port>" or "dnssrv://<name>" string, got a list');
  });

  it('cannot be given with backends in one place; a flag for either replaces the file\'s either', () => {
    expect(errorOf(() => load([], 'backends: [10.0.0.1:11211]\nbackendsFrom: dns://m.example:11211\n'))).toBe(
      'r.yaml: backendsFrom: cannot be given with backends: list the backends, or name where DNS lists them, not both',
    );
    expect(errorOf(() => load(['--backends', '10.0.0.1:11211', '--backends-from', 'dns://m.example:11211']))).toBe(
      '--backends-from: cannot be given with --backends: list the backends, or name where DNS lists them, not both',
    );
    const overFile = load(['--backends-from', 'dnssrv://_m._tcp.example'], 'backends: [10.0.0.1:11211]\n');
    expect(overFile.backendsFrom?.url).toBe('dnssrv://_m._tcp.example');
    expect(overFile.backends).toEqual([]);
    const listOverFile = load(['--backends', '10.0.0.1:11211'], 'backendsFrom: dns://m.example:11211\n');
    expect(listOverFile.backendsFrom).toBeNull();
    expect(listOverFile.backends.map((b) => b.address)).toEqual(['10.0.0.1:11211']);
  });

  it('replicas are checked against each answer, not at load', () => {
    expect(load([], 'backendsFrom: dns://m.example:11211\nreplicas: 3\n').replicas).toBe(3);
    expect(load(['--backends-from', 'dns://m.example:11211']).replicas).toBe(2);
  });
});

describe('discovery', () => {
  it('defaults: the system\'s servers, 5 to 60 s', () => {
    expect(load(['--backends-from', 'dns://m.example:11211']).discovery).toEqual({ servers: null, minRefreshMs: 5000, maxRefreshMs: 60000 });
  });

  it('servers as node:dns takes them, from the file or the flag', () => {
    const yaml = 'backendsFrom: dns://m.example:11211\ndiscovery:\n  servers: ["10.96.0.10", "127.0.0.1:5353", "[::1]:53", "::1"]\n  minRefreshMs: 100\n  maxRefreshMs: 100\n';
    expect(load([], yaml).discovery).toEqual({ servers: ['10.96.0.10', '127.0.0.1:5353', '[::1]:53', '::1'], minRefreshMs: 100, maxRefreshMs: 100 });
    expect(load(['--dns-servers', '10.0.0.2, 127.0.0.1:53'], yaml).discovery.servers).toEqual(['10.0.0.2', '127.0.0.1:53']);
  });

  it.each([
    ['discovery:\n  servers: dns.example\n', 'r.yaml: discovery.servers: must be a list of addresses ("10.96.0.10", "127.0.0.1:5353"), got "dns.example"'],
    ['discovery:\n  servers: [dns.example]\n', 'r.yaml: discovery.servers: entry 1: must be an IP address, optionally with a port'],
    ['discovery:\n  servers: []\n', 'r.yaml: discovery.servers: must be a list of addresses'],
    ['discovery:\n  minRefreshMs: 10\n', 'r.yaml: discovery.minRefreshMs: must be an integer of at least 100, got 10'],
    ['discovery:\n  minRefreshMs: 5000\n  maxRefreshMs: 1000\n', 'r.yaml: discovery.maxRefreshMs: maxRefreshMs (1000) must not be below minRefreshMs (5000)'],
    ['discovery:\n  timeoutMs: 5\n', 'r.yaml: discovery.timeoutMs: unknown field (known: servers, minRefreshMs, maxRefreshMs)'],
  ])('%j is refused', (yaml, message) => {
    expect(errorOf(() => load([], `backendsFrom: dns://m.example:11211\n${yaml}`))).toContain(message);
  });

  it('the flag names itself', () => {
    expect(errorOf(() => load(['--dns-servers', '10.0.0.1,dns.example']))).toContain('--dns-servers: entry 2: must be an IP address');
  });
});

describe('a reload', () => {
  it('keeps the running backendsFrom, and says another one needs a restart', () => {
    const running = load([], 'backendsFrom: dns://m.example:11211\n');
    const next = load([], 'backendsFrom: dns://other.example:11211\ndiscovery:\n  minRefreshMs: 1000\n');
    expect(diffConfig(running, next).needsRestart).toEqual(['backendsFrom']);
    const live = liveConfig(running, next);
    expect(live.backendsFrom).toEqual(running.backendsFrom);
    expect(live.discovery.minRefreshMs).toBe(1000); // applied live
    expect(diffConfig(running, load([], 'backendsFrom: dns://m.example:11211\n')).needsRestart).toEqual([]);
  });
});
