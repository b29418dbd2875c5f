// tests/e2e/relay-presence-sweep.test.mjs: the presence sweep of dead
// relays and its bound (PROTOCOL.md §2 "Presence of a relay that died is
// swept within 3 x WS_HEARTBEAT_INTERVAL"; relay/presence.c,
// parley-relay(8) "DATABASE").
//
// Every relay beats every half interval and sweeps relays whose heartbeat
// is older than 2 intervals.  So a relay killed right after a heartbeat
// (the worst case) has its users reported offline by the others after
// more than 2 and at most 3 intervals, whatever the phase of the sweeping
// relays; one that only stalls for an interval is not swept (no
// offline/online flap); and one swept while stalled states its
// connections again when it resumes, so its users come back online.
//
// Three relays on one PostgreSQL, WS_HEARTBEAT_INTERVAL 2 s: K (killed or
// stopped with SIGSTOP) and two observers.

import { test, before, after } from 'node:test';
import {
  assert, skipReason, setupDatabase, writeHmacKey, mint, Client, tmpDir,
} from './relay-helpers.mjs';
import {
  startRelayAt, makeUsers, waitFor, delay,
} from './fault-helpers.mjs';

const skip = skipReason() || false;
const HB_S = 2;
const HB = HB_S * 1000;
// The event travels sweep -> trigger -> NOTIFY -> listener -> socket; on a
// loaded machine that takes a little time of its own.
const SLACK = 600;

let pg;
let key;
let K;
let O;          // the observers' relays

before(async () => {
  if (skip)
    return;
  const dir = tmpDir('relay-presence-sweep');
  pg = await setupDatabase('relay-presence-sweep-pg');
  key = writeHmacKey(dir);
  const env = { WS_HEARTBEAT_INTERVAL: `${HB_S}s` };
  K = await startRelayAt({ pg, key, name: 'ps-K', env });
  O = [await startRelayAt({ pg, key, name: 'ps-O1', env }), await startRelayAt({ pg, key, name: 'ps-O2', env })];
});

after(async () => {
  if (K && K.running()) {
    K.kill('SIGCONT');
    await K.stop();
  }
  for (const r of O || [])
    if (r.running())
      await r.stop();
  if (pg)
    await pg.stop();
});

const on = async (relay, u) => Client.connect(relay.url, await mint(key, u));
const presenceOf = (u, online) => (m) => m.type === 'presence' && m.user === u.id && m.online === online;

/** Resolve right after K's next heartbeat (its row's heartbeat_at changes). */
async function afterHeartbeat() {
  const beat = () => pg.psql(`SELECT heartbeat_at FROM parley.relays WHERE relay_id = '${K.id}'`);
  const b0 = await beat();
  assert.notEqual(b0, '', `${K.id} has a parley.relays row`);
  await waitFor(async () => (await beat()) !== b0, { timeoutMs: HB + 5000, intervalMs: 5, what: `a heartbeat of ${K.id}` });
}

/** A user on K, seen online by an observer on each of O; returns the clients. */
async function victimOnK(prefix) {
  const [v, o1, o2] = await makeUsers(pg, 3, prefix);
  const oc = [await on(O[0], o1), await on(O[1], o2)];
  const vc = await on(K, v);
  for (const c of oc)
    await c.next(presenceOf(v, true), { timeoutMs: 5000 });
  return { v, vc, oc };
}

test('a relay killed right after its heartbeat: its users go offline everywhere after more than 2 and at most 3 heartbeat intervals', { skip }, async () => {
  const times = [];
  // Three kills: the observers' relays sweep on their own phases.
  for (let round = 0; round < 3; round++) {
    if (!K.running())
      await K.restart();
    const { v, vc, oc } = await victimOnK(`pk${round}`);
    await afterHeartbeat();
    const t0 = Date.now();
    await K.crash();
    const seen = await Promise.all(oc.map(async (c) => {
      await c.next(presenceOf(v, false), { timeoutMs: 6 * HB });
      return Date.now() - t0;
    }));
    times.push(...seen);
    const rows = await pg.psql(`SELECT count(*) FROM parley.connections WHERE relay_id = '${K.id}'`);
    assert.equal(rows, '0', 'no presence row of the dead relay is left');
    for (const c of oc) {
      const l = await c.request({ type: 'user_list' });
      assert.equal(l.users.find((u) => u.id === v.id).online, false);
      c.close();
    }
    vc.terminate();
  }
  console.log(`# kill -9: offline at the observers after ${times.join(', ')} ms ` +
    `(WS_HEARTBEAT_INTERVAL ${HB} ms: sweep after 2, bound 3 intervals)`);
  for (const t of times) {
    assert.ok(t <= 3 * HB + SLACK, `offline ${t} ms after the relay died: more than 3 x ${HB} ms`);
    // Not before its heartbeat was 2 intervals old (it beat just before t0).
    assert.ok(t >= 2 * HB - 300, `offline only ${t} ms after the relay died: swept before 2 x ${HB} ms`);
  }
  await K.restart();
});

test('a relay that stalls for an interval is not swept: its users do not flap', { skip }, async () => {
  if (!K.running())
    await K.restart();
  const { v, vc, oc } = await victimOnK('pst');
  const at = K.svc.logSize();
  await afterHeartbeat();
  K.kill('SIGSTOP');
  try {
    await delay(1.25 * HB);
  } finally {
    K.kill('SIGCONT');
  }
  // Its beats were 1.25 intervals late at most: below the 2 of the sweep.
  for (const c of oc)
    await c.none((m) => m.type === 'presence' && m.user === v.id, HB);
  assert.equal(await pg.psql(`SELECT count(*) FROM parley.connections WHERE relay_id = '${K.id}'`), '1');
  assert.equal((await vc.request({ type: 'ping' })).type, 'pong');
  assert.doesNotMatch(K.svc.logText().slice(at), /was swept/);
  for (const c of [...oc, vc])
    c.close();
});

test('a relay swept while stalled states its connections again when it resumes', { skip }, async () => {
  if (!K.running())
    await K.restart();
  const { v, vc, oc } = await victimOnK('psw');
  await afterHeartbeat();
  const t0 = Date.now();
  K.kill('SIGSTOP');
  let resumed = false;
  try {
    for (const c of oc)
      await c.next(presenceOf(v, false), { timeoutMs: 6 * HB });
    const swept = Date.now() - t0;
    assert.ok(swept <= 3 * HB + SLACK, `swept ${swept} ms after the relay stopped beating`);
    K.kill('SIGCONT');
    resumed = true;
  } finally {
    if (!resumed)
      K.kill('SIGCONT');
  }
  // Its next heartbeat learns it was swept; it registers again with its
  // live connections, and v is online again for everyone.
  for (const c of oc)
    await c.next(presenceOf(v, true), { timeoutMs: 2 * HB + 5000 });
  assert.equal(await pg.psql(`SELECT count(*) FROM parley.connections WHERE relay_id = '${K.id}'`), '1');
  const l = await oc[0].request({ type: 'user_list' });
  assert.equal(l.users.find((u) => u.id === v.id).online, true);
  // v's socket stayed open through it all and still gets messages.
  const ack = await oc[0].request({ type: 'private_message', to: v.id, body: 'still here?', client_id: 'psw-1' });
  assert.equal(ack.type, 'ack');
  const got = await vc.next('private_message', { timeoutMs: 5000 });
  assert.equal(got.id, ack.id);
  for (const c of [...oc, vc])
    c.close();
});
