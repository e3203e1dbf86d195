// Runs libmemcached's conformance checker, memccapable, against host:port and parses its
// report. It FLUSHES the server: point it only at a proxy/backends owned by the test.
//
// Output format (libmemcached 1.1.x, src/bin/memcapable.cc): for each test, the name
// left-aligned in 40 columns on stdout, then "[pass]" or "[skip]" on stdout or "[FAIL]" on
// stderr; at the end "All tests passed" (stdout) or "N of M tests failed" (stderr); exit 0
// only when none failed. With -v the failed assertion ("\nfile.cc:LINE: expression") is
// printed to stdout, which is block-buffered, so it shows up after its "[FAIL]". Both streams
// are therefore read as one (2>&1), and a test's status is the first status token after
// its padded name.
import { spawn } from 'node:child_process';

export type MemccapableProtocol = 'ascii' | 'binary';

/** The tests memccapable 1.1.x runs, in order: 27 per protocol. */
export const MEMCCAPABLE_TESTS: Record<MemccapableProtocol, readonly string[]> = {
  ascii: [
    'version', 'quit', 'verbosity', 'set', 'set noreply', 'get', 'gets', 'mget', 'flush', 'flush noreply',
    'add', 'add noreply', 'replace', 'replace noreply', 'cas', 'cas noreply', 'delete', 'delete noreply',
    'incr', 'incr noreply', 'decr', 'decr noreply', 'append', 'append noreply', 'prepend', 'prepend noreply',
    'stat',
  ].map((t) => `ascii ${t}`),
  binary: [
    'noop', 'quit', 'quitq', 'set', 'setq', 'flush', 'flushq', 'add', 'addq', 'replace', 'replaceq',
    'delete', 'deleteq', 'get', 'getq', 'getk', 'getkq', 'incr', 'incrq', 'decr', 'decrq', 'version',
    'append', 'appendq', 'prepend', 'prependq', 'stat',
  ].map((t) => `binary ${t}`),
};

export interface MemccapableOptions {
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** memccapable's own per-I/O timeout (-t), seconds. Default 2 (its default). */
  ioTimeoutSec?: number;
  /** Run only this test (-T), e.g. 'binary getkq'. */
  test?: string;
  /** Kill it (SIGKILL) after this long. Default 25 s. */
  timeoutMs?: number;
}

export interface MemccapableResult {
  protocol: MemccapableProtocol;
  passed: string[];
  failed: string[];
  skipped: string[];
  /** Expected tests (MEMCCAPABLE_TESTS, or just opts.test) that got no status: crash, timeout. */
  notRun: string[];
  /** Every expected test passed, none failed, the tool exited 0. */
  allPassed: boolean;
  exitCode: number | null;
  timedOut: boolean;
  /** stdout and stderr, interleaved as written. */
  output: string;
}

export type MemccapableStatus = 'pass' | 'skip' | 'FAIL';

/** Every "name .. [status]" pair in memccapable's combined output, in order. Pure. */
export function parseMemccapable(output: string): { name: string; status: MemccapableStatus | null }[] {
  // A name is "ascii" or "binary" plus lowercase words, padded with spaces to 40 columns.
  // With -v it may directly follow the previous test's assertion text, so no ^ anchor.
  const nameRe = /(?:ascii|binary)(?: [a-z]+)+ +/g;
  const names: { name: string; end: number; start: number }[] = [];
  for (const m of output.matchAll(nameRe)) {
    if (m[0].length < 40) continue; // not padded: a word inside other text
    names.push({ name: m[0].trimEnd(), start: m.index, end: m.index + m[0].length });
  }
  return names.map((n, i) => {
    const until = i + 1 < names.length ? names[i + 1].start : output.length;
    const status = /\[(pass|skip|FAIL)\]/.exec(output.slice(n.end, until));
    return { name: n.name, status: status === null ? null : (status[1] as MemccapableStatus) };
  });
}

/** Run `memccapable -a` (ascii) or `-b` (binary) against host:port. Never rejects except when it cannot be spawned. */
export function runMemccapable(protocol: MemccapableProtocol, opts: MemccapableOptions): Promise<MemccapableResult> {
  const args = ['-h', opts.host ?? '127.0.0.1', '-p', String(opts.port), protocol === 'ascii' ? '-a' : '-b', '-v'];
  if (opts.ioTimeoutSec !== undefined) args.push('-t', String(opts.ioTimeoutSec));
  if (opts.test !== undefined) args.push('-T', opts.test);
  return new Promise((resolve, reject) => {
    // One pipe for both streams keeps names and statuses in the order they were written.
    const child = spawn('sh', ['-c', 'exec memccapable "$@" 2>&1', 'memccapable', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const chunks: Buffer[] = [];
    const shellErr: Buffer[] = []; // only the shell's own complaints (e.g. memccapable not installed)
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 25_000);
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => shellErr.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (exitCode) => {
      clearTimeout(timer);
      const output = Buffer.concat([...chunks, ...shellErr]).toString('utf8');
      const expected = opts.test !== undefined ? [opts.test] : MEMCCAPABLE_TESTS[protocol];
      const results = parseMemccapable(output);
      const named = (s: MemccapableStatus) => results.filter((r) => r.status === s).map((r) => r.name);
      const passed = named('pass');
      const failed = named('FAIL');
      const skipped = named('skip');
      const notRun = expected.filter((t) => !results.some((r) => r.name === t && r.status !== null));
      const allPassed =
        exitCode === 0 && !timedOut && failed.length === 0 && expected.every((t) => passed.includes(t));
      resolve({ protocol, passed, failed, skipped, notRun, allPassed, exitCode, timedOut, output });
    });
  });
}
