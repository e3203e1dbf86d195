// TLS settings: defaults (off; verification on once enabled), flags, the YAML file,
// and the checks that span fields, each error naming the flag or the field.

import { describe, expect, it } from 'vitest';
import { HELP_TEXT } from '../../src/config';
import { errorOf, load } from './support';

describe('TLS config', () => {
  it('is off by default, and verifies certificates once turned on', () => {
    const c = load([]);
    expect(c.backendTls).toEqual({ enabled: false, caFile: null, certFile: null, keyFile: null, serverName: null, rejectUnauthorized: true });
    expect(c.clientTls).toEqual({ enabled: false, certFile: null, keyFile: null });
    expect(load(['--backend-tls']).backendTls).toMatchObject({ enabled: true, rejectUnauthorized: true });
  });

  it('takes every backend TLS setting from flags', () => {
    const c = load([
      '--backend-tls',
      '--backend-tls-ca', '/ca.pem',
      '--backend-tls-cert', '/c.pem',
      '--backend-tls-key', '/k.pem',
      '--backend-tls-server-name', 'memcached.internal',
      '--backend-tls-insecure',
    ]);
    expect(c.backendTls).toEqual({
      enabled: true, caFile: '/ca.pem', certFile: '/c.pem', keyFile: '/k.pem', serverName: 'memcached.internal', rejectUnauthorized: false,
    });
  });

  it('takes client TLS from --tls-cert/--tls-key', () => {
    expect(load(['--tls-cert', '/s.pem', '--tls-key', '/s.key']).clientTls).toEqual({ enabled: true, certFile: '/s.pem', keyFile: '/s.key' });
  });

  it('reads backendTls and clientTls from the file; flags win', () => {
    const yaml = [
      'backendTls:',
      '  enabled: true',
      '  caFile: /file-ca.pem',
      '  rejectUnauthorized: true',
      'clientTls:',
      '  enabled: true',
      '  certFile: /s.pem',
      '  keyFile: /s.key',
      '',
    ].join('\n');
    const c = load(['--backend-tls-ca', '/flag-ca.pem'], yaml);
    expect(c.backendTls).toMatchObject({ enabled: true, caFile: '/flag-ca.pem', rejectUnauthorized: true });
    expect(c.clientTls).toEqual({ enabled: true, certFile: '/s.pem', keyFile: '/s.key' });
  });

  it.each([
    [['--backend-tls-ca', '/ca.pem'], /--backend-tls: must be true/],
    [['--backend-tls-insecure'], /--backend-tls: must be true/],
    [['--backend-tls', '--backend-tls-cert', '/c.pem'], /--backend-tls-key: a client certificate needs both/],
    [['--tls-cert', '/s.pem'], /--tls-key: client TLS needs both/],
    [['--tls-key', '/s.key'], /--tls-cert: client TLS needs both/],
    [['--backend-tls-ca', ''], /--backend-tls-ca: must be a file path/],
    [['--backend-tls=yes'], /--backend-tls: takes no value/],
  ])('flags %j are refused', (argv, message) => {
    expect(errorOf(() => load(argv))).toMatch(message);
  });

  it.each([
    ['backendTls:\n  caFile: /ca.pem\n', /backendTls\.enabled.*must be true/],
    ['backendTls:\n  enabled: yes please\n', /backendTls\.enabled.*true or false/],
    ['backendTls:\n  enabled: true\n  keyFile: /k.pem\n', /backendTls\.certFile.*needs both/],
    ['backendTls:\n  enabled: true\n  ca_file: /ca.pem\n', /backendTls\.ca_file.*did you mean "caFile"/],
    ['clientTls:\n  enabled: true\n  certFile: /s.pem\n', /clientTls\.keyFile.*needs both/],
    ['backendTls: on\n', /backendTls.*must be a mapping/],
  ])('file %j is refused', (yaml, message) => {
    expect(errorOf(() => load([], yaml))).toMatch(message);
  });

  it('enabled: false written out keeps the other settings without using them', () => {
    expect(load([], 'backendTls:\n  enabled: false\n  caFile: /ca.pem\n').backendTls).toMatchObject({ enabled: false, caFile: '/ca.pem' });
  });

  it('--help documents the TLS flags', () => {
    for (const flag of ['--backend-tls', '--backend-tls-ca', '--backend-tls-cert', '--backend-tls-key', '--backend-tls-server-name', '--backend-tls-insecure', '--tls-cert', '--tls-key']) {
      expect(HELP_TEXT).toContain(flag);
    }
  });
});
