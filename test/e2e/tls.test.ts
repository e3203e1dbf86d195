// TLS end to end: real memcached 1.6.18 in TLS mode (-Z) behind the proxy (dist/cli.js),
// with certificates made here by openssl: a test CA and a server certificate for
// 127.0.0.1/localhost it signed, and a rogue CA with its own server certificate.
//   - set/get through the proxy to TLS backends, verification on (--backend-tls-ca);
//   - a backend whose certificate the CA did not sign is refused: marked down, requests
//     go to the other replica; with --backend-tls-insecure it is used (encrypted only);
//   - a write given up on a hung (SIGSTOPped) TLS memcached never lands once it resumes;
//   - client TLS on the listen socket (--tls-cert/--tls-key), text and binary;
//   - reloads: a backendTls change is applied, a rotated certificate file is re-read without
//     a config edit (backend CA and client certificate), an unreadable file refuses the
//     reload; each counted in replicached_tls_reloads_total.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Backend } from '../../src/backends/backend';
import type { StoreRequest } from '../../src/routing/node';
import { freePort, waitStopped } from '../helpers/memcached';
import { startProxy, type ProxyProcess } from '../helpers/proxy';
import { timingClaim } from '../helpers/timing';
import { pollUntil, waitForOutput } from '../helpers/wait';
import { metricValue, scrape } from '../ops/support';

let dir = '';
const file = (name: string): string => path.join(dir, name);
const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

function openssl(args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

/** A CA named `ca` and a server certificate `name` it signed, for 127.0.0.1 and localhost. */
function makeCertificates(ca: string, name: string): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '1', '-subj', `/CN=${ca}`]);
  openssl(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=localhost']);
  writeFileSync(file(`${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`]);
}

interface TlsMemcached {
  address: string;
  port: number;
  child: ChildProcess;
}
const servers: TlsMemcached[] = [];
const proxies: ProxyProcess[] = [];

/** memcached -Z with the given certificate, on a free port; resolves once it answers over TLS. */
async function startTlsMemcached(cert: string, ca: string, extraArgs: string[] = []): Promise<TlsMemcached> {
  const port = await freePort();
  const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '16', '-t', '1', '-Z', ...extraArgs];
  args.push('-o', `ssl_chain_cert=${file(`${cert}.crt`)},ssl_key=${file(`${cert}.key`)}`);
  if (process.getuid?.() === 0) args.push('-u', 'root');
  const child = spawn('memcached', args, { stdio: 'ignore' });
  const server = { address: `127.0.0.1:${port}`, port, child };
  servers.push(server);
  // No deadline: a slow start is waited for (within the hook's timeout); one that fails exits.
  for (;;) {
    const reply = await tlsExchange(port, latin1('version\r\n'), latin1('\r\n'), readFileSync(file(`${ca}.crt`))).catch(() => null);
    if (reply?.toString('latin1').startsWith('VERSION ')) return server;
    if (child.exitCode !== null) throw new Error(`TLS memcached on ${port} exited (code ${child.exitCode}) before it answered`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Over TLS, verifying against `ca`: sends `bytes`, resolves with what came back once it ends with `until`. */
function tlsExchange(port: number, bytes: Buffer, until: Buffer, ca: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca });
    const parts: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no complete reply: ${JSON.stringify(Buffer.concat(parts).toString('latin1'))}`));
    }, 20_000); // only a guard: a handshake on a loaded machine may take seconds
    s.on('secureConnect', () => s.write(bytes));
    s.on('data', (d: Buffer) => {
      parts.push(d);
      const all = Buffer.concat(parts);
      if (all.length >= until.length && all.subarray(all.length - until.length).equals(until)) {
        clearTimeout(timer);
        s.destroy();
        resolve(all);
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Plain TCP: what comes back before the peer closes (every use here ends in a close; 20 s is only a guard). */
function plainExchange(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const parts: Buffer[] = [];
    const done = (): void => {
      s.destroy();
      resolve(Buffer.concat(parts));
    };
    const timer = setTimeout(done, 20_000);
    s.on('connect', () => s.write(bytes));
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      done();
    });
  });
}

function plainGetSet(port: number, key: string, value: string): Promise<Buffer> {
  const bytes = latin1(`set ${key} 3 0 ${value.length}\r\n${value}\r\nget ${key}\r\n`);
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const parts: Buffer[] = [];
    s.on('connect', () => s.write(bytes));
    s.on('data', (d: Buffer) => {
      parts.push(d);
      if (Buffer.concat(parts).toString('latin1').endsWith('END\r\n')) {
        s.destroy();
        resolve(Buffer.concat(parts));
      }
    });
    s.on('error', reject);
  });
}

/** The first line of the proxy's output matching `pattern`, waited for as long as the test allows. */
async function outputMatching(proxy: ProxyProcess, pattern: RegExp): Promise<string> {
  await waitForOutput(proxy.child, proxy.output, (text) => pattern.test(text));
  return pattern.exec(proxy.output())![0];
}

let good1: TlsMemcached;
let good2: TlsMemcached;
let rogue: TlsMemcached;
let ca: Buffer;
let rogueCa: Buffer;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'replicached-tls-'));
  makeCertificates('ca', 'server');
  makeCertificates('rogue-ca', 'rogue');
  ca = readFileSync(file('ca.crt'));
  rogueCa = readFileSync(file('rogue-ca.crt'));
  [good1, good2, rogue] = await Promise.all([
    startTlsMemcached('server', 'ca'),
    startTlsMemcached('server', 'ca'),
    startTlsMemcached('rogue', 'rogue-ca'),
  ]);
});

afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.stop()));
});

afterAll(async () => {
  for (const s of servers) s.child.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('TLS to the backends', () => {
  it('memcached -Z speaks only TLS on its port (so the tests below prove the proxy used TLS)', async () => {
    expect((await plainExchange(good1.port, latin1('version\r\n'))).toString('latin1')).not.toMatch(/^VERSION/);
  });

  it('a write given up on a hung TLS memcached never lands after SIGCONT: the TCP connection under TLS is reset', async () => {
    // As in test/backends/backend-failures.test.ts, over TLS: the part of a 1 MB set that the
    // hung memcached's socket did not take in waits in this side's send queue when the request
    // times out. Closed, that queue would still be delivered once memcached resumes, and the
    // abandoned write would land; reset, it is dropped.
    const hung = await startTlsMemcached('server', 'ca', ['-I', '2m']);
    const backend = new Backend(hung.address, { tls: { ca }, connectTimeoutMs: 5000, requestTimeoutMs: 1000, probeIntervalMs: 50, retryMaxMs: 400 });
    try {
      const item = (key: string, value: string): StoreRequest => ({ mode: 'set', key: latin1(key), value: latin1(value), flags: 0, exptime: 0, cas: 0n });
      expect((await backend.store(item('before', 'v'))).status).toBe('stored');
      hung.child.kill('SIGSTOP');
      await waitStopped(hung.child.pid ?? -1);
      expect(await backend.store(item('late', 'x'.repeat(1024 * 1024)))).toEqual({ status: 'failed', reason: expect.stringMatching(/timeout/) });
      const up = once(backend, 'up');
      hung.child.kill('SIGCONT');
      await up;
      expect((await backend.get(latin1('before'))).status).toBe('hit');
      expect((await backend.get(latin1('late'))).status).toBe('miss');
    } finally {
      hung.child.kill('SIGCONT');
      await backend.close();
    }
  });

  it('set/get through the proxy to two TLS backends, certificates verified against --backend-tls-ca', async () => {
    const proxy = await startProxy({
      backends: [good1.address, good2.address],
      replicas: 2,
      args: ['--backend-tls', '--backend-tls-ca', file('ca.crt')],
    });
    proxies.push(proxy);
    const reply = await plainGetSet(proxy.port, 'tls:a', 'over tls');
    expect(reply.toString('latin1')).toBe('STORED\r\nVALUE tls:a 3 8\r\nover tls\r\nEND\r\n');
    // Both replicas hold it, read back over TLS straight from memcached.
    for (const s of [good1, good2]) {
      const direct = await tlsExchange(s.port, latin1('get tls:a\r\n'), latin1('END\r\n'), ca);
      expect(direct.toString('latin1')).toBe('VALUE tls:a 3 8\r\nover tls\r\nEND\r\n');
    }
  });

  it('a backend whose certificate is not signed by the CA is refused: marked down, the other replica serves', async () => {
    const proxy = await startProxy({
      backends: [good1.address, rogue.address],
      replicas: 2,
      args: ['--backend-tls', '--backend-tls-ca', file('ca.crt')],
    });
    proxies.push(proxy);
    // The first requests find the rogue's connections failing the handshake.
    await plainGetSet(proxy.port, 'tls:warmup', 'x').catch(() => null);
    const down = await outputMatching(proxy, new RegExp(`"backend":"${rogue.address}","reason":"[^"]*","msg":"backend down"`));
    expect(down).toMatch(/UNABLE_TO_VERIFY|SELF_SIGNED|certificate/i);
    const reply = await plainGetSet(proxy.port, 'tls:b', 'failover');
    expect(reply.toString('latin1')).toBe('STORED\r\nVALUE tls:b 3 8\r\nfailover\r\nEND\r\n');
    // Nothing reached the rogue.
    const onRogue = await tlsExchange(rogue.port, latin1('get tls:b tls:warmup\r\n'), latin1('END\r\n'), rogueCa);
    expect(onRogue.toString('latin1')).toBe('END\r\n');
  });

  it('with --backend-tls-insecure the untrusted backend is used (encrypted, not authenticated)', async () => {
    const proxy = await startProxy({ backends: [rogue.address], replicas: 1, args: ['--backend-tls', '--backend-tls-insecure'] });
    proxies.push(proxy);
    await outputMatching(proxy, /"level":"warn".*without certificate verification \(insecure\)/);
    const reply = await plainGetSet(proxy.port, 'tls:c', 'insecure');
    expect(reply.toString('latin1')).toBe('STORED\r\nVALUE tls:c 3 8\r\ninsecure\r\nEND\r\n');
    const onRogue = await tlsExchange(rogue.port, latin1('get tls:c\r\n'), latin1('END\r\n'), rogueCa);
    expect(onRogue.toString('latin1')).toBe('VALUE tls:c 3 8\r\ninsecure\r\nEND\r\n');
  });

  it('a CA file that cannot be read stops the proxy from starting', async () => {
    await expect(
      startProxy({ backends: [good1.address], args: ['--backend-tls', '--backend-tls-ca', file('missing.crt')] }),
    ).rejects.toThrow(/backendTls\.caFile: cannot read/);
  });
});

describe('TLS for clients', () => {
  it('--tls-cert/--tls-key: text and binary clients over TLS; a plain client gets nothing', async () => {
    const proxy = await startProxy({
      backends: [good1.address, good2.address],
      replicas: 2,
      args: ['--backend-tls', '--backend-tls-ca', file('ca.crt'), '--tls-cert', file('server.crt'), '--tls-key', file('server.key')],
    });
    proxies.push(proxy);
    const text = await tlsExchange(proxy.port, latin1('set tls:d 0 0 2\r\nhi\r\nget tls:d\r\n'), latin1('END\r\n'), ca);
    expect(text.toString('latin1')).toBe('STORED\r\nVALUE tls:d 0 2\r\nhi\r\nEND\r\n');

    const noop = Buffer.alloc(24);
    noop[0] = 0x80;
    noop[1] = 0x0a;
    noop.writeUInt32BE(7, 12);
    const reply = Buffer.from(noop);
    reply[0] = 0x81;
    expect(await tlsExchange(proxy.port, noop, reply, ca)).toEqual(reply);

    expect((await plainExchange(proxy.port, latin1('version\r\n'))).toString('latin1')).not.toMatch(/VERSION/);
  });
});

describe('TLS changes on reload', () => {
  /** A proxy over good1 whose TLS settings come from a config file (no TLS flags: they would win over it). */
  async function configured(yaml: string): Promise<{ proxy: ProxyProcess; config: string }> {
    const config = file(`replicached-${Date.now()}.yaml`);
    writeFileSync(config, yaml);
    const proxy = await startProxy({ backends: [good1.address], replicas: 1, metrics: true, logLevel: 'info', args: ['--config', config] });
    proxies.push(proxy);
    return { proxy, config };
  }
  const backendTls = (caFile: string): string => `backendTls:\n  enabled: true\n  caFile: ${caFile}\n`;
  const tlsReloads = async (proxy: ProxyProcess, side: string, result: string): Promise<number> =>
    metricValue(await scrape(proxy.metricsPort!), 'replicached_tls_reloads_total', { side, result }) ?? -1;
  /** A set and get through the proxy; false when it closes the connection (its only backend is down). */
  const works = async (proxy: ProxyProcess, key: string): Promise<boolean> => {
    const reply = await plainExchange(proxy.port, latin1(`set ${key} 3 0 1\r\nv\r\nget ${key}\r\nquit\r\n`));
    return reply.toString('latin1') === `STORED\r\nVALUE ${key} 3 1\r\nv\r\nEND\r\n`;
  };

  it('a SIGHUP that changes backendTls applies it: every backend reconnects with the new CA', async () => {
    const { proxy, config } = await configured(backendTls(file('rogue-ca.crt')));
    expect(await works(proxy, 'tls:r0')).toBe(false);
    await outputMatching(proxy, /"msg":"backend down"/);
    expect(await tlsReloads(proxy, 'backend', 'applied')).toBe(0);

    writeFileSync(config, backendTls(file('ca.crt')));
    proxy.child.kill('SIGHUP');
    await outputMatching(proxy, /"backendTls":true.*"msg":"config reloaded"/);
    await pollUntil(() => works(proxy, 'tls:r1'), 20_000, 50, 'set/get never worked with the new CA');
    expect(await tlsReloads(proxy, 'backend', 'applied')).toBe(1);
  });

  it('a CA file rotated in place is re-read without a config edit or a signal', async () => {
    const caFile = file('rotating-ca.crt');
    copyFileSync(file('rogue-ca.crt'), caFile);
    const { proxy } = await configured(backendTls(caFile));
    expect(await works(proxy, 'tls:r2')).toBe(false);
    await outputMatching(proxy, /"msg":"backend down"/);

    copyFileSync(file('ca.crt'), caFile);
    await pollUntil(() => works(proxy, 'tls:r3'), 20_000, 100, 'the rotated CA file was never used');
    expect(proxy.output()).toMatch(/"trigger":"file".*"backendTls":true.*"msg":"config reloaded"/);
    expect(await tlsReloads(proxy, 'backend', 'applied')).toBe(1);
  });

  it('a certificate file that cannot be read refuses the whole reload; the running TLS settings stay', async () => {
    const { proxy, config } = await configured(`${backendTls(file('ca.crt'))}replicas: 1\n`);
    expect(await works(proxy, 'tls:r4')).toBe(true);
    writeFileSync(config, backendTls(file('missing-ca.crt')));
    proxy.child.kill('SIGHUP');
    await outputMatching(proxy, /"error":"backendTls\.caFile: cannot read .*missing-ca\.crt.*"msg":"config reload refused/);
    // (the file watcher may refuse the same edit a second time)
    expect(await tlsReloads(proxy, 'backend', 'refused')).toBeGreaterThanOrEqual(1);
    expect(metricValue(await scrape(proxy.metricsPort!), 'replicached_config_reloads_total', { result: 'error' })).toBeGreaterThanOrEqual(1);
    expect(await works(proxy, 'tls:r5')).toBe(true);
  });

  it('a client certificate and key that do not match (a rotation caught half done) refuse the reload', async () => {
    const clientTls = (key: string): string => `clientTls:\n  enabled: true\n  certFile: ${file('server.crt')}\n  keyFile: ${file(key)}\n`;
    const { proxy, config } = await configured(backendTls(file('ca.crt')) + clientTls('server.key'));
    writeFileSync(config, backendTls(file('ca.crt')) + clientTls('rogue.key'));
    proxy.child.kill('SIGHUP');
    await outputMatching(proxy, /"error":"clientTls: unusable certificate files: .*"msg":"config reload refused/);
    expect(await tlsReloads(proxy, 'client', 'refused')).toBeGreaterThanOrEqual(1);
    expect(await tlsReloads(proxy, 'client', 'applied')).toBe(0);
    const reply = await tlsExchange(proxy.port, latin1('version\r\n'), latin1('\r\n'), ca);
    expect(reply.toString('latin1')).toMatch(/^VERSION /);
  });

  it('a rotated client certificate is served to new connections', async () => {
    copyFileSync(file('server.crt'), file('listen.crt'));
    copyFileSync(file('server.key'), file('listen.key'));
    const clientTls = `clientTls:\n  enabled: true\n  certFile: ${file('listen.crt')}\n  keyFile: ${file('listen.key')}\n`;
    const { proxy } = await configured(backendTls(file('ca.crt')) + clientTls);
    const version = (trust: Buffer) => tlsExchange(proxy.port, latin1('version\r\n'), latin1('\r\n'), trust).then(() => true, () => false);
    expect(await version(ca)).toBe(true);
    expect(await version(rogueCa)).toBe(false);

    // Rotated to a certificate of the other CA: the key first, then the certificate.
    copyFileSync(file('rogue.key'), file('listen.key'));
    copyFileSync(file('rogue.crt'), file('listen.crt'));
    await pollUntil(() => version(rogueCa), 20_000, 100, 'the rotated client certificate was never served');
    expect(await version(ca)).toBe(false);
    expect(await tlsReloads(proxy, 'client', 'applied')).toBeGreaterThanOrEqual(1);
    // The handshakes the client refused left no connection that holds up the shutdown: one
    // would keep the drain going to its 30 s deadline, and stop() kills the proxy after 8 s
    // (exit code null). Any connection still open at the SIGTERM was closed by its client.
    const t0 = Date.now();
    expect(await proxy.stop()).toBe(0);
    timingClaim('tls: SIGTERM to exit after refused handshakes', Date.now() - t0, 3000);
    expect(proxy.output()).not.toMatch(/"closedAtDeadline":[1-9]/);
  });
});
