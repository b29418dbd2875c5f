// tests/e2e/log-hygiene.test.mjs: no secret reaches any log.
//
// Every component runs at its most talkative Parley log level (debug) with
// the deployed configurations: PostgreSQL (connections logged, errors with
// their statements, the PostgreSQL defaults otherwise), parley-token as its
// own FastCGI server behind nginx, parley-token under Apache mod_fcgid
// (its stderr goes to Apache's error log), and parley-relay behind nginx's
// /ws.  The flows use distinctive secrets: a password and a wrong one
// (JSON and form logins, through nginx and Apache), the session cookies,
// their SHA-256, the relay tokens (handshake, first-frame auth, refresh, a
// tampered one, an expired one) and message bodies (delivered, refused as
// forbidden, too large, not JSON, not UTF-8).  Then every log file of every
// component started here is read, and none may contain any of them, in
// plain, URL-encoded, JSON-escaped or hex form (parley-token(8) and
// parley-relay(8), SECURITY CONSIDERATIONS; STYLE.md).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { wsConnect, OP } from '../lib/wsraw.mjs';
import {
  webDir, writeKey, tokenSettings, startToken, startNginx, startApache, haveApache,
  request, login, cookiePair, skipReason as webSkip,
} from '../lib/web.mjs';
import {
  skipReason, setupDatabase, makeUser, mint, startRelay,
} from './relay-helpers.mjs';

const skip = skipReason() || webSkip({ nginx: true }) || false;

const tag = crypto.randomBytes(6).toString('hex');
const secrets = {
  password: `Hy9iene-pass-${tag}-ß`,
  wrongPassword: `Wr0ng-pass-${tag}`,
  body: `body-marker-${tag}`,
  forbiddenBody: `forbidden-marker-${tag}`,
  hugeBody: `huge-marker-${tag}`,
  badJsonBody: `notjson-marker-${tag}`,
};
const found = {};              // secret name -> value, filled as the flows run

let pg;
let dir;
let key;
let token;
let nginx;
let apache;
let relay;
let bob;
const logs = [];               // { name, file }

before(async () => {
  if (skip)
    return;
  dir = webDir('log-hygiene');
  pg = await setupDatabase('log-hygiene-pg');
  // PostgreSQL logs connections too; errors are logged with their statement.
  key = writeKey(dir, 'HS256');
  const settings = tokenSettings(pg, key, { PARLEY_LOG_LEVEL: 'debug', PARLEY_COOKIE_SECURE: '0' });
  relay = await startRelay({ pg, key, name: 'hygiene-relay', env: { PARLEY_LOG_LEVEL: 'debug' } });
  token = await startToken({ name: 'hygiene-token', dir, settings });
  nginx = await startNginx({ name: 'hygiene-nginx', token, relay: `127.0.0.1:${relay.port}` });
  if (haveApache)
    apache = await startApache({ name: 'hygiene-apache', mode: 'fcgid', fileSettings: settings, envSettings: { PARLEY_LOG_LEVEL: 'debug' } });
  await pg.psql(`SELECT parley.create_user('hygiene', '${secrets.password.replace(/'/g, "''")}')`);
  bob = await makeUser(pg, 'hbob');
  logs.push({ name: 'postgres', file: pg.log }, { name: 'parley-token', file: token.log },
    { name: 'parley-relay', file: relay.log }, { name: 'nginx error', file: nginx.errorLog },
    { name: 'nginx access', file: nginx.accessLog });
  if (apache)
    logs.push({ name: 'apache error', file: apache.errorLog }, { name: 'apache access', file: path.join(apache.prefix, 'logs', 'access.log') });
});

after(async () => {
  if (nginx)
    await nginx.stop();
  if (apache)
    await apache.stop();
  if (token)
    await token.stop();
  if (relay)
    await relay.stop();
  if (pg)
    await pg.stop();
});

const sha256hex = (s) => crypto.createHash('sha256').update(s).digest('hex');

test('login, token, session and logout through nginx and Apache with known secrets', { skip }, async () => {
  const bases = [['nginx', nginx.url], ...(apache ? [['apache', apache.url]] : [])];
  for (const [via, base] of bases) {
    const ok = await login(base, 'hygiene', secrets.password);
    assert.equal(ok.res.status, 200, `${via}: ${ok.res.text}`);
    found[`cookie (${via}, JSON login)`] = ok.value;
    const form = await login(base, 'hygiene', secrets.password, { form: true });
    assert.equal(form.res.status, 200, `${via} form: ${form.res.text}`);
    found[`cookie (${via}, form login)`] = form.value;
    const bad = await login(base, 'hygiene', secrets.wrongPassword);
    assert.equal(bad.res.status, 401);
    const t = await request(`${base}/auth/token`, { method: 'POST', headers: { Cookie: cookiePair(ok.cookie) } });
    assert.equal(t.status, 200, t.text);
    found[`token (${via})`] = t.json.token;
    const s = await request(`${base}/auth/session`, { headers: { Cookie: cookiePair(form.cookie) } });
    assert.equal(s.status, 200);
    // A foreign Origin carrying a cookie, and a logout, then the dead cookie again.
    const csrf = await request(`${base}/auth/token`, { method: 'POST', headers: { Cookie: cookiePair(form.cookie), Origin: 'https://evil.example' } });
    assert.equal(csrf.status, 403);
    const out = await request(`${base}/auth/logout`, { method: 'POST', headers: { Cookie: cookiePair(form.cookie) } });
    assert.equal(out.status, 204);
    const dead = await request(`${base}/auth/token`, { method: 'POST', headers: { Cookie: cookiePair(form.cookie) } });
    assert.equal(dead.status, 401);
  }
});

test('relay flows through nginx /ws with known tokens and bodies', { skip }, async () => {
  const tok = found['token (nginx)'];
  const me = Number(JSON.parse(Buffer.from(tok.split('.')[1], 'base64url')).sub);
  const gid = Number(await pg.psql(`SELECT parley.create_group('hyg${tag}', 'private')`));
  // Handshake authentication through the proxy.
  const ws = await wsConnect(nginx.port, { protocols: ['parley.v1', `parley.token.${tok}`] });
  assert.equal((await ws.nextJson('welcome')).user.id, me);
  const ack = await ws.request({ type: 'private_message', to: bob.id, body: secrets.body, client_id: `h-${tag}` });
  assert.equal(ack.type, 'ack');
  const forb = await ws.request({ type: 'group_message', group: gid, body: secrets.forbiddenBody, client_id: `f-${tag}` });
  assert.equal(forb.code, 'forbidden');
  // A refresh with a token of the same user.
  const fresh = await request(`${nginx.url}/auth/token`, { method: 'POST', headers: { Cookie: cookiePair({ name: 'parley_session', value: found['cookie (nginx, JSON login)'] }) } });
  assert.equal(fresh.status, 200);
  found['token (refresh)'] = fresh.json.token;
  assert.equal((await ws.request({ type: 'refresh', token: fresh.json.token })).type, 'refreshed');
  assert.equal((await ws.request({ type: 'refresh', token: `${fresh.json.token}x` })).code, 'invalid_token');
  ws.sendText(`{"type":"private_message","body":"${secrets.badJsonBody}"`);
  assert.equal((await ws.nextJson('error')).code, 'bad_request');
  ws.send({ opcode: OP.TEXT, payload: Buffer.concat([Buffer.from(`{"body":"${secrets.badJsonBody}`), Buffer.from([0xff]), Buffer.from('"}')]) });
  const c = await ws.readClose();
  assert.equal(c.code, 1007);
  ws.destroy();
  // Too large: 1009.
  const big = await wsConnect(nginx.port, { protocols: ['parley.v1', `parley.token.${tok}`] });
  await big.nextJson('welcome');
  big.sendText({ type: 'private_message', to: bob.id, body: `${secrets.hugeBody}${'h'.repeat(70000)}`, client_id: 'big' });
  assert.equal((await big.readClose()).code, 1009);
  big.destroy();
  // First-frame auth with the Apache token (same key), a tampered and an expired token.
  const ff = await wsConnect(relay.port, { protocols: ['parley.v1'] });
  ff.sendText({ type: 'auth', token: found['token (apache)'] || found['token (nginx)'] });
  await ff.nextJson('welcome');
  ff.destroy();
  const tampered = `${tok.slice(0, -4)}AAAA`;
  const h = await wsConnect(nginx.port, { protocols: ['parley.v1', `parley.token.${tampered}`] }).then(() => null, (e) => e);
  assert.equal(h.status, 401);
  const expired = await mint(key, { id: me, name: 'hygiene', sid: '1' }, { exp: 1000, iat: 900, nbf: 900 });
  found['token (expired)'] = expired;
  const ex = await wsConnect(relay.port, { protocols: ['parley.v1'] });
  ex.sendText({ type: 'auth', token: expired });
  assert.equal((await ex.readClose()).code, 4010);
  ex.destroy();
});

test('no password, cookie, cookie hash, token or message body in any log', { skip }, async (t) => {
  // Stop everything first, so that buffered log lines are written.
  const hadApache = !!apache;
  await nginx.stop();
  if (apache)
    await apache.stop();
  await token.stop();
  await relay.stop();
  await pg.stop();
  nginx = apache = token = relay = pg = null;

  const needles = [];
  const add = (name, value) => {
    if (!value)
      return;
    const forms = new Set([value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1)]);
    for (const f of forms)
      needles.push([name, f]);
  };
  for (const [k, v] of Object.entries(secrets))
    add(k, v);
  for (const [k, v] of Object.entries(found)) {
    add(k, v);
    if (k.startsWith('cookie')) {
      add(`${k} SHA-256 (hex)`, sha256hex(v));
      add(`${k} SHA-256 (\\x hex)`, `\\x${sha256hex(v)}`);
    }
    if (k.startsWith('token'))
      add(`${k} signature`, v.split('.')[2]);
  }
  assert.ok(Object.keys(found).length >= 5, `flows did not run: ${Object.keys(found)}`);
  const leaks = [];
  let bytes = 0;
  for (const { name, file } of logs) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      leaks.push(`${name}: ${file} missing`);
      continue;
    }
    bytes += text.length;
    for (const [what, needle] of needles)
      if (text.includes(needle))
        leaks.push(`${what} in the ${name} log (${file}): ...${text.slice(Math.max(0, text.indexOf(needle) - 80), text.indexOf(needle) + needle.length + 20)}...`);
  }
  assert.deepEqual(leaks, []);
  // The logs saw the flows (so their silence about secrets means something).
  const expectIn = {
    'parley-token': [/login ok uid=\d+/, /login failed/, /route=logout status=204/],
    'parley-relay': [/handshake refused: bad signature/, /closing: 1009/, /closing: 4010/, /authenticated \(auth frame\)/],
    postgres: [/STATEMENT: .*post_message/],
    'nginx access': [/POST \/auth\/login/, /GET \/ws/],
    ...(hadApache ? { 'apache error': [/parley-token\[\d+\]: debug login ok/], 'apache access': [/POST \/auth\/token/] } : {}),
  };
  for (const { name, file } of logs)
    for (const re of expectIn[name] || [])
      assert.match(fs.readFileSync(file, 'utf8'), re, `the ${name} log did not record the flows`);
  assert.ok(bytes > 2000, `only ${bytes} bytes of logs`);
  t.diagnostic(`${logs.length} logs, ${bytes} bytes, ${needles.length} needles`);
});
