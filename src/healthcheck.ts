// The image's HEALTHCHECK: takes replicached's own flags (the Dockerfile passes the same
// --config as its CMD), finds the metrics address in them and GETs /healthz there.
//   exit 0  /healthz answered 200
//   exit 1  it did not (or metrics are off, or on port 0, so there is nothing to ask)
//   exit 2  invalid flags or config file, as replicached itself would say

import { ConfigError, formatHostPort, loadConfig, parseArgs, type HostPort } from './config';

const TIMEOUT_MS = 2000;

function fail(message: string, code: number): never {
  process.stderr.write(`replicached healthcheck: ${message}\n`);
  process.exit(code);
}

function metricsAddress(argv: string[]): HostPort {
  try {
    const args = parseArgs(argv);
    if (args.kind !== 'run') return fail('takes replicached\'s flags (--config <file>, --metrics-listen ...)', 2);
    const { metricsListen } = loadConfig(args);
    if (metricsListen === null) return fail('metrics are off (metricsListen: off): nothing to check', 1);
    if (metricsListen.port === 0) return fail('metricsListen has port 0 (any free port): its port cannot be known', 1);
    return metricsListen;
  } catch (err) {
    if (err instanceof ConfigError) return fail(err.message, 2);
    throw err;
  }
}

/** The address to connect to: a wildcard listen address answers on loopback. */
function reachable({ host, port }: HostPort): HostPort {
  if (host === '0.0.0.0') return { host: '127.0.0.1', port };
  if (host === '::') return { host: '::1', port };
  return { host, port };
}

async function main(): Promise<void> {
  const at = formatHostPort(reachable(metricsAddress(process.argv.slice(2))));
  const url = `http://${at}/healthz`;
  const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) }).catch((err: Error) => fail(`${url}: ${err.message}`, 1));
  if (!res.ok) fail(`${url}: HTTP ${res.status}`, 1);
}

void main();
