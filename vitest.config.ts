import { defineConfig } from 'vitest/config';

// End-to-end files start real memcached, replicached and PHP processes, and spend much of
// their time waiting on them. The machine that runs them may have only 2 cores: 3 files run at
// once (one fork each), so that one's waits overlap the others' work, and the tests inside a
// file run one after another (vitest's default) unless a file says otherwise. Timeouts are
// generous for a loaded CI box; each test is still written to finish in a few seconds.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 3 } },
    fileParallelism: true,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    teardownTimeout: 10_000,
    // A flaky e2e test is a bug to fix, not to hide.
    retry: 0,
  },
});
