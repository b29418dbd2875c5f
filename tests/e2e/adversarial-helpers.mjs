// tests/e2e/adversarial-helpers.mjs: what the adversarial suites share.
//
// A case recorder (each case is one node:test test with the answer Parley
// documents for it; what happened is written to
// $top_builddir/tests/adversarial-<suite>.json for the report), JWTs built
// byte by byte (any header and claims text, any HMAC key or algorithm, so
// that duplicated members, odd `alg` spellings and confused keys can be
// signed), and the relay's memory from /proc.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test, after } from 'node:test';
import { topBuilddir } from '../lib/proc.mjs';

/**
 * A suite of cases.  suite.case(id, program, title, documented, fn, opts):
 * fn(rec) returns a short description of what happened (rec.note may add
 * numbers) and asserts the documented answer.  opts: skip, todo (a known
 * bug: still asserted, reported as TODO), timeout.
 */
export function caseSuite(name) {
  const rows = [];
  after(() => {
    if (!rows.length)
      return;
    const dir = path.join(topBuilddir, 'tests');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `adversarial-${name}.json`), JSON.stringify(rows, null, 1) + '\n');
  });
  return {
    rows,
    case(id, program, title, documented, fn, opts = {}) {
      test(`${id} [${program}] ${title}`, { skip: opts.skip, todo: opts.todo, timeout: opts.timeout }, async () => {
        const rec = { id, program, title, documented, observed: '', ok: false };
        rows.push(rec);
        const t0 = Date.now();
        try {
          rec.observed = (await fn(rec)) || 'as documented';
          rec.ok = true;
        } catch (e) {
          rec.observed = `${rec.observed ? rec.observed + '; ' : ''}FAILED: ${e.message.split('\n')[0]}`;
          throw e;
        } finally {
          rec.ms = Date.now() - t0;
        }
      });
    },
  };
}

export const b64u = (b) => Buffer.from(b).toString('base64url');

/** The standard claims of a relay token for user {id, name, sid} (PROTOCOL.md §1). */
export function claimsFor(user, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: 'parley', aud: 'parley-relay', sub: String(user.id), name: user.name,
    sid: String(user.sid), iat: now, nbf: now, exp: now + 300,
    jti: crypto.randomBytes(8).toString('hex'), ...extra,
  };
}

/**
 * A JWT from header and claims given as objects or as exact JSON text,
 * signed with HMAC (hash 'sha256', 'sha384', 'sha512') under `secret`, or
 * with `signature` (a string, '' for none) as given.
 */
export function rawJwt(header, claims, { secret, hash = 'sha256', signature } = {}) {
  const h = b64u(typeof header === 'string' ? header : JSON.stringify(header));
  const p = b64u(typeof claims === 'string' ? claims : JSON.stringify(claims));
  const sig = signature !== undefined ? signature
    : crypto.createHmac(hash, secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${sig}`;
}

/** VmRSS and VmSize of a process in MiB. */
export function memMiB(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s) || [])[1] || 0);
  return { rss: kb('VmRSS') / 1024, size: kb('VmSize') / 1024, threads: kb('Threads') };
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid) {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;      // utime, stime in clock ticks (USER_HZ 100)
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Median of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
