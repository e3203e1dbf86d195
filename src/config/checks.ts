// Value checks shared by the YAML file and the command line, with each numeric
// field's range in one table. A check returns the value or the problem; the
// caller names the field. `text` is true for a flag: its value is a string
// whose digits are the number, and the message quotes what was typed.

import type { Limits } from '../protocol/limits';
import { parseLockPattern } from '../locks/patterns';
import { parseBackendsFrom, parseDnsServer, parseHostPort, type Parsed } from './address';
import { LOG_LEVELS, type BackendOptions, type BackendsFrom, type HostPort, type LogLevel } from './types';

/** setTimeout's ceiling (2^31-1 ms); also a sane ceiling for every count. */
const MAX_INT = 2_147_483_647;

export interface Range {
  min: number;
  max: number;
}

export const BACKEND_OPTION_RANGES: Readonly<Record<keyof BackendOptions, Range>> = {
  connections: { min: 1, max: 64 },
  connectTimeoutMs: { min: 1, max: MAX_INT },
  requestTimeoutMs: { min: 1, max: MAX_INT },
  failureLimit: { min: 1, max: MAX_INT },
  timeoutLimit: { min: 1, max: MAX_INT },
  probeIntervalMs: { min: 1, max: MAX_INT },
  retryMaxMs: { min: 1, max: MAX_INT },
  upAfterProbes: { min: 1, max: MAX_INT },
};

export const LIMIT_RANGES: Readonly<Record<keyof Limits, Range>> = {
  // The backend codec cannot carry a longer key: memcached's KEY_MAX_LENGTH.
  maxKeyLength: { min: 1, max: 250 },
  // memcached's own ceiling for -I.
  maxItemSize: { min: 1, max: 1024 * 1024 * 1024 },
  // A storage command with a 250-byte key and every field at its widest fits in 512.
  maxLineLength: { min: 512, max: 16 * 1024 * 1024 },
  maxKeysPerGet: { min: 1, max: MAX_INT },
  maxInflightPerClient: { min: 1, max: MAX_INT },
  maxClientOutputBytes: { min: 1, max: MAX_INT },
  maxClientConnections: { min: 1, max: MAX_INT },
  clientIdleTimeoutMs: { min: 0, max: MAX_INT },
};

/** A copy's TTL and the distrust after a return (see BackendSaslConfig); memcached's relative ceiling is 30 days. */
export const SASL_MAX_TTL_RANGE: Range = { min: 1, max: 60 * 60 * 24 * 30 };

export const WORKERS_RANGE: Range = { min: 1, max: 256 };
/** 0: requests in flight finish, then clients are closed at once. */
export const DRAIN_TIMEOUT_RANGE: Range = { min: 0, max: MAX_INT };
export const WEIGHT_RANGE: Range = { min: 1, max: 1000 };
/** The bounds of DNS re-resolution: never more than ten queries a second. */
export const REFRESH_RANGE: Range = { min: 100, max: MAX_INT };

/** Replicas on their own; load.ts checks them against the number of backends. */
export const REPLICAS_RANGE: Range = { min: 1, max: MAX_INT };

/** How a value from the file is quoted in a message. */
export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

function got(v: unknown, text: boolean): string {
  return text ? JSON.stringify(v) : show(v);
}

export function describeRange({ min, max }: Range): string {
  if (max < MAX_INT) return `an integer between ${min} and ${max}`;
  return min === 0 ? 'a non-negative integer' : min === 1 ? 'a positive integer' : `an integer of at least ${min}`;
}

export function checkInteger(v: unknown, text: boolean, range: Range): Parsed<number> {
  const n = text ? (typeof v === 'string' && /^[0-9]{1,16}$/.test(v) ? Number(v) : NaN) : v;
  if (typeof n === 'number' && Number.isSafeInteger(n) && n >= range.min && n <= range.max) return { ok: true, value: n };
  return { ok: false, problem: `must be ${describeRange(range)}, got ${got(v, text)}` };
}

export function checkBoolean(v: unknown): Parsed<boolean> {
  if (typeof v === 'boolean') return { ok: true, value: v };
  return { ok: false, problem: `must be true or false, got ${show(v)}` };
}

export function checkLogLevel(v: unknown, text: boolean): Parsed<LogLevel> {
  const level = LOG_LEVELS.find((l) => l === v);
  if (level !== undefined) return { ok: true, value: level };
  return { ok: false, problem: `must be one of ${LOG_LEVELS.join(', ')}, got ${got(v, text)}` };
}

export function checkHostPort(v: unknown, minPort: 0 | 1): Parsed<HostPort> {
  if (typeof v !== 'string') return { ok: false, problem: `must be a "host:port" string, got ${show(v)}` };
  return parseHostPort(v, minPort);
}

const ZONE_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$/;

/** A zone's name: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit ("eu-west-1a", "rack-3"). */
export function checkZone(v: unknown): Parsed<string> {
  if (typeof v === 'string' && ZONE_NAME.test(v)) return { ok: true, value: v };
  return { ok: false, problem: `must be a zone name (1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit), got ${show(v)}` };
}

/**
 * Zones are all or nothing: a backend without one would be a zone of its own that nobody
 * meant. Returns the index of the first backend out of step with backends[0], or -1.
 */
export function zoneMismatch(backends: readonly { zone: string | null }[]): number {
  const zoned = backends[0]?.zone !== null;
  return backends.findIndex((b) => (b.zone !== null) !== zoned);
}

/** A listen address for the metrics endpoint, or "off" (null). */
export function checkMetricsListen(v: unknown): Parsed<HostPort | null> {
  if (v === 'off') return { ok: true, value: null };
  const parsed = checkHostPort(v, 0);
  if (parsed.ok) return parsed;
  return { ok: false, problem: `${parsed.problem} (or "off")` };
}

/** A file path or a TLS server name: a non-empty string without NUL bytes. */
export function checkText(v: unknown, what: string): Parsed<string> {
  if (typeof v === 'string' && v !== '' && !v.includes('\0')) return { ok: true, value: v };
  return { ok: false, problem: `must be ${what}, got ${show(v)}` };
}

/** A password: a non-empty string. The message never quotes the value. */
export function checkSecret(v: unknown): Parsed<string> {
  if (typeof v === 'string' && v !== '') return { ok: true, value: v };
  const what = typeof v === 'string' ? 'an empty string' : typeof v === 'object' || v === undefined ? show(v) : `a ${typeof v}`;
  return { ok: false, problem: `must be a non-empty string (quote it in YAML), got ${what}` };
}

/** Session lock patterns, each "<handler>:<prefix>*<suffix>" (src/locks/patterns.ts). */
export function checkLockPatterns(v: unknown): Parsed<string[]> {
  if (!Array.isArray(v)) return { ok: false, problem: `must be a list of "memcached:<prefix>*<suffix>" or "memcache:<prefix>*<suffix>", got ${show(v)}` };
  for (const [i, p] of v.entries()) {
    if (typeof p !== 'string') return { ok: false, problem: `entry ${i + 1} must be a string, got ${show(p)}` };
    const parsed = parseLockPattern(p);
    if (!parsed.ok) return { ok: false, problem: `entry ${i + 1}: ${parsed.problem}` };
  }
  return { ok: true, value: v as string[] };
}

export function checkBackendsFrom(v: unknown): Parsed<BackendsFrom> {
  if (typeof v !== 'string') return { ok: false, problem: `must be a "dns://<name>:<port>" or "dnssrv://<name>" string, got ${show(v)}` };
  return parseBackendsFrom(v);
}

/** DNS servers: a non-empty list of addresses (the file) or comma-separated text (the flag). */
export function checkDnsServers(v: unknown, text: boolean): Parsed<string[]> {
  const entries = text && typeof v === 'string' ? v.split(',').map((e) => e.trim()) : v;
  if (!Array.isArray(entries) || entries.length === 0) {
    return { ok: false, problem: `must be ${text ? 'comma-separated addresses' : 'a list of addresses'} ("10.96.0.10", "127.0.0.1:5353"), got ${got(v, text)}` };
  }
  const servers: string[] = [];
  for (const [i, entry] of entries.entries()) {
    const parsed = typeof entry === 'string' ? parseDnsServer(entry) : { ok: false as const, problem: `must be a string, got ${show(entry)}` };
    if (!parsed.ok) return { ok: false, problem: `entry ${i + 1}: ${parsed.problem}` };
    servers.push(parsed.value);
  }
  return { ok: true, value: servers };
}
