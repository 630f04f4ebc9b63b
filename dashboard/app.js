// botwarden dashboard: plain JavaScript, no build step, no dependency. Every
// request goes to the daemon that served this page. The token lives in this
// tab's sessionStorage and travels only in the Authorization header (or the
// websocket's ?token=), never in a cookie.
const $ = (s) => document.querySelector(s);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
};
let token = sessionStorage.getItem('botwarden-token');
// Who this token is (GET /whoami, SPEC 18): a viewer gets no Start/Stop/Restart and no Logs.
let me = { name: '', role: 'viewer' };
const RANK = { viewer: 0, operator: 1, admin: 2 };
const may = (role) => (RANK[me.role] ?? 0) >= RANK[role];
let lastId = 0;
let ws = null;
let retryMs = 250;
const rows = new Map();
const bots = new Map();
const feed = [];

const fragment = new URLSearchParams(location.hash.slice(1)).get('token');
if (fragment) {
  token = fragment;
  sessionStorage.setItem('botwarden-token', token);
  history.replaceState(null, '', location.pathname); // the token leaves the address bar
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) throw Object.assign(new Error(data?.message ?? `HTTP ${res.status}`), { status: res.status, body: data });
  return data;
}

function showAlert(msg) {
  const a = $('#alert');
  a.textContent = msg;
  a.hidden = !msg;
}

function showLogin(error) {
  $('#app').hidden = true;
  $('#login').hidden = false;
  const e = $('#login-error');
  e.textContent = error ?? '';
  e.hidden = !error;
  $('#token').focus();
}

$('#login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('#token').value.trim();
  sessionStorage.setItem('botwarden-token', token);
  void boot();
});

const human = (ms) => {
  if (ms < 0 || !Number.isFinite(ms)) return '-';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
};
// Why it ended first (SPEC 16): "stopped (request)", "killed-outside SIGKILL", "oom", "code 1".
const causeText = (x) => (x.cause === 'stopped' ? `stopped${x.reason ? ` (${x.reason})` : ''}` : x.cause && x.cause !== 'exit' ? x.cause : '');
const exitText = (x) =>
  x
    ? `${[causeText(x), x.cause === 'stopped' || x.cause === 'spawn-failed' ? '' : x.signal ? x.signal : `code ${x.code ?? '?'}`].filter(Boolean).join(' ')}${x.forced ? ' (forced)' : ''}, ${human(Date.now() - Date.parse(x.at))} ago`
    : '-';
const ACTIVE = new Set(['starting', 'running', 'stopping', 'backoff']);

function cell(label, cls) {
  return el('td', { 'data-label': label, ...(cls ? { class: cls } : {}) });
}

function renderBot(b) {
  bots.set(b.account, b);
  let r = rows.get(b.account);
  if (!r) {
    const tr = el('tr', { 'data-account': b.account });
    const c = {
      name: cell('', 'name'), state: cell('State'), pid: cell('PID'), uptime: cell('Uptime'), restarts: cell('Restarts'), res: cell('CPU / Mem'),
      key: cell('Key'), nonce: cell('Nonce errors'), exit: cell('Last exit'), actions: cell('', 'actions'),
    };
    const mk = (label, fn) => {
      const btn = el('button', { type: 'button' }, label);
      btn.addEventListener('click', () => void fn(b.account));
      c.actions.append(btn);
      return btn;
    };
    // Only what this token's role may do is offered (SPEC 18): an operator starts, stops, restarts and reads output.
    if (may('operator')) {
      c.start = mk('Start', (a) => act(a, 'start'));
      c.stop = mk('Stop', (a) => act(a, 'stop'));
      c.restart = mk('Restart', (a) => act(a, 'restart'));
      mk('Logs', openLogs);
    }
    tr.append(c.name, c.state, c.pid, c.uptime, c.restarts, c.res, c.key, c.nonce, c.exit, c.actions);
    $('#bots tbody').append(tr);
    r = { tr, c };
    rows.set(b.account, r);
  }
  const { tr, c } = r;
  tr.dataset.state = b.state;
  c.name.replaceChildren(el('strong', {}, b.name), el('div', { class: 'sub' }, `${b.account} · ${b.broker || '-'}${b.brokerUsername ? ` · ${b.brokerUsername}` : ''}`));
  c.state.replaceChildren(el('span', { class: `state ${b.state}` }, b.state), ...(b.status ? [el('div', { class: 'sub' }, b.status)] : []));
  c.pid.textContent = b.pid ?? '-';
  c.uptime.textContent = b.startedAt && b.pid ? human(Date.now() - Date.parse(b.startedAt)) : '-';
  c.restarts.textContent = b.restarts;
  // The whole tree's CPU (% of one core) and resident memory, last sample (SPEC 16).
  c.res.textContent = b.pid && b.rssBytes !== null ? `${b.cpuPercent === null ? '-' : `${b.cpuPercent} %`} / ${Math.round(b.rssBytes / 1048576)} MB` : '-';
  c.key.textContent = b.keyId ?? '-';
  // The cause of its last nonce trip (SPEC 17): clock, shared-key, key-rejected or unknown; the evidence on hover.
  const d = b.diagnosis;
  c.nonce.replaceChildren(`${b.nonceErrors.inWindow} / ${b.nonceErrors.total}`, ...(d ? [el('div', { class: `sub cause ${d.cause}`, title: d.evidence }, `cause: ${d.cause}`)] : []));
  c.exit.textContent = exitText(b.lastExit);
  if (c.start) {
    c.start.disabled = ACTIVE.has(b.state);
    c.stop.disabled = !ACTIVE.has(b.state);
    c.restart.disabled = b.state === 'stopping';
  }
}

async function act(account, verb) {
  showAlert('');
  try {
    renderBot(await api('POST', `/bots/${encodeURIComponent(account)}/${verb}`));
  } catch (err) {
    showAlert(err.message);
  }
}

// A start emits four or five events: the row is fetched once per 100 ms, however many arrived.
const dirty = new Set();
let flushTimer = null;
function markDirty(account) {
  dirty.add(account);
  flushTimer ??= setTimeout(() => {
    flushTimer = null;
    const accounts = [...dirty];
    dirty.clear();
    for (const a of accounts) void refreshBot(a);
  }, 100);
}

async function refreshBot(account) {
  try { renderBot(await api('GET', `/bots/${encodeURIComponent(account)}`)); } catch { /* a removed account */ }
}

async function refreshKeys() {
  let keys;
  try { ({ keys } = await api('GET', '/keys')); } catch { return; } // the daemon is away: the next event refreshes
  $('#keys tbody').replaceChildren(...keys.map((k) => {
    // A key the exchange rejected is set aside until an admin enables it (SPEC 17).
    const state = el('td', { class: `key-${k.state}` }, k.state);
    if (k.state === 'rejected' && may('admin')) {
      const btn = el('button', { type: 'button' }, 'Enable');
      btn.addEventListener('click', () => void api('POST', `/keys/${encodeURIComponent(k.id)}/enable`).then(refreshKeys, (err) => showAlert(err.message)));
      state.append(' ', btn);
    }
    return el('tr', { 'data-key': k.id, 'data-until': k.cooldownUntil ?? '' },
      el('td', {}, k.id), state, el('td', {}, k.account ?? '-'), el('td', { class: 'cool' }, k.cooldownUntil ? human(Date.parse(k.cooldownUntil) - Date.now()) : '-'), el('td', {}, String(k.nonceErrors)));
  }));
}

async function refreshLeases() {
  try {
    const { leases } = await api('GET', '/leases');
    $('#leases-box').hidden = leases.length === 0;
    $('#leases tbody').replaceChildren(...leases.map((l) => el('tr', {}, el('td', {}, l.account), el('td', {}, `${l.holder}${l.mine ? ' (this daemon)' : ''}`), el('td', {}, l.host), el('td', {}, human(Date.parse(l.expiresAt) - Date.now())), el('td', {}, String(l.token)))));
  } catch { /* shown by the health badge */ }
}

/** This machine's clock against each exchange (SPEC 17), beside health: "clock: binance -2.4 s". */
async function refreshClock() {
  let clock;
  try { clock = await api('GET', '/clock'); } catch { return; }
  const b = $('#clock');
  const known = clock.offsets.filter((o) => o.offsetMs !== null);
  b.hidden = clock.offsets.length === 0;
  const worst = known.reduce((m, o) => Math.max(m, Math.abs(o.offsetMs)), 0);
  b.className = `badge ${worst > 500 ? 'degraded' : 'ok'}`;
  b.textContent = `clock: ${known.map((o) => `${o.broker} ${o.offsetMs > 0 ? '+' : ''}${(o.offsetMs / 1000).toFixed(1)} s`).join(', ') || '?'}`;
  b.title = `the exchange's time minus this machine's; time sync: ${clock.sync === null ? 'unknown' : clock.sync ? 'on' : 'OFF'}`;
}

function renderHealth(h) {
  const b = $('#health');
  b.className = `badge ${h.status}`;
  b.textContent = `health: ${h.status}`;
  void refreshClock();
  $('#checks').replaceChildren(...(h.checks ?? []).map((c) => el('li', { class: c.status }, `${c.name}: ${c.status}${c.detail ? ` (${c.detail})` : ''}`)));
}

function describe(e) {
  // An audit event reads as the request: "POST /bots/:account/start 201 from 10.0.0.5".
  if (e.type === 'audit') return `${e.method} ${e.route} ${e.status} from ${e.remote}`;
  const skip = new Set(['id', 'type', 'at', 'account', 'actor']);
  return Object.entries(e).filter(([k]) => !skip.has(k)).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ');
}

function renderFeed() {
  const t = $('#f-type').value.trim();
  const a = $('#f-account').value.trim();
  const shown = feed.filter((e) => (!t || e.type.startsWith(t)) && (!a || e.account === a)).slice(-200).reverse();
  $('#events').replaceChildren(...shown.map((e) => {
    const cls = e.type === 'nonce.error' ? 'nonce' : e.type.startsWith('duplicate.') ? 'dup' : e.type === 'bot.fatal' ? 'fatal' : '';
    // Who did it (SPEC 18): a token's name (and role), or the part of botwarden that acted by itself.
    const who = e.actor ? [' ', el('span', { class: 'actor', 'data-actor': e.actor }, `by ${e.actor}${e.type === 'audit' && e.role ? ` (${e.role})` : ''}`)] : [];
    return el('li', { class: cls, 'data-type': e.type }, `${e.at.slice(11, 19)} `, el('span', { class: 't' }, e.type), ` ${e.account ?? ''} ${describe(e)}`, ...who);
  }));
}
$('#f-type').addEventListener('input', renderFeed);
$('#f-account').addEventListener('input', renderFeed);

let feedTimer = null;
let replaying = false;
function onEvent(e) {
  if (e.id <= lastId) return; // replayed twice across a reconnect: shown once
  lastId = e.id;
  if (e.type === 'health') return renderHealth(e);
  feed.push(e);
  if (feed.length > 1000) feed.splice(0, feed.length - 1000);
  feedTimer ??= setTimeout(() => { feedTimer = null; renderFeed(); }, 50);
  if (replaying) return;
  if (e.account && (e.type.startsWith('bot.') || e.type.startsWith('lock.') || e.type === 'nonce.error' || e.type === 'key.rotated')) markDirty(e.account);
  if (e.type.startsWith('lock.') || e.type.startsWith('key.')) { void refreshKeys(); void refreshLeases(); }
  if (e.type === 'daemon.started') loadAll().catch(() => undefined);
}

function connect() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  ws = new WebSocket(`${proto}://${location.host}/events?since=${lastId}&token=${encodeURIComponent(token)}`);
  ws.onopen = () => { retryMs = 250; $('#conn').textContent = 'live'; $('#conn').className = 'badge ok'; };
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = () => {
    $('#conn').textContent = 'reconnecting'; $('#conn').className = 'badge failing';
    setTimeout(() => void reconnect(), retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  };
}

async function reconnect() {
  try { await loadAll(); connect(); } catch { setTimeout(() => void reconnect(), retryMs); retryMs = Math.min(retryMs * 2, 5000); }
}

async function loadAll() {
  const { bots: list } = await api('GET', '/bots');
  for (const b of list) renderBot(b);
  await Promise.all([refreshKeys(), refreshLeases(), api('GET', '/health').then(renderHealth, (err) => renderHealth(err.body ?? { status: 'failing' }))]);
}

let logSocket = null;
function openLogs(account) {
  logSocket?.close();
  $('#logs-panel').hidden = false;
  $('#logs-account').textContent = account;
  const pre = $('#logs');
  pre.textContent = '';
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  logSocket = new WebSocket(`${proto}://${location.host}/bots/${encodeURIComponent(account)}/logs/stream?lines=100&token=${encodeURIComponent(token)}`);
  logSocket.onmessage = (m) => {
    pre.append(`${m.data}\n`);
    if (pre.childNodes.length > 2000) pre.firstChild.remove();
    pre.scrollTop = pre.scrollHeight;
  };
}
$('#logs-close').addEventListener('click', () => { logSocket?.close(); logSocket = null; $('#logs-panel').hidden = true; });

// Uptimes and countdowns tick locally; nothing is fetched for them.
setInterval(() => {
  for (const b of bots.values()) if (b.startedAt && b.pid) rows.get(b.account).c.uptime.textContent = human(Date.now() - Date.parse(b.startedAt));
  for (const tr of document.querySelectorAll('#keys tr[data-until]')) if (tr.dataset.until) tr.querySelector('.cool').textContent = human(Date.parse(tr.dataset.until) - Date.now());
}, 1000);

async function boot() {
  if (!token) return showLogin();
  try {
    me = await api('GET', '/whoami');
    $('#who').textContent = `${me.name} · ${me.role}`;
    await loadAll();
  } catch (err) {
    if (err.status === 401) { sessionStorage.removeItem('botwarden-token'); return showLogin('Wrong token: the daemon refused it (401). Copy it again from data/api-token.'); }
    return showLogin(`Cannot reach the daemon: ${err.message}`);
  }
  $('#login').hidden = true;
  $('#app').hidden = false;
  const info = await api('GET', '/events/history?types=daemon.started&limit=1').catch(() => ({ events: [] }));
  const started = info.events[0];
  if (started) $('#daemon').textContent = `${started.name ?? ''} v${started.version ?? ''}`;
  const last = await api('GET', '/events/history?limit=200').catch(() => ({ events: [] }));
  replaying = true; // the views were just loaded: history only fills the feed
  for (const e of last.events) onEvent(e);
  replaying = false;
  renderFeed();
  connect();
}
void boot();
