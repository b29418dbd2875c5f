// tests/lib/web.mjs: parley-token behind real web servers for end-to-end tests.
//
// What it starts, each in a private directory under $top_builddir/tests/tmp/
// (or under the system temporary directory when www-data cannot reach the
// build tree), on free ports of 127.0.0.1 only, stopped by PID at exit:
//
//   startToken()   parley-token as its own FastCGI server on a Unix socket
//                  (--listen unix:PATH, mode 0660, group www-data when root),
//                  or under spawn-fcgi (stdin is the listening socket);
//   startNginx()   nginx with contrib/nginx/parley.conf (the marked parts,
//                  taken verbatim) inside contrib/nginx/nginx-test.conf.in,
//                  workers running as www-data when root, as in production;
//   startApache()  Apache httpd with contrib/apache/parley-fcgid.conf
//                  (mod_fcgid spawns parley-token) or parley-cgi.conf (plain
//                  CGI) inside contrib/apache/httpd-test.conf.in.
//
// Plus keys (writeKey: HS256 secret, RS256 and ES256 PEM keys, mode 0640
// group www-data), configuration files in the `key = value` format of
// PROTOCOL.md §3, a small HTTP client (request, rawHttp) that keeps full
// control over headers, bytes and source addresses, and a raw FastCGI client
// (fcgiRecord, fcgiRequestBytes, fcgiExchange) to talk to parley-token's
// socket without a web server in between.
//
// Service logs (parley-token's stderr, nginx's and Apache's error logs) are
// printed when a test fails; stop() and checkLogs() fail the test on any
// sanitizer report in them.

import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  topSrcdir, topBuilddir, isRoot, tmpDir, freePort, startService, waitFor,
  onExit, registerLog, tailFile, assertNoSanitizerReports, sanitizerReports,
  markFailed,
} from './proc.mjs';

export const WEB_USER = 'www-data';
export const NGINX = process.env.NGINX || '/usr/sbin/nginx';
export const APACHE = process.env.APACHE2 || '/usr/sbin/apache2';
export const APACHE_MODDIR = process.env.APACHE_MODDIR || '/usr/lib/apache2/modules';
export const SPAWN_FCGI = process.env.SPAWN_FCGI || '/usr/bin/spawn-fcgi';
export const SYSTEMD_SOCKET_ACTIVATE = process.env.SYSTEMD_SOCKET_ACTIVATE || '/usr/bin/systemd-socket-activate';

/** The parley-token binary under test ($PARLEY_TOKEN overrides). */
export const tokenBinary = process.env.PARLEY_TOKEN ||
  path.join(topBuilddir, 'token-fcgi', 'parley-token');

const exists = (p) => { try { fs.accessSync(p, fs.constants.X_OK); return true; } catch { return false; } };
export const haveToken = exists(tokenBinary);
export const haveNginx = exists(NGINX);
export const haveApache = exists(APACHE) && fs.existsSync(path.join(APACHE_MODDIR, 'mod_fcgid.so'));
export const haveSpawnFcgi = exists(SPAWN_FCGI);
export const haveSocketActivate = exists(SYSTEMD_SOCKET_ACTIVATE);

/** Reason to skip a test file, or false (use as `{ skip: skipReason(...) }`). */
export function skipReason({ nginx = false, apache = false } = {}) {
  if (!haveToken)
    return `${tokenBinary} not built`;
  if (nginx && !haveNginx)
    return `${NGINX} not installed`;
  if (apache && !haveApache)
    return `${APACHE} with mod_fcgid not installed`;
  return false;
}

// ---------------------------------------------------------------- users and directories

let webIdsCache;
/** { uid, gid } of www-data (the web server's user), or null when not root. */
export function webIds() {
  if (!isRoot)
    return null;
  if (webIdsCache)
    return webIdsCache;
  const u = spawnSync('id', ['-u', WEB_USER], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', WEB_USER], { encoding: 'utf8' });
  if (u.status !== 0 || g.status !== 0)
    throw new Error(`running as root but there is no ${WEB_USER} user for the web server`);
  webIdsCache = { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
  return webIdsCache;
}

/** Can www-data reach (search, or read/execute with mode 'r'/'x') this path? */
export function webUserCan(p, mode = 'x') {
  if (!isRoot)
    return true;
  const r = spawnSync('runuser', ['-u', WEB_USER, '--', 'test', `-${mode}`, p]);
  return r.status === 0;
}

/**
 * A private directory for this test's web servers that www-data can
 * traverse: tmpDir(name) under the build tree when every parent is
 * searchable by www-data, else a fresh directory under os.tmpdir().
 */
export function webDir(name) {
  const dir = tmpDir(name);
  fs.chmodSync(dir, 0o755);
  if (webUserCan(dir, 'x'))
    return dir;
  const alt = fs.mkdtempSync(path.join(os.tmpdir(), `parley-${name}-`));
  fs.chmodSync(alt, 0o755);
  onExit(() => fs.rmSync(alt, { recursive: true, force: true }));
  return alt;
}

/** chown a path to root:www-data (when root) and chmod it. */
export function shareWithWeb(p, mode) {
  const ids = webIds();
  if (ids)
    fs.chownSync(p, 0, ids.gid);
  fs.chmodSync(p, mode);
}

/** Make a directory writable by the web server's user. */
function giveToWeb(dir) {
  const ids = webIds();
  fs.mkdirSync(dir, { recursive: true });
  if (ids)
    fs.chownSync(dir, ids.uid, ids.gid);
  fs.chmodSync(dir, 0o755);
}

/**
 * The parley-token binary as www-data can execute it: the build tree's own
 * when reachable, else a copy in `dir`.
 */
export function webTokenBinary(dir) {
  if (webUserCan(tokenBinary, 'x'))
    return tokenBinary;
  const copy = path.join(dir, 'parley-token');
  fs.copyFileSync(tokenBinary, copy);
  fs.chmodSync(copy, 0o755);
  return copy;
}

// ---------------------------------------------------------------- keys and configuration

/**
 * Write a signing key for `alg` into dir, mode 0640, group www-data.
 * Returns { alg, file, secret (Buffer, HS256), privatePem, publicPem,
 * publicKey (KeyObject) }.  The HMAC secret is 64 hex characters with no
 * newline, so its bytes are unambiguous.
 */
export function writeKey(dir, alg = 'HS256', name = `jwt-${alg.toLowerCase()}.key`) {
  const file = path.join(dir, name);
  const out = { alg, file };
  if (alg === 'HS256') {
    const secret = crypto.randomBytes(32).toString('hex');
    fs.writeFileSync(file, secret, { mode: 0o600 });
    out.secret = Buffer.from(secret);
  } else {
    const pair = alg === 'RS256'
      ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
      : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    out.privatePem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' });
    out.publicPem = pair.publicKey.export({ type: 'spki', format: 'pem' });
    out.publicKey = pair.publicKey;
    fs.writeFileSync(file, out.privatePem, { mode: 0o600 });
  }
  shareWithWeb(file, 0o640);
  return out;
}

/** The configuration-file key of a setting: PARLEY_JWT_ALG -> jwt_alg (PROTOCOL.md §3). */
export function fileKey(env) {
  return env.replace(/^(PARLEY_|WS_)/, '').toLowerCase();
}

/** Write settings ({PARLEY_X: value}) as a `key = value` file, mode 0640 group www-data. */
export function writeConfig(file, settings) {
  const lines = ['# written by tests/lib/web.mjs'];
  for (const [k, v] of Object.entries(settings)) {
    const t = String(v);
    // Quoted (with \" and \\ escapes) when spaces, '#' or quotes could be misread.
    const q = /^$|^\s|\s$|#|"/.test(t) ? `"${t.replace(/[\\"]/g, (c) => `\\${c}`)}"` : t;
    lines.push(`${fileKey(k)} = ${q}`);
  }
  fs.writeFileSync(file, lines.join('\n') + '\n', { mode: 0o600 });
  shareWithWeb(file, 0o640);
  return file;
}

/**
 * The settings of a token service for a test database and key:
 * PARLEY_DB, PARLEY_JWT_ALG, PARLEY_JWT_KEY_FILE, PARLEY_LOG_LEVEL, merged
 * with `extra`.  Values of `undefined` remove a setting.
 */
export function tokenSettings(pg, key, extra = {}) {
  const s = {
    PARLEY_DB: pg.conninfo,
    PARLEY_JWT_ALG: key.alg,
    PARLEY_JWT_KEY_FILE: key.file,
    PARLEY_LOG_LEVEL: 'info',
    ...extra,
  };
  for (const k of Object.keys(s))
    if (s[k] === undefined)
      delete s[k];
  return s;
}

// Sanitizer runtimes write their reports to stderr, which is the log file.
const sanitizerEnv = {
  ASAN_OPTIONS: process.env.ASAN_OPTIONS || 'abort_on_error=0:detect_leaks=1',
  UBSAN_OPTIONS: process.env.UBSAN_OPTIONS || 'print_stacktrace=1',
};

// parley-token must not pick up settings from the environment of whoever runs
// the tests (a PARLEY_DB of their own, PGHOST, ...): start from a clean one.
function cleanEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env))
    if (!/^(PARLEY_|WS_|PG)/.test(k))
      env[k] = v;
  return { ...env, ...sanitizerEnv, ...extra };
}

// ---------------------------------------------------------------- parley-token

/** Can a client connect to this Unix socket right now? */
export function canConnectUnix(sock) {
  return new Promise((resolve) => {
    const s = net.connect({ path: sock });
    const done = (v) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Start parley-token as a FastCGI server on a Unix socket.
 *   settings   PARLEY_* / WS_* environment (tokenSettings())
 *   mode       'listen' (default): --listen unix:SOCK, PARLEY_SOCKET_MODE
 *              0660 and PARLEY_SOCKET_GROUP www-data when root;
 *              'spawn-fcgi': spawn-fcgi -n binds the socket (same mode and
 *              group) and execs parley-token with it as stdin;
 *              'systemd': systemd-socket-activate passes it as fd 3.
 *   args       extra arguments for parley-token
 * Returns { sock, pid, log, dir, svc, settings, stop(), kill(sig), running(),
 * exited, checkLogs(), logText() }.
 */
export async function startToken({ name = 'token', dir, settings, mode = 'listen', args = [], timeoutMs = 20000 } = {}) {
  dir = dir || webDir(name);
  const sock = path.join(dir, `${name}.sock`);
  if (Buffer.byteLength(sock) > 100)
    throw new Error(`socket path too long for a Unix socket: ${sock}`);
  fs.rmSync(sock, { force: true });
  const ids = webIds();
  let cmd;
  let argv;
  const env = cleanEnv(settings);
  if (mode === 'listen') {
    cmd = tokenBinary;
    argv = ['--listen', `unix:${sock}`, ...args];
    env.PARLEY_SOCKET_MODE = env.PARLEY_SOCKET_MODE || '0660';
    if (ids)
      env.PARLEY_SOCKET_GROUP = env.PARLEY_SOCKET_GROUP || WEB_USER;
  } else if (mode === 'spawn-fcgi') {
    cmd = SPAWN_FCGI;
    argv = ['-n', '-s', sock, '-M', '0660', ...(ids ? ['-G', WEB_USER] : []),
      '--', tokenBinary, ...args];
  } else if (mode === 'systemd') {
    // systemd-socket-activate binds the socket and, at the first connection,
    // execs parley-token in the same process with it as fd 3 (LISTEN_FDS=1,
    // LISTEN_PID), as systemd does with contrib/systemd/parley-token.socket.
    // It passes on only the environment it is told to (-E NAME).
    cmd = SYSTEMD_SOCKET_ACTIVATE;
    const pass = Object.keys(env).filter((k) => /^(PARLEY_|WS_|PG|ASAN_|UBSAN_|LSAN_)/.test(k));
    argv = ['-l', sock, ...pass.flatMap((k) => ['-E', k]), '--', tokenBinary, ...args];
  } else {
    throw new Error(`startToken: unknown mode ${mode}`);
  }
  const svc = await startService({ name, cmd, args: argv, env, dir, timeoutMs: 5000 });
  if (mode === 'systemd') {
    // SocketMode=0660, SocketGroup=www-data of the unit.
    await waitFor(() => fs.existsSync(sock), { timeoutMs, what: `${sock} to appear` });
    fs.chmodSync(sock, 0o660);
    if (ids)
      fs.chownSync(sock, 0, ids.gid);
  }
  try {
    await waitFor(async () => {
      if (!svc.running())
        throw new Error(`parley-token exited before listening on ${sock}`);
      return fs.existsSync(sock) && canConnectUnix(sock);
    }, { timeoutMs, what: `parley-token on ${sock}` });
  } catch (e) {
    markFailed();
    await svc.stop({ signal: 'SIGKILL', timeoutMs: 1000 }).catch(() => {});
    e.message += `\n${name} log:\n${tailFile(svc.log, 4096)}`;
    throw e;
  }
  return {
    name, sock, dir, svc, settings, mode,
    pid: svc.pid, log: svc.log, exited: svc.exited,
    running: svc.running, kill: svc.kill, logText: svc.logText,
    checkLogs: () => svc.checkSanitizers(),
    stop: (o) => svc.stop(o),
  };
}

// A web server's master process has children (nginx workers, Apache's
// processes, mod_fcgid's parley-token) in its process group: when the master
// has to be killed, or the test process exits early, they go too.
function killGroupAtExit(pid) {
  const kill = () => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch { /* none left */ }
  };
  onExit(kill);
  return kill;
}

// ---------------------------------------------------------------- nginx

const NGINX_CONF = path.join(topSrcdir, 'contrib', 'nginx', 'parley.conf');
const NGINX_TEMPLATE = path.join(topSrcdir, 'contrib', 'nginx', 'nginx-test.conf.in');

function between(text, begin, end, file) {
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a)
    throw new Error(`${file}: markers "${begin}" / "${end}" not found`);
  return text.slice(text.indexOf('\n', a) + 1, b).replace(/[ \t]+$/, '');
}

function replaceOnce(text, from, to, what) {
  const n = text.split(from).length - 1;
  if (n !== 1)
    throw new Error(`${what}: expected "${from}" exactly once, found ${n} times (update tests/lib/web.mjs)`);
  return text.replace(from, () => to);
}

/**
 * Render the nginx test configuration: the marked parts of
 * contrib/nginx/parley.conf with the socket, relay address and document
 * root replaced, inside nginx-test.conf.in.  `relay` is one HOST:PORT or a
 * list of them (one `server` line each in the parley_relay upstream, as an
 * operator with several relays writes it).  `edits` ([[from, to], ...])
 * are further replacements in the locations part, each of a text that must
 * occur there exactly once (a test that shortens `proxy_read_timeout 1h;`
 * fails loudly when the shipped line changes).  Exported for tests that
 * check it.
 */
export function renderNginxConf({ prefix, port, sock, relay = '127.0.0.1:8090', docroot, workers = 2, edits = [] }) {
  const src = fs.readFileSync(NGINX_CONF, 'utf8');
  let httpPart = between(src, '# BEGIN parley http', '# END parley http', NGINX_CONF);
  let locations = between(src, '# BEGIN parley locations', '# END parley locations', NGINX_CONF);
  httpPart = replaceOnce(httpPart, 'unix:/run/parley/token.sock', `unix:${sock}`, NGINX_CONF);
  if (Array.isArray(relay)) {
    if (relay.length === 0)
      throw new Error('renderNginxConf: empty relay list');
    // One line per relay, each keeping the parameters of the deployed line.
    const lines = httpPart.match(/server 127\.0\.0\.1:8090\b[^;]*;/g) || [];
    if (lines.length !== 1)
      throw new Error(`${NGINX_CONF}: expected one "server 127.0.0.1:8090 ...;" line, found ${lines.length} (update tests/lib/web.mjs)`);
    const params = lines[0].slice('server 127.0.0.1:8090'.length, -1);
    httpPart = httpPart.replace(lines[0], () => relay.map((a) => `server ${a}${params};`).join('\n    '));
  } else {
    httpPart = replaceOnce(httpPart, '127.0.0.1:8090', relay, NGINX_CONF);
  }
  locations = replaceOnce(locations, 'root /usr/share/parley/demo;', `root ${docroot};`, NGINX_CONF);
  locations = replaceOnce(locations, 'alias /usr/share/parley/client/;',
    `alias ${path.join(topSrcdir, 'contrib', 'client')}/;`, NGINX_CONF);
  for (const [from, to] of edits)
    locations = replaceOnce(locations, from, to, NGINX_CONF);
  const vars = {
    USER_LINE: isRoot ? `user ${WEB_USER} ${WEB_USER};` : '',
    PREFIX: prefix,
    PORT: String(port),
    WORKERS: String(workers),
    PARLEY_HTTP: httpPart,
    PARLEY_LOCATIONS: locations,
  };
  const tpl = fs.readFileSync(NGINX_TEMPLATE, 'utf8')
    .split('\n').filter((l) => !l.startsWith('#')).join('\n');
  return tpl.replace(/@([A-Z_]+)@/g, (m, k) => {
    if (!(k in vars))
      throw new Error(`${NGINX_TEMPLATE}: unknown placeholder ${m}`);
    return vars[k];
  });
}

/** A document root with a small index page (the demo page when there is one). */
function docRoot(dir) {
  const demo = path.join(topSrcdir, 'contrib', 'demo');
  if (fs.existsSync(path.join(demo, 'index.html')) && webUserCan(demo, 'r'))
    return demo;
  const root = path.join(dir, 'html');
  fs.mkdirSync(root, { recursive: true });
  fs.writeFileSync(path.join(root, 'index.html'), '<!doctype html><title>parley test</title>\n');
  fs.chmodSync(root, 0o755);
  fs.chmodSync(path.join(root, 'index.html'), 0o644);
  return root;
}

/**
 * Start nginx in front of a token service ({ sock } from startToken, or
 * just a socket path).  `relay`: the relays' HOST:PORT, or a list of
 * them for the parley_relay upstream (renderNginxConf); `edits` as for
 * renderNginxConf.  Returns { port, url, prefix, conf, errorLog, accessLog,
 * pid, stop(), checkLogs(), errorLogText() }.
 */
export async function startNginx({ name = 'nginx', token, sock, relay, workers = 2, port, edits = [] } = {}) {
  const prefix = webDir(name);
  sock = sock || token.sock;
  port = port || await freePort();
  for (const d of ['logs', 'tmp'])
    fs.mkdirSync(path.join(prefix, d), { recursive: true });
  const conf = path.join(prefix, 'nginx.conf');
  fs.writeFileSync(conf, renderNginxConf({
    prefix, port, sock, relay, docroot: docRoot(prefix), workers, edits,
  }));
  const errorLog = path.join(prefix, 'logs', 'error.log');
  fs.writeFileSync(errorLog, '');
  registerLog(`${name} error log ${errorLog}`, () => tailFile(errorLog));
  const svc = await startService({
    name, cmd: NGINX, dir: prefix,
    args: ['-p', `${prefix}/`, '-c', conf, '-e', errorLog, '-g', 'daemon off;'],
    readyPort: port, timeoutMs: 10000,
  });
  const killGroup = killGroupAtExit(svc.pid);
  const url = `http://127.0.0.1:${port}`;
  const errorLogText = () => { try { return fs.readFileSync(errorLog, 'utf8'); } catch { return ''; } };
  const checkLogs = () => {
    svc.checkSanitizers();
    const bad = errorLogText().split('\n').filter((l) => /\[(alert|emerg)\]/.test(l));
    if (bad.length) {
      markFailed();
      throw new Error(`nginx reported:\n${bad.join('\n')}`);
    }
  };
  return {
    name, port, url, prefix, conf, errorLog, sock, svc,
    accessLog: path.join(prefix, 'logs', 'access.log'),
    pid: svc.pid, errorLogText, checkLogs,
    async stop() {
      // SIGQUIT: graceful, as in production; a worker still busy after 5 s
      // is killed with the master's process group.
      const st = await svc.stop({ signal: 'SIGQUIT', timeoutMs: 5000 });
      killGroup();
      checkLogs();
      return st;
    },
  };
}

// ---------------------------------------------------------------- Apache httpd

const APACHE_SNIPPET = {
  fcgid: path.join(topSrcdir, 'contrib', 'apache', 'parley-fcgid.conf'),
  cgi: path.join(topSrcdir, 'contrib', 'apache', 'parley-cgi.conf'),
};
const APACHE_TEMPLATE = path.join(topSrcdir, 'contrib', 'apache', 'httpd-test.conf.in');
const DEPLOYED_BINARY = '/usr/local/bin/parley-token';
const DEPLOYED_CONFIG = '/etc/parley/token.conf';

function apacheQuote(v) {
  return `"${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * Start Apache httpd with parley-token under mod_fcgid (mode 'fcgid') or as
 * plain CGI (mode 'cgi').  `fileSettings` go into the configuration file the
 * deployed snippet points PARLEY_CONFIG at; `envSettings` are passed with
 * FcgidInitialEnv (fcgid) or SetEnv (cgi).  parley-token runs as www-data
 * and writes to Apache's error log.  `relay` (HOST:PORT) replaces the
 * relays' address of the /ws location.  Returns { port, url, prefix, errorLog,
 * pid, stop(), checkLogs(), errorLogText() }.
 */
export async function startApache({ name, mode = 'fcgid', fileSettings = {}, envSettings = {}, mpm = 'event', relay } = {}) {
  name = name || `apache-${mode}`;
  const prefix = webDir(name);
  const port = await freePort();
  for (const d of ['logs', 'run'])
    fs.mkdirSync(path.join(prefix, d), { recursive: true });
  giveToWeb(path.join(prefix, 'fcgid'));
  const binary = webTokenBinary(prefix);
  const config = writeConfig(path.join(prefix, 'token.conf'), fileSettings);

  let snippet = fs.readFileSync(APACHE_SNIPPET[mode], 'utf8');
  snippet = replaceOnce(snippet, `/auth ${DEPLOYED_BINARY}`, `/auth ${binary}`, APACHE_SNIPPET[mode]);
  snippet = replaceOnce(snippet, `PARLEY_CONFIG ${DEPLOYED_CONFIG}`, `PARLEY_CONFIG ${config}`, APACHE_SNIPPET[mode]);
  if (relay)
    snippet = replaceOnce(snippet, 'ws://127.0.0.1:8090/ws', `ws://${relay}/ws`, APACHE_SNIPPET[mode]);
  fs.writeFileSync(path.join(prefix, 'parley.conf'), snippet);

  // Sanitizer options travel like any other setting.
  const env = { ...sanitizerEnv, ...envSettings };
  const directive = mode === 'fcgid' ? 'FcgidInitialEnv' : 'SetEnv';
  const envLines = Object.entries(env)
    .map(([k, v]) => `${directive} ${k} ${apacheQuote(v)}`).join('\n');
  const cgiModule = mpm === 'prefork' ? 'cgi_module @MODDIR@/mod_cgi.so' : 'cgid_module @MODDIR@/mod_cgid.so';
  const vars = {
    PREFIX: prefix,
    PORT: String(port),
    MODDIR: APACHE_MODDIR,
    MPM: mpm,
    CGI_MODULE: cgiModule.replace('@MODDIR@', APACHE_MODDIR),
    USER_LINES: isRoot ? `User ${WEB_USER}\nGroup ${WEB_USER}` : '',
    DOCROOT: docRoot(prefix),
    PARLEY_ENV: envLines,
  };
  const tpl = fs.readFileSync(APACHE_TEMPLATE, 'utf8')
    .split('\n').filter((l) => !l.startsWith('#')).join('\n');
  const conf = path.join(prefix, 'httpd.conf');
  fs.writeFileSync(conf, tpl.replace(/@([A-Z_]+)@/g, (m, k) => {
    if (!(k in vars))
      throw new Error(`${APACHE_TEMPLATE}: unknown placeholder ${m}`);
    return vars[k];
  }));
  const errorLog = path.join(prefix, 'logs', 'error.log');
  fs.writeFileSync(errorLog, '');
  registerLog(`${name} error log ${errorLog}`, () => tailFile(errorLog));
  // Apache reads no environment of ours for its own configuration, but the
  // CGI mode may PassEnv: keep PARLEY_* of the caller out.
  const svc = await startService({
    name, cmd: APACHE, dir: prefix, env: cleanEnv({}),
    args: ['-f', conf, '-DFOREGROUND'],
    readyPort: port, timeoutMs: 15000,
  });
  const killGroup = killGroupAtExit(svc.pid);
  const url = `http://127.0.0.1:${port}`;
  const errorLogText = () => { try { return fs.readFileSync(errorLog, 'utf8'); } catch { return ''; } };
  const checkLogs = () => {
    svc.checkSanitizers();
    assertNoSanitizerReports(errorLog);
    const bad = errorLogText().split('\n').filter((l) => /:(emerg|alert|crit)\]/.test(l));
    if (bad.length) {
      markFailed();
      throw new Error(`Apache reported:\n${bad.join('\n')}`);
    }
  };
  return {
    name, mode, port, url, prefix, conf, errorLog, svc, binary, config,
    pid: svc.pid, errorLogText, checkLogs,
    async stop() {
      // SIGTERM: Apache stops its children (mod_fcgid's processes included).
      const st = await svc.stop({ signal: 'SIGTERM', timeoutMs: 10000 });
      killGroup();
      checkLogs();
      return st;
    },
  };
}

// ---------------------------------------------------------------- HTTP client

/**
 * One HTTP/1.1 request with node's http module (no keep-alive, no
 * redirects, no cookie handling of its own).
 *   request(url, { method, headers, body, json, form, localAddress, timeoutMs })
 * `json` is serialised with Content-Type application/json, `form` (object)
 * as application/x-www-form-urlencoded; `headers` may also be an array of
 * [name, value] pairs (repeated names are sent as separate lines).
 * Resolves to { status, headers (lower-case names; set-cookie is an array),
 * rawHeaders, text, json (parsed, or undefined), ms (elapsed) }.
 */
export function request(url, opts = {}) {
  const { method = 'GET', localAddress, timeoutMs = 15000 } = opts;
  let { body, headers = {} } = opts;
  let list = Array.isArray(headers) ? [...headers] : Object.entries(headers);
  const has = (n) => list.some(([k]) => k.toLowerCase() === n);
  if (opts.json !== undefined) {
    body = typeof opts.json === 'string' ? opts.json : JSON.stringify(opts.json);
    if (!has('content-type'))
      list.push(['Content-Type', 'application/json']);
  } else if (opts.form !== undefined) {
    body = typeof opts.form === 'string' ? opts.form : new URLSearchParams(opts.form).toString();
    if (!has('content-type'))
      list.push(['Content-Type', 'application/x-www-form-urlencoded']);
  }
  if (body !== undefined && !Buffer.isBuffer(body))
    body = Buffer.from(body);
  if (body !== undefined && !has('content-length') && !has('transfer-encoding'))
    list.push(['Content-Length', String(body.length)]);
  list.push(['Connection', 'close']);
  const u = new URL(url);
  // With headers given as an array node adds no Host of its own.
  if (!has('host'))
    list.unshift(['Host', u.host]);
  const flat = list.flatMap(([k, v]) => [k, String(v)]);
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname + u.search, method,
      headers: flat, localAddress, agent: false, setHost: false,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch { /* not JSON */ }
        resolve({
          status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders,
          text, json: parsed, ms: Number(process.hrtime.bigint() - t0) / 1e6,
        });
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Send raw bytes to host:port and read until the server closes.  Resolves
 * to { raw (Buffer), status, headers (lower-case, repeated joined by ', '),
 * setCookies, text, json } for the first response (Content-Length or
 * chunked body), or { raw, status: 0 } when nothing parseable came back.
 */
export function rawHttp(port, bytes, { host = '127.0.0.1', timeoutMs = 15000, localAddress } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress });
    const chunks = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`raw request to ${host}:${port}: no end in ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('data', (c) => chunks.push(c));
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(parseHttp(Buffer.concat(chunks)));
    });
    // No half-close: nginx takes an early FIN for a client that went away.
    s.on('connect', () => s.write(bytes));
  });
}

/** Parse one HTTP/1.x response from a buffer (see rawHttp). */
export function parseHttp(raw) {
  const sep = raw.indexOf('\r\n\r\n');
  if (sep < 0)
    return { raw, status: 0, headers: {}, setCookies: [], text: '' };
  const head = raw.subarray(0, sep).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]);
  const headers = {};
  const setCookies = [];
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    const k = line.slice(0, i).trim().toLowerCase();
    const v = line.slice(i + 1).trim();
    if (k === 'set-cookie')
      setCookies.push(v);
    headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
  }
  let body = raw.subarray(sep + 4);
  if (/chunked/i.test(headers['transfer-encoding'] || '')) {
    const parts = [];
    let rest = body;
    for (;;) {
      const nl = rest.indexOf('\r\n');
      if (nl < 0)
        break;
      const n = parseInt(rest.subarray(0, nl).toString('latin1'), 16);
      if (!n)
        break;
      parts.push(rest.subarray(nl + 2, nl + 2 + n));
      rest = rest.subarray(nl + 2 + n + 2);
    }
    body = Buffer.concat(parts);
  } else if (headers['content-length'] !== undefined) {
    body = body.subarray(0, Number(headers['content-length']));
  }
  const text = body.toString('utf8');
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch { /* not JSON */ }
  return { raw, status: m ? Number(m[1]) : 0, headers, setCookies, text, json };
}

// ---------------------------------------------------------------- cookies

/**
 * Parse a Set-Cookie header value: { name, value, attrs } with attribute
 * names lower-cased (flags map to true).
 */
export function parseSetCookie(line) {
  const [pair, ...rest] = line.split(';');
  const eq = pair.indexOf('=');
  const attrs = {};
  for (const a of rest) {
    const t = a.trim();
    if (!t)
      continue;
    const i = t.indexOf('=');
    if (i < 0)
      attrs[t.toLowerCase()] = true;
    else
      attrs[t.slice(0, i).trim().toLowerCase()] = t.slice(i + 1).trim();
  }
  return { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim(), attrs };
}

/** The Set-Cookie headers of a response (request() or rawHttp()) as parsed cookies. */
export function setCookies(res) {
  const list = res.setCookies || res.headers['set-cookie'] || [];
  return (Array.isArray(list) ? list : [list]).map(parseSetCookie);
}

/** Does the text contain a sanitizer report?  (Re-exported for tests.) */
export { sanitizerReports };

// ---------------------------------------------------------------- raw FastCGI

/** FastCGI record types (FastCGI 1.0 specification, §8). */
export const FCGI = {
  BEGIN_REQUEST: 1, ABORT_REQUEST: 2, END_REQUEST: 3, PARAMS: 4, STDIN: 5,
  STDOUT: 6, STDERR: 7, DATA: 8, GET_VALUES: 9, GET_VALUES_RESULT: 10,
  UNKNOWN_TYPE: 11, RESPONDER: 1, KEEP_CONN: 1,
};

/**
 * One FastCGI record: version, type, request id, content (Buffer), padding.
 * `contentLength` overrides the length written in the header (to lie).
 */
export function fcgiRecord(type, content = Buffer.alloc(0), { id = 1, version = 1, padding = 0, contentLength } = {}) {
  const h = Buffer.alloc(8);
  h[0] = version;
  h[1] = type;
  h.writeUInt16BE(id, 2);
  h.writeUInt16BE(contentLength ?? content.length, 4);
  h[6] = padding;
  return Buffer.concat([h, content, Buffer.alloc(padding)]);
}

/** Encode a FastCGI name-value length (1 byte below 128, else 4 with the top bit). */
export function fcgiLength(n) {
  if (n < 128)
    return Buffer.from([n]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE((n | 0x80000000) >>> 0);
  return b;
}

/** Name-value pairs ({NAME: value} or [[name, value]]) as PARAMS content. */
export function fcgiPairs(params) {
  const list = Array.isArray(params) ? params : Object.entries(params);
  return Buffer.concat(list.map(([k, v]) => {
    const kb = Buffer.from(k);
    const vb = Buffer.isBuffer(v) ? v : Buffer.from(String(v));
    return Buffer.concat([fcgiLength(kb.length), fcgiLength(vb.length), kb, vb]);
  }));
}

/** Split content into records of at most 65535 bytes, then an empty one (end of stream). */
export function fcgiStream(type, content, opts = {}) {
  const out = [];
  for (let i = 0; i < content.length; i += 65535)
    out.push(fcgiRecord(type, content.subarray(i, i + 65535), opts));
  out.push(fcgiRecord(type, Buffer.alloc(0), opts));
  return Buffer.concat(out);
}

/**
 * A complete responder request: BEGIN_REQUEST, PARAMS, STDIN.  `params`
 * are the CGI variables, `stdin` the body.
 */
export function fcgiRequestBytes(params, stdin = Buffer.alloc(0), { id = 1, keepConn = false } = {}) {
  const begin = Buffer.alloc(8);
  begin.writeUInt16BE(FCGI.RESPONDER, 0);
  begin[2] = keepConn ? FCGI.KEEP_CONN : 0;
  return Buffer.concat([
    fcgiRecord(FCGI.BEGIN_REQUEST, begin, { id }),
    fcgiStream(FCGI.PARAMS, fcgiPairs(params), { id }),
    fcgiStream(FCGI.STDIN, Buffer.isBuffer(stdin) ? stdin : Buffer.from(stdin), { id }),
  ]);
}

/**
 * Send bytes to a FastCGI Unix socket, read until the peer closes (or
 * `timeoutMs`), and decode the records that came back.  Resolves to
 * { closed (peer closed the connection), timedOut, error (socket error
 * code or undefined), records [{type, id, content}], stdout (Buffer),
 * stderr, appStatus (END_REQUEST), http: parsed CGI response or undefined }.
 */
export function fcgiExchange(sock, bytes, { timeoutMs = 5000, endInput = true } = {}) {
  return new Promise((resolve) => {
    const s = net.connect({ path: sock });
    const chunks = [];
    let error;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      s.destroy();
    }, timeoutMs);
    s.on('data', (c) => chunks.push(c));
    s.on('error', (e) => {
      error = e.code || e.message;
    });
    s.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks);
      const records = [];
      let off = 0;
      while (off + 8 <= raw.length) {
        const len = raw.readUInt16BE(off + 4);
        const pad = raw[off + 6];
        if (off + 8 + len + pad > raw.length)
          break;
        records.push({ type: raw[off + 1], id: raw.readUInt16BE(off + 2), content: raw.subarray(off + 8, off + 8 + len) });
        off += 8 + len + pad;
      }
      const cat = (t) => Buffer.concat(records.filter((r) => r.type === t).map((r) => r.content));
      const stdout = cat(FCGI.STDOUT);
      const end = records.find((r) => r.type === FCGI.END_REQUEST);
      let httpRes;
      if (stdout.length) {
        // A CGI response: "Status: 200 OK" and headers, a blank line, the body.
        const cgi = Buffer.concat([Buffer.from('HTTP/1.1 200 CGI\r\n'), stdout]);
        httpRes = parseHttp(Buffer.from(cgi.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1'));
        const st = /^status:\s*(\d{3})/im.exec(stdout.toString('latin1'));
        if (httpRes && st)
          httpRes.status = Number(st[1]);
        if (httpRes) {
          const sep = stdout.indexOf('\r\n\r\n') >= 0 ? stdout.indexOf('\r\n\r\n') + 4 : stdout.indexOf('\n\n') + 2;
          httpRes.text = stdout.subarray(sep).toString('utf8');
          try {
            httpRes.json = JSON.parse(httpRes.text);
          } catch {
            httpRes.json = undefined;
          }
        }
      }
      resolve({
        closed: !timedOut, timedOut, error, records, stdout, stderr: cat(FCGI.STDERR),
        appStatus: end ? end.content.readUInt32BE(0) : undefined, http: httpRes,
      });
    });
    s.on('connect', () => {
      if (endInput)
        s.end(bytes);
      else
        s.write(bytes);
    });
  });
}

// ---------------------------------------------------------------- Parley requests

/**
 * POST {base}/auth/login with JSON (or a form with {form: true}).  Resolves
 * to { res, cookie (parsed Set-Cookie of the session, or undefined), value
 * (its value) }.
 */
export async function login(base, username, password, { form = false, headers = {}, localAddress, prefix = '/auth' } = {}) {
  const body = { username, password };
  const res = await request(`${base}${prefix}/login`, {
    method: 'POST', headers, localAddress, ...(form ? { form: body } : { json: body }),
  });
  const cookie = setCookies(res)[0];
  return { res, cookie, value: cookie && cookie.value };
}

/** `${name}=${value}` for a Cookie header from a parsed Set-Cookie. */
export function cookiePair(cookie) {
  return `${cookie.name}=${cookie.value}`;
}

// ---------------------------------------------------------------- WebSocket stand-in for the relay

/**
 * A WebSocket server on a free port of 127.0.0.1 standing in for the relay
 * behind the web server's /ws location: it greets each connection with what
 * it saw ({host, origin, path, protocol, forwardedFor}) and echoes every
 * text frame.  Needs the npm package `ws`; resolves to null without it.
 * Returns { port, addr ('127.0.0.1:PORT'), close() }.
 */
export async function startWsEcho() {
  const ws = await import('ws').catch(() => null);
  if (!ws)
    return null;
  const port = await freePort();
  const wss = new ws.WebSocketServer({
    host: '127.0.0.1', port,
    handleProtocols: (protocols) => (protocols.has('parley.v1') ? 'parley.v1' : false),
  });
  await new Promise((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  wss.on('connection', (sock, req) => {
    sock.send(JSON.stringify({
      host: req.headers.host, origin: req.headers.origin, path: req.url,
      protocol: sock.protocol, forwardedFor: req.headers['x-forwarded-for'],
    }));
    sock.on('message', (data) => sock.send(String(data)));
  });
  return {
    port, addr: `127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      for (const c of wss.clients)
        c.terminate();
      wss.close(() => resolve());
    }),
  };
}

/**
 * Open a WebSocket to `url` (ws://...) offering `protocols`, with `origin`;
 * resolve to { hello (the first message, parsed), echo(text) -> reply,
 * protocol, close() }.
 */
export async function wsHello(url, { protocols = ['parley.v1'], origin } = {}) {
  const ws = await import('ws');
  const sock = new ws.WebSocket(url, protocols, { origin });
  const queue = [];
  const waiters = [];
  sock.on('message', (d) => {
    const w = waiters.shift();
    if (w)
      w(String(d));
    else
      queue.push(String(d));
  });
  const next = () => new Promise((resolve, reject) => {
    if (queue.length)
      return resolve(queue.shift());
    const t = setTimeout(() => reject(new Error(`${url}: no message in 5 s`)), 5000);
    waiters.push((m) => {
      clearTimeout(t);
      resolve(m);
    });
  });
  await new Promise((resolve, reject) => {
    sock.once('open', resolve);
    sock.once('error', reject);
    sock.once('unexpected-response', (req, res) => reject(new Error(`${url}: HTTP ${res.statusCode}`)));
  });
  const hello = JSON.parse(await next());
  return {
    hello, protocol: sock.protocol,
    echo: async (text) => {
      sock.send(text);
      return next();
    },
    close: () => new Promise((resolve) => {
      sock.once('close', resolve);
      sock.close();
    }),
  };
}
