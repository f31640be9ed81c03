// nearline's dashboard: plain ES module, no framework. Every number comes from the /v1 API with the key
// the user typed once (kept in this tab's sessionStorage), or from the open /ui/session.json.

const KEY = 'nearline.apiKey';
const main = document.getElementById('main');
const state = { key: sessionStorage.getItem(KEY) || '', keyRequired: false, timers: [] };

// ---------- small helpers ----------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'html') el.innerHTML = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

const fmt = (x, digits = 4) => (x === null || x === undefined ? '—' : Number.isInteger(x) ? x.toLocaleString('en-US') : Number(x).toFixed(digits));
const pct = (x) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
const when = (iso) => (iso ? new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' }) : '—');
const refOf = (f) => `${f.name}@${f.variant}`;
const STATUS = { materialized: 'live', materializing: 'materializing', registered: 'registered', failed: 'failed', dropped: 'dropped' };
const statusBadge = (s) => h('span', { class: `badge ${STATUS[s] || s}` }, STATUS[s] || s);
const healthBadge = (hl) =>
  hl
    ? h('span', { class: `badge ${hl.status === 'warming' && hl.recent.count === 0 ? 'empty' : hl.status}`, title: healthTitle(hl) }, healthText(hl))
    : h('span', { class: 'muted' }, '—');
const healthText = (hl) =>
  hl.status !== 'warming' ? hl.status : hl.recent.count === 0 ? 'no writes yet' : `${hl.recent.count}/${hl.thresholds.minSamples} writes`;
const healthTitle = (hl) =>
  hl.drift ? `centroid distance ${fmt(hl.drift.centroidDistance)}, norm shift ${pct(hl.drift.normShift)}` : 'no writes since materialization';

class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.code = error?.code || 'NL_HTTP';
    this.status = status;
  }
}

async function api(path, { method = 'GET', body } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (state.key) headers.authorization = `Bearer ${state.key}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = await res.json().catch(() => ({}));
  if (res.status === 401) {
    forgetKey();
    throw new ApiError(401, json.error);
  }
  if (!res.ok) throw new ApiError(res.status, json.error);
  return json;
}

function errorBox(e) {
  return h('div', { class: 'error', role: 'alert' }, e.code ? h('code', {}, e.code) : null, e.code ? ' ' : null, e.message);
}

function forgetKey() {
  sessionStorage.removeItem(KEY);
  state.key = '';
  route();
}

function clearTimers() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
}

function page(title, sub, ...content) {
  main.replaceChildren(h('div', { class: 'page-head' }, h('h1', {}, title), sub ? h('span', { class: 'sub' }, sub) : null), ...content);
}

// ---------- session: the API key ----------

function renderSession() {
  const el = document.getElementById('session');
  if (!state.keyRequired) el.replaceChildren(h('span', {}, 'open server (no API keys)'));
  else if (state.key)
    el.replaceChildren(h('span', { class: 'mono' }, `key ${state.key.split('_')[1] || '…'}`), h('button', { class: 'link', onclick: forgetKey }, 'forget key'));
  else el.replaceChildren(h('span', {}, 'no key'));
}

function keyForm() {
  const input = h('input', { type: 'password', id: 'api-key', placeholder: 'nl_…', autocomplete: 'off', style: 'width:100%' });
  const err = h('div');
  const form = h(
    'form',
    {
      class: 'card key',
      onsubmit: async (ev) => {
        ev.preventDefault();
        state.key = input.value.trim();
        try {
          await api('/v1/registry/features');
          sessionStorage.setItem(KEY, state.key);
          route();
        } catch (e) {
          state.key = '';
          err.replaceChildren(errorBox(e.status === 401 ? { code: 'NL_UNAUTHORIZED', message: 'this key was not accepted' } : e));
        }
      },
    },
    h('h2', {}, 'This server needs an API key'),
    h('p', { class: 'muted' }, 'Any key with scope serve or higher. It is kept in this browser tab only and sent with each request.'),
    err,
    h('div', { class: 'field' }, h('label', { for: 'api-key' }, 'API key'), input),
    h('button', { class: 'primary', type: 'submit' }, 'Continue'),
  );
  main.replaceChildren(form);
  input.focus();
}

// ---------- data ----------

async function registry() {
  const [{ features }, { models }] = await Promise.all([api('/v1/registry/features'), api('/v1/registry/models')]);
  return { features, models };
}

const servable = (features) => features.filter((f) => f.kind === 'embedding' && f.status === 'materialized');

/** References a user can pick: every live variant, and its aliases. */
function refsOf(features) {
  const out = [];
  for (const f of servable(features)) {
    out.push(refOf(f));
    for (const a of f.aliases || []) out.push(`${f.name}@${a}`);
  }
  return out.sort();
}

function resolveRef(features, ref) {
  const [name, tag] = ref.split('@');
  return features.find((f) => f.name === name && (f.variant === tag || (f.aliases || []).includes(tag)));
}

// ---------- pages ----------

async function featuresPage() {
  const { features } = await registry();
  const health = new Map(
    await Promise.all(servable(features).map(async (f) => [refOf(f), await api(`/v1/features/${encodeURIComponent(refOf(f))}/health`).catch(() => null)])),
  );
  const rows = features.map((f) =>
    h(
      'tr',
      { class: 'clickable', onclick: () => (location.hash = `#/feature/${encodeURIComponent(refOf(f))}`) },
      h(
        'td',
        {},
        h('a', { href: `#/feature/${encodeURIComponent(refOf(f))}` }, f.name),
        h('span', { class: 'muted' }, `@${f.variant}`),
        (f.aliases || []).map((a) => h('span', { class: 'chip' }, a)),
      ),
      h('td', {}, f.kind),
      h('td', {}, statusBadge(f.status)),
      h('td', { class: 'num' }, fmt(f.rows)),
      h('td', {}, f.text ? `${f.text.model.name}@${f.text.model.version}` : f.vector ? h('span', { class: 'muted' }, `column ${f.vector.column}`) : '—'),
      h('td', {}, f.kind === 'embedding' ? `${f.metric}, ${f.dims} d` : f.type),
      h('td', {}, `${f.source.name}@${f.source.variant}`),
      h('td', {}, f.provider),
      h('td', {}, f.kind === 'embedding' ? healthBadge(health.get(refOf(f))) : ''),
    ),
  );
  const names = new Set(features.map((f) => f.name));
  page(
    'Features',
    `${names.size} features, ${features.length} variants`,
    h(
      'div',
      { class: 'card' },
      features.length
        ? h(
            'table',
            { id: 'features' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Feature', 'Kind', 'Status', 'Rows', 'Model', 'Metric / type', 'Source', 'Provider', 'Health'].map((t) =>
                  h('th', { class: t === 'Rows' ? 'num' : '' }, t),
                ),
              ),
            ),
            h('tbody', {}, rows),
          )
        : h('p', { class: 'muted' }, 'Nothing registered yet: `nearline apply defs.yaml`.'),
    ),
  );
}

function lineageSvg(f, model) {
  const nodes = [
    { kind: 'source', name: `${f.source.name}@${f.source.variant}`, detail: 'rows' },
    f.text
      ? { kind: 'model', name: `${f.text.model.name}@${f.text.model.version}`, detail: model ? `${model.runtime}, ${model.dims} d` : '' }
      : f.kind === 'embedding'
        ? { kind: 'vectors', name: `column ${f.vector?.column}`, detail: 'precomputed' }
        : { kind: 'column', name: f.column, detail: f.type },
    { kind: 'feature', name: refOf(f), detail: f.kind === 'embedding' ? `${f.dims} d, ${f.metric}` : 'scalar', self: true },
    { kind: 'provider', name: f.provider, detail: f.kind === 'embedding' ? 'vector store' : 'online store' },
  ];
  const W = 200;
  const GAP = 60;
  const H = 76;
  const width = nodes.length * W + (nodes.length - 1) * GAP + 20;
  const clip = (s, n = 24) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
  const parts = [];
  nodes.forEach((n, i) => {
    const x = 10 + i * (W + GAP);
    parts.push(
      `<g class="node${n.self ? ' self' : ''}"><title>${esc(`${n.kind} ${n.name}`)}</title><rect x="${x}" y="10" width="${W}" height="${H}"></rect>` +
        `<text class="kind" x="${x + 14}" y="32">${esc(n.kind)}</text>` +
        `<text class="name" x="${x + 14}" y="54">${esc(clip(n.name))}</text>` +
        `<text class="detail" x="${x + 14}" y="74">${esc(clip(n.detail, 28))}</text></g>`,
    );
    if (i < nodes.length - 1)
      parts.push(`<path class="edge" marker-end="url(#arrow)" d="M${x + W + 4} ${10 + H / 2} L${x + W + GAP - 6} ${10 + H / 2}"></path>`);
  });
  return `<svg viewBox="0 0 ${width} ${H + 20}" role="img" aria-label="lineage"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0 0 L10 5 L0 10 z" fill="#9aa3b2"></path></marker></defs>${parts.join('')}</svg>`;
}

function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

function healthTable(hl) {
  const row = (label, s) => {
    const n = (x) => (s.count ? fmt(x) : '—');
    return h(
      'tr',
      {},
      h('td', {}, label),
      h('td', { class: 'num' }, fmt(s.count)),
      h('td', { class: 'num' }, n(s.normMean)),
      h('td', { class: 'num' }, n(s.normStd)),
      h('td', { class: 'num' }, n(s.zero)),
      h('td', { class: 'num' }, n(s.duplicates)),
    );
  };
  return h(
    'table',
    {},
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['', 'Vectors', 'Norm mean', 'Norm std', 'Zero', 'Duplicates'].map((t, i) => h('th', { class: i ? 'num' : '' }, t)),
      ),
    ),
    h('tbody', {}, row('Baseline (materialized)', hl.baseline), row('Recent writes', hl.recent)),
  );
}

async function featurePage(ref) {
  const { features, models } = await registry();
  const f = resolveRef(features, ref);
  if (!f) throw new ApiError(404, { code: 'NL_FEATURE_NOT_FOUND', message: `feature ${ref} not found` });
  const model = f.text ? models.find((m) => m.name === f.text.model.name && m.version === f.text.model.version) : undefined;
  const [history, hl] = await Promise.all([
    api(`/v1/registry/history?feature=${encodeURIComponent(f.name)}&limit=200`),
    f.kind === 'embedding' ? api(`/v1/features/${encodeURIComponent(refOf(f))}/health`).catch(() => null) : null,
  ]);
  const siblings = features.filter((x) => x.name === f.name && x.variant !== f.variant && x.kind === 'embedding');
  const aliasMoves = history.events.filter((e) => e.action === 'alias.set');
  const others = history.events.filter((e) => e.action !== 'alias.set');

  const compareOut = h('div');
  const compare = siblings.length
    ? h(
        'div',
        { class: 'row', style: 'margin-top:12px' },
        h('span', { class: 'label' }, 'Compare with'),
        h(
          'select',
          {
            id: 'compare',
            onchange: async (ev) => {
              if (!ev.target.value) return compareOut.replaceChildren();
              try {
                const r = await api(`/v1/features/${encodeURIComponent(refOf(f))}/health?against=${encodeURIComponent(ev.target.value)}`);
                const c = r.comparison;
                compareOut.replaceChildren(
                  h(
                    'p',
                    {},
                    `${c.a} vs ${c.b}: centroid cosine distance `,
                    h('b', {}, c.centroidDistance === null ? 'n/a (different dims)' : fmt(c.centroidDistance)),
                    ', mean norm ',
                    h('b', {}, pct(c.normShift)),
                    ` (${fmt(c.a_stats.normMean)} → ${fmt(c.b_stats.normMean)})`,
                  ),
                );
              } catch (e) {
                compareOut.replaceChildren(errorBox(e));
              }
            },
          },
          h('option', { value: '' }, 'another variant…'),
          siblings.map((s) => h('option', { value: refOf(s) }, refOf(s))),
        ),
        compareOut,
      )
    : null;

  const healthCard =
    f.kind === 'embedding'
      ? h(
          'div',
          { class: 'card' },
          h('div', { class: 'row', style: 'justify-content:space-between' }, h('h2', {}, 'Embedding health'), hl ? healthBadge(hl) : null),
          hl
            ? [
                healthTable(hl),
                h(
                  'p',
                  { class: 'muted', style: 'margin:12px 0 0' },
                  hl.drift
                    ? `Recent writes vs baseline: centroid cosine distance ${fmt(hl.drift.centroidDistance)} (threshold ${hl.thresholds.centroidDistance}), mean norm ${pct(hl.drift.normShift)} (threshold ±${hl.thresholds.normShift * 100}%). Judged from ${hl.thresholds.minSamples} recent writes on.`
                    : 'No writes since materialization: nothing to compare with the baseline yet.',
                ),
                compare,
              ]
            : h('p', { class: 'muted' }, 'No health recorded for this variant yet.'),
        )
      : null;

  page(
    refOf(f),
    null,
    h(
      'div',
      { class: 'row', style: 'margin:-8px 0 16px' },
      statusBadge(f.status),
      (f.aliases || []).map((a) => h('span', { class: 'chip' }, a)),
      f.kind === 'embedding' && f.status === 'materialized'
        ? [
            h('a', { href: `#/playground?feature=${encodeURIComponent(refOf(f))}` }, 'Query it'),
            h('a', { href: `#/map?feature=${encodeURIComponent(refOf(f))}` }, 'Map it'),
          ]
        : null,
    ),
    h('div', { class: 'card lineage' }, h('h2', {}, 'Lineage'), h('div', { html: lineageSvg(f, model) })),
    h(
      'div',
      { class: 'grid2' },
      h(
        'div',
        { class: 'card' },
        h('h2', {}, 'Definition'),
        h(
          'dl',
          { class: 'props' },
          [
            ['Entity', f.entity],
            ['Kind', f.kind],
            f.kind === 'embedding' ? ['Dims, metric', `${f.dims}, ${f.metric}`] : ['Column, type', `${f.column}, ${f.type}`],
            f.text ? ['Text column', f.text.column] : f.vector ? ['Vector column', f.vector.column] : null,
            model ? ['Model', `${model.name}@${model.version} (${model.runtime}, sha256 ${model.sha256.slice(0, 12)})`] : null,
            f.index
              ? [
                  'Index',
                  Object.entries(f.index)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(', '),
                ]
              : null,
            ['Metadata', f.metadata?.length ? f.metadata.join(', ') : '—'],
          ]
            .filter(Boolean)
            .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
        ),
      ),
      h(
        'div',
        { class: 'card' },
        h('h2', {}, 'Materialization'),
        h(
          'dl',
          { class: 'props' },
          [
            ['Status', statusBadge(f.status)],
            ['Rows', fmt(f.rows)],
            ['Registered', when(f.createdAt)],
            ['Materialized', when(f.materializedAt)],
          ].flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
        ),
      ),
    ),
    h('div', { style: 'height:16px' }),
    healthCard,
    h(
      'div',
      { class: 'card' },
      h('h2', {}, 'Alias history'),
      aliasMoves.length
        ? h(
            'table',
            { id: 'alias-history' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['When', 'Alias', 'Moved', 'Who'].map((t) => h('th', {}, t)),
              ),
            ),
            h(
              'tbody',
              {},
              aliasMoves.map((e) =>
                h(
                  'tr',
                  {},
                  h('td', {}, when(e.at)),
                  h('td', {}, e.name),
                  h('td', {}, `${e.detail?.previous ?? '(new)'} → ${e.detail?.variant}`),
                  h('td', { class: 'mono' }, e.actor),
                ),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'No alias of this feature has moved.'),
    ),
    h('div', { class: 'card' }, h('h2', {}, 'Other changes'), others.length ? eventsTable(others) : h('p', { class: 'muted' }, 'None.')),
  );
}

function describe(e) {
  const d = e.detail;
  if (!d) return '';
  if (e.action === 'alias.set') return `${d.previous ?? '(new)'} → ${d.variant}`;
  return Object.entries(d)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(', ') : typeof v === 'number' ? fmt(v) : v}`)
    .join(' · ');
}

function eventsTable(events) {
  return h(
    'table',
    { id: 'events' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['When', 'Who', 'What', 'Name', 'Details'].map((t) => h('th', {}, t)),
      ),
    ),
    h(
      'tbody',
      {},
      events.map((e) =>
        h(
          'tr',
          {},
          h('td', { style: 'white-space:nowrap' }, when(e.at)),
          h('td', { class: 'mono' }, e.actor),
          h('td', {}, `${e.action} ${e.action.startsWith(e.kind) ? '' : e.kind}`),
          h('td', {}, e.name),
          h('td', { class: 'muted' }, describe(e)),
        ),
      ),
    ),
  );
}

async function historyPage() {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const feature = params.get('feature') || '';
  const { features } = await registry();
  const names = [...new Set(features.map((f) => f.name))].sort();
  const { events } = await api(`/v1/registry/history?limit=500${feature ? `&feature=${encodeURIComponent(feature)}` : ''}`);
  page(
    'History',
    'every change to the registry, newest first',
    h(
      'div',
      { class: 'row', style: 'margin-bottom:12px' },
      h('span', { class: 'label' }, 'Feature'),
      h(
        'select',
        {
          id: 'history-feature',
          onchange: (ev) => (location.hash = ev.target.value ? `#/history?feature=${encodeURIComponent(ev.target.value)}` : '#/history'),
        },
        h('option', { value: '' }, 'all'),
        names.map((n) => h('option', { value: n, selected: n === feature }, n)),
      ),
    ),
    h('div', { class: 'card' }, events.length ? eventsTable(events) : h('p', { class: 'muted' }, 'No changes recorded.')),
  );
}

// ---------- playground ----------

const OPS = ['eq', 'ne', 'in', 'nin', 'gt', 'gte', 'lt', 'lte'];

function parseValue(raw, op) {
  const one = (s) => {
    const t = s.trim();
    try {
      const v = JSON.parse(t);
      return typeof v === 'object' && v !== null ? t : v;
    } catch {
      return t;
    }
  };
  return op === 'in' || op === 'nin' ? raw.split(',').map(one) : one(raw);
}

async function playgroundPage() {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const { features } = await registry();
  const refs = refsOf(features);
  if (!refs.length) return page('Playground', null, h('div', { class: 'card muted' }, 'No live embedding feature to query yet.'));
  const form = {
    feature: params.get('feature') && refs.includes(params.get('feature')) ? params.get('feature') : refs[0],
    mode: 'id',
    input: '',
    k: 10,
    conds: [],
    join: new Set(),
    diversity: false,
    lambda: 0.5,
  };

  const featureSel = h(
    'select',
    { id: 'pg-feature', onchange: (ev) => ((form.feature = ev.target.value), (form.conds = []), (form.join = new Set()), draw()) },
    refs.map((r) => h('option', { value: r }, r)),
  );
  const left = h('div', { class: 'card' });
  const right = h('div', { class: 'stack' }, h('div', { class: 'card muted', id: 'pg-results' }, 'Run a query to see its hits.'));
  page('Playground', 'nearest-neighbour queries against the live API', h('div', { class: 'playground' }, left, right));

  function body() {
    const q = form.mode === 'id' ? { id: form.input.trim() } : form.mode === 'text' ? { text: form.input } : { vector: JSON.parse(form.input || 'null') };
    const b = { feature: form.feature, k: Number(form.k), query: q };
    const conds = form.conds.filter((c) => c.field && c.value !== '').map((c) => ({ field: c.field, op: c.op, value: parseValue(c.value, c.op) }));
    if (conds.length === 1) b.filter = conds[0];
    else if (conds.length > 1) b.filter = { and: conds };
    if (form.join.size) b.include = { features: [...form.join] };
    if (form.diversity) b.diversity = { lambda: Number(form.lambda) };
    return b;
  }

  function draw() {
    const f = resolveRef(features, form.feature);
    const joinable = features.filter((x) => x.kind === 'scalar' && x.entity === f.entity && x.status === 'materialized');
    if (form.mode === 'text' && !f.text) form.mode = 'id';
    featureSel.value = form.feature;
    const modeBtn = (m, label, disabled) =>
      h(
        'button',
        {
          type: 'button',
          class: form.mode === m ? 'on' : '',
          disabled,
          title: disabled ? 'this feature has no model' : undefined,
          onclick: () => ((form.mode = m), (form.input = ''), draw()),
        },
        label,
      );
    const input =
      form.mode === 'vector'
        ? h('textarea', { id: 'pg-input', rows: 4, placeholder: `[${f.dims} numbers]`, oninput: (ev) => (form.input = ev.target.value) }, form.input)
        : h('input', {
            type: 'text',
            id: 'pg-input',
            value: form.input,
            placeholder: form.mode === 'id' ? 'an id, e.g. one from the map' : 'some text to embed',
            oninput: (ev) => (form.input = ev.target.value),
            style: 'width:100%',
          });
    const condRows = form.conds.map((c, i) =>
      h(
        'div',
        { class: 'cond' },
        h(
          'select',
          { 'aria-label': 'field', onchange: (ev) => (c.field = ev.target.value) },
          f.metadata.map((m) => h('option', { value: m, selected: m === c.field }, m)),
        ),
        h(
          'select',
          { 'aria-label': 'operator', onchange: (ev) => (c.op = ev.target.value) },
          OPS.map((o) => h('option', { value: o, selected: o === c.op }, o)),
        ),
        h('input', { type: 'text', 'aria-label': 'value', value: c.value, placeholder: 'value (a,b for in)', oninput: (ev) => (c.value = ev.target.value) }),
        h('button', { type: 'button', title: 'remove', onclick: () => (form.conds.splice(i, 1), draw()) }, '×'),
      ),
    );
    left.replaceChildren(
      h(
        'form',
        { id: 'pg-form', onsubmit: (ev) => (ev.preventDefault(), run()) },
        h('div', { class: 'field' }, h('label', { for: 'pg-feature' }, 'Feature'), featureSel),
        h(
          'div',
          { class: 'field' },
          h('span', { class: 'label' }, 'Query by'),
          h('div', { class: 'tabs' }, modeBtn('id', 'id'), modeBtn('text', 'text', !f.text), modeBtn('vector', 'vector')),
        ),
        h('div', { class: 'field' }, input),
        h(
          'div',
          { class: 'field' },
          h('label', { for: 'pg-k' }, 'k'),
          h('input', { type: 'number', id: 'pg-k', min: 1, max: 1000, value: form.k, oninput: (ev) => (form.k = ev.target.value), style: 'width:90px' }),
        ),
        h(
          'div',
          { class: 'field' },
          h('span', { class: 'label' }, 'Filter (all must hold)'),
          condRows,
          f.metadata.length
            ? h(
                'div',
                {},
                h(
                  'button',
                  { type: 'button', id: 'pg-add-cond', onclick: () => (form.conds.push({ field: f.metadata[0], op: 'eq', value: '' }), draw()) },
                  '+ condition',
                ),
              )
            : h('span', { class: 'muted' }, 'this feature has no metadata fields'),
        ),
        joinable.length
          ? h(
              'div',
              { class: 'field' },
              h('span', { class: 'label' }, 'Join scalar features'),
              joinable.map((x) =>
                h(
                  'label',
                  { class: 'check' },
                  h('input', {
                    type: 'checkbox',
                    value: refOf(x),
                    checked: form.join.has(refOf(x)),
                    onchange: (ev) => (ev.target.checked ? form.join.add(refOf(x)) : form.join.delete(refOf(x))),
                  }),
                  refOf(x),
                ),
              ),
            )
          : null,
        h(
          'div',
          { class: 'field' },
          h(
            'label',
            { class: 'check' },
            h('input', { type: 'checkbox', id: 'pg-div', checked: form.diversity, onchange: (ev) => ((form.diversity = ev.target.checked), draw()) }),
            h('span', {}, 'Diversity (MMR re-ranking)'),
          ),
          form.diversity
            ? h(
                'div',
                { class: 'row' },
                'λ',
                h('input', {
                  type: 'number',
                  min: 0,
                  max: 1,
                  step: 0.1,
                  value: form.lambda,
                  oninput: (ev) => (form.lambda = ev.target.value),
                  style: 'width:80px',
                }),
                h('span', { class: 'muted' }, '1 = relevance only'),
              )
            : null,
        ),
        h('button', { class: 'primary', type: 'submit', id: 'pg-run' }, 'Run query'),
      ),
    );
  }

  async function run() {
    const out = document.getElementById('pg-results');
    let b;
    try {
      b = body();
    } catch {
      out.replaceChildren(errorBox({ code: 'NL_BAD_REQUEST', message: 'the vector must be a JSON array of numbers' }));
      return;
    }
    out.classList.remove('muted');
    try {
      const res = await api('/v1/nearest', { method: 'POST', body: b });
      const cols = b.include?.features || [];
      out.replaceChildren(
        h(
          'div',
          { class: 'row', style: 'justify-content:space-between;margin-bottom:8px' },
          h('h2', { style: 'margin:0' }, `${res.hits.length} hits from ${res.feature}@${res.variant}`),
          h('span', { class: 'muted' }, `${res.took_ms} ms on the server`),
        ),
        h(
          'table',
          { id: 'hits' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', { class: 'num' }, '#'),
              h('th', {}, 'id'),
              h('th', { class: 'num' }, 'score'),
              cols.map((c) => h('th', {}, c)),
            ),
          ),
          h(
            'tbody',
            {},
            res.hits.map((hit, i) =>
              h(
                'tr',
                { 'data-id': hit.id, 'data-score': String(hit.score) },
                h('td', { class: 'num muted' }, i + 1),
                h('td', { class: 'mono' }, hit.id),
                h('td', { class: 'num' }, hit.score.toFixed(4)),
                cols.map((c) => h('td', {}, fmtValue(hit.features?.[c]))),
              ),
            ),
          ),
        ),
        h(
          'div',
          { class: 'row', style: 'margin-top:12px' },
          h('button', { type: 'button', id: 'copy-curl', onclick: () => show(curlOf(b)) }, 'Copy as curl'),
          h('button', { type: 'button', id: 'copy-client', onclick: () => show(clientOf(b)) }, 'Copy as client code'),
        ),
        h('pre', { class: 'snippet', id: 'snippet', hidden: true }),
      );
    } catch (e) {
      out.replaceChildren(errorBox(e));
    }
  }

  function show(text) {
    const pre = document.getElementById('snippet');
    pre.textContent = text;
    pre.hidden = false;
    // The clipboard needs a secure context and permission; the snippet stays visible either way.
    navigator.clipboard?.writeText(text).catch(() => undefined);
  }

  draw();
  if (params.get('id')) {
    form.input = params.get('id');
    draw();
    run();
  }
}

function fmtValue(v) {
  if (v === null || v === undefined) return '—';
  if (Array.isArray(v))
    return `[${v
      .slice(0, 3)
      .map((x) => x.toFixed(3))
      .join(', ')}${v.length > 3 ? ', …' : ''}]`;
  return typeof v === 'number' ? String(Number(v.toFixed(4))) : String(v);
}

function curlOf(b) {
  // The key stays out of the snippet (it may be pasted anywhere): the shell supplies it.
  const key = state.key ? ` \\\n  -H "authorization: Bearer $NEARLINE_KEY"` : '';
  return `curl -s ${location.origin}/v1/nearest \\\n  -H 'content-type: application/json'${key} \\\n  -d '${JSON.stringify(b).replace(/'/g, "'\\''")}'`;
}

function clientOf(b) {
  return `import { Nearline } from 'nearline/client';\n\nconst nl = new Nearline({ url: '${location.origin}'${state.key ? ', apiKey: process.env.NEARLINE_KEY' : ''} });\nconst { hits } = await nl.nearest(${JSON.stringify(b, null, 2)});`;
}

// ---------- map ----------

const PALETTE = ['#4f46e5', '#e11d48', '#059669', '#d97706', '#0891b2', '#7c3aed', '#65a30d', '#db2777', '#475569', '#ea580c'];

async function mapPage() {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const { features } = await registry();
  const refs = servable(features).map(refOf);
  if (!refs.length) return page('Map', null, h('div', { class: 'card muted' }, 'No live embedding feature to map yet.'));
  const ref = params.get('feature') && resolveRef(features, params.get('feature')) ? refOf(resolveRef(features, params.get('feature'))) : refs[0];
  const box = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Computing the projection…'));
  const side = h(
    'div',
    { class: 'card', id: 'map-side' },
    h('h2', {}, 'Neighbours'),
    h('p', { class: 'muted' }, 'Click a point to query its nearest neighbours.'),
  );
  const featureSel = h(
    'select',
    { id: 'map-feature', onchange: (ev) => (location.hash = `#/map?feature=${encodeURIComponent(ev.target.value)}`) },
    refs.map((r) => h('option', { value: r, selected: r === ref }, r)),
  );
  page(
    'Map',
    'a 2-D projection (PCA) of a sample of the variant’s vectors',
    h('div', { class: 'row', style: 'margin-bottom:12px' }, h('span', { class: 'label' }, 'Feature'), featureSel),
    h('div', { class: 'map-wrap' }, box, side),
  );

  const map = await api(`/v1/features/${encodeURIComponent(ref)}/map`);
  if (!map.points.length) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No sample yet: the map is drawn from the ids embedding health samples while materializing and writing.'));
    return;
  }
  let color = map.fields[0] || '';
  let highlighted = new Set();
  let selected = null;
  const canvas = h('canvas', { id: 'map-canvas', 'data-points': '0' });
  const tip = h('div', { class: 'tooltip', hidden: true });
  const legend = h('div', { class: 'legend' });
  const colorSel = map.fields.length
    ? h(
        'select',
        { id: 'map-color', onchange: (ev) => ((color = ev.target.value), draw()) },
        map.fields.map((f) => h('option', { value: f }, f)),
      )
    : null;
  box.replaceChildren(
    h(
      'div',
      { class: 'row', style: 'justify-content:space-between;margin-bottom:10px' },
      h(
        'span',
        { class: 'muted' },
        `${fmt(map.points.length)} sampled of ${fmt(map.rows)} rows · axes explain ${(map.explained[0] * 100).toFixed(1)}% and ${(map.explained[1] * 100).toFixed(1)}% of the variance`,
      ),
      colorSel ? h('span', { class: 'row' }, h('span', { class: 'label' }, 'Colour by'), colorSel) : null,
    ),
    h('div', { class: 'canvas-box' }, canvas, tip),
    legend,
  );

  const xs = map.points.map((p) => p.x);
  const ys = map.points.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  let screen = [];

  function colours() {
    const values = map.points.map((p) => p.metadata?.[color]);
    const distinct = [...new Set(values.map((v) => JSON.stringify(v ?? null)))];
    const numeric = values.every((v) => typeof v === 'number') && distinct.length > PALETTE.length;
    if (numeric) {
      const lo = Math.min(...values);
      const hi = Math.max(...values);
      const ramp = (v) => `hsl(${250 - 200 * ((v - lo) / (hi - lo || 1))}, 70%, 48%)`;
      legend.replaceChildren(
        h('span', {}, color),
        h('span', {}, fmtValue(lo)),
        h('span', { class: 'ramp', style: `background:linear-gradient(90deg, ${ramp(lo)}, ${ramp((lo + hi) / 2)}, ${ramp(hi)})` }),
        h('span', {}, fmtValue(hi)),
      );
      return values.map(ramp);
    }
    const sorted = distinct.sort();
    const index = new Map(sorted.map((v, i) => [v, i]));
    const colourOf = (i) => (i < PALETTE.length ? PALETTE[i] : '#9ca3af');
    legend.replaceChildren(
      ...sorted
        .slice(0, PALETTE.length)
        .map((v, i) => h('span', {}, h('span', { class: 'sw', style: `background:${colourOf(i)}` }), v === 'null' ? '(none)' : JSON.parse(v))),
      sorted.length > PALETTE.length ? h('span', { class: 'muted' }, `+${sorted.length - PALETTE.length} more in grey`) : null,
    );
    return values.map((v) => colourOf(index.get(JSON.stringify(v ?? null))));
  }

  function draw() {
    const cssW = canvas.parentElement.clientWidth;
    const cssH = Math.round(Math.min(620, Math.max(360, cssW * 0.62)));
    const dpr = window.devicePixelRatio || 1;
    canvas.width = cssW * dpr;
    canvas.height = cssH * dpr;
    canvas.style.height = `${cssH}px`;
    const ctx = canvas.getContext('2d');
    ctx.scale(dpr, dpr);
    ctx.clearRect(0, 0, cssW, cssH);
    const pad = 16;
    const sx = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (cssW - 2 * pad);
    const sy = (y) => cssH - pad - ((y - y0) / (y1 - y0 || 1)) * (cssH - 2 * pad);
    const cols = colours();
    screen = map.points.map((p) => [sx(p.x), sy(p.y)]);
    const dim = highlighted.size > 0;
    ctx.globalAlpha = dim ? 0.25 : 0.8;
    screen.forEach(([x, y], i) => {
      ctx.fillStyle = cols[i];
      ctx.beginPath();
      ctx.arc(x, y, 3, 0, 2 * Math.PI);
      ctx.fill();
    });
    ctx.globalAlpha = 1;
    screen.forEach(([x, y], i) => {
      const id = map.points[i].id;
      if (!highlighted.has(id) && id !== selected) return;
      ctx.fillStyle = cols[i];
      ctx.strokeStyle = id === selected ? '#111827' : '#ffffff';
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(x, y, id === selected ? 6 : 5, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
    });
    // Where each point landed, for tests and tools driving the page: [{id, x, y}] in CSS pixels.
    canvas.points = screen.map(([x, y], i) => ({ id: map.points[i].id, x, y }));
    canvas.dataset.points = String(screen.length);
  }

  function nearestPoint(ev) {
    const r = canvas.getBoundingClientRect();
    const mx = ev.clientX - r.left;
    const my = ev.clientY - r.top;
    let best = -1;
    let bestD = 64;
    screen.forEach(([x, y], i) => {
      const d = (x - mx) ** 2 + (y - my) ** 2;
      if (d < bestD) [best, bestD] = [i, d];
    });
    return { i: best, mx, my };
  }

  canvas.addEventListener('mousemove', (ev) => {
    const { i, mx, my } = nearestPoint(ev);
    if (i < 0) return void (tip.hidden = true);
    const p = map.points[i];
    tip.hidden = false;
    tip.textContent = color ? `${p.id} · ${color}: ${p.metadata?.[color] ?? '—'}` : p.id;
    tip.style.left = `${mx}px`;
    tip.style.top = `${my}px`;
  });
  canvas.addEventListener('mouseleave', () => (tip.hidden = true));
  canvas.addEventListener('click', async (ev) => {
    const { i } = nearestPoint(ev);
    if (i < 0) return;
    selected = map.points[i].id;
    try {
      const res = await api('/v1/nearest', { method: 'POST', body: { feature: ref, k: 10, query: { id: selected } } });
      highlighted = new Set(res.hits.map((x) => x.id));
      side.replaceChildren(
        h('h2', {}, `Nearest to ${selected}`),
        h(
          'table',
          { id: 'map-hits' },
          h('thead', {}, h('tr', {}, h('th', {}, 'id'), h('th', { class: 'num' }, 'score'))),
          h(
            'tbody',
            {},
            res.hits.map((x) => h('tr', { 'data-id': x.id }, h('td', { class: 'mono' }, x.id), h('td', { class: 'num' }, x.score.toFixed(4)))),
          ),
        ),
        h(
          'p',
          { class: 'muted', style: 'margin-bottom:0' },
          'Highlighted on the map where they are in the sample. ',
          h('a', { href: `#/playground?feature=${encodeURIComponent(ref)}&id=${encodeURIComponent(selected)}` }, 'Open in the playground'),
        ),
      );
    } catch (e) {
      side.replaceChildren(errorBox(e));
    }
    draw();
  });
  const onResize = () => draw();
  window.addEventListener('resize', onResize);
  state.cleanup = () => window.removeEventListener('resize', onResize);
  draw();
}

// ---------- charts ----------

async function chartsPage() {
  const grid = h('div', { class: 'charts', id: 'charts' });
  page('Charts', 'the last half hour, sampled every few seconds from /metrics', grid);
  const cards = new Map();
  async function refresh() {
    const data = await api('/v1/dashboard/series');
    for (const s of data.series) {
      let c = cards.get(s.key);
      if (!c) {
        c = { el: h('div', { class: 'chart card', 'data-series': s.key }), plot: null };
        cards.set(s.key, c);
        grid.append(c.el);
      }
      const present = s.values.some((v) => v !== null);
      const last = s.values[s.values.length - 1];
      const now =
        last === null || last === undefined
          ? h('span', { class: 'value muted' }, '—')
          : h('span', { class: 'value' }, `${fmt(last, last < 10 ? 2 : 1)} ${s.unit}`);
      const head = h(
        'div',
        { class: 'chart-head' },
        h('div', {}, h('h2', { style: 'margin:0' }, s.label), s.help ? h('div', { class: 'help' }, s.help) : null),
        present ? now : null,
      );
      if (!present || data.times.length < 2) {
        c.plot?.destroy();
        c.plot = null;
        c.el.replaceChildren(head, h('div', { class: 'nodata' }, data.times.length < 2 ? 'collecting… (a point every few seconds)' : 'no data yet'));
        c.el.dataset.state = 'empty';
        continue;
      }
      c.el.dataset.state = 'plotted';
      const series = [data.times, s.values];
      if (c.plot) {
        c.el.firstChild.replaceWith(head);
        c.plot.setData(series);
        continue;
      }
      const holder = h('div');
      c.el.replaceChildren(head, holder);
      c.plot = new window.uPlot(
        {
          width: Math.max(300, c.el.clientWidth - 36),
          height: 170,
          legend: { show: false },
          cursor: { drag: { x: false, y: false } },
          scales: { y: { range: (u, lo, hi) => [Math.min(0, lo), hi > 0 ? hi * 1.15 : 1] } },
          axes: [
            { stroke: '#6b7280', grid: { stroke: '#eef0f3' } },
            { stroke: '#6b7280', grid: { stroke: '#eef0f3' }, size: 56 },
          ],
          series: [{}, { label: s.label, stroke: '#4f46e5', width: 2, fill: 'rgba(79,70,229,0.08)', spanGaps: false }],
        },
        series,
        holder,
      );
    }
  }
  await refresh();
  state.timers.push(setInterval(() => refresh().catch(() => undefined), 5000));
}

// ---------- router ----------

const PAGES = { features: featuresPage, feature: featurePage, playground: playgroundPage, map: mapPage, charts: chartsPage, history: historyPage };

async function route() {
  clearTimers();
  state.cleanup?.();
  state.cleanup = undefined;
  renderSession();
  const [path] = (location.hash.slice(2) || 'features').split('?');
  const [name, ...rest] = path.split('/');
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === (name === 'feature' ? 'features' : name));
  if (state.keyRequired && !state.key) return keyForm();
  const fn = PAGES[name] || featuresPage;
  try {
    await fn(decodeURIComponent(rest.join('/')));
  } catch (e) {
    if (e.status === 401) return;
    page('Something went wrong', null, errorBox(e));
  }
}

async function start() {
  const session = await fetch('/ui/session.json').then((r) => r.json());
  state.keyRequired = session.keyRequired;
  window.addEventListener('hashchange', route);
  await route();
}

start();
