import { defineConfig } from 'vitest/config';

/** Browser tests: a real server, real runs, real Chromium. Slow by nature; timeouts are generous. */
export default defineConfig({
  test: {
    name: 'dashboard',
    include: ['test/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    testTimeout: 180_000,
    hookTimeout: 120_000,
    typecheck: { enabled: false },
  },
});
