// tests/e2e/relay-auth.test.mjs: who gets a WebSocket from parley-relay,
// and as whom (PROTOCOL.md §2 "Authenticate", "Details", "Close codes").
//
// The handshake way (token as a subprotocol) is refused before the upgrade
// with 401 invalid_token / token_expired / session_revoked, 403
// forbidden_origin or 400 bad_request and a JSON body; the first-frame way
// closes with 4001, 4002, 4010, 4011 or 1008.  Then what follows from an
// identity: the welcome event, the per-user cap and client_instance
// replacement (4009), live session revocation (4011), refresh (a refused
// one keeps the old token), token_expiring about a minute before exp, 4010
// when a token runs out, 4011 when the session expires, every JWT check
// (alg, claim types, size), and the PARLEY_ALLOWED_ORIGINS list.

import { test, before, after } from 'node:test';
import crypto from 'node:crypto';
import {
  assert, skipReason, setupDatabase, writeHmacKey, makeUser, newSession, mint,
  startRelay, Client, tmpDir,
} from './relay-helpers.mjs';

const skip = skipReason() || false;
let pg;
let key;
let relay;
let dir;

before(async () => {
  if (skip)
    return;
  dir = tmpDir('relay-auth');
  pg = await setupDatabase('relay-auth-pg');
  key = writeHmacKey(dir);
  relay = await startRelay({
    pg, key, name: 'relay-auth',
    env: { PARLEY_AUTH_TIMEOUT: '1s', PARLEY_JWT_LEEWAY: '0', PARLEY_MAX_CONN_PER_USER: '2' },
  });
});

after(async () => {
  if (relay)
    await relay.stop();
  if (pg)
    await pg.stop();
});

const now = () => Math.floor(Date.now() / 1000);

async function refused(token, opts = {}) {
  const protocols = opts.protocols || ['parley.v1', `parley.token.${token}`];
  const e = await Client.open(relay.url, { protocols, origin: opts.origin }).then(
    (c) => { c.terminate(); return null; }, (err) => err);
  assert.ok(e, 'the handshake was accepted');
  assert.ok(e.status, `no HTTP status: ${e.message}`);
  return e;
}

test('a valid token in the handshake gets parley.v1 and a welcome', { skip }, async () => {
  const u = await makeUser(pg, 'wel');
  const exp = now() + 300;
  const before = Date.now();
  const c = await Client.connect(relay.url, await mint(key, u, { exp }));
  assert.equal(c.ws.protocol, 'parley.v1');
  const w = c.welcome;
  assert.deepEqual(w.user, { id: u.id, name: u.name });
  assert.ok(Number.isInteger(w.connection_id) && w.connection_id > 0);
  assert.equal(w.heartbeat_interval, 30);
  assert.equal(w.token_expires_at, exp);
  assert.match(w.server_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(w.server_time) - before) < 5000);
  const c2 = await Client.connect(relay.url, await mint(key, u));
  assert.notEqual(c2.welcome.connection_id, w.connection_id);
  c.close();
  c2.close();
});

test('handshake refusals: 401 invalid_token, token_expired, session_revoked; 400; 403', { skip }, async () => {
  const u = await makeUser(pg, 'ref');
  const check = (e, status, code) => {
    assert.equal(e.status, status, e.text);
    assert.match(e.headers['content-type'], /^application\/json/);
    assert.equal(e.body.error, code);
    assert.equal(typeof e.body.message, 'string');
  };
  check(await refused('not.a.jwt'), 401, 'invalid_token');
  check(await refused(await mint(key, u, { secret: Buffer.from('x'.repeat(64)) })), 401, 'invalid_token');
  check(await refused(await mint(key, u, { claims: { iss: 'other' } })), 401, 'invalid_token');
  check(await refused(await mint(key, u, { claims: { aud: 'other' } })), 401, 'invalid_token');
  check(await refused(await mint(key, u, { nbf: now() + 600 })), 401, 'invalid_token');
  check(await refused(await mint(key, u, { exp: now() - 60, iat: now() - 400, nbf: now() - 400 })), 401, 'token_expired');
  // A token for a session that is gone: revoked, or of someone else.
  const sid = await newSession(pg, u.id);
  await pg.psql(`UPDATE parley.sessions SET revoked_at = now() WHERE id = ${sid}`);
  check(await refused(await mint(key, { ...u, sid })), 401, 'session_revoked');
  check(await refused(await mint(key, { ...u, sid: '999999' })), 401, 'session_revoked');
  // A token without parley.v1 beside it.
  check(await refused(null, { protocols: [`parley.token.${await mint(key, u)}`] }), 400, 'bad_request');
  // Origin: same host passes, another is refused before anything else.
  check(await refused(await mint(key, u), { origin: 'http://evil.example' }), 403, 'forbidden_origin');
  const ok = await Client.connect(relay.url, await mint(key, u), { origin: `http://127.0.0.1:${relay.port}` });
  ok.close();
});

test('first-frame auth: welcome, then 4001, 4010, 4011, 4002 and 1008', { skip }, async () => {
  const u = await makeUser(pg, 'ff');
  const open = () => Client.open(relay.url, { protocols: ['parley.v1'] });

  const c = await open();
  c.send({ type: 'auth', token: await mint(key, u), client_instance: 'tab-1' });
  const w = await c.next('welcome');
  assert.equal(w.user.id, u.id);
  const pong = await c.request({ type: 'ping' });
  assert.equal(pong.type, 'pong');
  c.close();

  // No subprotocol at all works the same way.
  const c0 = await Client.open(relay.url);
  c0.send({ type: 'auth', token: await mint(key, u) });
  await c0.next('welcome');
  c0.close();

  const bad = await open();
  bad.send({ type: 'auth', token: 'garbage' });
  assert.equal((await bad.whenClosed()).code, 4001);

  const expired = await open();
  expired.send({ type: 'auth', token: await mint(key, u, { exp: now() - 10, iat: now() - 100, nbf: now() - 100 }) });
  assert.equal((await expired.whenClosed()).code, 4010);

  const sid = await newSession(pg, u.id);
  await pg.psql(`DELETE FROM parley.sessions WHERE id = ${sid}`);
  const revoked = await open();
  revoked.send({ type: 'auth', token: await mint(key, { ...u, sid }) });
  assert.equal((await revoked.whenClosed()).code, 4011);

  const silent = await open();
  const t0 = Date.now();
  const closed = await silent.whenClosed();
  assert.equal(closed.code, 4002);
  assert.ok(Date.now() - t0 < 4000, 'auth timeout (1s) took too long');

  const early = await open();
  early.send({ type: 'ping', ref: 'x' });
  assert.equal((await early.whenClosed()).code, 1008);
});

test('an auth frame after handshake authentication is a bad_request', { skip }, async () => {
  const u = await makeUser(pg, 'again');
  const c = await Client.connect(relay.url, await mint(key, u));
  const e = await c.request({ type: 'auth', token: await mint(key, u), ref: 'a1' });
  assert.deepEqual([e.type, e.code, e.ref], ['error', 'bad_request', 'a1']);
  c.close();
});

test('the same client_instance replaces the older connection (4009); the cap evicts the oldest', { skip }, async () => {
  const u = await makeUser(pg, 'inst');
  const a = await Client.connect(relay.url, await mint(key, u), { instance: 'tab-A' });
  const b = await Client.connect(relay.url, await mint(key, u), { instance: 'tab-A' });
  assert.equal((await a.whenClosed()).code, 4009);
  assert.equal((await b.request({ type: 'ping' })).type, 'pong');
  // PARLEY_MAX_CONN_PER_USER=2 here: the third connection evicts the oldest.
  const c = await Client.connect(relay.url, await mint(key, u), { instance: 'tab-C' });
  const d = await Client.connect(relay.url, await mint(key, u), { instance: 'tab-D' });
  assert.equal((await b.whenClosed()).code, 4009);
  assert.equal(c.closed, null);
  assert.equal((await d.request({ type: 'ping' })).type, 'pong');
  c.close();
  d.close();
});

test('revoking a session in SQL closes its sockets with 4011, others stay', { skip }, async () => {
  const u = await makeUser(pg, 'rev');
  const other = await makeUser(pg, 'keep');
  const c = await Client.connect(relay.url, await mint(key, u));
  const k = await Client.connect(relay.url, await mint(key, other));
  assert.equal(Number(await pg.psql(`SELECT parley.revoke_sessions(${u.id})`)), 1);
  assert.equal((await c.whenClosed()).code, 4011);
  assert.equal((await k.request({ type: 'ping' })).type, 'pong');
  // Deleting the session row has the same effect.
  const k2 = await Client.connect(relay.url, await mint(key, other));
  await pg.psql(`DELETE FROM parley.sessions WHERE id = ${other.sid}`);
  assert.equal((await k.whenClosed()).code, 4011);
  assert.equal((await k2.whenClosed()).code, 4011);
});

test('refresh: same user accepted, another user forbidden, garbage invalid_token', { skip }, async () => {
  const u = await makeUser(pg, 'rf');
  const v = await makeUser(pg, 'rf');
  const c = await Client.connect(relay.url, await mint(key, u, { exp: now() + 100 }));
  const exp = now() + 900;
  const r = await c.request({ type: 'refresh', token: await mint(key, u, { exp }), ref: 'r1' });
  assert.deepEqual(r, { type: 'refreshed', token_expires_at: exp, ref: 'r1' });
  const f = await c.request({ type: 'refresh', token: await mint(key, v), ref: 'r2' });
  assert.deepEqual([f.type, f.code, f.ref], ['error', 'forbidden', 'r2']);
  const g = await c.request({ type: 'refresh', token: 'nope', ref: 'r3' });
  assert.deepEqual([g.type, g.code, g.ref], ['error', 'invalid_token', 'r3']);
  c.close();
});

test('token_expiring before exp, then 4010 unless refreshed', { skip }, async () => {
  const u = await makeUser(pg, 'exp');
  const exp = now() + 3;
  const c = await Client.connect(relay.url, await mint(key, u, { exp }));
  const warn = await c.next('token_expiring', { timeoutMs: 3000 });
  assert.equal(warn.expires_at, exp);
  const closed = await c.whenClosed({ timeoutMs: 8000 });
  assert.equal(closed.code, 4010);
  assert.ok(Date.now() / 1000 >= exp - 1);

  // Refreshed in time: it stays open past the first exp.
  const exp2 = now() + 3;
  const d = await Client.connect(relay.url, await mint(key, u, { exp: exp2 }));
  await d.next('token_expiring', { timeoutMs: 3000 });
  const r = await d.request({ type: 'refresh', token: await mint(key, u, { exp: now() + 600 }) });
  assert.equal(r.type, 'refreshed');
  await new Promise((res) => setTimeout(res, (exp2 - now() + 2) * 1000));
  assert.equal(d.closed, null);
  assert.equal((await d.request({ type: 'ping' })).type, 'pong');
  d.close();
});

/** A JWT with any header and claims, signed HS256 with `secret` (or not at all). */
function rawJwt(header, claims, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64(header)}.${b64(claims)}`;
  if (secret === null)
    return `${head}.`;
  const alg = header.alg === 'HS512' ? 'sha512' : 'sha256';
  return `${head}.${crypto.createHmac(alg, secret).update(head).digest('base64url')}`;
}

test('every JWT check: alg none or another alg, claim types, missing claims, oversized tokens', { skip }, async () => {
  const u = await makeUser(pg, 'jwt');
  const claims = () => ({
    iss: 'parley', aud: 'parley-relay', sub: String(u.id), name: u.name, sid: String(u.sid),
    iat: now() - 1, nbf: now() - 1, exp: now() + 300, jti: crypto.randomBytes(8).toString('hex'),
  });
  const hs = { alg: 'HS256', typ: 'JWT' };
  // The control: the same construction with nothing wrong is accepted.
  const good = await Client.connect(relay.url, rawJwt(hs, claims(), key.secret));
  assert.equal(good.welcome.user.id, u.id);
  good.close();
  const bad = [
    ['alg none', rawJwt({ alg: 'none', typ: 'JWT' }, claims(), null)],
    ['alg none, signed anyway', rawJwt({ alg: 'none', typ: 'JWT' }, claims(), key.secret)],
    ['HS512 with the right secret', rawJwt({ alg: 'HS512', typ: 'JWT' }, claims(), key.secret)],
    ['sub a number', rawJwt(hs, { ...claims(), sub: u.id }, key.secret)],
    ['sub another user', rawJwt(hs, { ...claims(), sub: String(u.id + 1000) }, key.secret)],
    ['exp a string', rawJwt(hs, { ...claims(), exp: String(now() + 300) }, key.secret)],
    ['no exp', rawJwt(hs, (({ exp, ...c }) => c)(claims()), key.secret)],
    ['no sid', rawJwt(hs, (({ sid, ...c }) => c)(claims()), key.secret)],
    ['aud a list without ours', rawJwt(hs, { ...claims(), aud: ['other'] }, key.secret)],
    ['over 8 KiB', rawJwt(hs, { ...claims(), pad: 'p'.repeat(9000) }, key.secret)],
  ];
  for (const [what, tok] of bad) {
    const e = await refused(tok);
    assert.equal(e.status, 401, `${what}: ${e.text}`);
    assert.equal(e.body.error, 'invalid_token', what);
  }
  // In an auth frame as well.
  const c = await Client.open(relay.url, { protocols: ['parley.v1'] });
  c.send({ type: 'auth', token: bad[0][1] });
  assert.equal((await c.whenClosed()).code, 4001);
  // A 96 KiB token (the size that would overflow a 100 KiB worker stack in
  // a recursive parser) is refused before the upgrade, and the relay lives.
  const huge = rawJwt(hs, { ...claims(), pad: 'p'.repeat(96 * 1024) }, key.secret);
  const h = await Client.open(relay.url, { protocols: ['parley.v1', `parley.token.${huge}`] }).then(
    (x) => { x.terminate(); return null; }, (err) => err);
  assert.ok(h, 'a 96 KiB token was accepted');
  const ok = await Client.connect(relay.url, await mint(key, u));
  assert.equal((await ok.request({ type: 'ping' })).type, 'pong');
  ok.close();
});

test('token_expiring comes about a minute before exp; a refused refresh keeps the old token', { skip }, async () => {
  const u = await makeUser(pg, 'texp');
  const v = await makeUser(pg, 'texp');
  const exp = now() + 65;
  const t0 = Date.now();
  const c = await Client.connect(relay.url, await mint(key, u, { exp }));
  // Refused refreshes: another user's token (forbidden), garbage, expired.
  const f = await c.request({ type: 'refresh', token: await mint(key, v, { exp: now() + 900 }) });
  assert.deepEqual([f.type, f.code], ['error', 'forbidden']);
  const g = await c.request({ type: 'refresh', token: await mint(key, u, { exp: now() - 10, iat: now() - 100, nbf: now() - 100 }) });
  assert.deepEqual([g.type, g.code], ['error', 'invalid_token']);
  await c.none('token_expiring', 2500);
  const warn = await c.next('token_expiring', { timeoutMs: 8000 });
  const at = (Date.now() - t0) / 1000;
  // exp - 60 s, give or take the timer's tick and a second of rounding.
  assert.equal(warn.expires_at, exp);
  assert.ok(at >= 3.5 && at <= 7, `token_expiring after ${at} s, exp in 65 s`);
  c.close();
});

test('a session that expires while its socket is open closes it with 4011', { skip }, async () => {
  const u = await makeUser(pg, 'sexp');
  const sid = await newSession(pg, u.id, '3 seconds');
  const t0 = Date.now();
  const c = await Client.connect(relay.url, await mint(key, { ...u, sid }));
  const closed = await c.whenClosed({ timeoutMs: 10000 });
  assert.equal(closed.code, 4011);
  const took = Date.now() - t0;
  assert.ok(took >= 1500 && took < 6000, `closed after ${took} ms`);
});

test('PARLEY_ALLOWED_ORIGINS: listed origins only (and no Origin at all)', { skip }, async () => {
  const r = await startRelay({ pg, key, name: 'relay-auth-origins',
    env: { PARLEY_ALLOWED_ORIGINS: 'https://app.example.org, http://localhost:3000' } });
  try {
    const u = await makeUser(pg, 'orig');
    const offer = async () => ['parley.v1', `parley.token.${await mint(key, u)}`];
    for (const origin of ['https://app.example.org', 'HTTPS://APP.example.org', 'http://localhost:3000', undefined]) {
      const c = await Client.open(r.url, { protocols: await offer(), origin });
      await c.next('welcome');
      c.close();
    }
    // Not listed, including the relay's own host (the list replaces same-host).
    for (const origin of ['https://evil.example', 'http://app.example.org', 'https://app.example.org:8443',
      `http://127.0.0.1:${r.port}`, 'null']) {
      const e = await Client.open(r.url, { protocols: await offer(), origin }).then(
        (c) => { c.terminate(); return null; }, (err) => err);
      assert.ok(e, `${origin} was accepted`);
      assert.deepEqual([e.status, e.body.error], [403, 'forbidden_origin'], origin);
    }
  } finally {
    await r.stop();
  }
});
