/**
 * The dashboard in real Chromium (Debian's `chromium`, driven by playwright-core) against a real server
 * with an API key, real runs of command agents on temp git repositories. Screenshots of every state go
 * to `packages/dashboard/test-artifacts/` (gitignored). Agents that must stay mid-run block on a release
 * file, so nothing depends on timing; DOM states are awaited with generous timeouts.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AGENTS } from '../../server/test/helpers/git-repo.js';
import { startServer, type TestServer } from '../../server/test/server/harness.js';

const CHROMIUM = process.env.AGENTGATE_CHROMIUM ?? '/usr/bin/chromium';
const KEY = 'dashboard-test-key-0123456789';
const PACKAGE = fileURLToPath(new URL('..', import.meta.url));
const ARTIFACTS = join(PACKAGE, 'test-artifacts');
const WAIT = { timeout: 60_000 };

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: .ci/run installs the Debian chromium package`);

let browser: Browser;
let dashboardDir: string;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  if (!haveChromium) return;
  dashboardDir = mkdtempSync(join(tmpdir(), 'agentgate-dashboard-'));
  await build({ root: PACKAGE, configFile: join(PACKAGE, 'vite.config.ts'), logLevel: 'warn', build: { outDir: dashboardDir, emptyOutDir: true } });
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
});

afterAll(async () => {
  await browser?.close();
  if (dashboardDir !== undefined) rmSync(dashboardDir, { recursive: true, force: true });
});

afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function server(options: { startQueue?: boolean } = {}): Promise<TestServer> {
  const s = await startServer({ apiKey: KEY, startQueue: options.startQueue ?? true, maxConcurrent: 1, server: { dashboardDir } });
  cleanups.push(() => s.close());
  return s;
}

/**
 * Runs in the page before its scripts (a string: the test is type-checked without DOM types): keeps
 * every WebSocket the page opens in `__sockets` and every connection state it shows in `__states`.
 */
const RECORDER = `(() => {
  const sockets = [];
  const states = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) { super(url, protocols); sockets.push(this); }
  };
  window.__sockets = sockets;
  window.__states = states;
  document.addEventListener('DOMContentLoaded', () => {
    const conn = document.querySelector('#conn');
    if (conn) new MutationObserver(() => states.push(conn.dataset.state || '')).observe(conn, { attributes: true, attributeFilter: ['data-state'] });
  });
})()`;

/** A page that records every WebSocket it opens and every connection state it shows. */
async function openPage(s: TestServer): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  cleanups.push(() => context.close());
  await context.addInitScript({ content: RECORDER });
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error('page error:', error));
  await page.goto(`${s.url}/`);
  return page;
}

async function enterKey(page: Page): Promise<void> {
  await page.getByTestId('key-form').waitFor(WAIT);
  await page.getByTestId('api-key').fill(KEY);
  await page.getByTestId('api-key').press('Enter');
  await page.getByTestId('work-orders').waitFor(WAIT);
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function submit(page: Page, s: TestServer, agentCommand: string, maxIterations = 3): Promise<string> {
  await page.getByTestId('nav-new').click();
  await page.getByTestId('taskPrompt').fill('Implement add and multiply');
  await page.getByTestId('location').fill(s.repo.repo);
  await page.getByTestId('agentType').selectOption('command');
  await page.getByTestId('agentCommand').fill(agentCommand);
  await page.getByTestId('maxIterations').fill(String(maxIterations));
  await page.getByTestId('submit').click();
  await page.waitForURL(/#\/work-orders\//, WAIT);
  return decodeURIComponent(new URL(page.url()).hash.split('/')[2] ?? '');
}

function timelineHas(page: Page, selector: string): Promise<void> {
  return page.locator(`[data-testid=timeline] ${selector}`).first().waitFor(WAIT);
}

/** The seqs the timeline shows, coalesced frames expanded to every seq they carry. */
async function renderedSeqs(page: Page): Promise<number[]> {
  const pairs = await page.evaluate<Array<[number, number]>>(
    `[...document.querySelectorAll('[data-testid=timeline] li')].map((li) => [Number(li.getAttribute('data-from-seq') ?? li.getAttribute('data-seq')), Number(li.getAttribute('data-seq'))])`,
  );
  return pairs.flatMap(([from = 0, to = 0]) => Array.from({ length: to - from + 1 }, (_, i) => from + i));
}

async function storedSeqs(s: TestServer, runId: string): Promise<number[]> {
  const reply = await s.request('GET', `/api/v1/runs/${runId}/events?limit=1000`, { headers: { authorization: `Bearer ${KEY}` } });
  const data = reply.json?.data as { items: Array<{ seq: number }> };
  return data.items.map((e) => e.seq);
}

async function runIdOf(page: Page): Promise<string> {
  const code = page.locator('[data-testid=run] code');
  await code.waitFor(WAIT);
  return (await code.textContent()) ?? '';
}

describe.skipIf(!haveChromium)('the dashboard in Chromium', () => {
  it('asks for the key, refuses a bad form, submits a work order and follows it from queued to succeeded through a failed gate', async () => {
    const s = await server({ startQueue: false });
    const page = await openPage(s);
    await shot(page, '01-key-required');
    await enterKey(page);
    await shot(page, '02-empty-list');

    await page.getByTestId('nav-new').click();
    await page.getByTestId('agentType').selectOption('command');
    await page.getByTestId('submit').click();
    await expect.poll(() => page.locator('[data-issue=taskPrompt]').textContent(), WAIT).toBe('must not be empty');
    expect(await page.locator('[data-issue=agentCommand]').textContent()).toBe('required when agentType is "command"');
    await shot(page, '03-form-invalid');

    const id = await submit(page, s, s.agent('fail-then-pass', AGENTS.failThenPass));
    await page.locator('[data-testid=wo-status]', { hasText: 'queued' }).waitFor(WAIT);
    expect(await page.getByTestId('queue-position').textContent()).toContain('queue position 1');
    await shot(page, '04-queued');

    s.runtime.queue.start();
    await timelineHas(page, 'li[data-type=gate_checked].bad');
    const gate = page.locator('[data-testid=timeline] li[data-type=gate_checked].bad').first();
    expect(await gate.locator('pre.detail').textContent()).toMatch(/\S/);
    await timelineHas(page, 'li[data-type=iteration_started]:has-text("Iteration 2")');
    await page.locator('[data-testid=wo-status]', { hasText: 'succeeded' }).waitFor(WAIT);
    await timelineHas(page, 'li[data-type=run_completed]');
    await page.locator('[data-testid=feedback] details[data-iteration="1"]').waitFor(WAIT);
    await shot(page, '05-succeeded-timeline');

    // Gates per iteration: iteration 1's failed gate with a bounded output excerpt, iteration 2's passing.
    const first = page.locator('[data-testid=iterations] details[data-iteration="1"]');
    const failedGate = first.locator('li[data-passed=false]').first();
    await failedGate.waitFor(WAIT);
    const gateExcerpt = (await failedGate.locator('[data-testid=gate-excerpt]').textContent()) ?? '';
    expect(gateExcerpt).toMatch(/\S/);
    expect(gateExcerpt.length).toBeLessThanOrEqual(4100);
    await page.locator('[data-testid=iterations] details[data-iteration="2"] li[data-passed=true]').first().waitFor(WAIT);
    // The diff of iteration 2, loaded when opened, as text.
    const second = page.locator('[data-testid=iterations] details[data-iteration="2"]');
    await second.locator('[data-testid=patch] summary').click();
    await second.locator('[data-testid=patch-text][data-loaded=true]').waitFor(WAIT);
    expect(await second.locator('[data-testid=patch-text]').textContent()).toContain('diff --git a/src/math.js b/src/math.js');
    expect(await second.locator('[data-testid=patch-text] *').count()).toBe(0);
    // Delivery: the local delivery of the run's branch, no CI watched.
    await page.locator('[data-testid=delivery][data-state=ok]').waitFor(WAIT);
    expect(await page.getByTestId('delivery-branch').textContent()).toMatch(/\S/);
    expect(await page.getByTestId('ci').textContent()).toContain('not watched');
    await shot(page, '05b-gates-diff-delivery');

    const runId = await runIdOf(page);
    expect(await renderedSeqs(page)).toEqual(await storedSeqs(s, runId));

    await page.goto(`${s.url}/#/`);
    await page.locator(`tr[data-work-order="${id}"][data-status=succeeded]`).waitFor(WAIT);
    expect(await page.locator(`tr[data-work-order="${id}"] td`).nth(5).textContent()).toBe('2/3');
    await shot(page, '06-list-succeeded');
  });

  it('cancels a running work order from the page', async () => {
    const s = await server();
    const page = await openPage(s);
    await enterKey(page);
    const agent = s.agent('blocks', `echo "waiting for release"\nwhile [ ! -f "${s.repo.root}/never" ]; do sleep 0.05; done`);
    await submit(page, s, agent);
    await timelineHas(page, 'li[data-type=agent_output]:has-text("waiting for release")');
    await shot(page, '07-running');
    await page.getByTestId('cancel').click();
    await page.locator('[data-testid=wo-status]', { hasText: 'canceled' }).waitFor(WAIT);
    await timelineHas(page, 'li[data-type=run_canceled]');
    await shot(page, '08-canceled');
  });

  it('shows the same timeline after a reload mid-run, and resumes without gaps or duplicates after the socket drops', async () => {
    const s = await server();
    const page = await openPage(s);
    await enterKey(page);
    const release = join(s.repo.root, 'release');
    const agent = s.agent('two-steps', `echo "step one"\nwhile [ ! -f "${release}-1" ]; do sleep 0.05; done\necho "step two"\nwhile [ ! -f "${release}-2" ]; do sleep 0.05; done\n${AGENTS.correct}`);
    await submit(page, s, agent, 1);
    await timelineHas(page, 'li[data-type=agent_output]:has-text("step one")');
    const runId = await runIdOf(page);
    const before = await renderedSeqs(page);

    await page.reload();
    await timelineHas(page, 'li[data-type=agent_output]:has-text("step one")');
    await expect.poll(() => renderedSeqs(page), WAIT).toEqual(before);
    await shot(page, '09-after-reload');

    // Drop the live socket: the page shows "reconnecting", opens a new one and resumes after its last seq.
    await page.locator('#conn[data-state=live]').waitFor(WAIT);
    const opened = await page.evaluate<number>('window.__sockets.length');
    await page.evaluate(`for (const socket of window.__sockets) socket.close(4000, 'test drops the socket')`);
    writeFileSync(`${release}-1`, '');
    await expect.poll(() => page.evaluate<boolean>(`window.__states.includes('reconnecting')`), WAIT).toBe(true);
    await expect.poll(() => page.evaluate<number>('window.__sockets.length'), WAIT).toBeGreaterThan(opened);
    await timelineHas(page, 'li[data-type=agent_output]:has-text("step two")');
    await page.locator('#conn[data-state=live]').waitFor(WAIT);
    await shot(page, '10-resumed');

    writeFileSync(`${release}-2`, '');
    await page.locator('[data-testid=wo-status]', { hasText: 'succeeded' }).waitFor(WAIT);
    await timelineHas(page, 'li[data-type=run_completed]');
    await shot(page, '11-resumed-succeeded');
    const seqs = await renderedSeqs(page);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(seqs).toEqual(await storedSeqs(s, runId));
  });

  it('serves the page and its assets without the key, and nothing else', async () => {
    const s = await server({ startQueue: false });
    const index = await s.request('GET', '/');
    expect(index.status).toBe(200);
    expect(index.text).toContain('<main id="app">');
    const asset = /\/assets\/[^"]+\.js/.exec(index.text)?.[0] ?? '';
    expect((await s.request('GET', asset)).status).toBe(200);
    expect((await s.request('GET', '/assets/..%2Fpackage.json')).status).toBe(404);
    expect((await s.request('GET', '/api/v1/work-orders')).status).toBe(401);
  });
});

describe('the dashboard when it is not built', () => {
  it('answers / with a message saying how to build it', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'agentgate-no-dashboard-'));
    cleanups.push(() => rmSync(empty, { recursive: true, force: true }));
    const s = await startServer({ apiKey: KEY, startQueue: false, server: { dashboardDir: empty } });
    cleanups.push(() => s.close());
    const reply = await s.request('GET', '/');
    expect(reply.status).toBe(404);
    expect(reply.json).toMatchObject({ success: false, error: { code: 'AG_ERR_API_NOT_FOUND' } });
    expect(reply.text).toContain('pnpm build');
  });
});
