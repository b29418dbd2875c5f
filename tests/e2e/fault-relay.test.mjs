// tests/e2e/fault-relay.test.mjs: several relays as one service, and relay
// faults (issue 4, "Several relays as one" and "Relay faults").
//
// Three relays on one database behind nginx's /ws upstream, rendered from
// contrib/nginx/parley.conf with one `server` line per relay (least_conn),
// heartbeats every 2 s.  Cross-relay: delivery in seq order to every
// relay's recipients, user_list and presence the same from every relay,
// session revocation and membership removal on every relay, the per-user
// cap and client_instance replacement across relays.  Faults: `kill -9` of
// a relay takes its users offline for observers elsewhere within
// 3 x WS_HEARTBEAT_INTERVAL and leaves no presence row behind; its clients
// reconnect through nginx to another relay, re-send what was not
// acknowledged with the same client_id (stored once) and `sync` the rest
// (nothing missing); SIGTERM closes with 1001, exits 0 within 5 s, and
// loses nothing.

import { test, before, after } from 'node:test';
import {
  assert, skipReason, setupDatabase, writeHmacKey, mint, Client, tmpDir,
} from './relay-helpers.mjs';
import {
  startCluster, haveNginx, makeUsers, makeGroup, dmConv, ReliableClient,
  seqGaps, presenceRows, relayOf, waitFor, delay, stopAllClients,
} from './fault-helpers.mjs';

const skip = skipReason() || (haveNginx ? false : 'nginx is not installed');
const HB_S = 2;
const HB = HB_S * 1000;

let pg;
let key;
let cl;
let R;            // the three relays

before(async () => {
  if (skip)
    return;
  const dir = tmpDir('fault-relay');
  pg = await setupDatabase('fault-relay-pg');
  key = writeHmacKey(dir);
  cl = await startCluster({
    pg, key, n: 3, name: 'fr', dir,
    env: { WS_HEARTBEAT_INTERVAL: `${HB_S}s`, PARLEY_MAX_CONNECTIONS: '64' },
  });
  R = cl.relays;
});

after(async () => {
  await stopAllClients();
  if (cl)
    await cl.stop();
  if (pg)
    await pg.stop();
});

const on = async (relay, u, opts) => Client.connect(relay.url, await mint(key, u), opts);
const isMsg = (m) => m.type === 'private_message' || m.type === 'group_message';

/** Restart every relay that is not running (a previous test killed it). */
async function revive() {
  for (const r of R)
    if (!r.running())
      await r.restart();
}

test('a message sent through any relay reaches recipients on every relay, in seq order', { skip }, async () => {
  await revive();
  const [s1, s2, s3, m] = await makeUsers(pg, 4, 'xr');
  const gid = await makeGroup(pg, [s1, s2, s3, m]);
  const senders = [await on(R[0], s1), await on(R[1], s2), await on(R[2], s3)];
  const s1b = await on(R[1], s1);                // s1's other connection, elsewhere
  const mc = [await on(R[0], m), await on(R[1], m), await on(R[2], m)];
  const N = 15;
  for (let i = 0; i < N; i++)
    senders.forEach((c, k) => {
      c.send({ type: 'group_message', group: gid, body: `g${k}-${i}`, client_id: `xr-g${k}-${i}` });
      c.send({ type: 'private_message', to: m.id, body: `d${k}-${i}`, client_id: `xr-d${k}-${i}` });
    });
  for (const c of senders)
    for (let i = 0; i < 2 * N; i++)
      assert.equal((await c.next((x) => x.type === 'ack' || x.type === 'error', { timeoutMs: 15000 })).type, 'ack');
  for (const [k, c] of mc.entries()) {
    const got = [];
    for (let i = 0; i < 6 * N; i++)
      got.push(await c.next(isMsg, { timeoutMs: 15000 }));
    await c.none(isMsg, 300);
    const byConv = new Map();
    for (const x of got) {
      const l = byConv.get(x.conversation) || [];
      l.push(x.seq);
      byConv.set(x.conversation, l);
    }
    assert.equal(byConv.size, 4, `m on relay ${k + 1}: conversations ${[...byConv.keys()]}`);
    for (const [conv, seqs] of byConv)
      assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), `m on relay ${k + 1}: ${conv} in seq order`);
    assert.equal(byConv.get(`group:${gid}`).length, 3 * N);
  }
  // s1's connection on relay 2 sees every group message (its own sent on
  // relay 1 included) and s1's DMs to m.
  const own = [];
  for (let i = 0; i < 4 * N; i++)
    own.push(await s1b.next(isMsg, { timeoutMs: 15000 }));
  await s1b.none(isMsg, 300);
  assert.equal(own.filter((x) => x.from.id === s1.id).length, 2 * N);
  for (const c of [...senders, s1b, ...mc])
    c.close();
});

test('user_list and presence are the same from every relay', { skip }, async () => {
  await revive();
  const [p, q, r, o1, o2, o3] = await makeUsers(pg, 6, 'pu');
  const obs = [await on(R[0], o1), await on(R[1], o2), await on(R[2], o3)];
  const pc = await on(R[0], p);
  const qc = await on(R[1], q);
  const online = async (c) => {
    const l = await c.request({ type: 'user_list' });
    return Object.fromEntries(l.users.filter((u) => [p.id, q.id, r.id].includes(u.id)).map((u) => [u.id, u.online]));
  };
  const want1 = { [p.id]: true, [q.id]: true, [r.id]: false };
  for (const c of obs)
    assert.deepEqual(await online(c), want1);
  const rc = await on(R[2], r);
  for (const c of obs)
    assert.deepEqual(await c.next((m) => m.type === 'presence' && m.user === r.id), { type: 'presence', user: r.id, online: true });
  for (const c of obs)
    assert.deepEqual(await online(c), { ...want1, [r.id]: true });
  // A second connection elsewhere is not news; closing one of two neither.
  const rc2 = await on(R[0], r);
  rc.close();
  await rc.whenClosed();
  for (const c of obs)
    await c.none((m) => m.type === 'presence' && m.user === r.id, 400);
  rc2.close();
  for (const c of obs)
    assert.deepEqual(await c.next((m) => m.type === 'presence' && m.user === r.id), { type: 'presence', user: r.id, online: false });
  for (const c of obs)
    assert.deepEqual(await online(c), want1);
  for (const c of [...obs, pc, qc])
    c.close();
});

test('session revocation and membership removal take effect on every relay', { skip }, async () => {
  await revive();
  const [v, w] = await makeUsers(pg, 2, 'rv');
  const gid = await makeGroup(pg, [v, w]);
  const vc = [await on(R[0], v), await on(R[1], v), await on(R[2], v)];
  const wc = await on(R[0], w);
  await pg.psql(`SELECT parley.remove_member(${gid}, ${v.id})`);
  for (const c of vc)
    assert.deepEqual(await c.next('removed_from_group'), { type: 'removed_from_group', group: gid });
  assert.equal((await wc.request({ type: 'group_message', group: gid, body: 'v is out', client_id: 'rv-1' })).type, 'ack');
  for (const c of vc)
    await c.none('group_message', 300);
  await pg.psql(`SELECT parley.revoke_sessions(${v.id})`);
  for (const c of vc)
    assert.equal((await c.whenClosed()).code, 4011);
  wc.close();
});

test('the per-user connection cap holds across the cluster', { skip }, async () => {
  await revive();
  // PARLEY_MAX_CONN_PER_USER is 8 (the default): a ninth connection
  // anywhere in the cluster replaces the user's oldest (4009).
  const [u] = await makeUsers(pg, 1, 'cap');
  const conns = [];
  for (let i = 0; i < 9; i++) {
    conns.push(await on(R[i % 3], u));
    await delay(20);
  }
  const first = await conns[0].whenClosed({ timeoutMs: 5000 }).catch(() => null);
  const open = conns.filter((c) => !c.closed).length;
  for (const c of conns)
    c.close();
  assert.ok(first && first.code === 4009,
    `the oldest of 9 connections spread over 3 relays was not replaced (4009); ${open} still open (cap 8)`);
});

test('client_instance replacement holds across the cluster', { skip }, async () => {
  await revive();
  const [u] = await makeUsers(pg, 1, 'inst');
  const c1 = await on(R[0], u, { instance: 'tab-1' });
  const c2 = await on(R[1], u, { instance: 'tab-1' });
  const closed = await c1.whenClosed({ timeoutMs: 5000 }).catch(() => null);
  c1.close();
  c2.close();
  assert.ok(closed && closed.code === 4009,
    'a new connection of the same client_instance on another relay did not replace the old one (4009)');
});

test('kill -9 of a relay: its users go offline everywhere within 3 heartbeats, no presence row is left', { skip }, async () => {
  await revive();
  const [v1, v2, o1, o2] = await makeUsers(pg, 4, 'kp');
  const K = R[0];
  const vc = [await on(K, v1), await on(K, v2)];
  const oc = [await on(R[1], o1), await on(R[2], o2)];
  assert.equal((await presenceRows(pg)).get(K.id) >= 2, true);
  // The worst case of the bound: K dies right after its heartbeat.
  const beat = () => pg.psql(`SELECT heartbeat_at FROM parley.relays WHERE relay_id = '${K.id}'`);
  const b0 = await beat();
  await waitFor(async () => (await beat()) !== b0, { timeoutMs: 2 * HB + 5000, intervalMs: 5, what: `a heartbeat of ${K.id}` });
  const t0 = Date.now();
  await K.crash();
  const times = [];
  await Promise.all(oc.flatMap((c) => [v1, v2].map(async (v) => {
    await c.next((m) => m.type === 'presence' && m.user === v.id && m.online === false, { timeoutMs: 6 * HB + 5000 });
    times.push(Date.now() - t0);
  })));
  const worst = Math.max(...times);
  console.log(`# kill -9: presence offline at the observers after ${times.sort((a, b) => a - b).join(', ')} ms ` +
    `(WS_HEARTBEAT_INTERVAL ${HB} ms, bound ${3 * HB} ms)`);
  // PROTOCOL.md §2: swept within 3 x WS_HEARTBEAT_INTERVAL (a little
  // slack for the notification and the event on a loaded machine).
  assert.ok(worst <= 3 * HB + 500, `offline after ${worst} ms, more than 3 x ${HB} ms after the relay died`);
  assert.equal((await presenceRows(pg)).get(K.id), undefined, 'rows of the dead relay swept');
  for (const c of oc) {
    const l = await c.request({ type: 'user_list' });
    assert.deepEqual(l.users.filter((u) => u.id === v1.id || u.id === v2.id).map((u) => u.online), [false, false]);
  }
  for (const c of vc)
    assert.ok(c.closed, 'the victim clients saw their relay go');
  for (const c of oc)
    c.close();
  await K.restart();
});

/** Which relay each ReliableClient's current connection is on (Map name -> relay). */
async function placement(clients) {
  const out = new Map();
  for (const c of clients) {
    const id = await relayOf(pg, c.user.id, c.welcome.connection_id);
    out.set(c.name, R.find((r) => r.id === id));
  }
  return out;
}

test('kill -9 of a relay: its clients reconnect through nginx elsewhere, re-send un-acked sends once, sync the rest', { skip }, async () => {
  await revive();
  const users = await makeUsers(pg, 10, 'mv');
  const peer = users.pop();
  const gid = await makeGroup(pg, [...users, peer]);
  const movers = users.map((u, i) => new ReliableClient({ name: `mv${i}`, user: u, key, url: cl.url }).start());
  await Promise.all(movers.map((c) => c.ready()));
  const where = await placement(movers);
  // The relay with the most movers dies; the peer is on another one.
  const count = (r) => movers.filter((c) => where.get(c.name) === r).length;
  const K = [...R].sort((a, b) => count(b) - count(a))[0];
  const victims = movers.filter((c) => where.get(c.name) === K);
  assert.ok(victims.length >= 2, `movers per relay: ${R.map(count)}`);
  const P = new ReliableClient({ name: 'mv-peer', user: peer, key, url: R.find((r) => r !== K).url }).start();
  await P.ready();

  for (const c of movers)
    for (let i = 0; i < 2; i++)
      c.send({ to: peer.id }, `before-${i}`);
  await waitFor(() => movers.every((c) => c.outbox.size === 0), { timeoutMs: 15000, what: 'first sends acked' });

  // Freeze K: what its clients send now stays un-acked; what the peer sends
  // is committed but not delivered by K.
  K.kill('SIGSTOP');
  const stuck = [];
  for (const c of victims)
    for (let i = 0; i < 2; i++)
      stuck.push([c, c.send({ to: peer.id }, `stuck-${i}`)]);
  stuck.push([victims[0], victims[0].send({ group: gid }, 'stuck-group')]);
  // One of them reaches the database anyway (the relay committed it and
  // died before the ack): its re-send must find it.
  const [lostAckClient, lostAckCid] = stuck[0];
  const committed = Number((await pg.psql(`SELECT id FROM parley.post_message(${lostAckClient.user.id},
    '${dmConv(lostAckClient.user.id, peer.id)}', 'stuck-0', '${lostAckCid}')`)).split('\n')[0]);
  for (const c of movers)
    P.send({ to: c.user.id }, `to-${c.name}`);
  P.send({ group: gid }, 'peer-group');
  await waitFor(() => P.outbox.size === 0, { timeoutMs: 15000, what: 'the peer acked' });
  await delay(300);
  assert.ok(victims.every((c) => c.outbox.size >= 2), 'the frozen relay acked nothing');

  await K.crash();
  const t0 = Date.now();
  await waitFor(() => victims.every((c) => c.connects >= 2 && c.connected && c.outbox.size === 0 && c.syncing === 0),
    { timeoutMs: 30000, what: 'victims reconnected, re-sent and synced' });
  const backMs = Date.now() - t0;
  const now = await placement(victims);
  for (const c of victims)
    assert.notEqual(now.get(c.name), K, `${c.name} reconnected to the dead relay?`);
  // Re-sends: acked, and the one committed meanwhile acked with its id.
  assert.equal(lostAckClient.acks.get(lostAckCid).id, committed);
  for (const c of movers)
    assert.deepEqual(c.ackMismatch, []);
  // Nothing stored twice: one row per client_id sent.
  const sent = movers.reduce((n, c) => n + c.nextCid, 0);
  const rows = Number(await pg.psql(`SELECT count(*) FROM parley.messages WHERE sender_id IN (${users.map((u) => u.id).join(',')})`));
  assert.equal(rows, sent, 'rows stored for the movers = distinct sends');
  // Nothing missing: every mover has the peer's DM and group message, and
  // every victim's group message; the peer has every mover message once.
  await waitFor(() => movers.every((c) => [...P.acks.values()].filter((a) =>
    a.conversation === `group:${gid}` || a.conversation === dmConv(c.user.id, peer.id)).every((a) => c.received.has(a.id))),
  { timeoutMs: 15000, what: "every mover has the peer's messages" });
  const moverAcks = movers.flatMap((c) => [...c.acks.values()]);
  await waitFor(() => moverAcks.every((a) => P.received.has(a.id)), { timeoutMs: 15000, what: "the peer has every mover's message" });
  await delay(300);
  assert.equal(P.received.size, moverAcks.length);
  assert.equal(P.rawDups, 0, 'the peer got a message twice');
  assert.deepEqual(P.orderViolations, []);
  for (const c of movers) {
    assert.deepEqual(c.fatal, []);
    assert.deepEqual(c.orderViolations, [], `${c.name}: order`);
  }
  assert.deepEqual(await seqGaps(pg), []);
  console.log(`# kill -9: ${victims.length} of ${movers.length} clients moved; back, re-sent (${stuck.length} un-acked) ` +
    `and synced ${backMs} ms after the kill`);
  await Promise.all([...movers, P].map((c) => c.stop()));
  await K.restart();
});

test('SIGTERM: 1001 to every client, exit 0 within 5 s, nothing lost or doubled', { skip }, async () => {
  await revive();
  const users = await makeUsers(pg, 10, 'st');
  const peer = users.pop();
  const gid = await makeGroup(pg, [...users, peer]);
  const movers = users.map((u, i) => new ReliableClient({ name: `st${i}`, user: u, key, url: cl.url }).start());
  await Promise.all(movers.map((c) => c.ready()));
  const where = await placement(movers);
  const count = (r) => movers.filter((c) => where.get(c.name) === r).length;
  const T = [...R].sort((a, b) => count(b) - count(a))[0];
  const onT = movers.filter((c) => where.get(c.name) === T);
  const P = new ReliableClient({ name: 'st-peer', user: peer, key, url: R.find((r) => r !== T).url }).start();
  await P.ready();
  let sending = true;
  let n = 0;
  const loop = (async () => {
    while (sending) {
      for (const c of movers)
        c.send(n % 3 ? { to: peer.id } : { group: gid }, `m-${n}`);
      P.send({ group: gid }, `p-${n}`);
      n++;
      await delay(60);
    }
  })();
  await delay(700);
  const t0 = Date.now();
  const st = await T.stop({ signal: 'SIGTERM', timeoutMs: 10000 });
  const stopMs = Date.now() - t0;
  await delay(1500);
  sending = false;
  await loop;
  assert.equal(st.code, 0, `exit ${JSON.stringify(st)}`);
  assert.equal(st.killed, false);
  assert.ok(stopMs <= 5000, `SIGTERM took ${stopMs} ms`);
  for (const c of onT)
    assert.ok(c.closes[1001] >= 1, `${c.name} closes ${JSON.stringify(c.closes)}`);
  const all = [...movers, P];
  await waitFor(() => all.every((c) => c.connected && c.outbox.size === 0 && c.syncing === 0),
    { timeoutMs: 30000, what: 'every client acked and synced' });
  const acks = all.flatMap((c) => [...c.acks.values()].map((a) => ({ ...a, from: c })));
  const members = [...movers, P];
  const wanted = (c) => acks.filter((a) => a.from !== c && (a.conversation === `group:${gid}` ||
    a.conversation === dmConv(c.user.id, peer.id)));
  await waitFor(() => members.every((c) => wanted(c).every((a) => c.received.has(a.id))),
    { timeoutMs: 20000, what: 'every acked message at every recipient' }).catch((e) => {
    const miss = members.map((c) => `${c.name}: ${wanted(c).filter((a) => !c.received.has(a.id)).length}`);
    e.message += `; missing ${miss.join(', ')}`;
    throw e;
  });
  const sent = all.reduce((k, c) => k + c.nextCid, 0);
  const rows = Number(await pg.psql(`SELECT count(*) FROM parley.messages WHERE sender_id IN (${[...users, peer].map((u) => u.id).join(',')})`));
  assert.equal(rows, sent, 'one row per send');
  assert.equal(acks.length, sent);
  for (const c of all) {
    assert.deepEqual(c.ackMismatch, []);
    assert.deepEqual(c.fatal, []);
  }
  assert.deepEqual(await seqGaps(pg), []);
  const dups = all.reduce((k, c) => k + c.rawDups, 0);
  console.log(`# SIGTERM: relay stopped in ${stopMs} ms; ${onT.length} clients moved; ${sent} messages, ` +
    `${members.reduce((k, c) => k + c.received.size, 0)} deliveries checked, ${dups} raw duplicates (sync overlap)`);
  await Promise.all(all.map((c) => c.stop()));
  await T.restart();
});
