// podgate admin view: a page per hash route, rendered from the controller's JSON API
// (/v1/overview, /v1/apps, /v1/why, /v1/explain), re-read whenever /v1/events says
// something changed. The DOM is built with textContent only (no HTML from data).
'use strict';

const state = { writes: 'refused', csrf: null, page: 'overview', apps: { q: '', page: 1 }, overview: null };

// ---- small helpers ----------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function age(ms) {
  if (ms === null || ms === undefined) return '';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function when(ms) {
  if (!ms) return '—';
  const t = h('time', { datetime: new Date(ms).toISOString(), title: new Date(ms).toLocaleString() },
    `${new Date(ms).toLocaleTimeString()} (${age(ms)})`);
  return t;
}

function badge(text, kind) {
  return h('span', { class: `badge ${kind || text.replace(/[^a-z]+/gi, '-').toLowerCase()}` }, text);
}

function table(caption, head, rows) {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))
      : h('tr', {}, h('td', { colspan: head.length, class: 'none' }, 'none'))));
}

function say(message, kind) {
  const a = document.getElementById('alert');
  a.textContent = message;
  a.className = `alert ${kind || 'error'}`;
  a.hidden = !message;
}

async function get(path) {
  const r = await fetch(path, { credentials: 'same-origin' });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${path}: HTTP ${r.status}`);
  return body;
}

async function write(method, path, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (state.csrf) headers['X-CSRF-Token'] = state.csrf;
  const r = await fetch(path, { method, headers, credentials: 'same-origin', body: body ? JSON.stringify(body) : undefined });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(answer.error || `HTTP ${r.status}`);
  return answer;
}

function canWrite() {
  return state.writes === 'loopback' || (state.writes === 'token' && state.csrf);
}

// ---- session -----------------------------------------------------------------------

async function loadSession() {
  const s = await get('/ui/session');
  state.writes = s.writes;
  state.csrf = s.csrf || null;
  const who = document.getElementById('who');
  document.getElementById('login').hidden = !(s.writes === 'token' && !s.logged_in);
  document.getElementById('logout').hidden = !(s.writes === 'token' && s.logged_in);
  who.textContent = s.writes === 'token' ? (s.logged_in ? 'logged in: changes allowed' : 'read-only')
    : s.writes === 'loopback' ? 'changes allowed (loopback, no token configured)' : 'read-only (writes are off)';
}

async function login(event) {
  event.preventDefault();
  const input = document.getElementById('token');
  try {
    const r = await fetch('/ui/login', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: input.value }) });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    input.value = '';
    say('');
    await loadSession();
    render();
  } catch (e) {
    say(`Login failed: ${e.message}`);
  }
}

async function logout() {
  await write('POST', '/ui/logout');
  await loadSession();
  render();
}

// ---- pages -------------------------------------------------------------------------

function clusterRows(o) {
  return o.clusters.map((c) => [
    h('strong', {}, c.name), badge(c.state), when(c.since_ms), String(c.weight),
    Object.entries(c.objects || {}).map(([k, n]) => `${k} ${n}`).join(', '), c.gateway_api || '', c.last_error || '']);
}

function targetRows(o) {
  return o.targets.map((t) => [
    h('strong', {}, t.name), badge(t.state), String(t.lag),
    t.last_ack_ago_ms === null || t.last_ack_ago_ms === undefined ? 'never' : age(Date.now() - t.last_ack_ago_ms),
    String(t.pushes), String(t.failures), String((t.quarantined || []).length), t.last_error || '']);
}

// Forms survive live refreshes: the same node is shown again while what it was built
// from is unchanged, or while someone is editing it.
const kept = {};

function keep(key, signature, build) {
  const old = kept[key];
  if (old && (old.signature === signature || old.node.dataset.dirty)) return old.node;
  const node = build();
  node.addEventListener('input', () => { node.dataset.dirty = '1'; });
  node.addEventListener('submit', () => { delete node.dataset.dirty; });
  kept[key] = { signature, node };
  return node;
}

function weightsForm(o) {
  return keep('weights', JSON.stringify([o.weights, canWrite()]), () => buildWeightsForm(o));
}

function buildWeightsForm(o) {
  const clusters = Object.keys(o.weights.clusters || {});
  const inputs = clusters.map((c) => h('label', {}, `${c} `,
    h('input', { type: 'number', min: '0', max: '10000', name: c, value: String(o.weights.clusters[c]), 'aria-label': `weight of cluster ${c}`, disabled: !canWrite() })));
  const form = h('form', { class: 'inline', id: 'global-weights', onsubmit: async (e) => {
    e.preventDefault();
    const weights = clusters.map((c) => `${c}=${form.elements[c].value}`).join(',');
    try { await write('PUT', '/v1/weights', { weights }); say(`Global weights set: ${weights}`, 'ok'); } catch (err) { say(`Weights refused: ${err.message}`); }
  } }, inputs, h('button', { type: 'submit', disabled: !canWrite() }, 'Set global weights'),
  h('button', { type: 'button', disabled: !canWrite(), onclick: async () => {
    try { await write('PUT', '/v1/weights', { weights: null }); say('Global weights back to the configuration', 'ok'); } catch (err) { say(err.message); }
  } }, 'Back to configuration'));
  return h('section', { 'aria-labelledby': 'weights-h' }, h('h2', { id: 'weights-h' }, 'Cluster weights'),
    h('p', { class: 'hint' }, `Kept in ConfigMap ${o.weights.configmap}${o.weights.global ? ` · run-time: ${o.weights.global}` : ' · from the configuration'}`),
    canWrite() ? null : h('p', { class: 'hint' }, 'Log in with the admin token to change them.'), form);
}

function renderOverview(o) {
  const problems = o.problems.length
    ? h('ul', { class: 'problems' }, o.problems.map((p) => h('li', { class: p.severity },
      badge(p.severity), ' ', h('strong', {}, p.subject), ': ', p.message, p.since_ms ? [' · since ', when(p.since_ms)] : [])))
    : h('p', { class: 'ok' }, 'No problems: every cluster synced, every LB target in sync.');
  const migrations = Object.entries(o.weights.migrations || {});
  return [
    h('h1', {}, 'Overview'),
    h('p', { class: 'counts' }, `${o.counts.hosts} hosts · ${o.counts.upstreams} upstreams · ${o.counts.endpoints} endpoints · ${o.counts.gated_waiting} pods waiting for the LB · ${o.pushing ? 'this replica pushes to the LBs' : 'standby: another replica pushes'}`),
    h('section', { 'aria-labelledby': 'problems-h' }, h('h2', { id: 'problems-h' }, 'Problems'), problems),
    table('Clusters', ['cluster', 'state', 'since', 'weight', 'objects', 'Gateway API', 'last error'], clusterRows(o)),
    table('LB targets', ['target', 'state', 'lag (writes)', 'last push acknowledged', 'pushes', 'failures', 'quarantined', 'last error'], targetRows(o)),
    table('Migrations', ['app', 'to', 'state', 'weights now', 'paused'], migrations.map(([app, m]) => [app, m.target || '', badge(String(m.state)), m.weights, m.paused ? `${m.paused.reason || 'paused'} · since ${age(m.paused.since_ms)}` : ''])),
    weightsForm(o),
  ];
}

function liveCells(p) {
  const l = (p.live || [])[0];
  if (!l) return ['—', '—', '—', '—', '—'];
  const rate = (v) => (v === null || v === undefined ? '…' : String(v));
  const lat = l.p50_ms === null || l.p50_ms === undefined ? '…' : `≤${l.p50_ms} / ≤${l.p99_ms} ms`;
  const out = l.unhealthy ? badge('unhealthy', 'error') : l.ejected_for_ms ? badge(`ejected ${Math.ceil(l.ejected_for_ms / 1000)} s`, 'warning') : 'in';
  return [rate(l.requests_per_s), rate(l.errors_per_s), lat, String(l.in_flight), out];
}

function podRows(app) {
  return app.pods.map((p) => [
    p.cluster, p.name || '—', p.port ? `${p.address}:${p.port}` : p.address, p.node || '—', p.zone || '—',
    badge(p.state), String(p.weight), `${p.probability}%`, p.gate ? badge(p.gate, 'gate') : '—', ...liveCells(p)]);
}

function appControls(app, o) {
  if (!canWrite()) return null;
  const name = `${app.namespace}/${app.service}`;
  const m = o && o.weights.migrations && o.weights.migrations[name];
  const signature = JSON.stringify([o && o.weights.apps && o.weights.apps[name], m && m.target, m && m.held, o && Object.keys(o.weights.clusters || {})]);
  return keep(`app ${name}`, signature, () => buildAppControls(app, o));
}

function buildAppControls(app, o) {
  const name = `${app.namespace}/${app.service}`;
  const clusters = o ? Object.keys(o.weights.clusters || {}) : [];
  const migrating = o && o.weights.migrations && o.weights.migrations[name];
  const weightsInput = h('input', { name: 'weights', placeholder: 'idc=80,tke=20', 'aria-label': `weights for ${name}`, value: (o && o.weights.apps && o.weights.apps[name]) || '' });
  const setForm = h('form', { class: 'inline', onsubmit: async (e) => {
    e.preventDefault();
    try { await write('PUT', '/v1/weights', { app: name, weights: weightsInput.value || null }); say(`Weights of ${name}: ${weightsInput.value || 'cleared'}`, 'ok'); } catch (err) { say(`Refused: ${err.message}`); }
  } }, h('label', {}, 'App weights ', weightsInput), h('button', { type: 'submit' }, 'Set'));
  const to = h('select', { name: 'to', 'aria-label': `migrate ${name} to` }, clusters.map((c) => h('option', { value: c }, c)));
  const step = h('input', { type: 'number', name: 'step', min: '1', max: '100', value: '10', 'aria-label': 'step in percent' });
  const every = h('input', { name: 'every', value: '30s', size: '5', 'aria-label': 'time between steps' });
  const held = migrating && migrating.held;
  const migrate = migrating
    ? h('span', {},
      h('button', { type: 'button', onclick: async () => {
        try { await write('PUT', `/v1/migrations/${name}`, { paused: !held }); say(`Migration of ${name} ${held ? 'resumed' : 'paused'}`, 'ok'); } catch (err) { say(err.message); }
      } }, held ? 'Resume migration' : 'Pause migration'), ' ',
      h('button', { type: 'button', onclick: async () => {
        try { await write('DELETE', `/v1/migrations/${name}`); say(`Migration of ${name} cancelled`, 'ok'); } catch (err) { say(err.message); }
      } }, `Cancel migration to ${migrating.target}`))
    : h('form', { class: 'inline', onsubmit: async (e) => {
      e.preventDefault();
      try { await write('POST', '/v1/migrations', { app: name, to: to.value, step: Number(step.value), every: every.value }); say(`Migration of ${name} to ${to.value} started`, 'ok'); } catch (err) { say(`Refused: ${err.message}`); }
    } }, h('label', {}, 'Migrate to ', to), h('label', {}, ' step % ', step), h('label', {}, ' every ', every), h('button', { type: 'submit' }, 'Start'));
  return h('div', { class: 'controls' }, setForm, migrate);
}

function shareBar(shares) {
  const bar = h('div', { class: 'shares', role: 'img', 'aria-label': Object.entries(shares).map(([c, s]) => `${c} ${s / 10}%`).join(', ') || 'no cluster has an active pod' });
  for (const [c, s] of Object.entries(shares)) {
    const part = h('span', { class: `share c-${c.replace(/[^a-z0-9]/gi, '')}` }, `${c} ${s / 10}%`);
    part.style.width = `${s / 10}%`;
    bar.append(part);
  }
  return bar;
}

function renderApps(data, o) {
  const results = data.apps.map((app) => h('article', { class: 'app' },
    h('h2', {}, app.upstream),
    h('p', { class: 'routes' }, app.routes.map((r) => `${r.host} ${r.path}`).join(' · ') || 'no route'),
    shareBar(app.shares),
    h('p', { class: 'targets' }, 'LB targets: ', Object.entries(app.targets).map(([t, s]) => [badge(s), ` ${t} `])),
    app.health_check ? h('p', { class: 'hint' }, `health check: ${app.health_check}`) : null,
    table(`Pods of ${app.upstream}`, ['cluster', 'pod', 'address', 'node', 'zone', 'state', 'weight', 'share of requests', 'readiness gate', 'req/s', 'errors/s', 'p50 / p99', 'in flight', 'rotation'], podRows(app)),
    appControls(app, o)));
  const pages = Math.max(1, Math.ceil(data.total / data.per_page));
  return [
    h('p', { class: 'counts', 'aria-live': 'polite' }, `${data.total} upstreams match · page ${data.page} of ${pages}`),
    h('nav', { class: 'pager', 'aria-label': 'Pages of results' },
      h('button', { type: 'button', disabled: data.page <= 1, onclick: () => { state.apps.page -= 1; render(); } }, 'Previous'),
      h('button', { type: 'button', disabled: data.page >= pages, onclick: () => { state.apps.page += 1; render(); } }, 'Next')),
    results,
  ];
}

function renderWhy(w) {
  return [
    h('h2', {}, `Why: ${w.query}`),
    h('ul', { class: 'why' }, w.reasons.map((line) => h('li', {}, line))),
    w.pods.length ? table('The pod in the Kubernetes API', ['cluster', 'IP', 'phase', 'Ready', 'terminating'],
      w.pods.map((p) => [p.cluster, p.ip || '—', p.phase || '—', p.ready ? 'yes' : 'no', p.terminating ? 'yes' : 'no'])) : null,
    table('EndpointSlices listing it', ['cluster', 'slice', 'service', 'says', 'routable', 'upstreams'],
      w.findings.map((f) => [f.cluster, f.slice, f.service, f.condition, f.routable ? 'yes' : 'no',
        f.upstreams.map((u) => `${u.upstream.namespace}/${u.upstream.service}:${u.upstream.port}: ${u.state || 'left out'}`).join(', ') || 'none'])),
  ];
}

function renderExplain(e) {
  const decided = (e.via === 'path rule' || e.via === 'Gateway API rule') ? `${e.via} ${e.rule.kind} ${e.rule.path || '/'}` : e.via;
  const split = (bs) => (bs || []).map((b) => `${b.upstream ? `${b.upstream.namespace}/${b.upstream.service}:${b.upstream.port}` : '500'} ×${b.weight}`).join(', ');
  return [
    h('h2', {}, `${e.url}`),
    h('ol', { class: 'why' },
      h('li', {}, `Host ${e.host}: ${e.host_match}${e.pattern ? ` (${e.pattern})` : ''}`),
      h('li', {}, `Path ${e.path}: decided by ${decided}`),
      e.ingresses.length ? h('li', {}, `Ingress ${e.ingresses[0]}${e.ingresses.length > 1 ? ` (won over ${e.ingresses.slice(1).join(', ')}: oldest first)` : ''}`) : null,
      h('li', {}, e.upstream ? `Upstream ${e.upstream.namespace}/${e.upstream.service}:${e.upstream.port}` : 'No upstream: 404'),
      e.tls ? h('li', {}, `TLS certificate ${e.tls}`) : null),
    table('Rules of the host, in precedence order', ['path', 'type', 'upstream', 'matches'],
      e.rules.map((r) => [r.path.path || '/', r.path.kind, `${r.upstream.namespace}/${r.upstream.service}:${r.upstream.port}`, r.matches ? 'yes' : 'no'])),
    (e.gateway_rules || []).length ? table('Gateway API rules of the host, in the order they are tried', ['route', 'path', 'type', 'also needs', 'backends', 'path matches'],
      e.gateway_rules.map((r) => [r.source, r.path_regex || r.path.path || '/', r.path_regex ? 'RegularExpression' : r.path.kind, r.needs.length ? r.needs.join(', ') : '—', r.redirects ? 'redirect' : split(r.backends), r.path_matches ? 'yes' : 'no'])) : null,
    table('Pods that would serve it', ['cluster', 'pod', 'address', 'state', 'probability'],
      e.pods.map((p) => [p.cluster, p.name || '—', `${p.address}:${p.port}`, badge(p.state), `${p.probability}%`])),
    e.diagnostics.length ? h('ul', { class: 'problems' }, e.diagnostics.map((d) => h('li', { class: 'warning' }, d))) : null,
  ];
}

function renderTimeline(o) {
  return [h('h1', {}, 'Timeline'), h('p', { class: 'hint' }, 'Every push to an LB target, newest first, with the objects that caused it.'),
    table('Pushes', ['when', 'target', 'kind', 'acknowledged in', 'upserted', 'removed', 'caused by', 'result'],
      o.timeline.map((a) => [when(a.at_ms), a.target, a.full ? 'full sync' : 'change', `${a.took_ms} ms`,
        (a.upserted || []).join(', '), (a.removed || []).join(', '), (a.causes || []).join('; '),
        a.result === 'ok' ? badge('ok') : badge(a.result, 'error')]))];
}

// ---- routing and refresh -----------------------------------------------------------

const forms = {};

function searchForm() {
  if (forms.apps) return forms.apps;
  const input = h('input', { id: 'q', type: 'search', placeholder: 'host, namespace, service, pod, IP, cluster', value: state.apps.q });
  forms.apps = h('form', { role: 'search', class: 'inline', onsubmit: (e) => { e.preventDefault(); state.apps.q = input.value; state.apps.page = 1; render(); } },
    h('label', { for: 'q' }, 'Filter '), input, h('button', { type: 'submit' }, 'Search'));
  return forms.apps;
}

function whyForm() {
  if (forms.why) return forms.why;
  const pod = h('input', { id: 'why-pod', placeholder: 'namespace/name or IP' });
  const cluster = h('input', { id: 'why-cluster', placeholder: 'any', size: '8' });
  forms.why = h('form', { class: 'inline', onsubmit: (e) => {
    e.preventDefault();
    const v = pod.value.trim();
    state.why = (v.includes('/') ? `pod=${encodeURIComponent(v)}` : `ip=${encodeURIComponent(v)}`) + (cluster.value ? `&cluster=${encodeURIComponent(cluster.value)}` : '');
    render();
  } }, h('label', { for: 'why-pod' }, 'Pod '), pod, h('label', { for: 'why-cluster' }, ' cluster '), cluster, h('button', { type: 'submit' }, 'Why?'));
  return forms.why;
}

function explainForm() {
  if (forms.explain) return forms.explain;
  const url = h('input', { id: 'explain-url', type: 'url', placeholder: 'https://shop.example.com/api', size: '40', required: true });
  forms.explain = h('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); state.explain = url.value; render(); } },
    h('label', { for: 'explain-url' }, 'URL '), url, h('button', { type: 'submit' }, 'Explain'));
  return forms.explain;
}

let rendering = false;
let again = false;

async function render() {
  if (rendering) { again = true; return; }
  rendering = true;
  try {
    const page = (location.hash.replace(/^#\//, '') || 'overview').split('?')[0];
    state.page = page;
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    const view = document.getElementById('view');
    let content;
    const o = await get('/v1/overview');
    state.overview = o;
    if (page === 'apps') {
      const data = await get(`/v1/apps?q=${encodeURIComponent(state.apps.q)}&page=${state.apps.page}`);
      content = [h('h1', {}, 'Apps'), searchForm(), h('div', { id: 'results' }, renderApps(data, o))];
    } else if (page === 'why') {
      content = [h('h1', {}, 'Why is a pod (not) in the LB?'), whyForm(), state.why ? renderWhy(await get(`/v1/why?${state.why}`)) : null];
    } else if (page === 'explain') {
      content = [h('h1', {}, 'Which rule serves a URL?'), explainForm(), state.explain ? renderExplain(await get(`/v1/explain?url=${encodeURIComponent(state.explain)}`)) : null];
    } else if (page === 'timeline') {
      content = renderTimeline(o);
    } else {
      content = renderOverview(o);
    }
    // Keep a focused form control (typing in a filter) across a live refresh.
    const focused = document.activeElement && document.activeElement.id;
    view.replaceChildren(...[content].flat(2).filter(Boolean));
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    document.body.dataset.version = String(o.version);
    // When the first page with data was on screen (the benchmark reads it).
    if (!document.body.dataset.firstRenderMs) document.body.dataset.firstRenderMs = String(Math.round(performance.now()));
  } catch (e) {
    say(e.message);
  } finally {
    rendering = false;
    if (again) { again = false; render(); }
  }
}

function live() {
  const dot = document.getElementById('live');
  const source = new EventSource('/v1/events');
  let timer = null;
  source.addEventListener('open', () => { dot.textContent = 'live'; dot.className = 'live on'; });
  source.addEventListener('error', () => { dot.textContent = 'reconnecting…'; dot.className = 'live off'; });
  source.addEventListener('changed', () => {
    clearTimeout(timer);
    timer = setTimeout(render, 50);
  });
}

document.addEventListener('DOMContentLoaded', async () => {
  document.getElementById('login').addEventListener('submit', login);
  document.getElementById('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', () => { say(''); render(); });
  try { await loadSession(); } catch (e) { say(e.message); }
  await render();
  live();
  // The proxies' request rates move without the desired state changing.
  setInterval(() => { if (state.page === 'apps' && !document.hidden) render(); }, 5000);
});
