#!/usr/bin/env node
// End-to-end test of the web console: drives /console/ in headless Chromium (Debian's
// /usr/bin/chromium through playwright-core) against a running appliance.
//
// Environment:
//   CONSOLE_URL      the console, e.g. http://127.0.0.1:9090/console/          (required)
//   CLEAN_FILE       a file the policy releases                               (required)
//   REJECT_FILE      a file a plugin rejects (422 upload_rejected)            (required)
//   QUARANTINE_FILE  a file the policy quarantines                            (required)
//   API_KEY          an admin API key, when the appliance runs with auth tokens
//   SCREENSHOTS      directory for 01-uploaded.png, 02-rejected.png, 03-released.png and,
//                    on failure, failure.png (default: <repo>/test-output/console)
//   REJECT_EXPECT    optional text the rejected row's outcome must contain (e.g. a rule)
//   CHROMIUM         browser executable (default /usr/bin/chromium)
//   TIMEOUT_MS       bound on the whole run (default 120000)
//
// Prints one JSON line ({"ok":true,...} or {"ok":false,"error":...}) on stdout; exits 0 on
// success, 1 on a failed check (with failure.png), 2 on bad arguments. Never hangs: every
// wait is bounded and the whole run is cut off after TIMEOUT_MS.

import { mkdtempSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const FINAL_STATES = ['released', 'quarantined', 'rejected', 'error', 'cancelled'];
const started = Date.now();
const env = process.env;
const timeoutMs = Number(env.TIMEOUT_MS || 120000);
const deadline = started + timeoutMs;

let step = 'start';
// Default: <repo>/test-output/console (git-ignored), wherever the driver is run from.
const shotsDir = env.SCREENSHOTS
  ? resolve(env.SCREENSHOTS)
  : fileURLToPath(new URL('../../test-output/console', import.meta.url));
let profileDir = null; // the fresh Chromium profile, removed at the end
let browserContext = null;
let page = null;
const pageErrors = [];
const consoleErrors = [];

function usage(message) {
  process.stderr.write(`console.mjs: ${message}\n`);
  process.stdout.write(`${JSON.stringify({ ok: false, error: message, step: 'arguments' })}\n`);
  process.exit(2);
}

function requireFile(name) {
  const path = env[name];
  if (!path) usage(`${name} is not set`);
  try {
    if (!statSync(path).isFile()) usage(`${name}=${path} is not a file`);
  } catch {
    usage(`${name}=${path} does not exist`);
  }
  return resolve(path);
}

/** Time left for one wait: never past the overall deadline, never more than `cap`. */
function budget(cap = 30000) {
  return Math.max(1000, Math.min(cap, deadline - Date.now() - 3000));
}

class CheckFailed extends Error {}

function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

const q = (testid, extra = '') => `[data-testid="${testid}"]${extra}`;
const cssString = (value) => JSON.stringify(String(value));

async function screenshot(dir, name, timeout = budget(10000)) {
  const path = join(dir, name);
  await page.screenshot({ path, fullPage: true, timeout });
  return path;
}

/** Opens the console and signs in when it asks for an API key. */
async function openConsole(url) {
  step = 'open console';
  const response = await page.goto(url, { waitUntil: 'load', timeout: budget(20000) });
  check(response && response.ok(), `GET ${url} answered ${response ? response.status() : 'nothing'}`);
  step = 'load config.json';
  // Either the app shows (auth none / remembered key), the sign-in form shows, or an error.
  const shown = await page.waitForFunction(() => {
    const visible = (id) => {
      const el = document.querySelector(`[data-testid="${id}"]`);
      return el && !el.hidden;
    };
    if (visible('app')) return 'app';
    if (visible('auth')) return 'auth';
    if (visible('app-error')) return 'error';
    return null;
  }, null, { timeout: budget(20000) }).then((handle) => handle.jsonValue());
  if (shown === 'error') {
    const text = await page.locator(q('app-error')).innerText();
    throw new CheckFailed(`console failed to start: ${text}`);
  }
  if (shown === 'auth') {
    step = 'sign in';
    check(env.API_KEY, 'the console asks for an API key (auth tokens) but API_KEY is not set');
    await page.locator(q('api-key')).fill(env.API_KEY, { timeout: budget(5000) });
    await page.locator(q('sign-in')).click({ timeout: budget(5000) });
    const outcome = await page.waitForFunction(() => {
      const app = document.querySelector('[data-testid="app"]');
      const error = document.querySelector('[data-testid="auth-error"]');
      if (app && !app.hidden) return { ok: true };
      if (error && !error.hidden && error.textContent) return { ok: false, error: error.textContent };
      return null;
    }, null, { timeout: budget(20000) }).then((handle) => handle.jsonValue());
    check(outcome.ok, `sign-in failed: ${outcome.error}`);
  }
  step = 'connect live feed';
  await page.locator(q('feed-status', '[data-state="connected"]'))
    .waitFor({ state: 'attached', timeout: budget(20000) });
  return shown === 'auth' ? 'tokens' : 'none';
}

/** Picks the file and waits until its (newest) row reaches a final state. */
async function upload(path) {
  const name = basename(path);
  await page.locator(q('file-input')).setInputFiles(path, { timeout: budget(10000) });
  const result = await page.waitForFunction((file) => {
    const row = [...document.querySelectorAll('[data-testid="upload-row"]')]
      .find((el) => el.dataset.file === file);
    if (!row) return null;
    const finals = ['released', 'quarantined', 'rejected', 'error', 'cancelled'];
    if (!finals.includes(row.dataset.state)) return null;
    const text = (id) => (row.querySelector(`[data-testid="${id}"]`) || {}).textContent || '';
    return {
      state: row.dataset.state,
      id: row.dataset.uploadId || null,
      progress: text('upload-progress'),
      outcome: text('upload-outcome'),
    };
  }, name, { timeout: budget(60000), polling: 100 }).then((handle) => handle.jsonValue());
  return { file: name, ...result };
}

function expectState(result, want) {
  check(FINAL_STATES.includes(result.state), `${result.file}: no final state`);
  check(result.state === want,
    `${result.file}: expected state ${want}, got ${result.state} (${result.outcome})`);
  check(result.id && /^[0-9a-f]{32}$/i.test(result.id), `${result.file}: no upload id (${result.id})`);
}

async function waitForObject(id, disposition) {
  await page.locator(q('object-row', `[data-id=${cssString(id)}][data-disposition=${cssString(disposition)}]`))
    .waitFor({ state: 'attached', timeout: budget(30000) });
}

async function stepClean(file, shots) {
  step = 'upload clean file';
  const result = await upload(file);
  expectState(result, 'released');
  check(result.progress.trim() === '100%', `${result.file}: progress shows ${result.progress}, not 100%`);
  step = 'clean file in objects panel';
  await waitForObject(result.id, 'released');
  result.screenshot = await screenshot(shots, '01-uploaded.png');
  return result;
}

async function stepReject(file, shots) {
  step = 'upload rejected file';
  const result = await upload(file);
  expectState(result, 'rejected');
  // "Rejected by <plugin> (<rule>): <reason>" from the 422 problem (or the verdict event).
  check(/^Rejected by \S+/.test(result.outcome), `${result.file}: outcome names no plugin: ${result.outcome}`);
  check(/: \S/.test(result.outcome), `${result.file}: outcome gives no reason: ${result.outcome}`);
  if (env.REJECT_EXPECT) {
    check(result.outcome.includes(env.REJECT_EXPECT),
      `${result.file}: outcome "${result.outcome}" lacks "${env.REJECT_EXPECT}"`);
  }
  step = 'rejected file not in objects panel';
  const listed = await page.locator(q('object-row', `[data-id=${cssString(result.id)}]`)).count();
  check(listed === 0, `${result.file}: a rejected upload is listed as an object`);
  result.screenshot = await screenshot(shots, '02-rejected.png');
  return result;
}

async function stepQuarantine(file, shots) {
  step = 'upload quarantined file';
  const result = await upload(file);
  expectState(result, 'quarantined');
  step = 'quarantine row';
  const row = page.locator(q('quarantine-row', `[data-id=${cssString(result.id)}]`));
  await row.waitFor({ state: 'visible', timeout: budget(30000) });
  result.findings = await row.locator(q('finding')).count();
  step = 'release from quarantine';
  await row.locator(q('release')).click({ timeout: budget(10000) });
  await row.waitFor({ state: 'detached', timeout: budget(20000) });
  step = 'released object in objects panel';
  await waitForObject(result.id, 'released');
  result.released = true;
  result.screenshot = await screenshot(shots, '03-released.png');
  return result;
}

/** The feed must have shown the commit of the clean file and some verdict of ours. */
async function stepFeed(results) {
  step = 'live feed events';
  const ids = results.map((r) => r.id);
  const seen = await page.waitForFunction(([cleanId, ours]) => {
    const events = [...document.querySelectorAll('[data-testid="event"]')];
    const has = (type, id) => events.some((el) => el.dataset.type === type && el.dataset.upload === id);
    if (!has('upload.committed', cleanId)) return null;
    if (!ours.some((id) => has('upload.verdict', id))) return null;
    const byType = {};
    for (const el of events) byType[el.dataset.type] = (byType[el.dataset.type] || 0) + 1;
    return byType;
  }, [ids[0], ids], { timeout: budget(20000), polling: 200 }).then((handle) => handle.jsonValue());
  return seen;
}

async function run() {
  const consoleUrl = env.CONSOLE_URL;
  if (!consoleUrl) usage('CONSOLE_URL is not set');
  const files = ['CLEAN_FILE', 'REJECT_FILE', 'QUARANTINE_FILE'].map(requireFile);
  const names = new Set(files.map((f) => basename(f)));
  if (names.size !== files.length) usage('CLEAN_FILE, REJECT_FILE and QUARANTINE_FILE need distinct file names');
  const shots = shotsDir;
  mkdirSync(shots, { recursive: true });

  step = 'launch chromium';
  const executablePath = env.CHROMIUM || '/usr/bin/chromium';
  profileDir = mkdtempSync(join(tmpdir(), 'strongroom-console-'));
  browserContext = await chromium.launchPersistentContext(profileDir, {
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 1000 },
    timeout: budget(30000),
  });
  page = browserContext.pages()[0] || await browserContext.newPage();
  page.on('pageerror', (err) => pageErrors.push(String(err && err.message ? err.message : err)));
  page.on('console', (msg) => {
    // Chromium logs every 4xx as "Failed to load resource"; those are expected (a 422).
    if (msg.type() === 'error') {
      const where = msg.location() && msg.location().url;
      consoleErrors.push(`${msg.text().slice(0, 300)}${where ? ` (${where})` : ''}`);
    }
  });

  const auth = await openConsole(consoleUrl);
  const clean = await stepClean(files[0], shots);
  const rejected = await stepReject(files[1], shots);
  const quarantined = await stepQuarantine(files[2], shots);
  const events = await stepFeed([clean, rejected, quarantined]);
  step = 'page errors';
  check(pageErrors.length === 0, `uncaught errors in the page: ${pageErrors.join(' | ')}`);
  return {
    ok: true,
    url: consoleUrl,
    auth,
    clean,
    rejected,
    quarantined,
    events,
    console_errors: consoleErrors,
    duration_ms: Date.now() - started,
  };
}

async function failureScreenshot() {
  if (!page) return null;
  try {
    mkdirSync(shotsDir, { recursive: true });
    return await Promise.race([
      screenshot(shotsDir, 'failure.png', 4500),
      new Promise((resolve_) => setTimeout(() => resolve_(null), 5000)),
    ]);
  } catch {
    return null;
  }
}

async function closeBrowser() {
  if (!browserContext) return;
  await Promise.race([
    browserContext.close().catch(() => {}),
    new Promise((resolve_) => setTimeout(resolve_, 5000)),
  ]);
}

async function main() {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  let code = 0;
  try {
    const result = await Promise.race([run(), timeout]);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (err) {
    code = 1;
    const message = err instanceof CheckFailed ? err.message : (err && err.stack) || String(err);
    const shot = await failureScreenshot();
    const firstLine = String(message).split('\n')[0];
    process.stderr.write(`console.mjs: FAILED at step "${step}": ${message}\n`);
    if (pageErrors.length) process.stderr.write(`console.mjs: page errors: ${pageErrors.join(' | ')}\n`);
    process.stdout.write(`${JSON.stringify({
      ok: false, step, error: firstLine, screenshot: shot, page_errors: pageErrors,
      console_errors: consoleErrors, duration_ms: Date.now() - started,
    })}\n`);
  } finally {
    clearTimeout(timer);
    await closeBrowser();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  }
  // Exit explicitly: a stuck browser pipe must not keep node alive.
  process.exit(code);
}

main();
