// tests/e2e/token-cli.test.mjs: parley-token's command line as an operator
// meets it (PROTOCOL.md §3 "Running"): --help lists every setting with its
// default, --version, --check-config accepts a good configuration and refuses
// a bad one with a one-line reason (short HMAC secret, key file readable by
// others, unreadable or missing key, `*` origin, bad values), and
// --print-config shows each value with where it came from (flag >
// environment > file > default) without printing secrets.
//
// No database and no web server: only the binary.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { topSrcdir, isRoot } from '../lib/proc.mjs';
import {
  tokenBinary, skipReason, webDir, writeKey, writeConfig, shareWithWeb, WEB_USER,
} from '../lib/web.mjs';

const skip = skipReason();
const dir = skip ? '' : webDir('token-cli');

// Every setting of parley-token: PROTOCOL.md §3 plus the token service's own
// (threads, body limit, socket mode and group), with the documented defaults
// (undefined: required or none).
const SETTINGS = {
  PARLEY_DB: undefined,
  PARLEY_JWT_ALG: 'HS256',
  PARLEY_JWT_KEY_FILE: undefined,
  PARLEY_JWT_KID: undefined,
  PARLEY_JWT_ISSUER: 'parley',
  PARLEY_JWT_AUDIENCE: 'parley-relay',
  WS_TOKEN_TTL: '5m',
  PARLEY_SESSION_TTL: '7d',
  PARLEY_COOKIE_NAME: 'parley_session',
  PARLEY_COOKIE_SECURE: '1',
  PARLEY_ALLOWED_ORIGINS: undefined,
  PARLEY_RELAY_URL: undefined,
  PARLEY_LOG_LEVEL: 'info',
  PARLEY_THREADS: '16',
  PARLEY_MAX_BODY: '16k',
  PARLEY_SOCKET_MODE: '0660',
  PARLEY_SOCKET_GROUP: undefined,
};

/** Run parley-token with a clean environment plus `env`; as www-data with {asWeb}. */
function run(args, env = {}, { asWeb = false } = {}) {
  const base = {};
  for (const [k, v] of Object.entries(process.env))
    if (!/^(PARLEY_|WS_|PG)/.test(k))
      base[k] = v;
  const cmd = asWeb ? 'runuser' : tokenBinary;
  const argv = asWeb ? ['-u', WEB_USER, '--', tokenBinary, ...args] : args;
  const r = spawnSync(cmd, argv, { env: { ...base, ...env }, encoding: 'utf8', timeout: 20000, stdin: 'ignore' });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const lines = (s) => s.split('\n').filter((l) => l.trim() !== '');

// Seconds of a duration as PROTOCOL.md §3 writes them ("300", "300s", "5m", "7d").
function seconds(v) {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(v);
  if (!m)
    return NaN;
  const mult = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2] || 's'];
  return Number(m[1]) * mult;
}

let hs;
let rs;
let es;
function keys() {
  if (!hs) {
    hs = writeKey(dir, 'HS256');
    rs = writeKey(dir, 'RS256');
    es = writeKey(dir, 'ES256');
  }
  return { hs, rs, es };
}

test('--version prints the version from configure.ac and exits 0', { skip }, () => {
  const want = /AC_INIT\(\[parley\],\s*\[([^\]]+)\]/.exec(fs.readFileSync(path.join(topSrcdir, 'configure.ac'), 'utf8'))[1];
  for (const flag of ['--version', '-V']) {
    const r = run([flag]);
    assert.equal(r.code, 0, `${flag} exits 0: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`parley-token.*\\b${want.replace(/\./g, '\\.')}\\b`), `${flag} names the program and version ${want}`);
  }
});

test('--help lists every setting with its environment name and documented default', { skip }, () => {
  const r = run(['--help']);
  assert.equal(r.code, 0, `--help exits 0: ${r.stderr}`);
  const out = r.stdout;
  for (const flag of ['--help', '--version', '--config', '--check-config', '--print-config', '--listen'])
    assert.match(out, new RegExp(`${flag}\\b`), `--help mentions ${flag}`);
  for (const [env, def] of Object.entries(SETTINGS)) {
    const line = out.split('\n').find((l) => new RegExp(`\\b${env}\\b`).test(l));
    assert.ok(line, `--help has a line for ${env}`);
    if (def === undefined)
      continue;
    const m = /default ([^,)]+)/.exec(line);
    assert.ok(m, `--help shows the default of ${env}: ${line.trim()}`);
    const got = m[1].trim();
    if (!Number.isNaN(seconds(def)) && /[smhd]$/.test(def))
      assert.equal(seconds(got), seconds(def), `default of ${env} is ${def} (help says ${got})`);
    else
      assert.equal(got.toLowerCase(), def.toLowerCase(), `default of ${env}`);
  }
});

test('an unknown flag is refused with a one-line reason', { skip }, () => {
  const r = run(['--no-such-option']);
  assert.notEqual(r.code, 0);
  assert.equal(lines(r.stderr).length, 1, `one line: ${r.stderr}`);
  assert.match(r.stderr, /no-such-option/);
});

test('--check-config accepts good configurations', { skip }, () => {
  const { hs: h, rs: r2, es: e } = keys();
  for (const key of [h, r2, e]) {
    const r = run(['--check-config'], { PARLEY_JWT_ALG: key.alg, PARLEY_JWT_KEY_FILE: key.file });
    assert.equal(r.code, 0, `${key.alg}: ${r.stderr}`);
    assert.match(r.stdout, /\bok\b/, `${key.alg}: prints ok`);
  }
  // Allowed origins, durations with units, a kid, a relay URL, from a file.
  const conf = writeConfig(path.join(dir, 'good.conf'), {
    PARLEY_JWT_KEY_FILE: h.file,
    PARLEY_ALLOWED_ORIGINS: 'https://chat.example.org,https://app.example.org:8443',
    WS_TOKEN_TTL: '90s',
    PARLEY_SESSION_TTL: '12h',
    PARLEY_JWT_KID: 'k1',
    PARLEY_RELAY_URL: 'wss://chat.example.org/ws',
    PARLEY_COOKIE_SECURE: '0',
  });
  const r = run(['--config', conf, '--check-config']);
  assert.equal(r.code, 0, `config file: ${r.stderr}`);
  const r3 = run(['--check-config'], { PARLEY_CONFIG: conf });
  assert.equal(r3.code, 0, `PARLEY_CONFIG: ${r3.stderr}`);
});

test('--check-config refuses bad configurations with a one-line reason', { skip }, () => {
  const { hs: h, rs: r2 } = keys();
  const short = path.join(dir, 'short.key');
  fs.writeFileSync(short, 'x'.repeat(31));
  shareWithWeb(short, 0o640);
  const open = path.join(dir, 'open.key');
  fs.copyFileSync(h.file, open);
  fs.chmodSync(open, 0o644);
  const empty = path.join(dir, 'empty.key');
  fs.writeFileSync(empty, '');
  shareWithWeb(empty, 0o640);
  const badConf = path.join(dir, 'bad.conf');
  fs.writeFileSync(badConf, `jwt_key_file = ${h.file}\nno_such_key = 1\n`);
  const ok = { PARLEY_JWT_KEY_FILE: h.file };
  const cases = [
    ['HMAC secret of 31 bytes', { PARLEY_JWT_KEY_FILE: short }, /32|short/i],
    ['key file mode 0644 (readable by others)', { PARLEY_JWT_KEY_FILE: open }, /other|mode|permission|readable|0644/i],
    ['empty key file', { PARLEY_JWT_KEY_FILE: empty }, /32|short|empty/i],
    ['missing key file', { PARLEY_JWT_KEY_FILE: path.join(dir, 'nope.key') }, /nope\.key|no such file/i],
    ['no key file at all', {}, /key/i],
    ['"*" in the allowed origins', { ...ok, PARLEY_ALLOWED_ORIGINS: '*' }, /origin/i],
    ['"*" among other allowed origins', { ...ok, PARLEY_ALLOWED_ORIGINS: 'https://a.example,*' }, /origin/i],
    ['algorithm none', { ...ok, PARLEY_JWT_ALG: 'none' }, /alg/i],
    ['algorithm HS512', { ...ok, PARLEY_JWT_ALG: 'HS512' }, /alg/i],
    ['RS256 with an HMAC secret', { PARLEY_JWT_ALG: 'RS256', PARLEY_JWT_KEY_FILE: h.file }, /key|pem|rs256/i],
    ['ES256 with an RSA key', { PARLEY_JWT_ALG: 'ES256', PARLEY_JWT_KEY_FILE: r2.file }, /key|es256|ec/i],
    ['token TTL "abc"', { ...ok, WS_TOKEN_TTL: 'abc' }, /token_ttl|WS_TOKEN_TTL/],
    ['session TTL "-1d"', { ...ok, PARLEY_SESSION_TTL: '-1d' }, /session_ttl|PARLEY_SESSION_TTL/],
    ['cookie secure "maybe"', { ...ok, PARLEY_COOKIE_SECURE: 'maybe' }, /cookie_secure|PARLEY_COOKIE_SECURE/],
    ['log level "loud"', { ...ok, PARLEY_LOG_LEVEL: 'loud' }, /log_level|PARLEY_LOG_LEVEL/],
    ['unknown key in the file', { PARLEY_CONFIG: badConf }, /bad\.conf:2.*no_such_key/],
    ['missing config file', { ...ok, PARLEY_CONFIG: path.join(dir, 'nope.conf') }, /nope\.conf/],
  ];
  for (const [name, env, reason] of cases) {
    const r = run(['--check-config'], env);
    assert.notEqual(r.code, 0, `${name}: refused (stdout ${r.stdout.trim()})`);
    assert.equal(r.signal, null, `${name}: exits, does not crash`);
    assert.equal(lines(r.stderr).length, 1, `${name}: one line, got:\n${r.stderr}`);
    assert.match(r.stderr, reason, `${name}: says why`);
    assert.doesNotMatch(r.stdout, /^ok$/m, `${name}: no "ok"`);
  }
});

test('a key file the service user cannot read is refused', { skip: skip || (!isRoot && 'needs root to switch to www-data') }, () => {
  const { hs: h } = keys();
  const secret = path.join(dir, 'root-only.key');
  fs.copyFileSync(h.file, secret);
  fs.chownSync(secret, 0, 0);
  fs.chmodSync(secret, 0o600);
  // www-data reads the good key (0640 group www-data), not the root-only one.
  const good = run(['--check-config'], { PARLEY_JWT_KEY_FILE: h.file }, { asWeb: true });
  assert.equal(good.code, 0, `0640 root:www-data is readable by www-data: ${good.stderr}`);
  const r = run(['--check-config'], { PARLEY_JWT_KEY_FILE: secret }, { asWeb: true });
  assert.notEqual(r.code, 0);
  assert.equal(lines(r.stderr).length, 1, r.stderr);
  assert.match(r.stderr, /root-only\.key/);
  assert.match(r.stderr, /permission|denied|read/i);
});

test('--print-config shows every value and its source, flags > env > file > default', { skip }, () => {
  const { hs: h } = keys();
  const help = run(['--help']).stdout;
  const flagOf = (env) => {
    const line = help.split('\n').find((l) => l.includes(`env ${env}`));
    const m = line && /--([a-z0-9-]+)/.exec(line);
    return m && m[1];
  };
  const issuerFlag = flagOf('PARLEY_JWT_ISSUER');
  const logFlag = flagOf('PARLEY_LOG_LEVEL');
  const conf = writeConfig(path.join(dir, 'print.conf'), {
    PARLEY_JWT_KEY_FILE: h.file,
    PARLEY_COOKIE_NAME: 'from_file',
    PARLEY_RELAY_URL: 'wss://file.example/ws',
    PARLEY_JWT_ISSUER: 'file-issuer',
  });
  const flags = [];
  if (issuerFlag)
    flags.push(`--${issuerFlag}`, 'flag-issuer');
  if (logFlag)
    flags.push(`--${logFlag}=debug`);
  const r = run(['--config', conf, ...flags, '--print-config'], {
    WS_TOKEN_TTL: '90s',
    PARLEY_RELAY_URL: 'wss://env.example/ws',
    PARLEY_JWT_ISSUER: 'env-issuer',
    PARLEY_DB: 'host=127.0.0.1 dbname=parley user=parley password=hunter2secret',
  });
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout;
  const entry = (key) => {
    const l = out.split('\n').find((x) => new RegExp(`^#?\\s*${key} = `).test(x));
    assert.ok(l, `--print-config has ${key}:\n${out}`);
    return l;
  };
  for (const env of Object.keys(SETTINGS))
    entry(env.replace(/^(PARLEY_|WS_)/, '').toLowerCase());
  assert.match(entry('cookie_name'), /from_file\s+#\s*file$/);
  assert.match(entry('token_ttl'), /90s\s+#\s*env$/);
  assert.match(entry('relay_url'), /env\.example.*#\s*env$/, 'environment beats the file');
  assert.match(entry('session_ttl'), /7d\s+#\s*default$/);
  assert.match(entry('jwt_key_file'), new RegExp(`${h.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*#\\s*file$`));
  if (issuerFlag)
    assert.match(entry('jwt_issuer'), /flag-issuer.*#\s*flag$/, 'a flag beats environment and file');
  else
    assert.fail('PARLEY_JWT_ISSUER has no flag in --help');
  if (logFlag)
    assert.match(entry('log_level'), /debug\s+#\s*flag$/);
  assert.doesNotMatch(out, /hunter2secret/, 'the database password is not printed');
  assert.match(entry('db'), /#\s*env$/);
  const secret = fs.readFileSync(h.file, 'utf8');
  assert.ok(!out.includes(secret), 'the HMAC secret is not printed');
});
