// tests/browser/browser-helpers.mjs: the whole Parley stack for tests in a
// real browser, and helpers to drive the demo page.
//
// startStack() starts a private PostgreSQL with the schema and the demo
// users (schema/demo.sql: alice, bob, carol, password parley-demo; groups
// lobby and staff) plus a public group nobody is in, parley-token on a Unix
// socket, parley-relay on a fixed free port (so it can be killed and started
// again on the same address), and nginx with contrib/nginx/parley.conf
// serving contrib/demo at / and contrib/client at /client/.  The browser is
// Debian's Chromium driven by the npm package playwright-core, headless, each
// launch with its own fresh profile.
//
// Screenshots go to $top_builddir/tests/browser/artifacts/: one per page of
// a failing test, and whatever a test saves on purpose.

import fs from 'node:fs';
import path from 'node:path';
import { topSrcdir, topBuilddir, freePort, startService, waitFor, markFailed } from '../lib/proc.mjs';
import { havePostgres } from '../lib/pg.mjs';
import {
  haveToken, haveNginx, NGINX, writeKey, tokenSettings, startToken, renderNginxConf, webDir,
  webUserCan,
} from '../lib/web.mjs';
import {
  setupDatabase, startRelay, httpRequest, relayBinary, deps as relayDeps,
} from '../e2e/relay-helpers.mjs';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
export const PASSWORD = 'parley-demo';
export const artifactsDir = path.join(topBuilddir, 'tests', 'browser', 'artifacts');

const demoDir = path.join(topSrcdir, 'contrib', 'demo');
const clientDir = path.join(topSrcdir, 'contrib', 'client');

let playwright = null;
try {
  playwright = await import('playwright-core');
} catch {
  playwright = null;
}

/** Why the browser tests cannot run here, or false when they can. */
export function skipReason() {
  if (!playwright)
    return 'npm package playwright-core is not installed in tests/ (npm ci)';
  if (!fs.existsSync(CHROMIUM))
    return `${CHROMIUM} not installed (apt-get install chromium)`;
  if (!havePostgres)
    return 'PostgreSQL server binaries not found';
  if (!haveToken)
    return 'parley-token is not built';
  if (!fs.existsSync(relayBinary))
    return 'parley-relay is not built';
  if (!haveNginx)
    return `${NGINX} not installed`;
  if (!relayDeps())
    return 'npm packages ws and jose are not installed in tests/ (npm ci)';
  if (!webUserCan(path.join(demoDir, 'index.html'), 'r') || !webUserCan(path.join(clientDir, 'parley.js'), 'r'))
    return 'the web server user cannot read contrib/demo and contrib/client';
  return false;
}

// ---------------------------------------------------------------- services

/**
 * The nginx test configuration with the client library reachable at
 * /client/: contrib/nginx/parley.conf maps it to the installed location
 * (/usr/share/parley/client/); here it points at the source tree.
 */
function withClientAlias(conf) {
  const installed = 'alias /usr/share/parley/client/;';
  if (conf.includes(installed))
    return conf.replace(installed, `alias ${clientDir}/;`);
  if (/location \^?~? ?\/client\//.test(conf))
    return conf;
  // parley.conf has no /client/ location yet: add one beside "location /".
  const at = conf.search(/\n[ \t]*location \/ \{/);
  if (at < 0)
    throw new Error('nginx test configuration: no "location / {" to put /client/ beside');
  return `${conf.slice(0, at)}\n        location /client/ {\n            alias ${clientDir}/;\n        }${conf.slice(at)}`;
}

async function startDemoNginx({ name, sock, relayPort }) {
  const prefix = webDir(name);
  const port = await freePort();
  for (const d of ['logs', 'tmp'])
    fs.mkdirSync(path.join(prefix, d), { recursive: true });
  const conf = path.join(prefix, 'nginx.conf');
  fs.writeFileSync(conf, withClientAlias(renderNginxConf({
    prefix, port, sock, relay: `127.0.0.1:${relayPort}`, docroot: demoDir, workers: 1,
  })));
  const errorLog = path.join(prefix, 'logs', 'error.log');
  fs.writeFileSync(errorLog, '');
  const svc = await startService({
    name, cmd: NGINX, dir: prefix,
    args: ['-p', `${prefix}/`, '-c', conf, '-e', errorLog, '-g', 'daemon off;'],
    readyPort: port, timeoutMs: 10000,
  });
  return { svc, port, url: `http://127.0.0.1:${port}`, conf, errorLog };
}

/**
 * Start everything.  opts: name, tokenTtl ('5m'), relayEnv (extra relay
 * settings).  Returns { pg, url, users: {alice: {id, name}, ...}, groups:
 * {lobby: id, ...}, relay: { kill(), start(), stop() }, stop() }.
 */
export async function startStack({ name = 'browser', tokenTtl = '5m', relayEnv = {} } = {}) {
  const pg = await setupDatabase(`${name}-pg`);
  await pg.psqlFile(path.join(topSrcdir, 'schema', 'demo.sql'));
  await pg.psql("SELECT parley.create_group('random', 'public')");
  const users = {};
  for (const line of (await pg.psql('SELECT id, name FROM parley.users')).trim().split('\n')) {
    const [id, n] = line.split('|');
    users[n] = { id: Number(id), name: n };
  }
  const groups = {};
  for (const line of (await pg.psql('SELECT id, name FROM parley.groups')).trim().split('\n')) {
    const [id, n] = line.split('|');
    groups[n] = Number(id);
  }

  const key = writeKey(webDir(`${name}-keys`), 'HS256');
  const token = await startToken({
    name: `${name}-token`,
    settings: tokenSettings(pg, key, { PARLEY_COOKIE_SECURE: '0', WS_TOKEN_TTL: tokenTtl }),
  });

  const relayPort = await freePort();
  let generation = 0;
  const relay = {
    svc: null,
    port: relayPort,
    async start() {
      generation++;
      relay.svc = await startRelay({
        pg, key, name: `${name}-relay${generation}`, waitHealthy: false,
        env: {
          PARLEY_RELAY_LISTEN: `127.0.0.1:${relayPort}`,
          PARLEY_RELAY_ID: `${name}-relay`,
          PARLEY_LOG_LEVEL: 'info',
          ...relayEnv,
        },
      });
      await waitFor(async () => {
        const r = await httpRequest(relayPort, '/healthz').catch(() => ({ status: 0 }));
        return r.status === 200;
      }, { timeoutMs: 15000, what: 'parley-relay /healthz 200' });
      return relay.svc;
    },
    /** SIGKILL: no close frames, as when a machine dies. */
    async kill() {
      const s = relay.svc;
      s.kill('SIGKILL');
      await s.exited;
    },
    async stop() {
      if (relay.svc && relay.svc.running())
        await relay.svc.stop({ signal: 'SIGTERM', timeoutMs: 8000 });
    },
  };
  await relay.start();

  const nginx = await startDemoNginx({ name: `${name}-nginx`, sock: token.sock, relayPort });
  return {
    pg, key, token, relay, nginx, users, groups, url: nginx.url,
    async stop() {
      await nginx.svc.stop({ signal: 'SIGQUIT', timeoutMs: 5000 }).catch(() => {});
      await relay.stop().catch(() => {});
      await token.stop().catch(() => {});
      await pg.stop().catch(() => {});
    },
  };
}

// ---------------------------------------------------------------- browser

/** Launch Chromium (a fresh temporary profile per launch). */
export async function launchBrowser() {
  return playwright.chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/**
 * A new page that records the demo's uncaught errors (page.errors) and
 * console errors (page.consoleErrors) and carries a label for screenshots.
 */
export async function newPage(context, label) {
  const page = await context.newPage();
  page.label = label;
  page.errors = [];
  page.consoleErrors = [];
  page.on('pageerror', (e) => page.errors.push(String(e && e.stack || e)));
  page.on('console', (m) => {
    if (m.type() === 'error')
      page.consoleErrors.push(m.text());
  });
  return page;
}

function slug(s) {
  return s.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').slice(0, 80).toLowerCase();
}

/** Save a screenshot under artifactsDir; returns its path. */
export async function screenshot(page, name) {
  fs.mkdirSync(artifactsDir, { recursive: true });
  const file = path.join(artifactsDir, `${slug(name)}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * Run a test body; on failure save a screenshot of every page of `pages()`
 * (named after the test) and rethrow.  Also fails when the demo threw.
 */
export async function withScreenshots(t, pages, fn) {
  try {
    await fn();
    for (const p of pages())
      if (p.errors.length)
        throw new Error(`uncaught errors in the demo page (${p.label}):\n${p.errors.join('\n')}`);
  } catch (e) {
    markFailed();
    for (const p of pages()) {
      try {
        const f = await screenshot(p, `FAILED-${t.name}-${p.label}`);
        t.diagnostic(`screenshot: ${f}`);
      } catch { /* page gone */ }
    }
    throw e;
  }
}

// ---------------------------------------------------------------- the demo page

/** Open the demo and sign in; resolves once the connection is open. */
export async function signIn(page, url, user, password = PASSWORD) {
  await page.goto(`${url}/`);
  await page.locator('#signin').waitFor({ state: 'visible' });
  await page.fill('#username', user);
  await page.fill('#password', password);
  await page.click('#signin-submit');
  await waitOpen(page);
}

/** Wait until the demo's client is open (the page sets body[data-connection]). */
export async function waitOpen(page, timeout = 30000) {
  await page.waitForSelector('body[data-connection="open"]', { timeout });
  await page.locator('#me').waitFor({ state: 'visible', timeout });
}

/** Click a conversation in the sidebar (by conversation id). */
export async function openConversation(page, conversation) {
  await page.click(`.sidebar li[data-conversation="${conversation}"]`);
  await page.waitForFunction((c) => window.parleyDemo.state.active === c
    && window.parleyDemo.state.convs.get(c) && window.parleyDemo.state.convs.get(c).loaded, conversation);
}

/** Type and send a message in the open conversation. */
export async function sendMessage(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

/** The bodies of the messages shown in the open conversation, by status. */
export function shownBodies(page, status = null) {
  return page.$$eval('#messages .message', (els, st) => els
    .filter((e) => !st || e.dataset.status === st)
    .map((e) => e.querySelector('.body').textContent), status);
}

/** Wait until a message with exactly this body is shown as stored. */
export async function waitForMessage(page, text, timeout = 30000) {
  await page.waitForFunction((t) => [...document.querySelectorAll('#messages .message[data-status="stored"] .body')]
    .some((e) => e.textContent === t), text, { timeout });
}

/** Count how often each body is shown in the open conversation. */
export async function countShown(page) {
  const counts = new Map();
  for (const b of await shownBodies(page))
    counts.set(b, (counts.get(b) || 0) + 1);
  return counts;
}

/** Record the client's state changes in the page (window.__states). */
export async function recordStates(page) {
  await page.evaluate(() => {
    window.__states = [];
    window.__tokens = [];
    window.parleyDemo.client.on('state', (e) => window.__states.push({ state: e.state, code: e.code, delay: e.delay }));
    window.parleyDemo.client.on('token', (e) => window.__tokens.push(e.event));
  });
}

export { waitFor };
