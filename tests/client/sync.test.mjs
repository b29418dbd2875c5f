// tests/client/sync.test.mjs: the browser client's catch-up against a fake
// socket: the last seq per conversation is remembered (and kept in storage),
// every (re)connect syncs from it, the first visit starts from the relay's
// conversation list instead of replaying history, messages are delivered
// once even when they come both live and by sync, and a gap is repaired.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeTab, openTab, catchUp, settle, msg, MemoryStorage, FakeClock, makeTokenService } from './fakes.mjs';

function tab(t, opts = {}) {
  const x = makeTab(opts);
  t.after(() => x.client.close());
  return x;
}

const ALICE = { id: 1, name: 'alice' };
const bodies = (x) => x.of('message').map((m) => m.body);

test('first connection: conversation_list sets the starting seqs, sync replays nothing old', async (t) => {
  const x = tab(t);
  x.client.connect();
  await settle();
  const ws = x.socket();
  ws.welcome({ user: ALICE });
  await settle();
  assert.equal(ws.sent[0].type, 'conversation_list');
  ws.reply('conversation_list', {
    conversations: [
      { conversation: 'group:1', last_seq: 40, read_seq: 38, title: 'lobby' },
      { conversation: 'dm:1:2', last_seq: 7, read_seq: 7, title: 'bob' },
    ],
  });
  await settle();
  const sync = ws.last('sync');
  assert.deepEqual(sync.since, { 'group:1': 40, 'dm:1:2': 7 });
  ws.push({ type: 'sync_done', ref: sync.ref });
  await settle();
  assert.equal(x.of('sync').length, 1);
  assert.equal(x.client.lastSeq('group:1'), 40);
  assert.deepEqual(x.storage.json('parley:v1:seqs:1'), { 'group:1': 40, 'dm:1:2': 7 });
});

test('after a reconnect, sync asks for exactly what came after the last seen seqs', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws1 = await openTab(x, { user: ALICE, conversations: [{ conversation: 'group:1', last_seq: 10 }, { conversation: 'dm:1:2', last_seq: 3 }] });
  ws1.push(msg(11, 'group:1', 11));
  ws1.push(msg(12, 'group:1', 12));
  ws1.push(msg(4, 'dm:1:2', 4));
  const p = x.client.sendGroup(1, 'mine');
  ws1.push({ type: 'ack', ref: p.clientId, client_id: p.clientId, id: 13, conversation: 'group:1', seq: 13, ts: 'x' });
  await settle();
  ws1.serverClose(1006);
  await x.clock.advance(2500);
  const ws2 = x.socket();
  ws2.welcome({ user: ALICE });
  await settle();
  const sync = await catchUp(ws2, {
    conversations: [{ conversation: 'group:1', last_seq: 15 }, { conversation: 'dm:1:2', last_seq: 4 }],
    messages: [msg(14, 'group:1', 14), msg(15, 'group:1', 15)],
  });
  assert.deepEqual(sync.since, { 'group:1': 13, 'dm:1:2': 4 }, 'own acked message counted');
  assert.deepEqual(bodies(x), ['m11', 'm12', 'm4', 'm14', 'm15']);
  assert.equal(x.client.lastSeq('group:1'), 15);
});

test('the seqs survive a reload: the next page syncs from them', async (t) => {
  const clock = new FakeClock();
  const storage = new MemoryStorage();
  const tokens = makeTokenService(clock);
  const a = makeTab({ clock, storage, tokens });
  a.client.connect();
  const ws = await openTab(a, { user: ALICE, conversations: [{ conversation: 'group:1', last_seq: 2 }] });
  ws.push(msg(3, 'group:1', 3));
  await settle();
  a.client.close();
  const b = tab(t, { clock, storage, tokens });      // another tab, or a reload
  b.client.connect();
  await settle();
  const ws2 = b.socket();
  ws2.welcome({ user: ALICE });
  await settle();
  const sync = await catchUp(ws2, { conversations: [{ conversation: 'group:1', last_seq: 5 }], messages: [msg(4, 'group:1', 4), msg(5, 'group:1', 5)] });
  assert.deepEqual(sync.since, { 'group:1': 3 });
  assert.deepEqual(bodies(b), ['m4', 'm5']);
});

test('tabs sharing storage never lower each other\'s stored seqs', async (t) => {
  const clock = new FakeClock();
  const storage = new MemoryStorage();
  const a = tab(t, { clock, storage, options: { url: 'ws://a/ws' } });
  const b = tab(t, { clock, storage, options: { url: 'ws://b/ws' } });
  a.client.connect();
  b.client.connect();
  const wa = await openTab(a, { user: ALICE, conversations: [{ conversation: 'group:1', last_seq: 1 }] });
  const wb = await openTab(b, { user: ALICE, conversations: [{ conversation: 'group:1', last_seq: 1 }] });
  wa.push(msg(2, 'group:1', 2));
  wa.push(msg(3, 'group:1', 3));
  await settle();
  wb.push(msg(2, 'group:1', 2));          // b is behind
  await settle();
  assert.equal(storage.json('parley:v1:seqs:1')['group:1'], 3);
});

test('a message that arrives live and again by sync is delivered once', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws1 = await openTab(x, { user: ALICE, conversations: [{ conversation: 'group:1', last_seq: 0 }] });
  ws1.push(msg(1, 'group:1', 1));
  ws1.push(msg(1, 'group:1', 1));                 // a duplicate frame
  await settle();
  ws1.serverClose(1006);
  await x.clock.advance(2500);
  const ws2 = x.socket();
  ws2.welcome({ user: ALICE });
  await settle();
  // A relay that resends more than asked (or a sync racing a live event).
  await catchUp(ws2, { conversations: [{ conversation: 'group:1', last_seq: 2 }], messages: [msg(1, 'group:1', 1), msg(2, 'group:1', 2)] });
  ws2.push(msg(2, 'group:1', 2));
  await settle();
  assert.deepEqual(x.of('message').map((m) => m.id), [1, 2]);
});

test('messages out of order are each delivered once and the seq only moves when contiguous', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE, conversations: [{ conversation: 'group:1', last_seq: 2 }] });
  ws.push(msg(4, 'group:1', 4));
  await settle();
  assert.equal(x.client.lastSeq('group:1'), 2, 'seq 3 still missing');
  ws.push(msg(3, 'group:1', 3));
  ws.push(msg(4, 'group:1', 4));
  await settle();
  assert.equal(x.client.lastSeq('group:1'), 4);
  assert.deepEqual(x.of('message').map((m) => m.seq), [4, 3]);
});

test('a gap still open after gapTimeout is repaired with a sync', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE, conversations: [{ conversation: 'group:1', last_seq: 2 }, { conversation: 'dm:1:2', last_seq: 5 }] });
  const syncs = ws.frames('sync').length;
  ws.push(msg(5, 'group:1', 5));
  await x.clock.advance(1999);
  assert.equal(ws.frames('sync').length, syncs);
  await x.clock.advance(1);
  assert.equal(ws.frames('sync').length, syncs + 1);
  assert.deepEqual(ws.last('sync').since, { 'group:1': 2, 'dm:1:2': 5 }, 'every conversation listed');
  ws.push(msg(3, 'group:1', 3));
  ws.push(msg(4, 'group:1', 4));
  ws.push(msg(5, 'group:1', 5));
  ws.reply('sync', {}, 'sync_done');
  await settle();
  assert.deepEqual(x.of('message').map((m) => m.seq), [5, 3, 4]);
  assert.equal(x.client.lastSeq('group:1'), 5);
});

test('a gap closed in time causes no sync', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE, conversations: [{ conversation: 'group:1', last_seq: 2 }] });
  const syncs = ws.frames('sync').length;
  ws.push(msg(5, 'group:1', 4));
  await x.clock.advance(500);
  ws.push(msg(4, 'group:1', 3));
  await x.clock.advance(5000);
  assert.equal(ws.frames('sync').length, syncs);
});

test('a conversation that first appears live starts at its first message', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  ws.push(msg(90, 'dm:1:3', 17, { from: { id: 3, name: 'carol' } }));
  await x.clock.advance(5000);
  assert.equal(x.client.lastSeq('dm:1:3'), 17);
  assert.equal(ws.frames('sync').length, 1, 'no sync of its history');
});

test('on reconnect, a conversation new to this client replays at most syncBacklog messages', async (t) => {
  const x = tab(t, { options: { syncBacklog: 10 } });
  x.client.connect();
  const ws1 = await openTab(x, { user: ALICE, conversations: [{ conversation: 'group:1', last_seq: 2 }] });
  ws1.serverClose(1006);
  await x.clock.advance(2500);
  const ws2 = x.socket();
  ws2.welcome({ user: ALICE });
  await settle();
  const sync = await catchUp(ws2, {
    conversations: [
      { conversation: 'group:1', last_seq: 2 },
      { conversation: 'dm:1:4', last_seq: 1 },       // a new DM while away
      { conversation: 'group:9', last_seq: 500 },    // joined elsewhere
    ],
  });
  assert.deepEqual(sync.since, { 'group:1': 2, 'dm:1:4': 0, 'group:9': 490 });
});

test('sync_done with more: true asks again from the new seqs', async (t) => {
  const x = tab(t);
  x.client.connect();
  await settle();
  const ws = x.socket();
  ws.welcome({ user: ALICE });
  await settle();
  ws.reply('conversation_list', { conversations: [{ conversation: 'group:1', last_seq: 0 }] });
  await settle();
  ws.push(msg(1, 'group:1', 1));
  ws.reply('sync', { more: true }, 'sync_done');
  await settle();
  assert.equal(ws.frames('sync').length, 2);
  assert.deepEqual(ws.last('sync').since, { 'group:1': 1 });
  ws.push(msg(2, 'group:1', 2));
  ws.reply('sync', {}, 'sync_done');
  await settle();
  assert.equal(ws.frames('sync').length, 2);
  assert.deepEqual(bodies(x), ['m1', 'm2']);
});

test('joining a group baselines its conversation (its history is not replayed)', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE });
  const p = x.client.joinGroup(5);
  ws.reply('join_group', { group: 5 }, 'group_joined');
  await p;
  await settle();
  ws.reply('conversation_list', { conversations: [{ conversation: 'group:5', last_seq: 300 }] });
  await settle();
  assert.equal(x.client.lastSeq('group:5'), 300);
  assert.equal(x.of('members').at(-1).type, 'group_joined');
});

test('signing out forgets the in-memory seqs; a different user gets their own', async (t) => {
  const x = tab(t);
  x.client.connect();
  const ws = await openTab(x, { user: ALICE, conversations: [{ conversation: 'group:1', last_seq: 9 }] });
  x.client.markRead('group:1', 9);
  assert.equal(ws.frames('read').length, 1);
  ws.serverClose(4011);
  await settle();
  assert.equal(x.client.lastSeq('group:1'), 0);
  x.client.connect();
  await settle();
  const ws2 = x.socket();
  ws2.welcome({ user: { id: 2, name: 'bob' } });
  await settle();
  const sync = await catchUp(ws2, { conversations: [{ conversation: 'group:1', last_seq: 9 }] });
  assert.deepEqual(sync.since, { 'group:1': 9 });
  assert.equal(ws2.frames('read').length, 0, "the previous user's read positions are not sent");
  assert.ok(x.storage.json('parley:v1:seqs:2'));
  assert.deepEqual(x.storage.json('parley:v1:seqs:1'), { 'group:1': 9 });
});
