// What a client session needs from the rest of the proxy.

import type { Limits } from '../protocol/limits';
import type { Router, SaslPlain } from '../protocol/types';

export interface ServerContext {
  /** A router for one client connection: its requests take effect in the order it sent them. */
  connectionRouter(): Router;
  limits: Limits;
  /** The version clients are told (`version`, binary VERSION). */
  version: string;
  /** flush_all wipes every user's session cluster-wide; it can be turned off. */
  allowFlushAll: boolean;
  /** Whether a key reaches the backends byte for byte (their codec's rule); a binary key that cannot is refused. */
  canCarryKey(key: Buffer): boolean;
  /** The user binary clients must authenticate as (SASL PLAIN); null: no SASL, as memcached without -S. */
  clientSasl: SaslPlain | null;
  /** The proxy's own figures for `stats`, in memcached's STAT name/value form. */
  stats(): Array<[string, string | number | bigint]>;
  /** `stats reset`: the proxy's cumulative figures start again from zero. */
  resetStats(): void;
  /** `stats locks`: the PHP session locks seen, and the sessions waited on longest in the last minute. */
  lockStats(): Array<[string, string | number]>;
  /** `stats settings`: the proxy's own settings. */
  settings(): Array<[string, string | number]>;
  /** `stats <group>` from every live backend, the answers of those that answered. */
  backendStats(group: string): Promise<Array<Map<string, string>>>;
  /** Counts a finished client command and its result, for `stats` and metrics; `startedMs` from performance.now(). */
  countCommand(command: string, result: string, startedMs: number): void;
  /** Counts a request the parser refused: answered with an error, or ending the connection. */
  countProtocolError(protocol: 'text' | 'binary', closes: boolean): void;
}
