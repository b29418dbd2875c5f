// tests/e2e/schema.test.mjs: the parley schema against a real PostgreSQL.
//
// Installing and re-installing, the administration functions, passwords,
// login with throttling, sessions, post_message and post_messages (gapless seq under
// concurrency, retries, refusals), the notifications, cluster presence,
// the demo data, and the README's worked example of an integrator
// redefining the lookups, run verbatim.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startPostgres, havePostgres, pgBindir } from '../lib/pg.mjs';
import { run, topSrcdir } from '../lib/proc.mjs';

const skip = havePostgres ? false : 'PostgreSQL server binaries not found';
let pg;

before(async () => {
  if (skip)
    return;
  pg = await startPostgres({ name: 'schema', settings: { track_commit_timestamp: 'on' } });
  await pg.installSchema();
});

after(async () => {
  if (pg)
    await pg.stop();
});

// SQL literal.
const q = (s) => `'${String(s).replace(/'/g, "''")}'`;
const hashOf = (secret) => `sha256(convert_to(${q(secret)}, 'UTF8'))`;

// Run SQL that must fail; returns psql's stderr (with the SQLSTATE).
async function sqlError(sql) {
  try {
    await pg.psql(`\\set VERBOSITY verbose\n${sql}`);
  } catch (e) {
    return e.stderr;
  }
  assert.fail(`expected an error from: ${sql}`);
}

// Row of login(): [status, user_id, user_name, session_id, expires_at, retry_after].
async function login(user, password, { addr = '192.0.2.1', secret, ttl = '1 hour' } = {}) {
  secret ??= `cookie-${Math.random()}`;
  const out = await pg.psql(`SELECT * FROM parley.login(${q(user)}, ${q(password)}, ${addr === null ? 'NULL' : q(addr)}, ${hashOf(secret)}, ${q(ttl)}, 'test-agent')`);
  const [status, userId, userName, sessionId, expiresAt, retryAfter] = out.split('|');
  return { status, userId, userName, sessionId, expiresAt, retryAfter: retryAfter === '' ? null : Number(retryAfter), secret };
}

async function createUser(name, password = 'secret-pw') {
  return Number(await pg.psql(`SELECT parley.create_user(${q(name)}, ${q(password)})`));
}

// The schema and data of parley (with or without the migration times).
async function dumpParley(db = 'parley', { migrationTimes = true } = {}) {
  const res = await run(path.join(pgBindir, 'pg_dump'), ['--no-owner', '-n', 'parley', '-d', db,
    ...(migrationTimes ? [] : ['--exclude-table-data=parley.schema_migrations'])],
    { env: { ...pg.env, PGDATABASE: db } });
  // Newer pg_dump releases fence the script with a random \restrict key.
  return res.stdout.replace(/^\\(un)?restrict .*\n/gm, '');
}

async function migrations(db = 'parley') {
  return pg.psql('SELECT version, name, applied_at FROM parley.schema_migrations ORDER BY version', { db });
}

// ---------------------------------------------------------------- install

// The migrations shipped: [{ version, name, file }].
const shipped = fs.readdirSync(path.join(topSrcdir, 'schema', 'upgrade'))
  .filter((f) => /^\d{4}-.*\.sql$/.test(f)).sort()
  .map((file) => {
    const [, num, name] = /^(\d{4})-(.*)\.sql$/.exec(file);
    return { version: Number(num), num, name, file };
  });

test('install.sql applies, and make install installs, every migration of schema/upgrade', { skip }, () => {
  const install = fs.readFileSync(path.join(topSrcdir, 'schema', 'install.sql'), 'utf8');
  const mk = fs.readFileSync(path.join(topSrcdir, 'schema', 'local.mk'), 'utf8');
  for (const f of fs.readdirSync(path.join(topSrcdir, 'schema', 'upgrade')))
    assert.ok(mk.includes(`schema/upgrade/${f}`), `schema/local.mk installs and distributes upgrade/${f}`);
  assert.ok(shipped.length >= 1);
  shipped.forEach((m, i) => {
    assert.equal(m.version, i + 1, `migrations are numbered 1, 2, 3 ... (${m.file})`);
    assert.match(install, new RegExp(`\\\\set parley_version ${m.version}\\n\\\\set parley_migration ${m.num}-${m.name}\\n\\\\ir upgrade/apply.psql`),
      `${m.file} is applied by install.sql`);
  });
});

test('installing again changes nothing', { skip }, async () => {
  const dump1 = await dumpParley();
  const rows1 = await migrations();
  assert.deepEqual(rows1.split('\n').map((r) => r.split('|').slice(0, 2).join('|')),
    shipped.map((m) => `${m.version}|${m.name}`), 'every migration recorded once');
  const again = await pg.installSchema();
  assert.doesNotMatch(again.stdout, /applied migration/, 'no migration applied on the second run');
  assert.match(again.stdout, new RegExp(`parley schema at version ${shipped.length}\\n`));
  assert.equal(await migrations(), rows1);
  assert.equal(await dumpParley(), dump1);
});

test('three installers at once on a fresh database: each migration applied once, all succeed', { skip }, async () => {
  await pg.psql('CREATE DATABASE race', { db: 'postgres' });
  const runs = await Promise.all([1, 2, 3].map(() => pg.installSchema({ db: 'race' })));
  for (const m of shipped) {
    const by = runs.filter((r) => r.stdout.includes(`applied migration ${m.num}-${m.name}\n`));
    assert.equal(by.length, 1, `exactly one installer applied ${m.file}`);
  }
  assert.equal(await pg.psql('SELECT count(*) FROM parley.schema_migrations', { db: 'race' }), String(shipped.length));
  assert.equal(await dumpParley('race', { migrationTimes: false }),
    await dumpParley('parley', { migrationTimes: false }), 'the same schema as a single install');
});

// ---------------------------------------------------------------- administration and passwords

test('create_user validates names and passwords', { skip }, async () => {
  const id = await createUser('Vera');
  assert.ok(id > 0);
  for (const [name, pw, why] of [
    ['', 'pw', 'empty name'],
    ['   ', 'pw', 'blank name'],
    ['x'.repeat(65), 'pw', 'name over 64 characters'],
    [' padded', 'pw', 'leading space'],
    ['tab\tname', 'pw', 'control character'],
    ['nopw', '', 'empty password'],
    ['longpw', 'p'.repeat(73), 'password over 72 bytes'],
  ]) {
    const err = await sqlError(`SELECT parley.create_user(${q(name)}, ${q(pw)})`);
    assert.match(err, /22023/, why);
  }
  assert.match(await sqlError("SELECT parley.create_user(NULL, 'pw')"), /22023/);
  assert.match(await sqlError("SELECT parley.create_user('nullpw', NULL)"), /22023/);
  assert.match(await sqlError("SELECT parley.create_user('vERA', 'pw')"), /23505/, 'names are unique ignoring case');
  assert.ok(await createUser('y'.repeat(64)) > 0, '64 characters is allowed');
  assert.ok(await createUser('Zoë Ångström') > 0, 'non-ASCII names are fine');
  assert.equal(await pg.psql("SELECT count(*) FROM parley.users WHERE name IN ('', 'nopw', 'longpw', 'nullpw')"), '0');
});

test('passwords are stored as bcrypt hashes, never in clear', { skip }, async () => {
  const pw = 'correct horse battery staple';
  const id = await createUser('hashy', pw);
  const hash = await pg.psql(`SELECT password_hash FROM parley.users WHERE id = ${id}`);
  assert.match(hash, /^\$2[ab]\$10\$[./A-Za-z0-9]{53}$/);
  assert.ok(!hash.includes(pw));
  // Nothing anywhere in the schema holds the password.
  const dump = await dumpParley();
  assert.ok(!dump.includes(pw), 'the password appears nowhere in a dump');
  // The same password twice gives two different hashes (salted).
  const id2 = await createUser('hashy2', pw);
  assert.notEqual(await pg.psql(`SELECT password_hash FROM parley.users WHERE id = ${id2}`), hash);
  // A plaintext value cannot be stored even by hand.
  assert.match(await sqlError(`UPDATE parley.users SET password_hash = 'hunter2hunter2hunter2hunter2' WHERE id = ${id}`),
    /23514.*users_password_hash_check/s);
  // set_password: the new one works, the old one not; NULL disables.
  await pg.psql(`SELECT parley.set_password(${id}, 'new-password')`);
  assert.equal((await login('hashy', pw, { addr: null })).status, 'invalid_credentials');
  assert.equal((await login('hashy', 'new-password', { addr: null })).status, 'ok');
  await pg.psql(`SELECT parley.set_password(${id}, NULL)`);
  assert.equal((await login('hashy', 'new-password', { addr: null })).status, 'invalid_credentials');
  assert.match(await sqlError(`SELECT parley.set_password(${id}, '')`), /22023/);
  assert.match(await sqlError('SELECT parley.set_password(987654321, \'x\')'), /P0002/);
});

test('groups and members: visibility, roles, add, change, remove', { skip }, async () => {
  const g = Number(await pg.psql("SELECT parley.create_group('Admins only')"));
  assert.equal(await pg.psql(`SELECT visibility FROM parley.groups WHERE id = ${g}`), 'private', 'private by default');
  const pub = Number(await pg.psql("SELECT parley.create_group('Open house', visibility => 'public')"));
  assert.equal(await pg.psql(`SELECT visibility FROM parley.groups WHERE id = ${pub}`), 'public');
  assert.match(await sqlError("SELECT parley.create_group('x', 'secret')"), /22023/);
  assert.match(await sqlError("SELECT parley.create_group('', 'public')"), /22023/);
  assert.match(await sqlError("SELECT parley.create_group('OPEN HOUSE', 'public')"), /23505/);
  const u = await createUser('member-m');
  await pg.psql(`SELECT parley.add_member(${g}, ${u})`);
  assert.equal(await pg.psql(`SELECT role FROM parley.group_members WHERE group_id = ${g} AND user_id = ${u}`), 'member');
  await pg.psql(`SELECT parley.add_member(${g}, ${u}, 'admin')`);
  assert.equal(await pg.psql(`SELECT role FROM parley.group_members WHERE group_id = ${g} AND user_id = ${u}`), 'admin',
    'adding again changes the role');
  assert.match(await sqlError(`SELECT parley.add_member(${g}, ${u}, 'king')`), /22023/);
  assert.match(await sqlError(`SELECT parley.add_member(${g}, 987654321)`), /P0002/);
  assert.match(await sqlError(`SELECT parley.add_member(987654321, ${u})`), /P0002/);
  assert.equal(await pg.psql(`SELECT parley.is_member(${g}, ${u})`), 't');
  assert.equal(await pg.psql(`SELECT parley.remove_member(${g}, ${u})`), 't');
  assert.equal(await pg.psql(`SELECT parley.remove_member(${g}, ${u})`), 'f');
  assert.equal(await pg.psql(`SELECT parley.is_member(${g}, ${u})`), 'f');
  // join_group: public yes, private no.
  assert.equal(await pg.psql(`SELECT parley.join_group(${pub}, ${u})`), 't');
  assert.equal(await pg.psql(`SELECT parley.join_group(${pub}, ${u})`), 'f');
  assert.match(await sqlError(`SELECT parley.join_group(${g}, ${u})`), /PA403/);
  assert.match(await sqlError(`SELECT parley.join_group(987654321, ${u})`), /PA404/);
  assert.equal(await pg.psql(`SELECT member || ':' || coalesce(role, '-') FROM parley.group_list(${u}) WHERE id = ${pub}`), 'true:member');
  assert.equal(await pg.psql(`SELECT count(*) FROM parley.group_list(${u}) WHERE id = ${g}`), '0', 'private groups of others are not listed');
  assert.equal(await pg.psql(`SELECT parley.leave_group(${pub}, ${u})`), 't');
  assert.equal(await pg.psql(`SELECT member || ':' || coalesce(role, '-') FROM parley.group_list(${u}) WHERE id = ${pub}`), 'false:-');
});

// ---------------------------------------------------------------- login and sessions

test('login: ok, wrong password, unknown user; session stored as a hash', { skip }, async () => {
  const id = await createUser('Lena', 'lena-pw');
  const ok = await login('lena', 'lena-pw', { secret: 'lena-cookie' });
  assert.equal(ok.status, 'ok');
  assert.equal(Number(ok.userId), id);
  assert.equal(ok.userName, 'Lena', 'the stored spelling of the name');
  assert.match(ok.sessionId, /^\d+$/);
  assert.equal(ok.retryAfter, null);
  const row = await pg.psql(`SELECT encode(token_hash, 'hex') = encode(${hashOf('lena-cookie')}, 'hex'),
      user_agent, client_addr, expires_at - created_at FROM parley.sessions WHERE id = ${ok.sessionId}`);
  assert.equal(row, 't|test-agent|192.0.2.1|01:00:00');

  const bad = await login('lena', 'wrong');
  const unknown = await login('nobody-here', 'wrong');
  for (const r of [bad, unknown]) {
    assert.equal(r.status, 'invalid_credentials');
    assert.equal(r.userId, '');
    assert.equal(r.sessionId, '');
    assert.equal(r.retryAfter, null);
  }
  // The token hash must be a SHA-256.
  assert.match(await sqlError("SELECT * FROM parley.login('lena', 'lena-pw', NULL, '\\x0102', '1 hour', NULL)"), /22023/);
});

test('login: an unknown user costs as much time as a wrong password', { skip }, async () => {
  await createUser('timing-user', 'timing-pw');
  const out = await pg.psql(`
    CREATE TEMP TABLE t (kind text, ms float8);
    DO $$
    DECLARE t0 timestamptz;
    BEGIN
      FOR i IN 1..3 LOOP
        t0 := clock_timestamp();
        PERFORM parley.login('timing-user', 'nope', NULL, sha256('a'::bytea), '1 hour', NULL);
        INSERT INTO t VALUES ('known', extract(epoch FROM clock_timestamp() - t0) * 1000);
        t0 := clock_timestamp();
        PERFORM parley.login('timing-ghost-' || i, 'nope', NULL, sha256('a'::bytea), '1 hour', NULL);
        INSERT INTO t VALUES ('unknown', extract(epoch FROM clock_timestamp() - t0) * 1000);
      END LOOP;
    END $$;
    SELECT round(min(ms) FILTER (WHERE kind = 'known')) || '|' || round(min(ms) FILTER (WHERE kind = 'unknown')) FROM t;`);
  const [known, unknown] = out.split('|').map(Number);
  assert.ok(known > 5, `bcrypt takes time (${known} ms)`);
  assert.ok(unknown > known * 0.5 && unknown < known * 2, `similar times: known ${known} ms, unknown ${unknown} ms`);
});

test('login throttling per account: lock, retry_after, growing delay, reset on success', { skip }, async () => {
  await pg.psql(`UPDATE parley.settings SET value = '3' WHERE name = 'login_account_max_failures';
                 UPDATE parley.settings SET value = '1 second' WHERE name = 'login_lock_base'`);
  try {
    await createUser('Theo', 'theo-pw');
    // Two failures, a success: the count starts again.
    for (let i = 0; i < 2; i++)
      assert.equal((await login('theo', 'bad', { addr: `198.51.100.${i}` })).status, 'invalid_credentials');
    assert.equal((await login('theo', 'theo-pw')).status, 'ok');
    for (let i = 0; i < 3; i++)
      assert.equal((await login('THEO', 'bad', { addr: `198.51.100.${i}` })).status, 'invalid_credentials');
    // Locked: even the right password from another address is refused.
    let r = await login('theo', 'theo-pw', { addr: '203.0.113.9' });
    assert.equal(r.status, 'too_many_attempts');
    assert.equal(r.retryAfter, 1);
    assert.equal(r.sessionId, '');
    // Unknown names are throttled alike (no hint that they do not exist).
    for (let i = 0; i < 3; i++)
      await login('ghost-theo', 'bad', { addr: null });
    assert.equal((await login('ghost-theo', 'bad', { addr: null })).status, 'too_many_attempts');

    const lockedUntil = await pg.psql("SELECT locked_until FROM parley.login_throttle WHERE kind = 'account' AND key = 'theo'");
    await pg.psql(`SELECT pg_sleep(greatest(0, extract(epoch FROM '${lockedUntil}'::timestamptz - clock_timestamp())) + 0.05)`);
    // Three more failures: the second lock lasts twice as long.
    for (let i = 0; i < 3; i++)
      assert.equal((await login('theo', 'bad')).status, 'invalid_credentials');
    r = await login('theo', 'theo-pw');
    assert.equal(r.status, 'too_many_attempts');
    assert.equal(r.retryAfter, 2, 'the second lock is 2 s');
    assert.equal(await pg.psql("SELECT lockouts FROM parley.login_throttle WHERE kind = 'account' AND key = 'theo'"), '2');
    const until2 = await pg.psql("SELECT locked_until FROM parley.login_throttle WHERE kind = 'account' AND key = 'theo'");
    await pg.psql(`SELECT pg_sleep(greatest(0, extract(epoch FROM '${until2}'::timestamptz - clock_timestamp())) + 0.05)`);
    assert.equal((await login('theo', 'theo-pw')).status, 'ok', 'usable again once the lock ends');
    assert.equal(await pg.psql("SELECT count(*) FROM parley.login_throttle WHERE kind = 'account' AND key = 'theo'"), '0',
      'a success clears the account');
  } finally {
    await pg.psql(`UPDATE parley.settings SET value = '5' WHERE name = 'login_account_max_failures';
                   UPDATE parley.settings SET value = '1 minute' WHERE name = 'login_lock_base'`);
  }
});

test('login throttling per client address', { skip }, async () => {
  await pg.psql("UPDATE parley.settings SET value = '4' WHERE name = 'login_addr_max_failures'");
  try {
    await createUser('Ada', 'ada-pw');
    const addr = '2001:db8::77';
    for (let i = 0; i < 4; i++)
      assert.equal((await login(`spray-${i}`, 'guess', { addr })).status, 'invalid_credentials');
    const r = await login('ada', 'ada-pw', { addr });
    assert.equal(r.status, 'too_many_attempts', 'the address is locked for every account');
    assert.ok(r.retryAfter >= 59 && r.retryAfter <= 60, `retry_after ${r.retryAfter}`);
    assert.equal((await login('ada', 'ada-pw', { addr: '2001:db8::78' })).status, 'ok', 'other addresses are not');
  } finally {
    await pg.psql("UPDATE parley.settings SET value = '20' WHERE name = 'login_addr_max_failures'");
  }
});

test('session_lookup, session_check and logout: valid, expired, revoked', { skip }, async () => {
  const id = await createUser('Sami', 'sami-pw');
  const a = await login('sami', 'sami-pw', { secret: 'sami-a' });
  const b = await login('sami', 'sami-pw', { secret: 'sami-b' });
  const c = await login('sami', 'sami-pw', { secret: 'sami-c' });
  assert.equal(a.status, 'ok');
  const lookup = (secret) => pg.psql(`SELECT session_id, user_id, user_name, expires_at FROM parley.session_lookup(${hashOf(secret)})`);
  const check = (sid) => pg.psql(`SELECT user_id, user_name FROM parley.session_check(${q(sid)})`);
  assert.equal(await lookup('sami-a'), `${a.sessionId}|${id}|Sami|${a.expiresAt}`);
  assert.equal(await check(a.sessionId), `${id}|Sami`);
  assert.equal(await lookup('not-a-cookie'), '');
  for (const junk of ['', 'abc', '-1', '1e3', '99999999999999999999999', "1' OR '1'='1"])
    assert.equal(await check(junk), '', `session_check(${JSON.stringify(junk)}) is empty, not an error`);

  // Expired.
  await pg.psql(`UPDATE parley.sessions SET expires_at = clock_timestamp() - interval '1 second' WHERE id = ${b.sessionId}`);
  assert.equal(await lookup('sami-b'), '');
  assert.equal(await check(b.sessionId), '');
  assert.equal(await pg.psql(`SELECT parley.logout(${hashOf('sami-b')})`), 'f', 'an expired session is not live');

  // Logout: true once, then the session is gone for both lookups.
  assert.equal(await pg.psql(`SELECT parley.logout(${hashOf('sami-a')})`), 't');
  assert.equal(await pg.psql(`SELECT parley.logout(${hashOf('sami-a')})`), 'f');
  assert.equal(await lookup('sami-a'), '');
  assert.equal(await check(a.sessionId), '');
  assert.equal(await pg.psql(`SELECT parley.logout(${hashOf('never-issued')})`), 'f');

  // A short TTL really expires.
  const d = await login('sami', 'sami-pw', { secret: 'sami-d', ttl: '1 second' });
  assert.notEqual(await lookup('sami-d'), '');
  await pg.psql(`SELECT pg_sleep(greatest(0, extract(epoch FROM '${d.expiresAt}'::timestamptz - clock_timestamp())) + 0.05)`);
  assert.equal(await lookup('sami-d'), '');

  // revoke_sessions counts the live ones only (c).
  assert.equal(await pg.psql(`SELECT parley.revoke_sessions(${id})`), '1');
  assert.equal(await lookup('sami-c'), '');
  assert.equal(await pg.psql(`SELECT parley.revoke_sessions(${id})`), '0');
  void c;
});

// ---------------------------------------------------------------- messages

test('post_message: 8 concurrent clients x 50 messages get seq 1..400, gapless, in commit order', { skip }, async () => {
  const g = Number(await pg.psql("SELECT parley.create_group('Busy room', 'public')"));
  const senders = [];
  for (let i = 0; i < 8; i++) {
    const u = await createUser(`busy-${i}`);
    await pg.psql(`SELECT parley.add_member(${g}, ${u})`);
    senders.push(u);
  }
  await Promise.all(senders.map((u, i) => {
    let sql = '';
    for (let k = 0; k < 50; k++)
      sql += `SELECT seq FROM parley.post_message(${u}, 'group:${g}', 'message ${k} from ${i}', 'busy-${i}-${String(k).padStart(2, '0')}');\n`;
    return pg.psql(sql);
  }));
  const seqs = (await pg.psql(`SELECT seq FROM parley.messages WHERE conversation = 'group:${g}' ORDER BY seq`))
    .split('\n').map(Number);
  assert.deepEqual(seqs, Array.from({ length: 400 }, (_, i) => i + 1));
  assert.equal(await pg.psql(`SELECT last_seq FROM parley.conversations WHERE id = 'group:${g}'`), '400');
  // Commit order: a higher seq never committed before a lower one.
  assert.equal(await pg.psql(`
    SELECT count(*) FROM (
      SELECT pg_xact_commit_timestamp(xmin) AS ts,
             lag(pg_xact_commit_timestamp(xmin)) OVER (ORDER BY seq) AS prev
        FROM parley.messages WHERE conversation = 'group:${g}') x
     WHERE ts < prev`), '0');
  // Each client's messages are in its own sending order.
  assert.equal(await pg.psql(`
    SELECT count(*) FROM (
      SELECT seq, lag(seq) OVER (PARTITION BY sender_id ORDER BY client_id) AS prev
        FROM parley.messages WHERE conversation = 'group:${g}') x
     WHERE seq < prev`), '0');
  // Timestamps have millisecond precision.
  assert.equal(await pg.psql(`SELECT count(*) FROM parley.messages
      WHERE conversation = 'group:${g}' AND created_at <> date_trunc('milliseconds', created_at)`), '0');
});

test('post_message: a repeated client_id returns the original and stores nothing', { skip }, async () => {
  const a = await createUser('dup-a');
  const b = await createUser('dup-b');
  const conv = `dm:${Math.min(a, b)}:${Math.max(a, b)}`;
  const first = await pg.psql(`SELECT id, seq, created_at, duplicate FROM parley.post_message(${a}, '${conv}', 'hello', 'c-1')`);
  const [id, seq, at, dup] = first.split('|');
  assert.equal(seq, '1');
  assert.equal(dup, 'f');
  const listener = await pg.listen(['parley_message']);
  try {
    const again = await pg.psql(`SELECT id, seq, created_at, duplicate FROM parley.post_message(${a}, '${conv}', 'hello again', 'c-1')`);
    assert.equal(again, `${id}|${seq}|${at}|t`);
    assert.equal(await pg.psql(`SELECT count(*) || ':' || max(body) FROM parley.messages WHERE sender_id = ${a}`), '1:hello');
    assert.equal(await pg.psql(`SELECT last_seq FROM parley.conversations WHERE id = '${conv}'`), '1');
    // The other participant may use the same client_id: unique per sender.
    const [id2, seq2, dup2] = (await pg.psql(`SELECT id, seq, duplicate FROM parley.post_message(${b}, '${conv}', 'hi', 'c-1')`)).split('|');
    assert.equal(`${seq2}${dup2}`, '2f');
    const n = await listener.waitFor('parley_message');
    assert.deepEqual(JSON.parse(n.payload), { id: Number(id2), conversation: conv, seq: 2 });
    assert.equal(n.payload, `{"id":${id2},"conversation":"${conv}","seq":2}`, 'compact payload');
    assert.deepEqual(await listener.drain(), [], 'the duplicate sent no notification');
  } finally {
    await listener.close();
  }
});

test('post_message refuses what it must, with parley SQLSTATEs, and writes nothing', { skip }, async () => {
  const owner = await createUser('gate-owner');
  const stranger = await createUser('gate-stranger');
  const g = Number(await pg.psql("SELECT parley.create_group('Gated', 'private')"));
  await pg.psql(`SELECT parley.add_member(${g}, ${owner}, 'owner')`);
  await pg.psql(`SELECT * FROM parley.post_message(${owner}, 'group:${g}', 'members only', 'gate-1')`);
  const before = await pg.psql(`SELECT (SELECT count(*) FROM parley.messages) || ':' ||
      (SELECT last_seq FROM parley.conversations WHERE id = 'group:${g}')`);
  const lo = Math.min(owner, stranger);
  const hi = Math.max(owner, stranger);
  const cases = [
    [`${stranger}, 'group:${g}', 'let me in', 'gate-2'`, 'PA403', 'not a member'],
    [`${stranger}, 'group:987654321', 'x', 'gate-3'`, 'PA404', 'no such group'],
    [`${stranger}, 'dm:${lo}:987654321', 'x', 'gate-4'`, stranger === lo ? 'PA404' : 'PA403', 'dm with unknown user'],
    [`${stranger}, 'dm:${hi}:${lo}', 'x', 'gate-5'`, 'PA400', 'dm ids in the wrong order'],
    [`${stranger}, 'dm:${stranger}:${stranger}', 'x', 'gate-5b'`, 'PA400', 'dm with oneself'],
    [`${stranger}, 'room:1', 'x', 'gate-6'`, 'PA400', 'bad syntax'],
    [`${stranger}, 'group:01', 'x', 'gate-6b'`, 'PA400', 'leading zero'],
    [`${stranger}, 'group:${g}; DROP TABLE parley.messages', 'x', 'gate-6c'`, 'PA400', 'SQL in the id'],
    [`${stranger}, 'dm:${lo}:${hi}', repeat('x', 65537), 'gate-7'`, 'PA413', 'body above 64 KiB'],
    [`${stranger}, 'dm:${lo}:${hi}', 'x', repeat('c', 65)`, 'PA400', 'client_id above 64 bytes'],
    [`${stranger}, 'dm:${lo}:${hi}', 'x', ''`, 'PA400', 'empty client_id'],
    [`${stranger}, 'dm:${lo}:${hi}', NULL, 'gate-8'`, 'PA400', 'NULL body'],
  ];
  for (const [args, state, why] of cases) {
    const err = await sqlError(`SELECT * FROM parley.post_message(${args})`);
    assert.match(err, new RegExp(`ERROR:  ${state}:`), why);
  }
  const after = await pg.psql(`SELECT (SELECT count(*) FROM parley.messages) || ':' ||
      (SELECT last_seq FROM parley.conversations WHERE id = 'group:${g}')`);
  assert.equal(after, before);
  assert.equal(await pg.psql(`SELECT count(*) FROM parley.conversations WHERE id = 'dm:${lo}:${hi}'`), '0');
  // Exactly 64 KiB is fine, and the DM participants are the two users.
  assert.equal(await pg.psql(`SELECT seq FROM parley.post_message(${stranger}, 'dm:${lo}:${hi}', repeat('é', 32768), 'gate-9')`), '1');
  assert.equal(await pg.psql(`SELECT string_agg(x::text, ',' ORDER BY x) FROM parley.conversation_recipients('dm:${lo}:${hi}') x`), `${lo},${hi}`);
});

// post_messages (group commit): the JSON element for one message.
const el = (s, c, b, k) => ({ s, c, b, k });

test('post_messages: one transaction answers each message as post_message would, refusals included', { skip }, async () => {
  const owner = await createUser('batch-owner');
  const stranger = await createUser('batch-stranger');
  const g = Number(await pg.psql("SELECT parley.create_group('Batch room', 'private')"));
  await pg.psql(`SELECT parley.add_member(${g}, ${owner}, 'owner')`);
  const lo = Math.min(owner, stranger);
  const hi = Math.max(owner, stranger);
  const dm = `dm:${lo}:${hi}`;
  const [storedId] = (await pg.psql(`SELECT id FROM parley.post_message(${owner}, 'group:${g}', 'before', 'b-old')`)).split('|');
  const batch = [
    el(owner, `group:${g}`, 'first', 'b-1'),
    el(stranger, `group:${g}`, 'let me in', 'b-2'),		// PA403
    el(owner, dm, 'hello', 'b-3'),				// new conversation
    el(owner, `group:${g}`, 'second', 'b-4'),
    el(owner, `group:${g}`, 'first, sent again', 'b-1'),	// duplicate inside the batch
    el(owner, `group:${g}`, 'before, sent again', 'b-old'),	// duplicate of a stored one
    el(owner, 'group:987654321', 'x', 'b-5'),			// PA404
    el(owner, `dm:${hi}:${lo}`, 'x', 'b-6'),			// PA400
    el(owner, dm, 'x'.repeat(65537), 'b-7'),			// PA413
    el(owner, dm, null, 'b-8'),					// PA400
    el(owner, dm, 'x', 'c'.repeat(65)),				// PA400
    el(stranger, dm, 'hi back', 'b-9'),
    el(stranger, dm, 'dup of a refused one', 'b-2'),		// its first copy was refused
  ];
  const listener = await pg.listen(['parley_message']);
  let rows;
  try {
    rows = (await pg.psql(`SELECT ord, coalesce(seq::text, ''), duplicate, coalesce(error, ''), coalesce(id::text, '')
        FROM parley.post_messages(${q(JSON.stringify(batch))})`)).split('\n').map((l) => l.split('|'));
    const got = rows.map(([ord, seq, dup, err]) => `${ord}:${seq}:${dup}:${err}`);
    assert.deepEqual(got, [
      '1:2:f:', '2::f:PA403', '3:1:f:', '4:3:f:', '5:2:t:', '6:1:t:', '7::f:PA404', '8::f:PA400',
      '9::f:PA413', '10::f:PA400', '11::f:PA400', '12:2:f:', '13::f:PA403',
    ]);
    assert.equal(rows[4][4], rows[0][4], 'the repeated client_id answers with the first copy\'s id');
    assert.equal(rows[5][4], storedId, 'the retry of a stored message answers with its id');
    // One notification per stored message, the same payload as post_message's.
    const notes = [];
    for (let i = 0; i < 4; i++)
      notes.push((await listener.waitFor('parley_message')).payload);
    const want = [0, 2, 3, 11].map((i) => `{"id":${rows[i][4]},"conversation":"${batch[i].c}","seq":${rows[i][1]}}`);
    assert.deepEqual(notes.sort(), want.sort());
    assert.deepEqual(await listener.drain(), [], 'nothing notified for refusals and duplicates');
  } finally {
    await listener.close();
  }
  assert.equal(await pg.psql(`SELECT string_agg(seq || '=' || body, ',' ORDER BY seq) FROM parley.messages WHERE conversation = 'group:${g}'`),
    '1=before,2=first,3=second');
  assert.equal(await pg.psql(`SELECT string_agg(seq || '=' || body, ',' ORDER BY seq) FROM parley.messages WHERE conversation = ${q(dm)}`),
    '1=hello,2=hi back');
  assert.equal(await pg.psql(`SELECT last_seq FROM parley.conversations WHERE id = 'group:${g}'`), '3');
  assert.equal(await pg.psql(`SELECT count(*) FROM parley.post_messages('[]')`), '0');
  assert.match(await sqlError(`SELECT * FROM parley.post_messages('{}')`), /ERROR:  PA400:/);
});

test('post_messages: concurrent batches over the same conversations in opposite orders never deadlock and stay gapless', { skip }, async () => {
  const users = [];
  for (let i = 0; i < 4; i++)
    users.push(await createUser(`cross-${i}`));
  const groups = [];
  for (let i = 0; i < 3; i++) {
    const g = Number(await pg.psql(`SELECT parley.create_group('Cross ${i}', 'public')`));
    for (const u of users)
      await pg.psql(`SELECT parley.add_member(${g}, ${u})`);
    groups.push(`group:${g}`);
  }
  // Each client posts 20 batches; every batch touches all three
  // conversations, half of the clients in one order, half in the other.
  await Promise.all(users.map((u, i) => {
    const order = i % 2 ? [...groups].reverse() : groups;
    let sql = '';
    for (let b = 0; b < 20; b++) {
      const batch = [];
      for (const c of order)
        for (let k = 0; k < 3; k++)
          batch.push(el(u, c, `from ${i} batch ${b} #${k}`, `x-${i}-${String(b).padStart(2, '0')}-${c}-${k}`));
      sql += `SELECT count(*) FROM parley.post_messages(${q(JSON.stringify(batch))}) WHERE error IS NULL AND NOT duplicate;\n`;
    }
    return pg.psql(sql);
  }));
  for (const c of groups) {
    const seqs = (await pg.psql(`SELECT seq FROM parley.messages WHERE conversation = ${q(c)} ORDER BY seq`)).split('\n').map(Number);
    assert.deepEqual(seqs, Array.from({ length: 4 * 20 * 3 }, (_, i) => i + 1), `${c}: gapless`);
    // Within a conversation, each sender's messages keep their order.
    assert.equal(await pg.psql(`SELECT count(*) FROM (
        SELECT seq, lag(seq) OVER (PARTITION BY sender_id ORDER BY client_id) AS prev
          FROM parley.messages WHERE conversation = ${q(c)}) x WHERE seq < prev`), '0', `${c}: sender order`);
  }
});

test('history, sync_messages, conversation_list and mark_read', { skip }, async () => {
  const a = await createUser('hist-a');
  const b = await createUser('hist-b');
  const c = await createUser('hist-c');
  const g = Number(await pg.psql("SELECT parley.create_group('History club', 'private')"));
  await pg.psql(`SELECT parley.add_member(${g}, ${a}); SELECT parley.add_member(${g}, ${b})`);
  const dm = `dm:${a}:${b}`;
  for (let i = 1; i <= 5; i++)
    await pg.psql(`SELECT 1 FROM parley.post_message(${a}, '${dm}', 'dm ${i}', 'hist-dm-${i}')`);
  for (let i = 1; i <= 3; i++)
    await pg.psql(`SELECT 1 FROM parley.post_message(${b}, 'group:${g}', 'group ${i}', 'hist-g-${i}')`);
  assert.equal(await pg.psql(`SELECT seq FROM parley.history(${b}, '${dm}', NULL, 2)`), '4\n5');
  assert.equal(await pg.psql(`SELECT seq || body FROM parley.history(${b}, '${dm}', 4, 2)`), '2dm 2\n3dm 3');
  assert.equal(await pg.psql(`SELECT sender_name FROM parley.history(${b}, '${dm}', NULL, 1)`), 'hist-a');
  assert.match(await sqlError(`SELECT * FROM parley.history(${c}, '${dm}', NULL, 10)`), /PA403/);
  assert.match(await sqlError(`SELECT * FROM parley.history(${c}, 'group:${g}', NULL, 10)`), /PA403/);
  assert.equal(await pg.psql(`SELECT string_agg(conversation || '#' || seq, ',') FROM parley.sync_messages(${a}, '{"${dm}": 3}', 100)`),
    `${dm}#4,${dm}#5,group:${g}#1,group:${g}#2,group:${g}#3`);
  assert.equal(await pg.psql(`SELECT count(*) FROM parley.sync_messages(${c}, '{}', 100)`), '0');
  assert.equal(await pg.psql(`SELECT parley.mark_read(${b}, '${dm}', 3)`), '3');
  assert.equal(await pg.psql(`SELECT parley.mark_read(${b}, '${dm}', 2)`), '3', 'never backwards');
  assert.equal(await pg.psql(`SELECT parley.mark_read(${b}, '${dm}', 99)`), '5', 'never past the end');
  assert.equal(await pg.psql(`SELECT string_agg(conversation || ':' || last_seq || ':' || read_seq || ':' || title, ',') FROM parley.conversation_list(${b})`),
    `${dm}:5:5:hist-a,group:${g}:3:0:History club`);
  const id = await pg.psql(`SELECT id FROM parley.messages WHERE conversation = '${dm}' AND seq = 2`);
  assert.equal(await pg.psql(`SELECT conversation || seq || sender_name || body FROM parley.message_get(${id})`), `${dm}2hist-adm 2`);
});

// ---------------------------------------------------------------- notifications

test('parley_session notifications: revoke_sessions, logout, UPDATE, direct DELETE', { skip }, async () => {
  const id = await createUser('Noa', 'noa-pw');
  const s = [];
  for (let i = 0; i < 4; i++)
    s.push(await login('noa', 'noa-pw', { secret: `noa-${i}` }));
  const listener = await pg.listen(['parley_session']);
  try {
    const payload = (sid) => `{"op":"revoke","sid":"${sid}","user":${id}}`;
    assert.equal(await pg.psql(`SELECT parley.logout(${hashOf('noa-0')})`), 't');
    assert.equal((await listener.waitFor('parley_session')).payload, payload(s[0].sessionId));

    await pg.psql(`DELETE FROM parley.sessions WHERE id = ${s[1].sessionId}`);
    assert.equal((await listener.waitFor('parley_session')).payload, payload(s[1].sessionId));

    assert.equal(await pg.psql(`SELECT parley.revoke_sessions(${id})`), '2');
    const got = [await listener.waitFor('parley_session'), await listener.waitFor('parley_session')].map((n) => n.payload).sort();
    assert.deepEqual(got, [payload(s[2].sessionId), payload(s[3].sessionId)].sort());
    assert.deepEqual(JSON.parse(got[0]), { op: 'revoke', sid: String(s[2].sessionId), user: id });

    // Deleting an already revoked session, or a rolled-back revoke, says nothing.
    await pg.psql(`DELETE FROM parley.sessions WHERE id = ${s[2].sessionId}`);
    const t = await login('noa', 'noa-pw', { secret: 'noa-t' });
    await pg.psql(`BEGIN; UPDATE parley.sessions SET revoked_at = now() WHERE id = ${t.sessionId}; ROLLBACK;`);
    assert.deepEqual(await listener.drain(), []);
    await pg.psql(`UPDATE parley.sessions SET revoked_at = now() WHERE id = ${t.sessionId}`);
    assert.equal((await listener.waitFor('parley_session')).payload, payload(t.sessionId));

    // Deleting the user deletes (and announces) its live sessions.
    const last = await login('noa', 'noa-pw', { secret: 'noa-last' });
    await pg.psql(`DELETE FROM parley.users WHERE id = ${id}`);
    assert.equal((await listener.waitFor('parley_session')).payload, payload(last.sessionId));
    assert.deepEqual(await listener.drain(), [], 'only the live session is announced');
  } finally {
    await listener.close();
  }
});

test('parley_member notifications: add, role, remove_member, direct DELETE', { skip }, async () => {
  const u = await createUser('Mika');
  const v = await createUser('Mira');
  const g = Number(await pg.psql("SELECT parley.create_group('Notified', 'private')"));
  const listener = await pg.listen(['parley_member']);
  try {
    const p = (op, user) => `{"op":"${op}","group":${g},"user":${user}}`;
    await pg.psql(`SELECT parley.add_member(${g}, ${u})`);
    assert.equal((await listener.waitFor('parley_member')).payload, p('add', u));
    await pg.psql(`SELECT parley.add_member(${g}, ${u})`);
    assert.deepEqual(await listener.drain(), [], 'adding with the same role changes nothing');
    await pg.psql(`SELECT parley.add_member(${g}, ${u}, 'owner')`);
    assert.equal((await listener.waitFor('parley_member')).payload, p('role', u));
    await pg.psql(`SELECT parley.remove_member(${g}, ${u})`);
    assert.equal((await listener.waitFor('parley_member')).payload, p('remove', u));
    await pg.psql(`INSERT INTO parley.group_members (group_id, user_id) VALUES (${g}, ${v})`);
    assert.equal((await listener.waitFor('parley_member')).payload, p('add', v));
    await pg.psql(`DELETE FROM parley.group_members WHERE group_id = ${g} AND user_id = ${v}`);
    const n = await listener.waitFor('parley_member');
    assert.equal(n.payload, p('remove', v));
    assert.deepEqual(JSON.parse(n.payload), { op: 'remove', group: g, user: v });
    // Deleting the group removes (and announces) its memberships.
    await pg.psql(`SELECT parley.add_member(${g}, ${u})`);
    assert.equal((await listener.waitFor('parley_member')).payload, p('add', u));
    await pg.psql(`DELETE FROM parley.groups WHERE id = ${g}`);
    assert.equal((await listener.waitFor('parley_member')).payload, p('remove', u));
  } finally {
    await listener.close();
  }
});

// ---------------------------------------------------------------- presence

test('cluster presence: online/offline once per user; sweep_relays cascades', { skip }, async () => {
  const u = await createUser('Pia');
  const w = await createUser('Pim');
  const listener = await pg.listen(['parley_presence']);
  try {
    await pg.psql("SELECT parley.relay_register('relay-a'); SELECT parley.relay_register('relay-b')");
    assert.equal(await pg.psql(`SELECT parley.connection_add('relay-a', 1, ${u}, '1', 'tab-1')`), 't');
    assert.equal((await listener.waitFor('parley_presence')).payload, `{"op":"online","user":${u}}`);
    assert.equal(await pg.psql(`SELECT parley.connection_add('relay-b', 1, ${u}, '1', 'tab-2')`), 'f');
    assert.equal(await pg.psql(`SELECT parley.connection_add('relay-b', 2, ${w}, '2', NULL)`), 't');
    assert.equal((await listener.waitFor('parley_presence')).payload, `{"op":"online","user":${w}}`);
    assert.deepEqual(await listener.drain(), [], 'the second connection of a user is not news');
    assert.equal(await pg.psql(`SELECT online FROM parley.user_list(${u}) WHERE id = ${u}`), 't');

    // relay-b stops heartbeating: swept, its connections go by cascade.
    await pg.psql("UPDATE parley.relays SET heartbeat_at = clock_timestamp() - interval '5 minutes' WHERE relay_id = 'relay-b'");
    assert.equal(await pg.psql("SELECT parley.relay_heartbeat('relay-a')"), 't');
    assert.equal(await pg.psql("SELECT parley.sweep_relays('90 seconds')"), '1');
    assert.equal(await pg.psql("SELECT count(*) FROM parley.connections WHERE relay_id = 'relay-b'"), '0');
    assert.equal(await pg.psql("SELECT string_agg(relay_id, ',') FROM parley.relays WHERE relay_id LIKE 'relay-%'"), 'relay-a');
    assert.equal((await listener.waitFor('parley_presence')).payload, `{"op":"offline","user":${w}}`);
    assert.deepEqual(await listener.drain(), [], `user ${u} is still online on relay-a`);
    assert.equal(await pg.psql("SELECT parley.relay_heartbeat('relay-b')"), 'f', 'a swept relay learns it');
    assert.equal(await pg.psql(`SELECT online FROM parley.user_list(${u}) WHERE id = ${w}`), 'f');

    assert.equal(await pg.psql("SELECT parley.connection_remove('relay-a', 1)"), 't');
    assert.equal((await listener.waitFor('parley_presence')).payload, `{"op":"offline","user":${u}}`);
    assert.equal(await pg.psql("SELECT parley.connection_remove('relay-a', 1)"), 'f');
  } finally {
    await listener.close();
  }
});

test('cluster presence is exact when relays race', { skip }, async () => {
  const u = await createUser('Racer');
  await pg.psql("SELECT parley.relay_register('race-1'); SELECT parley.relay_register('race-2')");
  const listener = await pg.listen(['parley_presence']);
  try {
    for (let round = 0; round < 5; round++) {
      await Promise.all([1, 2].map((r) => pg.psql(`SELECT parley.connection_add('race-${r}', ${round}, ${u}, NULL, NULL)`)));
      await Promise.all([1, 2].map((r) => pg.psql(`SELECT parley.connection_remove('race-${r}', ${round})`)));
    }
    const got = (await listener.drain()).map((n) => JSON.parse(n.payload).op);
    assert.deepEqual(got, Array(5).fill(['online', 'offline']).flat());
  } finally {
    await listener.close();
  }
});

// ---------------------------------------------------------------- demo data

test('demo.sql is idempotent and its users can log in', { skip }, async () => {
  const demo = path.join(topSrcdir, 'schema', 'demo.sql');
  await pg.psqlFile(demo);
  const snapshot = () => pg.psql(`SELECT string_agg(u.name || ':' || g.name || ':' || m.role, ',' ORDER BY u.name, g.name)
      FROM parley.group_members m JOIN parley.users u ON u.id = m.user_id JOIN parley.groups g ON g.id = m.group_id
     WHERE g.name IN ('lobby', 'staff')`);
  const first = await snapshot();
  assert.equal(first, 'alice:lobby:owner,alice:staff:owner,bob:lobby:member,bob:staff:member,carol:lobby:member');
  await pg.psqlFile(demo);
  assert.equal(await snapshot(), first);
  assert.equal(await pg.psql("SELECT count(*) FROM parley.users WHERE name IN ('alice', 'bob', 'carol')"), '3');
  assert.equal(await pg.psql("SELECT visibility FROM parley.groups WHERE name = 'lobby'"), 'public');
  assert.equal(await pg.psql("SELECT visibility FROM parley.groups WHERE name = 'staff'"), 'private');
  for (const name of ['alice', 'bob', 'carol'])
    assert.equal((await login(name, 'parley-demo', { addr: null })).status, 'ok');
});

// ---------------------------------------------------------------- the README's worked example (last: it redefines the lookups)

test("the README's integrator example works verbatim and survives a re-install", { skip }, async () => {
  const readme = fs.readFileSync(path.join(topSrcdir, 'schema', 'README.md'), 'utf8');
  const block = (marker) => {
    const m = new RegExp(`<!-- example: ${marker} -->\\n\`\`\`sql\\n([\\s\\S]*?)\`\`\`\\n<!-- end of example -->`).exec(readme);
    assert.ok(m, `README has the "${marker}" example`);
    return m[1];
  };
  await pg.psql(block('application tables'));
  await pg.psql(block('integration'));

  // The application's data.
  await pg.psql(`
    INSERT INTO app.accounts (id, login) VALUES (1001, 'ines'), (1002, 'omar'), (1003, 'yuki');
    INSERT INTO app.teams (id, name) VALUES (501, 'Blue team');
    INSERT INTO app.team_members (team_id, account_id) VALUES (501, 1001), (501, 1002);
    INSERT INTO app.sessions (session_key, account_id, expires_at) VALUES
      ('ines-cookie-value', 1001, now() + interval '1 hour'),
      ('old-cookie-value', 1002, now() - interval '1 hour');`);
  assert.equal(await pg.psql("SELECT name FROM parley.users WHERE id = 1001"), 'ines', 'accounts mirrored');

  // Re-running install.sql keeps the integration.
  await pg.installSchema();

  const sid = await pg.psql('SELECT id FROM app.sessions WHERE account_id = 1001');
  const row = await pg.psql(`SELECT session_id, user_id, user_name FROM parley.session_lookup(${hashOf('ines-cookie-value')})`);
  assert.equal(row, `${sid}|1001|ines`);
  assert.equal(await pg.psql(`SELECT count(*) FROM parley.session_lookup(${hashOf('old-cookie-value')})`), '0', 'expired');
  assert.equal(await pg.psql(`SELECT user_id || user_name FROM parley.session_check('${sid}')`), '1001ines');
  assert.equal(await pg.psql("SELECT count(*) FROM parley.session_check('not-a-number')"), '0');
  // The index on the hash is what the lookup uses.
  await pg.psql('ANALYZE app.sessions');
  const plan = await pg.psql(`SET enable_seqscan = off; EXPLAIN SELECT * FROM app.sessions WHERE key_sha256 = ${hashOf('x')}`);
  assert.match(plan, /sessions_key_sha256_idx/);

  // Membership from the application's teams.
  assert.equal(await pg.psql('SELECT seq FROM parley.post_message(1002, \'group:501\', \'hello team\', \'app-1\')'), '1');
  assert.match(await sqlError("SELECT * FROM parley.post_message(1003, 'group:501', 'me too', 'app-2')"), /PA403/);
  assert.equal(await pg.psql("SELECT string_agg(x::text, ',' ORDER BY x) FROM parley.group_member_ids(501) x"), '1001,1002');

  // Live effects through the application's own tables.
  const listener = await pg.listen(['parley_session', 'parley_member']);
  try {
    await pg.psql("UPDATE app.sessions SET logged_out = true WHERE session_key = 'ines-cookie-value'");
    assert.equal((await listener.waitFor('parley_session')).payload, `{"op":"revoke","sid":"${sid}","user":1001}`);
    assert.equal(await pg.psql(`SELECT count(*) FROM parley.session_lookup(${hashOf('ines-cookie-value')})`), '0');
    await pg.psql('DELETE FROM app.team_members WHERE team_id = 501 AND account_id = 1002');
    assert.equal((await listener.waitFor('parley_member')).payload, '{"op":"remove","group":501,"user":1002}');
    assert.equal(await pg.psql('SELECT parley.is_member(501, 1002)'), 'f');
  } finally {
    await listener.close();
  }
});
