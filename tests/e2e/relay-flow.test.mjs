// tests/e2e/relay-flow.test.mjs: flow control of parley-relay (PROTOCOL.md
// §2 "Heartbeats, limits", parley-relay(8) "FLOW CONTROL"): output the relay
// produces in bulk by itself (a sync, a catch-up after its LISTEN
// connection was lost) is paced to the client instead of counted toward
// PARLEY_SEND_QUEUE, so a client that reads is never closed with 4030 for
// it; history keeps its `more` rule; and a connection's command lane is
// bounded (rate_limited when full) and keeps the send order.

import { test, before, after } from 'node:test';
import {
  assert, skipReason, setupDatabase, writeHmacKey, makeUser, mint, startRelay,
  Client, tmpDir, waitFor, metric,
} from './relay-helpers.mjs';

const skip = skipReason() || false;
let pg;
let key;
let relay;

// A small send queue (high mark 32k) and no rate limit to speak of.
const SMALL = { PARLEY_SEND_QUEUE: '64k', PARLEY_RATE: '2000/s' };

before(async () => {
  if (skip)
    return;
  pg = await setupDatabase('relay-flow-pg');
  key = writeHmacKey(tmpDir('relay-flow'));
  relay = await startRelay({ pg, key, name: 'relay-flow', env: SMALL });
});

after(async () => {
  if (relay)
    await relay.stop();
  if (pg)
    await pg.stop();
});

const on = async (u) => Client.connect(relay.url, await mint(key, u));
const dm = (a, b) => `dm:${Math.min(a.id, b.id)}:${Math.max(a.id, b.id)}`;
const range = (n, from = 1) => Array.from({ length: n }, (_, i) => i + from);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** SQL storing n messages of about `size` bytes from a to b (seq order = i). */
function postMany(a, b, n, size, tag) {
  return `SELECT count(*) FROM generate_series(1, ${n}) i,
            LATERAL parley.post_message(${a.id}, '${dm(a, b)}',
              '${tag}-' || i || '-' || repeat('x', ${size}), '${tag}-' || i) p`;
}

/** The private_message events of conversation conv in c's inbox, consumed in order. */
async function collect(c, n, { timeoutMs = 30000 } = {}) {
  const got = [];
  for (let i = 0; i < n; i++)
    got.push(await c.next('private_message', { timeoutMs }));
  return got;
}

test('a sync far larger than the send queue streams at the reader\'s pace: all of it, no 4030', { skip }, async () => {
  const a = await makeUser(pg, 'fsa');
  const b = await makeUser(pg, 'fsb');
  const N = 1500;                      // 1500 x 2 KB = 3 MB through a 64 KB queue
  const w = await makeUser(pg, 'fsw');
  const cw = await on(w);
  await pg.psql(postMany(a, b, N, 2000, 'sy'));
  // b connects once the relay has fanned them out (to nobody), so that what
  // it gets is the sync's: the listener works in commit order, so when a
  // later message reaches a watcher, these were handled.
  await pg.psql(`SELECT * FROM parley.post_message(${a.id}, '${dm(a, w)}', 'sentinel', 'sy-sentinel')`);
  await cw.next('private_message', { timeoutMs: 20000 });
  cw.close();
  const cb = await on(b);
  // Not reading until the relay has had to wait for it (not on a timer: on
  // a loaded machine the sync may not have filled the socket buffers yet);
  // it must wait, not queue 3 MB, not close.
  const waits = async () => metric((await relay.http('/metrics')).body, 'parley_relay_bulk_waits_total');
  const waited = await waits();
  cb.ws.pause();
  cb.send({ type: 'sync', since: {}, ref: 'big' });
  await waitFor(async () => (await waits()) > waited, { timeoutMs: 30000, what: 'the sync to wait for the reader' });
  await sleep(300);
  assert.equal(cb.closed, null);
  cb.ws.resume();
  const got = await collect(cb, N);
  assert.deepEqual(got.map((m) => m.seq), range(N));
  assert.ok(got.every((m) => m.conversation === dm(a, b) && m.body.startsWith(`sy-${m.seq}-`)));
  const done = await cb.next('sync_done', { timeoutMs: 30000 });
  // All in one command: `more` is only for the per-command cap (5000).
  assert.deepEqual(done, { type: 'sync_done', ref: 'big', more: false });
  assert.equal(cb.closed, null);
  assert.equal((await cb.request({ type: 'ping' })).type, 'pong');

  // history keeps its rule: one reply, cut to the newest that fit in half
  // of the send queue, `more` true.
  const h = await cb.request({ type: 'history', conversation: dm(a, b), limit: 100 });
  assert.equal(h.type, 'history');
  assert.equal(h.more, true);
  assert.ok(h.messages.length >= 5 && h.messages.length < 32, `${h.messages.length} messages`);
  assert.deepEqual(h.messages.map((m) => m.seq), range(h.messages.length, N - h.messages.length + 1));
  cb.close();
});

test('a catch-up after a lost LISTEN connection is deferred to the reader\'s pace, in order with live messages', { skip }, async () => {
  const a = await makeUser(pg, 'fca');
  const b = await makeUser(pg, 'fcb');
  const ca = await on(a);
  const cb = await on(b);
  const cb2 = await on(b);             // reads all along
  const N = 1500;                      // 1500 x 4 KB = 6 MB through 64 KB queues
  cb.ws.pause();
  // The relay's LISTEN connection is cut while these are being stored, and
  // its catch-up from the table (which waits for the table lock) delivers
  // them when it is back; their notifications, if any, come after.
  const at = relay.logSize();
  await pg.psql(`BEGIN;
    LOCK TABLE parley.messages IN ACCESS EXCLUSIVE MODE;
    ${postMany(a, b, N, 4000, 'cu')};
    SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
     WHERE application_name = 'parley-relay-listen';
    SELECT pg_sleep(0.3);
    COMMIT;`);
  await relay.waitForLog(/caught up \(\d+ messages/, { from: at, timeoutMs: 15000 });
  await relay.waitForLog(/deferring catch-up delivery/, { from: at, timeoutMs: 5000 });
  // A live message while the paused connection's catch-up waits: it comes
  // after the caught-up ones, never before.
  const ack = await ca.request({ type: 'private_message', to: b.id, body: 'live', client_id: 'cu-live' });
  assert.equal(ack.seq, N + 1);
  await sleep(500);
  assert.equal(cb.closed, null);
  cb.ws.resume();
  for (const c of [cb, cb2]) {
    const got = await collect(c, N + 1);
    assert.deepEqual(got.map((m) => m.seq), range(N + 1));
    assert.equal(got[N].body, 'live');
    assert.equal(c.closed, null);
  }
  assert.ok(metric((await relay.http('/metrics')).body, 'parley_relay_deferred_deliveries_total') >= 1);
  // Back to live delivery afterwards.
  await ca.request({ type: 'private_message', to: b.id, body: 'after', client_id: 'cu-after' });
  for (const c of [cb, cb2])
    assert.deepEqual(await c.next('private_message').then((m) => [m.seq, m.body]), [N + 2, 'after']);
  await cb.none('private_message', 200);
  for (const c of [ca, cb, cb2])
    c.close();
});

test('live traffic still counts: a consumer that stops reading is closed with 4030', { skip }, async () => {
  const a = await makeUser(pg, 'fla');
  const b = await makeUser(pg, 'flb');
  const ca = await on(a);
  const cb = await on(b);
  cb.ws.pause();
  const body = 'y'.repeat(30000);
  // 9 MB in batches of 3 MB (the bodies a lane holds are bounded at 4 MiB).
  for (let from = 1; from <= 300; from += 100) {
    for (let i = from; i < from + 100; i++)
      ca.send({ type: 'private_message', to: b.id, body, client_id: `l-${i}` });
    for (let i = from; i < from + 100; i++)
      assert.equal((await ca.next((m) => m.type === 'ack' || m.type === 'error', { timeoutMs: 30000 })).type, 'ack');
  }
  cb.ws.resume();
  assert.equal((await cb.whenClosed({ timeoutMs: 20000 })).code, 4030);
  ca.close();
});

test('the command lane is bounded: past 1000 waiting commands, rate_limited; the rest keep their order', { skip }, async () => {
  const a = await makeUser(pg, 'fqa');
  const b = await makeUser(pg, 'fqb');
  const ca = await on(a);
  await ca.request({ type: 'private_message', to: b.id, body: 'first', client_id: 'q-0' });
  // Hold the conversation: the lane's running job waits, the others queue.
  const psql = pg.spawnPsql();
  let out = '';
  psql.stdout.on('data', (d) => { out += d; });
  psql.stdin.write(`BEGIN;\nSELECT 'locked:' || id FROM parley.conversations WHERE id = '${dm(a, b)}' FOR UPDATE;\n`);
  const N = 1002;                      // 1 running + 1000 waiting + 1 too many
  try {
    await waitFor(() => out.includes('locked:'), { what: 'the row lock' });
    for (let i = 1; i <= N; i++)
      ca.send({ type: 'private_message', to: b.id, body: `q${i}`, client_id: `q-${i}`, ref: `q${i}` });
    const refused = await ca.next((m) => m.type === 'error', { timeoutMs: 10000 });
    assert.deepEqual([refused.code, refused.ref], ['rate_limited', `q${N}`]);
  } finally {
    psql.stdin.write('COMMIT;\n\\q\n');
  }
  const acks = [];
  for (let i = 1; i < N; i++)
    acks.push(await ca.next('ack', { timeoutMs: 60000 }));
  assert.deepEqual(acks.map((m) => m.ref), range(N - 1).map((i) => `q${i}`));
  assert.deepEqual(acks.map((m) => m.seq), range(N - 1, 2));
  assert.equal(Number(await pg.psql(`SELECT count(*) FROM parley.messages WHERE sender_id = ${a.id}`)), N);
  // The connection is fine afterwards.
  assert.equal((await ca.request({ type: 'ping' })).type, 'pong');
  ca.close();
});
