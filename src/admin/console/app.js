/*
 * Strongroom web console. Plain ES2020, no framework, no build step; served by the
 * admin listener at /console/ next to tus.min.js (tus-js-client, which defines the
 * global `tus`). CSP-friendly: no inline scripts or handlers, no eval, no innerHTML
 * with data (every value reaches the page through textContent or attributes).
 *
 * Stable selectors for tests (data-testid, plus data-* attributes noted):
 *   auth            sign-in card (tokens mode);  api-key (password input), sign-in (button),
 *                   auth-error (problem code/detail of a failed sign-in)
 *   session         signed-in bar;  auth-status (tenant, token expiry), sign-out
 *   app             the main area (hidden until configured / signed in)
 *   app-error       error banner (last failed request);  notice: transient status line
 *   server-info     version and public URL from config.json
 *   summary         tiles: summary-uploads-active, summary-uploads-staged, summary-objects,
 *                   summary-objects-pending, summary-bytes-stored, summary-bytes-staged,
 *                   summary-quarantined, summary-verdicts, summary-requests, summary-traffic
 *   file-input, drop-zone, uploads (list), uploads-clear, max-size
 *   upload-row      one per file: data-file="<name>", data-upload-id="<32 hex, once known>",
 *                   data-state="uploading|paused|pending|released|quarantined|rejected|error|cancelled"
 *                   (pending = committed, verdict not settled yet; cancelled = user cancelled)
 *     upload-name, upload-size, upload-bar (<progress>), upload-progress (text "NN%"),
 *     upload-speed, upload-eta, upload-pause (Pause/Resume), upload-cancel, upload-outcome
 *   objects-table, objects-body, objects-filter, objects-refresh, objects-more, objects-empty
 *   object-row      data-id, data-name, data-disposition; object-download (link or button,
 *                   released objects only), object-details-toggle, object-details (the
 *                   screening report row that follows it, data-id)
 *   quarantine-list, quarantine-count, quarantine-refresh, quarantine-empty
 *   quarantine-row  data-id, data-name; finding (data-plugin, data-verdict, data-rule);
 *                   release, delete (first click turns it into "Confirm delete",
 *                   data-confirm="true"; a second click within 5 s deletes)
 *   feed            event list, newest first; feed-status (data-state="connecting|connected|
 *                   disconnected"), feed-clear
 *   event           data-type="upload.committed|upload.verdict|…", data-upload, data-id;
 *                   upload.progress events are coalesced: one item per upload, updated in place
 */
'use strict';

(() => {
  const MiB = 1024 * 1024;
  const CHUNK_SIZE = 8 * MiB;
  const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000];
  const SUMMARY_EVERY_MS = 5000;
  const FEED_MAX = 100;
  const OBJECTS_PAGE = 100;
  const KEY_STORAGE = 'strongroom.apiKey';
  const TOKEN_SCOPES = ['upload:create', 'admin'];

  const state = {
    config: null,       // config.json: public_url, auth, version, max_size
    token: null,        // bearer token (tokens mode), memory only
    tokenExpiresAt: 0,  // unix seconds
    tenant: null,
    tokenPromise: null, // an exchange in flight, shared by concurrent callers
    refreshTimer: 0,
    running: false,
  };

  /* ------------------------------------------------------------------ helpers */

  const $ = (sel, root = document) => root.querySelector(sel);
  const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

  /** Builds an element; attrs: dataset via data-*, `text`, `class`, booleans, `on<Event>` listeners. */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'text') el.textContent = String(value);
      else if (name.startsWith('on') && typeof value === 'function') {
        el.addEventListener(name.slice(2).toLowerCase(), value);
      } else if (value === true) el.setAttribute(name, '');
      else el.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function humanBytes(n) {
    if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
    return `${value.toFixed(digits)} ${units[unit]}`;
  }

  function humanDuration(seconds) {
    if (!Number.isFinite(seconds) || seconds < 0) return '—';
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    const hours = Math.floor(s / 3600);
    if (hours < 48) return `${hours} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  const fmtCount = (n) => (typeof n === 'number' ? n.toLocaleString() : '—');

  /** Timestamps come as unix seconds (records) or unix milliseconds (events). */
  function toDate(t) {
    if (typeof t !== 'number' || !Number.isFinite(t)) return null;
    return new Date(t < 1e12 ? t * 1000 : t);
  }

  const pad = (n) => String(n).padStart(2, '0');

  /** Local time as YYYY-MM-DD HH:MM:SS: unambiguous whatever the browser's locale. */
  function fmtDateTime(t) {
    const d = toDate(t);
    if (!d) return '—';
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtClock(t) {
    const d = toDate(t) || new Date();
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  const shortId = (id) => (typeof id === 'string' ? id.slice(0, 8) : '—');

  /** tus metadata values are stored base64-encoded; decode them as UTF-8. */
  function decodeBase64Utf8(value) {
    try {
      const bytes = Uint8Array.from(atob(value), (c) => c.charCodeAt(0));
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return value;
    }
  }

  /** metadata is [[key, base64|null], ...] (the upload record) or a plain object. */
  function metadataValue(metadata, key) {
    if (Array.isArray(metadata)) {
      const pair = metadata.find((entry) => Array.isArray(entry) && entry[0] === key);
      return pair && typeof pair[1] === 'string' ? decodeBase64Utf8(pair[1]) : null;
    }
    if (metadata && typeof metadata === 'object' && typeof metadata[key] === 'string') {
      return metadata[key];
    }
    return null;
  }

  /* ------------------------------------------------------- banners and errors */

  let noticeTimer = 0;

  /** `source` names a background task whose next success clears its own error. */
  function showError(message, source = '') {
    const banner = byTestId('app-error');
    $('.banner-text', banner).textContent = message;
    banner.dataset.source = source;
    banner.hidden = false;
  }

  function clearError(source) {
    const banner = byTestId('app-error');
    if (typeof source === 'string' && banner.dataset.source !== source) return;
    banner.hidden = true;
  }

  function notice(message) {
    const el = byTestId('notice');
    el.textContent = message;
    el.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  /** An HTTP failure carrying the parsed problem+json body (RFC 9457) when there was one. */
  class ApiError extends Error {
    constructor(status, problem, fallback) {
      super(describeProblem(status, problem, fallback));
      this.status = status;
      this.problem = problem || {};
      this.code = (problem && problem.code) || null;
    }
  }

  function parseProblem(text) {
    if (!text) return null;
    try {
      const body = JSON.parse(text);
      return body && typeof body === 'object' ? body : null;
    } catch {
      return null;
    }
  }

  function describeProblem(status, problem, fallback) {
    if (problem && (problem.code || problem.detail || problem.title)) {
      const code = problem.code ? ` ${problem.code}` : '';
      const detail = problem.detail || problem.title || '';
      return `${status}${code}: ${detail}`;
    }
    return `${status || 'network error'}${fallback ? `: ${fallback}` : ''}`;
  }

  async function errorFromResponse(res) {
    let text = '';
    try {
      text = await res.text();
    } catch {
      // The body is optional for the message.
    }
    return new ApiError(res.status, parseProblem(text), res.statusText || text.slice(0, 200));
  }

  /* ------------------------------------------------------------------ config */

  const consoleUrl = (path) => new URL(path, window.location.href).toString();
  // The admin API sits next to /console/ on the same listener.
  const adminUrl = (path) => new URL(`../admin/${path}`, window.location.href).toString();
  const publicUrl = (path) => `${state.config.public_url}${path}`;
  const tokensMode = () => state.config && state.config.auth !== 'none';

  async function loadConfig() {
    const res = await fetch(consoleUrl('config.json'), { cache: 'no-store' });
    if (!res.ok) throw await errorFromResponse(res);
    const config = await res.json();
    if (typeof config.public_url !== 'string' || !config.public_url) {
      throw new Error('config.json has no public_url');
    }
    config.public_url = config.public_url.replace(/\/+$/, '');
    return config;
  }

  function showServerInfo() {
    const { version, public_url: url, auth, max_size: maxSize } = state.config;
    byTestId('server-info').textContent =
      `v${version || '?'} · public ${url} · auth ${auth}`;
    byTestId('max-size').textContent =
      typeof maxSize === 'number' && maxSize > 0 ? `Up to ${humanBytes(maxSize)} per file` : '';
  }

  /* -------------------------------------------------------------------- auth */

  /** Exchanges the API key for a token (both scopes: the console uploads and administers). */
  async function exchangeKey(apiKey) {
    let res;
    try {
      res = await fetch(publicUrl('/auth/token'), {
        method: 'POST',
        headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ scopes: TOKEN_SCOPES }),
        cache: 'no-store',
      });
    } catch (err) {
      // CORS refusals and unreachable listeners both surface as a TypeError here.
      throw new ApiError(0, null, `cannot reach ${state.config.public_url} (${err.message})`);
    }
    if (!res.ok) throw await errorFromResponse(res);
    const body = await res.json();
    if (typeof body.token !== 'string') throw new Error('token response has no token');
    state.token = body.token;
    state.tokenExpiresAt = Number(body.expires_at) || Math.floor(Date.now() / 1000) + 300;
    state.tenant = body.tenant || null;
    scheduleRefresh();
    showSession();
    return state.token;
  }

  /** Refreshes a little before expiry (a fifth of the lifetime, at most a minute early). */
  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    const lifetime = state.tokenExpiresAt - Date.now() / 1000;
    const early = Math.min(60, Math.max(lifetime / 5, 1));
    const delayMs = Math.max(1000, (lifetime - early) * 1000);
    state.refreshTimer = setTimeout(() => {
      refreshToken().catch((err) => signInFailed(err));
    }, delayMs);
  }

  /** One exchange at a time; callers that arrive meanwhile share its result. */
  function refreshToken() {
    const apiKey = sessionStorage.getItem(KEY_STORAGE);
    if (!apiKey) return Promise.reject(new Error('not signed in'));
    if (!state.tokenPromise) {
      state.tokenPromise = exchangeKey(apiKey).finally(() => { state.tokenPromise = null; });
    }
    return state.tokenPromise;
  }

  /** The token to send now (refreshed first when it is about to expire); null in none mode. */
  async function currentToken() {
    if (!tokensMode()) return null;
    if (state.tokenPromise) return state.tokenPromise;
    if (!state.token || state.tokenExpiresAt - Date.now() / 1000 < 10) return refreshToken();
    return state.token;
  }

  async function authHeaders() {
    const token = await currentToken();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  function showSession() {
    const session = byTestId('session');
    session.hidden = !tokensMode();
    const expires = fmtClock(state.tokenExpiresAt);
    byTestId('auth-status').textContent =
      `tenant ${state.tenant || '?'} · token until ${expires}`;
  }

  function showAuthForm(message) {
    byTestId('auth').hidden = false;
    byTestId('app').hidden = true;
    byTestId('session').hidden = true;
    const error = byTestId('auth-error');
    error.textContent = message || '';
    error.hidden = !message;
    byTestId('api-key').focus();
  }

  function signInFailed(err) {
    const status = err instanceof ApiError ? err.status : 0;
    // A refused key will not get better by retrying; forget it so a reload asks again.
    if (status === 401 || status === 403) sessionStorage.removeItem(KEY_STORAGE);
    stopApp();
    state.token = null;
    showAuthForm(`Sign-in failed (${err.message})`);
  }

  async function onSignIn(event) {
    event.preventDefault();
    const input = byTestId('api-key');
    const apiKey = input.value.trim();
    if (!apiKey) return;
    const button = byTestId('sign-in');
    button.disabled = true;
    try {
      sessionStorage.setItem(KEY_STORAGE, apiKey);
      await refreshToken();
      input.value = '';
      byTestId('auth').hidden = true;
      startApp();
    } catch (err) {
      signInFailed(err);
    } finally {
      button.disabled = false;
    }
  }

  function onSignOut() {
    sessionStorage.removeItem(KEY_STORAGE);
    clearTimeout(state.refreshTimer);
    state.token = null;
    state.tokenExpiresAt = 0;
    stopApp();
    showAuthForm();
  }

  /* --------------------------------------------------------------- admin API */

  /** Calls the admin API; on a 401 refreshes the token once and retries. */
  async function api(path, options = {}, retried = false) {
    let res;
    try {
      res = await fetch(adminUrl(path), {
        ...options,
        headers: { Accept: 'application/json', ...(options.headers || {}), ...(await authHeaders()) },
        cache: 'no-store',
      });
    } catch (err) {
      if (err instanceof ApiError) throw err;
      throw new ApiError(0, null, `${path}: ${err.message}`);
    }
    if (res.status === 401 && tokensMode() && !retried) {
      await refreshToken();
      return api(path, options, true);
    }
    if (!res.ok) throw await errorFromResponse(res);
    return res.json();
  }

  /** Reports a failed background request without flooding: the banner shows the latest. */
  function reportFailure(what) {
    return (err) => {
      if (err instanceof ApiError && err.status === 401 && tokensMode()) {
        signInFailed(err);
        return;
      }
      showError(`${what} failed: ${err.message}`, what);
    };
  }

  /** Clears the banner when the task that raised it works again. */
  function recovered(what) {
    return (value) => {
      clearError(what);
      return value;
    };
  }

  /* ----------------------------------------------------------------- summary */

  let summaryTimer = 0;

  async function loadSummary() {
    const s = await api('summary');
    const set = (id, text) => { byTestId(id).textContent = text; };
    set('summary-uploads-active', fmtCount(s.uploads_active));
    set('summary-uploads-staged', `${fmtCount(s.uploads_staged)} staged`);
    set('summary-objects', fmtCount(s.objects));
    set('summary-objects-pending', s.objects_pending ? `${fmtCount(s.objects_pending)} pending` : '');
    set('summary-bytes-stored', humanBytes(s.bytes_stored));
    set('summary-bytes-staged', `${humanBytes(s.bytes_staged)} staged`);
    set('summary-quarantined', fmtCount(s.objects_quarantined));
    const v = s.verdicts || {};
    const verdicts = byTestId('summary-verdicts');
    verdicts.replaceChildren(
      ...['accept', 'reject', 'quarantine', 'failed'].map((name) =>
        h('span', { class: `verdict verdict-${name}`, 'data-verdict': name },
          h('b', { text: fmtCount(v[name] || 0) }), ` ${name}`)),
    );
    set('summary-requests', fmtCount(s.requests_total));
    set('summary-traffic',
      `in ${humanBytes(s.ingress_bytes_total)} · out ${humanBytes(s.egress_bytes_total)}` +
      (typeof s.uptime_seconds === 'number' ? ` · up ${humanDuration(s.uptime_seconds)}` : ''));
  }

  function startSummaryPolling() {
    const tick = () => loadSummary()
      .then(recovered('Loading the summary'))
      .catch(reportFailure('Loading the summary'));
    tick();
    clearInterval(summaryTimer);
    summaryTimer = setInterval(tick, SUMMARY_EVERY_MS);
  }

  /* ----------------------------------------------------------------- uploads */

  const items = new Set(); // every upload row's state, for sign-out and clearing
  const uploads = new Map(); // upload id -> item, once the server named it
  const FINAL_STATES = new Set(['released', 'quarantined', 'rejected', 'error', 'cancelled']);

  /** Moving-window throughput: smoother than per-callback deltas, still reacts to pauses. */
  class SpeedMeter {
    constructor(windowMs = 5000) {
      this.windowMs = windowMs;
      this.samples = [];
    }

    reset() {
      this.samples = [];
    }

    add(bytes) {
      const now = performance.now();
      this.samples.push([now, bytes]);
      while (this.samples.length > 2 && now - this.samples[0][0] > this.windowMs) {
        this.samples.shift();
      }
    }

    /** Bytes per second, or NaN until there is enough to say. */
    rate() {
      if (this.samples.length < 2) return NaN;
      const [t0, b0] = this.samples[0];
      const [t1, b1] = this.samples[this.samples.length - 1];
      return t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : NaN;
    }
  }

  function buildUploadRow(file) {
    const pause = h('button', { type: 'button', 'data-testid': 'upload-pause' }, 'Pause');
    const cancel = h('button', { type: 'button', class: 'danger-outline', 'data-testid': 'upload-cancel' }, 'Cancel');
    const rowAttrs = { class: 'upload', 'data-testid': 'upload-row', 'data-file': file.name, 'data-state': 'uploading' };
    const row = h('li', rowAttrs,
      h('div', { class: 'upload-head' },
        h('span', { class: 'upload-name', 'data-testid': 'upload-name', title: file.name, text: file.name }),
        h('span', { class: 'upload-size', 'data-testid': 'upload-size', text: humanBytes(file.size) })),
      h('div', { class: 'upload-progress-line' },
        h('progress', {
          max: '100', value: '0', 'data-testid': 'upload-bar', 'aria-label': `Progress of ${file.name}`,
        }),
        h('span', { class: 'pct', 'data-testid': 'upload-progress', text: '0%' })),
      h('div', { class: 'upload-foot' },
        h('span', { class: 'upload-stats' },
          h('span', { 'data-testid': 'upload-speed', text: '' }), ' ',
          h('span', { 'data-testid': 'upload-eta', text: '' })),
        h('span', { class: 'upload-actions' }, pause, cancel)),
      h('p', { class: 'upload-outcome', 'data-testid': 'upload-outcome', role: 'status', text: 'Starting…' }));
    return { row, pause, cancel };
  }

  function setUploadState(item, next, outcome) {
    item.state = next;
    item.row.dataset.state = next;
    if (outcome !== undefined) byTestId('upload-outcome', item.row).textContent = outcome;
    const final = FINAL_STATES.has(next);
    item.pause.hidden = final || next === 'pending';
    item.cancel.hidden = final || next === 'pending';
    item.pause.textContent = next === 'paused' ? 'Resume' : 'Pause';
    if (final || next === 'pending') {
      byTestId('upload-speed', item.row).textContent = '';
      byTestId('upload-eta', item.row).textContent = '';
    }
  }

  function setPercent(item, percent) {
    const pct = Math.max(0, Math.min(100, Math.floor(percent)));
    byTestId('upload-bar', item.row).value = pct;
    byTestId('upload-progress', item.row).textContent = `${pct}%`;
  }

  function showProgress(item, sent, total) {
    item.meter.add(sent);
    // 100% is shown only once the server has answered the upload's last request.
    setPercent(item, total > 0 ? Math.min(99, (sent * 100) / total) : 0);
    const rate = item.meter.rate();
    byTestId('upload-speed', item.row).textContent = Number.isFinite(rate) ? `${humanBytes(rate)}/s` : '';
    const left = total - sent;
    byTestId('upload-eta', item.row).textContent = left <= 0
      ? 'finishing…'
      : Number.isFinite(rate) && rate > 0 ? `ETA ${humanDuration(left / rate)}` : '';
    if (item.state === 'uploading') byTestId('upload-outcome', item.row).textContent = 'Uploading…';
  }

  /** The upload URL's last path segment is the upload id, which is also the object id. */
  function noteUploadId(item) {
    const url = item.upload.url;
    if (!url || item.id) return;
    const id = new URL(url, window.location.href).pathname.split('/').filter(Boolean).pop();
    if (!id) return;
    item.id = id;
    item.row.dataset.uploadId = id;
    uploads.set(id, item);
  }

  /** Remembers the disposition headers of whichever response carried them last. */
  function noteOutcomeHeaders(item, res) {
    const disposition = res.getHeader('Strongroom-Disposition');
    if (disposition) {
      item.disposition = disposition.trim().toLowerCase();
      item.reason = res.getHeader('Strongroom-Reason') || null;
    }
  }

  function showDisposition(item, disposition, reason) {
    switch (disposition) {
      case 'released':
        setPercent(item, 100);
        setUploadState(item, 'released', `Released${item.id ? ` as ${shortId(item.id)}` : ''}`);
        break;
      case 'quarantined':
        setPercent(item, 100);
        setUploadState(item, 'quarantined', `Quarantined${reason ? `: ${reason}` : ''}`);
        break;
      case 'pending':
        setPercent(item, 100);
        setUploadState(item, 'pending', 'Stored; waiting for the screening verdict…');
        break;
      default:
        return false;
    }
    return true;
  }

  function rejectedText(info) {
    const by = info.plugin ? ` by ${info.plugin}` : '';
    const rule = info.rule ? ` (${info.rule})` : '';
    const why = info.reason || info.detail || 'no reason given';
    return `Rejected${by}${rule}: ${why}`;
  }

  function finishUpload(item, lastResponse) {
    if (lastResponse) noteOutcomeHeaders(item, lastResponse);
    noteUploadId(item);
    if (FINAL_STATES.has(item.state)) return; // the feed may already have settled it
    if (!showDisposition(item, item.disposition, item.reason)) {
      // Completed without a disposition header: never call that a success; ask HEAD.
      showDisposition(item, 'pending');
    }
    if (item.state === 'pending') pollDisposition(item);
    refreshSoon();
  }

  function failUpload(item, err) {
    if (item.state === 'cancelled' || item.state === 'rejected') return;
    const res = err && err.originalResponse;
    if (res) {
      const status = res.getStatus();
      const problem = parseProblem(res.getBody()) || {};
      if (status === 422 && (problem.code === 'upload_rejected' || problem.plugin)) {
        setUploadState(item, 'rejected', rejectedText(problem));
      } else {
        setUploadState(item, 'error', `Failed: ${describeProblem(status, problem, res.getBody())}`);
      }
    } else {
      const cause = err && err.causingError ? err.causingError.message : err && err.message;
      setUploadState(item, 'error', `Failed: ${cause || 'network error'}`);
    }
    refreshSoon();
  }

  /**
   * tus-js-client's own rule (retry unless a 4xx other than 409/423), plus: a 401 means the
   * token expired mid-upload, so refresh it (onBeforeRequest picks the new one) and retry.
   */
  function shouldRetry(err) {
    const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
    if (status === 401 && tokensMode()) {
      refreshToken().catch(() => {});
      return true;
    }
    const clientError = status >= 400 && status < 500;
    return (!clientError || status === 409 || status === 423) && navigator.onLine !== false;
  }

  /** For a 'pending' commit, HEAD the upload until its disposition settles (the feed may win). */
  async function pollDisposition(item) {
    for (let attempt = 0; attempt < 120 && item.state === 'pending'; attempt += 1) {
      await sleep(Math.min(1000 + attempt * 250, 5000));
      if (item.state !== 'pending') return;
      try {
        const res = await fetch(item.upload.url, {
          method: 'HEAD',
          headers: { 'Tus-Resumable': '1.0.0', ...(await authHeaders()) },
          cache: 'no-store',
        });
        if (res.status === 404 || res.status === 410) {
          setUploadState(item, 'error', 'The upload is gone (rejected or deleted) before its verdict was seen');
          return;
        }
        const disposition = (res.headers.get('Strongroom-Disposition') || '').toLowerCase();
        if (disposition && disposition !== 'pending') {
          showDisposition(item, disposition, res.headers.get('Strongroom-Reason'));
          refreshSoon();
          return;
        }
      } catch {
        // Keep polling: the feed or the next attempt may still settle it.
      }
    }
    if (item.state === 'pending') setUploadState(item, 'error', 'No verdict reported; see the objects list');
  }

  /** Live events about one of our uploads settle its row even if a response was lost. */
  function applyEventToUpload(event) {
    const item = uploads.get(event.data.upload);
    if (!item || FINAL_STATES.has(item.state)) return;
    const d = event.data;
    if (event.type === 'upload.verdict' && d.disposition === 'rejected') {
      setUploadState(item, 'rejected', rejectedText(d));
      item.upload.abort(false).catch(() => {});
    } else if (event.type === 'upload.verdict' && item.state === 'pending') {
      showDisposition(item, d.disposition, d.reason);
    }
  }

  function togglePause(item) {
    if (item.state === 'uploading') {
      setUploadState(item, 'paused', 'Paused');
      item.upload.abort(false).catch(() => {});
    } else if (item.state === 'paused') {
      item.meter.reset();
      setUploadState(item, 'uploading', 'Resuming…');
      item.upload.start();
    }
  }

  function cancelUpload(item) {
    if (FINAL_STATES.has(item.state) || item.state === 'pending') return;
    setUploadState(item, 'cancelled', 'Cancelled');
    // true: also DELETE the upload on the server so its staged bytes are freed.
    item.upload.abort(true).catch((err) => showError(`Cancelling ${item.file.name} failed: ${err.message}`));
  }

  function tusOptions(item) {
    const { file } = item;
    return {
      endpoint: publicUrl('/files/'),
      chunkSize: CHUNK_SIZE,
      retryDelays: RETRY_DELAYS,
      metadata: { filename: file.name, filetype: file.type || 'application/octet-stream' },
      // A completed upload must not be "resumed" by a later pick of the same file.
      removeFingerprintOnSuccess: true,
      // Authorization is set per request, not via `headers`: the token may be refreshed
      // during a long upload, and XHR would join a second value to a header set twice.
      onBeforeRequest: async (req) => {
        const token = await currentToken();
        if (token) req.setHeader('Authorization', `Bearer ${token}`);
      },
      onAfterResponse: (req, res) => noteOutcomeHeaders(item, res),
      onUploadUrlAvailable: () => noteUploadId(item),
      onProgress: (sent, total) => showProgress(item, sent, total),
      onShouldRetry: (err) => shouldRetry(err),
      onSuccess: (payload) => finishUpload(item, payload && payload.lastResponse),
      onError: (err) => failUpload(item, err),
    };
  }

  function startUpload(file) {
    const { row, pause, cancel } = buildUploadRow(file);
    const item = {
      file, row, pause, cancel, id: null, state: 'uploading',
      disposition: null, reason: null, meter: new SpeedMeter(), upload: null,
    };
    items.add(item);
    pause.addEventListener('click', () => togglePause(item));
    cancel.addEventListener('click', () => cancelUpload(item));
    byTestId('uploads').prepend(row);
    const maxSize = state.config.max_size;
    if (typeof maxSize === 'number' && maxSize > 0 && file.size > maxSize) {
      setUploadState(item, 'error', `Failed: larger than the ${humanBytes(maxSize)} limit`);
      return;
    }
    item.upload = new tus.Upload(file, tusOptions(item));
    item.upload.start();
  }

  function addFiles(fileList) {
    for (const file of Array.from(fileList || [])) startUpload(file);
  }

  function clearFinishedUploads() {
    for (const item of items) {
      if (!FINAL_STATES.has(item.state)) continue;
      item.row.remove();
      items.delete(item);
      if (item.id) uploads.delete(item.id);
    }
  }

  function wireUploadPanel() {
    const input = byTestId('file-input');
    input.addEventListener('change', () => {
      addFiles(input.files);
      input.value = ''; // picking the same file again must fire change again
    });
    const zone = byTestId('drop-zone');
    const over = (on) => (event) => {
      event.preventDefault();
      zone.classList.toggle('dragover', on);
    };
    zone.addEventListener('dragenter', over(true));
    zone.addEventListener('dragover', over(true));
    zone.addEventListener('dragleave', over(false));
    zone.addEventListener('drop', (event) => {
      over(false)(event);
      addFiles(event.dataTransfer && event.dataTransfer.files);
    });
    byTestId('uploads-clear').addEventListener('click', clearFinishedUploads);
  }

  /* ----------------------------------------------------------------- objects */

  const objectsView = { rows: [], next: null, expanded: new Set(), loading: null, again: false };

  function objectsQuery(after) {
    const params = new URLSearchParams({ limit: String(OBJECTS_PAGE) });
    const filter = byTestId('objects-filter').value;
    if (filter) params.set('disposition', filter);
    if (after) params.set('after', after);
    return `objects?${params}`;
  }

  /** Reloads from the start, as many pages as were shown (new ids may land anywhere). */
  async function loadObjects(minRows = OBJECTS_PAGE) {
    const rows = [];
    let next = null;
    do {
      const page = await api(objectsQuery(next));
      rows.push(...(page.objects || []));
      next = page.next || null;
    } while (next && rows.length < minRows);
    objectsView.rows = rows;
    objectsView.next = next;
    renderObjects();
  }

  function refreshObjects() {
    // Coalesce: a refresh requested during one in flight runs once after it.
    if (objectsView.loading) {
      objectsView.again = true;
      return objectsView.loading;
    }
    objectsView.loading = loadObjects(Math.max(OBJECTS_PAGE, objectsView.rows.length))
      .then(recovered('Loading objects'))
      .catch(reportFailure('Loading objects'))
      .finally(() => {
        objectsView.loading = null;
        if (objectsView.again) {
          objectsView.again = false;
          refreshObjects();
        }
      });
    return objectsView.loading;
  }

  async function loadMoreObjects() {
    if (!objectsView.next) return;
    try {
      const page = await api(objectsQuery(objectsView.next));
      objectsView.rows.push(...(page.objects || []));
      objectsView.next = page.next || null;
      renderObjects();
    } catch (err) {
      reportFailure('Loading more objects')(err);
    }
  }

  function dispositionBadge(disposition) {
    return h('span', { class: `badge badge-${disposition || 'unknown'}`, text: disposition || 'unknown' });
  }

  function downloadControl(obj) {
    if (obj.disposition !== 'released') return null;
    const name = obj.filename || obj.id;
    const href = adminUrl(`objects/${encodeURIComponent(obj.id)}/content`);
    if (!tokensMode()) {
      return h('a', { href, download: name, class: 'button', 'data-testid': 'object-download' }, 'Download');
    }
    // A link cannot carry the Authorization header: fetch, then save the blob.
    const onClick = (event) => downloadWithToken(event.currentTarget, href, name);
    return h('button', { type: 'button', 'data-testid': 'object-download', onClick }, 'Download');
  }

  async function downloadWithToken(button, href, name) {
    button.disabled = true;
    try {
      const res = await fetch(href, { headers: await authHeaders(), cache: 'no-store' });
      if (!res.ok) throw await errorFromResponse(res);
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      showError(`Downloading ${name} failed: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  function objectRow(obj) {
    const expanded = objectsView.expanded.has(obj.id);
    const toggle = h('button', {
      type: 'button', class: 'link', 'data-testid': 'object-details-toggle',
      'aria-expanded': String(expanded), onClick: () => toggleDetails(obj.id),
    }, expanded ? 'Hide' : 'Details');
    const attrs = {
      'data-testid': 'object-row', 'data-id': obj.id,
      'data-name': obj.filename || '', 'data-disposition': obj.disposition || '',
    };
    return h('tr', attrs,
      h('td', { class: 'mono', title: obj.id, text: shortId(obj.id) }),
      h('td', { class: 'name', title: obj.filename || '', text: obj.filename || '—' }),
      h('td', { text: obj.tenant || '—' }),
      h('td', { class: 'num', title: `${obj.size} bytes`, text: humanBytes(obj.size) }),
      h('td', { text: fmtDateTime(obj.committed_at) }),
      h('td', {}, dispositionBadge(obj.disposition)),
      h('td', { class: 'actions' }, downloadControl(obj), toggle));
  }

  function keyValue(label, value) {
    const text = value === null || value === undefined || value === '' ? '—' : String(value);
    return [h('dt', { text: label }), h('dd', { class: 'mono', text })];
  }

  /** A screening report as a small table: one line per finding (or per plugin without any). */
  function screeningTable(screening) {
    const rows = [];
    for (const plugin of (screening && screening.plugins) || []) {
      const findings = plugin.findings && plugin.findings.length ? plugin.findings : [null];
      for (const finding of findings) {
        const attrs = {
          'data-testid': 'finding', 'data-plugin': plugin.plugin,
          'data-verdict': plugin.verdict, 'data-rule': finding ? finding.rule : '',
        };
        rows.push(h('tr', attrs,
          h('td', { text: plugin.plugin }),
          h('td', {}, h('span', { class: `badge badge-verdict-${plugin.verdict}`, text: plugin.verdict })),
          h('td', { class: 'mono', text: finding ? finding.rule : '—' }),
          h('td', {}, finding ? h('span', { class: `sev sev-${finding.severity}`, text: finding.severity }) : '—'),
          h('td', { text: finding ? finding.detail : plugin.reason || '' })));
      }
    }
    if (!rows.length) return h('p', { class: 'empty', text: 'No screening report.' });
    return h('div', { class: 'table-wrap' },
      h('table', { class: 'findings' },
        h('thead', {}, h('tr', {}, ['Plugin', 'Verdict', 'Rule', 'Severity', 'Detail']
          .map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, rows)));
  }

  function objectDetailsRow(obj) {
    const s = obj.screening;
    return h('tr', { class: 'details', 'data-testid': 'object-details', 'data-id': obj.id },
      h('td', { colspan: '7' },
        h('dl', { class: 'kv' },
          keyValue('id', obj.id), keyValue('sha256', obj.sha256), keyValue('type', obj.filetype),
          keyValue('size', `${obj.size} bytes`),
          keyValue('decision', s && s.decision),
          keyValue('reasons', s && s.reasons && s.reasons.join('; '))),
        screeningTable(s)));
  }

  function toggleDetails(id) {
    if (objectsView.expanded.has(id)) objectsView.expanded.delete(id);
    else objectsView.expanded.add(id);
    renderObjects();
  }

  function renderObjects() {
    const body = byTestId('objects-body');
    const rows = [];
    for (const obj of objectsView.rows) {
      rows.push(objectRow(obj));
      if (objectsView.expanded.has(obj.id)) rows.push(objectDetailsRow(obj));
    }
    body.replaceChildren(...rows);
    byTestId('objects-empty').hidden = objectsView.rows.length > 0;
    byTestId('objects-more').hidden = !objectsView.next;
  }

  /* -------------------------------------------------------------- quarantine */

  let quarantineLoading = null;

  function refreshQuarantine() {
    if (!quarantineLoading) {
      quarantineLoading = api('quarantine')
        .then((body) => renderQuarantine(body.objects || []))
        .then(recovered('Loading the quarantine'))
        .catch(reportFailure('Loading the quarantine'))
        .finally(() => { quarantineLoading = null; });
    }
    return quarantineLoading;
  }

  function quarantineCard(obj) {
    const name = metadataValue(obj.metadata, 'filename') || obj.filename || '(unnamed)';
    const reasons = (obj.screening && obj.screening.reasons) || [];
    const release = h('button', { type: 'button', class: 'primary', 'data-testid': 'release' }, 'Release');
    const del = h('button', { type: 'button', class: 'danger-outline', 'data-testid': 'delete' }, 'Delete');
    const card = h('article', { class: 'held', 'data-testid': 'quarantine-row', 'data-id': obj.id, 'data-name': name },
      h('header', { class: 'held-head' },
        h('h3', { title: name, text: name }),
        h('span', { class: 'held-meta' },
          h('span', { class: 'mono', title: obj.id, text: shortId(obj.id) }),
          ` · ${obj.tenant || '—'} · ${humanBytes(obj.size)} · ${fmtDateTime(obj.committed_at)}`),
        h('span', { class: 'held-actions' }, release, del)),
      reasons.length
        ? h('p', { class: 'held-reason', 'data-testid': 'quarantine-reason', text: reasons.join('; ') })
        : null,
      screeningTable(obj.screening));
    release.addEventListener('click', () => releaseObject(obj, card, release));
    del.addEventListener('click', () => deleteHeld(obj, card, del));
    return card;
  }

  function renderQuarantine(objects) {
    byTestId('quarantine-list').replaceChildren(...objects.map(quarantineCard));
    byTestId('quarantine-empty').hidden = objects.length > 0;
    byTestId('quarantine-count').textContent = objects.length ? `(${objects.length})` : '';
  }

  async function releaseObject(obj, card, button) {
    button.disabled = true;
    try {
      await api(`quarantine/${encodeURIComponent(obj.id)}/release`, { method: 'POST' });
      card.remove();
      notice(`Released ${shortId(obj.id)}`);
      refreshAll();
    } catch (err) {
      button.disabled = false;
      showError(`Releasing ${shortId(obj.id)} failed: ${err.message}`);
    }
  }

  /** Two-step delete: the first click arms the button for 5 s (no window.confirm). */
  async function deleteHeld(obj, card, button) {
    if (button.dataset.confirm !== 'true') {
      button.dataset.confirm = 'true';
      button.textContent = 'Confirm delete';
      button.classList.add('danger');
      button.disarm = setTimeout(() => {
        delete button.dataset.confirm;
        button.textContent = 'Delete';
        button.classList.remove('danger');
      }, 5000);
      return;
    }
    clearTimeout(button.disarm);
    button.disabled = true;
    try {
      await api(`quarantine/${encodeURIComponent(obj.id)}`, { method: 'DELETE' });
      card.remove();
      notice(`Deleted ${shortId(obj.id)}`);
      refreshAll();
    } catch (err) {
      button.disabled = false;
      showError(`Deleting ${shortId(obj.id)} failed: ${err.message}`);
    }
  }

  /* --------------------------------------------------------------- live feed */

  // progressItems: upload id -> its one progress line; settled: uploads past their last byte.
  const feed = { controller: null, lastId: null, progressItems: new Map(), settled: new Set() };
  const REFRESHING_EVENTS = new Set([
    'upload.committed', 'upload.verdict', 'upload.deleted', 'object.released', 'lagged',
  ]);

  function setFeedStatus(status) {
    const el = byTestId('feed-status');
    el.dataset.state = status;
    el.textContent = status;
  }

  /** Splits complete SSE frames off the buffer; returns [frames, rest]. */
  function splitFrames(buffer) {
    const frames = [];
    let text = buffer.replace(/\r\n?/g, '\n');
    let end = text.indexOf('\n\n');
    while (end !== -1) {
      frames.push(text.slice(0, end));
      text = text.slice(end + 2);
      end = text.indexOf('\n\n');
    }
    return [frames, text];
  }

  /** One frame's fields (per the SSE spec: `:` lines are comments, data lines join with \n). */
  function parseFrame(frame) {
    const event = { id: null, type: 'message', data: [] };
    for (const line of frame.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'id') event.id = value;
      else if (field === 'event') event.type = value;
      else if (field === 'data') event.data.push(value);
    }
    if (!event.data.length) return null; // keep-alives and empty frames dispatch nothing
    try {
      event.data = JSON.parse(event.data.join('\n'));
    } catch {
      event.data = { raw: event.data.join('\n') };
    }
    return event;
  }

  function eventDetails(type, d) {
    switch (type) {
      case 'upload.created':
        return `${d.filename || '(unnamed)'} · ` +
          (typeof d.length === 'number' ? humanBytes(d.length) : 'length deferred');
      case 'upload.progress':
        return `${humanBytes(d.offset)} of ${typeof d.length === 'number' ? humanBytes(d.length) : '?'}` +
          (d.length ? ` (${Math.floor((d.offset * 100) / d.length)}%)` : '');
      case 'upload.committed':
        return `${humanBytes(d.size)} · ${d.disposition}${d.sha256 ? ` · sha256 ${d.sha256.slice(0, 12)}…` : ''}`;
      case 'upload.verdict':
        return `${d.disposition}${d.plugin ? ` by ${d.plugin}` : ''}` +
          `${d.rule ? ` (${d.rule})` : ''}${d.reason ? `: ${d.reason}` : ''}`;
      case 'upload.deleted':
        return d.reason || '';
      case 'object.released':
        return 'released from quarantine by an admin';
      case 'lagged':
        return `missed ${d.missed} events`;
      default:
        return d.raw || JSON.stringify(d);
    }
  }

  function eventItem(event) {
    const d = event.data;
    const tone = d.disposition || (event.type === 'object.released' ? 'released' : '');
    const attrs = {
      class: `event event-${event.type.replace(/\W/g, '-')}`, 'data-testid': 'event',
      'data-type': event.type, 'data-upload': d.upload || '', 'data-id': event.id || '', 'data-tone': tone,
    };
    return h('li', attrs,
      h('time', { text: fmtClock(d.at) }),
      h('span', { class: 'event-type', text: event.type }),
      h('span', { class: 'event-tenant', text: d.tenant || '' }),
      h('span', { class: 'mono event-upload', title: d.upload || '', text: d.upload ? shortId(d.upload) : '' }),
      h('span', { class: 'event-details', text: eventDetails(event.type, d) }));
  }

  function showEvent(event) {
    const list = byTestId('feed');
    const item = eventItem(event);
    // Progress comes several times a second per upload: keep one line per upload.
    if (event.type === 'upload.progress' && feed.settled.has(event.data.upload)) {
      return; // a late checkpoint of an upload that already finished or went away
    }
    if (event.type === 'upload.progress' && event.data.upload) {
      const previous = feed.progressItems.get(event.data.upload);
      if (previous && previous.isConnected) previous.remove();
      feed.progressItems.set(event.data.upload, item);
    } else if (event.data.upload && event.type !== 'upload.created') {
      const previous = feed.progressItems.get(event.data.upload);
      if (previous) {
        previous.remove();
        feed.progressItems.delete(event.data.upload);
      }
      if (feed.settled.size > 1000) feed.settled.clear();
      feed.settled.add(event.data.upload);
    }
    list.prepend(item);
    while (list.children.length > FEED_MAX) list.lastElementChild.remove();
  }

  function handleEvent(event) {
    if (event.id) feed.lastId = event.id;
    showEvent(event);
    if (event.data && event.data.upload) applyEventToUpload(event);
    if (REFRESHING_EVENTS.has(event.type)) refreshSoon();
  }

  /** Reads one connection's body until it ends; a silent stream (no keep-alive) is cut. */
  async function readEvents(body, controller) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let watchdog = 0;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), 45000); // keep-alives come every 15 s
    };
    try {
      arm();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        arm();
        buffer += decoder.decode(value, { stream: true });
        const [frames, rest] = splitFrames(buffer);
        buffer = rest;
        for (const frame of frames) {
          const event = parseFrame(frame);
          if (event) handleEvent(event);
        }
      }
    } finally {
      clearTimeout(watchdog);
    }
  }

  async function connectFeed(controller) {
    const headers = { Accept: 'text/event-stream', ...(await authHeaders()) };
    if (feed.lastId) headers['Last-Event-ID'] = feed.lastId;
    const res = await fetch(adminUrl('events'), { headers, cache: 'no-store', signal: controller.signal });
    if (res.status === 401 && tokensMode()) {
      await refreshToken();
      throw new Error('token refreshed');
    }
    if (!res.ok || !res.body) throw await errorFromResponse(res);
    setFeedStatus('connected');
    clearError('feed');
    refreshSoon(); // events may have been missed while disconnected
    await readEvents(res.body, controller);
  }

  /** EventSource cannot send Authorization, so: fetch + stream, reconnecting with backoff. */
  async function runFeed() {
    let delay = 1000;
    while (state.running) {
      const controller = new AbortController();
      feed.controller = controller;
      setFeedStatus('connecting');
      const started = Date.now();
      try {
        await connectFeed(controller);
      } catch (err) {
        if (!state.running) break;
        if (err instanceof ApiError && err.status === 403) {
          showError(`Live feed refused: ${err.message}`, 'feed');
        }
      }
      setFeedStatus('disconnected');
      if (!state.running) break;
      if (Date.now() - started > 30000) delay = 1000; // it had been up for a while
      await sleep(delay + Math.random() * 500);
      delay = Math.min(delay * 2, 30000);
    }
  }

  function stopFeed() {
    if (feed.controller) feed.controller.abort();
    feed.controller = null;
    setFeedStatus('disconnected');
  }

  /* -------------------------------------------------------------- lifecycle */

  let refreshTimer = 0;

  function refreshAll() {
    refreshObjects();
    refreshQuarantine();
    loadSummary().then(recovered('Loading the summary')).catch(reportFailure('Loading the summary'));
  }

  /** Debounced: a burst of events causes one round of requests. */
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => { if (state.running) refreshAll(); }, 250);
  }

  function startApp() {
    if (state.running) return;
    state.running = true;
    byTestId('app').hidden = false;
    byTestId('auth').hidden = true;
    if (tokensMode()) showSession();
    clearError();
    refreshObjects();
    refreshQuarantine();
    startSummaryPolling();
    runFeed();
  }

  function stopApp() {
    state.running = false;
    clearInterval(summaryTimer);
    clearTimeout(refreshTimer);
    stopFeed();
    // Without a token the uploads would only fail; pause them so they can resume later.
    for (const item of items) {
      if (item.state === 'uploading') togglePause(item);
    }
  }

  function wireStaticUi() {
    $('.banner-close', byTestId('app-error')).addEventListener('click', () => clearError());
    byTestId('auth-form').addEventListener('submit', onSignIn);
    byTestId('sign-out').addEventListener('click', onSignOut);
    byTestId('objects-refresh').addEventListener('click', () => refreshObjects());
    byTestId('objects-filter').addEventListener('change', () => {
      objectsView.rows = [];
      refreshObjects();
    });
    byTestId('objects-more').addEventListener('click', loadMoreObjects);
    byTestId('quarantine-refresh').addEventListener('click', () => refreshQuarantine());
    byTestId('feed-clear').addEventListener('click', () => {
      byTestId('feed').replaceChildren();
      feed.progressItems.clear();
    });
    wireUploadPanel();
  }

  async function boot() {
    // config.json and the admin API are resolved relative to /console/.
    if (!window.location.pathname.endsWith('/') && !window.location.pathname.endsWith('.html')) {
      window.location.replace(`${window.location.pathname}/${window.location.search}`);
      return;
    }
    wireStaticUi();
    if (typeof window.tus === 'undefined' || !window.tus.isSupported) {
      showError('This browser cannot run tus-js-client (tus.min.js missing or unsupported).');
    }
    try {
      state.config = await loadConfig();
    } catch (err) {
      byTestId('server-info').textContent = 'No configuration';
      showError(`Loading config.json failed: ${err.message}`);
      return;
    }
    showServerInfo();
    if (!tokensMode()) {
      startApp();
      return;
    }
    if (!sessionStorage.getItem(KEY_STORAGE)) {
      showAuthForm();
      return;
    }
    try {
      await refreshToken();
      startApp();
    } catch (err) {
      signInFailed(err);
    }
  }

  boot();
})();
