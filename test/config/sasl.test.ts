// SASL settings: where the password may come from (the file, a password file, an
// environment variable; never a flag), how flags and the file combine, and that no
// error message or reload diff ever quotes a password.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseArgs, type Config } from '../../src/config';
import { settingsDiff } from '../../src/reload';
import { saslCredentials, SaslCredentialError, saslFiles } from '../../src/sasl-credentials';

function load(argv: string[], yaml?: string): Config {
  const args = parseArgs(yaml === undefined ? argv : ['--config', 'r.yaml', ...argv]);
  if (args.kind !== 'run') throw new Error(`expected a run, got ${args.kind}`);
  return loadConfig(args, () => yaml ?? '');
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    if (err instanceof Error) return err;
  }
  throw new Error('expected an error');
}

const dir = mkdtempSync(join(tmpdir(), 'replicached-sasl-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('backendSasl and clientSasl settings', () => {
  it('off by default', () => {
    expect(saslCredentials(load([]).backendSasl, 'backendSasl')).toBeNull();
    expect(saslCredentials(load([]).clientSasl, 'clientSasl')).toBeNull();
  });

  it('a username alone: the password from the default environment variable', () => {
    const c = load(['--backend-sasl-username', 'proxy', '--client-sasl-username', 'app']);
    expect(c.backendSasl.passwordEnv).toBe('REPLICACHED_BACKEND_SASL_PASSWORD');
    expect(c.clientSasl.passwordEnv).toBe('REPLICACHED_CLIENT_SASL_PASSWORD');
    expect(saslCredentials(c.backendSasl, 'backendSasl', { REPLICACHED_BACKEND_SASL_PASSWORD: 'pw' })).toEqual({ username: 'proxy', password: 'pw' });
    const e = errorOf(() => saslCredentials(c.backendSasl, 'backendSasl', {}));
    expect(e).toBeInstanceOf(SaslCredentialError);
    expect(e.message).toBe('backendSasl: the environment variable REPLICACHED_BACKEND_SASL_PASSWORD holding the password is not set');
  });

  it('from a file: one trailing newline is not part of the password; a missing or empty file is an error', () => {
    const file = join(dir, 'pw');
    writeFileSync(file, 'two words\n\n');
    const c = load(['--backend-sasl-username', 'proxy', '--backend-sasl-password-file', file]);
    expect(saslCredentials(c.backendSasl, 'backendSasl')).toEqual({ username: 'proxy', password: 'two words\n' });
    expect(saslFiles(c)).toEqual([file]);
    writeFileSync(file, '\n');
    expect(errorOf(() => saslCredentials(c.backendSasl, 'backendSasl')).message).toBe(`backendSasl.passwordFile: ${JSON.stringify(file)} is empty`);
    const missing = load(['--backend-sasl-username', 'proxy', '--backend-sasl-password-file', join(dir, 'nope')]);
    expect(errorOf(() => saslCredentials(missing.backendSasl, 'backendSasl')).message).toMatch(/cannot read .*\(ENOENT\)$/);
  });

  it('from the config file, from a named variable', () => {
    const c = load([], 'backendSasl:\n  username: proxy\n  password: "p:w d"\nclientSasl:\n  username: app\n  passwordEnv: APP_PW\n');
    expect(saslCredentials(c.backendSasl, 'backendSasl')).toEqual({ username: 'proxy', password: 'p:w d' });
    expect(saslCredentials(c.clientSasl, 'clientSasl', { APP_PW: 'x' })).toEqual({ username: 'app', password: 'x' });
  });

  it('a flag source replaces the file source', () => {
    const c = load(['--backend-sasl-password-env', 'PW'], 'backendSasl:\n  username: proxy\n  password: "in-file"\n');
    expect(c.backendSasl).toMatchObject({ username: 'proxy', password: null, passwordEnv: 'PW' });
  });

  it('refuses a password on the command line, never quoting it', () => {
    for (const argv of [['--backend-sasl-password', 'hunter2'], ['--client-sasl-password=hunter2']]) {
      const e = errorOf(() => parseArgs(argv));
      expect(e).toBeInstanceOf(ConfigError);
      expect(e.message).toContain('a password is never taken on the command line');
      expect(e.message).not.toContain('hunter2');
    }
  });

  it('refuses two sources, a source without a user, and a password that is not a string, never quoting it', () => {
    const cases: Array<[string, string]> = [
      ['backendSasl:\n  username: u\n  password: "hunter2"\n  passwordEnv: X\n', 'r.yaml: backendSasl.passwordEnv: only one of password, passwordFile, passwordEnv may be given'],
      ['backendSasl:\n  password: "hunter2"\n', 'r.yaml: backendSasl.username: is needed with a SASL password'],
      ['clientSasl:\n  username: u\n  password: 12345678\n', 'r.yaml: clientSasl.password: must be a non-empty string (quote it in YAML), got a number'],
      ['backendSasl:\n  username: u\n  maxTtlSeconds: 0\n', 'r.yaml: backendSasl.maxTtlSeconds: must be an integer between 1 and 2592000, got 0'],
    ];
    for (const [yaml, message] of cases) {
      const e = errorOf(() => load([], yaml));
      expect(e.message).toBe(message);
      expect(e.message).not.toMatch(/hunter2|12345678/);
    }
    expect(errorOf(() => load(['--backend-sasl-password-file', 'f'])).message).toBe('--backend-sasl-username: is needed with a SASL password');
  });

  it("a reload's settings diff says a password changed, never what it was or became", () => {
    const a = load([], 'backendSasl:\n  username: u\n  password: "old-secret"\n');
    const b = load([], 'backendSasl:\n  username: u\n  password: "new-secret"\n');
    expect(settingsDiff(a, b)).toEqual({ 'backendSasl.password': { from: '[redacted]', to: '[redacted]' } });
    const c = load([], 'backendSasl:\n  username: u\n  passwordEnv: X\n');
    expect(settingsDiff(a, c)).toEqual({
      'backendSasl.password': { from: '[redacted]', to: null },
      'backendSasl.passwordEnv': { from: null, to: 'X' },
    });
  });
});
