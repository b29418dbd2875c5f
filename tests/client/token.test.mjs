// tests/client/token.test.mjs: the browser client's token handling against a
// fake socket and clock: the handshake subprotocols, when the in-band
// `refresh` happens (a minute before exp, never in the first half of a short
// token's life), token_expiring, failed refreshes, and that a 10-second
// WS_TOKEN_TTL keeps one connection alive across many refreshes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeTab, openTab, settle, makeTokenService, FakeClock } from './fakes.mjs';

function tab(t, opts = {}) {
  const x = makeTab(opts);
  t.after(() => x.client.close());
  return x;
}

function tabWithTtl(t, ttl) {
  const clock = new FakeClock();
  return tab(t, { clock, tokens: makeTokenService(clock, { ttl }) });
}

test('the handshake offers parley.v1, the token and the tab instance as subprotocols', async (t) => {
  const x = tab(t);
  x.client.connect();
  await settle();
  const ws = x.socket();
  assert.equal(ws.url, 'ws://relay.test/ws');
  assert.equal(ws.protocols.length, 3);
  assert.equal(ws.protocols[0], 'parley.v1');
  assert.match(ws.protocols[1], /^parley\.token\.[\w-]+\.[\w-]+\.[\w-]+$/);
  assert.equal(ws.protocols[2], `parley.instance.${x.client.instanceId}`);
  assert.ok(!ws.url.includes('token'), 'never in the URL');
});

test('the relay URL comes from the token response, then from the page location', async (t) => {
  const clock = new FakeClock();
  const tokens = makeTokenService(clock);
  const orig = tokens.fetch;
  tokens.fetch = async (...a) => {
    const r = await orig(...a);
    const body = await r.json();
    return { ...r, json: async () => ({ ...body, relay_url: 'wss://relay.example/ws' }) };
  };
  const x = tab(t, { clock, tokens, options: { url: undefined, tokenUrl: '/a/token' } });
  x.client.connect();
  await settle();
  assert.equal(x.socket().url, 'wss://relay.example/ws');
  x.client.close();

  const y = tab(t, { options: { url: undefined, tokenUrl: '/b/token', location: { protocol: 'https:', host: 'chat.example.org' } } });
  y.client.connect();
  await settle();
  assert.equal(y.socket().url, 'wss://chat.example.org/ws');
});

test('with a 5-minute token the refresh happens 60 s before expiry, in band', async (t) => {
  const x = tabWithTtl(t, 300);
  x.client.connect();
  const ws = await openTab(x, { ttl: 300 });
  assert.equal(x.tokens.calls.length, 1);
  await x.clock.advance(239999);
  assert.equal(x.tokens.calls.length, 1, 'no token request before 240 s');
  assert.equal(ws.frames('refresh').length, 0);
  await x.clock.advance(1);
  assert.equal(x.tokens.calls.length, 2, 'a new token at 240 s');
  const cmd = ws.last('refresh');
  assert.ok(cmd, 'sent a refresh command');
  assert.ok(cmd.ref, 'with a ref');
  assert.notEqual(cmd.token, ws.protocols[1].slice('parley.token.'.length), 'the new token');
  ws.reply('refresh', { token_expires_at: Math.floor(x.clock.now() / 1000) + 300 }, 'refreshed');
  await settle();
  assert.deepEqual(x.of('token').at(-1).event, 'refreshed');
  // The next one 240 s after the refresh.
  await x.clock.advance(239999);
  assert.equal(ws.frames('refresh').length, 1);
  await x.clock.advance(1);
  assert.equal(ws.frames('refresh').length, 2);
  assert.equal(x.sockets.length, 1, 'the same connection throughout');
});

test('with a 10-second token the connection lives on across many refreshes, every 5 s', async (t) => {
  const x = tabWithTtl(t, 10);
  x.client.connect();
  const ws = await openTab(x, { ttl: 10 });
  const times = [];
  const start = x.clock.now();
  for (let i = 0; i < 6; i++) {
    const n = ws.frames('refresh').length;
    while (ws.frames('refresh').length === n)
      await x.clock.advance(100);
    times.push(x.clock.now() - start);
    ws.reply('refresh', { token_expires_at: Math.floor(x.clock.now() / 1000) + 10 }, 'refreshed');
    await settle();
  }
  assert.deepEqual(times, [5000, 10000, 15000, 20000, 25000, 30000]);
  assert.equal(x.sockets.length, 1);
  assert.equal(x.client.state, 'open');
});

test('token_expiring for a young token is left to the timer (no refresh loop)', async (t) => {
  const x = tabWithTtl(t, 10);
  x.client.connect();
  const ws = await openTab(x, { ttl: 10 });
  // The relay warns a minute before exp, i.e. at once for a 10 s token.
  ws.push({ type: 'token_expiring', expires_at: Math.floor(x.clock.now() / 1000) + 10 });
  await settle();
  assert.equal(x.tokens.calls.length, 1, 'not refreshed at age 0');
  assert.equal(x.of('token').at(-1).event, 'expiring');
});

test('token_expiring for an old token refreshes at once', async (t) => {
  const x = tabWithTtl(t, 300);
  x.client.connect();
  const ws = await openTab(x, { ttl: 300 });
  await x.clock.advance(200000);
  assert.equal(ws.frames('refresh').length, 0);
  ws.push({ type: 'token_expiring', expires_at: Math.floor(x.clock.now() / 1000) + 60 });
  await settle();
  assert.equal(ws.frames('refresh').length, 1);
  // A second warning while the refresh is in flight does not start another.
  ws.push({ type: 'token_expiring', expires_at: Math.floor(x.clock.now() / 1000) + 60 });
  await settle();
  assert.equal(ws.frames('refresh').length, 1);
  assert.equal(x.tokens.calls.length, 2);
});

test('a refused refresh keeps the connection and tries again; 4010 then brings a new token', async (t) => {
  const x = tabWithTtl(t, 300);
  x.client.connect();
  const ws = await openTab(x, { ttl: 300 });
  await x.clock.advance(240000);
  const cmd = ws.last('refresh');
  ws.push({ type: 'error', ref: cmd.ref, code: 'invalid_token', message: 'bad' });
  await settle();
  assert.equal(x.client.state, 'open');
  assert.equal(x.of('error').at(-1).code, 'invalid_token');
  await x.clock.advance(15000);           // 60 s left: the retry is due within 15 s
  assert.equal(ws.frames('refresh').length, 2, 'tried again');
  // The relay closes with 4010 when exp passes anyway.
  ws.serverClose(4010, 'token expired');
  await x.clock.advance(0);
  assert.equal(x.sockets.length, 2);
  assert.equal(x.client.state, 'connecting');
});

test('the token service saying 401 at refresh time signs out', async (t) => {
  const x = tabWithTtl(t, 300);
  x.client.connect();
  const ws = await openTab(x, { ttl: 300 });
  x.tokens.failWith(401, { error: 'invalid_session', message: 'gone' });
  await x.clock.advance(240000);
  assert.equal(x.client.state, 'signed_out');
  assert.equal(ws.closed.code, 1000);
  await x.clock.advance(600000);
  assert.equal(x.sockets.length, 1);
});

test('a token service outage at refresh time is retried while the token lasts', async (t) => {
  const x = tabWithTtl(t, 300);
  x.client.connect();
  const ws = await openTab(x, { ttl: 300 });
  x.tokens.queue.push({ throw: new TypeError('Failed to fetch') });
  await x.clock.advance(240000);
  assert.equal(x.of('error').at(-1).code, 'network');
  assert.equal(ws.frames('refresh').length, 0);
  await x.clock.advance(5000);
  assert.equal(ws.frames('refresh').length, 1, 'refreshed on the retry');
  assert.equal(x.client.state, 'open');
});

test('a reconnect reuses a token with more than 30 s left and fetches one with less', async (t) => {
  // A 40 s token: its refresh is due at 20 s, so no refresh interferes.
  const x = tabWithTtl(t, 40);
  x.client.connect();
  await openTab(x, { ttl: 40 });
  await x.clock.advance(5000);
  x.socket().serverClose(1006);
  await x.clock.advance(2500);            // 32.5 s left
  assert.equal(x.sockets.length, 2);
  assert.equal(x.tokens.calls.length, 1, 'reused');
  assert.equal(x.sockets[1].protocols[1], x.sockets[0].protocols[1]);
  await openTab(x, { ttl: 32 });
  await x.clock.advance(500);
  x.socket().serverClose(1006);
  await x.clock.advance(2500);            // 29 s left
  assert.equal(x.sockets.length, 3);
  assert.equal(x.sockets[2].frames('refresh').length, 0);
  assert.equal(x.tokens.calls.length, 2, 'fetched: under 30 s left');
  assert.notEqual(x.sockets[2].protocols[1], x.sockets[1].protocols[1]);
});
