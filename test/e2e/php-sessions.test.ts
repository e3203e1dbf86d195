// Real PHP session handlers through replicached over 3 real memcached with 2
// replicas: sessions written, one backend killed with SIGKILL, every session
// read back intact, and no PHP warning.

import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster';
import { readSessions, writeSessions, type PhpClientKind } from '../helpers/php';
import { LOADED_MACHINE_ARGS } from '../helpers/timing';

const SESSIONS = 300;

describe.each<PhpClientKind>(['memcached-binary', 'memcached-text', 'memcache', 'memcache-binary'])(
  'PHP %s sessions survive a backend killed with SIGKILL',
  (kind) => {
    let cluster: Cluster;

    beforeEach(async () => {
      // LOADED_MACHINE_ARGS: a healthy memcached starved of CPU is not taken for a second failure.
      cluster = await startCluster({ backends: 3, replicas: 2, args: [...LOADED_MACHINE_ARGS] });
    });
    afterEach(() => cluster?.stop());

    test(`${SESSIONS} sessions written, one backend killed, all read back intact`, async () => {
      const { proxy, backends } = cluster;
      const opts = { port: proxy.port, prefix: `s-${kind}-`, count: SESSIONS };
      const written = await writeSessions(kind, opts);
      expect(written.problems).toEqual([]);
      expect(written.ok).toBe(SESSIONS);

      backends[1].kill('SIGKILL');
      await backends[1].exited();

      const read = await readSessions(kind, opts);
      expect(read.problems).toEqual([]);
      expect(read.missing).toEqual([]);
      expect(read.mismatches).toEqual([]);
      expect(read.ok).toBe(SESSIONS);

      // Written again while a backend is away, then read: still whole.
      const rewritten = await writeSessions(kind, { ...opts, gen: 2 });
      expect(rewritten.problems).toEqual([]);
      const reread = await readSessions(kind, { ...opts, gen: 2 });
      expect(reread.problems).toEqual([]);
      expect(reread.ok).toBe(SESSIONS);
    });
  },
);
