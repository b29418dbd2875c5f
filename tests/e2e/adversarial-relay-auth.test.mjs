// tests/e2e/adversarial-relay-auth.test.mjs: hostile tokens and Origins at
// parley-relay, and the settings it must refuse at startup.
//
// Tokens (PROTOCOL.md §2 "Authenticate", parley-relay(8)): forged, tampered,
// stripped, oversized, mistyped and duplicated claims, `alg` spelled `none`
// in every case, other HMAC sizes, algorithm confusion (an RS256 relay's
// public key used as an HS256 secret), a token for someone else's session,
// two tokens, the token in the URL.  Each is tried in the handshake (401
// with a JSON body before any upgrade) and as the first-frame `auth`
// (close 4001, never a welcome).  Origins: look-alikes of the relay's own
// host and of an allowlisted origin, and `null`.  Startup: the "fail
// closed" list of issue 7 (short or exposed secrets, `*` origins, frame
// size, synchronous_commit = off).
//
// Two relays on one database: `main` (HS256, same-host Origin rule) and
// `rsa` (RS256 with a public key, PARLEY_ALLOWED_ORIGINS set).

import { before, after } from 'node:test';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { run, freePort } from '../lib/proc.mjs';
import { wsConnect } from '../lib/wsraw.mjs';
import {
  assert, deps, skipReason, setupDatabase, writeHmacKey, makeUser, mint, startRelay,
  relayBinary, tmpDir, waitFor, Client,
} from './relay-helpers.mjs';
import { caseSuite, claimsFor, rawJwt, b64u } from './adversarial-helpers.mjs';

const skip = skipReason() || false;
const suite = caseSuite('relay-auth');
const ALLOWED = 'https://chat.example.com';

let pg;
let dir;
let key;                 // HS256 { file, secret }
let rsa;                 // { privateKey, publicPem, file }
let main;                // relay, HS256, same-host
let rsaRelay;            // relay, RS256, allowlist
let alice;
let bob;

before(async () => {
  if (skip)
    return;
  dir = tmpDir('adv-relay-auth');
  pg = await setupDatabase('adv-relay-auth-pg');
  key = writeHmacKey(dir);
  const pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  rsa = {
    privateKey: pair.privateKey,
    publicPem: pair.publicKey.export({ type: 'spki', format: 'pem' }),
    file: path.join(dir, 'rsa-public.pem'),
  };
  fs.writeFileSync(rsa.file, rsa.publicPem, { mode: 0o600 });
  main = await startRelay({ pg, key, name: 'adv-auth-main' });
  rsaRelay = await startRelay({
    pg, key: { file: rsa.file }, name: 'adv-auth-rsa',
    env: { PARLEY_JWT_ALG: 'RS256', PARLEY_ALLOWED_ORIGINS: ALLOWED },
  });
  alice = await makeUser(pg, 'alice');
  bob = await makeUser(pg, 'bob');
});

after(async () => {
  if (main)
    await main.stop();
  if (rsaRelay)
    await rsaRelay.stop();
  if (pg)
    await pg.stop();
});

const HS = { alg: 'HS256', typ: 'JWT' };
const hs = (claims, header = HS, o = {}) => rawJwt(header, claims, { secret: key.secret, ...o });

async function rs256(claims, header = { alg: 'RS256', typ: 'JWT' }) {
  const { jose } = deps();
  return new jose.CompactSign(Buffer.from(typeof claims === 'string' ? claims : JSON.stringify(claims)))
    .setProtectedHeader(header).sign(rsa.privateKey);
}

/** Handshake with these subprotocols (and options); resolves { ws } or { err }. */
async function handshake(relay, protocols, opts = {}) {
  return wsConnect(relay.port, { protocols, ...opts }).then((ws) => ({ ws }), (err) => ({ err }));
}

/**
 * The token is refused both ways: handshake -> HTTP status with the JSON
 * error code; first frame -> close code, and no welcome either way.
 */
async function refused(relay, token, { status = 401, error = 'invalid_token', close = 4001 } = {}) {
  const h = await handshake(relay, ['parley.v1', `parley.token.${token}`]);
  if (h.ws)
    h.ws.destroy();
  assert.ok(h.err, 'the handshake was accepted');
  assert.equal(h.err.status, status, `handshake: ${h.err.message} ${h.err.text || ''}`);
  assert.match(h.err.headers['content-type'] || '', /^application\/json/);
  assert.equal(h.err.json && h.err.json.error, error);
  const ws = await wsConnect(relay.port, { protocols: ['parley.v1'] });
  ws.sendText({ type: 'auth', token });
  const c = await ws.readClose();
  assert.equal(c.code, close, `first frame: close ${c.code} "${c.reason}"`);
  assert.ok(!ws.all.some((f) => f.opcode === 1 && f.payload.includes('"welcome"')), 'a welcome was sent');
  ws.sendClose(c.code);
  await ws.waitEnd();
  return `handshake ${status} ${error}; auth frame close ${close}`;
}

/** The token is accepted both ways (a welcome for `user`). */
async function accepted(relay, token, user) {
  const h = await handshake(relay, ['parley.v1', `parley.token.${token}`]);
  assert.ok(h.ws, `handshake refused: ${h.err && h.err.message} ${h.err && h.err.text}`);
  const w = await h.ws.nextJson('welcome');
  assert.equal(w.user.id, user.id);
  h.ws.destroy();
  const ws = await wsConnect(relay.port, { protocols: ['parley.v1'] });
  ws.sendText({ type: 'auth', token });
  const w2 = await ws.nextJson('welcome');
  assert.equal(w2.user.id, user.id);
  ws.destroy();
  return 'welcome both ways';
}

// ================================================================ forged and tampered

suite.case('A1', 'relay', 'control: a well-formed token', 'welcome (handshake and auth frame)', async () =>
  accepted(main, await mint(key, alice), alice), { skip });

suite.case('A2', 'relay', 'forged: signed with another 64-byte secret', '401 invalid_token / 4001', async () =>
  refused(main, hs(claimsFor(alice), HS, { secret: crypto.randomBytes(64) })), { skip });

suite.case('A3', 'relay', 'tampered: sub changed to another user, signature kept', '401 invalid_token / 4001', async () => {
  const good = await mint(key, alice);
  const [h, , s] = good.split('.');
  const evil = `${h}.${b64u(JSON.stringify(claimsFor({ ...alice, id: bob.id })))}.${s}`;
  return refused(main, evil);
}, { skip });

suite.case('A4', 'relay', 'tampered: one bit of the signature flipped', '401 invalid_token / 4001', async () => {
  const good = await mint(key, alice);
  const sig = Buffer.from(good.split('.')[2], 'base64url');
  sig[7] ^= 1;
  return refused(main, good.replace(/[^.]+$/, sig.toString('base64url')));
}, { skip });

suite.case('A5', 'relay', 'signature stripped ("h.p." and "h.p")', '401 invalid_token / 4001', async () => {
  const [h, p] = (await mint(key, alice)).split('.');
  await refused(main, `${h}.${p}.`);
  return refused(main, `${h}.${p}`);
}, { skip });

suite.case('A6', 'relay', 'base64 padding and +/ characters in a segment', '401 invalid_token / 4001 (canonical base64url only)', async () => {
  const good = await mint(key, alice);
  const [h, p, s] = good.split('.');
  await refused(main, `${h}==.${p}.${s}`);
  const std = Buffer.from(s, 'base64url').toString('base64');
  assert.notEqual(std, s);
  return refused(main, `${h}.${p}.${std}`);
}, { skip });

/** A validly signed token whose length falls in [lo, hi]. */
function tokenOfLength(lo, hi) {
  for (let pad = Math.floor(lo * 3 / 4) - 400; pad < hi; pad++) {
    const t = hs(claimsFor(alice, { pad: 'p'.repeat(pad) }));
    if (t.length >= lo && t.length <= hi)
      return t;
    if (t.length > hi)
      break;
  }
  throw new Error(`no token of ${lo}..${hi} bytes`);
}

suite.case('A7', 'relay', 'oversized: validly signed tokens just under and just over 8 KiB', 'up to 8192 bytes accepted; 8193 and more 401 invalid_token / 4001, refused unread', async () => {
  const under = tokenOfLength(8186, 8192);
  const over = tokenOfLength(8193, 8199);
  await accepted(main, under, alice);
  await refused(main, over);
  return `${under.length} bytes: welcome; ${over.length} bytes: refused both ways`;
}, { skip });

suite.case('A8', 'relay', 'oversized: a 20 KiB token in the handshake, 60 KiB in an auth frame', 'handshake refused (request too large), auth frame 4001; no crash', async () => {
  const big = hs(claimsFor(alice, { pad: 'p'.repeat(15000) }));
  const h = await handshake(main, ['parley.v1', `parley.token.${big}`]);
  if (h.ws)
    h.ws.destroy();
  assert.ok(h.err, 'upgraded with a 20 KiB token');
  const ws = await wsConnect(main.port, { protocols: ['parley.v1'] });
  ws.sendText({ type: 'auth', token: hs(claimsFor(alice, { pad: 'p'.repeat(45000) })) });
  const c = await ws.readClose();
  assert.equal(c.code, 4001);
  ws.destroy();
  const ok = await accepted(main, await mint(key, alice), alice);
  return `handshake: ${h.err.status ? `HTTP ${h.err.status}` : 'closed without an answer'}; auth frame 4001; then ${ok}`;
}, { skip });

// ================================================================ claims: types and duplicates

const mistyped = [
  ['sub as a number', { sub: 0 }],
  ['sub "0"', { sub: '0' }],
  ['sub "-1"', { sub: '-1' }],
  ['sub with a leading zero', { sub: null }],
  ['sub "1e3"', { sub: '1e3' }],
  ['exp as a string', { exp: String(Math.floor(Date.now() / 1000) + 300) }],
  ['exp as a fraction', { exp: Math.floor(Date.now() / 1000) + 300.5 }],
  ['exp as true', { exp: true }],
  ['exp missing', { exp: undefined }],
  ['iat as a string', { iat: String(Math.floor(Date.now() / 1000)) }],
  ['nbf null', { nbf: null }],
  ['aud as a number', { aud: 1 }],
  ['aud an empty array', { aud: [] }],
  ['iss in an array', { iss: ['parley'] }],
  ['sid as a number', { sid: 0 }],
  ['sid empty', { sid: '' }],
  ['name an object', { name: { first: 'x' } }],
  ['jti a number', { jti: 5 }],
  ['claims nested 5 deep', { x: [[[['deep']]]] }],
];
suite.case('B1', 'relay', `mistyped claims (${mistyped.length} variants, each correctly signed)`, '401 invalid_token / 4001 for every one', async () => {
  for (const [what, change] of mistyped) {
    const c = claimsFor(alice, change);
    if (what === 'sub as a number')
      c.sub = alice.id;
    if (what === 'sub with a leading zero')
      c.sub = `0${alice.id}`;
    for (const k of Object.keys(c))
      if (c[k] === undefined)
        delete c[k];
    try {
      await refused(main, hs(c));
    } catch (e) {
      e.message = `${what}: ${e.message}`;
      throw e;
    }
  }
  return `all ${mistyped.length} refused both ways`;
}, { skip });

suite.case('B2', 'relay', 'aud as an array that contains parley-relay', 'accepted (RFC 7519 §4.1.3)', async () =>
  accepted(main, hs(claimsFor(alice, { aud: ['other', 'parley-relay'] })), alice), { skip });

suite.case('B3', 'relay', 'duplicated claim: "sub" twice (alice, then bob)', '401 invalid_token / 4001 (duplicates refused, never last-wins)', async () => {
  const c = JSON.stringify(claimsFor(alice));
  const dup = c.replace('{', `{"sub":"${bob.id}",`);
  assert.equal((dup.match(/"sub"/g) || []).length, 2);
  return refused(main, hs(dup));
}, { skip });

suite.case('B4', 'relay', 'duplicated claim: "exp" twice (past, then future)', '401 invalid_token / 4001', async () => {
  const c = JSON.stringify(claimsFor(alice));
  return refused(main, hs(c.replace('{', '{"exp":1,')));
}, { skip });

suite.case('B5', 'relay', 'duplicated header member: "alg" twice (none, then HS256)', '401 invalid_token / 4001', async () =>
  refused(main, hs(JSON.stringify(claimsFor(alice)), '{"alg":"none","alg":"HS256","typ":"JWT"}')), { skip });

suite.case('B6', 'relay', 'header: crit, typ "JWS", kid a number, unknown kid', '401 invalid_token / 4001 for each', async () => {
  const c = claimsFor(alice);
  await refused(main, hs(c, { ...HS, crit: ['exp'] }));
  await refused(main, hs(c, { ...HS, typ: 'JWS' }));
  await refused(main, hs(c, { ...HS, kid: 1 }));
  return refused(main, hs(c, { ...HS, kid: 'not-our-key' }));
}, { skip });

suite.case('B7', 'relay', "a token for another user's session (sub alice, sid bob's)", '401 invalid_token / 4001', async () =>
  refused(main, hs(claimsFor(alice, { sid: String(bob.sid) }))), { skip });

// ================================================================ algorithms

for (const spelling of ['none', 'None', 'NONE', 'nOnE', '']) {
  suite.case(`C-${spelling || 'empty'}`, 'relay', `alg "${spelling}" (no signature, and with a valid HS256 signature attached)`, '401 invalid_token / 4001', async () => {
    const header = { alg: spelling, typ: 'JWT' };
    const c = claimsFor(alice);
    await refused(main, rawJwt(header, c, { signature: '' }));
    return refused(main, hs(c, header));
  }, { skip });
}

suite.case('C2', 'relay', 'HS384 and HS512 signed with the right secret', '401 invalid_token / 4001 (only the configured algorithm)', async () => {
  const c = claimsFor(alice);
  await refused(main, hs(c, { alg: 'HS384', typ: 'JWT' }, { hash: 'sha384' }));
  await refused(main, hs(c, { alg: 'hs256', typ: 'JWT' }));
  return refused(main, hs(c, { alg: 'HS512', typ: 'JWT' }, { hash: 'sha512' }));
}, { skip });

suite.case('C3', 'relay', 'RS256 relay: control, a token signed with its private key', 'welcome', async () =>
  accepted(rsaRelay, await rs256(claimsFor(alice)), alice), { skip });

suite.case('C4', 'relay', 'algorithm confusion: HS256 token keyed with the RS256 public key PEM', '401 invalid_token / 4001', async () => {
  const c = claimsFor(alice);
  await refused(rsaRelay, rawJwt(HS, c, { secret: Buffer.from(rsa.publicPem) }));
  await refused(rsaRelay, rawJwt(HS, c, { secret: Buffer.from(rsa.publicPem.trim()) }));
  // The same confusion with the header claiming RS256.
  return refused(rsaRelay, rawJwt({ alg: 'RS256', typ: 'JWT' }, c, { secret: Buffer.from(rsa.publicPem) }));
}, { skip });

suite.case('C5', 'relay', 'HS256 relay: an RS256 token', '401 invalid_token / 4001', async () =>
  refused(main, await rs256(claimsFor(alice))), { skip });

suite.case('C6', 'relay', 'RS256 relay: alg none with the RS256 signature attached', '401 invalid_token / 4001', async () => {
  const t = await rs256(claimsFor(alice));
  const [, p, s] = t.split('.');
  return refused(rsaRelay, `${b64u('{"alg":"none","typ":"JWT"}')}.${p}.${s}`);
}, { skip });

// ================================================================ how the token is offered

suite.case('D1', 'relay', 'two tokens offered in the subprotocol', '400 bad_request before the upgrade', async () => {
  const h = await handshake(main, ['parley.v1', `parley.token.${await mint(key, alice)}`, `parley.token.${await mint(key, bob)}`]);
  if (h.ws)
    h.ws.destroy();
  assert.equal(h.err && h.err.status, 400);
  assert.equal(h.err.json.error, 'bad_request');
  return '400 bad_request';
}, { skip });

suite.case('D2', 'relay', 'token in the URL (?token=) with PARLEY_QUERY_TOKEN off', 'ignored: no identity; the first non-auth frame closes 1008', async () => {
  const h = await handshake(main, ['parley.v1'], { path: `/ws?token=${await mint(key, alice)}` });
  assert.ok(h.ws, 'upgrade for first-frame auth');
  h.ws.sendText({ type: 'ping', ref: 'q' });
  const c = await h.ws.readClose();
  assert.equal(c.code, 1008);
  assert.ok(!h.ws.all.some((f) => f.opcode === 1 && f.payload.includes('welcome')));
  h.ws.destroy();
  return 'upgraded without identity; ping -> close 1008';
}, { skip });

suite.case('D3', 'relay', 'second auth frame with another user\'s token after authenticating', 'error bad_request; still the first user', async () => {
  const ws = await wsConnect(main.port, { protocols: ['parley.v1'] });
  ws.sendText({ type: 'auth', token: await mint(key, alice) });
  await ws.nextJson('welcome');
  const e = await ws.request({ type: 'auth', token: await mint(key, bob) });
  assert.deepEqual([e.type, e.code], ['error', 'bad_request']);
  const who = await ws.request({ type: 'private_message', to: bob.id, body: 'who am i', client_id: `d3-${Date.now()}` });
  assert.equal(who.type, 'ack');
  const sender = await pg.psql(`SELECT sender_id FROM parley.messages WHERE id = ${who.id}`);
  assert.equal(Number(sender), alice.id);
  ws.destroy();
  return 'bad_request; the message stored as alice';
}, { skip });

suite.case('D4', 'relay', 'auth frame with the token as a number, an array, or missing', 'close 4001', async () => {
  for (const token of [12345, ['a', 'b'], undefined]) {
    const ws = await wsConnect(main.port, { protocols: ['parley.v1'] });
    ws.sendText({ type: 'auth', token });
    const c = await ws.readClose();
    assert.equal(c.code, 4001, `token ${JSON.stringify(token)}`);
    ws.destroy();
  }
  return 'close 4001 each';
}, { skip });

// ================================================================ Origins

async function originAnswer(relay, origin, token, headers = {}) {
  const h = await handshake(relay, ['parley.v1', `parley.token.${token}`], { origin, headers });
  if (h.ws) {
    h.ws.destroy();
    return 'accepted';
  }
  assert.equal(h.err.status, 403, `${origin}: ${h.err.message}`);
  assert.equal(h.err.json.error, 'forbidden_origin');
  return 403;
}

suite.case('E1', 'relay', 'same-host rule: look-alikes of http://127.0.0.1:PORT', 'only the same host and port pass; null, look-alikes and a trailing "/" (as at parley-token, K8) 403 forbidden_origin', async () => {
  const p = main.port;
  const t = await mint(key, alice);
  const want = {
    [`http://127.0.0.1:${p}`]: 'accepted',
    [`HTTP://127.0.0.1:${p}`]: 'accepted',
    [`http://127.0.0.1:${p}/`]: 403,
    [`http://127.0.0.1:${p}//`]: 403,
    'null': 403,
    [`http://127.0.0.1:${p + 1}`]: 403,
    'http://127.0.0.1': 403,
    [`http://127.0.0.1.:${p}`]: 403,
    [`http://127.0.0.1:${p}.evil.com`]: 403,
    [`http://evil.com@127.0.0.1:${p}`]: 403,
    [`http://127.0.0.1:${p}@evil.com`]: 403,
    [`http://127.0.0.2:${p}`]: 403,
    [`ws://127.0.0.1:${p}`]: 403,
    [`http://127.0.0.1:${p}/path`]: 403,
  };
  const got = {};
  for (const o of Object.keys(want))
    got[o] = await originAnswer(main, o, t);
  assert.deepEqual(got, want);
  return `${Object.keys(want).length} Origins as documented`;
}, { skip });

suite.case('E2', 'relay', 'same-host rule and the scheme: https:// Origin over plain ws://, X-Forwarded-Proto from a trusted proxy and from anyone else', 'the Origin\'s scheme must be the one the client used: the listener\'s (http here), or a trusted proxy\'s X-Forwarded-Proto (http or https; anything else matches no Origin); an untrusted peer\'s X-Forwarded-Proto is ignored', async () => {
  const p = main.port;
  const t = await mint(key, alice);
  const https = `https://127.0.0.1:${p}`;
  const http = `http://127.0.0.1:${p}`;
  // From 127.0.0.1, a trusted proxy by default (PARLEY_TRUSTED_PROXIES).
  const want = [
    [https, {}, 403],
    [http, {}, 'accepted'],
    [https, { 'X-Forwarded-Proto': 'https' }, 'accepted'],
    [https, { 'X-Forwarded-Proto': 'HTTPS' }, 'accepted'],
    [http, { 'X-Forwarded-Proto': 'https' }, 403],
    [http, { 'X-Forwarded-Proto': 'http' }, 'accepted'],
    [https, { 'X-Forwarded-Proto': 'http' }, 403],
    [https, { 'X-Forwarded-Proto': 'https, http' }, 403],
    [http, { 'X-Forwarded-Proto': 'https, http' }, 403],
    [https, { 'X-Forwarded-Proto': 'wss' }, 403],
    [https, { 'X-Forwarded-Proto': '' }, 403],
    [https, [['X-Forwarded-Proto', 'https'], ['X-Forwarded-Proto', 'http']], 403],
    [`${https}/`, { 'X-Forwarded-Proto': 'https' }, 403],
  ];
  const got = [];
  for (const [o, headers, answer] of want)
    got.push([o, headers, await originAnswer(main, o, t, headers)]);
  assert.deepEqual(got, want);
  // From 127.0.0.2, not a trusted proxy: its X-Forwarded-Proto is not believed.
  const untrusted = async (origin) => Client.open(main.url, {
    protocols: ['parley.v1', `parley.token.${t}`], origin, localAddress: '127.0.0.2',
    headers: { 'X-Forwarded-Proto': 'https' },
  }).then((c) => { c.ws.terminate(); return 'accepted'; }, (e) => {
    assert.equal(e.body && e.body.error, 'forbidden_origin', `${origin}: ${e.message}`);
    return e.status;
  });
  assert.equal(await untrusted(https), 403, 'https Origin from an untrusted peer claiming https');
  assert.equal(await untrusted(http), 'accepted', 'http Origin from an untrusted peer claiming https');
  return `${want.length} Origin / X-Forwarded-Proto pairs from a trusted peer as documented; from an untrusted one the header is ignored (https 403, http accepted)`;
}, { skip });

const lookAlikes = {
  'https://chat.example.com': 'accepted',
  'https://CHAT.Example.COM': 'accepted',
  'https://chat.example.com/': 403,
  'https://evil-chat.example.com': 403,
  'https://chat.example.com.evil.com': 403,
  'https://evilchat.example.com': 403,
  'http://chat.example.com': 403,
  'https://chat.example.com:8443': 403,
  'https://chat.example.com.': 403,
  'https://chat.example.co': 403,
  'null': 403,
  '': 403,
};
suite.case('E3', 'relay', 'allowlist https://chat.example.com: look-alikes, scheme, port, case, trailing dot and slash, null', 'the listed origin (any case) passes; everything else 403 forbidden_origin, as at parley-token (K10)', async () => {
  const t = await rs256(claimsFor(alice));
  const got = {};
  for (const o of Object.keys(lookAlikes))
    got[o] = await originAnswer(rsaRelay, o, t);
  assert.deepEqual(got, lookAlikes);
  return `${Object.keys(lookAlikes).length} Origins as documented`;
}, { skip });

suite.case('E4', 'relay', 'allowlist: the default port written out (https://chat.example.com:443)', 'accepted, as parley-token matches it ("Matching ignores case and default ports")', async () => {
  const got = await originAnswer(rsaRelay, 'https://chat.example.com:443', await rs256(claimsFor(alice)));
  assert.equal(got, 'accepted', 'parley-relay compares the text; parley-token canonicalises the port');
  return 'accepted';
}, { skip });

suite.case('E5', 'relay', 'two Origin headers, the allowed one first', '403 forbidden_origin (never the first one alone)', async () => {
  const h = await handshake(rsaRelay, ['parley.v1', `parley.token.${await rs256(claimsFor(alice))}`],
    { headers: [['Origin', ALLOWED], ['Origin', 'https://evil.example']] });
  if (h.ws) {
    h.ws.destroy();
    assert.fail('accepted with a second, foreign Origin header');
  }
  assert.equal(h.err.status, 403);
  return '403 forbidden_origin';
}, { skip });

// ================================================================ fail closed at startup

async function checkConfig(prog, env) {
  const base = {};
  for (const [k, v] of Object.entries(process.env))
    if (!/^(PARLEY_|WS_|PG)/.test(k))
      base[k] = v;
  const r = await run(prog, ['--check-config'], { env: { ...base, ...env }, check: false, timeoutMs: 20000 });
  return { code: r.code, text: (r.stdout + r.stderr).trim() };
}

const tokenBinary = path.join(path.dirname(path.dirname(relayBinary)), 'token-fcgi', 'parley-token');
const haveToken = fs.existsSync(tokenBinary);

function keyFile(name, bytes, mode) {
  const f = path.join(dir, name);
  fs.writeFileSync(f, bytes, { mode });
  fs.chmodSync(f, mode);
  return f;
}

suite.case('S1', 'both', 'HMAC secret of 31 bytes', 'refused at startup with a one-line reason', async () => {
  const f = keyFile('short.key', 'k'.repeat(31), 0o600);
  const out = [];
  for (const prog of [relayBinary, ...(haveToken ? [tokenBinary] : [])]) {
    const r = await checkConfig(prog, { PARLEY_JWT_KEY_FILE: f });
    assert.equal(r.code, 1, `${path.basename(prog)}: ${r.text}`);
    assert.match(r.text, /32/);
    assert.equal(r.text.split('\n').length, 1);
    out.push(`${path.basename(prog)}: exit 1 "${r.text.replace(/^[^:]*\[\d+\]: error /, '')}"`);
  }
  return out.join('; ');
}, { skip });

suite.case('S2', 'both', 'key file readable by other users (0644, 0604)', 'refused at startup with a one-line reason', async () => {
  const out = [];
  for (const mode of [0o644, 0o604]) {
    const f = keyFile(`open-${mode.toString(8)}.key`, crypto.randomBytes(32).toString('hex'), mode);
    for (const prog of [relayBinary, ...(haveToken ? [tokenBinary] : [])]) {
      const r = await checkConfig(prog, { PARLEY_JWT_KEY_FILE: f });
      assert.equal(r.code, 1, `${path.basename(prog)} ${mode.toString(8)}: ${r.text}`);
      assert.match(r.text, /other users/);
    }
  }
  out.push('both programs: exit 1 "... is accessible by other users (mode 0644); chmod o-rwx it"');
  return out.join('; ');
}, { skip });

suite.case('S3', 'relay', 'PARLEY_ALLOWED_ORIGINS=* (and null)', 'refused at startup, as parley-token does (issue 7)', async () => {
  const out = [];
  for (const v of ['*', 'https://a.example, *', 'null']) {
    const r = await checkConfig(relayBinary, { PARLEY_JWT_KEY_FILE: key.file, PARLEY_ALLOWED_ORIGINS: v });
    out.push(`relay "${v}": exit ${r.code} ${r.text}`);
    assert.equal(r.code, 1, `parley-relay accepts allowed_origins "${v}"`);
  }
  return out.join('; ');
}, { skip });

suite.case('S4', 'token', 'PARLEY_ALLOWED_ORIGINS=* and null at parley-token', 'refused at startup', async () => {
  const out = [];
  for (const v of ['*', 'null']) {
    const r = await checkConfig(tokenBinary, { PARLEY_JWT_KEY_FILE: key.file, PARLEY_ALLOWED_ORIGINS: v });
    assert.equal(r.code, 1, r.text);
    out.push(`"${v}": exit 1`);
  }
  return out.join(', ');
}, { skip: skip || (!haveToken && 'parley-token not built') });

suite.case('S5', 'relay', 'PARLEY_MAX_FRAME 0, -1, 100g, unlimited', 'refused at startup', async () => {
  for (const v of ['0', '-1', '100g', 'unlimited', '255']) {
    const r = await checkConfig(relayBinary, { PARLEY_JWT_KEY_FILE: key.file, PARLEY_MAX_FRAME: v });
    assert.equal(r.code, 1, `max_frame ${v}: ${r.text}`);
  }
  return 'exit 1 for each ("max_frame: must be between 256 and 64m")';
}, { skip });

/** Run parley-relay (not --check-config) on `conninfo` until it exits, or kill it after timeoutMs. */
async function runRelay(conninfo, timeoutMs = 20000) {
  const base = {};
  for (const [k, v] of Object.entries(process.env))
    if (!/^(PARLEY_|WS_|PG)/.test(k))
      base[k] = v;
  const r = await run(relayBinary, [], {
    env: { ...base, PARLEY_DB: conninfo, PARLEY_JWT_KEY_FILE: key.file, PARLEY_RELAY_LISTEN: `127.0.0.1:${await freePort()}` },
    check: false, timeoutMs,
  });
  return { code: r.code, signal: r.signal, text: (r.stdout + r.stderr).trim() };
}

const RELAY_WHY = /synchronous_commit is off for the relay's database connection: a message acknowledged to its sender can be lost in a database crash/;

suite.case('S6', 'relay', 'a database with synchronous_commit = off (set on the database, or in the conninfo); one reachable only after startup', 'refused at startup: exit 1 with one error line naming the consequence (an acknowledged message could be lost); unreachable at startup: it starts, and the first connection that answers logs the same at error level; a durable database: no such line', async () => {
  // The durable database of this file: the check ran and said nothing.
  assert.match(main.logText(), /database synchronous_commit = on/);
  assert.doesNotMatch(main.logText(), /synchronous_commit is off/);

  await pg.psql('CREATE DATABASE sc_off');
  await pg.psql('ALTER DATABASE sc_off SET synchronous_commit = off');
  const out = [];
  for (const [what, conninfo] of [
    ['ALTER DATABASE', pg.conninfo.replace('dbname=parley', 'dbname=sc_off')],
    ['conninfo options', `${pg.conninfo} options='-c synchronous_commit=off'`],
  ]) {
    const r = await runRelay(conninfo);
    assert.equal(r.code, 1, `${what}: exit ${r.code ?? r.signal}: ${r.text}`);
    const lines = r.text.split('\n').filter((l) => / error /.test(l));
    assert.equal(lines.length, 1, `${what}: one error line:\n${r.text}`);
    assert.match(lines[0], /error refusing to start: /);
    assert.match(lines[0], RELAY_WHY);
    out.push(`${what}: exit 1`);
  }

  // Unreachable at startup (the database does not exist yet); it then
  // appears with synchronous_commit = off, renamed into place so that no
  // connection sees it half set up.
  await pg.psql('CREATE DATABASE sc_late_tmp');
  await pg.psql('ALTER DATABASE sc_late_tmp SET synchronous_commit = off');
  const r = await startRelay({ pg: { conninfo: pg.conninfo.replace('dbname=parley', 'dbname=sc_late') }, key, name: 'adv-auth-sclate', waitHealthy: false });
  try {
    assert.match(r.logText(), /database unreachable at startup \(.*\): synchronous_commit will be checked once it answers/);
    await pg.psql('ALTER DATABASE sc_late_tmp RENAME TO sc_late');
    await waitFor(() => RELAY_WHY.test(r.logText()), { timeoutMs: 10000, what: 'the error line at the first connection' });
    const line = r.logText().split('\n').find((l) => RELAY_WHY.test(l));
    assert.match(line, / error /);
    assert.ok(r.running(), 'the relay keeps running');
  } finally {
    await r.stop();
  }
  out.push('unreachable at startup: a warning, then the error line once the database answers (still running)');
  return out.join('; ');
}, { skip });
