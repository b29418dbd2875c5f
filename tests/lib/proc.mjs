// tests/lib/proc.mjs: start and stop the services an end-to-end test needs.
//
// A service is a child process whose stdout and stderr go to a log file under
// the test's private directory ($top_builddir/tests/tmp/<name>-<pid>/).  We
// wait for readiness by polling a TCP port or the log (never a fixed sleep),
// stop by PID (SIGTERM, then SIGKILL after a timeout), kill whatever is still
// running when the test process exits (normally, by SIGINT/SIGTERM or after an
// uncaught error), print the tail of every service log when a test failed, and
// can fail a test on any sanitizer report in a service's log.
//
// Nothing here depends on npm packages: only node's standard library.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'node:test';

const libdir = path.dirname(fileURLToPath(import.meta.url));

/** Absolute source tree top ($top_srcdir from automake, else guessed). */
export const topSrcdir = path.resolve(process.env.top_srcdir || path.join(libdir, '..', '..'));
/** Absolute build tree top ($top_builddir from automake, else the source tree). */
export const topBuilddir = path.resolve(process.env.top_builddir || topSrcdir);

/** True when we run as root (then servers that refuse root run as `postgres`). */
export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

// ---------------------------------------------------------------- failure tracking

let failed = false;
// node:test gives every test's context to a root-level afterEach; t.passed
// (node >= 20.12) tells whether it failed.  process.exitCode is the fallback.
try {
  afterEach((t) => {
    if (t && t.passed === false)
      failed = true;
  });
} catch {
  // not running under node:test: rely on the exit code
}

/** Did any test of this process fail (so far)? */
export function testsFailed() {
  return failed || (process.exitCode !== undefined && process.exitCode !== 0);
}

/** Mark the run as failed (e.g. a harness error outside a test). */
export function markFailed() {
  failed = true;
}

// ---------------------------------------------------------------- cleanup at exit

// Synchronous cleanup functions, run last-registered-first at exit.
const live = new Set();
const logs = new Map();          // name -> function returning log text tail
let exitHooked = false;
let logsPrinted = false;

/**
 * Register a synchronous cleanup function run when the process exits for any
 * reason node lets us see.  Returns a function that unregisters it.
 */
export function onExit(fn) {
  hookExit();
  live.add(fn);
  return () => live.delete(fn);
}

/**
 * Register a log whose tail is printed on stderr at exit when a test failed.
 * `read` returns the text (called at exit; it must be synchronous).
 */
export function registerLog(name, read) {
  hookExit();
  logs.set(name, read);
}

function runExitHooks() {
  // Last registered first, like atexit(3): a server goes before its directory.
  for (const fn of [...live].reverse()) {
    live.delete(fn);
    try {
      fn();
    } catch (e) {
      process.stderr.write(`# cleanup failed: ${e && e.message}\n`);
    }
  }
}

function printLogs() {
  logsPrinted = true;
  for (const [name, read] of logs) {
    let text;
    try {
      text = read();
    } catch {
      continue;
    }
    if (!text)
      continue;
    process.stderr.write(`\n----- ${name} (tail) -----\n${text}${text.endsWith('\n') ? '' : '\n'}----- end of ${name} -----\n`);
  }
}

// A test interrupted by a signal has failed; contrib/dev/run, which runs
// until Ctrl-C, says otherwise with signalsStopNormally().
let signalIsNormalStop = false;

/** Treat SIGINT/SIGTERM/SIGHUP as a normal stop: no failure, no log dump. */
export function signalsStopNormally() {
  signalIsNormalStop = true;
}

function hookExit() {
  if (exitHooked)
    return;
  exitHooked = true;
  process.on('exit', () => {
    // Print first: some readers look at files the cleanup removes.
    if ((testsFailed() && !logsPrinted) || process.env.PARLEY_TEST_VERBOSE === '1')
      printLogs();
    runExitHooks();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      if (!signalIsNormalStop) {
        failed = true;
        printLogs();
      }
      runExitHooks();
      process.kill(process.pid, sig);    // default action now that we are gone
    });
  }
  // An uncaught error either fails the running test (node:test goes on) or
  // kills the process without an 'exit' event: show the logs now; the
  // watchdog below stops what is left if the process dies.
  process.on('uncaughtExceptionMonitor', () => {
    failed = true;
    if (!logsPrinted)
      printLogs();
  });
}

// The watchdog: a shell (own process group, so a terminal's Ctrl-C reaches
// only us) that blocks reading a pipe only this process holds.  When this
// process dies in any way, SIGKILL included, the read returns and the
// watchdog signals every PID still listed in the kill file: the last line of
// defence against leaked servers.
const killList = new Map();       // key -> "SIGNAL TARGET" (TARGET: pid, or a pid file)
let killFile;
let watchdog;

function writeKillFile() {
  fs.writeFileSync(killFile, [...killList.values()].map((l) => l + '\n').join(''));
}

/**
 * Have the watchdog send `signal` to `target` (a PID, or the path of a file
 * whose first line is a PID, such as postmaster.pid) if this process dies
 * without calling the returned function first.
 */
export function watchdogAdd(signal, target) {
  if (!watchdog) {
    const base = path.join(topBuilddir, 'tests', 'tmp');
    fs.mkdirSync(base, { recursive: true });
    killFile = path.join(base, `.watchdog-${process.pid}`);
    fs.writeFileSync(killFile, '');
    const script = [
      'read _ignored',
      'while read sig target; do',
      '  case $target in /*) pid=$(head -n 1 "$target" 2>/dev/null) ;; *) pid=$target ;; esac',
      '  [ -n "$pid" ] && kill -s "$sig" "$pid" 2>/dev/null',
      'done < "$1"',
      'rm -f "$1"',
    ].join('\n');
    watchdog = spawn('/bin/sh', ['-c', script, 'parley-test-watchdog', killFile],
      { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    watchdog.on('error', () => {});
    watchdog.unref();
    watchdog.stdin.on('error', () => {});
    if (typeof watchdog.stdin.unref === 'function')
      watchdog.stdin.unref();
    onExit(() => {
      // Normal exit: everything was stopped; tell the watchdog to just go.
      killList.clear();
      writeKillFile();
    });
  }
  const key = Symbol(String(target));
  killList.set(key, `${signal.replace(/^SIG/, '')} ${target}`);
  writeKillFile();
  return () => {
    if (killList.delete(key))
      writeKillFile();
  };
}

// ---------------------------------------------------------------- small helpers

/** Tail of a text file (last `bytes` bytes), '' if missing. */
export function tailFile(file, bytes = 16384) {
  let fd;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    const start = Math.max(0, size - bytes);
    const buf = Buffer.alloc(size - start);
    fs.readSync(fd, buf, 0, buf.length, start);
    let text = buf.toString('utf8');
    if (start > 0)
      text = '[...]\n' + text.slice(text.indexOf('\n') + 1);
    return text;
  } catch {
    return '';
  } finally {
    if (fd !== undefined)
      fs.closeSync(fd);
  }
}

/**
 * A fresh private directory for this test process:
 * $top_builddir/tests/tmp/<name>-<pid>[-n]/.  Removed at exit unless a test
 * failed or PARLEY_KEEP_TMP=1.  Returns the absolute path.
 */
export function tmpDir(name) {
  const base = path.join(topBuilddir, 'tests', 'tmp');
  fs.mkdirSync(base, { recursive: true });
  let dir = path.join(base, `${name}-${process.pid}`);
  for (let n = 1; fs.existsSync(dir); n++)
    dir = path.join(base, `${name}-${process.pid}-${n}`);
  fs.mkdirSync(dir, { recursive: true });
  onExit(() => {
    if (!testsFailed() && process.env.PARLEY_KEEP_TMP !== '1')
      fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Is a process with this PID still there (and not a zombie we own)? */
export function pidAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return e.code === 'EPERM';
  }
  // A zombie still answers kill(0): look at /proc.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Block the thread for `ms` milliseconds (exit handlers only). */
export function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Resolve after `ms` milliseconds (for polling loops only). */
export function delay(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Poll `fn` (sync or async) until it returns a truthy value; returns that
 * value.  Throws `what` after `timeoutMs`.
 */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v)
      return v;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(intervalMs);
  }
}

/** Can we open a TCP connection to host:port right now? */
export function canConnect(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (v) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Wait until host:port accepts TCP connections. */
export function waitForPort(port, { host = '127.0.0.1', timeoutMs = 10000, alive } = {}) {
  return waitFor(async () => {
    if (alive && !alive())
      throw new Error(`process exited before listening on ${host}:${port}`);
    return canConnect(port, host);
  }, { timeoutMs, what: `${host}:${port} to accept connections` });
}

/**
 * Wait until `file` contains `pattern` (string or RegExp) at or after byte
 * `from`.  Returns the byte offset just after the match.
 */
export function waitForLog(file, pattern, { from = 0, timeoutMs = 10000, alive } = {}) {
  return waitFor(() => {
    let text;
    try {
      text = fs.readFileSync(file).subarray(from).toString('utf8');
    } catch {
      text = '';
    }
    let end = -1;
    if (typeof pattern === 'string') {
      const i = text.indexOf(pattern);
      if (i >= 0)
        end = i + pattern.length;
    } else {
      const m = pattern.exec(text);
      if (m)
        end = m.index + m[0].length;
    }
    if (end >= 0)
      return from + Buffer.byteLength(text.slice(0, end)) || 1;
    if (alive && !alive())
      throw new Error(`process exited before ${file} showed ${pattern}`);
    return 0;
  }, { timeoutMs, what: `${pattern} in ${path.basename(file)}` });
}

// ---------------------------------------------------------------- running commands

let pgUser;
/** uid/gid of the `postgres` user (to run PostgreSQL when we are root). */
export function postgresIds() {
  if (pgUser)
    return pgUser;
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0)
    throw new Error('running as root but there is no `postgres` user to run PostgreSQL as');
  pgUser = { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
  return pgUser;
}

/**
 * Run a command to completion.  Options: env (merged over process.env),
 * input (string written to stdin), cwd, uid/gid, timeoutMs, check (default
 * true: reject on a non-zero exit).  Resolves to { code, signal, stdout,
 * stderr }.
 */
export function run(cmd, args = [], opts = {}) {
  const { env, input, cwd, uid, gid, timeoutMs = 120000, check = true } = opts;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd, uid, gid,
      env: env ? { ...process.env, ...env } : process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const res = {
        code, signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (check && code !== 0) {
        const e = new Error(`${path.basename(cmd)} ${args.join(' ')} exited ${code ?? signal}: ${res.stderr.trim()}`);
        Object.assign(e, res);
        reject(e);
      } else {
        resolve(res);
      }
    });
    child.stdin.on('error', () => {});        // child exited early: reported by 'close'
    child.stdin.end(input ?? '');
  });
}

// ---------------------------------------------------------------- services

/** Lines that mean a sanitizer found something. */
export const SANITIZER_PATTERNS = [
  'ERROR: AddressSanitizer',
  'runtime error:',
  'WARNING: ThreadSanitizer',
  'ERROR: LeakSanitizer',
  'LeakSanitizer',
];

/** The sanitizer report lines in a text ('' if none). */
export function sanitizerReports(text) {
  return text.split('\n')
    .filter((l) => SANITIZER_PATTERNS.some((p) => l.includes(p)))
    .join('\n');
}

/**
 * Throw (failing the test) when the log file shows a sanitizer report.
 */
export function assertNoSanitizerReports(file) {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return;
  }
  const found = sanitizerReports(text);
  if (found) {
    throw new Error(`sanitizer report in ${file}:\n${found}`);
  }
}

/**
 * Start a long-running service.
 *
 *   const svc = await startService({
 *     name: 'relay', cmd, args, env, cwd,
 *     dir,                      // where the log goes (default: a tmpDir(name))
 *     readyPort: 8090,          // wait for this TCP port, and/or
 *     readyLog: /listening/,    // wait for this in the log
 *     timeoutMs: 15000,
 *     asPostgres: false,        // run as the postgres user when root
 *     stdio: 'ignore'|'pipe'    // stdin (default 'ignore'); 'pipe' gives svc.stdin
 *     sanitizerCheck: true,     // on stop(), throw if the log shows a report
 *   });
 *   svc.pid, svc.log (path), svc.logText(), svc.exited (promise of {code, signal}),
 *   svc.running(), await svc.stop({ signal: 'SIGTERM', timeoutMs: 5000 }),
 *   svc.kill(signal), svc.checkSanitizers()
 *
 * The service runs in its own process group and is killed (SIGKILL, by PID)
 * if still running when the test process exits.  stop() resolves to the exit
 * status { code, signal, killed } where killed says SIGKILL was needed.
 */
export async function startService(opts) {
  const {
    name, cmd, args = [], env, cwd, readyPort, readyLog, timeoutMs = 15000,
    asPostgres = false, stdio = 'ignore', sanitizerCheck = true,
  } = opts;
  const dir = opts.dir || tmpDir(name);
  const log = opts.logFile || path.join(dir, `${name}.log`);
  const fd = fs.openSync(log, 'a');
  const ids = asPostgres && isRoot ? postgresIds() : {};
  let child;
  try {
    child = spawn(cmd, args, {
      cwd,
      env: env ? { ...process.env, ...env } : process.env,
      stdio: [stdio, fd, fd],
      detached: true,          // own process group: a Ctrl-C on the terminal goes to us, not it
      ...ids,
    });
  } finally {
    fs.closeSync(fd);
  }
  let status = null;
  const exited = new Promise((resolve, reject) => {
    child.once('error', (e) => {
      status = { code: null, signal: null, error: e };
      reject(new Error(`${name}: cannot start ${cmd}: ${e.message}`));
    });
    child.once('exit', (code, signal) => {
      status = { code, signal };
      resolve(status);
    });
  });
  exited.catch(() => {});
  const pid = child.pid;
  const unwatch = pid ? watchdogAdd('SIGKILL', pid) : () => {};
  const unhookExit = onExit(() => {
    if (status === null && pid)
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  });
  const unhook = () => {
    unwatch();
    unhookExit();
  };
  registerLog(`${name} log ${log}`, () => tailFile(log));
  let killedHard = false;

  const svc = {
    name, pid, log, dir, child, exited,
    stdin: child.stdin,
    running: () => status === null,
    logText: () => {
      try {
        return fs.readFileSync(log, 'utf8');
      } catch {
        return '';
      }
    },
    logSize: () => {
      try {
        return fs.statSync(log).size;
      } catch {
        return 0;
      }
    },
    kill(signal = 'SIGTERM') {
      if (status === null)
        process.kill(pid, signal);
    },
    checkSanitizers: () => assertNoSanitizerReports(log),
    waitForLog: (pattern, o = {}) =>
      waitForLog(log, pattern, { alive: () => status === null, ...o }),
    async stop({ signal = 'SIGTERM', timeoutMs: t = 5000 } = {}) {
      if (status === null) {
        try { process.kill(pid, signal); } catch { /* gone */ }
        const timer = setTimeout(() => {
          killedHard = true;
          try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        }, t);
        await exited.catch(() => {});
        clearTimeout(timer);
      }
      unhook();
      if (sanitizerCheck)
        assertNoSanitizerReports(log);
      return { ...status, killed: killedHard };
    },
  };

  if (!pid) {
    await exited;            // rejects with the spawn error
  }
  const alive = () => status === null;
  try {
    if (readyPort)
      await waitForPort(readyPort, { timeoutMs, alive });
    if (readyLog)
      await waitForLog(log, readyLog, { timeoutMs, alive });
  } catch (e) {
    await svc.stop({ signal: 'SIGKILL', timeoutMs: 1000 }).catch(() => {});
    e.message += `\n${name} log (${log}):\n${tailFile(log, 4096)}`;
    throw e;
  }
  return svc;
}

/** Path of a program built in the build tree (e.g. 'relay/parley-relay'). */
export function builtProgram(rel) {
  return path.join(topBuilddir, rel);
}

/** The number of CPUs (for sizing concurrency in tests). */
export const cpus = os.cpus().length;
