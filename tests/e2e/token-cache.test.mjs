// tests/e2e/token-cache.test.mjs: parley-token's session cache
// (PARLEY_SESSION_CACHE, parley-token(8) "Session cache") through real nginx
// in front of real parley-token processes and a real PostgreSQL.
//
// Three token services: A and B with the cache on (the default), C with
// PARLEY_SESSION_CACHE=0.  parley.session_lookup is wrapped so that every
// call bumps a sequence: the number of database lookups is then exact, so
// each test first shows that the session really is answered from memory
// before it revokes it, and cannot pass with the cache quietly off.
//
// A revocation is asserted on the very next token request, after waiting
// (at most 1 s) for the process's debug line saying it handled the
// notification: a revoke_sessions() call, a DELETE of the row, a logout
// through another process, and a TRUNCATE.  A logout through the same
// process needs no wait.  While PostgreSQL is down the cache is bypassed
// (503, never a 200 from memory), and a session revoked while the
// process's LISTEN connection was away (its role could not log in) is
// refused once it is back, because the cache starts empty.  An expired
// session is never answered from memory, and a cookie whose session row
// appears later works at once (no "no session" is cached).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startPostgres, havePostgres } from '../lib/pg.mjs';
import { waitFor } from '../lib/proc.mjs';
import {
  skipReason, webDir, writeKey, tokenSettings, startToken, startNginx, request,
  login, cookiePair,
} from '../lib/web.mjs';

const skip = skipReason({ nginx: true }) || (!havePostgres && 'PostgreSQL not installed');

const ROLE = 'cache_tok';       // the role the token services connect as
const NOTIFY_WAIT_MS = 1000;    // how long a notification may take to be handled
const PW = 'cache-test-password-1';
const USERS = ['ann', 'ben', 'cat', 'dan', 'eve', 'fay', 'gus', 'hal'];

let pg;
let dir;
let key;
const id = {};
const svc = {};                 // A, B (cache on), C (cache off): { token, nginx, url }

const sql = (text) => pg.psql(text);
const lookups = async () => Number(await sql(
  'SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM cache_probe.lookup_calls'));

async function startPair(name, extra) {
  const conninfo = `host=${pg.host} port=${pg.port} dbname=${pg.dbname} user=${ROLE}`;
  const token = await startToken({
    name: `token-cache-${name}`, dir,
    settings: tokenSettings(pg, key, { PARLEY_DB: conninfo, PARLEY_LOG_LEVEL: 'debug', ...extra }),
  });
  const nginx = await startNginx({ name: `nginx-cache-${name}`, token });
  svc[name] = { token, nginx, url: nginx.url };
  return svc[name];
}

function post(name, route, cookie) {
  const headers = cookie ? { Cookie: typeof cookie === 'string' ? cookie : cookiePair(cookie) } : {};
  return request(`${svc[name].url}/auth/${route}`, { method: 'POST', headers });
}

function getSession(name, cookie) {
  return request(`${svc[name].url}/auth/session`, { headers: { Cookie: cookiePair(cookie) } });
}

async function loginOk(name, user) {
  const r = await login(svc[name].url, user, PW);
  assert.equal(r.res.status, 200, `login ${user} via ${name}: ${r.res.status} ${r.res.text}`);
  return r.cookie;
}

/** A token through `name`; asserts 200 and returns the JWT's claims. */
async function tokenOk(name, cookie, what = '') {
  const r = await post(name, 'token', cookie);
  assert.equal(r.status, 200, `${what} token via ${name}: ${r.status} ${r.text}`);
  return JSON.parse(Buffer.from(r.json.token.split('.')[1], 'base64url'));
}

function assertInvalid(r, what) {
  assert.equal(r.status, 401, `${what}: ${r.status} ${r.text}`);
  assert.equal(r.json && r.json.error, 'invalid_session', `${what}: error code`);
}

/**
 * Log in `user` through A and show that A answers that session from
 * memory: one lookup for the first token, none for the next two (and none
 * for GET session).  Returns { cookie, sid }.
 */
async function cachedInA(user, { alsoB = false } = {}) {
  const cookie = await loginOk('A', user);
  const n0 = await lookups();
  const { sid } = await tokenOk('A', cookie, 'first');
  assert.equal(await lookups(), n0 + 1, 'the first token looks the session up');
  await tokenOk('A', cookie, 'second');
  await tokenOk('A', cookie, 'third');
  assert.equal(await lookups(), n0 + 1, 'the next ones are answered from memory');
  if (alsoB) {
    await tokenOk('B', cookie, 'B first');
    await tokenOk('B', cookie, 'B second');
    assert.equal(await lookups(), n0 + 2, 'B looked it up once too');
  }
  return { cookie, sid };
}

/** Byte offset of a service's log now (to wait for lines after it). */
const logMark = (name) => svc[name].token.svc.logSize();

/** Wait (at most NOTIFY_WAIT_MS) for `name` to log that it dropped `sid`. */
function revokeHandled(name, sid, from) {
  return svc[name].token.svc.waitForLog(`session cache: revoke sid=${sid}:`,
    { from, timeoutMs: NOTIFY_WAIT_MS });
}

before(async () => {
  if (skip)
    return;
  pg = await startPostgres({ name: 'token-cache-pg' });
  await pg.installSchema();
  // Count the calls of parley.session_lookup without changing what it says.
  await sql(`CREATE ROLE ${ROLE} LOGIN SUPERUSER;
    CREATE SCHEMA cache_probe;
    CREATE SEQUENCE cache_probe.lookup_calls;
    ALTER FUNCTION parley.session_lookup(bytea) RENAME TO session_lookup_counted;
    CREATE FUNCTION parley.session_lookup(p_token_hash bytea)
    RETURNS TABLE (session_id text, user_id bigint, user_name text, expires_at timestamptz)
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM nextval('cache_probe.lookup_calls');
        RETURN QUERY SELECT * FROM parley.session_lookup_counted(p_token_hash);
    END
    $$;`);
  for (const u of USERS)
    id[u] = Number(await sql(`SELECT parley.create_user('${u}', '${PW}')`));
  dir = webDir('token-cache');
  key = writeKey(dir, 'HS256');
  await Promise.all([
    startPair('A', {}),
    startPair('B', {}),
    startPair('C', { PARLEY_SESSION_CACHE: '0' }),
  ]);
  // Each cached service logs when its LISTEN connection is up.
  for (const n of ['A', 'B'])
    await svc[n].token.svc.waitForLog('session cache: listening on parley_session', { timeoutMs: 10000 });
});

after(async () => {
  for (const s of Object.values(svc)) {
    if (s.nginx)
      await s.nginx.stop();
    if (s.token) {
      await s.token.stop();
      s.token.checkLogs();
    }
  }
  if (pg)
    await pg.stop();
});

// ---------------------------------------------------------------- what is cached

test('the cache answers a session from memory; PARLEY_SESSION_CACHE=0 asks the database every time', { skip }, async () => {
  const { cookie } = await cachedInA('ann');
  let n = await lookups();
  const s = await getSession('A', cookie);
  assert.equal(s.status, 200, s.text);
  assert.deepEqual(s.json.user, { id: id.ann, name: 'ann' }, 'GET session from memory');
  assert.equal(await lookups(), n, 'GET session used the cached entry');

  for (let i = 0; i < 3; i++)
    await tokenOk('C', cookie, `C #${i}`);
  assert.equal(await lookups(), n + 3, 'with the cache off, every token is a lookup');
  n = await lookups();
  assert.equal((await getSession('C', cookie)).status, 200);
  assert.equal(await lookups(), n + 1, 'and so is GET session');
  assert.match(svc.C.token.logText(), /session cache off/, 'C says its cache is off');
  assert.doesNotMatch(svc.C.token.logText(), /LISTEN/, 'and holds no LISTEN connection');
});

test('"no session" is never cached: a cookie works as soon as its session row exists', { skip }, async () => {
  const value = crypto.randomBytes(32).toString('base64url');
  const cookie = `parley_session=${value}`;
  const n = await lookups();
  assertInvalid(await post('A', 'token', cookie), 'unknown cookie');
  assertInvalid(await post('A', 'token', cookie), 'unknown cookie again');
  assert.equal(await lookups(), n + 2, 'each unknown cookie was looked up');
  await sql(`INSERT INTO parley.sessions (user_id, token_hash, expires_at)
             VALUES (${id.ben}, sha256(convert_to('${value}', 'UTF8')), now() + interval '1 hour')`);
  const r = await post('A', 'token', cookie);
  assert.equal(r.status, 200, `the new row is found at once: ${r.text}`);
  // And a fresh login through another process works at once through A.
  const c = await loginOk('B', 'ben');
  await tokenOk('A', c, 'fresh login');
});

test('an expired session is never answered from memory', { skip }, async () => {
  const cookie = await loginOk('A', 'cat');
  // Make it end in a few seconds (a change nothing notifies), then cache it.
  const exp = Number(await sql(`UPDATE parley.sessions SET expires_at = now() + interval '3 seconds'
      WHERE user_id = ${id.cat} AND revoked_at IS NULL
      RETURNING extract(epoch FROM expires_at)`));
  const n = await lookups();
  await tokenOk('A', cookie, 'before expiry');
  await tokenOk('A', cookie, 'before expiry, again');
  assert.equal(await lookups(), n + 1, 'answered from memory before it expires');
  await waitFor(() => Date.now() / 1000 >= exp + 0.05,
    { timeoutMs: 10000, intervalMs: 20, what: 'the session to expire' });
  assertInvalid(await post('A', 'token', cookie), 'token after expires_at');
  assertInvalid(await getSession('A', cookie), 'GET session after expires_at');
});

// ---------------------------------------------------------------- revocations

test('parley.revoke_sessions(): 401 on the next token request in every process', { skip }, async () => {
  const { cookie, sid } = await cachedInA('dan', { alsoB: true });
  const other = await cachedInA('eve');
  const mA = logMark('A');
  const mB = logMark('B');
  assert.equal(await sql(`SELECT parley.revoke_sessions(${id.dan})`), '1');
  await revokeHandled('A', sid, mA);
  await revokeHandled('B', sid, mB);
  assertInvalid(await post('A', 'token', cookie), 'A after revoke_sessions');
  assertInvalid(await post('B', 'token', cookie), 'B after revoke_sessions');
  assertInvalid(await getSession('A', cookie), 'GET session after revoke_sessions');
  const n = await lookups();
  await tokenOk('A', other.cookie, 'another user');
  assert.equal(await lookups(), n, "another user's session stays cached");
});

test('DELETE FROM parley.sessions: 401 on the next token request', { skip }, async () => {
  const { cookie, sid } = await cachedInA('fay');
  const m = logMark('A');
  await sql(`DELETE FROM parley.sessions WHERE id = ${sid}`);
  await revokeHandled('A', sid, m);
  assertInvalid(await post('A', 'token', cookie), 'after DELETE');
});

test('logout through another parley-token process: 401 on the next token request', { skip }, async () => {
  const { cookie, sid } = await cachedInA('gus');
  const m = logMark('A');
  const r = await post('B', 'logout', cookie);
  assert.equal(r.status, 204, r.text);
  await revokeHandled('A', sid, m);
  assertInvalid(await post('A', 'token', cookie), 'A after logout through B');

  // Through the same process: refused at once, no notification awaited.
  const again = await cachedInA('gus');
  assert.equal((await post('A', 'logout', again.cookie)).status, 204);
  assertInvalid(await post('A', 'token', again.cookie), 'A right after logout through A');
});

// ---------------------------------------------------------------- the database away

test('PostgreSQL restarting: the cache is bypassed, and a session revoked meanwhile is refused', { skip }, async () => {
  const gone = await cachedInA('hal');
  const kept = await cachedInA('ann');
  // Keep A from logging in again until we say so, so that the revocation
  // below happens while it is not listening (its notification is lost).
  await sql(`ALTER ROLE ${ROLE} NOLOGIN`);
  const relisten = {};
  try {
    const lost = logMark('A');
    await pg.stop({ mode: 'fast' });
    await svc.A.token.svc.waitForLog('session cache: LISTEN connection lost',
      { from: lost, timeoutMs: NOTIFY_WAIT_MS });
    const down = await post('A', 'token', kept.cookie);
    assert.equal(down.status, 503, `database down: 503, not an answer from memory: ${down.status} ${down.text}`);
    assert.equal(down.json && down.json.error, 'unavailable');
    await pg.start();
    const down2 = await post('A', 'token', kept.cookie);
    assert.equal(down2.status, 503, `database back but A cannot log in: still 503: ${down2.text}`);
    assert.equal(await sql(`SELECT parley.revoke_sessions(${id.hal})`), '1', 'revoked during the outage');
    relisten.A = logMark('A');
    relisten.B = logMark('B');
  } finally {
    if (!pg.running())
      await pg.start();
    await sql(`ALTER ROLE ${ROLE} LOGIN`);
  }
  // Both cached services listen again (their back-off is at most 5 s).
  for (const n of ['A', 'B'])
    await svc[n].token.svc.waitForLog('session cache: listening on parley_session',
      { from: relisten[n], timeoutMs: 15000 });
  // The workers' own connections come back after their back-off (<= 5 s):
  // until then 503; the first real answer must be the database's 401.
  let r;
  await waitFor(async () => {
    r = await post('A', 'token', gone.cookie);
    assert.ok(r.status === 503 || r.status === 401, `only 503 or 401 for the revoked session: ${r.status} ${r.text}`);
    return r.status !== 503;
  }, { timeoutMs: 20000, intervalMs: 100, what: 'A to answer from the database again' });
  assertInvalid(r, 'session revoked while A was not listening');
  // The session that was not revoked works, and was looked up again: the
  // cache started empty.
  const n = await lookups();
  await waitFor(async () => (await post('A', 'token', kept.cookie)).status === 200,
    { timeoutMs: 20000, intervalMs: 100, what: 'the other session to work again' });
  assert.ok(await lookups() > n, 'it came from the database, not from before the outage');
});

test('TRUNCATE parley.sessions empties every cache', { skip }, async () => {
  const { cookie } = await cachedInA('eve', { alsoB: true });
  const mA = logMark('A');
  const mB = logMark('B');
  await sql('TRUNCATE parley.sessions');
  await svc.A.token.svc.waitForLog('session cache: truncate', { from: mA, timeoutMs: NOTIFY_WAIT_MS });
  await svc.B.token.svc.waitForLog('session cache: truncate', { from: mB, timeoutMs: NOTIFY_WAIT_MS });
  assertInvalid(await post('A', 'token', cookie), 'A after TRUNCATE');
  assertInvalid(await post('B', 'token', cookie), 'B after TRUNCATE');
});

test('at exit each cached process reports its hits and misses', { skip }, async () => {
  const st = await svc.B.token.stop();
  assert.equal(st.code, 0, 'B exits 0 on SIGTERM');
  const m = /session cache: (\d+) hits, (\d+) misses/.exec(svc.B.token.logText());
  assert.ok(m, 'the counters are logged');
  // B answered two tokens from memory (one per alsoB) and looked up four
  // times (the first of each, and the one refused after each revocation).
  assert.ok(Number(m[1]) >= 2 && Number(m[2]) >= 4, `hits ${m[1]}, misses ${m[2]}`);
  svc.B.token.checkLogs();
});
