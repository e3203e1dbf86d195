// Reloads keep R copies (issue 12, items 1 and 2), against real memcached:
// a reload in the middle of a resync starts the run again instead of dropping
// it, and removing a backend or raising replicas copies the keys that lost a
// copy back to R members in the background, without waiting for reads.

import { afterEach, expect, test } from 'vitest';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';
import { waitForStats } from '../helpers/proxy';
import { itemOn, RawClient, ringOrder } from '../replication/support';
import { configYaml, startConfigured, type ConfiguredRun } from './support';

let run: ConfiguredRun | null = null;
afterEach(async () => {
  await run?.stop();
  run = null;
  await stopAllMemcached();
});

const KEYS = Array.from({ length: 3000 }, (_, i) => `reconf:${i}`);

async function setAll(port: number): Promise<void> {
  const c = await RawClient.connect(port);
  const reply = await c.text(KEYS.map((k) => `set ${k} 0 0 3\r\nv-1\r\n`).join(''), KEYS.length);
  expect(reply).toBe('STORED\r\n'.repeat(KEYS.length));
  c.close();
}

/** Which of `keys` one memcached holds (read directly, pipelined). */
async function held(mc: MemcachedProcess, keys: string[]): Promise<Set<string>> {
  const c = await RawClient.connect(mc.port);
  c.send(keys.map((k) => `get ${k}\r\n`).join(''));
  const out = new Set<string>();
  const text = (await c.read((b) => (b.toString('latin1').split('END\r\n').length - 1 >= keys.length ? b.length : null))).toString('latin1');
  for (const m of text.matchAll(/^VALUE (\S+) /gm)) out.add(m[1]);
  c.close();
  return out;
}

async function addsStored(port: number): Promise<number> {
  const c = await RawClient.connect(port);
  const reply = await c.text(KEYS.map((k) => `add ${k} 0 0 1\r\nx\r\n`).join(''), KEYS.length);
  c.close();
  return reply.split('\r\n').filter((l) => l === 'STORED').length;
}

const resynced = (s: Map<string, string>): boolean =>
  s.get('replicached_resyncs_in_progress') === '0' && s.get('replicached_backends_up') === s.get('replicached_backends');

test('a no-op SIGHUP right after a resync started does not abort it: the restarted backend is refilled', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  run = await startConfigured(mcs.map((m) => ({ address: m.address })), 2, 0);
  const { port } = run.proxy;
  await setAll(port);
  const target = mcs[1];
  target.kill('SIGKILL');
  await target.exited();
  await target.restart();
  // The resync starts when the proxy sees the backend back; the reload lands right then.
  await waitForStats(port, (s) => s.get('replicached_resyncs_in_progress') === '1', 30_000);
  run.proxy.child.kill('SIGHUP');
  await waitForStats(port, resynced, 60_000);
  const placed = KEYS.filter((k) => ringOrder(mcs.map((m) => m.address), k).slice(0, 2).includes(target.address));
  // On a failure, the proxy's resync and reload lines say what happened.
  const story = run.proxy.output().split('\n').filter((l) => /resync|reload|backend (down|up)/.test(l)).join('\n');
  expect((await held(target, placed)).size, story).toBe(placed.length);
  expect(await addsStored(port)).toBe(0);
});

test('removing a backend, then raising replicas: every key gets back to R copies without being read', async () => {
  const mcs = await Promise.all([0, 1, 2, 3].map(() => startMemcached()));
  run = await startConfigured(mcs.map((m) => ({ address: m.address })), 2, 0);
  const { port } = run.proxy;
  await setAll(port);
  const [removed, ...kept] = mcs;
  run.dir.write(configYaml(kept.map((m) => ({ address: m.address })), 2));
  run.proxy.child.kill('SIGHUP');
  await waitForStats(port, (s) => resynced(s) && s.get('replicached_backends') === '3', 60_000);
  await removed.stop();
  const copies = async (): Promise<number[]> => {
    const sets = await Promise.all(kept.map((m) => held(m, KEYS)));
    return KEYS.map((k) => sets.filter((s) => s.has(k)).length);
  };
  expect((await copies()).filter((n) => n < 2)).toEqual([]);

  run.dir.write(configYaml(kept.map((m) => ({ address: m.address })), 3));
  run.proxy.child.kill('SIGHUP');
  await waitForStats(port, (s) => resynced(s) && s.get('replicached_replicas') === '3', 60_000);
  expect((await copies()).filter((n) => n < 3)).toEqual([]);
  expect(await addsStored(port)).toBe(0);
});

test('replicas 3 -> 2 -> 3: copies left on the dropped member are shed, and none comes back stale or deleted', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const entries = mcs.map((m) => ({ address: m.address }));
  run = await startConfigured(entries, 3, 0);
  const { port } = run.proxy;
  await setAll(port);
  run.dir.write(configYaml(entries, 2));
  run.proxy.child.kill('SIGHUP');
  await waitForStats(port, (s) => resynced(s) && s.get('replicached_replicas') === '2', 60_000);
  // The dropped member of each key no longer holds it.
  const sets = await Promise.all(mcs.map((m) => held(m, KEYS)));
  expect(KEYS.filter((k) => sets.filter((s) => s.has(k)).length !== 2)).toEqual([]);

  // While it is out of each key's set: half the keys deleted, half rewritten.
  const c = await RawClient.connect(port);
  const deleted = KEYS.filter((_, i) => i % 2 === 0);
  const rewritten = KEYS.filter((_, i) => i % 2 === 1);
  const reply = await c.text([...deleted.map((k) => `delete ${k}\r\n`), ...rewritten.map((k) => `set ${k} 7 0 3\r\nv-2\r\n`)].join(''), KEYS.length);
  expect(reply.split('\r\n').filter((l) => l === 'DELETED' || l === 'STORED').length).toBe(KEYS.length);
  c.close();

  run.dir.write(configYaml(entries, 3));
  run.proxy.child.kill('SIGHUP');
  await waitForStats(port, (s) => resynced(s) && s.get('replicached_replicas') === '3', 60_000);
  for (const m of mcs) {
    expect(await held(m, deleted), `deleted keys on ${m.address}`).toEqual(new Set());
    for (const [k, item] of await Promise.all(rewritten.slice(0, 200).map(async (k) => [k, await itemOn(m.port, k)] as const))) {
      expect(item, `${k} on ${m.address}`).toMatchObject({ value: 'v-2', flags: 7 });
    }
  }
});

test("a reload while the last one's fills run (fewer replicas after a removal) starts those fills again", async () => {
  const mcs = await Promise.all([0, 1, 2, 3].map(() => startMemcached()));
  run = await startConfigured(mcs.map((m) => ({ address: m.address })), 3, 0);
  const { port } = run.proxy;
  // Enough keys that the removal's fills still run when the second reload lands.
  const keys = Array.from({ length: 15_000 }, (_, i) => `reconf-long:${i}`);
  const c = await RawClient.connect(port);
  // 45,000 backend writes: on a loaded machine that takes longer than one reply's usual bound.
  expect(await c.text(keys.map((k) => `set ${k} 0 0 3\r\nv-1\r\n`).join(''), keys.length, 60_000)).toBe('STORED\r\n'.repeat(keys.length));
  c.close();
  const [removed, ...kept] = mcs;
  run.dir.write(configYaml(kept.map((m) => ({ address: m.address })), 3));
  run.proxy.child.kill('SIGHUP');
  await waitForStats(port, (s) => s.get('replicached_backends') === '3' && Number(s.get('replicached_resyncs_in_progress')) > 0, 30_000);
  const from = run.proxy.output().length;
  run.dir.write(configYaml(kept.map((m) => ({ address: m.address })), 2));
  run.proxy.child.kill('SIGHUP');
  await waitForStats(port, (s) => resynced(s) && s.get('replicached_replicas') === '2', 60_000);
  await removed.stop();
  const after = run.proxy.output().slice(from);
  expect(after).toMatch(/"replicas":2,"backends":3,"msg":"config reloaded"/);
  // Closing the resyncer cut the removal's fills short: they start again under the new ring, which
  // settles (until then no backend counts as holding keys it was not filled with).
  expect(after).toMatch(/"cause":"membership","msg":"resync started"/);
}, 90_000);
