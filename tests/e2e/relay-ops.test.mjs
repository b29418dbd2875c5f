// tests/e2e/relay-ops.test.mjs: parley-relay as an operator runs it
// (PROTOCOL.md §3): the command line, /healthz following the database
// (200, 503 while PostgreSQL is down, 200 again by itself), sends during an
// outage answered `error unavailable` and never acked, messages committed
// while the LISTEN connection was away delivered anyway (catch-up),
// /metrics in Prometheus text, the connection limit, SIGHUP reloading keys,
// SIGTERM closing every socket with 1001 and exiting 0 within 5 s, and the
// shipped systemd unit passing systemd-analyze verify.

import { test, before, after } from 'node:test';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  assert, skipReason, setupDatabase, writeHmacKey, makeUser, mint, startRelay,
  Client, tmpDir, waitFor, relayBinary, metric,
} from './relay-helpers.mjs';
import { topSrcdir } from '../lib/proc.mjs';

const skip = skipReason() || false;
let pg;
let key;
let dir;

before(async () => {
  if (skip)
    return;
  dir = tmpDir('relay-ops');
  pg = await setupDatabase('relay-ops-pg');
  key = writeHmacKey(dir);
});

after(async () => {
  if (pg)
    await pg.stop();
});

function cli(args, env = {}) {
  const base = {};
  for (const [k, v] of Object.entries(process.env))
    if (!/^(PARLEY_|WS_|PG)/.test(k))
      base[k] = v;
  const r = spawnSync(relayBinary, args, { env: { ...base, ...env }, encoding: 'utf8', timeout: 10000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('command line: --help, --version, --check-config, --print-config', { skip }, () => {
  const h = cli(['--help']);
  assert.equal(h.code, 0);
  for (const name of ['PARLEY_DB', 'PARLEY_JWT_ALG', 'PARLEY_JWT_KEY_FILE', 'PARLEY_JWT_KID',
    'PARLEY_JWT_ISSUER', 'PARLEY_JWT_AUDIENCE', 'PARLEY_RELAY_LISTEN', 'WS_HEARTBEAT_INTERVAL',
    'WS_CONNECTION_TIMEOUT', 'PARLEY_AUTH_TIMEOUT', 'PARLEY_MAX_FRAME', 'PARLEY_MAX_CONN_PER_USER',
    'PARLEY_RATE', 'PARLEY_FLOOD_LIMIT', 'PARLEY_SEND_QUEUE', 'PARLEY_PRESENCE_SCOPE',
    'PARLEY_ALLOWED_ORIGINS', 'PARLEY_LOG_LEVEL', 'PARLEY_MAX_CONNECTIONS'])
    assert.match(h.stdout, new RegExp(`env ${name}\\b`), `--help lacks ${name}`);
  assert.match(h.stdout, /--listen ADDR:PORT .*default 127\.0\.0\.1:8090/);
  // Every option of --help is in the man page: flag, environment name, file key.
  const man = fs.readFileSync(path.join(topSrcdir, 'relay', 'parley-relay.8'), 'utf8');
  const opts = [...h.stdout.matchAll(/^ {2}--([a-z-]+) \S+ .*\(env ([A-Z_]+)/gm)]
    .filter(([, flag]) => flag !== 'config');
  assert.ok(opts.length >= 25, `only ${opts.length} options in --help`);
  for (const [, flag, env] of opts) {
    const key = env.replace(/^(PARLEY_|WS_)/, '').toLowerCase();
    assert.match(man, new RegExp(`^\\.It Fl -${flag} .*Ev ${env} , Cm ${key}$`, 'm'),
      `parley-relay.8 lacks --${flag} / ${env} / ${key}`);
  }
  assert.match(h.stdout, /env WS_HEARTBEAT_INTERVAL, default 30s/);
  assert.match(cli(['--version']).stdout, /^parley-relay \d+\.\d+\.\d+\n$/);

  const ok = cli(['--check-config'], { PARLEY_JWT_KEY_FILE: key.file });
  assert.deepEqual([ok.code, ok.stdout], [0, 'ok\n']);
  const missing = cli(['--check-config']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /jwt_key_file/);
  const short = path.join(dir, 'short.key');
  fs.writeFileSync(short, 'too short', { mode: 0o600 });
  assert.equal(cli(['--check-config'], { PARLEY_JWT_KEY_FILE: short }).code, 1);
  const bad = cli(['--check-config', '--rate', 'fast'], { PARLEY_JWT_KEY_FILE: key.file });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /rate/);
  assert.equal(cli(['--no-such-flag']).code, 1);

  const conf = path.join(dir, 'relay.conf');
  fs.writeFileSync(conf, 'heartbeat_interval = 45s\nmax_frame = 32k\ndb = "host=/nonexistent password=hunter2"\n');
  const p = cli(['--print-config', '--config', conf, '--max-frame', '16k'], { WS_HEARTBEAT_INTERVAL: '40s' });
  assert.equal(p.code, 0);
  assert.match(p.stdout, /^heartbeat_interval = 40s +# env$/m);
  assert.match(p.stdout, /^max_frame = 16k +# flag$/m);
  assert.match(p.stdout, /^rate = 20\/s +# default$/m);
  assert.match(p.stdout, /^db = \(set\) +# file$/m);
  assert.doesNotMatch(p.stdout, /hunter2/);
});

test('healthz follows the database; sends during an outage are unavailable, never acked', { skip }, async () => {
  const relay = await startRelay({ pg, key, name: 'relay-ops-health' });
  try {
    const h = await relay.http('/healthz');
    assert.equal(h.status, 200);
    assert.equal(JSON.parse(h.body).status, 'ok');
    assert.equal((await relay.http('/healthz', { method: 'POST' })).status, 405);
    const a = await makeUser(pg, 'down');
    const b = await makeUser(pg, 'down');
    const ca = await Client.connect(relay.url, await mint(key, a));

    await pg.stop();
    await waitFor(async () => (await relay.http('/healthz')).status === 503,
      { timeoutMs: 10000, what: '/healthz 503 after PostgreSQL stopped' });
    const sick = await relay.http('/healthz');
    assert.equal(JSON.parse(sick.body).status, 'unavailable');
    const e = await ca.request({ type: 'private_message', to: b.id, body: 'lost?', client_id: 'out-1', ref: 'o1' });
    assert.deepEqual([e.type, e.code, e.ref], ['error', 'unavailable', 'o1']);
    await ca.none('ack', 300);
    // Handshakes need the session check: 503 while the database is away.
    const refused = await Client.open(relay.url, { protocols: ['parley.v1', `parley.token.${await mint(key, b)}`] })
      .then(() => null, (err) => err);
    assert.equal(refused.status, 503);

    await pg.start();
    await waitFor(async () => (await relay.http('/healthz')).status === 200,
      { timeoutMs: 15000, what: '/healthz 200 after PostgreSQL came back' });
    // The same client_id is stored once when retried.
    const cb = await Client.connect(relay.url, await mint(key, b));
    const ack = await ca.request({ type: 'private_message', to: b.id, body: 'retry', client_id: 'out-1' });
    assert.equal(ack.type, 'ack');
    assert.equal((await cb.next('private_message')).body, 'retry');
    assert.equal(Number(await pg.psql(`SELECT count(*) FROM parley.messages WHERE sender_id = ${a.id}`)), 1);
    ca.close();
    cb.close();
  } finally {
    await relay.stop();
  }
});

test('messages committed while LISTEN was down are delivered after it reconnects', { skip }, async () => {
  const relay = await startRelay({ pg, key, name: 'relay-ops-catchup' });
  try {
    const a = await makeUser(pg, 'cu');
    const b = await makeUser(pg, 'cu');
    const cb = await Client.connect(relay.url, await mint(key, b));
    const conv = `dm:${Math.min(a.id, b.id)}:${Math.max(a.id, b.id)}`;
    await pg.psql(`SELECT * FROM parley.post_message(${a.id}, '${conv}', 'before', 'cu-0')`);
    assert.equal((await cb.next('private_message')).body, 'before');
    // Cut the listener off and commit in the same breath, before it is back.
    await pg.psql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE application_name = 'parley-relay-listen';
                   SELECT * FROM parley.post_message(${a.id}, '${conv}', 'during 1', 'cu-1');
                   SELECT * FROM parley.post_message(${a.id}, '${conv}', 'during 2', 'cu-2');`);
    const m1 = await cb.next('private_message', { timeoutMs: 10000 });
    const m2 = await cb.next('private_message', { timeoutMs: 10000 });
    assert.deepEqual([m1.seq, m1.body, m2.seq, m2.body], [2, 'during 1', 3, 'during 2']);
    assert.match(relay.logText(), /listener: connected again/);
    await pg.psql(`SELECT * FROM parley.post_message(${a.id}, '${conv}', 'after', 'cu-3')`);
    assert.deepEqual((await cb.next('private_message')).seq, 4);
    await cb.none('private_message', 300);
    cb.close();
  } finally {
    await relay.stop();
  }
});

test('/metrics is Prometheus text with the counters that moved', { skip }, async () => {
  const relay = await startRelay({ pg, key, name: 'relay-ops-metrics' });
  try {
    const a = await makeUser(pg, 'met');
    const b = await makeUser(pg, 'met');
    const ca = await Client.connect(relay.url, await mint(key, a));
    const cb = await Client.connect(relay.url, await mint(key, b));
    await ca.request({ type: 'private_message', to: b.id, body: 'count me', client_id: 'mt-1' });
    await cb.next('private_message');
    await ca.request({ type: 'bogus' });
    cb.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(70000) }));
    await cb.whenClosed();
    const m = await relay.http('/metrics');
    assert.equal(m.status, 200);
    assert.match(m.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const t = m.body;
    for (const line of t.split('\n').filter((l) => l && !l.startsWith('#')))
      assert.match(line, /^[a-z_]+(\{[a-z]+="[^"]*"\})? -?[0-9.e+]+$/, line);
    assert.equal(metric(t, 'parley_relay_connections'), 1);
    assert.equal(metric(t, 'parley_relay_messages_in_total'), 1);
    assert.equal(metric(t, 'parley_relay_messages_stored_total'), 1);
    assert.equal(metric(t, 'parley_relay_acks_total'), 1);
    assert.ok(metric(t, 'parley_relay_messages_out_total') >= 1);
    assert.equal(metric(t, 'parley_relay_errors_total{code="unknown_type"}'), 1);
    assert.equal(metric(t, 'parley_relay_closes_total{code="1009"}'), 1);
    assert.equal(metric(t, 'parley_relay_db_up'), 1);
    assert.ok(metric(t, 'parley_relay_db_latency_seconds_count') >= 3);
    assert.ok(metric(t, 'parley_relay_notification_lag_seconds_count') >= 1);
    assert.match(t, /^# TYPE parley_relay_db_latency_seconds histogram$/m);
    // Every metric the man page names is there.
    const man = fs.readFileSync(path.join(topSrcdir, 'relay', 'parley-relay.8'), 'utf8');
    const named = [...man.matchAll(/^\.Li (parley_relay_[a-z_]+)/gm)].map((x) => x[1]);
    assert.ok(named.length >= 14, `the man page names ${named.length} metrics`);
    for (const name of named)
      assert.match(t, new RegExp(`^# TYPE ${name} (counter|gauge|histogram)$`, 'm'), `${name} is not in /metrics`);
    ca.close();
  } finally {
    await relay.stop();
  }
});

test('PARLEY_MAX_CONNECTIONS: a handshake beyond it gets 503; PARLEY_AUTH_FRAME=0 needs a token', { skip }, async () => {
  const relay = await startRelay({ pg, key, name: 'relay-ops-max',
    env: { PARLEY_MAX_CONNECTIONS: '2', PARLEY_AUTH_FRAME: '0' } });
  try {
    const u = await makeUser(pg, 'max');
    // PARLEY_AUTH_FRAME=0: no WebSocket without a token in the handshake.
    const noToken = await Client.open(relay.url, { protocols: ['parley.v1'] }).then(() => null, (e) => e);
    assert.deepEqual([noToken.status, noToken.body.error], [401, 'invalid_token']);
    const c1 = await Client.connect(relay.url, await mint(key, u));
    const c2 = await Client.connect(relay.url, await mint(key, u));
    const e = await Client.connect(relay.url, await mint(key, u)).then(() => null, (err) => err);
    assert.equal(e.status, 503);
    assert.equal(e.body.error, 'unavailable');
    c1.close();
    await c1.whenClosed();
    await waitFor(async () => JSON.parse((await relay.http('/healthz')).body).connections === 1);
    const c3 = await Client.connect(relay.url, await mint(key, u));
    c2.close();
    c3.close();
  } finally {
    await relay.stop();
  }
});

test('PARLEY_CONN_RATE: 429 past the burst, per client address (X-Forwarded-For from a trusted proxy)', { skip }, async () => {
  const relay = await startRelay({ pg, key, name: 'relay-ops-rate', env: { PARLEY_CONN_RATE: '2/s' } });
  try {
    const u = await makeUser(pg, 'rate');
    const token = await mint(key, u);
    const open = (headers) => Client.open(relay.url, { protocols: ['parley.v1', `parley.token.${token}`], headers })
      .then((c) => { c.close(); return 101; }, (e) => e);
    const got = [];
    for (let i = 0; i < 5; i++)
      got.push(await open());
    assert.deepEqual(got.slice(0, 4), [101, 101, 101, 101]);
    assert.equal(got[4].status, 429);
    assert.equal(got[4].body.error, 'rate_limited');
    assert.equal(got[4].headers['retry-after'], '1');
    // Another client behind the proxy (127.0.0.1 is trusted) has its own bucket.
    assert.equal(await open({ 'X-Forwarded-For': '198.51.100.1, 203.0.113.9' }), 101);
    await waitFor(() => /ip=203\.0\.113\.9: connected/.test(relay.logText()), { what: 'the forwarded address in the log' });
    // And the bucket refills.
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(await open(), 101);
  } finally {
    await relay.stop();
  }
});

test('SIGHUP reloads the keys: a rotated key list is used at once', { skip }, async () => {
  const newKey = writeHmacKey(dir, 'next.key');
  const listFile = path.join(dir, 'keys.conf');
  fs.writeFileSync(listFile, `jwt_key_file = ${key.file}\n`);
  const relay = await startRelay({ pg, key, name: 'relay-ops-hup', args: ['--config', listFile],
    env: { PARLEY_JWT_KEY_FILE: '' } });
  try {
    const u = await makeUser(pg, 'hup');
    const refusedNew = await Client.connect(relay.url, await mint(newKey, u)).then(() => null, (e) => e);
    assert.equal(refusedNew.status, 401);
    fs.writeFileSync(listFile, `jwt_key_file = ${newKey.file},${key.file}\n`);
    const at = relay.logSize();
    relay.kill('SIGHUP');
    await relay.waitForLog(/configuration and keys reloaded/, { from: at });
    const c1 = await Client.connect(relay.url, await mint(newKey, u));
    const c2 = await Client.connect(relay.url, await mint(key, u));
    // A broken reload keeps the old settings.
    fs.writeFileSync(listFile, `jwt_key_file = ${path.join(dir, 'missing.key')}\n`);
    const at2 = relay.logSize();
    relay.kill('SIGHUP');
    await relay.waitForLog(/reload failed, keeping the old settings/, { from: at2 });
    const c3 = await Client.connect(relay.url, await mint(newKey, u));
    for (const c of [c1, c2, c3])
      c.close();
  } finally {
    await relay.stop();
  }
});

test('SIGTERM: every socket closed with 1001, exit 0 within 5 s', { skip }, async () => {
  const relay = await startRelay({ pg, key, name: 'relay-ops-term' });
  const users = [await makeUser(pg, 'term'), await makeUser(pg, 'term')];
  const clients = [];
  for (let i = 0; i < 6; i++)
    clients.push(await Client.connect(relay.url, await mint(key, users[i % 2])));
  // One that never authenticated, one that does not answer close frames.
  const pending = await Client.open(relay.url, { protocols: ['parley.v1'] });
  const t0 = Date.now();
  const st = await relay.stop({ signal: 'SIGTERM', timeoutMs: 8000 });
  const took = Date.now() - t0;
  assert.deepEqual([st.code, st.signal, st.killed], [0, null, false]);
  assert.ok(took < 5000, `exit took ${took} ms`);
  for (const c of [...clients, pending])
    assert.equal((await c.whenClosed()).code, 1001);
  assert.match(relay.logText(), /stopped/);
});

test('the shipped systemd unit verifies cleanly (systemd-analyze verify, no warnings)', {
  skip: skip || (!fs.existsSync('/usr/bin/systemd-analyze') && 'systemd-analyze not installed'),
}, () => {
  // The unit as an operator installs it, pointing at the binary under test;
  // its Documentation= man page found through a MANPATH of our own.
  const unit = fs.readFileSync(path.join(topSrcdir, 'contrib', 'systemd', 'parley-relay.service'), 'utf8');
  assert.match(unit, /^ExecStart=\/usr\/local\/bin\/parley-relay --config \/etc\/parley\/relay\.conf$/m);
  for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'DynamicUser=yes', 'CapabilityBoundingSet=',
    'SystemCallFilter=@system-service', 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6', 'MemoryDenyWriteExecute=yes'])
    assert.ok(unit.split('\n').includes(line), `hardening line missing: ${line}`);
  const file = path.join(dir, 'parley-relay.service');
  fs.writeFileSync(file, unit.replace('/usr/local/bin/parley-relay', relayBinary));
  const man = path.join(dir, 'man', 'man8');
  fs.mkdirSync(man, { recursive: true });
  fs.copyFileSync(path.join(topSrcdir, 'relay', 'parley-relay.8'), path.join(man, 'parley-relay.8'));
  const r = spawnSync('/usr/bin/systemd-analyze', ['verify', file],
    { encoding: 'utf8', env: { ...process.env, MANPATH: path.join(dir, 'man') }, timeout: 20000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', `systemd-analyze complained:\n${r.stderr}`);
});
