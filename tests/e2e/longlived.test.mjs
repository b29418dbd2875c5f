// tests/e2e/longlived.test.mjs: long-lived connections (issue 4).
//
// 1. A connection through the nginx proxy as deployed (contrib/nginx/
//    parley.conf, its proxy timeouts untouched), idle except for the
//    relay's heartbeats at the default WS_HEARTBEAT_INTERVAL (30 s), stays
//    up: the pings arrive on time, nothing closes it, and at the end it
//    still answers and receives.  In CI it runs 70 s (past nginx's default
//    60 s proxy timeouts, and two heartbeats); with PARLEY_LONG_TESTS=1 it
//    runs 6.5 minutes, past WS_CONNECTION_TIMEOUT (2 min) too, as the issue
//    asks (PARLEY_LONGLIVED_SECONDS overrides either).
// 2. A thousand connections through nginx, opened (authenticated, welcome)
//    and closed in rounds of 200, leave nothing behind in the relay: the
//    same thread count and open descriptors as before, no row in
//    parley.connections, and resident memory within 1 MiB.  Memory is
//    measured after warm-up rounds: civetweb serves each connection on one
//    of its worker threads, and a thread's stack and malloc arena become
//    resident the first time it is used, which takes several rounds to
//    level off (a leak would not).
// The two run at the same time on separate relays, nginx instances and
// databases, so the churn never touches the idle connection.

import { test, before, after } from 'node:test';
import path from 'node:path';
import {
  assert, skipReason, setupDatabase, writeHmacKey, mint, Client, tmpDir,
} from './relay-helpers.mjs';
import {
  startRelayAt, makeUsers, procStats, waitFor, delay, haveNginx,
} from './fault-helpers.mjs';
import { startNginx } from '../lib/web.mjs';

const skip = skipReason() || (haveNginx ? false : 'nginx is not installed');
const LONG = process.env.PARLEY_LONG_TESTS === '1';
const IDLE_S = Number(process.env.PARLEY_LONGLIVED_SECONDS || (LONG ? 390 : 70));
const CHURN = Number(process.env.PARLEY_CHURN_CONNECTIONS || 1000);
const ROUND = 200;
// Resident memory may grow by this much over the measured 1,000
// connections (a leak of 1 KiB per connection would show).
const RSS_TOLERANCE_KB = 1024;

let pg;
let pg2;           // the churn's own database: its presence events stay away from the idle user
let key;
let idleRelay;
let churnRelay;
let idleNginx;
let churnNginx;
let idle = null;       // { client, opened, pings: [ms], peer }

before(async () => {
  if (skip)
    return;
  const dir = tmpDir('longlived');
  pg = await setupDatabase('longlived-pg');
  pg2 = await setupDatabase('longlived-churn-pg');
  key = writeHmacKey(dir);
  // Default heartbeat and connection timeout (30 s, 2 min) for the idle one.
  idleRelay = await startRelayAt({ pg, key, name: 'll-idle', env: { PARLEY_MAX_CONNECTIONS: '16' } });
  churnRelay = await startRelayAt({
    pg: pg2, key, name: 'll-churn',
    env: { PARLEY_MAX_CONNECTIONS: String(ROUND + 50), PARLEY_MAX_CONN_PER_USER: '8' },
  });
  idleNginx = await startNginx({ name: 'll-nginx-idle', sock: path.join(dir, 'no-token.sock'), relay: idleRelay.addr });
  churnNginx = await startNginx({ name: 'll-nginx-churn', sock: path.join(dir, 'no-token.sock'), relay: churnRelay.addr });
  // The idle connection opens now; the first test runs meanwhile.
  const [u, peer] = await makeUsers(pg, 2, 'idle');
  const client = await Client.connect(`ws://127.0.0.1:${idleNginx.port}/ws`, await mint(key, u));
  const pings = [];
  client.ws.on('ping', () => pings.push(Date.now()));
  idle = { client, user: u, peer, opened: Date.now(), pings };
});

after(async () => {
  if (idle)
    idle.client.close();
  for (const s of [idleNginx, churnNginx, idleRelay, churnRelay])
    if (s)
      await s.stop();
  for (const p of [pg, pg2])
    if (p)
      await p.stop();
});

test(`${CHURN} connections opened and closed through nginx leave no thread, fd, row or memory behind`, { skip, timeout: 300000 }, async () => {
  const users = await makeUsers(pg2, ROUND / 5, 'churn');   // 5 connections each per round
  const url = `ws://127.0.0.1:${churnNginx.port}/ws`;
  const tokens = await Promise.all(users.map((u) => mint(key, u)));
  const settle = async () => {
    await waitFor(async () => (await churnRelay.http('/healthz')).json?.connections === 0,
      { timeoutMs: 30000, what: 'the relay to count no connection' });
    await waitFor(async () => (await pg2.psql(`SELECT count(*) FROM parley.connections WHERE relay_id = '${churnRelay.id}'`)) === '0',
      { timeoutMs: 30000, what: 'no parley.connections row of the relay' });
    await delay(500);
  };
  let peak = null;
  const round = async () => {
    const conns = [];
    for (let i = 0; i < ROUND; i += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, (_, k) =>
        Client.connect(url, tokens[(i + k) % users.length])));
      conns.push(...batch);
    }
    assert.equal(conns.length, ROUND);
    assert.ok(conns.every((c) => c.welcome && c.welcome.type === 'welcome'));
    const open = procStats(churnRelay.pid);
    if (!peak || open.rssKb > peak.rssKb)
      peak = open;
    const closed = Promise.all(conns.map((c) => c.whenClosed({ timeoutMs: 20000 })));
    conns.forEach((c) => c.close());
    await closed;
    await settle();
  };
  await settle();
  const start = procStats(churnRelay.pid);
  // Warm-up: each round runs on a different subset of civetweb's worker
  // threads, whose stacks and malloc arenas become resident as they are
  // first used; rounds until that levels off (two rounds under 64 KiB).
  const warmup = [];
  let calm = 0;
  for (let w = 0; w < 15 && calm < 2; w++) {
    await round();
    warmup.push(procStats(churnRelay.pid).rssKb);
    calm = warmup.length > 1 && warmup[warmup.length - 1] - warmup[warmup.length - 2] < 64 ? calm + 1 : 0;
  }
  const warm = procStats(churnRelay.pid);
  const series = [];
  for (let n = 0; n < CHURN / ROUND; n++) {
    await round();
    series.push(procStats(churnRelay.pid));
  }
  const end = series[series.length - 1];
  const growth = end.rssKb - warm.rssKb;
  console.log(`# relay before: ${JSON.stringify(start)}; RSS after each warm-up round of ${ROUND}: ${warmup.join(', ')} KiB; ` +
    `with ${ROUND} open (highest): ${JSON.stringify(peak)}; RSS after each measured round: ` +
    `${series.map((x) => x.rssKb).join(', ')} KiB (growth over ${CHURN} connections ${growth} KiB, ` +
    `tolerance ${RSS_TOLERANCE_KB} KiB); threads ${end.threads}, fds ${end.fds}`);
  assert.equal(end.threads, start.threads, 'threads');
  assert.ok(series.every((x) => x.threads === start.threads), 'threads after every round');
  assert.equal(end.fds, start.fds, 'open file descriptors');
  assert.ok(series.every((x) => x.fds === start.fds), 'open file descriptors after every round');
  assert.ok(growth <= RSS_TOLERANCE_KB, `RSS grew ${growth} KiB over ${CHURN} connections`);
  const metrics = (await churnRelay.http('/metrics')).body;
  assert.match(metrics, /parley_relay_connections(\{[^}]*\})? 0\b/, 'the metrics count no open connection');
  assert.equal((await churnRelay.http('/healthz')).status, 200);
});

test(`an idle connection through nginx stays up for ${IDLE_S} s on heartbeats alone`, { skip, timeout: (IDLE_S + 120) * 1000 }, async () => {
  const { client, opened, pings, peer, user } = idle;
  const hb = client.welcome.heartbeat_interval;
  assert.equal(hb, 30, 'the default WS_HEARTBEAT_INTERVAL');
  const left = opened + IDLE_S * 1000 - Date.now();
  if (left > 0)
    await delay(left);
  const lived = (Date.now() - opened) / 1000;
  assert.equal(client.closed, null, `closed after ${lived} s: ${JSON.stringify(client.closed)}`);
  // Pings every heartbeat interval (a little slack for a loaded machine).
  const gaps = pings.map((t, i) => (t - (i ? pings[i - 1] : opened)) / 1000);
  console.log(`# idle connection: ${lived.toFixed(1)} s through nginx, ${pings.length} pings, gaps ${gaps.map((g) => g.toFixed(1)).join(', ')} s`);
  assert.ok(pings.length >= Math.floor(IDLE_S / hb) - 1 && pings.length >= 2, `${pings.length} pings in ${lived} s`);
  assert.ok(gaps.every((g) => g <= hb + 5), `ping gaps ${gaps}`);
  // Nothing but heartbeats reached it meanwhile; it still works both ways.
  assert.deepEqual(client.inbox, []);
  assert.equal((await client.request({ type: 'ping' })).type, 'pong');
  const other = await Client.connect(idleRelay.url, await mint(key, peer));
  const ack = await other.request({ type: 'private_message', to: user.id, body: 'still there?', client_id: 'll-1' });
  assert.equal(ack.type, 'ack');
  assert.equal((await client.next('private_message')).id, ack.id);
  other.close();
});
