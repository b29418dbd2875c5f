// tests/client/instance.test.mjs: one connection per tab.  A page holds at
// most one client per relay (a second construction throws, get() returns the
// first), connect() never opens a second socket, the client_instance is
// stable per tab (sessionStorage) and different between tabs, and a
// duplicated tab (sessionStorage copied) takes a new instance id instead of
// replacing the original tab's connection.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ParleyClient, ParleyError } from '../../contrib/client/parley.js';
import { makeTab, openTab, settle, MemoryStorage, FakeClock, makeBroadcastBus, makeWebSocketClass, makeTokenService } from './fakes.mjs';

function tab(t, opts = {}) {
  const x = makeTab(opts);
  t.after(() => x.client.close());
  return x;
}

test('a second client for the same relay in one page throws; get() returns the first', async (t) => {
  const x = tab(t);
  const opts = { url: 'ws://relay.test/ws', WebSocket: x.FakeWebSocket, fetch: x.tokens.fetch, storage: new MemoryStorage(), sessionStorage: new MemoryStorage(), window: null, document: null, BroadcastChannel: null };
  assert.throws(() => new ParleyClient(opts), (e) => e instanceof ParleyError && e.code === 'duplicate_client');
  assert.equal(ParleyClient.get(opts), x.client);
  assert.equal(ParleyClient.get(opts), ParleyClient.get(opts));
  // A different relay is a different slot.
  const other = ParleyClient.get({ ...opts, url: 'ws://other.test/ws' });
  t.after(() => other.close());
  assert.notEqual(other, x.client);
});

test('close() frees the slot', async (t) => {
  const x = makeTab();
  x.client.close();
  const y = tab(t);          // same options: would throw if the slot were taken
  assert.notEqual(y.client, x.client);
});

test('get() from many "renders" opens one socket', async (t) => {
  const clock = new FakeClock();
  const { FakeWebSocket, sockets } = makeWebSocketClass(clock);
  const tokens = makeTokenService(clock);
  const opts = {
    url: 'ws://render.test/ws', clock, WebSocket: FakeWebSocket, fetch: tokens.fetch,
    storage: new MemoryStorage(), sessionStorage: new MemoryStorage(), window: null, document: null, BroadcastChannel: null,
  };
  for (let i = 0; i < 50; i++)
    ParleyClient.get(opts).connect();
  t.after(() => ParleyClient.get(opts).close());
  await settle();
  assert.equal(sockets.length, 1);
  assert.equal(tokens.calls.length, 1);
  sockets[0].welcome();
  await settle();
  for (let i = 0; i < 50; i++)
    ParleyClient.get(opts).connect();
  await settle();
  assert.equal(sockets.length, 1);
});

test('connect() resolves with the welcome; repeated calls while connecting share it', async (t) => {
  const x = tab(t);
  const a = x.client.connect();
  const b = x.client.connect();
  await settle();
  assert.equal(x.sockets.length, 1);
  x.socket().welcome({ user: { id: 1, name: 'alice' } });
  const [wa, wb] = await Promise.all([a, b]);
  assert.equal(wa.type, 'welcome');
  assert.equal(wa, wb);
  assert.deepEqual(x.client.user, { id: 1, name: 'alice' });
  assert.equal(await x.client.connect(), wa, 'already open');
});

test('connect() rejects when the client stops instead', async (t) => {
  const x = tab(t);
  x.tokens.failWith(401, { error: 'invalid_session', message: 'x' });
  await assert.rejects(x.client.connect(), { code: 'signed_out' });
});

test('the instance id is kept in sessionStorage: the same after a reload, different in another tab', async (t) => {
  const session = new MemoryStorage();
  const storage = new MemoryStorage();
  const a = makeTab({ sessionStorage: session, storage });
  const id = a.client.instanceId;
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.equal(session.getItem('parley:v1:instance'), id);
  a.client.close();
  const b = makeTab({ sessionStorage: session, storage, options: { uuid: () => '11111111-1111-4111-8111-111111111111' } });
  assert.equal(b.client.instanceId, id, 'reload');
  b.client.close();
  const c = tab(t, { sessionStorage: new MemoryStorage(), storage, options: { uuid: () => '22222222-2222-4222-8222-222222222222' } });
  assert.equal(c.client.instanceId, '22222222-2222-4222-8222-222222222222', 'another tab');
});

test('a duplicated tab (copied sessionStorage) takes a new instance id before it connects', async (t) => {
  const clock = new FakeClock();
  const bus = makeBroadcastBus();
  const storage = new MemoryStorage();
  const s1 = new MemoryStorage();
  const a = tab(t, { clock, storage, sessionStorage: s1, BroadcastChannel: bus, options: { url: 'ws://a/ws', uuid: () => 'aaaaaaaa-0000-4000-8000-000000000001' } });
  a.client.connect();
  await openTab(a);
  // The browser's "Duplicate tab" copies sessionStorage.
  const s2 = new MemoryStorage();
  s2.setItem('parley:v1:instance', s1.getItem('parley:v1:instance'));
  let n = 0;
  const b = tab(t, { clock, storage, sessionStorage: s2, BroadcastChannel: bus, options: { url: 'ws://b/ws', uuid: () => `bbbbbbbb-0000-4000-8000-00000000000${++n}` } });
  assert.equal(b.client.instanceId, a.client.instanceId, 'starts with the copied id');
  b.client.connect();
  await settle();
  assert.notEqual(b.client.instanceId, a.client.instanceId, 'took a new one');
  assert.equal(s2.getItem('parley:v1:instance'), b.client.instanceId);
  const protocols = b.socket().protocols;
  assert.equal(protocols[2], `parley.instance.${b.client.instanceId}`);
  assert.equal(a.client.state, 'open');
  // A tab that does not share the id is left alone.
  const c = tab(t, { clock, storage, sessionStorage: new MemoryStorage(), BroadcastChannel: bus, options: { url: 'ws://c/ws', uuid: () => 'cccccccc-0000-4000-8000-000000000001' } });
  await settle();
  assert.equal(c.client.instanceId, 'cccccccc-0000-4000-8000-000000000001');
});

test('the shared cross-tab connection is refused until it is implemented', () => {
  assert.throws(() => makeTab({ options: { shared: true } }), { code: 'bad_argument' });
});
