/**
 * Bundles the CLI into one CommonJS file, `dist/cli/agentgate.cjs`, which `bin/agentgate.js` runs with a V8
 * code cache (docs/performance.md "Start-up: one bundled file and a code cache"). Run by `pnpm build` after
 * `tsc`; reads the TypeScript sources directly.
 *
 * Why one CommonJS file: Node 20 loads an ES module graph file by file (about 340 files on the run path of
 * `exec`) and has no compile cache for ES modules (`module.enableCompileCache` arrived in Node 22); one
 * script compiled through `vm.Script` can be given V8's code cache, so a command skips parsing and
 * compiling what it ran before.
 *
 * What stays outside the bundle, loaded from node_modules when first used: native addons (better-sqlite3,
 * re2, pg-native), and the packages only the server, the forges, PostgreSQL and metrics use (fastify and its
 * plugins, ws, Octokit, gitbeaker, pg, prom-client). They are imported lazily by the sources already, so a
 * local `exec` never loads them, and keeping them out keeps the file — which every command reads — small.
 * `zod` stays inside: the bundled schemas and fastify-type-provider-zod must share one copy.
 */
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE = join(dirname(fileURLToPath(import.meta.url)), '..');
/**
 * Packages the bundle requires from node_modules instead of containing them. Only direct dependencies of
 * this package may be listed: the bundle resolves them from the package directory, where pnpm links
 * nothing else (a transitive dependency of a bundled package — e.g. fastify-type-provider-zod's
 * `@fastify/error` — must be bundled with it; `test/cli/bundle.test.ts` checks every `require` resolves).
 */
export const BUNDLE_EXTERNALS = [
  'better-sqlite3',
  're2',
  'pg',
  'prom-client',
  'fastify',
  '@fastify/swagger',
  '@fastify/swagger-ui',
  '@fastify/websocket',
  'ws',
  '@octokit/rest',
  '@octokit/plugin-retry',
  '@octokit/plugin-throttling',
  '@gitbeaker/rest',
];

/**
 * Writes the bundle of `src/cli/main.ts` to `outfile`. The source's `import.meta.url` becomes the bundle's
 * own file URL; the bundle lives in `dist/cli/` like `main.js`, so the relative paths the sources build from
 * it (`../../package.json`, the dashboard's `../../../dashboard/dist/`) still point where they did.
 */
export async function bundleCli(outfile = join(PACKAGE, 'dist', 'cli', 'agentgate.cjs')) {
  const result = await build({
    entryPoints: [join(PACKAGE, 'src', 'cli', 'main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    // ASCII output: the launcher reads the file as latin1, which is cheaper than decoding UTF-8.
    charset: 'ascii',
    external: BUNDLE_EXTERNALS,
    define: { 'import.meta.url': '__agentgateBundleUrl' },
    // "use strict" first, so it stays the file's directive (ES modules, which the sources are, are strict).
    banner: { js: '"use strict";\nvar __agentgateBundleUrl = require("node:url").pathToFileURL(__filename).href;' },
    sourcemap: 'linked',
    logLevel: 'warning',
    metafile: true,
  });
  // The launcher wraps the file in a function, where main.ts's `#!` line would be a syntax error; the
  // first line names the content instead, and the launcher keys the code cache by it (a reinstall can
  // keep the size and the modification time of the file while changing its bytes).
  const body = asciiOnly(readFileSync(outfile, 'utf8')).replace(/^#![^\n]*\n/, '');
  const text = `// agentgate-bundle sha256=${createHash('sha256').update(body).digest('hex')}\n${body}`;
  writeFileSync(outfile, text, 'latin1');
  return { outfile, bytes: text.length, inputs: Object.keys(result.metafile.inputs).length };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const outfile = process.argv[2];
  const { outfile: written, bytes, inputs } = await bundleCli(outfile);
  process.stdout.write(`bundled ${inputs} modules into ${written} (${(bytes / 1024).toFixed(0)} KiB)\n`);
}

/**
 * The bundle with every non-ASCII character written as a `\uXXXX` escape (astral ones as a surrogate
 * pair), so the launcher can read it as latin1 (several times cheaper than decoding UTF-8). esbuild's
 * `charset: 'ascii'` escapes strings and identifiers but leaves regular expression literals and comments
 * alone; in both an escape means the same character (a regular expression with the `u` flag reads an
 * escaped surrogate pair as one code point). A non-ASCII character right after a backslash would change
 * meaning, so it stops the build instead.
 */
function asciiOnly(text) {
  const lines = text.split('\n');
  lines.forEach((line, index) => {
    // A tagged template hands its tag the raw text, which an escape would change; esbuild leaves non-ASCII
    // characters in templates as they are. Comment lines may hold both (JSDoc quotes code in backticks).
    if (/[^\p{ASCII}]/u.test(line) && line.includes('`') && !/^\s*(?:\/\/|\*|\/\*)/.test(line)) {
      throw new Error(`the bundle has a non-ASCII character on a line with a template literal (line ${index + 1}): ${line.trim().slice(0, 120)}`);
    }
  });
  return text.replace(/\\?[^\p{ASCII}]/gu, (match) => {
    if (match.startsWith('\\')) throw new Error(`the bundle has a non-ASCII character after a backslash: ${JSON.stringify(match)}`);
    let out = '';
    for (let i = 0; i < match.length; i += 1) out += `\\u${match.charCodeAt(i).toString(16).padStart(4, '0')}`;
    return out;
  });
}
