// tests/client/requests.test.mjs: the browser client's request/reply
// commands (ref correlation, timeouts, errors, waiting for the connection,
// resending after a reconnect), the fire-and-forget read and typing, and the
// events it re-emits (presence, typing, read, members, error).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeTab, openTab, settle } from './fakes.mjs';

function tab(t, opts = {}) {
  const x = makeTab(opts);
  t.after(() => x.client.close());
  return x;
}

const ALICE = { id: 1, name: 'alice' };

test('each command has its own ref and gets the reply with that ref', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  const g = x.client.groupList();
  const u = x.client.userList();
  const h = x.client.history('group:1', { beforeSeq: 40, limit: 20 });
  const gf = ws.last('group_list');
  const uf = ws.last('user_list');
  const hf = ws.last('history');
  assert.equal(new Set([gf.ref, uf.ref, hf.ref]).size, 3);
  assert.deepEqual({ ...hf, ref: 'x' }, { type: 'history', ref: 'x', conversation: 'group:1', before_seq: 40, limit: 20 });
  // Replies in another order than the commands.
  ws.push({ type: 'history', ref: hf.ref, conversation: 'group:1', messages: [], more: false });
  ws.push({ type: 'user_list', ref: uf.ref, users: [{ id: 2, name: 'bob', online: true }] });
  ws.push({ type: 'group_list', ref: gf.ref, groups: [{ id: 1, name: 'lobby', visibility: 'public', member: true, role: 'owner' }] });
  assert.equal((await g).groups[0].name, 'lobby');
  assert.equal((await u).users[0].name, 'bob');
  assert.equal((await h).more, false);
});

test('the other commands send what PROTOCOL.md says', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  x.client.conversationList().catch(() => {});
  x.client.joinGroup('4').catch(() => {});
  x.client.leaveGroup(4).catch(() => {});
  x.client.ping().catch(() => {});
  x.client.history('dm:1:2').catch(() => {});
  const strip = (f) => { const { ref, ...rest } = f; assert.ok(ref); return rest; };
  assert.deepEqual(strip(ws.last('conversation_list')), { type: 'conversation_list' });
  assert.deepEqual(strip(ws.last('join_group')), { type: 'join_group', group: 4 });
  assert.deepEqual(strip(ws.last('leave_group')), { type: 'leave_group', group: 4 });
  assert.deepEqual(strip(ws.last('ping')), { type: 'ping' });
  assert.deepEqual(strip(ws.last('history')), { type: 'history', conversation: 'dm:1:2' });
});

test('an error reply rejects with its code', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  const p = x.client.joinGroup(9);
  const f = ws.last('join_group');
  ws.push({ type: 'error', ref: f.ref, code: 'forbidden', message: 'private group' });
  await assert.rejects(p, { name: 'ParleyError', code: 'forbidden', message: 'private group' });
});

test('no reply within requestTimeout rejects with timeout', async (t) => {
  const x = tab(t, { options: { requestTimeout: 3000 } });
  x.client.connect();
  await openTab(x, { user: ALICE });
  const p = x.client.groupList();
  let err = null;
  p.catch((e) => { err = e; });
  await x.clock.advance(2999);
  assert.equal(err, null);
  await x.clock.advance(1);
  assert.equal(err.code, 'timeout');
});

test('a command made while connecting is sent after the welcome', async (t) => {
  const x = tab(t);
  const p = x.client.userList();
  x.client.connect();
  await settle();
  const ws = x.socket();
  ws.welcome({ user: ALICE });
  await settle();
  const f = ws.last('user_list');
  assert.ok(f);
  ws.push({ type: 'user_list', ref: f.ref, users: [] });
  assert.deepEqual((await p).users, []);
});

test('a command whose connection dropped is sent again after the reconnect', async (t) => {
  const x = tab(t, { options: { requestTimeout: 30000 } });
  x.client.connect();
  const ws1 = await openTab(x, { user: ALICE });
  const p = x.client.groupList();
  const ref = ws1.last('group_list').ref;
  ws1.serverClose(1006);
  await x.clock.advance(2500);
  const ws2 = await openTab(x, { user: ALICE });
  const f = ws2.last('group_list');
  assert.equal(f.ref, ref);
  ws2.push({ type: 'group_list', ref, groups: [] });
  assert.deepEqual((await p).groups, []);
});

test('commands are refused at once when the client has stopped', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  const pending = x.client.groupList();
  ws.serverClose(4009);
  await assert.rejects(pending, { code: 'replaced' });
  await assert.rejects(x.client.userList(), { code: 'replaced' });
});

test('typing is sent at most once per typingInterval per conversation, only when open', async (t) => {
  const x = tab(t);
  assert.equal(x.client.typing('group:1'), false, 'not open');
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  assert.equal(x.client.typing('group:1'), true);
  assert.equal(x.client.typing('group:1'), false);
  assert.equal(x.client.typing('dm:1:2'), true);
  await x.clock.advance(2999);
  assert.equal(x.client.typing('group:1'), false);
  await x.clock.advance(1);
  assert.equal(x.client.typing('group:1'), true);
  assert.deepEqual(ws.frames('typing').map((f) => f.conversation), ['group:1', 'dm:1:2', 'group:1']);
  assert.ok(ws.frames('typing').every((f) => Object.keys(f).sort().join() === 'conversation,type'));
});

test('markRead sends forward moves only, and the latest again after a reconnect', async (t) => {
  const x = tab(t);
  x.client.markRead('group:1', 3);         // before connecting: kept
  x.client.connect();
  const ws1 = await openTab(x, { user: ALICE });
  assert.deepEqual(ws1.frames('read').map((f) => [f.conversation, f.seq]), [['group:1', 3]]);
  x.client.markRead('group:1', 2);
  x.client.markRead('group:1', 5);
  assert.deepEqual(ws1.frames('read').map((f) => f.seq), [3, 5]);
  ws1.serverClose(1006);
  await x.clock.advance(2500);
  const ws2 = await openTab(x, { user: ALICE });
  assert.deepEqual(ws2.frames('read').map((f) => [f.conversation, f.seq]), [['group:1', 5]]);
});

test('relay events come out as presence, typing, read, members and error events', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  ws.push({ type: 'presence', user: 2, online: true });
  ws.push({ type: 'typing', conversation: 'group:1', user: { id: 2, name: 'bob' } });
  ws.push({ type: 'read', conversation: 'group:1', seq: 4 });
  ws.push({ type: 'member_joined', group: 1, user: 3 });
  ws.push({ type: 'member_left', group: 1, user: 3 });
  ws.push({ type: 'removed_from_group', group: 2 });
  ws.push({ type: 'error', code: 'rate_limited', message: 'slow down' });
  await settle();
  assert.deepEqual(x.of('presence'), [{ type: 'presence', user: 2, online: true }]);
  assert.equal(x.of('typing')[0].conversation, 'group:1');
  assert.equal(x.of('read')[0].seq, 4);
  assert.deepEqual(x.of('members').map((m) => m.type), ['member_joined', 'member_left', 'removed_from_group']);
  assert.equal(x.of('error').at(-1).code, 'rate_limited');
});

test('a listener that throws does not break the client; the error goes to reportError', async (t) => {
  const errors = [];
  const x = tab(t, { options: { reportError: (e) => errors.push(e) } });
  x.client.on('state', () => { throw new Error('app bug'); });
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  assert.equal(x.client.state, 'open');
  assert.equal(ws.frames('sync').length, 1);
  assert.deepEqual(errors.map((e) => e.message), ['app bug', 'app bug'], 'connecting, open');
});

test('on() returns an unsubscribe function; once() fires once', async (t) => {
  const x = tab(t);
  const seen = [];
  const off = x.client.on('presence', (e) => seen.push(['on', e.user]));
  x.client.once('presence', (e) => seen.push(['once', e.user]));
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  ws.push({ type: 'presence', user: 2, online: true });
  off();
  ws.push({ type: 'presence', user: 3, online: true });
  assert.deepEqual(seen, [['on', 2], ['once', 2]]);
});
