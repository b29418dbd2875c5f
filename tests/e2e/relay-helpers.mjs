// tests/e2e/relay-helpers.mjs: what the relay tests share.
//
// A private PostgreSQL with the schema (and migration 0002-relay, applied
// here if install.sql does not list it yet), an HS256 key file, users and
// sessions made in SQL, tokens minted with `jose` from the same secret,
// parley-relay started on a free port of 127.0.0.1 and stopped by PID, a
// WebSocket client (npm `ws`) with an inbox to wait on, and a raw client
// for frames `ws` refuses to send (RSV bits, reserved opcodes).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import {
  topSrcdir, builtProgram, freePort, startService, tmpDir, waitFor,
} from '../lib/proc.mjs';
import { startPostgres, havePostgres } from '../lib/pg.mjs';

// tests/node_modules (npm ci in tests/); the tests skip without them.
let loaded = null;
try {
  loaded = { WebSocket: (await import('ws')).default, jose: await import('jose') };
} catch {
  loaded = null;
}

/** The `ws` and `jose` packages, or null when they are not installed. */
export function deps() {
  return loaded;
}

export const relayBinary = builtProgram('relay/parley-relay');

/** Why the relay tests cannot run here, or '' when they can. */
export function skipReason() {
  if (!havePostgres)
    return 'PostgreSQL server binaries not found';
  if (!fs.existsSync(relayBinary))
    return `${relayBinary} is not built`;
  if (!deps())
    return 'npm packages ws and jose are not installed in tests/ (npm ci)';
  return '';
}

/** A PostgreSQL with the parley schema and the relay's migration. */
export async function setupDatabase(name = 'relay-pg') {
  const pg = await startPostgres({ name });
  await pg.installSchema();
  const have = await pg.psql("SELECT count(*) FROM parley.schema_migrations WHERE version = 2");
  if (have.trim() === '0') {
    await pg.psqlFile(path.join(topSrcdir, 'schema', 'upgrade', 'apply.psql'),
      { vars: { parley_version: 2, parley_migration: '0002-relay' } });
  }
  return pg;
}

/** Write an HS256 secret (mode 0600); returns { file, secret }. */
export function writeHmacKey(dir, name = 'jwt.key') {
  const file = path.join(dir, name);
  const secret = crypto.randomBytes(32).toString('hex');
  fs.writeFileSync(file, secret, { mode: 0o600 });
  return { file, secret: Buffer.from(secret) };
}

let userSeq = 0;

/** A user with a live session: { id, name, sid }. */
export async function makeUser(pg, prefix = 'user') {
  const name = `${prefix}${process.pid}x${++userSeq}`;
  const id = Number(await pg.psql(`SELECT parley.create_user('${name}', 'pw-${name}')`));
  const sid = await newSession(pg, id);
  return { id, name, sid };
}

/** A new live session for a user; returns its id (text). */
export async function newSession(pg, uid, ttl = '1 hour') {
  return (await pg.psql(`INSERT INTO parley.sessions (user_id, token_hash, expires_at)
    VALUES (${uid}, gen_random_bytes(32), now() + interval '${ttl}') RETURNING id`)).trim();
}

/**
 * Mint a relay token for `user` with `key` (claims per PROTOCOL.md §1).
 * opts: exp/iat/nbf (epoch s), claims (extra or overriding), secret.
 */
export async function mint(key, user, opts = {}) {
  const { jose } = deps();
  const now = Math.floor(Date.now() / 1000);
  // iat and nbf a second back by default: the relay's time(2) (a coarse
  // clock) can still show the previous second when ours has moved on, and
  // some tests run it with PARLEY_JWT_LEEWAY=0.
  const claims = {
    iss: 'parley', aud: 'parley-relay', sub: String(user.id), name: user.name,
    sid: String(user.sid), iat: opts.iat ?? now - 1, nbf: opts.nbf ?? now - 1,
    exp: opts.exp ?? now + 300, jti: crypto.randomBytes(8).toString('hex'),
    ...(opts.claims || {}),
  };
  return new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .sign(opts.secret || key.secret);
}

/**
 * Start parley-relay.  opts: pg, key, env (extra settings), name, args.
 * Resolves to the service plus { port, url, http(path) } once /healthz is 200.
 */
export async function startRelay({ pg, key, env = {}, name = 'relay', args = [], waitHealthy = true }) {
  const port = await freePort();
  const base = {};
  for (const [k, v] of Object.entries(process.env))
    if (!/^(PARLEY_|WS_|PG)/.test(k))
      base[k] = v;
  const svc = await startService({
    name,
    cmd: relayBinary,
    args,
    env: {
      ...base,
      PARLEY_DB: pg.conninfo,
      PARLEY_JWT_KEY_FILE: key.file,
      PARLEY_RELAY_LISTEN: `127.0.0.1:${port}`,
      PARLEY_RELAY_ID: `${name}-${port}`,
      PARLEY_LOG_LEVEL: 'debug',
      PARLEY_MAX_CONNECTIONS: '64',
      // The tests open many connections from 127.0.0.1 in a burst.
      PARLEY_CONN_RATE: '1000/s',
      ...env,
    },
    readyLog: /listening on/,
  });
  svc.port = port;
  svc.url = `ws://127.0.0.1:${port}/ws`;
  svc.http = (p, o) => httpRequest(port, p, o);
  if (waitHealthy)
    await waitFor(async () => (await svc.http('/healthz')).status === 200,
      { timeoutMs: 15000, what: `${name} /healthz 200` });
  return svc;
}

/** GET (or another method) on 127.0.0.1:port; resolves { status, headers, body }. */
export function httpRequest(port, p, { method = 'GET', headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error('HTTP request timed out')));
    req.end();
  });
}

/**
 * A WebSocket client with an inbox.  `open` resolves once connected (or
 * rejects with err.status / err.body when the handshake is refused).
 */
export class Client {
  constructor(ws) {
    this.ws = ws;
    this.inbox = [];
    this.waiters = [];
    this.closed = null;            // { code, reason } once closed
    this.closeWaiters = [];
    ws.on('message', (data, isBinary) => {
      let m;
      try {
        m = JSON.parse(data.toString('utf8'));
      } catch {
        m = { type: '(unparsable)', raw: data.toString('utf8'), isBinary };
      }
      this.inbox.push(m);
      this.poke();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString('utf8') };
      this.closeWaiters.splice(0).forEach((f) => f(this.closed));
      this.poke();
    });
    ws.on('error', () => {});
  }

  static open(url, { protocols, headers, origin, autoPong = true, localAddress } = {}) {
    // headers: extra request headers (e.g. X-Forwarded-For); localAddress:
    // the source address (127.0.0.N, one client address per test behind a proxy).
    const { WebSocket } = deps();
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols, { headers, origin, autoPong, localAddress, handshakeTimeout: 10000 });
      const c = new Client(ws);
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (req, res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => {
          const e = new Error(`handshake refused: ${res.statusCode}`);
          e.status = res.statusCode;
          e.headers = res.headers;
          e.text = Buffer.concat(chunks).toString('utf8');
          try { e.body = JSON.parse(e.text); } catch { e.body = null; }
          reject(e);
          ws.terminate();
        });
      });
      ws.once('error', (e) => reject(e));
    });
  }

  /** Connect with the token in the subprotocol and wait for `welcome`. */
  static async connect(url, token, { instance, headers, origin, localAddress, autoPong } = {}) {
    const protocols = ['parley.v1', `parley.token.${token}`];
    if (instance)
      protocols.push(`parley.instance.${instance}`);
    const c = await Client.open(url, { protocols, headers, origin, localAddress, autoPong });
    c.welcome = await c.next((m) => m.type === 'welcome');
    return c;
  }

  poke() {
    const still = [];
    for (const w of this.waiters) {
      const i = this.inbox.findIndex(w.pred);
      if (i >= 0) {
        const [m] = this.inbox.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(m);
      } else if (this.closed && !w.allowClosed) {
        clearTimeout(w.timer);
        w.reject(new Error(`connection closed (${this.closed.code} ${this.closed.reason}) while waiting; inbox ${JSON.stringify(this.inbox)}`));
      } else {
        still.push(w);
      }
    }
    this.waiters = still;
  }

  /** The next unconsumed message matching pred (a type name or a function). */
  next(pred = () => true, { timeoutMs = 5000 } = {}) {
    const match = typeof pred === 'string' ? (m) => m.type === pred : pred;
    return new Promise((resolve, reject) => {
      const w = { pred: match, resolve, reject };
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`no matching message within ${timeoutMs} ms; inbox ${JSON.stringify(this.inbox)}`));
      }, timeoutMs);
      this.waiters.push(w);
      this.poke();
    });
  }

  /** Resolve to undefined if nothing matching arrives within ms (else reject). */
  async none(pred, ms = 300) {
    const match = typeof pred === 'string' ? (m) => m.type === pred : pred;
    await new Promise((r) => setTimeout(r, ms));
    const m = this.inbox.find(match);
    if (m)
      throw new Error(`unexpected message ${JSON.stringify(m)}`);
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  /** Send and wait for the reply carrying the same ref. */
  async request(obj, opts) {
    const ref = obj.ref ?? crypto.randomBytes(6).toString('hex');
    this.send({ ...obj, ref });
    return this.next((m) => m.ref === ref, opts);
  }

  /** Resolves to { code, reason } when the connection is closed. */
  whenClosed({ timeoutMs = 10000 } = {}) {
    if (this.closed)
      return Promise.resolve(this.closed);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`not closed within ${timeoutMs} ms`)), timeoutMs);
      this.closeWaiters.push((c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
  }

  close() {
    if (!this.closed)
      this.ws.close(1000);
  }

  terminate() {
    this.ws.terminate();
  }
}

/**
 * A bare WebSocket client on a TCP socket, for frames the `ws` package
 * will not send.  Resolves after the 101 with { socket, send(frameOpts),
 * frames: [{fin, opcode, payload}], nextFrame(), ended }.
 */
export function rawConnect(port, { protocols = [], path: p = '/ws' } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const key = crypto.randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const frames = [];
    const waiters = [];
    const raw = {
      socket, frames, ended: false,
      send({ fin = true, rsv = 0, opcode = 1, payload = Buffer.alloc(0) }) {
        const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
        const mask = crypto.randomBytes(4);
        let head;
        if (data.length < 126) {
          head = Buffer.from([(fin ? 0x80 : 0) | (rsv << 4) | opcode, 0x80 | data.length]);
        } else if (data.length < 65536) {
          head = Buffer.alloc(4);
          head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
          head[1] = 0x80 | 126;
          head.writeUInt16BE(data.length, 2);
        } else {
          head = Buffer.alloc(10);
          head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
          head[1] = 0x80 | 127;
          head.writeBigUInt64BE(BigInt(data.length), 2);
        }
        const masked = Buffer.from(data);
        for (let i = 0; i < masked.length; i++)
          masked[i] ^= mask[i & 3];
        socket.write(Buffer.concat([head, mask, masked]));
      },
      nextFrame({ timeoutMs = 5000 } = {}) {
        if (frames.length)
          return Promise.resolve(frames.shift());
        return new Promise((res, rej) => {
          const t = setTimeout(() => rej(new Error('no frame in time')), timeoutMs);
          waiters.push((f) => {
            clearTimeout(t);
            res(f);
          });
        });
      },
      /** The close frame's code, skipping other frames. */
      async closeCode(opts) {
        for (;;) {
          const f = await raw.nextFrame(opts);
          if (f.opcode === 8)
            return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
        }
      },
    };
    const parse = () => {
      for (;;) {
        if (buf.length < 2)
          return;
        let len = buf[1] & 127;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4)
            return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10)
            return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len)
          return;
        const f = { fin: !!(buf[0] & 0x80), opcode: buf[0] & 15, payload: buf.subarray(off, off + len) };
        buf = buf.subarray(off + len);
        const w = waiters.shift();
        if (w)
          w(f);
        else
          frames.push(f);
      }
    };
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0)
          return;
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        if (!/^HTTP\/1\.1 101 /.test(head)) {
          socket.destroy();
          reject(new Error(`no upgrade: ${head.split('\r\n')[0]}`));
          return;
        }
        upgraded = true;
        resolve(raw);
      }
      parse();
    });
    socket.on('end', () => { raw.ended = true; });
    socket.on('error', (e) => { if (!upgraded) reject(e); });
    socket.on('connect', () => {
      socket.write(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n`
        + `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`
        + (protocols.length ? `Sec-WebSocket-Protocol: ${protocols.join(', ')}\r\n` : '')
        + '\r\n');
    });
  });
}

/** The value of a Prometheus sample line, e.g. metric(text, 'parley_relay_acks_total'). */
export function metric(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

export { assert, tmpDir, waitFor };
