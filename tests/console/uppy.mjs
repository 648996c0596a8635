#!/usr/bin/env node
// End-to-end test of examples/uppy.html: the page exactly as shipped, in headless Chromium
// (Debian's /usr/bin/chromium through playwright-core), against a running appliance.
//
// The page loads Uppy from Transloadit's CDN, which this machine cannot reach: the driver
// answers those requests with the same release from npm (fetched and checked against its
// registry integrity by setup.sh into vendor/uppy/). The page itself is served by a small
// web server of the driver's on 127.0.0.1:PAGE_PORT, as README's `python3 -m http.server`
// would; the appliance must admit that origin by CORS. Requests to the appliance go over the
// network for real.
//
// Environment:
//   PUBLIC_URL       the appliance's public listener, e.g. http://127.0.0.1:8080  (required)
//   PAGE_PORT        the port to serve the page on, at 127.0.0.1                  (required)
//   API_KEY          an API key, when the appliance runs with auth tokens
//   CLEAN_FILE       a file the policy releases                                  (required)
//   REJECT_FILE      a file a plugin rejects                                     (required)
//   QUARANTINE_FILE  a file the policy quarantines                               (required)
//   SCREENSHOTS      directory for uppy.png and, on failure, uppy-failure.png
//   CHROMIUM         browser executable (default /usr/bin/chromium)
//   TIMEOUT_MS       bound on the whole run (default 90000)
//
// Prints one JSON line and exits 0 when every file shows the outcome the appliance gave it
// (released / rejected with plugin and rule / quarantined), 1 otherwise, 2 on bad arguments.

import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const env = process.env;
const here = fileURLToPath(new URL('.', import.meta.url));
const timeoutMs = Number(env.TIMEOUT_MS || 90000);
const pagePort = Number(env.PAGE_PORT);
const pageOrigin = `http://127.0.0.1:${pagePort}`;
const shotsDir = resolve(env.SCREENSHOTS || join(here, '../../test-output/console'));
const CDN = /^https:\/\/releases\.transloadit\.com\/uppy\/v([0-9.]+)\/(uppy\.min\.(?:mjs|css))$/;

function usage(message) {
  process.stderr.write(`uppy.mjs: ${message}\n`);
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

if (!env.PUBLIC_URL) usage('PUBLIC_URL is not set');
if (!Number.isInteger(pagePort) || pagePort <= 0) usage('PAGE_PORT is not a port');
const files = {
  clean: requireFile('CLEAN_FILE'),
  reject: requireFile('REJECT_FILE'),
  quarantine: requireFile('QUARANTINE_FILE'),
};
const pageHtml = readFileSync(join(here, '../../examples/uppy.html'), 'utf8');
const vendored = join(here, 'vendor/uppy');
const vendoredVersion = readFileSync(join(vendored, 'VERSION'), 'utf8').trim();

class CheckFailed extends Error {}
const check = (ok, message) => { if (!ok) throw new CheckFailed(message); };

let step = 'start';
let site = null;
let browser = null;
let page = null;
const pageErrors = [];
// What the browser reports besides: failed requests and console errors (CORS
// refusals show only there), for the failure message.
const diagnostics = [];
const profile = mkdtempSync(join(tmpdir(), 'strongroom-uppy-'));

/** Serves the page at /uppy.html; Chromium must load it from a loopback address to let it
 *  call an appliance on loopback (Local Network Access). */
function servePage() {
  site = createServer((req, res) => {
    if (req.url !== '/uppy.html') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(pageHtml);
  });
  return new Promise((ok, fail) => {
    site.once('error', fail);
    site.listen(pagePort, '127.0.0.1', ok);
  });
}

async function run() {
  mkdirSync(shotsDir, { recursive: true });
  step = 'serve the page';
  await servePage();
  step = 'launch chromium';
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1100, height: 1000 },
  });
  page = browser.pages()[0] || await browser.newPage();
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  page.on('requestfailed', (req) =>
    diagnostics.push(`${req.method()} ${req.url()}: ${req.failure()?.errorText}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') diagnostics.push(`console: ${msg.text()}`);
  });

  // The CDN's Uppy, answered from the same release fetched from npm.
  await page.route('https://releases.transloadit.com/**', async (route) => {
    const match = CDN.exec(route.request().url());
    if (!match || match[1] !== vendoredVersion) {
      await route.fulfill({ status: 404, body: `not vendored: ${route.request().url()}` });
      return;
    }
    const type = match[2].endsWith('.css') ? 'text/css' : 'text/javascript';
    await route.fulfill({ path: join(vendored, match[2]), contentType: type,
      headers: { 'access-control-allow-origin': '*' } });
  });

  step = 'open the page';
  await page.goto(`${pageOrigin}/uppy.html`, { waitUntil: 'load', timeout: 20000 });
  await page.locator('.uppy-Dashboard').waitFor({ timeout: 20000 });
  step = 'settings';
  await page.locator('#server').fill(env.PUBLIC_URL);
  await page.locator('#server').dispatchEvent('change');
  if (env.API_KEY) await page.locator('#apikey').fill(env.API_KEY);

  step = 'add files';
  await page.locator('.uppy-Dashboard-input').first()
    .setInputFiles([files.clean, files.reject, files.quarantine]);
  step = 'upload';
  await page.locator('.uppy-StatusBar-actionBtn--upload').click({ timeout: 10000 });

  step = 'outcomes';
  const want = new Map([
    [basename(files.clean), 'released'],
    [basename(files.reject), 'rejected'],
    [basename(files.quarantine), 'quarantined'],
  ]);
  const rows = await page.waitForFunction((count) => {
    const found = [...document.querySelectorAll('#outcomes tr')].map((tr) => ({
      name: tr.children[0].textContent,
      outcome: tr.children[1].textContent,
      details: tr.children[2].textContent,
    }));
    return found.length >= count ? found : null;
  }, want.size, { timeout: 60000, polling: 100 }).then((handle) => handle.jsonValue());
  for (const [name, outcome] of want) {
    const row = rows.find((r) => r.name === name);
    check(row, `${name}: no outcome row`);
    check(row.outcome === outcome, `${name}: expected ${outcome}, got ${row.outcome} (${row.details})`);
  }
  const rejected = rows.find((r) => r.name === basename(files.reject));
  check(/content-inspector/.test(rejected.details) && /malware-signature/.test(rejected.details),
    `the rejection names no plugin and rule: ${rejected.details}`);
  const held = rows.find((r) => r.name === basename(files.quarantine));
  check(held.details.length > 0, 'the quarantine gives no reason');
  check(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  const shot = join(shotsDir, 'uppy.png');
  await page.screenshot({ path: shot, fullPage: true });
  return { rows, screenshot: shot };
}

const watchdog = setTimeout(() => finish({ ok: false, step, error: `timed out after ${timeoutMs} ms` }, 1),
  timeoutMs);

async function finish(result, code) {
  clearTimeout(watchdog);
  if (code !== 0 && page) {
    await page.screenshot({ path: join(shotsDir, 'uppy-failure.png'), fullPage: true, timeout: 5000 })
      .catch(() => {});
  }
  await Promise.race([browser ? browser.close() : null, new Promise((r) => setTimeout(r, 5000))])
    .catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  if (site) site.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(code);
}

run().then(
  (result) => finish({ ok: true, ...result }, 0),
  (err) => finish({ ok: false, step, error: err instanceof CheckFailed ? err.message : String(err),
    diagnostics: diagnostics.slice(-20) }, 1),
);
