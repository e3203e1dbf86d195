// From the SASL settings of the config to the credentials themselves: the password
// is read from the config, its file or its environment variable at start (a
// missing one stops the proxy from starting) and again on every reload (a rotated
// password file is picked up). The password never reaches a log line: errors name
// where it was looked for, never what was found, and a reload's debug diff
// shows only that it changed (settingsDiff in reload.ts).

import { readFileSync } from 'node:fs';
import type { SaslPlain } from './backends/codec';
import type { Config, SaslConfig } from './config';

export type SaslSide = 'backendSasl' | 'clientSasl';

/** The password cannot be read: at start the proxy does not start; on reload the reload is refused. */
export class SaslCredentialError extends Error {
  constructor(
    readonly side: SaslSide,
    message: string,
  ) {
    super(message);
  }
}

/** The credentials, or null when SASL is off on that side. Throws SaslCredentialError. */
export function saslCredentials(cfg: SaslConfig, side: SaslSide, env: NodeJS.ProcessEnv = process.env): SaslPlain | null {
  if (cfg.username === null) return null;
  return { username: cfg.username, password: password(cfg, side, env) };
}

function password(cfg: SaslConfig, side: SaslSide, env: NodeJS.ProcessEnv): string {
  if (cfg.password !== null) return cfg.password;
  if (cfg.passwordFile !== null) {
    let text: string;
    try {
      text = readFileSync(cfg.passwordFile, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new SaslCredentialError(side, `${side}.passwordFile: cannot read ${JSON.stringify(cfg.passwordFile)} (${code})`);
    }
    const value = text.replace(/\r?\n$/, '');
    if (value === '') throw new SaslCredentialError(side, `${side}.passwordFile: ${JSON.stringify(cfg.passwordFile)} is empty`);
    return value;
  }
  const name = cfg.passwordEnv ?? '';
  const value = env[name];
  if (value === undefined || value === '') {
    throw new SaslCredentialError(side, `${side}: the environment variable ${name} holding the password is not set`);
  }
  return value;
}

/** Every password file the config uses, to be watched for changes. */
export function saslFiles(config: Pick<Config, 'backendSasl' | 'clientSasl'>): string[] {
  return [config.backendSasl, config.clientSasl].flatMap((c) => (c.username !== null && c.passwordFile !== null ? [c.passwordFile] : []));
}

/** The same credentials (a reload re-creates the backends when they change). */
export function sameCredentials(a: SaslPlain | null, b: SaslPlain | null): boolean {
  if (a === null || b === null) return a === b;
  return a.username === b.username && a.password === b.password;
}
