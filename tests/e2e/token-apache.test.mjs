// tests/e2e/token-apache.test.mjs: the main flows of PROTOCOL.md §1 through a
// real Apache httpd, twice: with contrib/apache/parley-fcgid.conf (mod_fcgid
// starts parley-token with a listening socket on stdin) and with
// contrib/apache/parley-cgi.conf (plain CGI, one process per request).
// parley-token runs as www-data there, reading its database and key
// settings from the configuration file PARLEY_CONFIG names (mode 0640, group
// www-data) and the rest from FcgidInitialEnv / SetEnv.
//
// Login, session, token (verified with `jose`: HS256 under mod_fcgid, ES256
// with the JWKS under CGI), logout, 401, 403, 404, 405, and 503 while the
// database is down, recovering without restarting Apache.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startPostgres, havePostgres } from '../lib/pg.mjs';
import { isRoot, waitFor } from '../lib/proc.mjs';
import {
  skipReason, webDir, writeKey, startApache, request, login, cookiePair, setCookies,
  startWsEcho, wsHello,
} from '../lib/web.mjs';

// jose (tests/package.json) verifies the tokens independently of our code.
const jose = await import('jose').catch(() => null);
const haveWs = await import('ws').then(() => true, () => false);
const { jwtVerify, createRemoteJWKSet } = jose || {};
const skip = skipReason({ apache: true }) || (!havePostgres && 'PostgreSQL not installed') ||
  (!jose && 'npm package jose missing: run `npm ci` in tests/');

const PW = { alice: 'alice-apache-1', bob: 'bob-apache-1' };
let pg;
const id = {};
const keys = {};
const servers = {};
let relay;                      // a WebSocket stand-in for the relay (startWsEcho)

const now = () => Math.floor(Date.now() / 1000);
const sql = (t) => pg.psql(t);

function assertJsonError(res, status, code, what = '') {
  assert.equal(res.status, status, `${what}: status ${res.status} ${res.text}`);
  assert.match(res.headers['content-type'] || '', /^application\/json\b/, `${what}: Content-Type`);
  assert.ok(res.json && typeof res.json === 'object', `${what}: JSON body ${res.text}`);
  assert.equal(res.json.error, code, `${what}: error code`);
  assert.equal(typeof res.json.message, 'string', `${what}: message`);
}

/** PIDs and users of the processes running `binary` below Apache process `root`. */
function tokenProcesses(binary, root) {
  const r = spawnSync('ps', ['-eo', 'pid=,ppid=,user=,args='], { encoding: 'utf8' });
  const rows = r.stdout.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 4)
    .map((f) => ({ pid: Number(f[0]), ppid: Number(f[1]), user: f[2], cmd: f[3] }));
  const parent = new Map(rows.map((x) => [x.pid, x.ppid]));
  const below = (pid) => {
    for (let p = parent.get(pid); p; p = parent.get(p))
      if (p === root)
        return true;
    return false;
  };
  return rows.filter((x) => x.cmd === binary && below(x.pid)).map(({ pid, user }) => ({ pid, user }));
}

before(async () => {
  if (skip)
    return;
  pg = await startPostgres({ name: 'token-apache-pg' });
  await pg.installSchema();
  for (const [u, p] of Object.entries(PW))
    id[u] = Number(await sql(`SELECT parley.create_user('${u}', '${p}')`));
  const dir = webDir('token-apache');
  keys.fcgid = writeKey(dir, 'HS256');
  keys.cgi = writeKey(dir, 'ES256');
  const common = { PARLEY_DB: pg.conninfo };
  relay = await startWsEcho();
  [servers.fcgid, servers.cgi] = await Promise.all([
    startApache({
      mode: 'fcgid', relay: relay && relay.addr,
      fileSettings: { ...common, PARLEY_JWT_ALG: 'HS256', PARLEY_JWT_KEY_FILE: keys.fcgid.file },
      envSettings: { PARLEY_COOKIE_SECURE: '0', PARLEY_RELAY_URL: 'wss://chat.example.org/ws', PARLEY_LOG_LEVEL: 'info' },
    }),
    startApache({
      mode: 'cgi', relay: relay && relay.addr,
      fileSettings: { ...common, PARLEY_JWT_ALG: 'ES256', PARLEY_JWT_KEY_FILE: keys.cgi.file },
      envSettings: { WS_TOKEN_TTL: '2m', PARLEY_LOG_LEVEL: 'info' },
    }),
  ]);
});

after(async () => {
  for (const s of Object.values(servers))
    await s.stop();
  if (relay)
    await relay.close();
  if (pg)
    await pg.stop();
});

for (const mode of ['fcgid', 'cgi']) {
  const alg = mode === 'fcgid' ? 'HS256' : 'ES256';
  const ttl = mode === 'fcgid' ? 300 : 120;
  const base = () => servers[mode].url;
  const post = (route, cookie, headers = {}) => request(`${base()}/auth/${route}`, {
    method: 'POST', headers: { ...(cookie ? { Cookie: cookiePair(cookie) } : {}), ...headers },
  });
  const get = (route, cookie) => request(`${base()}/auth/${route}`, { headers: cookie ? { Cookie: cookiePair(cookie) } : {} });
  const verify = (jwt) => (alg === 'HS256'
    ? jwtVerify(jwt, keys.fcgid.secret, { algorithms: [alg], issuer: 'parley', audience: 'parley-relay' })
    : jwtVerify(jwt, createRemoteJWKSet(new URL(`${base()}/auth/jwks.json`)), { algorithms: [alg], issuer: 'parley', audience: 'parley-relay' }));

  test(`${mode}: login, session, token verified by jose, logout`, { skip }, async () => {
    const t0 = now();
    for (const form of [false, true]) {
      const r = await login(base(), 'alice', PW.alice, { form });
      assert.equal(r.res.status, 200, `login (${form ? 'form' : 'JSON'}): ${r.res.text}`);
      assert.deepEqual(r.res.json.user, { id: id.alice, name: 'alice' });
      assert.ok(Number.isInteger(r.res.json.session_expires_at));
      assert.ok(Math.abs(r.res.json.session_expires_at - (t0 + 7 * 86400)) <= 5);
    }
    const { res, cookie } = await login(base(), 'alice', PW.alice);
    assert.equal(cookie.name, 'parley_session');
    assert.equal(cookie.attrs.httponly, true);
    assert.equal(String(cookie.attrs.samesite).toLowerCase(), 'lax');
    assert.equal(cookie.attrs.path, '/');
    // FcgidInitialEnv / SetEnv reach parley-token.
    assert.equal(cookie.attrs.secure, mode === 'fcgid' ? undefined : true,
      mode === 'fcgid' ? 'PARLEY_COOKIE_SECURE=0 from FcgidInitialEnv' : 'Secure by default');

    const s = await get('session', cookie);
    assert.equal(s.status, 200, s.text);
    assert.deepEqual(s.json, { user: { id: id.alice, name: 'alice' }, session_expires_at: res.json.session_expires_at });

    const t = await post('token', cookie);
    assert.equal(t.status, 200, t.text);
    assert.match(t.headers['cache-control'] || '', /\bno-store\b/);
    assert.equal(t.json.token_type, 'Bearer');
    assert.equal(t.json.expires_in, ttl, `WS_TOKEN_TTL (${ttl}s)`);
    assert.ok(Number.isInteger(t.json.expires_at));
    if (mode === 'fcgid')
      assert.equal(t.json.relay_url, 'wss://chat.example.org/ws');
    else
      assert.ok(!('relay_url' in t.json));
    const { payload, protectedHeader } = await verify(t.json.token);
    assert.equal(protectedHeader.alg, alg);
    assert.equal(protectedHeader.typ, 'JWT');
    assert.equal(typeof protectedHeader.kid, 'string');
    assert.equal(payload.sub, String(id.alice));
    assert.equal(payload.name, 'alice');
    assert.equal(payload.exp, payload.iat + ttl);
    const sid = await sql(`SELECT max(id) FROM parley.sessions WHERE user_id = ${id.alice}`);
    assert.equal(payload.sid, sid);

    const lo = await post('logout', cookie);
    assert.equal(lo.status, 204, lo.text);
    const cleared = setCookies(lo)[0];
    assert.ok(cleared && cleared.name === 'parley_session' && Number(cleared.attrs['max-age']) === 0,
      `the cookie is cleared: ${JSON.stringify(cleared)}`);
    assertJsonError(await get('session', cookie), 401, 'invalid_session', 'session after logout');
    assertJsonError(await post('token', cookie), 401, 'invalid_session', 'token after logout');
  });

  test(`${mode}: 401, 403, 404 and 405 as JSON`, { skip }, async () => {
    const wrong = await login(base(), 'bob', 'wrong', { localAddress: mode === 'fcgid' ? '127.0.0.61' : '127.0.0.62' });
    assertJsonError(wrong.res, 401, 'invalid_credentials', 'wrong password');
    const { cookie } = await login(base(), 'bob', PW.bob);
    assert.ok(cookie);
    assertJsonError(await post('token', cookie, { Origin: 'https://evil.example' }), 403, 'forbidden_origin', 'foreign Origin');
    const same = await post('token', cookie, { Origin: base() });
    assert.equal(same.status, 200, `same-host Origin through Apache: ${same.text}`);
    assertJsonError(await get('nope'), 404, 'not_found', 'unknown route');
    for (const [method, route, allow] of [['GET', 'token', 'POST'], ['POST', 'session', 'GET'], ['GET', 'login', 'POST']]) {
      const r = await request(`${base()}/auth/${route}`, { method });
      assertJsonError(r, 405, 'method_not_allowed', `${method} ${route}`);
      assert.ok((r.headers.allow || '').split(',').map((x) => x.trim()).includes(allow), `Allow: ${r.headers.allow}`);
    }
    const j = await get('jwks.json');
    if (alg === 'HS256') {
      assertJsonError(j, 404, 'not_found', 'jwks.json with HS256');
    } else {
      assert.equal(j.status, 200, j.text);
      assert.equal(j.json.keys[0].kty, 'EC');
      assert.ok(!('d' in j.json.keys[0]), 'no private key in the JWKS');
    }
  });

  test(`${mode}: /ws is proxied to the relay as a WebSocket (mod_proxy_wstunnel)`, { skip: skip || (!haveWs && 'npm package ws missing') }, async () => {
    const origin = base();
    const c = await wsHello(`${origin.replace('http:', 'ws:')}/ws`, { origin });
    assert.equal(c.protocol, 'parley.v1');
    assert.equal(c.hello.path, '/ws');
    assert.equal(c.hello.host, new URL(origin).host, 'ProxyPreserveHost: Host with its port');
    assert.equal(c.hello.origin, origin);
    assert.equal(await c.echo('{"type":"ping"}'), '{"type":"ping"}');
    await c.close();
  });

  test(`${mode}: database down gives 503 with Retry-After, and it recovers by itself`, { skip }, async () => {
    const { cookie } = await login(base(), 'bob', PW.bob);
    assert.ok(cookie);
    await pg.stop();
    try {
      for (let i = 0; i < 3; i++) {
        const r = await post('token', cookie);
        assertJsonError(r, 503, 'unavailable', 'token with the database down');
        assert.match(r.headers['retry-after'] || '', /^\d+$/);
      }
      const l = await login(base(), 'bob', PW.bob);
      assertJsonError(l.res, 503, 'unavailable', 'login with the database down');
    } finally {
      await pg.start();
    }
    await waitFor(async () => (await post('token', cookie)).status === 200,
      { timeoutMs: 20000, intervalMs: 250, what: 'token to work again' });
    assert.ok(servers[mode].svc.running(), 'Apache was not restarted');
  });
}

test('mod_fcgid runs parley-token as www-data and keeps it between requests', { skip: skip || (!isRoot && 'needs root') }, async () => {
  const procs = tokenProcesses(servers.fcgid.binary, servers.fcgid.pid);
  assert.ok(procs.length >= 1, 'a parley-token process is running under mod_fcgid');
  for (const p of procs)
    assert.equal(p.user, 'www-data');
  const before = new Set(procs.map((p) => p.pid));
  const { cookie } = await login(servers.fcgid.url, 'alice', PW.alice);
  for (let i = 0; i < 5; i++)
    assert.equal((await request(`${servers.fcgid.url}/auth/token`, { method: 'POST', headers: { Cookie: cookiePair(cookie) } })).status, 200);
  const after = tokenProcesses(servers.fcgid.binary, servers.fcgid.pid).map((p) => p.pid);
  assert.ok(after.some((p) => before.has(p)), 'the same process serves again (FastCGI, not one process per request)');
  servers.fcgid.checkLogs();
  servers.cgi.checkLogs();
});
