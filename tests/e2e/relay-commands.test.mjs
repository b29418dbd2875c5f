// tests/e2e/relay-commands.test.mjs: the rest of PROTOCOL.md §2 on two
// relays sharing one database: history, sync/sync_done, conversation_list,
// read and typing (reaching the user's other connections on both relays),
// join_group/leave_group/group_list, user_list and presence across the
// cluster (including a relay killed with SIGKILL being swept), heartbeats
// (4000 for a client that never answers pings), a slow consumer closed
// with 4030 and made whole by sync, and PARLEY_PRESENCE_SCOPE=contacts.

import { test, before, after } from 'node:test';
import {
  assert, skipReason, setupDatabase, writeHmacKey, makeUser, mint, startRelay,
  Client, tmpDir, waitFor,
} from './relay-helpers.mjs';

const skip = skipReason() || false;
let pg;
let key;
let r1;
let r2;

// Short heartbeats so that timeouts and the sweep fit in a test.
const FAST = { WS_HEARTBEAT_INTERVAL: '1s', WS_CONNECTION_TIMEOUT: '3s' };

before(async () => {
  if (skip)
    return;
  pg = await setupDatabase('relay-cmd-pg');
  key = writeHmacKey(tmpDir('relay-cmd'));
  r1 = await startRelay({ pg, key, name: 'relay-cmd1', env: FAST });
  r2 = await startRelay({ pg, key, name: 'relay-cmd2', env: FAST });
});

after(async () => {
  for (const r of [r1, r2])
    if (r)
      await r.stop();
  if (pg)
    await pg.stop();
});

const on = async (relay, u) => Client.connect(relay.url, await mint(key, u));
const dm = (a, b) => `dm:${Math.min(a.id, b.id)}:${Math.max(a.id, b.id)}`;

async function send(c, to, body, cid) {
  const ack = await c.request({ type: 'private_message', to: to.id, body, client_id: cid });
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  return ack;
}

test('history: newest first page ascending, before_seq pages back, access checked', { skip }, async () => {
  const a = await makeUser(pg, 'ha');
  const b = await makeUser(pg, 'hb');
  const c = await makeUser(pg, 'hc');
  const ca = await on(r1, a);
  for (let i = 1; i <= 5; i++)
    await send(ca, b, `h${i}`, `h-${i}`);
  const cb = await on(r2, b);
  const h1 = await cb.request({ type: 'history', conversation: dm(a, b), limit: 3, ref: 'h1' });
  assert.deepEqual([h1.type, h1.ref, h1.conversation, h1.more], ['history', 'h1', dm(a, b), true]);
  assert.deepEqual(h1.messages.map((m) => [m.seq, m.body]), [[3, 'h3'], [4, 'h4'], [5, 'h5']]);
  const m3 = h1.messages[0];
  assert.deepEqual(Object.keys(m3).sort(), ['body', 'client_id', 'conversation', 'from', 'id', 'seq', 'to', 'ts', 'type']);
  assert.deepEqual([m3.type, m3.from, m3.to, m3.client_id], ['private_message', { id: a.id, name: a.name }, b.id, 'h-3']);
  const h2 = await cb.request({ type: 'history', conversation: dm(a, b), before_seq: 3, limit: 3 });
  assert.deepEqual([h2.messages.map((m) => m.seq), h2.more], [[1, 2], false]);
  const all = await cb.request({ type: 'history', conversation: dm(a, b) });
  assert.deepEqual([all.messages.length, all.more], [5, false]);
  const cc = await on(r1, c);
  assert.equal((await cc.request({ type: 'history', conversation: dm(a, b) })).code, 'forbidden');
  assert.equal((await cc.request({ type: 'history', conversation: 'dm:x' })).code, 'bad_request');
  assert.equal((await cc.request({ type: 'history', conversation: dm(a, b), limit: 101 })).code, 'bad_request');
  for (const x of [ca, cb, cc])
    x.close();
});

test('sync: what was missed, in seq order per conversation, then sync_done', { skip }, async () => {
  const a = await makeUser(pg, 'sa');
  const b = await makeUser(pg, 'sb');
  const gid = Number(await pg.psql(`SELECT parley.create_group('sync${process.pid}')`));
  await pg.psql(`SELECT parley.add_member(${gid}, ${a.id}); SELECT parley.add_member(${gid}, ${b.id});`);
  const ca = await on(r1, a);
  // Another connection of b on relay 2 sees the live events; once it has
  // them all, relay 2 has fanned everything out and a new connection gets
  // these messages from sync only.
  const live = await on(r2, b);
  for (let i = 1; i <= 4; i++)
    await send(ca, b, `s${i}`, `s-${i}`);
  for (let i = 1; i <= 2; i++)
    await ca.request({ type: 'group_message', group: gid, body: `g${i}`, client_id: `sg-${i}` });
  for (let i = 0; i < 6; i++)
    await live.next((m) => m.type === 'private_message' || m.type === 'group_message');
  live.close();
  const cb = await on(r2, b);
  cb.send({ type: 'sync', since: { [dm(a, b)]: 2 }, ref: 'sy' });
  const got = [];
  for (;;) {
    const m = await cb.next((x) => x.type !== 'presence');
    if (m.type === 'sync_done') {
      assert.deepEqual(m, { type: 'sync_done', ref: 'sy', more: false });
      break;
    }
    got.push(`${m.conversation}#${m.seq}:${m.body}`);
  }
  assert.deepEqual(got.filter((x) => x.startsWith('dm:')), [`${dm(a, b)}#3:s3`, `${dm(a, b)}#4:s4`]);
  assert.deepEqual(got.filter((x) => x.startsWith('group:')), [`group:${gid}#1:g1`, `group:${gid}#2:g2`]);
  const done = await cb.request({ type: 'sync', since: { [dm(a, b)]: 4, [`group:${gid}`]: 2 } });
  assert.deepEqual([done.type, done.more], ['sync_done', false]);
  assert.equal((await cb.request({ type: 'sync', since: { 'not a conversation': 1 } })).code, 'bad_request');
  assert.equal((await cb.request({ type: 'sync', since: [] })).code, 'bad_request');
  ca.close();
  cb.close();
});

test('conversation_list, read (to the other connections, both relays), typing', { skip }, async () => {
  const a = await makeUser(pg, 'ra');
  const b = await makeUser(pg, 'rb');
  const c = await makeUser(pg, 'rc');
  const gid = Number(await pg.psql(`SELECT parley.create_group('read${process.pid}')`));
  for (const u of [a, b, c])
    await pg.psql(`SELECT parley.add_member(${gid}, ${u.id})`);
  const a1 = await on(r1, a);
  for (let i = 1; i <= 4; i++)
    await send(a1, b, `r${i}`, `r-${i}`);
  const b1 = await on(r1, b);
  const b2 = await on(r2, b);
  const b3 = await on(r1, b);
  const list = await b1.request({ type: 'conversation_list', ref: 'cl' });
  assert.equal(list.type, 'conversation_list');
  assert.equal(list.ref, 'cl');
  const d = list.conversations.find((x) => x.conversation === dm(a, b));
  assert.deepEqual(d, { conversation: dm(a, b), last_seq: 4, read_seq: 0, title: a.name });
  assert.ok(list.conversations.some((x) => x.conversation === `group:${gid}` && x.title === `read${process.pid}`));

  b1.send({ type: 'read', conversation: dm(a, b), seq: 3, ref: 'rd' });
  for (const x of [b2, b3])
    assert.deepEqual(await x.next('read'), { type: 'read', conversation: dm(a, b), seq: 3 });
  await b1.none('read', 300);
  await b1.none((m) => m.ref === 'rd', 0);
  const list2 = await b2.request({ type: 'conversation_list' });
  assert.equal(list2.conversations.find((x) => x.conversation === dm(a, b)).read_seq, 3);
  const cc = await on(r2, c);
  const denied = await cc.request({ type: 'read', conversation: dm(a, b), seq: 1, ref: 'rx' });
  assert.deepEqual([denied.code, denied.ref], ['forbidden', 'rx']);

  a1.send({ type: 'typing', conversation: dm(a, b) });
  for (const x of [b1, b2, b3])
    assert.deepEqual(await x.next('typing'), { type: 'typing', conversation: dm(a, b), user: a.id });
  await cc.none('typing', 200);
  cc.send({ type: 'typing', conversation: `group:${gid}` });
  assert.deepEqual(await a1.next('typing'), { type: 'typing', conversation: `group:${gid}`, user: c.id });
  assert.equal((await b2.next('typing')).user, c.id);
  await cc.none('typing', 200);
  assert.equal((await cc.request({ type: 'typing', conversation: dm(a, b) })).code, 'forbidden');
  for (const x of [a1, b1, b2, b3, cc])
    x.close();
});

test('join_group, leave_group, group_list', { skip }, async () => {
  const u = await makeUser(pg, 'jg');
  const w = await makeUser(pg, 'jw');
  const pub = Number(await pg.psql(`SELECT parley.create_group('pub${process.pid}', 'public')`));
  const priv = Number(await pg.psql(`SELECT parley.create_group('priv${process.pid}', 'private')`));
  await pg.psql(`SELECT parley.add_member(${pub}, ${w.id}, 'owner')`);
  const cu = await on(r1, u);
  const cw = await on(r2, w);
  let gl = await cu.request({ type: 'group_list', ref: 'gl' });
  assert.deepEqual(gl.groups.find((g) => g.id === pub), { id: pub, name: `pub${process.pid}`, visibility: 'public', member: false, role: null });
  assert.equal(gl.groups.find((g) => g.id === priv), undefined);
  const j = await cu.request({ type: 'join_group', group: pub, ref: 'j' });
  assert.deepEqual(j, { type: 'group_joined', group: pub, ref: 'j' });
  assert.deepEqual(await cw.next('member_joined'), { type: 'member_joined', group: pub, user: u.id });
  gl = await cu.request({ type: 'group_list' });
  assert.deepEqual(gl.groups.find((g) => g.id === pub), { id: pub, name: `pub${process.pid}`, visibility: 'public', member: true, role: 'member' });
  const ack = await cw.request({ type: 'group_message', group: pub, body: 'hello newcomer', client_id: 'jg-1' });
  assert.equal((await cu.next('group_message')).id, ack.id);
  assert.equal((await cu.request({ type: 'join_group', group: priv })).code, 'forbidden');
  assert.equal((await cu.request({ type: 'join_group', group: 987654321 })).code, 'not_found');
  assert.deepEqual(await cu.request({ type: 'leave_group', group: pub, ref: 'l' }), { type: 'group_left', group: pub, ref: 'l' });
  assert.deepEqual(await cw.next('member_left'), { type: 'member_left', group: pub, user: u.id });
  await cw.request({ type: 'group_message', group: pub, body: 'gone', client_id: 'jg-2' });
  await cu.none('group_message', 300);
  cu.close();
  cw.close();
});

test('presence and user_list across relays; a killed relay is swept', { skip }, async () => {
  const watcher = await makeUser(pg, 'pw');
  const x = await makeUser(pg, 'px');
  const cw = await on(r2, watcher);
  // The connection row is written right after the welcome, off the connect path.
  let ul;
  await waitFor(async () => {
    ul = await cw.request({ type: 'user_list', ref: 'ul' });
    return ul.users.find((u) => u.id === watcher.id).online;
  }, { timeoutMs: 5000, what: 'the watcher online in user_list' });
  assert.equal(ul.ref, 'ul');
  assert.deepEqual(ul.users.find((u) => u.id === x.id), { id: x.id, name: x.name, online: false });

  const x1 = await on(r1, x);
  assert.deepEqual(await cw.next((m) => m.type === 'presence' && m.user === x.id), { type: 'presence', user: x.id, online: true });
  ul = await cw.request({ type: 'user_list' });
  assert.equal(ul.users.find((u) => u.id === x.id).online, true);
  const x2 = await on(r2, x);
  x1.close();
  await cw.none((m) => m.type === 'presence' && m.user === x.id, 500);
  x2.close();
  assert.deepEqual(await cw.next((m) => m.type === 'presence' && m.user === x.id), { type: 'presence', user: x.id, online: false });

  // A relay that dies without a word: its users go offline within 3 heartbeats.
  const r3 = await startRelay({ pg, key, name: 'relay-cmd3', env: FAST });
  const x3 = await on(r3, x);
  assert.equal((await cw.next((m) => m.type === 'presence' && m.user === x.id)).online, true);
  const t0 = Date.now();
  r3.kill('SIGKILL');
  await r3.stop();
  const off = await cw.next((m) => m.type === 'presence' && m.user === x.id, { timeoutMs: 8000 });
  assert.equal(off.online, false);
  assert.ok(Date.now() - t0 < 6000, `swept after ${Date.now() - t0} ms`);
  x3.terminate();
  cw.close();
});

test('heartbeats: pings are sent; a client that never answers is closed with 4000', { skip }, async () => {
  const u = await makeUser(pg, 'hbt');
  const deaf = await Client.open(r1.url, { protocols: ['parley.v1', `parley.token.${await mint(key, u)}`], autoPong: false });
  const live = await on(r1, u);
  let pings = 0;
  live.ws.on('ping', () => pings++);
  const t0 = Date.now();
  const closed = await deaf.whenClosed({ timeoutMs: 8000 });
  assert.equal(closed.code, 4000);
  assert.ok(Date.now() - t0 >= 2000, 'closed before the connection timeout');
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(pings >= 2, `only ${pings} pings`);
  assert.equal(live.closed, null);
  live.close();
});

test('a slow consumer is closed with 4030 and made whole by sync', { skip }, async () => {
  const r = await startRelay({ pg, key, name: 'relay-cmd-slow', env: { PARLEY_SEND_QUEUE: '128k', PARLEY_RATE: '1000/s' } });
  try {
    const a = await makeUser(pg, 'slowa');
    const b = await makeUser(pg, 'slowb');
    const ca = await on(r, a);
    const cb = await on(r, b);
    cb.ws.pause();                     // stop reading: the kernel buffers fill, then ours
    // 400 x 30 KB: more than the socket buffers of loopback hold.
    const body = 'x'.repeat(30000);
    const N = 400;
    // In batches of 100 (3 MB): a connection's waiting commands are bounded
    // (RELAY_LANE_BYTES, 4 MiB of bodies).
    for (let from = 1; from <= N; from += 100) {
      for (let i = from; i < from + 100; i++)
        ca.send({ type: 'private_message', to: b.id, body: `${i} ${body}`, client_id: `slow-${i}` });
      for (let i = from; i < from + 100; i++)
        assert.equal((await ca.next((m) => m.type === 'ack' || m.type === 'error', { timeoutMs: 20000 })).type, 'ack');
    }
    cb.ws.resume();
    const closed = await cb.whenClosed({ timeoutMs: 20000 });
    assert.equal(closed.code, 4030);
    const seen = cb.inbox.filter((m) => m.type === 'private_message').map((m) => m.seq);
    assert.ok(seen.length < N, 'nothing was held back');
    assert.deepEqual(seen, Array.from({ length: seen.length }, (_, i) => i + 1), 'what arrived is in order without gaps');
    // Reconnect once the relay has fanned out everything (so that what
    // follows is the sync): the listener works in commit order, so when a
    // later message reaches a watcher, all of these were handled.
    const w = await makeUser(pg, 'sloww');
    const cw = await on(r, w);
    await send(ca, w, 'sentinel', 'slow-sentinel');
    await cw.next('private_message', { timeoutMs: 20000 });
    cw.close();
    const again = await on(r, b);
    const last = seen.length ? seen[seen.length - 1] : 0;
    const rest = [];
    let more = true;
    let since = last;
    while (more) {
      again.send({ type: 'sync', since: { [dm(a, b)]: since }, ref: `sync-${since}` });
      for (;;) {
        const m = await again.next((x) => x.type === 'private_message' || x.type === 'sync_done', { timeoutMs: 20000 });
        if (m.type === 'sync_done') {
          more = m.more;
          break;
        }
        rest.push(m.seq);
        since = Math.max(since, m.seq);
      }
    }
    // Live events of the last messages may come in between (the listener
    // can still be fanning out): a client keeps the highest seq per
    // conversation and drops what it has.  Together: everything, once.
    const have = new Set(seen);
    for (const q of rest)
      have.add(q);
    assert.deepEqual([...have].sort((x, y) => x - y), Array.from({ length: N }, (_, i) => i + 1));
    assert.ok(rest.filter((q) => q > last).length >= N - last, 'sync did not bring everything after the last seq seen');
    ca.close();
    again.close();
  } finally {
    await r.stop();
  }
});

test('PARLEY_PRESENCE_SCOPE=contacts: presence and user_list only among users who share a group or a conversation', { skip }, async () => {
  const r = await startRelay({ pg, key, name: 'relay-cmd-contacts', env: { PARLEY_PRESENCE_SCOPE: 'contacts' } });
  try {
    const x = await makeUser(pg, 'cx');
    const mate = await makeUser(pg, 'cmate');
    const pal = await makeUser(pg, 'cpal');
    const stranger = await makeUser(pg, 'cstr');
    const gid = Number(await pg.psql(`SELECT parley.create_group('contacts${process.pid}')`));
    await pg.psql(`SELECT parley.add_member(${gid}, ${x.id}); SELECT parley.add_member(${gid}, ${mate.id});
                   SELECT * FROM parley.post_message(${pal.id}, '${dm(pal, x)}', 'hi', 'c-1');`);
    const at = async (u) => Client.connect(r.url, await mint(key, u));
    const cm = await at(mate);
    const cp = await at(pal);
    const cs = await at(stranger);
    const cx = await at(x);
    for (const c of [cm, cp])
      assert.deepEqual(await c.next((m) => m.type === 'presence' && m.user === x.id), { type: 'presence', user: x.id, online: true });
    await cs.none((m) => m.type === 'presence', 500);
    const ids = async (c) => (await c.request({ type: 'user_list' })).users.map((u) => u.id).sort((p, q) => p - q);
    const sorted = (...us) => us.map((u) => u.id).sort((p, q) => p - q);
    assert.deepEqual(await ids(cs), sorted(stranger));
    assert.deepEqual(await ids(cm), sorted(mate, x));
    assert.deepEqual(await ids(cp), sorted(pal, x));
    assert.deepEqual(await ids(cx), sorted(x, mate, pal));
    const ul = await cm.request({ type: 'user_list' });
    assert.equal(ul.users.find((u) => u.id === x.id).online, true);
    cx.close();
    for (const c of [cm, cp])
      assert.deepEqual(await c.next((m) => m.type === 'presence' && m.user === x.id), { type: 'presence', user: x.id, online: false });
    await cs.none((m) => m.type === 'presence', 300);
    for (const c of [cm, cp, cs])
      c.close();
  } finally {
    await r.stop();
  }
});
