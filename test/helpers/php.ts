// Drives the real PHP CLI with its real session handlers against a memcached-speaking
// address (replicached, or a plain memcached). Every setting that matters is passed with
// -d, so no php.ini is relied on (the extensions themselves are loaded by conf.d).
//
//   runPhp(kind, script, args, { port })  ->  php -d ... test/php/<script> key=value ...
//                                          <-  { exitCode, stdout, stderr, json, timedOut }
//
// The scripts print a one-line JSON summary last; the wrappers below turn it into a
// PhpReport whose `problems` lists everything a test should treat as a failure of PHP
// itself: caught warnings/notices/errors, failed session calls, stderr output, a bad exit.
import { spawn } from 'node:child_process';
import path from 'node:path';

/** The PHP session clients the proxy must serve. */
export type PhpClientKind =
  | 'memcached-binary' // php-memcached, default settings: binary protocol, locking on
  | 'memcached-text' // php-memcached with memcached.sess_binary_protocol=0
  | 'memcache' // pecl-memcache, default (ascii) protocol
  | 'memcache-binary'; // pecl-memcache with memcache.protocol=binary

export const PHP_CLIENT_KINDS: readonly PhpClientKind[] = [
  'memcached-binary',
  'memcached-text',
  'memcache',
  'memcache-binary',
];

export type PhpScript = 'write_sessions.php' | 'read_sessions.php' | 'increment_counter.php';

export interface PhpRunOptions {
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Extra or overriding ini settings, applied last. */
  ini?: Record<string, string | number>;
  /** Kill PHP (SIGKILL) after this long. Default 20 s. */
  timeoutMs?: number;
}

export interface PhpRunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** The script's summary (last stdout line), or null when it printed none. */
  json: unknown;
}

const PHP_DIR = path.resolve(__dirname, '..', 'php');

/** Settings shared by every kind: errors to stderr (never mixed into stdout), no cookies/headers, no GC. */
const BASE_INI: Record<string, string | number> = {
  error_reporting: 32767, // E_ALL
  display_errors: 'stderr',
  display_startup_errors: 1,
  log_errors: 0,
  html_errors: 0,
  memory_limit: '256M',
  max_execution_time: 0,
  'session.auto_start': 0,
  'session.use_cookies': 0,
  'session.use_only_cookies': 0,
  'session.use_trans_sid': 0,
  'session.use_strict_mode': 0,
  'session.cache_limiter': '',
  'session.serialize_handler': 'php',
  'session.lazy_write': 1,
  'session.gc_probability': 0,
  'session.gc_maxlifetime': 1440,
};

/** The ini settings that make PHP's session module talk to host:port as this kind of client. */
export function sessionIni(kind: PhpClientKind, host: string, port: number): Record<string, string | number> {
  switch (kind) {
    case 'memcached-binary':
    case 'memcached-text':
      return {
        'session.save_handler': 'memcached',
        'session.save_path': `${host}:${port}`,
        'memcached.sess_binary_protocol': kind === 'memcached-binary' ? 1 : 0,
        'memcached.sess_locking': 1,
      };
    case 'memcache':
    case 'memcache-binary':
      return {
        'session.save_handler': 'memcache',
        'session.save_path': `tcp://${host}:${port}`,
        'memcache.protocol': kind === 'memcache-binary' ? 'binary' : 'ascii',
      };
  }
}

/**
 * Lock polling for the concurrency test. php-memcached waits min, 2*min, ... up to max ms
 * between `retries` lock attempts (defaults 150/150/5: slow, and gives up after 0.75 s).
 * Here: 2 ms doubling to 20 ms, 500 attempts, i.e. gives up after about 10 s.
 */
export const FAST_LOCK_INI: Record<string, number> = {
  'memcached.sess_lock_wait_min': 2,
  'memcached.sess_lock_wait_max': 20,
  'memcached.sess_lock_retries': 500,
};

export function phpArgv(
  kind: PhpClientKind,
  script: PhpScript,
  args: Record<string, string | number>,
  opts: PhpRunOptions,
): string[] {
  const ini = { ...BASE_INI, ...sessionIni(kind, opts.host ?? '127.0.0.1', opts.port), ...opts.ini };
  const argv: string[] = [];
  for (const [name, value] of Object.entries(ini)) argv.push('-d', `${name}=${value}`);
  argv.push(path.join(PHP_DIR, script));
  for (const [name, value] of Object.entries(args)) argv.push(`${name}=${value}`);
  return argv;
}

/** Run one PHP script; never rejects except when `php` cannot be spawned at all. */
export function runPhp(
  kind: PhpClientKind,
  script: PhpScript,
  args: Record<string, string | number>,
  opts: PhpRunOptions,
): Promise<PhpRunResult> {
  const argv = phpArgv(kind, script, args, opts);
  return new Promise((resolve, reject) => {
    const child = spawn('php', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 20_000);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      resolve({ exitCode, signal, timedOut, stdout, stderr: Buffer.concat(err).toString('utf8'), json: lastJsonLine(stdout) });
    });
  });
}

function lastJsonLine(stdout: string): unknown {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  const last = lines[lines.length - 1];
  if (last === undefined) return null;
  try {
    return JSON.parse(last) as unknown;
  } catch {
    return null;
  }
}

/** What a session script reports, plus what the harness saw of the process. */
export interface PhpReport {
  kind: PhpClientKind;
  /** Sessions written / read back intact / increments done. */
  ok: number;
  /** Read: ids whose session came back empty. */
  missing: string[];
  /** Read: ids whose session came back different, and how. */
  mismatches: { id: string; reason: string }[];
  /** session_start / session_write_close calls that returned false ("id: what"). */
  errors: string[];
  /** Every warning, notice, deprecation or error PHP raised, as caught by the script. */
  warnings: string[];
  /** Increment: the counter after the last increment (or as read, with times=0). */
  counter: number | null;
  /** The slowest single session_start .. session_write_close, in ms (informational). */
  maxMs: number;
  /** Increment: each one done, when it began (ms since the epoch, wall clock) and how long it took (ms). */
  requests: Array<{ at: number; ms: number }>;
  exitCode: number | null;
  stderr: string;
  /** Everything that should fail a test: warnings, errors, stderr, bad exit, timeout. Empty when PHP was happy. */
  problems: string[];
}

interface RawSummary {
  ok?: unknown;
  missing?: unknown;
  mismatches?: unknown;
  errors?: unknown;
  warnings?: unknown;
  counter?: unknown;
  maxMs?: unknown;
  requests?: unknown;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.map((x) => String(x)) : [];
}

function toReport(kind: PhpClientKind, r: PhpRunResult): PhpReport {
  if (r.json === null || typeof r.json !== 'object') {
    const why = r.timedOut ? 'timed out' : `exited ${r.exitCode ?? r.signal}`;
    throw new Error(`php (${kind}) ${why} without a summary\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  const s = r.json as RawSummary;
  const mismatches = Array.isArray(s.mismatches)
    ? s.mismatches.map((m: { id?: unknown; reason?: unknown }) => ({ id: String(m.id), reason: String(m.reason) }))
    : [];
  const report: PhpReport = {
    kind,
    ok: typeof s.ok === 'number' ? s.ok : 0,
    missing: strings(s.missing),
    mismatches,
    errors: strings(s.errors),
    warnings: strings(s.warnings),
    counter: typeof s.counter === 'number' ? s.counter : null,
    maxMs: typeof s.maxMs === 'number' ? s.maxMs : 0,
    requests: Array.isArray(s.requests) ? s.requests.map((r: unknown) => (Array.isArray(r) ? { at: Number(r[0]), ms: Number(r[1]) } : { at: 0, ms: 0 })) : [],
    exitCode: r.exitCode,
    stderr: r.stderr,
    problems: [],
  };
  report.problems = [
    ...report.warnings,
    ...report.errors,
    ...r.stderr.split('\n').filter((l) => l.trim() !== '').map((l) => `stderr: ${l}`),
    ...(r.timedOut ? ['timed out'] : []),
    ...(r.exitCode !== 0 ? [`exit code ${r.exitCode ?? r.signal}`] : []),
  ];
  return report;
}

export interface SessionsOptions {
  port: number;
  host?: string;
  /** Session ids are `${prefix}${index padded to 6 digits}`; prefix: letters, digits, '-' or ','. */
  prefix: string;
  count: number;
  /** First index. Default 0. */
  start?: number;
  /** Generation: the payload depends on it, so a rewrite with gen+1 is distinguishable. Default 1. */
  gen?: number;
  /** Payload bytes per session (raw binary). Default 4096. */
  size?: number;
  ini?: Record<string, string | number>;
  timeoutMs?: number;
}

function sessionArgs(o: SessionsOptions): Record<string, string | number> {
  if (!/^[A-Za-z0-9,-]+$/.test(o.prefix)) throw new Error(`session id prefix not allowed by PHP: ${o.prefix}`);
  return { prefix: o.prefix, count: o.count, start: o.start ?? 0, gen: o.gen ?? 1, size: o.size ?? 4096 };
}

function runOpts(o: { port: number; host?: string; ini?: Record<string, string | number>; timeoutMs?: number }): PhpRunOptions {
  return { port: o.port, host: o.host, ini: o.ini, timeoutMs: o.timeoutMs };
}

/** Write `count` sessions, each with the content read_sessions.php expects for the same prefix/gen/size. */
export async function writeSessions(kind: PhpClientKind, o: SessionsOptions): Promise<PhpReport> {
  return toReport(kind, await runPhp(kind, 'write_sessions.php', sessionArgs(o), runOpts(o)));
}

/** Read `count` sessions back and compare each exactly (ok + missing + mismatches + failed reads = count). */
export async function readSessions(kind: PhpClientKind, o: SessionsOptions): Promise<PhpReport> {
  return toReport(kind, await runPhp(kind, 'read_sessions.php', sessionArgs(o), runOpts(o)));
}

export interface CounterOptions {
  port: number;
  host?: string;
  id: string;
  /** Increments to do; 0 only reads the counter. */
  times: number;
  /** Sleep while holding the session (the window a broken lock would lose an update in). Default 1 ms. */
  holdMs?: number;
  /** Sleep between increments. Default 1 ms. */
  pauseMs?: number;
  /** Applied after FAST_LOCK_INI. */
  ini?: Record<string, string | number>;
  timeoutMs?: number;
}

/** Increment $_SESSION['counter'] `times` times, one locked session per increment, with fast lock polling. */
export async function incrementCounter(kind: PhpClientKind, o: CounterOptions): Promise<PhpReport> {
  if (!/^[A-Za-z0-9,-]+$/.test(o.id)) throw new Error(`session id not allowed by PHP: ${o.id}`);
  const args = { id: o.id, times: o.times, holdMs: o.holdMs ?? 1, pauseMs: o.pauseMs ?? 1 };
  const ini = { ...FAST_LOCK_INI, ...o.ini };
  return toReport(kind, await runPhp(kind, 'increment_counter.php', args, { ...runOpts(o), ini }));
}

/** The session's counter (null when the session or its counter does not exist). */
export async function readCounter(kind: PhpClientKind, o: Omit<CounterOptions, 'times'>): Promise<PhpReport> {
  return incrementCounter(kind, { ...o, times: 0 });
}

export interface ConcurrentIncrementsResult {
  /** 1 (the priming increment) + ports.length * times. */
  expected: number;
  /** The counter read back at the end (null if it could not be read). */
  counter: number | null;
  /** The incrementing processes' reports, one per port, then the final read's. */
  reports: PhpReport[];
  /** Every report's problems, prefixed with the port it ran against. */
  problems: string[];
}

/**
 * One PHP process per port (e.g. one per replicached sidecar) increments the same session
 * `times` times, all at once; then the counter is read back through ports[0].
 * The session is first primed with one increment through ports[0]: pecl-memcache's binary
 * mode takes its lock with an INCR that creates the lock key, and when two clients create
 * it at the same instant memcached answers one of them NOT_STORED, which that client then
 * mishandles (a write warning and a lost update, about 1 run in 20 against plain
 * memcached). Priming keeps that client bug out of a test of the lock itself.
 */
export async function concurrentIncrements(
  kind: PhpClientKind,
  o: Omit<CounterOptions, 'port'> & { ports: number[] },
): Promise<ConcurrentIncrementsResult> {
  const { ports, ...rest } = o;
  const first = ports[0];
  if (first === undefined) throw new Error('concurrentIncrements needs at least one port');
  const prime = await incrementCounter(kind, { ...rest, port: first, times: 1 });
  const runs = await Promise.all(ports.map((port) => incrementCounter(kind, { ...rest, port })));
  const final = await readCounter(kind, { ...rest, port: first });
  const reports = [prime, ...runs, final];
  const portsOf = [first, ...ports, first];
  return {
    expected: 1 + ports.length * o.times,
    counter: final.counter,
    reports: [...runs, final],
    problems: reports.flatMap((r, i) => r.problems.map((p) => `port ${portsOf[i]}: ${p}`)),
  };
}
