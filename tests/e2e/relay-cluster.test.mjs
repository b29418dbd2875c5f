// tests/e2e/relay-cluster.test.mjs: two relays on one database behave as
// one service (PROTOCOL.md §2, DESIGN.md "Why PostgreSQL is the bus"):
// messages sent through either reach the recipients' connections on both,
// the sender's other connections included and the sending one excluded;
// concurrent senders on both relays give one gapless seq per conversation
// delivered in order everywhere; membership removal and session
// revocation take effect on both; client_instance replacement and the
// per-user cap apply across the cluster; presence stays steady across a
// database restart (the relays re-register their connections by difference).

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

before(async () => {
  if (skip)
    return;
  pg = await setupDatabase('relay-cluster-pg');
  key = writeHmacKey(tmpDir('relay-cluster'));
  r1 = await startRelay({ pg, key, name: 'relay-c1' });
  r2 = await startRelay({ pg, key, name: 'relay-c2' });
});

after(async () => {
  for (const r of [r1, r2])
    if (r)
      await r.stop();
  if (pg)
    await pg.stop();
});

const on = async (relay, u) => Client.connect(relay.url, await mint(key, u));

test('private messages cross relays, to every connection but the sending one', { skip }, async () => {
  const a = await makeUser(pg, 'xa');
  const b = await makeUser(pg, 'xb');
  const a1 = await on(r1, a);
  const a2 = await on(r2, a);
  const b2 = await on(r2, b);
  const b1 = await on(r1, b);
  const ack = await a1.request({ type: 'private_message', to: b.id, body: 'across', client_id: 'x-1' });
  for (const c of [b2, b1, a2]) {
    const m = await c.next('private_message');
    assert.deepEqual([m.id, m.seq, m.body, m.from.id], [ack.id, 1, 'across', a.id]);
  }
  await a1.none('private_message');
  const back = await b2.request({ type: 'private_message', to: a.id, body: 'and back', client_id: 'x-1' });
  for (const c of [a1, a2, b1])
    assert.equal((await c.next('private_message')).id, back.id);
  await b2.none('private_message');
  for (const c of [a1, a2, b1, b2])
    c.close();
});

test('concurrent group senders on both relays: one gapless seq, in order everywhere', { skip }, async () => {
  const s1 = await makeUser(pg, 'gs');
  const s2 = await makeUser(pg, 'gs');
  const m = await makeUser(pg, 'gm');
  const gid = Number(await pg.psql(`SELECT parley.create_group('cl${process.pid}', 'public')`));
  for (const u of [s1, s2, m])
    await pg.psql(`SELECT parley.add_member(${gid}, ${u.id})`);
  const c1 = await on(r1, s1);
  const c2 = await on(r2, s2);
  const w1 = await on(r1, m);
  const w2 = await on(r2, m);
  const N = 25;
  for (let i = 0; i < N; i++) {
    c1.send({ type: 'group_message', group: gid, body: `one-${i}`, client_id: `one-${i}` });
    c2.send({ type: 'group_message', group: gid, body: `two-${i}`, client_id: `two-${i}` });
  }
  const acks = [];
  for (const c of [c1, c2])
    for (let i = 0; i < N; i++)
      acks.push(await c.next('ack', { timeoutMs: 10000 }));
  const all = Array.from({ length: 2 * N }, (_, i) => i + 1);
  assert.deepEqual(acks.map((x) => x.seq).sort((x, y) => x - y), all);
  for (const w of [w1, w2]) {
    const got = [];
    for (let i = 0; i < 2 * N; i++)
      got.push(await w.next('group_message', { timeoutMs: 10000 }));
    assert.deepEqual(got.map((x) => x.seq), all);
    // Each event matches its ack: same id for the same seq.
    const byseq = new Map(acks.map((x) => [x.seq, x.id]));
    for (const g of got)
      assert.equal(g.id, byseq.get(g.seq));
  }
  // Each sender sees the other's messages, not its own.
  for (const [c, other] of [[c1, 'two-'], [c2, 'one-']]) {
    const got = [];
    for (let i = 0; i < N; i++)
      got.push(await c.next('group_message', { timeoutMs: 10000 }));
    assert.ok(got.every((x) => x.body.startsWith(other)), JSON.stringify(got.map((x) => x.body)));
    await c.none('group_message', 200);
  }
  assert.equal(await pg.psql(`SELECT count(*) || ':' || min(seq) || ':' || max(seq) FROM parley.messages
                               WHERE conversation = 'group:${gid}'`), `${2 * N}:1:${2 * N}`);
  for (const c of [c1, c2, w1, w2])
    c.close();
});

test('membership removal and session revocation act on both relays', { skip }, async () => {
  const a = await makeUser(pg, 'ra');
  const b = await makeUser(pg, 'rb');
  const gid = Number(await pg.psql(`SELECT parley.create_group('rm${process.pid}')`));
  await pg.psql(`SELECT parley.add_member(${gid}, ${a.id}); SELECT parley.add_member(${gid}, ${b.id});`);
  const a1 = await on(r1, a);
  const b1 = await on(r1, b);
  const b2 = await on(r2, b);
  await pg.psql(`SELECT parley.remove_member(${gid}, ${b.id})`);
  for (const c of [b1, b2])
    assert.deepEqual(await c.next('removed_from_group'), { type: 'removed_from_group', group: gid });
  await a1.request({ type: 'group_message', group: gid, body: 'b is out', client_id: 'rm-1' });
  await b1.none('group_message', 300);
  await b2.none('group_message', 0);
  await pg.psql(`SELECT parley.revoke_sessions(${b.id})`);
  assert.equal((await b1.whenClosed()).code, 4011);
  assert.equal((await b2.whenClosed()).code, 4011);
  assert.equal((await a1.request({ type: 'ping' })).type, 'pong');
  a1.close();
});

test('client_instance replacement and the per-user cap hold across relays (4009)', { skip }, async () => {
  const u = await makeUser(pg, 'xi');
  const tab = async (relay, instance) => Client.connect(relay.url, await mint(key, u), { instance });
  const c1 = await tab(r1, 'tab-1');
  const c2 = await tab(r2, 'tab-1');
  const closed = await c1.whenClosed({ timeoutMs: 5000 });
  assert.deepEqual([closed.code, closed.reason], [4009, 'replaced']);
  assert.equal((await c2.request({ type: 'ping' })).type, 'pong');
  // PARLEY_MAX_CONN_PER_USER is 8 on both: eight more anywhere push out
  // the oldest of the nine, c2, and nothing else.
  const more = [];
  for (let i = 0; i < 8; i++)
    more.push(await tab(i % 2 ? r1 : r2, `more-${i}`));
  const gone = await c2.whenClosed({ timeoutMs: 5000 });
  assert.deepEqual([gone.code, gone.reason], [4009, 'too many connections']);
  for (const c of more)
    assert.equal((await c.request({ type: 'ping' })).type, 'pong');
  assert.ok(more.every((c) => c.closed === null));
  for (const c of more)
    c.close();
});

test('a database restart: sockets stay, presence does not flap, rows are kept', { skip }, async () => {
  const x = await makeUser(pg, 'px');
  const w = await makeUser(pg, 'pw');
  const cw = await on(r2, w);
  const x1 = await on(r1, x);
  assert.deepEqual(await cw.next((m) => m.type === 'presence' && m.user === x.id), { type: 'presence', user: x.id, online: true });
  const rows = () => pg.psql(`SELECT relay_id || '/' || conn_id || '@' || connected_at FROM parley.connections
                               WHERE user_id = ${x.id} ORDER BY 1`);
  const before = await rows();
  assert.match(before, /^relay-c1-\d+\/\d+@/);
  const at = [r1.logSize(), r2.logSize()];

  await pg.restart({ mode: 'fast' });
  // Both relays notice, reconnect and state their connections again.
  for (const [i, r] of [r1, r2].entries()) {
    await r.waitForLog(/presence: relay \S+ registered/, { from: at[i], timeoutMs: 20000 });
    await waitFor(async () => (await r.http('/healthz')).status === 200,
      { timeoutMs: 20000, what: `${r.name} /healthz 200 after the restart` });
  }
  // r1's row for x is the same row: no offline/online went out for x.
  assert.equal(await rows(), before);
  assert.match(r1.logText().slice(at[0]), /registered \(0 row\(s\) changed\)/);
  await cw.none((m) => m.type === 'presence' && m.user === x.id, 1000);
  const ul = await cw.request({ type: 'user_list' });
  assert.equal(ul.users.find((u) => u.id === x.id).online, true);
  assert.equal(x1.closed, null);
  assert.equal(cw.closed, null);
  // And the relays work as before: a message across, then a real offline.
  const ack = await x1.request({ type: 'private_message', to: w.id, body: 'still here', client_id: 'rs-1' });
  assert.equal(ack.type, 'ack');
  assert.equal((await cw.next('private_message')).id, ack.id);
  x1.close();
  assert.deepEqual(await cw.next((m) => m.type === 'presence' && m.user === x.id), { type: 'presence', user: x.id, online: false });
  cw.close();
});
