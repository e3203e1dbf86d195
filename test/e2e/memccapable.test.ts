// libmemcached's conformance suite, written by others, run through replicached
// over 3 real memcached with 2 replicas, in both protocols.

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster';
import { MEMCCAPABLE_TESTS, runMemccapable } from '../helpers/memccapable';

describe('memccapable through replicached (3 backends, 2 replicas)', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ backends: 3, replicas: 2 });
  });
  afterAll(() => cluster?.stop());

  test.each(['ascii', 'binary'] as const)('%s: all 27 tests pass', async (protocol) => {
    const result = await runMemccapable(protocol, { port: cluster.proxy.port });
    expect(result.failed, result.output).toEqual([]);
    expect(result.notRun, result.output).toEqual([]);
    expect(result.passed).toHaveLength(MEMCCAPABLE_TESTS[protocol].length);
    expect(result.passed).toHaveLength(27);
    expect(result.allPassed).toBe(true);
  });
});
