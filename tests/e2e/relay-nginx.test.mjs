// tests/e2e/relay-nginx.test.mjs: parley-relay behind nginx as deployed
// (contrib/nginx/parley.conf, rendered by tests/lib/web.mjs with only the
// addresses replaced), with parley-token behind the same nginx: login and
// token, then the WebSocket; the handshake refusals (401, 403, 400, 429 per
// client address from X-Forwarded-For) with their JSON bodies; the Origin
// check against the Host header nginx passes on; messages between users;
// close codes reaching the client through the proxy; heartbeats keeping an
// idle proxied connection open past nginx's timeouts (and, as the control,
// an nginx whose timeout is shorter than the heartbeat cutting it); 503
// JSON when no relay is up; 1001 on SIGTERM.
//
// Each test connects from its own loopback address (127.0.0.N), so the
// per-address connection limit of one never touches another.

import { test, before, after } from 'node:test';
import {
  assert, skipReason as relaySkip, setupDatabase, makeUser, newSession, mint, startRelay,
  Client, waitFor,
} from './relay-helpers.mjs';
import {
  skipReason as webSkip, startToken, startNginx, tokenSettings, writeKey, webDir, login,
  request, cookiePair,
} from '../lib/web.mjs';
import { freePort } from '../lib/proc.mjs';

const skip = relaySkip() || webSkip({ nginx: true }) || false;
let pg;
let key;
let relay;
let token;
let nginx;                 // as shipped
let nginxIdle;             // proxy timeouts 2.5 s, above the 1 s heartbeat
let nginxTight;            // proxy timeouts 300 ms, below it (the control)
let nginxDead;             // no relay behind it

const RELAY_ENV = {
  WS_HEARTBEAT_INTERVAL: '1s',
  WS_CONNECTION_TIMEOUT: '3s',
  PARLEY_AUTH_TIMEOUT: '1s',
  PARLEY_CONN_RATE: '3/s',            // burst 6 per client address
};

let nextAddr = 10;
/** A loopback source address no other test uses. */
const addr = () => `127.0.0.${nextAddr++}`;
const wsUrl = (n) => `${n.url.replace(/^http:/, 'ws:')}/ws`;
const now = () => Math.floor(Date.now() / 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  if (skip)
    return;
  pg = await setupDatabase('relay-nginx-pg');
  const dir = webDir('relay-nginx');
  key = writeKey(dir, 'HS256');
  relay = await startRelay({ pg, key, name: 'relay-ngx', env: RELAY_ENV });
  token = await startToken({
    name: 'token-ngx', dir,
    settings: tokenSettings(pg, key, { PARLEY_COOKIE_SECURE: '0' }),
  });
  const upstream = `127.0.0.1:${relay.port}`;
  const timeouts = (t) => [['proxy_read_timeout 1h;', `proxy_read_timeout ${t};`],
    ['proxy_send_timeout 1h;', `proxy_send_timeout ${t};`]];
  [nginx, nginxIdle, nginxTight, nginxDead] = await Promise.all([
    startNginx({ name: 'nginx-ngx', token, relay: upstream }),
    startNginx({ name: 'nginx-ngx-idle', token, relay: upstream, edits: timeouts('2500ms') }),
    startNginx({ name: 'nginx-ngx-tight', token, relay: upstream, edits: timeouts('300ms') }),
    startNginx({ name: 'nginx-ngx-dead', token, relay: `127.0.0.1:${await freePort()}` }),
  ]);
});

after(async () => {
  for (const n of [nginx, nginxIdle, nginxTight, nginxDead])
    if (n)
      await n.stop();
  if (token)
    await token.stop();
  if (relay)
    await relay.stop();
  if (pg)
    await pg.stop();
});

/** Connect through `n` (default: the shipped nginx) from a fresh address. */
async function through(u, { n = nginx, from = addr(), ...opts } = {}) {
  return Client.connect(wsUrl(n), await mint(key, u), { localAddress: from, ...opts });
}

/** A refused handshake through nginx: the error (status, headers, body). */
async function refused(protocols, { n = nginx, from = addr(), origin, headers } = {}) {
  const e = await Client.open(wsUrl(n), { protocols, origin, headers, localAddress: from }).then(
    (c) => { c.terminate(); return null; }, (err) => err);
  assert.ok(e, 'the handshake was accepted');
  assert.ok(e.status, `no HTTP status: ${e.message}`);
  return e;
}

function isJsonError(e, status, code) {
  assert.equal(e.status, status, e.text);
  assert.match(e.headers['content-type'], /^application\/json/);
  assert.equal(e.body.error, code, e.text);
  assert.equal(typeof e.body.message, 'string');
}

test('login and token from parley-token, then the WebSocket, all through nginx', { skip }, async () => {
  const name = `ngx${process.pid}`;
  const password = 'correct horse battery';
  const uid = Number(await pg.psql(`SELECT parley.create_user('${name}', '${password}')`));
  const { res, cookie } = await login(nginx.url, name, password);
  assert.equal(res.status, 200, res.text);
  const t = await request(`${nginx.url}/auth/token`, {
    method: 'POST', headers: { Cookie: cookiePair(cookie), Origin: nginx.url },
  });
  assert.equal(t.status, 200, t.text);
  const from = addr();
  const c = await Client.connect(wsUrl(nginx), t.json.token, { origin: nginx.url, localAddress: from });
  assert.equal(c.ws.protocol, 'parley.v1');
  assert.deepEqual(c.welcome.user, { id: uid, name });
  assert.equal(c.welcome.token_expires_at, t.json.expires_at);
  assert.equal((await c.request({ type: 'ping', ref: 'p' })).type, 'pong');
  // The relay knows the client by the address nginx put in X-Forwarded-For.
  await waitFor(() => relay.logText().includes(`uid=${uid} ip=${from}: connected`),
    { what: 'the client address in the relay log' });
  // Logging out through nginx closes the socket with 4011.
  const out = await request(`${nginx.url}/auth/logout`, { method: 'POST', headers: { Cookie: cookiePair(cookie) } });
  assert.equal(out.status, 204, out.text);
  assert.equal((await c.whenClosed()).code, 4011);
});

test('handshake refusals come through nginx as the relay sent them: 401, 403, 400', { skip }, async () => {
  const u = await makeUser(pg, 'ngxref');
  const offer = (tok) => ['parley.v1', `parley.token.${tok}`];
  isJsonError(await refused(offer('not.a.jwt')), 401, 'invalid_token');
  isJsonError(await refused(offer(await mint(key, u, { exp: now() - 60, iat: now() - 400, nbf: now() - 400 }))),
    401, 'token_expired');
  const sid = await newSession(pg, u.id);
  await pg.psql(`SELECT parley.revoke_sessions(${u.id})`);
  isJsonError(await refused(offer(await mint(key, { ...u, sid }))), 401, 'session_revoked');
  isJsonError(await refused(offer(await mint(key, u)), { origin: 'https://evil.example' }), 403, 'forbidden_origin');
  isJsonError(await refused([`parley.token.${await mint(key, u)}`]), 400, 'bad_request');
});

test('the Origin check compares with the Host header nginx passes on', { skip }, async () => {
  const u = await makeUser(pg, 'ngxorg');
  // The page's origin is nginx's: accepted, though the relay listens elsewhere.
  const ok = await through(u, { origin: nginx.url });
  ok.close();
  // The relay's own address is not the page's origin behind the proxy.
  const offer = ['parley.v1', `parley.token.${await mint(key, u)}`];
  isJsonError(await refused(offer, { origin: `http://127.0.0.1:${relay.port}` }), 403, 'forbidden_origin');
  // A public name: Host as the browser sent it, default ports compared.
  // This nginx speaks plain http, which it tells the relay in
  // X-Forwarded-Proto: the page's origin is http://, and an https:// one
  // is refused, even when the client claims https itself.
  const host = { Host: 'chat.example.org' };
  const pub = await through(u, { origin: 'http://chat.example.org', headers: host });
  pub.close();
  isJsonError(await refused(offer, { origin: 'http://chat.example.org:8443', headers: host }), 403, 'forbidden_origin');
  isJsonError(await refused(offer, { origin: 'http://chat.example.org', headers: { Host: 'other.example.org' } }),
    403, 'forbidden_origin');
  isJsonError(await refused(offer, { origin: 'https://chat.example.org', headers: host }), 403, 'forbidden_origin');
  isJsonError(await refused(offer, { origin: 'https://chat.example.org', headers: { ...host, 'X-Forwarded-Proto': 'https' } }),
    403, 'forbidden_origin');
});

test('messages between two users through nginx: ack, delivery, group, history', { skip }, async () => {
  const a = await makeUser(pg, 'ngxa');
  const b = await makeUser(pg, 'ngxb');
  const ca = await through(a);
  const cb = await through(b);
  const ack = await ca.request({ type: 'private_message', to: b.id, body: 'via nginx ✓', client_id: 'n-1', ref: 'n1' });
  assert.deepEqual([ack.type, ack.ref, ack.seq], ['ack', 'n1', 1]);
  const m = await cb.next('private_message');
  assert.deepEqual([m.id, m.body, m.from.id], [ack.id, 'via nginx ✓', a.id]);
  const back = await cb.request({ type: 'private_message', to: a.id, body: 'and back', client_id: 'n-1' });
  assert.equal(back.seq, 2);
  assert.equal((await ca.next('private_message')).body, 'and back');
  const gid = Number(await pg.psql(`SELECT parley.create_group('ngx${process.pid}', 'public')`));
  assert.equal((await cb.request({ type: 'join_group', group: gid })).type, 'group_joined');
  assert.equal((await ca.request({ type: 'join_group', group: gid })).type, 'group_joined');
  const gack = await ca.request({ type: 'group_message', group: gid, body: 'to the group', client_id: 'n-g' });
  assert.equal((await cb.next('group_message')).id, gack.id);
  const h = await cb.request({ type: 'history', conversation: ack.conversation });
  assert.deepEqual(h.messages.map((x) => x.body), ['via nginx ✓', 'and back']);
  ca.close();
  cb.close();
});

test('close codes reach the client through nginx: 4011, 4009, 1009, 4000, 4001, 4002, 1008, 4029', { skip }, async () => {
  const u = await makeUser(pg, 'ngxclose');
  const v = await makeUser(pg, 'ngxclose');
  const from = addr();
  const viaFrame = () => Client.open(wsUrl(nginx), { protocols: ['parley.v1'], localAddress: from });

  const older = await through(u, { instance: 'tab-1', from });
  const newer = await through(u, { instance: 'tab-1', from });
  assert.equal((await older.whenClosed()).code, 4009);
  newer.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(70 * 1024) }));
  assert.equal((await newer.whenClosed()).code, 1009);

  const deaf = await through(u, { autoPong: false, from });
  assert.equal((await deaf.whenClosed({ timeoutMs: 8000 })).code, 4000);

  const bad = await viaFrame();
  bad.send({ type: 'auth', token: 'garbage' });
  assert.equal((await bad.whenClosed()).code, 4001);
  const silent = await viaFrame();
  assert.equal((await silent.whenClosed()).code, 4002);
  const early = await viaFrame();
  early.send({ type: 'ping' });
  assert.equal((await early.whenClosed()).code, 1008);

  const flood = await through(v, { from: addr() });
  for (let i = 0; i < 200; i++)
    flood.send({ type: 'ping' });
  assert.equal((await flood.whenClosed()).code, 4029);

  const revoked = await through(v, { from: addr() });
  await pg.psql(`DELETE FROM parley.sessions WHERE id = ${v.sid}`);
  assert.equal((await revoked.whenClosed()).code, 4011);
});

test('heartbeats keep an idle proxied connection open past nginx\'s timeouts', { skip }, async () => {
  const u = await makeUser(pg, 'ngxidle');
  // nginx here cuts a proxied connection after 2.5 s without traffic; the
  // relay pings every second (WS_HEARTBEAT_INTERVAL=1s) and the client's
  // automatic pongs answer.
  const c = await through(u, { n: nginxIdle });
  let pings = 0;
  c.ws.on('ping', () => pings++);
  await sleep(7000);
  assert.equal(c.closed, null, `closed: ${JSON.stringify(c.closed)}`);
  assert.ok(pings >= 5, `${pings} pings in 7 s`);
  assert.equal((await c.request({ type: 'ping' })).type, 'pong');
  c.close();
  // The control: an nginx whose timeout (300 ms) is below the heartbeat
  // interval cuts the same idle connection, without a close frame.
  const t0 = Date.now();
  const d = await through(u, { n: nginxTight });
  const closed = await d.whenClosed({ timeoutMs: 5000 });
  assert.equal(closed.code, 1006);
  assert.ok(Date.now() - t0 < 3000, `cut after ${Date.now() - t0} ms`);
});

test('the per-address connection limit through the proxy: 429 past the burst, others unaffected', { skip }, async () => {
  const u = await makeUser(pg, 'ngxrate');
  const tok = await mint(key, u);
  const from = addr();
  const open = (src) => Client.open(wsUrl(nginx), { protocols: ['parley.v1', `parley.token.${tok}`], localAddress: src })
    .then((c) => { c.close(); return 101; }, (e) => e);
  const got = [];
  for (let i = 0; i < 8; i++)
    got.push(await open(from));
  const statuses = got.map((g) => (g === 101 ? 101 : g.status));
  // PARLEY_CONN_RATE=3/s: a burst of 6 (a few more may refill meanwhile).
  assert.deepEqual(statuses.slice(0, 6), Array(6).fill(101));
  const limited = got.find((g) => g !== 101);
  assert.ok(limited, `no 429 in ${statuses}`);
  isJsonError(limited, 429, 'rate_limited');
  assert.equal(limited.headers['retry-after'], '1');
  // Another client address behind the same proxy has its own budget.
  assert.equal(await open(addr()), 101);
});

test('no relay reachable behind nginx: 503 unavailable as JSON with Retry-After', { skip }, async () => {
  const u = await makeUser(pg, 'ngxdead');
  const e = await refused(['parley.v1', `parley.token.${await mint(key, u)}`], { n: nginxDead });
  isJsonError(e, 503, 'unavailable');
  assert.equal(e.headers['retry-after'], '5');
});

test('SIGTERM: 1001 reaches the client through nginx', { skip }, async () => {
  const u = await makeUser(pg, 'ngxterm');
  const c = await through(u);
  const st = await relay.stop({ signal: 'SIGTERM', timeoutMs: 8000 });
  relay = null;
  assert.equal(st.code, 0);
  assert.equal((await c.whenClosed()).code, 1001);
});
