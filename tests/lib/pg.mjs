// tests/lib/pg.mjs: a private PostgreSQL cluster for one test file.
//
// startPostgres({name}) copies a cached template cluster (initdb runs once per
// build tree, under $top_builddir/tests/tmp/pg-template, guarded by a lock so
// that `make -j check` builds it once), configures it to listen on a free
// port of 127.0.0.1 only (Unix socket inside the data directory, trust
// authentication for local and loopback connections, fsync and
// synchronous_commit on so commits are durable as in production) and starts
// it with `pg_ctl -w start`, as the `postgres` user when we are root.  The
// server is stopped by PID when the test process exits, including on
// SIGINT/SIGTERM and uncaught errors; the tail of its log is printed on
// stderr when a test failed.
//
// Only node's standard library and the PostgreSQL client programs are used.

import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import {
  topSrcdir, topBuilddir, isRoot, postgresIds, tmpDir, freePort, run,
  onExit, registerLog, tailFile, pidAlive, waitFor, sleepSync, watchdogAdd,
} from './proc.mjs';

/** Directory holding initdb, pg_ctl, postgres, psql. */
export const pgBindir = (() => {
  if (process.env.PG_BINDIR)
    return process.env.PG_BINDIR;
  for (const v of ['15', '16', '17', '14', '13']) {
    const d = `/usr/lib/postgresql/${v}/bin`;
    if (fs.existsSync(path.join(d, 'initdb')))
      return d;
  }
  const r = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '';
})();

/** Is a PostgreSQL server installation available (tests may skip if not)? */
export const havePostgres = !!pgBindir && fs.existsSync(path.join(pgBindir, 'initdb'));

const bin = (p) => path.join(pgBindir, p);
const SUPERUSER = 'postgres';
const DBNAME = 'parley';

// As root, server binaries run as `postgres`; it must own the data directory
// and be able to traverse every parent of it.
function serverIds() {
  return isRoot ? postgresIds() : {};
}

function chownR(dir) {
  if (!isRoot)
    return;
  const { uid, gid } = postgresIds();
  const r = spawnSync('chown', ['-R', `${uid}:${gid}`, dir]);
  if (r.status !== 0)
    throw new Error(`chown -R postgres ${dir} failed`);
}

function checkTraversable(dir) {
  if (!isRoot)
    return;
  for (let d = path.dirname(dir); ; d = path.dirname(d)) {
    const st = fs.statSync(d);
    if ((st.mode & 0o001) === 0 && st.uid !== postgresIds().uid)
      throw new Error(`${d} is not searchable by the postgres user (chmod o+x it, or build elsewhere)`);
    if (d === path.dirname(d))
      break;
  }
}

// ---------------------------------------------------------------- the template

const templateDir = path.join(topBuilddir, 'tests', 'tmp', 'pg-template');

async function initTemplate() {
  const base = path.dirname(templateDir);
  fs.mkdirSync(base, { recursive: true });
  const ready = path.join(templateDir, 'PG_VERSION');
  const version = spawnSync(bin('postgres'), ['--version'], { encoding: 'utf8' }).stdout.trim();
  const stamp = path.join(base, 'pg-template.version');
  const current = () => fs.existsSync(ready) && fs.existsSync(stamp) &&
    fs.readFileSync(stamp, 'utf8') === version;
  if (current())
    return;

  // The lock is a directory (mkdir is atomic) holding the owner's PID; a lock
  // whose owner died is broken.
  const lock = path.join(base, 'pg-template.lock');
  await waitFor(() => {
    if (current())
      return true;
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, 'pid'), String(process.pid));
      return true;
    } catch (e) {
      if (e.code !== 'EEXIST')
        throw e;
      let owner = 0;
      try {
        owner = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8'));
      } catch { /* being written */ }
      const age = Date.now() - fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs;
      if ((owner && !pidAlive(owner)) || (!owner && age > 10000))
        fs.rmSync(lock, { recursive: true, force: true });
      return false;
    }
  }, { timeoutMs: 180000, intervalMs: 100, what: 'the PostgreSQL template lock' });
  try {
    if (current())
      return;
    const tmp = `${templateDir}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.rmSync(templateDir, { recursive: true, force: true });
    fs.mkdirSync(tmp, { mode: 0o700 });
    checkTraversable(tmp);
    chownR(tmp);
    const ids = serverIds();
    await run(bin('initdb'), ['-D', tmp, '-U', SUPERUSER, '-A', 'trust', '-E', 'UTF8',
      '--locale=C.UTF-8', '--no-sync', '--no-instructions'], { ...ids, env: { LC_ALL: 'C.UTF-8' } });
    // The test database, created in single-user mode: no server, no port.
    await run(bin('postgres'), ['--single', '-D', tmp, '-j', 'postgres'],
      { ...ids, input: `CREATE DATABASE ${DBNAME};\n` });
    fs.renameSync(tmp, templateDir);
    fs.writeFileSync(stamp, version);
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- a cluster

function readPid(datadir) {
  try {
    return Number(fs.readFileSync(path.join(datadir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return 0;
  }
}

const SIGNAL_FOR_MODE = { smart: 'SIGTERM', fast: 'SIGINT', immediate: 'SIGQUIT' };

/**
 * Start a private cluster.  Options:
 *   name      used in the directory name and log (default 'pg')
 *   settings  extra postgresql.conf settings, e.g. { track_commit_timestamp: 'on' }
 * Returns {
 *   host ('127.0.0.1'), port, dbname ('parley'), user ('postgres'),
 *   conninfo (libpq key=value), env ({PGHOST, PGPORT, PGUSER, PGDATABASE}),
 *   pid (postmaster, 0 while stopped), dir, datadir, log,
 *   psql(sql, {db, user, vars, args}) -> stdout without trailing newlines
 *     (-X -A -t -q, ON_ERROR_STOP; rejects with e.stderr on error),
 *   psqlFile(file, {db, vars}) -> {stdout, stderr},
 *   installSchema({db}) (psql -f $top_srcdir/schema/install.sql),
 *   listen(channels) (see below), spawnPsql(),
 *   restart({mode: 'fast'|'immediate'|'smart'}), stop({mode}), start(),
 *   running(), logText()
 * }.
 */
export async function startPostgres({ name = 'pg', settings = {} } = {}) {
  if (!havePostgres)
    throw new Error('PostgreSQL server binaries not found (set PG_BINDIR)');
  await initTemplate();
  const dir = tmpDir(name);
  const datadir = path.join(dir, 'data');
  const log = path.join(dir, 'postgres.log');
  checkTraversable(dir);
  const cp = await run('cp', ['-a', templateDir, datadir], { check: false });
  if (cp.code !== 0)
    throw new Error(`copying the PostgreSQL template failed: ${cp.stderr}`);
  fs.chmodSync(datadir, 0o700);

  const port = await freePort();
  // A Unix socket path is limited to 107 bytes; beyond that, TCP only.
  const sockdir = Buffer.byteLength(path.join(datadir, `.s.PGSQL.${port}.lock`)) < 100 ? datadir : '';
  const conf = {
    listen_addresses: "'127.0.0.1'",
    port: String(port),
    unix_socket_directories: `'${sockdir}'`,
    fsync: 'on',
    synchronous_commit: 'on',
    full_page_writes: 'on',
    max_connections: '200',
    shared_buffers: '32MB',
    logging_collector: 'off',
    log_line_prefix: "'%m [%p] %q%a %u@%d '",
    log_min_messages: 'warning',
    log_min_error_statement: 'error',
    log_timezone: "'UTC'",
    timezone: "'UTC'",
    ...Object.fromEntries(Object.entries(settings).map(([k, v]) =>
      [k, typeof v === 'number' || /^[A-Za-z0-9_.]+$/.test(String(v)) ? String(v) : `'${String(v).replace(/'/g, "''")}'`])),
  };
  fs.appendFileSync(path.join(datadir, 'postgresql.conf'),
    '\n# tests/lib/pg.mjs\n' + Object.entries(conf).map(([k, v]) => `${k} = ${v}\n`).join(''));
  fs.writeFileSync(path.join(datadir, 'pg_hba.conf'),
    'local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n');
  fs.writeFileSync(log, '');
  chownR(dir);

  const host = '127.0.0.1';
  const env = { PGHOST: host, PGPORT: String(port), PGUSER: SUPERUSER, PGDATABASE: DBNAME };
  const clientEnv = { ...env, PGCONNECT_TIMEOUT: '10', PGAPPNAME: 'parley-tests', PGTZ: 'UTC' };
  let pid = 0;
  let unhook = () => {};

  const killSync = (sig) => {
    if (pid && pidAlive(pid)) {
      try { process.kill(pid, sig); } catch { /* gone */ }
      // Wait (bounded) so that the directory can be removed afterwards.
      const deadline = Date.now() + 10000;
      while (pidAlive(pid) && Date.now() < deadline)
        sleepSync(20);
    }
  };

  async function start() {
    await run(bin('pg_ctl'), ['-D', datadir, '-l', log, '-w', '-t', '60', '-s', 'start'],
      { ...serverIds() }).catch((e) => {
      e.message += `\n${tailFile(log, 4096)}`;
      throw e;
    });
    pid = readPid(datadir);
    if (!pid)
      throw new Error(`PostgreSQL started but ${datadir}/postmaster.pid has no PID`);
    pg.pid = pid;
    const unwatch = watchdogAdd('SIGQUIT', path.join(datadir, 'postmaster.pid'));
    const unhookExit = onExit(() => killSync('SIGQUIT'));
    unhook = () => {
      unwatch();
      unhookExit();
    };
  }

  async function shutdown(mode = 'fast') {
    const sig = SIGNAL_FOR_MODE[mode];
    if (!sig)
      throw new Error(`unknown shutdown mode ${mode}`);
    if (pid && pidAlive(pid)) {
      process.kill(pid, sig);
      await waitFor(() => !pidAlive(pid), { timeoutMs: 60000, what: `PostgreSQL ${pid} to stop` });
    }
    unhook();
    pid = 0;
    pg.pid = 0;
  }

  const pg = {
    host, port, dbname: DBNAME, user: SUPERUSER, dir, datadir, log, pid: 0,
    conninfo: `host=${host} port=${port} dbname=${DBNAME} user=${SUPERUSER}`,
    env,
    running: () => !!pid && pidAlive(pid),
    logText: () => {
      try {
        return fs.readFileSync(log, 'utf8');
      } catch {
        return '';
      }
    },

    /**
     * Run SQL (psql script text, meta-commands allowed) with ON_ERROR_STOP,
     * unaligned tuples-only quiet output.  Resolves to stdout without the
     * trailing newlines; rejects with psql's stderr on error.
     * Options: db (database), user, vars ({name: value} for -v), args (extra).
     */
    async psql(sql, { db = DBNAME, user = SUPERUSER, vars = {}, args = [] } = {}) {
      const res = await run(bin('psql'), [
        '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
        ...Object.entries(vars).flatMap(([k, v]) => ['-v', `${k}=${v}`]),
        ...args, '-d', db, '-U', user, '-f', '-',
      ], { env: clientEnv, input: sql });
      return res.stdout.replace(/\n+$/, '');
    },

    /** Run a psql script file (ON_ERROR_STOP); resolves to { stdout, stderr }. */
    async psqlFile(file, { db = DBNAME, user = SUPERUSER, vars = {}, args = [] } = {}) {
      const res = await run(bin('psql'), [
        '-X', '-q', '-v', 'ON_ERROR_STOP=1',
        ...Object.entries(vars).flatMap(([k, v]) => ['-v', `${k}=${v}`]),
        ...args, '-d', db, '-U', user, '-f', file,
      ], { env: clientEnv });
      return { stdout: res.stdout, stderr: res.stderr };
    },

    /** Install (or upgrade) the parley schema: psql -f $top_srcdir/schema/install.sql. */
    installSchema(opts = {}) {
      return pg.psqlFile(path.join(topSrcdir, 'schema', 'install.sql'), opts);
    },

    /**
     * Spawn an interactive psql (stdin piped) for tests that need one
     * session over time (LISTEN, open transactions).  Returns the child.
     */
    spawnPsql({ db = DBNAME, user = SUPERUSER, args = [] } = {}) {
      return spawn(bin('psql'), ['-X', '-A', '-t', '-q', '-d', db, '-U', user, ...args],
        { env: { ...process.env, ...clientEnv }, stdio: ['pipe', 'pipe', 'pipe'] });
    },

    /**
     * LISTEN on channels in a psql session of its own.  Returns {
     *   notifications: [{channel, payload}] (in arrival order),
     *   async waitFor(pred, {timeoutMs}) -> the first notification
     *     matching pred(n) not returned before (pred may be a channel name),
     *   async drain() -> every notification that arrived so far (cleared),
     *   async close()
     * }.  psql shows notifications only after a command, so waiting sends
     * a cheap marker query now and then.
     */
    async listen(channels) {
      const child = pg.spawnPsql();
      let out = '';
      let seen = 0;
      let closed = false;
      const notifications = [];
      const taken = new Set();
      const re = /^Asynchronous notification "([^"]+)" with payload "(.*)" received from server process with PID \d+\.$/;
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (d) => {
        out += d;
        const lines = out.split('\n');
        out = lines.pop();
        for (const line of lines) {
          const m = re.exec(line);
          if (m)
            notifications.push({ channel: m[1], payload: m[2] });
          else if (line.startsWith('parley-mark-'))
            seen = Math.max(seen, Number(line.slice(12)));
        }
      });
      child.stderr.setEncoding('utf8');
      let errText = '';
      child.stderr.on('data', (d) => { errText += d; });
      child.on('exit', () => { closed = true; });
      const unhook = onExit(() => { if (!closed) child.kill('SIGKILL'); });
      let mark = 0;
      const roundTrip = async () => {
        if (closed)
          throw new Error(`listening psql exited: ${errText}`);
        const n = ++mark;
        child.stdin.write(`SELECT 'parley-mark-${n}';\n`);
        await waitFor(() => {
          if (closed)
            throw new Error(`listening psql exited: ${errText}`);
          return seen >= n;
        }, { timeoutMs: 10000, intervalMs: 5, what: 'psql to answer' });
      };
      child.stdin.write(channels.map((c) => `LISTEN ${c};\n`).join(''));
      await roundTrip();
      const l = {
        notifications,
        async waitFor(pred, { timeoutMs = 5000 } = {}) {
          const match = typeof pred === 'string' ? (n) => n.channel === pred : pred;
          const find = () => notifications.find((n) => !taken.has(n) && match(n));
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            await roundTrip();
            const n = find();
            if (n) {
              taken.add(n);
              return n;
            }
            if (Date.now() > deadline)
              throw new Error(`no matching notification within ${timeoutMs} ms; got ${JSON.stringify(notifications)}`);
            await new Promise((r) => setTimeout(r, 20));
          }
        },
        async drain() {
          await roundTrip();
          const all = notifications.filter((n) => !taken.has(n));
          all.forEach((n) => taken.add(n));
          return all;
        },
        async close() {
          if (!closed) {
            child.stdin.end('\\q\n');
            await new Promise((r) => (closed ? r() : child.once('exit', r)));
          }
          unhook();
        },
      };
      return l;
    },

    /** Stop (mode 'fast' by default) and start again on the same port. */
    async restart({ mode = 'fast' } = {}) {
      await shutdown(mode);
      await start();
    },

    /** Start again after stop() (same port and data). */
    async start() {
      if (!pid)
        await start();
    },

    /** Stop the server (by PID; mode fast|immediate|smart). */
    async stop({ mode = 'fast' } = {}) {
      await shutdown(mode);
    },
  };

  registerLog(`postgres ${name} log ${log}`, () => tailFile(log));
  await start();
  return pg;
}
