// tests/client/reconnect.test.mjs: the browser client's reconnect schedule
// against a fake socket and a fake clock: exact backoff delays (full jitter
// with a fake random), attempt counting, the reset after a successful open,
// which close codes stop it, the 4010 path, waking on online/visibility.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, CloseCode } from '../../contrib/client/parley.js';
import { makeTab, openTab, settle } from './fakes.mjs';

function tab(t, opts) {
  const x = makeTab(opts);
  t.after(() => x.client.close());
  return x;
}

// Fail the current connection attempt the way a refused handshake or a
// relay that is down looks to a page: a close 1006 before any welcome.
async function failAttempt(x) {
  await settle();
  x.socket().serverClose(1006);
  await settle();
}

function lastState(x) {
  return x.of('state').at(-1);
}

test('backoffDelay: full jitter over base * 2^attempt, capped', () => {
  const o = { reconnectDelay: 5000, maxReconnectDelay: 60000 };
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((a) => backoffDelay(a, { ...o, random: () => 0.5 })),
    [2500, 5000, 10000, 20000, 30000, 30000]);
  assert.equal(backoffDelay(0, { ...o, random: () => 0 }), 0);
  assert.equal(backoffDelay(2, { ...o, random: () => 0.999999 }), 19999);
  assert.equal(backoffDelay(10, { ...o, random: () => 0.999999 }), 59999);
  // Defaults are WS_RECONNECT_DELAY = 5 s.
  assert.equal(backoffDelay(0, { random: () => 0.5 }), 2500);
});

test('failed attempts wait 2.5, 5, 10, 20, 30 s (random 0.5), then offline after 5 reconnects', async (t) => {
  const x = tab(t);
  x.client.connect();
  await failAttempt(x);
  const expected = [2500, 5000, 10000, 20000, 30000];
  for (let i = 0; i < expected.length; i++) {
    const st = lastState(x);
    assert.equal(st.state, 'reconnecting');
    assert.equal(st.attempt, i, 'attempt number');
    assert.equal(st.delay, expected[i], `delay before reconnect ${i + 1}`);
    assert.equal(st.retryAt, x.clock.now() + expected[i]);
    const n = x.sockets.length;
    await x.clock.advance(expected[i] - 1);
    assert.equal(x.sockets.length, n, 'no socket before the delay is over');
    await x.clock.advance(1);
    assert.equal(x.sockets.length, n + 1, 'a new socket when the delay is over');
    await failAttempt(x);
  }
  assert.equal(x.client.state, 'offline');
  assert.equal(lastState(x).attempts, 5);
  assert.equal(x.sockets.length, 6, 'the first connection and 5 reconnects');
  await x.clock.advance(10 * 60 * 1000);
  assert.equal(x.sockets.length, 6, 'nothing more while offline');
  // Each attempt that never got a welcome asked for a fresh token.
  assert.equal(x.tokens.calls.length, 6);
});

test('the jitter uses the injected random: delay = floor(random * window)', async (t) => {
  const rs = [0.1, 0.9, 0.0];
  const x = tab(t, { random: () => rs.shift() });
  x.client.connect();
  await failAttempt(x);
  assert.equal(lastState(x).delay, 500);      // 0.1 * 5000
  await x.clock.advance(500);
  await failAttempt(x);
  assert.equal(lastState(x).delay, 9000);     // 0.9 * 10000
  await x.clock.advance(9000);
  await failAttempt(x);
  assert.equal(lastState(x).delay, 0);        // 0.0 * 20000
});

test('options reconnectDelay, maxReconnectDelay and maxReconnectAttempts are honoured', async (t) => {
  const x = tab(t, { options: { reconnectDelay: 1000, maxReconnectDelay: 3000, maxReconnectAttempts: 4 } });
  x.client.connect();
  await failAttempt(x);
  const delays = [];
  while (x.client.state === 'reconnecting') {
    delays.push(lastState(x).delay);
    await x.clock.advance(lastState(x).delay);
    await failAttempt(x);
  }
  assert.deepEqual(delays, [500, 1000, 1500, 1500]);
  assert.equal(x.client.state, 'offline');
});

test('a successful open resets the attempt count', async (t) => {
  const x = tab(t);
  x.client.connect();
  await failAttempt(x);
  await x.clock.advance(2500);
  await failAttempt(x);
  assert.equal(lastState(x).delay, 5000);
  await x.clock.advance(5000);
  await openTab(x);
  assert.equal(x.client.state, 'open');
  x.socket().serverClose(CloseCode.GOING_AWAY, 'relay shutting down');
  await settle();
  assert.equal(lastState(x).state, 'reconnecting');
  assert.equal(lastState(x).attempt, 0);
  assert.equal(lastState(x).delay, 2500, 'back to the first delay');
  assert.equal(lastState(x).code, 1001);
});

test('a connection that opened and dropped never counts toward going offline', async (t) => {
  const x = tab(t, { options: { maxReconnectAttempts: 2 } });
  x.client.connect();
  for (let i = 0; i < 6; i++) {
    await openTab(x);
    x.socket().serverClose(1006);
    await settle();
    assert.equal(x.client.state, 'reconnecting', `drop ${i + 1}`);
    await x.clock.advance(lastState(x).delay);
  }
});

for (const [code, state] of [[4011, 'signed_out'], [4009, 'replaced']]) {
  test(`close ${code} stops with state ${state} and never reconnects`, async (t) => {
    const x = tab(t);
    x.client.connect();
    await openTab(x);
    x.socket().serverClose(code, 'x');
    await settle();
    assert.equal(x.client.state, state);
    assert.equal(lastState(x).code, code);
    await x.clock.advance(60 * 60 * 1000);
    x.win.dispatch('online');
    x.doc.dispatch('visibilitychange');
    await settle();
    assert.equal(x.sockets.length, 1, 'no reconnect, not even on online/visible');
    assert.equal(x.client.state, state);
  });
}

for (const code of [1000, 1001, 1006, 1008, 1009, 4000, 4001, 4002, 4029, 4030]) {
  test(`close ${code} reconnects with backoff`, async (t) => {
    const x = tab(t);
    x.client.connect();
    await openTab(x);
    x.socket().serverClose(code);
    await settle();
    assert.equal(x.client.state, 'reconnecting');
    assert.equal(lastState(x).delay, 2500);
    await x.clock.advance(2500);
    assert.equal(x.sockets.length, 2);
  });
}

test('4010 (token expired): a new token and a new socket at once, no backoff', async (t) => {
  const x = tab(t);
  x.client.connect();
  await openTab(x);
  const firstToken = x.sockets[0].protocols[1];
  assert.equal(x.tokens.calls.length, 1);
  x.socket().serverClose(CloseCode.TOKEN_EXPIRED, 'token expired');
  await settle();
  assert.equal(lastState(x).state, 'reconnecting');
  assert.equal(lastState(x).delay, 0);
  await x.clock.advance(0);
  assert.equal(x.sockets.length, 2, 'reconnected on the next tick, no backoff');
  assert.equal(x.tokens.calls.length, 2, 'fetched a new token');
  assert.notEqual(x.sockets[1].protocols[1], firstToken);
  assert.ok(x.states().includes('reconnecting'));
  await openTab(x);
  assert.equal(x.client.state, 'open');
});

test('the token request is a credentialed POST to tokenUrl', async (t) => {
  const x = tab(t, { options: { tokenUrl: '/chat/auth/token' } });
  x.client.connect();
  await settle();
  assert.equal(x.tokens.calls.length, 1);
  assert.equal(x.tokens.calls[0].url, '/chat/auth/token');
  assert.equal(x.tokens.calls[0].init.method, 'POST');
  assert.equal(x.tokens.calls[0].init.credentials, 'include');
});

test('the token service answering 401 means signed out: no socket, no retry', async (t) => {
  const x = tab(t);
  x.tokens.failWith(401, { error: 'invalid_session', message: 'no session' });
  x.client.connect();
  await settle();
  assert.equal(x.client.state, 'signed_out');
  assert.equal(x.sockets.length, 0);
  await x.clock.advance(60000);
  assert.equal(x.tokens.calls.length, 1);
});

test('a refused handshake is followed by a token request that finds the session revoked', async (t) => {
  const x = tab(t);
  x.client.connect();
  await openTab(x);
  x.socket().serverClose(1006);          // relay restarted
  await settle();
  await x.clock.advance(2500);
  // The reconnect reused the good token; the relay refuses it (401
  // session_revoked before the upgrade), which the page sees as 1006.
  assert.equal(x.sockets.length, 2);
  x.tokens.failWith(401, { error: 'invalid_session', message: 'revoked' });
  await failAttempt(x);
  await x.clock.advance(lastState(x).delay);
  assert.equal(x.client.state, 'signed_out');
  assert.equal(x.sockets.length, 2);
});

test('a token service 503 with Retry-After waits at least that long', async (t) => {
  const x = tab(t);
  x.tokens.failWith(503, { error: 'unavailable', message: 'db down' }, { 'Retry-After': '20' });
  x.client.connect();
  await settle();
  assert.equal(x.client.state, 'reconnecting');
  assert.equal(lastState(x).delay, 20000);
  assert.equal(x.of('error').at(-1).code, 'unavailable');
  await x.clock.advance(20000);
  assert.equal(x.sockets.length, 1);
});

test('403 forbidden_origin from the token service stops with offline (waiting cannot fix it)', async (t) => {
  const x = tab(t);
  x.tokens.failWith(403, { error: 'forbidden_origin', message: 'origin' });
  x.client.connect();
  await settle();
  assert.equal(x.client.state, 'offline');
  assert.equal(x.of('error').at(-1).code, 'forbidden_origin');
  await x.clock.advance(10 * 60 * 1000);
  assert.equal(x.tokens.calls.length, 1);
});

test('online and visible wake a waiting client at once, with a fresh attempt count', async (t) => {
  const x = tab(t);
  x.client.connect();
  await failAttempt(x);
  await x.clock.advance(2500);
  await failAttempt(x);
  assert.equal(lastState(x).delay, 5000);
  x.win.dispatch('online');
  await settle();
  assert.equal(x.sockets.length, 3, 'reconnected without waiting');
  await failAttempt(x);
  assert.equal(lastState(x).delay, 2500, 'attempts counted from 0 again');

  x.doc.visibilityState = 'hidden';
  x.doc.dispatch('visibilitychange');
  await settle();
  assert.equal(x.sockets.length, 3, 'hidden does not wake');
  x.doc.visibilityState = 'visible';
  x.doc.dispatch('visibilitychange');
  await settle();
  assert.equal(x.sockets.length, 4);
});

test('offline (gave up) is left on online', async (t) => {
  const x = tab(t, { options: { maxReconnectAttempts: 1 } });
  x.client.connect();
  await failAttempt(x);
  await x.clock.advance(2500);
  await failAttempt(x);
  assert.equal(x.client.state, 'offline');
  x.win.dispatch('online');
  await settle();
  assert.equal(x.client.state, 'connecting');
  await openTab(x);
  assert.equal(x.client.state, 'open');
});

test('the browser going offline while reconnecting pauses until online', async (t) => {
  const x = tab(t);
  x.client.connect();
  await failAttempt(x);
  x.win.dispatch('offline');
  assert.equal(x.client.state, 'offline');
  assert.equal(lastState(x).reason, 'network');
  await x.clock.advance(10 * 60 * 1000);
  assert.equal(x.sockets.length, 1);
  x.win.dispatch('online');
  await settle();
  assert.equal(x.sockets.length, 2);
});

test('offline on an open socket: a ping; no answer means offline until online, no attempts used', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x);
  ws.autoPong = false;                  // half-open: nothing gets through
  x.nav.onLine = false;
  x.win.dispatch('offline');
  await settle();
  assert.equal(ws.frames('ping').length, 1);
  assert.equal(x.client.state, 'open');
  await x.clock.advance(10000);
  assert.equal(x.client.state, 'offline');
  assert.equal(lastState(x).reason, 'network');
  assert.equal(x.sockets.length, 1);
  await x.clock.advance(10 * 60 * 1000);
  assert.equal(x.sockets.length, 1, 'no attempts while the browser is offline');
  x.nav.onLine = true;
  x.win.dispatch('online');
  await settle();
  assert.equal(x.sockets.length, 2);
  await openTab(x);
  assert.equal(x.client.state, 'open');
});

test('offline on an open socket that still answers: nothing happens', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x);
  x.win.dispatch('offline');
  await x.clock.advance(20000);
  assert.equal(ws.frames('ping').length, 1);
  assert.equal(x.client.state, 'open');
});

test('a close while navigator.onLine is false waits for online instead of retrying', async (t) => {
  const x = tab(t);
  x.client.connect();
  await openTab(x);
  x.nav.onLine = false;
  x.socket().serverClose(1006);
  await settle();
  assert.equal(x.client.state, 'offline');
  assert.equal(lastState(x).code, 1006);
  x.nav.onLine = true;
  x.win.dispatch('online');
  await settle();
  assert.equal(x.sockets.length, 2);
  assert.equal(lastState(x).attempt, 0);
});

test('visible again on an open socket checks it with a ping; no answer means reconnect', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x);
  ws.autoPong = false;
  x.doc.dispatch('visibilitychange');
  await settle();
  assert.equal(ws.frames('ping').length, 1);
  await x.clock.advance(9999);
  assert.equal(x.client.state, 'open');
  await x.clock.advance(1);
  assert.equal(ws.closed.code, 4000);
  assert.equal(x.client.state, 'reconnecting');
});

test('an idle connection is pinged every heartbeat interval and kept while it answers', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { heartbeat: 30 });
  await x.clock.advance(30000);
  assert.equal(ws.frames('ping').length, 1);
  await x.clock.advance(60000);
  assert.equal(ws.frames('ping').length, 3);
  assert.equal(x.client.state, 'open');
  ws.autoPong = false;
  await x.clock.advance(40000);
  assert.equal(x.client.state, 'reconnecting', 'a dead connection is noticed');
});

test('no welcome within connectTimeout counts as a failed attempt', async (t) => {
  const x = tab(t);
  x.client.connect();
  await settle();
  x.socket().serverOpen();          // TCP and upgrade fine, then silence
  await x.clock.advance(14999);
  assert.equal(x.client.state, 'connecting');
  await x.clock.advance(1);
  assert.equal(x.client.state, 'reconnecting');
  assert.ok(x.sockets[0].closed);
});

test('reconnect() goes at once and takes the connection back after replaced', async (t) => {
  const x = tab(t);
  x.client.connect();
  await openTab(x);
  x.socket().serverClose(4009);
  await settle();
  assert.equal(x.client.state, 'replaced');
  x.client.reconnect();
  await settle();
  assert.equal(x.sockets.length, 2);
  await openTab(x);
  assert.equal(x.client.state, 'open');
});

test('close() stops everything: no timers left, no reconnect', async (t) => {
  const x = makeTab();
  x.client.connect();
  await openTab(x, { heartbeat: 30 });
  x.client.close();
  assert.equal(x.client.state, 'closed');
  assert.equal(x.sockets[0].closed.code, 1000);
  assert.equal(x.clock.pending().length, 0);
  assert.equal(x.win.count('online'), 0, 'page listeners removed');
  assert.equal(x.doc.count('visibilitychange'), 0);
  await x.clock.advance(60000);
  assert.equal(x.sockets.length, 1);
});
