// What the manual says that the code can confirm, checked against the code:
//   - the README's two commands are the ones .ci/run runs;
//   - the configuration table is the schema: every field of the YAML file (discovered by
//     feeding parseConfigText unknown fields) and every flag of --help, each once, nothing
//     else; each flag sets the field of its row; each default shown is resolveConfig's;
//   - every replicached_* metric the manual names exists, with the labels named;
//   - the exit statuses, messages and php.ini lines the README quotes are what
//     dist/cli.js does and prints;
//   - the apt-get line, the docker run line and the Kubernetes image agree with
//     scripts/ensure-deps.sh, the Dockerfile and examples/kubernetes;
//   - the README stays a manual: at most 25 KB.
// dist/ is built by `npm test`'s pretest.

import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ConfigError, HELP_TEXT, parseArgs, parseConfigText, resolveConfig, type ConfigLayer } from '../../src/config';
import { emptyLayer } from '../../src/config/layer';
import { listenError } from '../../src/listen-error';
import { createMetrics } from '../../src/metrics/registry';
import { VERSION } from '../../src/version';
import { codeSpans, fences, manualFiles, read, ROOT, section, tables, withoutFences } from './markdown';

/** Every TypeScript source of src/, joined: where the manual's quoted names, replies and log lines must stand. */
const sources = (function all(dir: string): string {
  return readdirSync(dir)
    .map((f) => path.join(dir, f))
    .map((f) => (statSync(f).isDirectory() ? all(f) : f.endsWith('.ts') ? readFileSync(f, 'utf8') : ''))
    .join('\n');
})(path.join(ROOT, 'src'));

const README = read('README.md');
const CLI = path.join(ROOT, 'dist', 'cli.js');

// ---- the two commands ------------------------------------------------------------

describe('the two commands', () => {
  test('are the ones .ci/run runs, in its order', () => {
    const ci = readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8');
    const run = [...new Set([...ci.matchAll(/npm install && npm [a-z]+/g)].map((m) => m[0]))];
    expect(run).toEqual(['npm install && npm start', 'npm install && npm test']);
    const block = fences(section(README, '## Two commands')).find((f) => f.lang === 'sh');
    const commands = block!.body
      .split('\n')
      .map((l) => l.replace(/#.*$/, '').trim())
      .filter(Boolean);
    expect(commands).toEqual(run);
  });
});

// ---- the configuration table -----------------------------------------------------

interface Row {
  key: string | null;
  flag: string | null;
  default: string;
}

/** The README's configuration table: exactly one table with a key and a flag column. */
function configTable(): Row[] {
  const found = tables(README).filter((t) => t.header[0] === 'key' && t.header[1] === 'flag');
  expect(found, 'one configuration table').toHaveLength(1);
  expect(tables(section(README, '## Configuration reference')).filter((t) => t.header[0] === 'key')).toHaveLength(1);
  const [table] = found;
  expect(table.header).toEqual(['key', 'flag', 'default', 'meaning']);
  return table.rows.map((cells) => {
    expect(cells, `row ${cells.join(' | ')}`).toHaveLength(4);
    const one = (cell: string): string | null => {
      if (cell === '—') return null;
      const spans = codeSpans(cell);
      expect(spans.length === 1 && cell === `\`${spans[0]}\``, `a cell of one code span or —: ${cell}`).toBe(true);
      return spans[0];
    };
    return { key: one(cells[0]), flag: one(cells[1]), default: cells[2] };
  });
}

const PROBE = '__probe__';

/** The fields parseConfigText knows at `at` (a path of names, '[]' for a list entry), or null for a leaf. */
function knownFieldsAt(at: string[]): string[] | null {
  let doc: unknown = { [PROBE]: 1 };
  for (let i = at.length - 1; i >= 0; i--) doc = at[i] === '[]' ? [doc] : { [at[i]]: doc };
  try {
    parseConfigText(stringify(doc), 'probe.yaml');
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const where = at.map((p) => (p === '[]' ? '[0]' : `.${p}`)).join('').replace(/^\./, '');
    if (err.field !== (where === '' ? PROBE : `${where}.${PROBE}`)) return null;
    const known = /unknown field \(known: ([^)]*)\)$/.exec(err.message);
    expect(known, err.message).not.toBeNull();
    return known![1].split(', ');
  }
  throw new Error(`parseConfigText accepted ${PROBE} at ${at.join('.')}`);
}

/** Every setting of the file, as `backend.connections`, `backends` and `backends[].weight`. */
function schemaKeys(at: string[] = []): string[] {
  const keys: string[] = [];
  for (const field of knownFieldsAt(at) ?? []) {
    const here = [...at, field];
    const name = here.join('.').replace(/\.\[\]/g, '[]');
    if (knownFieldsAt(here) !== null) {
      keys.push(...schemaKeys(here));
    } else if (knownFieldsAt([...here, '[]']) !== null) {
      keys.push(name, ...schemaKeys([...here, '[]']));
    } else keys.push(name);
  }
  return keys;
}

/** The settings a parsed command line set, as paths. */
function layerPaths(layer: ConfigLayer): string[] {
  const empty = emptyLayer(null) as unknown as Record<string, unknown>;
  const paths: string[] = [];
  for (const [name, value] of Object.entries(layer)) {
    if (name === 'source' || value === undefined) continue;
    const isGroup = typeof empty[name] === 'object' && empty[name] !== null;
    if (isGroup) for (const [sub, v] of Object.entries(value as object)) paths.push(...(v === undefined ? [] : [`${name}.${sub}`]));
    else paths.push(name);
  }
  return paths;
}

/** What `flag` sets: parsed alone, or with the first sample value it accepts. */
function pathsSetBy(flag: string): string[] {
  for (const argv of [[flag], [flag, '1'], [flag, '127.0.0.1:11211'], [flag, 'info'], [flag, 'memcached:x.*'], [flag, 'dns://memcached.test:11211']]) {
    try {
      const parsed = parseArgs(argv);
      return parsed.kind === 'run' ? layerPaths(parsed.flags) : [];
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
    }
  }
  throw new Error(`${flag}: no sample value accepted`);
}

function valueAt(config: unknown, key: string): unknown {
  return key.split('.').reduce<unknown>((v, part) => (v as Record<string, unknown> | undefined)?.[part], config);
}

describe('the configuration table', () => {
  const rows = configTable();
  const flagsInHelp = [...HELP_TEXT.matchAll(/^ {2}(--[a-z][a-z-]*)/gm)].map((m) => m[1]);

  test('lists every field of the config file once, and nothing else', () => {
    const keys = rows.flatMap((r) => (r.key === null ? [] : [r.key]));
    expect(new Set(keys).size, 'no key twice').toBe(keys.length);
    const schema = schemaKeys();
    expect(schema).toContain('backend.requestTimeoutMs'); // the discovery works
    expect([...keys].sort()).toEqual([...schema].sort());
  });

  test('lists every flag of --help once, and nothing else', () => {
    const flags = rows.flatMap((r) => (r.flag === null ? [] : [r.flag]));
    expect(new Set(flags).size, 'no flag twice').toBe(flags.length);
    expect(flagsInHelp.length).toBeGreaterThan(20);
    expect([...flags].sort()).toEqual([...flagsInHelp].sort());
  });

  test("each flag sets its row's field, and a flag with no field sets none", () => {
    for (const row of rows) {
      if (row.flag === null) continue;
      const set = pathsSetBy(row.flag);
      if (row.key === null) expect(set, row.flag).toEqual([]);
      else expect(set, `${row.flag} sets ${set.join(', ')}`).toContain(row.key.replace(/\[\]\..*$/, ''));
    }
  });

  test('each default shown is the one the code gives', () => {
    // With SASL users set, the password variables take their defaults.
    const flags = parseArgs(['--backend-sasl-username', 'u', '--client-sasl-username', 'u']);
    if (flags.kind !== 'run') throw new Error('unexpected');
    const config = resolveConfig(null, flags.flags, null);
    const entry = resolveConfig(parseConfigText('backends: ["127.0.0.1:1"]\n', 'probe.yaml'), emptyLayer(null), null).backends[0];
    const problems: string[] = [];
    let checked = 0;
    for (const row of rows) {
      // No default: what the probe itself set.
      if (row.key === null || row.key.endsWith('.username') || row.key === 'backends[].address') continue;
      const value = row.key.startsWith('backends[].') ? valueAt(entry, row.key.slice('backends[].'.length)) : valueAt(config, row.key);
      const cell = row.default.replace(/(\d),(\d)/g, '$1$2');
      let want: string | null = null;
      if (typeof value === 'number' || typeof value === 'boolean') want = String(value);
      else if (typeof value === 'string') want = value;
      else if (value !== null && typeof value === 'object' && 'host' in value && 'port' in value) want = `${value.host}:${value.port}`;
      if (want === null) continue;
      checked++;
      if (!codeSpans(cell).some((span) => span === want)) problems.push(`${row.key}: the code's default is ${want}, the table says ${row.default}`);
    }
    expect(problems).toEqual([]);
    expect(checked).toBeGreaterThan(25);
  });
});

// ---- metric names ------------------------------------------------------------------

describe('metric names in the manual', () => {
  const metrics = createMetrics();
  // A backend as the proxy opens one: its series start at 0.
  metrics.addBackend('127.0.0.1:1');
  metrics.backendRecorder('127.0.0.1:1');
  const registered = new Map(
    metrics.registry
      .getMetricsAsArray()
      .filter((m) => m.name.startsWith('replicached_'))
      .map((m) => [m.name, (m as unknown as { labelNames?: string[] }).labelNames ?? []]),
  );
  let exposition = '';
  beforeAll(async () => {
    exposition = await metrics.registry.metrics();
  });


  /** What is wrong with the replicached_* names of `text` (from `file`). */
  function problemsIn(file: string, text: string): string[] {
    const problems: string[] = [];
    for (const m of text.matchAll(/(STAT )?\b(replicached_[a-z0-9_]*)(<[a-z]+>)?(\{[^}\n]*\})?/g)) {
      const [, stat, name, template, labels] = m;
      if (name === 'replicached_') continue; // a file name (replicached_<version>_amd64.deb) or a glob (replicached_*)
      if (stat !== undefined) {
        // A `stats` line: a literal of src/, or a template's prefix.
        if (!sources.includes(template ? `\`${name}\${` : `'${name}'`)) problems.push(`${file}: STAT ${name}${template ?? ''} is not a stats line of src/`);
        continue;
      }
      if (template !== undefined) {
        problems.push(`${file}: ${name}${template}: write a stats line as "STAT ${name}${template}"`);
        continue;
      }
      const base = registered.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
      const labelNames = registered.get(base);
      if (labelNames === undefined) {
        problems.push(`${file}: ${name} is not in src/metrics/registry.ts`);
        continue;
      }
      if (labels === undefined) continue;
      for (const part of labels.slice(1, -1).split(',').map((p) => p.trim()).filter(Boolean)) {
        const label = /^([a-z_]+)\s*(=~|!=|!~|=)?\s*"?([^"]*)"?$/.exec(part);
        if (label === null || !(labelNames.includes(label[1]) || (label[1] === 'le' && name.endsWith('_bucket')))) {
          problems.push(`${file}: ${name} has no label ${part} (labels: ${labelNames.join(', ')})`);
          continue;
        }
        // A value given exactly: some series of the metric has it (every series is exported from the start).
        const value = label[3];
        if (label[2] === '=' && !/[|*$]/.test(value) && !new RegExp(`^${base}(_bucket)?\\{[^}]*\\b${label[1]}="${value}"`, 'm').test(exposition)) {
          problems.push(`${file}: ${name}{${label[1]}="${value}"}: no such series`);
        }
      }
    }
    return problems;
  }

  test.each(manualFiles().filter((f) => f !== 'CHANGELOG.md'))('%s names only metrics that exist, with their labels', (file) => {
    expect(problemsIn(file, read(file))).toEqual([]);
  });

  test('the check finds a wrong name, label, label value or stats line', () => {
    const wrong = [
      'replicached_backend_upp',
      'replicached_backend_up{reason}',
      'replicached_backend_errors_total{reason="nope"}',
      'STAT replicached_nope',
      'replicached_backend_<i>',
    ];
    expect(problemsIn('text', wrong.join(', '))).toHaveLength(wrong.length);
    const right = 'replicached_backend_up{backend}, replicached_backend_errors_total{reason="auth"}, STAT replicached_resync_<i>, replicached_request_duration_seconds_bucket';
    expect(problemsIn('text', right)).toEqual([]);
  });

  test('every metric is in the table of docs/operations.md', () => {
    const table = tables(section(read('docs/operations.md'), '## Metrics'))[0];
    const named = new Set(table.rows.flatMap((r) => codeSpans(r[0]).map((s) => s.replace(/\{.*$/, ''))));
    expect(registered.size).toBeGreaterThan(25);
    expect([...registered.keys()].filter((n) => !named.has(n))).toEqual([]);
  });
});

// ---- quoted replies and log lines -------------------------------------------------

describe('replies and log lines the manual quotes', () => {
  const manual = manualFiles()
    .filter((f) => f !== 'CHANGELOG.md')
    .map((f) => ({ file: f, spans: codeSpans(withoutFences(read(f))) }));

  test('every error reply quoted (SERVER_ERROR, CLIENT_ERROR, ERROR ...) is one the code sends', () => {
    const quotedReplies = manual.flatMap(({ file, spans }) => spans.filter((s) => /^(SERVER_ERROR|CLIENT_ERROR|ERROR|Error) /.test(s)).map((s) => ({ file, s })));
    expect(quotedReplies.length).toBeGreaterThan(10);
    expect(quotedReplies.filter(({ s }) => !sources.includes(s)).map(({ file, s }) => `${file}: ${s}`)).toEqual([]);
  });

  // The log lines an operator is told to look for: each is quoted in the manual and logged by src/.
  const LOG_LINES = [
    'no backends configured: started local memcached processes',
    'backend up',
    'backend down',
    'backend down: SASL authentication refused; check backendSasl',
    'resync finished',
    'backend state change',
    'config reload: settings changed',
  ];
  test.each(LOG_LINES)('log line "%s": quoted in the manual, logged by src/', (line) => {
    const quotes = manual.filter(({ spans }) => spans.some((s) => s === line || s === `"msg":"${line}"`));
    expect(quotes.length, 'quoted somewhere').toBeGreaterThan(0);
    expect(sources).toMatch(new RegExp(`logger\\.\\w+\\([^;]*'${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`));
  });
});

// ---- exit statuses, messages, php.ini --------------------------------------------

/** Runs the CLI to its exit. */
function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** The README's quoted line that starts with `prefix`. */
function quoted(prefix: string): string {
  const line = fences(section(README, '## Two commands'))
    .flatMap((f) => f.body.split('\n'))
    .find((l) => l.startsWith(prefix));
  expect(line, `a quoted line starting "${prefix}"`).toBeDefined();
  return line!;
}

describe('exit statuses and messages', () => {
  test('the README names 0, 1 and 2', () => {
    expect(withoutFences(section(README, '## Two commands'))).toMatch(/\*\*Exit status:\*\* 0 [^]*?, 1 [^]*?, 2 for an invalid flag or config file/);
  });

  test('an invalid flag: status 2 and the quoted message', () => {
    const run = cli(['--backends', '127.0.0.1:1,127.0.0.1:2,127.0.0.1:3', '--replicas', '5']);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(`${quoted('replicached: --replicas:')}\n`);
  });

  describe('a port in use', () => {
    let held: net.Server;
    let port: number;
    beforeAll(async () => {
      held = net.createServer();
      await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
      port = (held.address() as net.AddressInfo).port;
    });
    afterAll(() => {
      held.close();
    });

    test('status 1, and the message the README quotes for 11211', () => {
      const run = cli(['--backends', '127.0.0.1:1', '--listen', `127.0.0.1:${port}`, '--metrics-listen', 'off']);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(new RegExp(`^replicached: cannot listen for clients on 127\\.0\\.0\\.1:${port}: another process holds that port`));
      const on11211 = listenError(Object.assign(new Error('in use'), { code: 'EADDRINUSE' }), 'client', { host: '127.0.0.1', port: 11211 });
      expect(quoted('replicached: cannot listen')).toBe(`replicached: ${(on11211 as Error).message}`);
    });
  });

  test('--version: status 0, "replicached <version>"', () => {
    const run = cli(['--version']);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`replicached ${VERSION}\n`);
    expect(README).toContain('`replicached <version>`');
  });

  test('a SIGTERM: status 0; the start-up hint prints the php.ini lines of the README', async () => {
    const child = spawn(process.execPath, [CLI, '--listen', '127.0.0.1:0', '--backends', '127.0.0.1:1', '--metrics-listen', 'off', '--drain-timeout', '0']);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (/session\.save_path = "tcp:\/\//.test(stderr)) resolve();
      };
      child.stderr.on('data', check);
      void exited.then(() => reject(new Error(`exited before listening:\n${stderr}`)));
    });
    const port = /replicached listening on 127\.0\.0\.1:(\d+)/.exec(stderr)![1];
    child.kill('SIGTERM');
    expect(await exited).toBe(0);

    const hint = new Set(stderr.split('\n').map((l) => l.trim()));
    const ini = fences(section(README, '## php.ini')).filter((f) => f.lang === 'ini');
    expect(ini).toHaveLength(2);
    const lines = ini.flatMap((f) => f.body.split('\n').filter(Boolean));
    expect(lines).toHaveLength(4);
    for (const line of lines) expect(hint, line).toContain(line.replace('11211', port));
  });
});

// ---- install lines and examples --------------------------------------------------

describe('install lines and examples', () => {
  test('the apt-get line names exactly what scripts/ensure-deps.sh installs', () => {
    const script = readFileSync(path.join(ROOT, 'scripts', 'ensure-deps.sh'), 'utf8');
    const installs = [...script.matchAll(/pkgs\+=\(([^)]*)\)/g)].flatMap((m) => m[1].trim().split(/\s+/));
    const line = fences(section(README, '## Two commands'))
      .flatMap((f) => f.body.split('\n'))
      .find((l) => l.startsWith('apt-get install '));
    expect(line).toBeDefined();
    const named = line!.replace('apt-get install ', '').trim().split(/\s+/);
    expect(named).toContain('sasl2-bin');
    expect([...named].sort()).toEqual([...new Set(installs)].sort());
  });

  test('the docker run line is the Dockerfile\'s, which scripts/check-dockerfile.sh runs', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    const run = /^#\s+run:\s+(docker run .*)$/m.exec(dockerfile)![1];
    const block = fences(section(README, '### Docker')).find((f) => f.lang === 'sh');
    expect(block!.body.split('\n')).toContain(run);
  });

  test('the Kubernetes snippet names the image of examples/kubernetes', () => {
    const example = readFileSync(path.join(ROOT, 'examples', 'kubernetes', 'web-with-replicached.yaml'), 'utf8');
    /** The image of each container named replicached: the first `image:` after its `- name:` line. */
    const imageOf = (text: string): string[] => {
      const lines = text.split('\n');
      return lines.flatMap((line, i) => {
        if (!/- name: replicached\s*$/.test(line)) return [];
        const image = lines.slice(i + 1).find((l) => /^\s*image:/.test(l));
        return image === undefined ? [] : [/^\s*image:\s*(\S+)/.exec(image)![1]];
      });
    };
    expect(imageOf(example)).toHaveLength(1);
    const snippet = fences(section(README, '### Compose and Kubernetes'))
      .filter((f) => f.lang === 'yaml')
      .map((f) => f.body)
      .join('\n');
    expect(imageOf(snippet)).toEqual(imageOf(example));
  });
});

describe('the README', () => {
  test('is a manual: at most 25 KB', () => {
    expect(Buffer.byteLength(README)).toBeLessThanOrEqual(25 * 1024);
  });
});
