// tests/client/outbox.test.mjs: the browser client's outbox against a fake
// socket, clock and storage: every send is persisted with a client_id until
// acked, sent again with the same client_id after a reconnect or a page
// reload, cleared by the ack, failed on permanent errors, retried on
// transient ones, and reported through events and the send() promise.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeTab, openTab, settle, msg, MemoryStorage, FakeClock, makeTokenService } from './fakes.mjs';

function tab(t, opts = {}) {
  const x = makeTab(opts);
  t.after(() => x.client.close());
  return x;
}

const outboxKey = (x) => `parley:v1:outbox:${x.client.instanceId}`;
const stored = (x) => x.storage.json(outboxKey(x)) || [];
const ALICE = { id: 1, name: 'alice' };

function ackFor(ws, frame, { id = 100, seq = 1 } = {}) {
  const conversation = frame.type === 'group_message' ? `group:${frame.group}` : `dm:1:${frame.to}`;
  ws.push({ type: 'ack', ref: frame.ref, client_id: frame.client_id, id, conversation, seq, ts: '2026-11-26T10:00:00.000Z' });
}

test('a message sent before connecting is persisted, then sent once open, and the ack clears it', async (t) => {
  const x = tab(t);
  const p = x.client.sendGroup(7, 'hello');
  assert.match(p.clientId, /^[0-9a-f-]{36}$/);
  assert.deepEqual(stored(x).map((e) => [e.client_id, e.body, e.group]), [[p.clientId, 'hello', 7]]);
  assert.equal(x.of('outbox')[0].status, 'pending');
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  const sent = ws.frames('group_message');
  assert.equal(sent.length, 1);
  assert.deepEqual({ ...sent[0] }, { type: 'group_message', ref: p.clientId, client_id: p.clientId, body: 'hello', group: 7 });
  assert.deepEqual(x.of('outbox').map((e) => e.status), ['pending', 'sent']);
  ackFor(ws, sent[0], { id: 55, seq: 3 });
  const ack = await p;
  assert.deepEqual(ack, { client_id: p.clientId, id: 55, conversation: 'group:7', seq: 3, ts: '2026-11-26T10:00:00.000Z' });
  assert.deepEqual(stored(x), [], 'removed from storage');
  assert.equal(x.storage.getItem(outboxKey(x)), null);
  assert.deepEqual(x.of('outbox').map((e) => e.status), ['pending', 'sent', 'acked']);
  assert.equal(x.of('ack').length, 1);
  assert.deepEqual(x.client.outbox(), []);
});

test('client_ids are unique per send and come from the injected uuid', async (t) => {
  const x = tab(t);
  const a = x.client.sendGroup(1, 'a');
  const b = x.client.sendGroup(1, 'b');
  assert.notEqual(a.clientId, b.clientId);
  assert.deepEqual(x.client.outbox().map((e) => e.body), ['a', 'b']);
});

test('an unacked message is sent again with the same client_id after a reconnect', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws1 = await openTab(x, { user: ALICE });
  const p = x.client.sendPrivate(2, 'hi bob');
  const f1 = ws1.last('private_message');
  assert.equal(f1.client_id, p.clientId);
  assert.equal(f1.to, 2);
  ws1.serverClose(1006);                 // the ack was lost with the connection
  await x.clock.advance(2500);
  const ws2 = await openTab(x, { user: ALICE, conversations: [{ conversation: 'dm:1:2', last_seq: 0 }] });
  const f2 = ws2.last('private_message');
  assert.equal(f2.client_id, p.clientId, 'same client_id: the relay stores it once');
  assert.equal(f2.body, 'hi bob');
  ackFor(ws2, f2, { id: 9, seq: 1 });
  assert.equal((await p).id, 9);
  // A late duplicate ack changes nothing and is not reported again.
  ackFor(ws2, f2, { id: 9, seq: 1 });
  await settle();
  assert.equal(x.of('ack').length, 1);
  assert.deepEqual(stored(x), []);
});

test('the outbox survives a page reload and is resent with the same client_id', async (t) => {
  const clock = new FakeClock();
  const storage = new MemoryStorage();
  const sessionStorage = new MemoryStorage();
  const tokens = makeTokenService(clock);
  const a = makeTab({ clock, storage, sessionStorage, tokens });
  a.client.connect();
  const wsA = await openTab(a, { user: ALICE });
  const p = a.client.sendGroup(3, 'before reload');
  assert.equal(wsA.frames('group_message').length, 1);
  const instance = a.client.instanceId;
  a.client.close();                       // the page goes away before the ack
  await assert.rejects(p, { code: 'closed' });

  const b = tab(t, { clock, storage, sessionStorage, tokens, options: { uuid: () => 'ffffffff-0000-4000-8000-000000000001' } });
  assert.equal(b.client.instanceId, instance, 'same tab, same instance');
  assert.deepEqual(b.client.outbox().map((e) => [e.client_id, e.status]), [[p.clientId, 'pending']]);
  b.client.connect();
  const wsB = await openTab(b, { user: ALICE, conversations: [{ conversation: 'group:3', last_seq: 4 }] });
  const f = wsB.last('group_message');
  assert.equal(f.client_id, p.clientId);
  assert.equal(f.body, 'before reload');
  ackFor(wsB, f, { id: 77, seq: 5 });
  await settle();
  assert.deepEqual(b.of('ack').map((e) => e.id), [77], 'reported by event after a reload');
  assert.deepEqual(stored(b), []);
});

test('a message of ours arriving by sync settles its outbox entry (acked in an earlier page)', async (t) => {
  const clock = new FakeClock();
  const storage = new MemoryStorage();
  const sessionStorage = new MemoryStorage();
  const a = makeTab({ clock, storage, sessionStorage });
  const p = a.client.sendGroup(3, 'x');
  a.client.close();
  await assert.rejects(p, { code: 'closed' });
  const b = tab(t, { clock, storage, sessionStorage });
  b.client.connect();
  await settle();
  const ws = b.socket();
  ws.welcome({ user: ALICE });
  await settle();
  // The relay gets the resend, but before its ack, sync brings the
  // message itself (stored by the first page).
  ws.reply('conversation_list', { conversations: [{ conversation: 'group:3', last_seq: 0 }] });
  await settle();
  ws.push(msg(40, 'group:3', 1, { from: ALICE, client_id: p.clientId, body: 'x' }));
  ws.reply('sync', {}, 'sync_done');
  await settle();
  assert.deepEqual(b.client.outbox(), []);
  assert.deepEqual(b.of('outbox').map((e) => e.status).slice(-1), ['acked']);
});

test('a permanent error fails the message: promise rejected, event, removed', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  const p = x.client.sendGroup(9, 'not a member');
  const f = ws.last('group_message');
  ws.push({ type: 'error', ref: f.ref, code: 'forbidden', message: 'not a member' });
  await assert.rejects(p, { name: 'ParleyError', code: 'forbidden' });
  assert.deepEqual(x.of('outbox').map((e) => e.status), ['pending', 'sent', 'failed']);
  assert.equal(x.of('outbox').at(-1).error.code, 'forbidden');
  assert.deepEqual(stored(x), []);
  ws.serverClose(1006);
  await x.clock.advance(2500);
  const ws2 = await openTab(x, { user: ALICE });
  assert.equal(ws2.frames('group_message').length, 0, 'never sent again');
});

for (const code of ['unavailable', 'rate_limited', 'internal']) {
  test(`error ${code} keeps the message and sends it again later with the same client_id`, async (t) => {
    const x = tab(t);
    x.client.connect();
    const ws = await openTab(x, { user: ALICE });
    const p = x.client.sendGroup(1, 'retry me');
    const f = ws.last('group_message');
    ws.push({ type: 'error', ref: f.ref, code, message: 'later' });
    await settle();
    assert.equal(x.of('outbox').at(-1).status, 'pending');
    assert.equal(stored(x).length, 1);
    await x.clock.advance(1250);          // 0.5 * 2000 (after 1 attempt) + 250
    assert.equal(ws.frames('group_message').length, 2);
    assert.equal(ws.last('group_message').client_id, f.client_id);
    ackFor(ws, ws.last('group_message'));
    assert.equal((await p).client_id, f.client_id);
  });
}

test('no ack within ackTimeout: sent again on the same connection; failed after maxSendAttempts', async (t) => {
  const x = tab(t, { options: { maxSendAttempts: 3 } });
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  const p = x.client.sendPrivate(2, 'anyone?');
  await x.clock.advance(20000);
  assert.equal(ws.frames('private_message').length, 2);
  await x.clock.advance(20000);
  assert.equal(ws.frames('private_message').length, 3);
  assert.equal(new Set(ws.frames('private_message').map((f) => f.client_id)).size, 1);
  await x.clock.advance(20000);
  await assert.rejects(p, { code: 'no_ack' });
  assert.deepEqual(stored(x), []);
});

test('a message larger than the relay accepts is refused at once, never queued', async (t) => {
  const x = tab(t, { options: { maxFrame: 1024 } });
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  await assert.rejects(x.client.sendGroup(1, 'é'.repeat(600)), { code: 'too_large' });
  assert.equal(ws.frames('group_message').length, 0);
  assert.deepEqual(stored(x), []);
  assert.equal(x.of('outbox').length, 0);
  x.client.sendGroup(1, 'ok');
  assert.equal(ws.frames('group_message').length, 1);
});

test('bad arguments are refused', async (t) => {
  const x = tab(t);
  await assert.rejects(x.client.send('room:1', 'x'), { code: 'bad_argument' });
  await assert.rejects(x.client.sendGroup(1, ''), { code: 'bad_argument' });
  await assert.rejects(x.client.sendPrivate(-1, 'x'), { code: 'bad_argument' });
  await assert.rejects(x.client.send('dm:1:2', 'x'), { code: 'not_connected' });
});

test('send(conversation) picks the other participant of a direct conversation', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: { id: 5, name: 'eve' } });
  x.client.send('dm:2:5', 'to 2');
  x.client.send('group:4', 'to group');
  await assert.rejects(x.client.send('dm:2:3', 'x'), { code: 'forbidden' });
  assert.equal(ws.last('private_message').to, 2);
  assert.equal(ws.last('group_message').group, 4);
  assert.equal(x.client.outbox()[0].conversation, 'dm:2:5');
});

test('messages queued while reconnecting go out in order after the welcome', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws1 = await openTab(x, { user: ALICE });
  ws1.serverClose(1006);
  await settle();
  x.client.sendGroup(1, 'one');
  x.client.sendGroup(1, 'two');
  x.client.sendPrivate(2, 'three');
  assert.equal(ws1.sent.filter((f) => f.body).length, 0);
  await x.clock.advance(2500);
  const ws2 = await openTab(x, { user: ALICE });
  assert.deepEqual(ws2.sent.filter((f) => f.body).map((f) => f.body), ['one', 'two', 'three']);
});

test('signed out (4011): the outbox is dropped and its promises rejected', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  const p = x.client.sendGroup(1, 'x');
  ws.serverClose(4011, 'session revoked');
  await assert.rejects(p, { code: 'signed_out' });
  assert.equal(x.client.state, 'signed_out');
  assert.deepEqual(stored(x), []);
  await assert.rejects(x.client.sendGroup(1, 'y'), { code: 'signed_out' });
});

test('entries queued by another user are not sent by the user who connects now', async (t) => {
  const clock = new FakeClock();
  const storage = new MemoryStorage();
  const sessionStorage = new MemoryStorage();
  const a = makeTab({ clock, storage, sessionStorage });
  a.client.connect();
  await openTab(a, { user: ALICE });
  a.socket().serverClose(1006);
  await settle();
  a.client.sendGroup(1, 'alice wrote this');
  a.client.close();
  const b = tab(t, { clock, storage, sessionStorage, tokens: makeTokenService(clock, { sub: '2' }) });
  b.client.connect();
  const ws = await openTab(b, { user: { id: 2, name: 'bob' } });
  assert.equal(ws.frames('group_message').length, 0);
  assert.equal(b.of('outbox').at(-1).status, 'failed');
  assert.deepEqual(stored(b), []);
});

test('logout() posts to logoutUrl, stops in signed_out and clears the outbox', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  const p = x.client.sendGroup(1, 'x');
  x.tokens.failWith(204, null);
  await x.client.logout();
  assert.equal(x.tokens.calls.at(-1).url, '/auth/logout');
  assert.equal(x.tokens.calls.at(-1).init.method, 'POST');
  assert.equal(x.tokens.calls.at(-1).init.credentials, 'include');
  assert.equal(x.client.state, 'signed_out');
  assert.equal(ws.closed.code, 1000);
  await assert.rejects(p, { code: 'signed_out' });
  assert.deepEqual(stored(x), []);
});
