// libmemcached's conformance suite, written by others, run through replicached
// over 3 real memcached with 2 replicas, in both protocols.

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import { MEMCCAPABLE_TESTS, runMemccapable } from '../helpers/memccapable';
import { startProxy, type ProxyProcess } from '../helpers/proxy';

describe('memccapable through replicached (3 backends, 2 replicas)', () => {
  let backends: MemcachedProcess[];
  let proxy: ProxyProcess;

  beforeAll(async () => {
    backends = await Promise.all([startMemcached(), startMemcached(), startMemcached()]);
    proxy = await startProxy({ backends: backends.map((b) => b.address), replicas: 2 });
  });
  afterAll(async () => {
    await proxy?.stop();
    await Promise.all(backends.map((b) => b.stop()));
  });

  test.each(['ascii', 'binary'] as const)('%s: all 27 tests pass', async (protocol) => {
    const result = await runMemccapable(protocol, { port: proxy.port });
    expect(result.failed, result.output).toEqual([]);
    expect(result.notRun, result.output).toEqual([]);
    expect(result.passed).toHaveLength(MEMCCAPABLE_TESTS[protocol].length);
    expect(result.passed).toHaveLength(27);
    expect(result.allPassed).toBe(true);
  });
});
