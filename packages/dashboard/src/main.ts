/**
 * The AgentGate dashboard: hash routes `#/` (work orders and their latest runs), `#/new` (submit),
 * `#/work-orders/<id>` and `#/runs/<id>` (live timeline over `/ws`). Plain DOM, no framework.
 *
 * Kept in one file (over 400 lines) on purpose: the four pages share the router, the one live connection
 * and the API-key prompt; the pieces without that state live in api, dom, form, live, report, timeline.
 */
import { api, apiText, ApiError, storedKey, storeKey, type Page, type RunDetail, type RunView, type WorkOrderDetail, type WorkOrderView } from './api.js';
import { h } from './dom.js';
import { AGENT_TYPES, SOURCE_TYPES, validateWorkOrder, type WorkOrderFormValues } from './form.js';
import { LiveConnection, type ConnectionState } from './live.js';
import { deliveryOf, gatesOf, safeUrl } from './report.js';
import { describe, ms, Timeline, type EventEnvelope } from './timeline.js';
import './style.css';

function mustFind<T extends HTMLElement>(selector: string): T {
  const element = document.querySelector<T>(selector);
  if (element === null) throw new Error(`index.html lacks ${selector}`);
  return element;
}

const app = mustFind<HTMLElement>('#app');
const conn = mustFind<HTMLElement>('#conn');
const forget = mustFind<HTMLButtonElement>('#forget-key');

const LABELS: Record<ConnectionState, string> = { idle: '', connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…' };
const live = new LiveConnection((state, detail) => {
  conn.dataset.state = state;
  conn.textContent = LABELS[state];
  conn.title = detail;
});

/** What the current page must undo when the route changes (timers, subscriptions). */
const teardown: Array<() => void> = [];

function leave(): void {
  for (const fn of teardown.splice(0)) fn();
  live.stop();
}

function route(): void {
  leave();
  forget.hidden = storedKey() === null;
  const hash = location.hash.replace(/^#/, '') || '/';
  const [, section, id] = hash.split('/');
  if (section === 'new') showSubmit();
  else if (section === 'work-orders' && id !== undefined) showWorkOrder(decodeURIComponent(id));
  else if (section === 'runs' && id !== undefined) showRun(decodeURIComponent(id));
  else showList();
}

function render(...nodes: Node[]): void {
  app.replaceChildren(...nodes);
}

/** Any failure shown in place; a 401 asks for the key instead. */
function fail(error: unknown): void {
  if (error instanceof ApiError && error.unauthorized) {
    showKeyForm(storedKey() === null ? 'This server needs an API key.' : 'The key was refused.');
    return;
  }
  const message = error instanceof Error ? error.message : String(error);
  render(h('p', { class: 'error', 'data-testid': 'error' }, message));
}

function showKeyForm(reason: string): void {
  leave();
  const input = h('input', { type: 'password', name: 'apiKey', autocomplete: 'off', 'data-testid': 'api-key', required: true });
  const form = h('form', { class: 'card', 'data-testid': 'key-form' }, h('h2', {}, 'API key'), h('p', {}, reason, ' It is kept in this tab only (sessionStorage).'), input, h('button', { type: 'submit' }, 'Use key'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    storeKey(input.value.trim());
    route();
  });
  render(form);
}

/** Re-armed polling (never overlapping): `load` runs, then again `everyMs` after it settles. */
function poll(load: () => Promise<void>, everyMs: number): void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  const tick = (): void => {
    load().then(
      () => {
        if (!stopped) timer = setTimeout(tick, everyMs);
      },
      (error: unknown) => {
        stopped = true;
        fail(error);
      },
    );
  };
  teardown.push(() => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
  });
  tick();
}

function duration(run: RunView): string {
  const end = run.completedAt ?? (run.state === 'queued' ? run.createdAt : new Date().toISOString());
  return ms(Date.parse(end) - Date.parse(run.createdAt));
}

function cost(run: RunView | undefined): string {
  const usd = run?.meta.usage?.costUsd;
  return typeof usd === 'number' ? `$${usd.toFixed(4)}` : '—';
}

function showList(): void {
  const body = h('tbody');
  const table = h(
    'table',
    { 'data-testid': 'work-orders' },
    h('thead', {}, h('tr', {}, ...['Work order', 'Status', 'Queue', 'Run state', 'Result', 'Iterations', 'Duration', 'Cost', 'Created'].map((t) => h('th', {}, t)))),
    body,
  );
  render(h('h1', {}, 'Work orders'), table);
  poll(async () => {
    const [orders, runs] = await Promise.all([api<Page<WorkOrderView>>('GET', '/api/v1/work-orders?limit=50'), api<Page<RunView>>('GET', '/api/v1/runs?limit=100')]);
    const latest = new Map<string, RunView>();
    for (const run of runs.items) if (!latest.has(run.workOrderId)) latest.set(run.workOrderId, run);
    body.replaceChildren(
      ...orders.items.map((order) => {
        const run = latest.get(order.id);
        return h(
          'tr',
          { 'data-work-order': order.id, 'data-status': order.status },
          h('td', {}, h('a', { href: `#/work-orders/${order.id}` }, order.name ?? order.taskPrompt ?? order.id)),
          h('td', {}, h('span', { class: `badge ${order.status}` }, order.status)),
          h('td', {}, order.queuePosition ?? '—'),
          h('td', {}, run === undefined ? '—' : h('a', { href: `#/runs/${run.id}` }, run.state)),
          h('td', {}, run?.result ?? '—'),
          h('td', {}, run === undefined ? '—' : `${run.iteration}/${run.maxIterations}`),
          h('td', {}, run === undefined ? '—' : duration(run)),
          h('td', {}, cost(run)),
          h('td', {}, new Date(order.createdAt).toLocaleString()),
        );
      }),
    );
    if (orders.items.length === 0) body.append(h('tr', {}, h('td', { colspan: '9' }, 'No work orders yet. ', h('a', { href: '#/new' }, 'Submit one'), '.')));
  }, 2000);
}

function field(label: string, name: string, control: HTMLElement): HTMLElement {
  return h('label', { 'data-field': name }, h('span', {}, label), control, h('small', { class: 'issue', 'data-issue': name }));
}

function showSubmit(): void {
  const prompt = h('textarea', { name: 'taskPrompt', rows: '4', 'data-testid': 'taskPrompt' });
  const sourceType = h('select', { name: 'sourceType' }, ...Object.keys(SOURCE_TYPES).map((t) => h('option', { value: t }, t)));
  const source = h('input', { name: 'location', placeholder: '/srv/repos/app', 'data-testid': 'location' });
  const ref = h('input', { name: 'ref', placeholder: 'main (optional)' });
  const agentType = h('select', { name: 'agentType', 'data-testid': 'agentType' }, ...AGENT_TYPES.map((t) => h('option', { value: t, selected: t === 'claude-code' }, t)));
  const agentCommand = h('input', { name: 'agentCommand', placeholder: 'only for agentType command', 'data-testid': 'agentCommand' });
  const maxIterations = h('input', { name: 'maxIterations', value: '3', inputmode: 'numeric', 'data-testid': 'maxIterations' });
  const status = h('p', { class: 'status', 'data-testid': 'form-status' });
  const form = h(
    'form',
    { class: 'card', novalidate: true, 'data-testid': 'submit-form' },
    h('h1', {}, 'Submit a work order'),
    field('Task prompt', 'taskPrompt', prompt),
    field('Workspace source', 'workspaceSource.type', sourceType),
    field('Path / URL / owner/name / project', 'location', source),
    field('Ref', 'ref', ref),
    field('Agent', 'agentType', agentType),
    field('Agent command', 'agentCommand', agentCommand),
    field('Max iterations', 'maxIterations', maxIterations),
    h('button', { type: 'submit', 'data-testid': 'submit' }, 'Submit'),
    status,
  );
  const showIssues = (issues: ReadonlyArray<{ path: string; message: string }>): void => {
    for (const small of form.querySelectorAll<HTMLElement>('[data-issue]')) small.textContent = '';
    for (const issue of issues) {
      const name = issue.path.startsWith('workspaceSource.') && issue.path !== 'workspaceSource.type' ? 'location' : issue.path;
      const slot = form.querySelector<HTMLElement>(`[data-issue="${CSS.escape(name)}"]`);
      if (slot !== null) slot.textContent = issue.message;
      else status.textContent = `${issue.path}: ${issue.message}`;
    }
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values: WorkOrderFormValues = {
      taskPrompt: prompt.value,
      sourceType: sourceType.value,
      location: source.value,
      ref: ref.value,
      agentType: agentType.value,
      agentCommand: agentCommand.value,
      maxIterations: maxIterations.value,
    };
    const checked = validateWorkOrder(values);
    status.textContent = '';
    if (!checked.ok) {
      showIssues(checked.issues);
      return;
    }
    showIssues([]);
    status.textContent = 'Submitting…';
    api<WorkOrderView>('POST', '/api/v1/work-orders', checked.body).then(
      (order) => {
        location.hash = `#/work-orders/${order.id}`;
      },
      (error: unknown) => {
        if (error instanceof ApiError && error.unauthorized) return fail(error);
        status.textContent = error instanceof Error ? error.message : String(error);
        if (error instanceof ApiError) showIssues(error.issues);
      },
    );
  });
  render(form);
}

const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

function cancelButton(workOrderId: string, status: string): HTMLButtonElement {
  const button = h('button', { type: 'button', class: 'danger', 'data-testid': 'cancel', disabled: TERMINAL.has(status) }, 'Cancel');
  button.addEventListener('click', () => {
    button.disabled = true;
    api<WorkOrderView>('DELETE', `/api/v1/work-orders/${encodeURIComponent(workOrderId)}`).catch((error: unknown) => {
      button.disabled = false;
      fail(error);
    });
  });
  return button;
}

function showWorkOrder(id: string): void {
  const summary = h('section', { class: 'card', 'data-testid': 'work-order' });
  const runArea = h('section');
  render(summary, runArea);
  let shownRun: string | null = null;
  let loading = false;
  let again = false;
  const refresh = async (): Promise<void> => {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    try {
      const order = await api<WorkOrderDetail>('GET', `/api/v1/work-orders/${encodeURIComponent(id)}`);
      summary.replaceChildren(
        h('h1', {}, order.name ?? 'Work order'),
        h('p', { class: 'prompt' }, order.taskPrompt ?? ''),
        h(
          'p',
          {},
          'Status ',
          h('span', { class: `badge ${order.status}`, 'data-testid': 'wo-status' }, order.status),
          order.queuePosition === null ? '' : h('span', { 'data-testid': 'queue-position' }, ` · queue position ${order.queuePosition}`),
          ' ',
          cancelButton(order.id, order.status),
        ),
        h('p', { class: 'runs' }, 'Runs: ', ...order.runs.map((run) => h('a', { href: `#/runs/${run.id}` }, `${run.id.slice(0, 8)} (${run.state}) `))),
      );
      const newest = order.runs[0];
      if (newest !== undefined && newest.id !== shownRun) {
        shownRun = newest.id;
        mountRun(runArea, newest.id, false);
      }
    } finally {
      loading = false;
      if (again) {
        again = false;
        void refresh().catch(fail);
      }
    }
  };
  refresh().then(
    () => {
      let lastSeq = 0;
      teardown.push(
        live.subscribe(
          { workOrderId: id },
          {
            afterSeq: () => lastSeq,
            onEvent: (event) => {
              lastSeq = Math.max(lastSeq, event.seq);
              void refresh().catch(fail);
            },
          },
        ),
      );
    },
    fail,
  );
}

function showRun(id: string): void {
  const area = h('section');
  render(area);
  mountRun(area, id, true);
}

function feedbackText(feedback: unknown): string {
  if (typeof feedback === 'string') return feedback;
  if (typeof feedback === 'object' && feedback !== null && 'text' in feedback && typeof feedback.text === 'string') return feedback.text;
  return feedback === undefined || feedback === null ? '' : JSON.stringify(feedback, null, 2);
}

/** One iteration: its gates (failed ones with an output excerpt and diagnostics) and its diff, loaded when opened. */
function iterationCard(runId: string, iteration: number, record: Record<string, unknown>): HTMLElement {
  const gates = gatesOf(record);
  const passed = gates.length > 0 && gates.every((g) => g.passed);
  const patch = h('pre', { class: 'diff', 'data-testid': 'patch-text' });
  const patchBox = h('details', { 'data-testid': 'patch' }, h('summary', {}, 'Diff of this iteration'), patch);
  let loaded = false;
  patchBox.addEventListener('toggle', () => {
    if (!patchBox.open || loaded) return;
    loaded = true;
    patch.textContent = 'Loading…';
    apiText(`/api/v1/runs/${encodeURIComponent(runId)}/iterations/${iteration}/patch`).then(
      (diff) => {
        // textContent: the diff is shown as text, never parsed as HTML.
        patch.textContent = diff === '' ? '(no changes)' : diff;
        patch.dataset.loaded = 'true';
      },
      (error: unknown) => {
        loaded = false;
        patch.textContent = error instanceof Error ? error.message : String(error);
        patch.dataset.loaded = 'error';
      },
    );
  });
  return h(
    'details',
    { class: 'card iteration', open: true, 'data-iteration': String(iteration) },
    h('summary', {}, `Iteration ${iteration}`, gates.length === 0 ? '' : h('span', { class: `badge ${passed ? 'succeeded' : 'failed'}` }, passed ? 'gates passed' : 'gates failed')),
    gates.length === 0
      ? h('p', {}, 'No gate results.')
      : h(
          'ul',
          { class: 'gates' },
          ...gates.map((g) =>
            h(
              'li',
              { class: g.passed ? 'ok' : 'bad', 'data-gate': g.name, 'data-passed': String(g.passed) },
              h('strong', {}, g.name),
              ` ${g.passed ? 'passed' : 'failed'}${g.exitCode === null ? '' : ` (exit ${g.exitCode})`}`,
              g.message === '' ? '' : ` — ${g.message}`,
              g.diagnostics.length === 0 ? '' : h('ul', { class: 'diagnostics' }, ...g.diagnostics.map((d) => h('li', {}, d))),
              g.excerpt === '' ? '' : h('pre', { class: 'detail excerpt', 'data-testid': 'gate-excerpt' }, g.excerpt),
            ),
          ),
        ),
    patchBox,
  );
}

/** The PR/MR link, delivery result and latest CI state of a run. */
function renderDelivery(panel: HTMLElement, events: readonly EventEnvelope[], meta: Record<string, unknown>): void {
  const d = deliveryOf(events, meta);
  const link = safeUrl(d.prUrl);
  panel.dataset.state = d.ok === null ? (d.started ? 'running' : 'none') : d.ok ? 'ok' : 'failed';
  panel.replaceChildren(
    h('h2', {}, 'Delivery'),
    !d.started
      ? h('p', {}, 'Not delivered yet.')
      : h(
          'p',
          {},
          `${d.kind ?? 'delivery'}: `,
          h('span', { class: `badge ${d.ok === null ? 'running' : d.ok ? 'succeeded' : 'failed'}`, 'data-testid': 'delivery-state' }, d.ok === null ? 'in progress' : d.ok ? 'done' : 'failed'),
          d.branch === null ? '' : h('span', {}, ' · branch ', h('code', { 'data-testid': 'delivery-branch' }, d.branch)),
        ),
    d.error === null ? '' : h('p', { class: 'error' }, d.error),
    d.prUrl === null ? '' : h('p', {}, 'PR/MR: ', link === null ? h('code', {}, d.prUrl) : h('a', { href: link, target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'pr-link' }, link)),
    d.ci === null
      ? h('p', { 'data-testid': 'ci' }, 'CI: not watched')
      : h('p', { 'data-testid': 'ci' }, 'CI: ', h('span', { class: `badge ci-${d.ci.status}`, 'data-testid': 'ci-status' }, d.ci.status), d.ci.detail === '' ? '' : ` — ${d.ci.detail}`),
  );
}

/** A run's summary, live timeline and per-iteration feedback, into `container`. */
function mountRun(container: HTMLElement, runId: string, withCancel: boolean): void {
  const head = h('div', { class: 'card', 'data-testid': 'run' });
  const list = h('ol', { class: 'timeline', 'data-testid': 'timeline' });
  const feedback = h('div', { 'data-testid': 'feedback' });
  const iterations = h('div', { 'data-testid': 'iterations' });
  const delivery = h('section', { class: 'card', 'data-testid': 'delivery' });
  container.replaceChildren(head, delivery, h('h2', {}, 'Timeline'), list, h('h2', {}, 'Gates and diff per iteration'), iterations, h('h2', {}, 'Feedback sent to the agent'), feedback);
  const timeline = new Timeline();
  let meta: Record<string, unknown> = {};
  /** Rendered iteration cards with the record they show: a card is rebuilt only when its record changed. */
  const cards = new Map<number, { json: string; card: HTMLElement }>();
  renderDelivery(delivery, [], meta);

  const loadRun = async (): Promise<void> => {
    const run = await api<RunDetail>('GET', `/api/v1/runs/${encodeURIComponent(runId)}`);
    head.replaceChildren(
      h('h2', {}, 'Run ', h('code', {}, run.id)),
      h(
        'p',
        {},
        h('span', { class: `badge ${run.state}`, 'data-testid': 'run-state' }, run.state),
        ` · result ${run.result ?? '—'} · iteration ${run.iteration}/${run.maxIterations} · ${duration(run)} · cost ${cost(run)}`,
        run.branch === null ? '' : ` · branch ${run.branch}`,
        ' ',
        withCancel ? h('a', { href: `#/work-orders/${run.workOrderId}` }, 'work order') : '',
        ' ',
        withCancel && !TERMINAL.has(run.state) ? cancelButton(run.workOrderId, 'running') : '',
      ),
      run.error === null ? '' : h('p', { class: 'error' }, `${run.error.code}: ${run.error.message}`),
    );
    meta = run.meta;
    renderDelivery(delivery, timeline.events(), meta);
    for (const it of run.iterations) {
      const json = JSON.stringify(it.record);
      if (cards.get(it.iteration)?.json === json) continue;
      const card = iterationCard(run.id, it.iteration, it.record);
      cards.get(it.iteration)?.card.replaceWith(card);
      cards.set(it.iteration, { json, card });
    }
    iterations.replaceChildren(...[...cards.entries()].sort(([a], [b]) => a - b).map(([, { card }]) => card));
    feedback.replaceChildren(
      ...run.iterations
        .filter((it) => feedbackText(it.record.feedback) !== '')
        .map((it) => h('details', { open: true, 'data-iteration': String(it.iteration) }, h('summary', {}, `After iteration ${it.iteration}`), h('pre', {}, feedbackText(it.record.feedback)))),
    );
  };

  const append = (event: EventEnvelope): void => {
    if (!timeline.add(event)) return;
    const line = describe(event);
    const item = h(
      'li',
      {
        class: `ev ${line.kind}${line.ok === true ? ' ok' : line.ok === false ? ' bad' : ''}`,
        'data-seq': String(event.seq),
        'data-from-seq': event.coalesced === undefined ? undefined : String(event.coalesced.fromSeq),
        'data-type': event.type,
      },
      h('span', { class: 'seq' }, `#${event.seq}`),
      h('span', { class: 'title' }, line.title),
      line.detail === '' ? '' : h('pre', { class: 'detail' }, line.detail),
    );
    // Events arrive in seq order; a replay only ever adds later seqs, so appending keeps the order.
    list.append(item);
    if (event.type === 'delivery_started' || event.type === 'delivery_completed' || event.type === 'ci_status') renderDelivery(delivery, timeline.events(), meta);
    if (line.kind === 'header' || line.kind === 'end' || event.type === 'run_state_changed') void loadRun().catch(fail);
  };

  loadRun().then(() => {
    teardown.push(live.subscribe({ runId }, { afterSeq: () => timeline.lastSeq, onEvent: append, onEnded: () => void loadRun().catch(fail) }));
  }, fail);
}

forget.addEventListener('click', () => {
  storeKey(null);
  route();
});
window.addEventListener('hashchange', route);
route();
