// tests/e2e/fault-helpers.mjs: what the fault, chaos and long-lived tests
// share (issue 4: many relays, real faults, nothing lost).
//
//   startRelayAt()    parley-relay on a port we choose (so it can be killed
//                     and started again on the same address behind nginx),
//                     optionally inside a network namespace
//   startCluster()    N relays on one database behind nginx's /ws upstream
//                     rendered from contrib/nginx/parley.conf
//   ReliableClient    a WebSocket client as a careful application writes it:
//                     an outbox of un-acked sends retried with the same
//                     client_id after every reconnect, `sync` from its last
//                     contiguous seq per conversation, de-duplication by
//                     message id, and a record of everything that arrived
//                     (raw duplicates, order per connection) for the checks
//   procStats()       threads, open fds and RSS of a process from /proc
//   makeNetns()       a network namespace with two veth pairs (database
//                     path and client path) and a silent partition of the
//                     database path (a blackhole route on PostgreSQL's side)
//   sql checks        seq gaps, orphan presence rows
//
// Everything listens on loopback or on addresses of a namespace the test
// creates and removes.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  startService, freePort, waitFor, delay, onExit, isRoot,
} from '../lib/proc.mjs';
import { relayBinary, mint, deps } from './relay-helpers.mjs';
import { startNginx, haveNginx } from '../lib/web.mjs';

// ---------------------------------------------------------------- relays

/** GET host:port/path; resolves { status, body, json } (never rejects on HTTP errors). */
export function httpGet(host, port, p, { timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path: p, method: 'GET', agent: false }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(body); } catch { json = undefined; }
        resolve({ status: res.statusCode, body, json });
      });
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${host}:${port}${p} timed out`)));
    req.end();
  });
}

/** The environment a relay gets: ours without PARLEY_/WS_/PG*, then the settings. */
function relayEnv(settings) {
  const env = {};
  for (const [k, v] of Object.entries(process.env))
    if (!/^(PARLEY_|WS_|PG)/.test(k))
      env[k] = v;
  return { ...env, ...settings };
}

/**
 * Start parley-relay listening on host:port (port: a free one by default).
 *   pg, key        database and HS256 key (relay-helpers)
 *   conninfo       libpq conninfo (default pg.conninfo)
 *   name           log name; relayId (default `${name}-${port}`)
 *   env            extra settings
 *   netns          run inside this network namespace (ip netns exec)
 *   waitHealthy    wait for /healthz 200 (default true)
 * Returns a relay object: { name, id, host, port, url, addr, pid, svc,
 *   running(), http(path), healthy(), kill(sig), stop(opts), restart(opts) }.
 * restart() starts a new process with the same address, id and settings.
 */
export async function startRelayAt(opts) {
  const {
    pg, key, name = 'relay', env = {}, netns, host = '127.0.0.1', waitHealthy = true,
  } = opts;
  const port = opts.port || await freePort();
  const id = opts.relayId || `${name}-${port}`;
  const conninfo = opts.conninfo || pg.conninfo;
  const settings = {
    PARLEY_DB: conninfo,
    PARLEY_JWT_KEY_FILE: key.file,
    PARLEY_RELAY_LISTEN: `${host}:${port}`,
    PARLEY_RELAY_ID: id,
    PARLEY_LOG_LEVEL: 'info',
    PARLEY_CONN_RATE: '1000/s',
    ...env,
  };
  const relay = {
    name, id, host, port, addr: `${host}:${port}`, url: `ws://${host}:${port}/ws`,
    starts: 0,
    svc: null,
    get pid() { return relay.svc ? relay.svc.pid : 0; },
    running: () => !!relay.svc && relay.svc.running(),
    http: (p) => httpGet(host, port, p),
    async healthy() {
      try {
        return (await relay.http('/healthz')).status === 200;
      } catch {
        return false;
      }
    },
    async healthz() {
      try {
        return await relay.http('/healthz');
      } catch (e) {
        return { status: 0, body: String(e.message) };
      }
    },
    kill(sig = 'SIGKILL') {
      relay.svc.kill(sig);
    },
    /** SIGKILL and wait for the exit; resolves to the exit status. */
    async crash() {
      relay.svc.kill('SIGKILL');
      return relay.svc.exited;
    },
    stop(o) {
      return relay.svc.stop(o);
    },
    async restart({ waitHealthy: wh = true } = {}) {
      if (relay.running())
        throw new Error(`${id} is still running`);
      await launch(wh);
      return relay;
    },
  };
  async function launch(wh) {
    const cmd = netns ? 'ip' : relayBinary;
    const args = netns ? ['netns', 'exec', netns, relayBinary] : [];
    relay.starts++;
    // The port was ours a moment ago (or our previous process's): retry the
    // bind a few times in case of a lingering socket.
    let lastErr;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        relay.svc = await startService({
          name: relay.starts > 1 ? `${name}-r${relay.starts}` : name,
          cmd, args, env: relayEnv(settings), readyLog: /listening on/, timeoutMs: 20000,
        });
        lastErr = null;
        break;
      } catch (e) {
        lastErr = e;
        await delay(200);
      }
    }
    if (lastErr)
      throw lastErr;
    if (wh)
      await waitFor(() => relay.healthy(), { timeoutMs: 20000, what: `${id} /healthz 200` });
  }
  await launch(waitHealthy);
  return relay;
}

/**
 * N relays on one database behind nginx (contrib/nginx/parley.conf with one
 * upstream server line per relay).  opts: pg, key, n (3), env (relay
 * settings), name.  Returns { relays, nginx, url (ws://nginx/ws), stop() }.
 */
export async function startCluster({ pg, key, n = 3, env = {}, name = 'cl', dir }) {
  const relays = [];
  for (let i = 0; i < n; i++)
    relays.push(await startRelayAt({ pg, key, name: `${name}-relay${i + 1}`, env }));
  // /auth/ is not used here: nginx needs a socket path for its upstream only.
  const nginx = await startNginx({
    name: `${name}-nginx`, sock: path.join(dir, 'no-token.sock'), relay: relays.map((r) => r.addr),
  });
  return {
    relays, nginx,
    url: `ws://127.0.0.1:${nginx.port}/ws`,
    async stop() {
      for (const r of relays)
        if (r.running())
          await r.stop();
      await nginx.stop();
    },
  };
}

export { haveNginx };

// ---------------------------------------------------------------- users and groups

let seqUser = 0;

/**
 * Many users at once, each with a live session: [{ id, name, sid }].  One
 * psql round trip; passwords are hashed by parley.create_user as usual.
 */
export async function makeUsers(pg, n, prefix = 'u') {
  const names = Array.from({ length: n }, () => `${prefix}${process.pid}y${++seqUser}`);
  // These users never log in with a password: the cheapest bcrypt cost
  // keeps the setup fast on a loaded machine (the test database only).
  const out = await pg.psql(`
    UPDATE parley.settings SET value = '4' WHERE name = 'password_bf_cost';
    WITH n AS (SELECT unnest(ARRAY[${names.map((x) => `'${x}'`).join(',')}]) AS name),
         u AS (SELECT name, parley.create_user(name, 'pw') AS id FROM n),
         s AS (INSERT INTO parley.sessions (user_id, token_hash, expires_at)
               SELECT id, gen_random_bytes(32), now() + interval '2 hours' FROM u
               RETURNING user_id, id)
    SELECT u.id || ' ' || u.name || ' ' || s.id FROM u JOIN s ON s.user_id = u.id ORDER BY u.id`);
  return out.split('\n').filter(Boolean).map((l) => {
    const [id, nm, sid] = l.split(' ');
    return { id: Number(id), name: nm, sid };
  });
}

/** A group with these members; returns its id. */
export async function makeGroup(pg, members, visibility = 'private') {
  const gid = Number(await pg.psql(
    `SELECT parley.create_group('g${process.pid}x${crypto.randomBytes(4).toString('hex')}', '${visibility}')`));
  if (members.length)
    await pg.psql(members.map((u) => `SELECT parley.add_member(${gid}, ${u.id});`).join('\n'));
  return gid;
}

/** The conversation id of a direct conversation. */
export function dmConv(a, b) {
  const x = Math.min(a, b);
  const y = Math.max(a, b);
  return `dm:${x}:${y}`;
}

// ---------------------------------------------------------------- the reliable client

const backoffBase = 100;
const backoffMax = 2000;

/**
 * A client that never loses or duplicates a message, whatever the relays
 * and the database do, as PROTOCOL.md lets a client achieve it:
 *   - every send goes into an outbox keyed by client_id (ref = client_id);
 *     an `ack` removes it; `error unavailable`/`rate_limited` re-send it
 *     later; after a reconnect every un-acked entry is re-sent with the same
 *     client_id;
 *   - after each welcome it sends `sync` with the highest contiguous seq it
 *     has per conversation (received or acked), again while `more`;
 *   - messages are de-duplicated by id; raw duplicates are counted.
 * Records kept for the checks:
 *   received  Map id -> { id, conversation, seq, from, client_id, conn, inSync, n }
 *   acks      Map client_id -> { id, seq, conversation, at }
 *   rawDups   duplicates on the wire (in a sync window or not): a message
 *             known already, by an event or by the ack of its own send
 *             (ownEchoes: the latter)
 *   dupsLive  duplicates outside any sync window (dupDetails: which)
 *   orderViolations  a first arrival on one connection, outside a sync
 *             window, whose seq is not above the previous first arrivals
 *             of that conversation on that connection
 *   ackMismatch  a repeated ack naming another message id (a duplicate stored)
 *   errors    counts by error code; fatal: errors that are not retried
 *   connects, closes (by code)
 */
const liveClients = new Set();

/** Stop every ReliableClient still running (call from `after`, so a failed test cannot hang the process). */
export async function stopAllClients() {
  await Promise.all([...liveClients].map((c) => c.stop()));
}

export class ReliableClient {
  constructor({ name, user, key, url, urls, log = () => {} }) {
    this.name = name;
    this.user = user;
    this.key = key;
    this.urls = urls || (() => url);
    this.log = log;
    this.ws = null;
    this.connIdx = 0;
    this.connected = false;
    this.stopped = false;
    this.backoff = 0;
    this.outbox = new Map();          // client_id -> { cmd, created, attempts }
    this.nextCid = 0;
    this.acks = new Map();
    this.received = new Map();
    this.have = new Map();            // conversation -> Set(seq)
    this.contig = new Map();          // conversation -> highest contiguous seq
    this.rawDups = 0;
    this.dupsLive = 0;
    this.dupDetails = [];             // duplicates outside sync windows
    this.ownEchoes = 0;               // own acked messages shown again as events
    this.ackIds = new Set();
    this.ackAt = new Map();
    this.orderViolations = [];
    this.ackMismatch = [];
    this.errors = {};
    this.fatal = [];
    this.connects = 0;
    this.connectFailures = 0;
    this.closes = {};
    this.syncing = 0;                 // outstanding sync commands on this connection
    this.syncRef = 0;
    this.syncs = 0;
    this.lastFirst = new Map();       // conversation -> seq (per connection)
    this.listeners = new Set();
    this.welcome = null;
    this.pings = 0;
    this.reconnectTimer = null;
    this.retryTimers = new Set();
    this.events = [];                 // presence and other events, for tests
  }

  /** Connect (and keep reconnecting until stop()). */
  start() {
    liveClients.add(this);
    this.stopped = false;
    this.connect();
    return this;
  }

  /** Resolves once connected and the first sync is done. */
  ready({ timeoutMs = 20000 } = {}) {
    return waitFor(() => this.connected && this.syncing === 0,
      { timeoutMs, what: `${this.name} connected and synced` });
  }

  async connect() {
    if (this.stopped || this.ws)
      return;
    const { WebSocket } = deps();
    let token;
    try {
      token = await mint(this.key, this.user);
    } catch (e) {
      this.fatal.push(`mint: ${e.message}`);
      return;
    }
    if (this.stopped)
      return;
    const url = this.urls();
    const ws = new WebSocket(url, ['parley.v1', `parley.token.${token}`], { handshakeTimeout: 5000 });
    this.ws = ws;
    const idx = ++this.connIdx;
    let opened = false;
    ws.on('open', () => {
      opened = true;
    });
    ws.on('ping', () => {
      this.pings++;
    });
    ws.on('unexpected-response', (req, res) => {
      res.resume();
      ws.terminate();
    });
    ws.on('error', () => {});
    ws.on('message', (data) => {
      let m;
      try {
        m = JSON.parse(data.toString('utf8'));
      } catch {
        this.fatal.push(`unparsable frame: ${data.toString('utf8').slice(0, 100)}`);
        return;
      }
      this.onMessage(m, idx);
    });
    ws.on('close', (code) => {
      if (this.ws === ws)
        this.ws = null;
      this.connected = false;
      this.syncing = 0;
      if (opened) {
        this.closes[code] = (this.closes[code] || 0) + 1;
      } else {
        this.connectFailures++;
      }
      this.lastClose = Date.now();
      this.emit({ type: '(closed)', code });
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    if (this.stopped || this.reconnectTimer)
      return;
    this.backoff = this.backoff ? Math.min(this.backoff * 2, backoffMax) : backoffBase;
    const wait = this.backoff * (0.5 + Math.random() / 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, wait);
  }

  onWelcome(m) {
    this.welcome = m;
    this.connAt = Date.now();
    this.connected = true;
    this.connects++;
    this.backoff = 0;
    this.lastFirst = new Map();
    this.requestSync();
    // Un-acked sends go again with the same client_id, oldest first.
    for (const [cid, e] of this.outbox)
      this.transmit(cid, e);
  }

  requestSync() {
    const since = {};
    for (const [conv, s] of this.contig)
      since[conv] = s;
    this.syncing++;
    this.syncs++;
    this.sendRaw({ type: 'sync', since, ref: `sync-${++this.syncRef}` });
  }

  sendRaw(obj) {
    if (this.ws && this.ws.readyState === 1)
      this.ws.send(JSON.stringify(obj));
  }

  emit(m) {
    for (const f of this.listeners)
      f(m);
  }

  /** Call fn(m) for every message from now on; returns an unsubscribe function. */
  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Wait for a message matching pred from now on. */
  waitEvent(pred, { timeoutMs = 10000 } = {}) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        off();
        reject(new Error(`${this.name}: no matching event within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.on((m) => {
        if (pred(m)) {
          clearTimeout(t);
          off();
          resolve(m);
        }
      });
    });
  }

  markHave(conv, seq) {
    let s = this.have.get(conv);
    if (!s) {
      s = new Set();
      this.have.set(conv, s);
    }
    s.add(seq);
    let c = this.contig.get(conv) || 0;
    while (s.has(c + 1))
      c++;
    this.contig.set(conv, c);
  }

  onMessage(m, idx) {
    switch (m.type) {
    case 'welcome':
      this.onWelcome(m);
      break;
    case 'private_message':
    case 'group_message': {
      const inSync = this.syncing > 0;
      const prev = this.received.get(m.id);
      // A message this client already knows, by an earlier event or by the
      // ack of its own send, is a duplicate on the wire.
      const ownAck = !prev && this.ackIds.has(m.id);
      if (prev || ownAck) {
        if (prev)
          prev.n++;
        else
          this.ownEchoes++;
        this.rawDups++;
        if (!inSync) {
          this.dupsLive++;
          this.dupDetails.push({
            id: m.id, conversation: m.conversation, seq: m.seq, conn: idx, own: ownAck,
            firstConn: prev ? prev.conn : null, firstInSync: prev ? prev.inSync : null,
            afterMs: Date.now() - (prev ? prev.at : this.ackAt.get(m.id)), connAgeMs: Date.now() - this.connAt,
          });
        }
      } else {
        this.received.set(m.id, {
          id: m.id, conversation: m.conversation, seq: m.seq, from: m.from && m.from.id,
          client_id: m.client_id, body: m.body, conn: idx, inSync, n: 1, at: Date.now(),
        });
        this.markHave(m.conversation, m.seq);
        const last = this.lastFirst.get(m.conversation);
        if (!inSync && last !== undefined && m.seq <= last) {
          const prevAt = [...this.received.values()].find((x) => x.conversation === m.conversation && x.seq === last);
          const ack = [...this.acks.values()].find((a) => a.id === m.id);
          this.orderViolations.push({
            conversation: m.conversation, seq: m.seq, after: last, conn: idx,
            own: m.from && m.from.id === this.user.id, ackedMsAgo: ack ? Date.now() - ack.at : null,
            afterArrivedMsAgo: prevAt ? Date.now() - prevAt.at : null, afterInSync: prevAt ? prevAt.inSync : null,
            connAgeMs: Date.now() - this.connAt,
          });
        }
        if (last === undefined || m.seq > last)
          this.lastFirst.set(m.conversation, m.seq);
      }
      break;
    }
    case 'ack': {
      const before = this.acks.get(m.client_id);
      if (before && before.id !== m.id)
        this.ackMismatch.push({ client_id: m.client_id, first: before.id, again: m.id });
      if (!before) {
        this.acks.set(m.client_id, { id: m.id, seq: m.seq, conversation: m.conversation, at: Date.now() });
        this.ackIds.add(m.id);
        this.ackAt.set(m.id, Date.now());
      }
      this.outbox.delete(m.client_id);
      this.markHave(m.conversation, m.seq);
      break;
    }
    case 'sync_done':
      if (this.syncing > 0)
        this.syncing--;
      if (m.more)
        this.requestSync();
      break;
    case 'error': {
      this.errors[m.code] = (this.errors[m.code] || 0) + 1;
      if (m.ref && m.ref.startsWith('sync-')) {
        // The sync failed (database away): try again shortly.
        if (this.syncing > 0)
          this.syncing--;
        this.later(() => this.connected && this.requestSync(), 500);
      } else if (m.ref && this.outbox.has(m.ref)) {
        if (m.code === 'unavailable' || m.code === 'rate_limited' || m.code === 'internal') {
          const e = this.outbox.get(m.ref);
          this.later(() => {
            if (this.outbox.get(m.ref) === e)
              this.transmit(m.ref, e);
          }, m.code === 'rate_limited' ? 1000 : 300 + Math.random() * 400);
        } else {
          this.fatal.push(`send ${m.ref}: ${m.code} ${m.message}`);
          this.outbox.delete(m.ref);
        }
      }
      break;
    }
    default:
      this.events.push(m);
      break;
    }
    this.emit(m);
  }

  later(fn, ms) {
    const t = setTimeout(() => {
      this.retryTimers.delete(t);
      fn();
    }, ms);
    this.retryTimers.add(t);
  }

  transmit(cid, e) {
    e.attempts++;
    this.sendRaw({ ...e.cmd, client_id: cid, ref: cid });
  }

  /** Queue a message: { to: userId } or { group: groupId }; returns its client_id. */
  send(target, body) {
    const cid = `${this.name}-${++this.nextCid}`;
    const cmd = target.to !== undefined
      ? { type: 'private_message', to: target.to, body }
      : { type: 'group_message', group: target.group, body };
    const e = { cmd, created: Date.now(), attempts: 0 };
    this.outbox.set(cid, e);
    if (this.connected)
      this.transmit(cid, e);
    return cid;
  }

  /** Close the current connection without stopping (it reconnects). */
  drop() {
    if (this.ws)
      this.ws.terminate();
  }

  async stop() {
    liveClients.delete(this);
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    for (const t of this.retryTimers)
      clearTimeout(t);
    this.retryTimers.clear();
    const ws = this.ws;
    if (ws) {
      await new Promise((resolve) => {
        const t = setTimeout(() => {
          ws.terminate();
          resolve();
        }, 2000);
        ws.once('close', () => {
          clearTimeout(t);
          resolve();
        });
        ws.close(1000);
      });
    }
  }

  /** A line describing the client's state (for failure messages). */
  state() {
    return `${this.name}: connected ${this.connected} ws ${this.ws ? this.ws.readyState : '-'} ` +
      `outbox ${this.outbox.size} syncing ${this.syncing} connects ${this.connects} ` +
      `failures ${this.connectFailures} closes ${JSON.stringify(this.closes)} errors ${JSON.stringify(this.errors)} ` +
      `last close ${this.lastClose ? ((Date.now() - this.lastClose) / 1000).toFixed(1) + ' s ago' : '-'}`;
  }

  /** Ids received (de-duplicated). */
  ids() {
    return new Set(this.received.keys());
  }
}

// ---------------------------------------------------------------- process figures

/** { threads, fds, rssKb } of a process, from /proc. */
export function procStats(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status) || [])[1]);
  return {
    threads: field('Threads'),
    rssKb: field('VmRSS'),
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
  };
}

// ---------------------------------------------------------------- SQL checks

/** Conversations whose seq is not exactly 1..count: [{ conversation, n, min, max }]. */
export async function seqGaps(pg) {
  const out = await pg.psql(`SELECT conversation || ' ' || count(*) || ' ' || min(seq) || ' ' || max(seq)
    FROM parley.messages GROUP BY conversation
    HAVING min(seq) <> 1 OR max(seq) <> count(*) OR count(DISTINCT seq) <> count(*)`);
  return out.split('\n').filter(Boolean).map((l) => {
    const [conversation, n, min, max] = l.split(' ');
    return { conversation, n: Number(n), min: Number(min), max: Number(max) };
  });
}

/** parley.connections rows per relay id: Map relay_id -> count. */
export async function presenceRows(pg) {
  const out = await pg.psql('SELECT relay_id || \' \' || count(*) FROM parley.connections GROUP BY relay_id');
  return new Map(out.split('\n').filter(Boolean).map((l) => {
    const i = l.lastIndexOf(' ');
    return [l.slice(0, i), Number(l.slice(i + 1))];
  }));
}

/** The relay id a connection (user id, welcome connection_id) is registered on, or ''. */
export async function relayOf(pg, uid, connId) {
  return pg.psql(`SELECT relay_id FROM parley.connections WHERE user_id = ${uid} AND conn_id = ${connId}`);
}

// ---------------------------------------------------------------- network namespaces

function sh(cmd, args, { check = true } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (check && r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr || '').trim() || r.error}`);
  return r;
}

/** Why a network namespace cannot be made here, or '' when it can. */
export function netnsSkipReason() {
  if (!isRoot)
    return 'network namespaces need root';
  const probe = `pfp${process.pid % 100000}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.error)
    return `ip(8) not available: ${r.error.message}`;
  if (r.status !== 0)
    return `ip netns add failed: ${(r.stderr || '').trim()}`;
  const v = spawnSync('ip', ['link', 'add', `${probe}a`, 'type', 'veth', 'peer', 'name', `${probe}b`], { encoding: 'utf8' });
  spawnSync('ip', ['link', 'del', `${probe}a`]);
  spawnSync('ip', ['netns', 'del', probe]);
  if (v.status !== 0)
    return `veth pairs not available: ${(v.stderr || '').trim()}`;
  return '';
}

/**
 * A network namespace with two veth pairs:
 *   database path  root 10.N.1.1 (PostgreSQL listens here) <-> ns 10.N.1.2
 *   client path    root 10.N.2.1 <-> ns 10.N.2.2 (a relay in the namespace
 *                  listens here; test clients connect to it)
 * partition() makes the database path silently drop everything PostgreSQL
 * sends to the namespace (a blackhole route on the root side, more specific
 * than the link's): the relay's packets still leave, nothing comes back, no
 * error reaches it, like a cable pulled somewhere between.  heal() removes
 * it.  Everything is deleted at exit.
 * Returns { ns, pgAddr, relayDbAddr, clientAddr, partition(), heal(), remove() }.
 */
export function makeNetns() {
  const tag = `${process.pid % 100000}`;
  const ns = `parley-pf${tag}`;
  const n = 16 + (process.pid % 200);
  const dbRoot = `pfd${tag}a`;
  const dbNs = `pfd${tag}b`;
  const clRoot = `pfc${tag}a`;
  const clNs = `pfc${tag}b`;
  const nsx = (...a) => sh('ip', ['netns', 'exec', ns, ...a]);
  let removed = false;
  const remove = () => {
    if (removed)
      return;
    removed = true;
    spawnSync('ip', ['route', 'del', 'blackhole', `10.${n}.1.2/32`]);
    spawnSync('ip', ['link', 'del', dbRoot]);
    spawnSync('ip', ['link', 'del', clRoot]);
    spawnSync('ip', ['netns', 'del', ns]);
  };
  onExit(remove);
  try {
    sh('ip', ['netns', 'add', ns]);
    nsx('ip', 'link', 'set', 'lo', 'up');
    for (const [a, b, net] of [[dbRoot, dbNs, 1], [clRoot, clNs, 2]]) {
      sh('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
      sh('ip', ['link', 'set', b, 'netns', ns]);
      sh('ip', ['addr', 'add', `10.${n}.${net}.1/24`, 'dev', a]);
      sh('ip', ['link', 'set', a, 'up']);
      nsx('ip', 'addr', 'add', `10.${n}.${net}.2/24`, 'dev', b);
      nsx('ip', 'link', 'set', b, 'up');
    }
  } catch (e) {
    remove();
    throw e;
  }
  let parted = false;
  return {
    ns, pgAddr: `10.${n}.1.1`, relayDbAddr: `10.${n}.1.2`, clientAddr: `10.${n}.2.2`,
    subnet: `10.${n}.1.0/24`,
    partition() {
      if (!parted)
        sh('ip', ['route', 'add', 'blackhole', `10.${n}.1.2/32`]);
      parted = true;
    },
    heal() {
      if (parted)
        sh('ip', ['route', 'del', 'blackhole', `10.${n}.1.2/32`]);
      parted = false;
    },
    remove,
  };
}

export { delay, waitFor };
