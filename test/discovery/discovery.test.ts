// The discovery loop over scripted answers and a scripted clock: the wait after each answer
// (its TTL within the bounds), a change applied once, failures keeping the last good list,
// logged once per episode and counted by reason, and the first answer waited for.

import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { BackendConfig, BackendsFrom } from '../../src/config';
import { BackendDiscovery } from '../../src/discovery/discovery';
import type { Answer } from '../../src/discovery/resolve';
import { createLogger } from '../../src/log';
import { createDiscoveryMetrics } from '../../src/metrics/registry';

const FROM: BackendsFrom = { url: 'dns://m.test:1', scheme: 'dns', name: 'm.test', port: 1 };
const at = (...hosts: string[]): BackendConfig[] => hosts.map((host) => ({ address: `${host}:1`, host, port: 1, weight: 1, local: false, zone: null }));
const good = (ttlMs: number | null, ...hosts: string[]): Answer => ({ ok: true, backends: at(...hosts), ttlMs });
const bad = (reason: 'nxdomain' | 'servfail' | 'empty' | 'timeout'): Answer => ({ ok: false, reason, detail: `scripted ${reason}` });

/** A discovery whose answers, waits and log lines the test holds. */
function scripted(answers: Answer[], replicas = 2) {
  const lines: Array<{ level: string; msg: string; reason?: string }> = [];
  const logger = createLogger('debug', new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(JSON.parse(chunk.toString())), cb()) }));
  const waits: number[] = [];
  let resume: (() => void) | null = null;
  let asked = 0;
  const discovery = new BackendDiscovery({
    from: FROM,
    settings: () => ({ replicas, discovery: { servers: null, minRefreshMs: 5000, maxRefreshMs: 60000 } }),
    logger,
    resolve: async () => {
      const answer = answers[asked++];
      if (answer === undefined) throw new Error('script ended');
      return answer;
    },
    // Each wait is recorded and released by the test's next step.
    sleep: (ms) => {
      waits.push(ms);
      return new Promise((r) => (resume = r));
    },
    now: () => 1000 + asked,
  });
  const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
  /** Ends the wait under way, and returns once the next answer was asked for and taken in. */
  const next = async (): Promise<void> => {
    for (let i = 0; i < 1000 && resume === null; i++) await tick();
    const release = resume;
    if (release === null) throw new Error('no wait under way');
    resume = null;
    const before = asked;
    release();
    for (let i = 0; i < 1000 && asked === before; i++) await tick();
    for (let i = 0; i < 20; i++) await tick();
  };
  return { discovery, lines, waits, next, get asked() { return asked; } };
}

describe('BackendDiscovery', () => {
  it('waits the TTL clamped to the bounds; applies a changed list once, not a repeated one', async () => {
    const s = scripted([good(30_000, 'a', 'b'), good(1000, 'a', 'b'), good(120_000, 'a', 'b', 'c'), good(null, 'a', 'b', 'c'), bad('servfail')]);
    expect((await s.discovery.first()).map((b) => b.address)).toEqual(['a:1', 'b:1']);
    const registry = new Registry();
    const metrics = createDiscoveryMetrics(registry);
    let running = s.discovery.backends;
    const applied: string[][] = [];
    s.discovery.follow(metrics, (list) => ((running = list), applied.push(list.map((b) => b.address)), true), () => running);
    await s.next(); // the first answer's wait, 30 s, ends: 1000 ms asked for -> 5000
    await s.next(); // 120 s -> 60 s; a, b, c applied
    await s.next(); // no TTL (SRV) -> the lower bound
    await s.next(); // a failure -> the lower bound
    expect(s.waits).toEqual([30_000, 5000, 60_000, 5000, 5000]);
    expect(applied).toEqual([['a:1', 'b:1', 'c:1']]);
    expect((await registry.getSingleMetric('replicached_discovery_changes_total')!.get()).values[0].value).toBe(1);
    s.discovery.stop();
  });

  it('failures keep the last good list, logged once per episode, counted by reason; an answer below replicas is one', async () => {
    const s = scripted([bad('nxdomain'), bad('timeout'), good(0, 'a', 'b'), bad('servfail'), bad('empty'), good(0, 'a'), good(0, 'a', 'b'), bad('nxdomain')]);
    const registry = new Registry();
    const metrics = createDiscoveryMetrics(registry);
    // Before the first usable answer: waiting (two waits of the lower bound), said once.
    const found = s.discovery.first();
    await s.next();
    await s.next();
    expect((await found).map((b) => b.address)).toEqual(['a:1', 'b:1']);
    expect(s.waits).toEqual([5000, 5000]);
    expect(s.lines.filter((l) => l.msg === 'DNS: no usable answer yet; not serving until one comes')).toHaveLength(1);
    const applied: BackendConfig[][] = [];
    s.discovery.follow(metrics, (list) => (applied.push(list), true), () => at('a', 'b'));
    for (let i = 0; i < 5; i++) await s.next();
    expect(applied).toEqual([]);
    expect(s.discovery.backends.map((b) => b.address)).toEqual(['a:1', 'b:1']);
    const reasons = (await registry.getSingleMetric('replicached_discovery_failures_total')!.get()).values;
    const count = (reason: string): number | undefined => reasons.find((v) => v.labels.reason === reason)?.value;
    // The two before follow() are counted too.
    expect([count('nxdomain'), count('timeout'), count('servfail'), count('empty'), count('too_few'), count('refused')]).toEqual([2, 1, 1, 1, 1, 0]);
    expect(s.lines.filter((l) => l.msg === 'DNS: no usable answer; the last good backends stay').map((l) => l.reason)).toEqual(['servfail', 'nxdomain']);
    expect(s.lines.filter((l) => l.msg === 'DNS: usable answers again')).toHaveLength(2);
    expect((await registry.getSingleMetric('replicached_discovery_backends')!.get()).values[0].value).toBe(2);
    s.discovery.stop();
  });

  it('a refused apply is tried again after the next answer', async () => {
    const s = scripted([good(0, 'a', 'b'), good(0, 'a', 'c'), good(0, 'a', 'c')]);
    await s.discovery.first();
    let tries = 0;
    s.discovery.follow(createDiscoveryMetrics(new Registry()), () => ++tries === 2, () => at('a', 'b'));
    await s.next();
    await s.next();
    expect(tries).toBe(2);
    s.discovery.stop();
  });
});
