import { defineConfig } from 'vitest/config';
import { testProjects } from './vitest.workspace.js';

export default defineConfig({
  test: {
    projects: testProjects,
    coverage: {
      provider: 'v8',
      include: ['packages/*/src/**/*.ts'],
      reporter: ['text-summary', 'json-summary', 'text'],
    },
  },
});
