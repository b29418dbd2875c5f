// tests/client/fakes.mjs: a fake browser for the client library's unit tests.
//
// FakeClock: setTimeout/clearTimeout/now on a virtual time line that only
// moves when a test calls advance().  FakeWebSocket: records the URL, the
// offered subprotocols and every frame the client sends, and lets the test
// play the relay (welcome, events, close codes).  A token service stub for
// fetch, Storage on a Map, a BroadcastChannel bus, an EventTarget for window
// and document.  Nothing here touches the network or real timers except
// settle(), which lets pending promise callbacks run.

import { ParleyClient } from '../../contrib/client/parley.js';

/** Let every queued promise callback and immediate run (several rounds). */
export async function settle(rounds = 10) {
  for (let i = 0; i < rounds; i++)
    await new Promise((r) => setImmediate(r));
}

export class FakeClock {
  constructor(start = Date.UTC(2026, 10, 26, 10, 0, 0)) {
    this.t = start;
    this.seq = 0;
    this.timers = new Map();
    this.now = () => this.t;
    this.setTimeout = (fn, ms) => {
      const id = ++this.seq;
      this.timers.set(id, { fn, at: this.t + Math.max(0, ms || 0), id, ms });
      return id;
    };
    this.clearTimeout = (id) => { this.timers.delete(id); };
  }

  /** Pending timers sorted by due time: [{at, ms, id}]. */
  pending() {
    return [...this.timers.values()].sort((a, b) => a.at - b.at || a.id - b.id);
  }

  /** Move time forward by ms, firing due timers in order, settling promises after each. */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const next = this.pending().find((x) => x.at <= end);
      if (!next)
        break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
    }
    this.t = end;
    await settle();
  }
}

export class MemoryStorage {
  constructor() { this.map = new Map(); }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) { this.map.set(k, String(v)); }
  removeItem(k) { this.map.delete(k); }
  get length() { return this.map.size; }
  json(k) { const v = this.getItem(k); return v == null ? null : JSON.parse(v); }
}

export class FakeEventTarget {
  constructor(props = {}) {
    Object.assign(this, props);
    this.listeners = new Map();
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type))
      this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }
  removeEventListener(type, fn) {
    const s = this.listeners.get(type);
    if (s)
      s.delete(fn);
  }
  dispatch(type) {
    for (const fn of [...(this.listeners.get(type) || [])])
      fn({ type });
  }
  count(type) {
    return (this.listeners.get(type) || new Set()).size;
  }
}

/** An unsigned JWT-shaped string with the given claims (the client only reads sub/exp). */
export function fakeJwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.c2ln`;
}

/**
 * A FakeWebSocket class bound to a test: every instance lands in
 * `sockets`; the test plays the relay through its methods.
 */
export function makeWebSocketClass(clock) {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.sent = [];
      this.closed = null;
      this.readyState = 0;
      this.onmessage = null;
      this.onclose = null;
      this.onerror = null;
      this.onopen = null;
      // Answer `ping` like the relay (later, as a network would), unless a
      // test plays a dead connection.
      this.autoPong = true;
      sockets.push(this);
    }
    send(data) {
      if (this.readyState !== 1)
        throw new Error('InvalidStateError: not open');
      const f = JSON.parse(data);
      this.sent.push(f);
      if (f.type === 'ping' && this.autoPong)
        queueMicrotask(() => {
          if (this.readyState === 1)
            this.push({ type: 'pong', ref: f.ref, server_time: new Date(clock.now()).toISOString() });
        });
    }
    close(code, reason) {
      this.closed = { code, reason, by: 'client' };
      this.readyState = 3;
    }
    // ---- the relay's side
    /** The frames the client sent, of one type. */
    frames(type) { return this.sent.filter((f) => f.type === type); }
    last(type) { const f = this.frames(type); return f[f.length - 1]; }
    serverOpen() {
      this.readyState = 1;
      if (this.onopen)
        this.onopen({ type: 'open' });
    }
    push(obj) {
      if (this.onmessage)
        this.onmessage({ data: JSON.stringify(obj) });
    }
    /** Open and welcome, as the relay does after a good handshake. */
    welcome({ user = { id: 1, name: 'alice' }, ttl = 300, heartbeat = 30, connection = sockets.length } = {}) {
      this.serverOpen();
      this.push({
        type: 'welcome', user, connection_id: connection, heartbeat_interval: heartbeat,
        token_expires_at: Math.floor(clock.now() / 1000) + ttl,
        server_time: new Date(clock.now()).toISOString(),
      });
    }
    /** Close from the relay (or the network: 1006 without open). */
    serverClose(code = 1006, reason = '') {
      this.readyState = 3;
      this.closed = this.closed || { code, reason, by: 'server' };
      if (this.onclose)
        this.onclose({ code, reason, wasClean: code !== 1006 });
    }
    /** Reply to the last command of a type, with its ref. */
    reply(type, obj, replyType = type) {
      const cmd = this.last(type);
      if (!cmd)
        throw new Error(`the client sent no ${type}`);
      this.push({ ...obj, type: replyType, ref: cmd.ref });
      return cmd;
    }
  }
  return { FakeWebSocket, sockets };
}

/**
 * A token service stub for fetch.  `responses` is a queue of
 * { status, body, headers }; when empty, a fresh token for user 1 with
 * `ttl` seconds is returned.  Records each request in `calls`.
 */
export function makeTokenService(clock, { ttl = 300, sub = '1' } = {}) {
  const svc = {
    calls: [],
    queue: [],
    ttl,
    issued: 0,
    failWith(status, body, headers = {}) { svc.queue.push({ status, body, headers }); },
    async fetch(url, init = {}) {
      svc.calls.push({ url, init });
      const q = svc.queue.shift();
      if (q && q.throw)
        throw q.throw;
      if (q) {
        return {
          ok: q.status >= 200 && q.status < 300,
          status: q.status,
          headers: { get: (h) => q.headers[h] ?? q.headers[h.toLowerCase()] ?? null },
          json: async () => q.body,
        };
      }
      const iat = Math.floor(clock.now() / 1000);
      svc.issued++;
      const token = fakeJwt({ sub, iat, exp: iat + svc.ttl, n: svc.issued });
      return {
        ok: true,
        status: 200,
        headers: { get: () => null },
        json: async () => ({ token, token_type: 'Bearer', expires_in: svc.ttl, expires_at: iat + svc.ttl }),
      };
    },
  };
  svc.fetch = svc.fetch.bind(svc);
  return svc;
}

/** A BroadcastChannel implementation whose instances share one in-memory bus. */
export function makeBroadcastBus() {
  const channels = new Set();
  class FakeBroadcastChannel {
    constructor(name) {
      this.name = name;
      this.onmessage = null;
      channels.add(this);
    }
    postMessage(data) {
      const copy = structuredClone(data);
      for (const c of channels)
        if (c !== this && c.name === this.name)
          queueMicrotask(() => c.onmessage && c.onmessage({ data: copy }));
    }
    close() { channels.delete(this); }
  }
  return FakeBroadcastChannel;
}

/**
 * A browser tab: clock, storages, window, document, token service, socket
 * class, and a client created with all of them.  `shared` lets two tabs (or
 * a reload) share localStorage / sessionStorage / the broadcast bus.
 */
export function makeTab({ clock, storage, sessionStorage, tokens, BroadcastChannel = null, random = () => 0.5, options = {} } = {}) {
  clock = clock || new FakeClock();
  storage = storage || new MemoryStorage();
  sessionStorage = sessionStorage || new MemoryStorage();
  tokens = tokens || makeTokenService(clock);
  const { FakeWebSocket, sockets } = makeWebSocketClass(clock);
  const win = new FakeEventTarget();
  const doc = new FakeEventTarget({ visibilityState: 'visible' });
  const nav = { onLine: true };
  let n = 0;
  const uuid = () => `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;
  const client = new ParleyClient({
    url: 'ws://relay.test/ws',
    clock,
    WebSocket: FakeWebSocket,
    fetch: tokens.fetch,
    storage,
    sessionStorage,
    random,
    uuid: options.uuid || uuid,
    window: win,
    document: doc,
    location: null,
    navigator: nav,
    BroadcastChannel,
    ...options,
  });
  const events = [];
  for (const t of ['state', 'message', 'ack', 'outbox', 'presence', 'typing', 'read', 'members', 'error', 'sync', 'token'])
    client.on(t, (d) => events.push({ t, d }));
  const states = () => events.filter((e) => e.t === 'state').map((e) => e.d.state);
  const of = (t) => events.filter((e) => e.t === t).map((e) => e.d);
  return { clock, storage, sessionStorage, tokens, FakeWebSocket, sockets, win, doc, nav, client, events, states, of,
    socket: () => sockets[sockets.length - 1] };
}

/**
 * Connect a tab's client and answer the catch-up it does after welcome
 * (conversation_list, then sync) with the given conversations and no
 * missed messages.  Returns the socket.
 */
export async function openTab(tab, { user, ttl, heartbeat, conversations = [], messages = [] } = {}) {
  if (tab.client.state === 'idle')
    tab.client.connect();
  await settle();
  const ws = tab.socket();
  ws.welcome({ user, ttl, heartbeat });
  await settle();
  await catchUp(ws, { conversations, messages });
  return ws;
}

/** Answer a conversation_list + sync round after welcome. */
export async function catchUp(ws, { conversations = [], messages = [] } = {}) {
  ws.reply('conversation_list', { conversations });
  await settle();
  const sync = ws.last('sync');
  for (const m of messages)
    ws.push(m);
  ws.push({ type: 'sync_done', ref: sync.ref });
  await settle();
  return sync;
}

/** A message event as the relay sends it. */
export function msg(id, conversation, seq, { from = { id: 2, name: 'bob' }, body = `m${id}`, client_id = `c${id}` } = {}) {
  const c = conversation.startsWith('group:')
    ? { type: 'group_message', group: Number(conversation.slice(6)) }
    : { type: 'private_message', to: 1 };
  return { ...c, id, conversation, seq, from, body, client_id, ts: '2026-11-26T10:00:00.000Z' };
}
