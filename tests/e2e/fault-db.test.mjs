// tests/e2e/fault-db.test.mjs: database faults (issue 4, "Database faults").
//
// Two relays (A and B) on one PostgreSQL, each connecting as a role of its
// own (relay_a, relay_b) so that the test can find its backends in
// pg_stat_activity and keep one relay from reconnecting (ALTER ROLE ...
// NOLOGIN) while the other goes on.  Faults:
//   - A's LISTEN connection dropped (pg_terminate_backend) while messages
//     are committed through B, through A's still-working pool and directly
//     with parley.post_message: once A's listener is back, A's online
//     recipients get every one of them without asking, in seq order, once;
//   - and when nothing was committed meanwhile, the catch-up delivers
//     nothing again (not the messages a user already has);
//   - A's pool and presence connections dropped: sends on A get `error
//     unavailable`, never an ack, /healthz 503; back to 200 after, and the
//     retry with the same client_id is stored once;
//   - PostgreSQL stopped (fast) and started: both relays stay up, 503 then
//     200, connections survive, sends meanwhile get `error unavailable`;
//   - PostgreSQL restarted fast and immediate while clients keep sending
//     with retries: every acked message is stored once, no seq gap, and
//     every recipient got every one of them live, in order, exactly once;
//   - a silent partition between a relay and PostgreSQL (a network namespace
//     with veth pairs; PostgreSQL's replies blackholed): the time until the
//     relay notices is measured and bounded by libpq's keepalives and
//     tcp_user_timeout (common/db.c: 15 s), sends meanwhile get
//     `error unavailable`, and what was committed during the partition is
//     delivered after it heals.  Skipped with the reason when namespaces
//     cannot be made (not root, no ip(8)).

import { test, before, after } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import {
  assert, skipReason, setupDatabase, writeHmacKey, mint, Client, tmpDir, metric,
} from './relay-helpers.mjs';
import {
  startRelayAt, makeUsers, makeGroup, dmConv, ReliableClient, seqGaps,
  netnsSkipReason, makeNetns, waitFor, delay, stopAllClients,
} from './fault-helpers.mjs';

const skip = skipReason() || false;
const nsSkip = skip || netnsSkipReason() || false;
// The partition must be noticed within libpq's tcp_user_timeout (15 s,
// common/db.c) plus the listener's poll (1 s); allow some slack for a
// loaded machine.
const PARTITION_BOUND_MS = 20000;

let pg;
let key;
let A;
let B;
let net = null;

const roleInfo = (role) => pg.conninfo.replace(/user=\S+/, `user=${role}`);
const relayEnv = { WS_HEARTBEAT_INTERVAL: '2s', PARLEY_MAX_CONNECTIONS: '64' };

before(async () => {
  if (skip)
    return;
  const dir = tmpDir('fault-db');
  if (!nsSkip)
    net = makeNetns();
  pg = await setupDatabase('fault-db-pg');
  if (net) {
    // PostgreSQL also listens on the root side of the namespace's database
    // path; a restart picks up listen_addresses.
    fs.appendFileSync(path.join(pg.datadir, 'postgresql.conf'),
      `listen_addresses = '127.0.0.1,${net.pgAddr}'\n`);
    fs.appendFileSync(path.join(pg.datadir, 'pg_hba.conf'), `host all all ${net.subnet} trust\n`);
    await pg.restart({ mode: 'fast' });
  }
  await pg.psql(`CREATE ROLE relay_a LOGIN SUPERUSER; CREATE ROLE relay_b LOGIN SUPERUSER;
                 CREATE ROLE relay_c LOGIN SUPERUSER;`);
  key = writeHmacKey(dir);
  A = await startRelayAt({ pg, key, name: 'fdb-A', conninfo: roleInfo('relay_a'), env: relayEnv });
  B = await startRelayAt({ pg, key, name: 'fdb-B', conninfo: roleInfo('relay_b'), env: relayEnv });
});

after(async () => {
  await stopAllClients();
  for (const r of [A, B])
    if (r && r.running())
      await r.stop();
  if (pg)
    await pg.stop();
  if (net)
    net.remove();
});

const on = async (relay, u) => Client.connect(relay.url, await mint(key, u));
const isMsg = (m) => m.type === 'private_message' || m.type === 'group_message';

async function setLogin(role, ok) {
  await pg.psql(`ALTER ROLE ${role} ${ok ? 'LOGIN' : 'NOLOGIN'}`);
}

/** Terminate a role's backends of the given application names; returns how many. */
async function terminate(role, apps) {
  const list = apps.map((a) => `'${a}'`).join(',');
  return Number(await pg.psql(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
    WHERE usename = '${role}' AND application_name IN (${list})`));
}

async function health(relay) {
  const r = await relay.healthz();
  return { status: r.status, json: r.json };
}

/**
 * Collect message events from a plain Client until `n` arrived, then make
 * sure no more come for `quietMs`.  Returns them in arrival order.
 */
async function collect(c, n, { timeoutMs = 20000, quietMs = 800 } = {}) {
  const got = [];
  for (let i = 0; i < n; i++)
    got.push(await c.next(isMsg, { timeoutMs }));
  await c.none(isMsg, quietMs);
  return got;
}

/** Messages from a plain Client: at least `n`, then whatever else comes before `quietMs` of silence. */
async function drain(c, n, { timeoutMs = 20000, quietMs = 1000 } = {}) {
  const got = [];
  for (;;) {
    const m = await c.next(isMsg, { timeoutMs: got.length < n ? timeoutMs : quietMs }).catch((e) => {
      if (got.length < n)
        throw e;
      return null;
    });
    if (!m)
      return got;
    got.push(m);
  }
}

/** Expected ids of the messages in these conversations with id > mark, by conversation and seq. */
async function expected(convs, mark) {
  const out = await pg.psql(`SELECT id || ' ' || conversation || ' ' || seq || ' ' || sender_id FROM parley.messages
    WHERE id > ${mark} AND conversation IN (${convs.map((c) => `'${c}'`).join(',')})
    ORDER BY conversation, seq`);
  return out.split('\n').filter(Boolean).map((l) => {
    const [id, conversation, seq, sender] = l.split(' ');
    return { id: Number(id), conversation, seq: Number(seq), sender: Number(sender) };
  });
}

async function lastId() {
  return Number(await pg.psql('SELECT coalesce(max(id), 0) FROM parley.messages'));
}

/** Assert: got has exactly the ids of want, once each, each conversation in seq order. */
function assertExactlyOnceInOrder(got, want, who) {
  const ids = got.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, `${who}: a message arrived twice: ${JSON.stringify(ids)}`);
  assert.deepEqual([...ids].sort((x, y) => x - y), want.map((w) => w.id).sort((x, y) => x - y),
    `${who}: delivered ids differ from those committed`);
  const byConv = new Map();
  for (const m of got) {
    const prev = byConv.get(m.conversation) ?? 0;
    assert.ok(m.seq > prev, `${who}: ${m.conversation} seq ${m.seq} after ${prev}`);
    byConv.set(m.conversation, m.seq);
  }
}

test('a relay whose LISTEN connection was dropped delivers what was committed meanwhile, unasked, in order, once', { skip }, async () => {
  const [a1, a2, b, c] = await makeUsers(pg, 4, 'fl');
  const gid = await makeGroup(pg, [a1, a2, b, c]);
  const grp = `group:${gid}`;
  const a1x = await on(A, a1);
  const a1y = await on(A, a1);
  const a2c = await on(A, a2);
  const bc = await on(B, b);
  const mark = await lastId();

  await setLogin('relay_a', false);
  try {
    assert.equal(await terminate('relay_a', ['parley-relay-listen']), 1, "A's LISTEN backend");
    await waitFor(async () => (await health(A)).status === 503, { timeoutMs: 10000, what: 'A /healthz 503' });
    const h = await health(A);
    assert.equal(h.json.listener, false, JSON.stringify(h.json));
    assert.equal((await health(B)).status, 200);

    // Committed while A's listener is away: through B ...
    for (let i = 0; i < 5; i++) {
      assert.equal((await bc.request({ type: 'private_message', to: a1.id, body: `b-dm-${i}`, client_id: `fl-bd-${i}` })).type, 'ack');
      assert.equal((await bc.request({ type: 'group_message', group: gid, body: `b-g-${i}`, client_id: `fl-bg-${i}` })).type, 'ack');
    }
    // ... directly in SQL ...
    await pg.psql([0, 1, 2].map((i) => `SELECT * FROM parley.post_message(${c.id}, '${dmConv(c.id, a1.id)}', 'c-dm-${i}', 'fl-cd-${i}');
      SELECT * FROM parley.post_message(${c.id}, '${grp}', 'c-g-${i}', 'fl-cg-${i}');`).join('\n'));
    // ... and through A itself, whose pool is still connected.
    for (let i = 0; i < 2; i++)
      assert.equal((await a2c.request({ type: 'group_message', group: gid, body: `a2-g-${i}`, client_id: `fl-a2-${i}` })).type, 'ack');
    // Nothing reached A's users yet: the listener really is away.
    await a1x.none(isMsg, 500);
    assert.equal((await health(A)).status, 503);
  } finally {
    await setLogin('relay_a', true);
  }
  const t0 = Date.now();
  await waitFor(() => A.healthy(), { timeoutMs: 15000, what: 'A /healthz 200 again' });
  const recoverMs = Date.now() - t0;

  const want1 = await expected([dmConv(a1.id, b.id), dmConv(a1.id, c.id), grp], mark);
  assert.equal(want1.length, 5 + 5 + 3 + 3 + 2);
  for (const [cl, who] of [[a1x, 'a1 (1st connection)'], [a1y, 'a1 (2nd connection)']])
    assertExactlyOnceInOrder(await collect(cl, want1.length), want1, who);
  // a2 sent two of the group messages itself: it gets the other eight.
  const want2 = (await expected([grp], mark)).filter((m) => m.sender !== a2.id);
  assert.equal(want2.length, 8);
  assertExactlyOnceInOrder(await collect(a2c, want2.length), want2, 'a2');
  // b (on B, listener up all along) got c's and a2's group messages live.
  const gotB = await collect(bc, 5);
  assert.deepEqual(gotB.map((m) => m.body).sort(), ['a2-g-0', 'a2-g-1', 'c-g-0', 'c-g-1', 'c-g-2']);
  assert.equal((await seqGaps(pg)).length, 0);
  console.log(`# A's listener back and caught up ${recoverMs} ms after LOGIN was allowed again`);
  for (const cl of [a1x, a1y, a2c, bc])
    cl.close();
});

test('a listener catch-up does not deliver again what was committed before the outage', { skip }, async () => {
  const [x, y] = await makeUsers(pg, 2, 'fc');
  const conv = dmConv(x.id, y.id);
  // Committed before A starts: A never saw this conversation.
  await pg.psql([0, 1, 2].map((i) => `SELECT * FROM parley.post_message(${y.id}, '${conv}', 'old-${i}', 'fc-${i}');`).join('\n'));
  await A.stop();
  await A.restart();
  const xc = await on(A, x);
  xc.send({ type: 'sync', since: {}, ref: 'fc-sync' });
  const synced = await collect(xc, 3, { quietMs: 0 });
  assert.deepEqual(synced.map((m) => m.seq), [1, 2, 3]);
  await xc.next((m) => m.ref === 'fc-sync');
  // A's LISTEN connection drops and comes back at once.
  const reconnects = async () => metric((await A.http('/metrics')).body, 'parley_relay_listener_reconnects_total');
  const before = await reconnects();
  assert.equal(await terminate('relay_a', ['parley-relay-listen']), 1);
  await waitFor(async () => (await reconnects()) > before && (await A.healthy()), { timeoutMs: 15000, what: "A's listener back" });
  // Nothing was committed meanwhile: x, which has seq 1-3 already, must get
  // nothing; what comes next arrives once.
  const again = await drain(xc, 0, { quietMs: 1500 });
  assert.deepEqual(again.map((m) => `${m.conversation} seq ${m.seq} (${m.body})`), [],
    'the catch-up delivered messages committed before the outage again');
  await pg.psql(`SELECT * FROM parley.post_message(${y.id}, '${conv}', 'new', 'fc-new')`);
  const got = await collect(xc, 1);
  assert.deepEqual([got[0].seq, got[0].body], [4, 'new']);
  xc.close();
});

test("a relay that lost its pool answers `error unavailable`, never an ack, and recovers", { skip }, async () => {
  const [a, b] = await makeUsers(pg, 2, 'fp');
  const ac = await on(A, a);
  const bc = await on(B, b);
  const mark = await lastId();
  await setLogin('relay_a', false);
  try {
    const n = await terminate('relay_a', ['parley-relay', 'parley-relay-presence', 'parley-relay-listen']);
    assert.ok(n >= 3, `terminated ${n} backends of A`);
    await waitFor(async () => (await health(A)).status === 503, { timeoutMs: 10000, what: 'A /healthz 503' });
    const r = await ac.request({ type: 'private_message', to: b.id, body: 'during', client_id: 'fp-1' }, { timeoutMs: 10000 });
    assert.equal(r.type, 'error', JSON.stringify(r));
    assert.equal(r.code, 'unavailable');
    // B is unaffected.
    assert.equal((await bc.request({ type: 'private_message', to: a.id, body: 'from b', client_id: 'fp-b1' })).type, 'ack');
    await ac.none((m) => m.type === 'ack' || isMsg(m), 500);
    assert.equal(await pg.psql(`SELECT count(*) FROM parley.messages WHERE sender_id = ${a.id}`), '0');
    assert.equal(A.running(), true);
    assert.equal((await ac.request({ type: 'ping' })).type, 'pong');
  } finally {
    await setLogin('relay_a', true);
  }
  await waitFor(() => A.healthy(), { timeoutMs: 15000, what: 'A /healthz 200 again' });
  // b's message, committed while A's listener was away, arrives unasked.
  const gotA = await collect(ac, 1);
  assert.equal(gotA[0].body, 'from b');
  const ack = await ac.request({ type: 'private_message', to: b.id, body: 'during', client_id: 'fp-1' });
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  const gotB = await collect(bc, 1);
  assert.equal(gotB[0].id, ack.id);
  assert.equal(await pg.psql(`SELECT count(*) FROM parley.messages WHERE sender_id = ${a.id} AND id > ${mark}`), '1');
  ac.close();
  bc.close();
});

test('PostgreSQL stopped and started: relays stay up, 503 then 200, sends meanwhile unavailable', { skip }, async () => {
  const [a, b] = await makeUsers(pg, 2, 'fs');
  const ac = await on(A, a);
  const bc = await on(B, b);
  const t0 = Date.now();
  await pg.stop({ mode: 'fast' });
  let stoppedMs;
  try {
    await waitFor(async () => (await health(A)).status === 503 && (await health(B)).status === 503,
      { timeoutMs: 15000, what: 'both /healthz 503' });
    stoppedMs = Date.now() - t0;
    for (const [c, to, cid] of [[ac, b, 'fs-a'], [bc, a, 'fs-b']]) {
      const r = await c.request({ type: 'private_message', to: to.id, body: 'while down', client_id: cid }, { timeoutMs: 10000 });
      assert.equal(r.type, 'error', JSON.stringify(r));
      assert.equal(r.code, 'unavailable');
    }
    // The relays answer what needs no database, and keep the sockets.
    assert.equal((await ac.request({ type: 'ping' })).type, 'pong');
    await ac.none('ack', 300);
    assert.ok(A.running() && B.running());
  } finally {
    await pg.start();
  }
  const t1 = Date.now();
  await waitFor(async () => (await A.healthy()) && (await B.healthy()), { timeoutMs: 20000, what: 'both /healthz 200' });
  const upMs = Date.now() - t1;
  assert.equal(ac.closed, null);
  assert.equal(bc.closed, null);
  const ackA = await ac.request({ type: 'private_message', to: b.id, body: 'while down', client_id: 'fs-a' });
  const ackB = await bc.request({ type: 'private_message', to: a.id, body: 'while down', client_id: 'fs-b' });
  assert.equal(ackA.type, 'ack', JSON.stringify(ackA));
  assert.equal(ackB.type, 'ack', JSON.stringify(ackB));
  assert.equal((await collect(bc, 1))[0].id, ackA.id);
  assert.equal((await collect(ac, 1))[0].id, ackB.id);
  assert.equal(await pg.psql(`SELECT count(*) FROM parley.messages WHERE sender_id IN (${a.id}, ${b.id})`), '2');
  console.log(`# stop: both relays 503 after ${stoppedMs} ms; start: both 200 after ${upMs} ms`);
  ac.close();
  bc.close();
});

for (const mode of ['fast', 'immediate']) {
  test(`PostgreSQL restarted (${mode}) under load: every acked message stored once and delivered live, in order, once`, { skip }, async () => {
    const users = await makeUsers(pg, 4, `fr${mode[0]}`);
    const [s1, s2, r1, r2] = users;
    const gid = await makeGroup(pg, users);
    // Senders and recipients on both relays; recipients never ask (no sync
    // after their first connect, which is before anything was sent).
    const mk = (u, relay, name) => new ReliableClient({ name, user: u, key, url: relay.url }).start();
    const cs1 = mk(s1, A, `fr${mode[0]}-s1`);
    const cs2 = mk(s2, B, `fr${mode[0]}-s2`);
    const cr1 = mk(r1, A, `fr${mode[0]}-r1`);
    const cr2 = mk(r2, B, `fr${mode[0]}-r2`);
    const all = [cs1, cs2, cr1, cr2];
    await Promise.all(all.map((c) => c.ready()));
    let sending = true;
    let sent = 0;
    const loop = (async () => {
      while (sending) {
        for (const [c, other] of [[cs1, r2], [cs2, r1]]) {
          c.send({ to: other.id }, `dm-${sent}`);
          c.send({ group: gid }, `g-${sent}`);
          sent += 2;
        }
        await delay(40);
      }
    })();
    await delay(1000);
    const t0 = Date.now();
    await pg.restart({ mode });
    await waitFor(async () => (await A.healthy()) && (await B.healthy()), { timeoutMs: 30000, what: 'both relays healthy' });
    const healMs = Date.now() - t0;
    await delay(1500);
    sending = false;
    await loop;
    await waitFor(() => cs1.outbox.size === 0 && cs2.outbox.size === 0,
      { timeoutMs: 30000, what: 'every send acknowledged' });
    const acks = [...cs1.acks.values(), ...cs2.acks.values()];
    assert.equal(acks.length, sent);
    // Each recipient gets everything addressed to it: r1 the DMs from s2 and
    // every group message, r2 the DMs from s1 and every group message.
    const groupIds = acks.filter((x) => x.conversation === `group:${gid}`).map((x) => x.id);
    const dmTo = (to) => acks.filter((x) => x.conversation.startsWith('dm:') &&
      x.conversation.split(':').includes(String(to.id))).map((x) => x.id);
    const wantR1 = new Set([...groupIds, ...dmTo(r1)]);
    const wantR2 = new Set([...groupIds, ...dmTo(r2)]);
    await waitFor(() => [...wantR1].every((id) => cr1.received.has(id)) && [...wantR2].every((id) => cr2.received.has(id)),
      { timeoutMs: 20000, what: 'every acked message at its recipients' }).catch((e) => {
      const miss1 = [...wantR1].filter((id) => !cr1.received.has(id));
      const miss2 = [...wantR2].filter((id) => !cr2.received.has(id));
      e.message += `; missing at r1 ${JSON.stringify(miss1)}, at r2 ${JSON.stringify(miss2)}`;
      throw e;
    });
    await delay(500);
    for (const c of [cr1, cr2]) {
      assert.equal(c.connects, 1, `${c.name} reconnected (it must not have had to ask)`);
      assert.equal(c.rawDups, 0, `${c.name}: ${c.rawDups} duplicate deliveries`);
      assert.deepEqual(c.orderViolations, [], `${c.name}: order`);
    }
    assert.equal(cr1.received.size, wantR1.size);
    assert.equal(cr2.received.size, wantR2.size);
    for (const c of [cs1, cs2])
      assert.deepEqual(c.ackMismatch, []);
    const stored = Number(await pg.psql(`SELECT count(*) FROM parley.messages WHERE sender_id IN (${s1.id}, ${s2.id})`));
    assert.equal(stored, sent, 'stored messages = acknowledged sends (no duplicate stored)');
    assert.deepEqual(await seqGaps(pg), []);
    const unavailable = (cs1.errors.unavailable || 0) + (cs2.errors.unavailable || 0);
    console.log(`# restart ${mode}: ${sent} messages acked, ${unavailable} 'unavailable' answers retried, ` +
      `relays healthy ${healMs} ms after the restart began, ${cr1.received.size + cr2.received.size} deliveries checked`);
    await Promise.all(all.map((c) => c.stop()));
  });
}

test('a silent partition between a relay and PostgreSQL is noticed within the keepalive bound', { skip: nsSkip }, async () => {
  const C = await startRelayAt({
    pg, key, name: 'fdb-C', netns: net.ns, host: net.clientAddr,
    conninfo: `host=${net.pgAddr} port=${pg.port} dbname=${pg.dbname} user=relay_c`,
    env: relayEnv,
  });
  try {
    const [x, y] = await makeUsers(pg, 2, 'fn');
    const xc = await on(C, x);
    const yc = await on(A, y);
    const mark = await lastId();
    // Warm: the path works.
    const ack0 = await xc.request({ type: 'private_message', to: y.id, body: 'before', client_id: 'fn-0' });
    assert.equal(ack0.type, 'ack');
    await yc.next(isMsg);

    net.partition();
    const t0 = Date.now();
    let healed = false;
    try {
      // A send now waits on a connection that will never answer: it must
      // end in `error unavailable`, never an ack.
      xc.send({ type: 'private_message', to: y.id, body: 'during', client_id: 'fn-1', ref: 'fn-1' });
      await waitFor(async () => (await health(C)).status === 503,
        { timeoutMs: PARTITION_BOUND_MS + 10000, intervalMs: 250, what: 'C /healthz 503' });
      const detectMs = Date.now() - t0;
      const r = await xc.next((m) => m.ref === 'fn-1', { timeoutMs: PARTITION_BOUND_MS + 10000 });
      const errMs = Date.now() - t0;
      assert.equal(r.type, 'error', JSON.stringify(r));
      assert.equal(r.code, 'unavailable');
      console.log(`# partition: C's /healthz 503 after ${detectMs} ms; the send in flight answered ` +
        `'unavailable' after ${errMs} ms (bound ${PARTITION_BOUND_MS} ms)`);
      assert.ok(detectMs <= PARTITION_BOUND_MS, `partition noticed after ${detectMs} ms`);
      assert.ok(errMs <= PARTITION_BOUND_MS + 2000, `send answered after ${errMs} ms`);
      // Committed during the partition, through A and in SQL.
      for (let i = 0; i < 3; i++)
        assert.equal((await yc.request({ type: 'private_message', to: x.id, body: `y-${i}`, client_id: `fn-y${i}` })).type, 'ack');
      await pg.psql(`SELECT * FROM parley.post_message(${y.id}, '${dmConv(x.id, y.id)}', 'sql', 'fn-sql')`);
      assert.ok(C.running(), 'C stays up');
      net.heal();
      healed = true;
    } finally {
      if (!healed)
        net.heal();
    }
    await waitFor(() => C.healthy(), { timeoutMs: 30000, what: 'C /healthz 200 after the partition' });
    // PostgreSQL did receive fn-1 (only its replies were lost): the retry
    // with the same client_id acks whatever is stored, once.
    const ack1 = await xc.request({ type: 'private_message', to: y.id, body: 'during', client_id: 'fn-1' });
    assert.equal(ack1.type, 'ack', JSON.stringify(ack1));
    const want = await expected([dmConv(x.id, y.id)], mark);
    const toX = want.filter((w) => w.sender === y.id);
    assert.equal(toX.length, 4);
    // x's own fn-1 was committed during the partition but answered
    // `unavailable`, so the relay no longer knows x's connection sent it:
    // the catch-up may show it to x too (a client matches it to the later
    // ack by id).  Everything else: once, in order.
    const gotX = await drain(xc, toX.length);
    const echoes = gotX.filter((m) => m.id === ack1.id).length;
    assert.ok(echoes <= 1, `fn-1 shown to its sender ${echoes} times`);
    assertExactlyOnceInOrder(gotX.filter((m) => m.id !== ack1.id), toX, 'x on C');
    console.log(`# partition: x's own message echoed to x by the catch-up: ${echoes ? 'yes' : 'no'}`);
    assert.equal(await pg.psql(`SELECT count(*) FROM parley.messages WHERE sender_id = ${x.id} AND client_id = 'fn-1'`), '1');
    // y got fn-1 exactly once (live, whenever it was committed).
    await yc.next((m) => isMsg(m) && m.id === ack1.id, { timeoutMs: 5000 });
    await yc.none((m) => isMsg(m) && m.id === ack1.id, 300);
    xc.close();
    yc.close();
  } finally {
    await C.stop();
  }
});
