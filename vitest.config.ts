import { defineConfig } from 'vitest/config';

// End-to-end files start real memcached, replicached and PHP processes. The machine that
// runs them may have only 2 cores, so at most 2 files run at once (one fork each) and the
// tests inside a file run one after another (vitest's default). Timeouts are generous for
// a loaded CI box; each test is still written to finish in a few seconds.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
    fileParallelism: true,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    teardownTimeout: 10_000,
    // A flaky e2e test is a bug to fix, not to hide.
    retry: 0,
  },
});
