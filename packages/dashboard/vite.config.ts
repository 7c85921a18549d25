import { defineConfig } from 'vite';

/** Built into `dist/`, which `agentgate serve` serves at `/` (packages/server/src/server/app.ts). */
export default defineConfig({
  base: '/',
  build: { outDir: 'dist', emptyOutDir: true, assetsDir: 'assets', sourcemap: false },
});
