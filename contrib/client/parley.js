// parley.js: the Parley browser client (PROTOCOL.md §1-2), an ES module with
// no build step and no dependencies.
//
// One ParleyClient per page and relay owns the tab's one WebSocket.  It gets a
// short-lived token from the token service (the HttpOnly session cookie goes
// along), offers it as a handshake subprotocol together with a per-tab
// instance id, refreshes it in-band before it expires, reconnects with
// exponential backoff and full jitter, remembers the last seq per
// conversation and syncs after every reconnect, de-duplicates messages by id,
// and keeps unsent messages in a persistent outbox until the relay acks them.
//
// It does not render anything, keep message lists (an application combines
// `history()` with `message` events by id) or talk to the relay in any way
// other than the documented commands.  Everything it touches in the browser
// (time, WebSocket, fetch, storage, randomness, window and document events)
// can be replaced through constructor options, which is how the unit tests in
// tests/client/ drive it with a fake socket and a fake clock.

/** Library version, sent nowhere; for applications' diagnostics. */
export const VERSION = '0.1.0';

/** The subprotocol of wire contract version 1. */
export const PROTOCOL = 'parley.v1';

/** Close codes the relay uses (PROTOCOL.md §2, "Close codes"). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008,
  TOO_BIG: 1009,
  HEARTBEAT_TIMEOUT: 4000,
  AUTH_FAILED: 4001,
  AUTH_TIMEOUT: 4002,
  REPLACED: 4009,
  TOKEN_EXPIRED: 4010,
  SIGNED_OUT: 4011,
  FLOOD: 4029,
  SLOW_CONSUMER: 4030,
});

/** Defaults of the options; the names in comments are DESIGN.md's settings. */
export const DEFAULTS = Object.freeze({
  tokenUrl: '/auth/token',
  loginUrl: '/auth/login',
  logoutUrl: '/auth/logout',
  sessionUrl: '/auth/session',
  reconnectDelay: 5000,        // WS_RECONNECT_DELAY: backoff base (ms)
  maxReconnectDelay: 60000,    // cap of one backoff window (ms)
  maxReconnectAttempts: 5,     // WS_MAX_RECONNECT_ATTEMPTS, then state "offline"
  refreshLeadTime: 60000,      // refresh this long before the token expires (ms)
  requestTimeout: 10000,       // request/reply commands (ms)
  connectTimeout: 15000,       // from new WebSocket() to welcome (ms)
  pongTimeout: 10000,          // liveness ping unanswered -> reconnect (ms)
  ackTimeout: 20000,           // a sent message unacked this long is sent again (ms)
  maxSendAttempts: 10,         // writes of one message without an ack, then "failed"
  typingInterval: 3000,        // at most one typing command per conversation (ms)
  gapTimeout: 2000,            // a seq gap still open after this is synced (ms)
  syncBacklog: 100,            // replay at most this many messages of a conversation first seen on reconnect
  maxFrame: 65536,             // the relay's PARLEY_MAX_FRAME (bytes)
  storagePrefix: 'parley:v1:',
});

// Error codes of a message that must not be retried (PROTOCOL.md §2, error).
const PERMANENT_SEND_ERRORS = new Set(['bad_request', 'unknown_type', 'forbidden', 'not_found', 'too_large']);
// Close codes after which the client stays down.
const TERMINAL_CLOSE = new Map([[CloseCode.SIGNED_OUT, 'signed_out'], [CloseCode.REPLACED, 'replaced']]);
// Relay events re-emitted as "members".
const MEMBER_EVENTS = new Set(['member_joined', 'member_left', 'removed_from_group', 'group_joined', 'group_left']);
const SEEN_IDS_MAX = 5000;

/**
 * An error from the token service, the relay or the client itself.
 * `code` is the protocol's error code (`invalid_session`, `forbidden`,
 * `rate_limited` ...) or one of the client's own: `timeout`, `disconnected`,
 * `not_connected`, `signed_out`, `replaced`, `closed`, `network`,
 * `duplicate_client`, `too_large`, `no_ack`, `bad_argument`.
 */
export class ParleyError extends Error {
  /**
   * @param {string} code
   * @param {string} [message]
   * @param {{status?: number, retryAfter?: number, ref?: string, cause?: unknown}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message || code, extra.cause !== undefined ? { cause: extra.cause } : undefined);
    this.name = 'ParleyError';
    /** @type {string} */
    this.code = code;
    /** @type {number|undefined} HTTP status, for token service errors */
    this.status = extra.status;
    /** @type {number|undefined} seconds, from a Retry-After header */
    this.retryAfter = extra.retryAfter;
    /** @type {string|undefined} */
    this.ref = extra.ref;
  }
}

// ------------------------------------------------------------------ helpers

/**
 * The conversation id of a direct conversation between two users.
 * @param {number} a
 * @param {number} b
 * @returns {string}
 */
export function dmConversation(a, b) {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

/**
 * The conversation id of a group.
 * @param {number} group
 * @returns {string}
 */
export function groupConversation(group) {
  return `group:${group}`;
}

/**
 * Parse a conversation id.
 * @param {string} conversation
 * @returns {{kind: 'dm', users: [number, number]} | {kind: 'group', group: number} | null}
 */
export function parseConversation(conversation) {
  let m = /^dm:(\d+):(\d+)$/.exec(String(conversation));
  if (m)
    return { kind: 'dm', users: [Number(m[1]), Number(m[2])] };
  m = /^group:(\d+)$/.exec(String(conversation));
  if (m)
    return { kind: 'group', group: Number(m[1]) };
  return null;
}

/**
 * A random (version 4) UUID.
 * @param {() => number} random  used only where no Web Crypto exists
 * @returns {string}
 */
function defaultUuid(random) {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function')
    return c.randomUUID();
  // Pages served over plain http from a non-localhost address have no
  // randomUUID (secure contexts only); getRandomValues works everywhere.
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function')
    c.getRandomValues(b);
  else
    for (let i = 0; i < 16; i++)
      b[i] = Math.floor(random() * 256);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => { m.set(k, String(v)); },
    removeItem: (k) => { m.delete(k); },
  };
}

function browserStorage(name) {
  try {
    const s = globalThis[name];
    if (s) {
      // Safari's private mode and disabled cookies throw on first use.
      const k = '__parley_probe__';
      s.setItem(k, '1');
      s.removeItem(k);
      return s;
    }
  } catch { /* fall through */ }
  return memoryStorage();
}

function byteLength(s) {
  if (typeof TextEncoder !== 'undefined')
    return new TextEncoder().encode(s).length;
  return unescape(encodeURIComponent(s)).length;
}

// Decode a JWT's payload without verifying it: only to learn `sub` and `exp`
// early; the relay is what verifies.
function jwtClaims(jwt) {
  try {
    const part = String(jwt).split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const text = typeof atob === 'function' ? atob(b64)
      : globalThis.Buffer.from(b64, 'base64').toString('binary');
    return JSON.parse(decodeURIComponent(escape(text)));
  } catch {
    return {};
  }
}

function retryAfterSeconds(res) {
  const v = res.headers && typeof res.headers.get === 'function' ? res.headers.get('Retry-After') : null;
  const n = v == null ? NaN : Number(v);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

async function errorFromResponse(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const code = body && typeof body.error === 'string' ? body.error : `http_${res.status}`;
  const msg = body && typeof body.message === 'string' ? body.message : `HTTP ${res.status}`;
  return new ParleyError(code, msg, { status: res.status, retryAfter: retryAfterSeconds(res) });
}

async function postJson(fetchFn, url, body) {
  const init = { method: 'POST', credentials: 'include', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetchFn(url, init);
  } catch (e) {
    throw new ParleyError('network', 'the token service is unreachable', { cause: e });
  }
  if (!res.ok)
    throw await errorFromResponse(res);
  if (res.status === 204)
    return null;
  try {
    return await res.json();
  } catch (e) {
    throw new ParleyError('bad_response', 'the token service sent no JSON', { status: res.status, cause: e });
  }
}

/**
 * Sign in at the token service: `POST loginUrl` with a JSON body.  The
 * session cookie it sets is HttpOnly; this resolves with the user.
 * Rejects with ParleyError `invalid_credentials` (401), `too_many_attempts`
 * (429, `retryAfter` in seconds), `bad_request`, `unavailable` or `network`.
 * @param {string} username
 * @param {string} password
 * @param {{url?: string, fetch?: typeof fetch}} [opts]
 * @returns {Promise<{user: {id: number, name: string}, session_expires_at: string|number}>}
 */
export function login(username, password, opts = {}) {
  const f = opts.fetch || globalThis.fetch.bind(globalThis);
  return postJson(f, opts.url || DEFAULTS.loginUrl, { username, password });
}

/**
 * Ask the token service who is signed in.  Resolves with the session, or
 * null when there is none (401); rejects on other failures.
 * @param {{url?: string, fetch?: typeof fetch}} [opts]
 * @returns {Promise<{user: {id: number, name: string}, session_expires_at: string|number} | null>}
 */
export async function getSession(opts = {}) {
  const f = opts.fetch || globalThis.fetch.bind(globalThis);
  let res;
  try {
    res = await f(opts.url || DEFAULTS.sessionUrl, { method: 'GET', credentials: 'include', headers: { Accept: 'application/json' } });
  } catch (e) {
    throw new ParleyError('network', 'the token service is unreachable', { cause: e });
  }
  if (res.status === 401)
    return null;
  if (!res.ok)
    throw await errorFromResponse(res);
  return res.json();
}

/**
 * Sign out at the token service (`POST logoutUrl`).  Resolves true when a
 * session was ended, false when there was none (401).  The relay then closes
 * every socket of that session with 4011.  ParleyClient#logout does this and
 * also stops the client and clears its outbox.
 * @param {{url?: string, fetch?: typeof fetch}} [opts]
 * @returns {Promise<boolean>}
 */
export async function logout(opts = {}) {
  const f = opts.fetch || globalThis.fetch.bind(globalThis);
  try {
    await postJson(f, opts.url || DEFAULTS.logoutUrl);
    return true;
  } catch (e) {
    if (e instanceof ParleyError && e.status === 401)
      return false;
    throw e;
  }
}

/**
 * The backoff delay before reconnect number `attempt` (0 for the first):
 * exponential backoff with full jitter, `random() * min(cap, base * 2^attempt)`,
 * rounded down to whole milliseconds.
 * @param {number} attempt
 * @param {{reconnectDelay?: number, maxReconnectDelay?: number, random?: () => number}} [o]
 * @returns {number}
 */
export function backoffDelay(attempt, o = {}) {
  const base = o.reconnectDelay ?? DEFAULTS.reconnectDelay;
  const cap = o.maxReconnectDelay ?? DEFAULTS.maxReconnectDelay;
  const random = o.random || Math.random;
  const window = Math.min(cap, base * 2 ** Math.max(0, attempt));
  return Math.floor(random() * window);
}

// One client per page and key (see ParleyClient.get).
const registry = new Map();

// ------------------------------------------------------------------ the client

/**
 * @typedef {'idle'|'connecting'|'open'|'reconnecting'|'offline'|'signed_out'|'replaced'|'closed'} ParleyState
 */

/**
 * A connection to the Parley relay for one browser tab.
 *
 * Create it with `ParleyClient.get(options)`, which returns the page's
 * existing client for the same relay and token service, or `new
 * ParleyClient(options)`, which throws ParleyError `duplicate_client` when
 * one exists: a page can never hold two connections to the same relay, no
 * matter how often a UI framework renders.  `close()` releases the slot.
 */
export class ParleyClient {
  /**
   * The page's client for these options' relay and token service, created
   * on first use.  Options of later calls are ignored.
   * @param {import('./parley').ParleyClientOptions} [options]
   * @returns {ParleyClient}
   */
  static get(options = {}) {
    const existing = registry.get(ParleyClient.keyOf(options));
    return existing || new ParleyClient(options);
  }

  /**
   * The registry key of a set of options: token service URL and relay URL.
   * @param {import('./parley').ParleyClientOptions} [options]
   * @returns {string}
   */
  static keyOf(options = {}) {
    return `${options.tokenUrl || DEFAULTS.tokenUrl} ${options.url || ''}`;
  }

  /**
   * @param {import('./parley').ParleyClientOptions} [options]
   */
  constructor(options = {}) {
    const key = ParleyClient.keyOf(options);
    if (registry.has(key))
      throw new ParleyError('duplicate_client',
        'a ParleyClient for this relay exists in this page already; use ParleyClient.get()');
    const o = { ...DEFAULTS, ...options };
    this._o = o;
    this._key = key;

    // Environment (injectable).
    const clock = options.clock || {};
    this._now = clock.now || (() => Date.now());
    this._setTimeout = clock.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = clock.clearTimeout || ((/** @type {any} */ t) => clearTimeout(t));
    this._random = options.random || Math.random;
    this._uuid = options.uuid || (() => defaultUuid(this._random));
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    this._fetch = options.fetch || (globalThis.fetch ? globalThis.fetch.bind(globalThis) : null);
    this._storage = options.storage || browserStorage('localStorage');
    this._session = options.sessionStorage || browserStorage('sessionStorage');
    this._window = options.window !== undefined ? options.window
      : (typeof window !== 'undefined' ? window : null);
    this._document = options.document !== undefined ? options.document
      : (typeof document !== 'undefined' ? document : null);
    this._navigator = options.navigator !== undefined ? options.navigator
      : (typeof navigator !== 'undefined' ? navigator : null);
    this._location = options.location !== undefined ? options.location
      : (typeof location !== 'undefined' ? location : null);
    this._reportError = options.reportError
      || (typeof globalThis.reportError === 'function' ? (e) => globalThis.reportError(e)
        : (e) => queueMicrotask(() => { throw e; }));
    this._BroadcastChannel = options.BroadcastChannel !== undefined ? options.BroadcastChannel
      : (typeof BroadcastChannel !== 'undefined' ? BroadcastChannel : null);
    if (!this._WebSocket)
      throw new ParleyError('bad_argument', 'no WebSocket implementation');
    if (!this._fetch)
      throw new ParleyError('bad_argument', 'no fetch implementation');
    if (options.shared)
      throw new ParleyError('bad_argument', 'the shared cross-tab connection is not implemented yet');

    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {ParleyState} */
    this._state = 'idle';
    this._gen = 0;              // bumps on every attempt; stale callbacks compare
    this._ws = null;
    this._welcome = null;
    this._user = null;
    this._token = null;         // { jwt, expiresAt (local ms), authed }
    this._skew = 0;             // server clock - local clock (ms), from welcome
    this._attempt = 0;          // reconnects scheduled since the last welcome
    this._timers = new Map();   // name -> handle
    this._refSeq = 0;
    this._pending = new Map();  // ref -> request
    this._lastRx = 0;
    this._refreshing = false;
    this._readSent = new Map(); // conversation -> seq sent on this connection
    this._readWanted = new Map();
    this._typingAt = new Map();
    this._seqs = {};            // conversation -> last contiguous seq
    this._ahead = new Map();    // conversation -> Set of seqs seen beyond it
    this._seqsLoaded = false;
    this._seen = new Set();     // message ids delivered (bounded)
    this._waiters = new Map();  // client_id -> { resolve, reject }
    this._retryTimers = new Map();
    this._connectWaiters = [];

    this._instanceId = this._loadInstanceId();
    this._outbox = this._loadOutbox();

    this._onOnline = () => this._wake('online');
    this._onOffline = () => this._networkLost();
    this._onVisibility = () => {
      if (!this._document || this._document.visibilityState === 'visible')
        this._wake('visible');
    };
    if (this._window && typeof this._window.addEventListener === 'function') {
      this._window.addEventListener('online', this._onOnline);
      this._window.addEventListener('offline', this._onOffline);
    }
    if (this._document && typeof this._document.addEventListener === 'function')
      this._document.addEventListener('visibilitychange', this._onVisibility);
    this._setupDuplicateTabDetection();

    registry.set(key, this);
  }

  // -------------------------------------------------------------- properties

  /** @returns {ParleyState} */
  get state() { return this._state; }
  /** @returns {{id: number, name: string} | null} the user of the last welcome */
  get user() { return this._user; }
  /** @returns {string} this tab's client_instance */
  get instanceId() { return this._instanceId; }
  /** @returns {object|null} the last welcome event */
  get welcome() { return this._welcome; }
  /** @returns {boolean} */
  get isOpen() { return this._state === 'open'; }

  // -------------------------------------------------------------- events

  /**
   * Listen to an event: message, ack, outbox, presence, typing, read,
   * members, state, error, sync, token, frame.  Returns a function that
   * removes the listener.
   * @param {string} type
   * @param {(detail: any) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    if (!this._listeners.has(type))
      this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  /**
   * Remove a listener added with on().
   * @param {string} type
   * @param {Function} fn
   */
  off(type, fn) {
    const s = this._listeners.get(type);
    if (s)
      s.delete(fn);
  }

  /**
   * Listen to the next event of a type only.
   * @param {string} type
   * @param {(detail: any) => void} fn
   * @returns {() => void}
   */
  once(type, fn) {
    const off = this.on(type, (d) => {
      off();
      fn(d);
    });
    return off;
  }

  _emit(type, detail) {
    const s = this._listeners.get(type);
    if (!s)
      return;
    for (const fn of [...s]) {
      try {
        fn(detail);
      } catch (e) {
        // An application bug must not break the connection's state machine;
        // report it the way an exception in an event handler is.
        this._reportError(e);
      }
    }
  }

  // -------------------------------------------------------------- lifecycle

  /**
   * Start connecting (idempotent: while connecting or open nothing new
   * happens).  From `offline`, `replaced` or `signed_out` it starts again
   * with a fresh attempt count.  Resolves with the welcome event once open;
   * rejects with ParleyError `signed_out`, `replaced`, `offline` or `closed`
   * when the client stops before that.
   * @returns {Promise<object>}
   */
  connect() {
    if (this._state === 'closed')
      return Promise.reject(new ParleyError('closed', 'the client was closed'));
    const p = this._state === 'open' ? Promise.resolve(this._welcome)
      : new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    p.catch(() => {});  // states are also events; awaiting is optional
    if (this._state === 'idle' || this._state === 'offline' || this._state === 'replaced' || this._state === 'signed_out') {
      this._attempt = 0;
      this._startAttempt();
    }
    return p;
  }

  /**
   * Reconnect now: cancels a pending backoff timer, resets the attempt count
   * and opens a new socket (closing the current one, if any).  After
   * `replaced` this takes the connection back for this tab.
   */
  reconnect() {
    if (this._state === 'closed')
      return;
    this._attempt = 0;
    this._dropSocket(CloseCode.NORMAL, 'reconnect');
    this._startAttempt();
  }

  /**
   * Stop for good: closes the socket with 1000, rejects pending requests,
   * removes the page listeners and frees the page's slot so that a new
   * client can be created.  The outbox stays in storage for the next client.
   */
  close() {
    if (this._state === 'closed')
      return;
    this._dropSocket(CloseCode.NORMAL, 'client closed');
    this._clearAllTimers();
    this._rejectRequests(new ParleyError('closed', 'the client was closed'), () => true);
    for (const [id, w] of this._waiters) {
      w.reject(new ParleyError('closed', 'the client was closed'));
      this._waiters.delete(id);
    }
    if (this._window && typeof this._window.removeEventListener === 'function') {
      this._window.removeEventListener('online', this._onOnline);
      this._window.removeEventListener('offline', this._onOffline);
    }
    if (this._document && typeof this._document.removeEventListener === 'function')
      this._document.removeEventListener('visibilitychange', this._onVisibility);
    if (this._bc) {
      try { this._bc.close(); } catch { /* ignore */ }
      this._bc = null;
    }
    if (registry.get(this._key) === this)
      registry.delete(this._key);
    this._setState('closed', {});
  }

  /**
   * Sign out: `POST logoutUrl` at the token service (which makes the relay
   * close every socket of the session with 4011), then stop in state
   * `signed_out` and drop the outbox.  Resolves when done, even when the
   * session had already ended.
   * @returns {Promise<void>}
   */
  async logout() {
    let err = null;
    try {
      await logout({ url: this._o.logoutUrl, fetch: this._fetch });
    } catch (e) {
      err = e;
    }
    this._signedOut('logout');
    if (err)
      throw err;
  }

  // -------------------------------------------------------------- sending

  /**
   * Send a message to a conversation (`dm:<a>:<b>` or `group:<id>`).  The
   * message goes into the outbox first (persisted), then to the relay when
   * connected, and again after every reconnect or reload with the same
   * client_id until the relay acks it.  The promise resolves with the ack
   * ({client_id, id, conversation, seq, ts}) or rejects with ParleyError
   * (`forbidden`, `not_found`, `bad_request`, `too_large`, `no_ack`,
   * `signed_out`).  The returned promise has a `clientId` property.
   * @param {string} conversation
   * @param {string} body
   * @returns {Promise<object> & {clientId: string}}
   */
  send(conversation, body) {
    const c = parseConversation(conversation);
    if (!c)
      return this._rejected(new ParleyError('bad_argument', `not a conversation: ${conversation}`));
    if (c.kind === 'group')
      return this.sendGroup(c.group, body);
    const me = this._user ? this._user.id : this._tokenUser();
    if (me == null)
      return this._rejected(new ParleyError('not_connected', 'the own user id is not known yet; use sendPrivate(to, body)'));
    const [a, b] = c.users;
    if (a !== me && b !== me)
      return this._rejected(new ParleyError('forbidden', 'not a participant of this conversation'));
    return this.sendPrivate(a === me ? b : a, body);
  }

  /**
   * Send a direct message to a user.  See send().
   * @param {number} to
   * @param {string} body
   * @returns {Promise<object> & {clientId: string}}
   */
  sendPrivate(to, body) {
    return this._enqueue({ type: 'private_message', to: Number(to) }, body);
  }

  /**
   * Send a message to a group.  See send().
   * @param {number} group
   * @param {string} body
   * @returns {Promise<object> & {clientId: string}}
   */
  sendGroup(group, body) {
    return this._enqueue({ type: 'group_message', group: Number(group) }, body);
  }

  /**
   * The messages not acked yet, oldest first (copies): each
   * {client_id, type, to|group, body, conversation, status, attempts, created}.
   * @returns {object[]}
   */
  outbox() {
    return this._outbox.map((e) => ({ ...e }));
  }

  /**
   * Tell the user's other connections that the conversation is read up to
   * seq (no reply).  Sent at once when open, else when the connection opens.
   * @param {string} conversation
   * @param {number} seq
   */
  markRead(conversation, seq) {
    const prev = this._readWanted.get(conversation) || 0;
    if (seq <= prev)
      return;
    this._readWanted.set(conversation, seq);
    if (this._state === 'open')
      this._flushReads();
  }

  /**
   * Tell the other participants that this user is typing (no reply; at most
   * one command per conversation per `typingInterval`; dropped when not open).
   * @param {string} conversation
   * @returns {boolean} whether a command went out
   */
  typing(conversation) {
    if (this._state !== 'open')
      return false;
    const now = this._now();
    const last = this._typingAt.get(conversation);
    if (last !== undefined && now - last < this._o.typingInterval)
      return false;
    this._typingAt.set(conversation, now);
    return this._write({ type: 'typing', conversation });
  }

  // -------------------------------------------------------------- requests

  /**
   * Send a command and wait for its reply (matched by `ref`).  Commands made
   * while not open wait for the connection; a command whose connection drops
   * is sent again after the reconnect.  Rejects with ParleyError carrying the
   * relay's error code, or `timeout` after `timeout` ms (default
   * requestTimeout), or the state that stopped the client.
   * @param {string} type
   * @param {object} [fields]
   * @param {{timeout?: number}} [opts]
   * @returns {Promise<any>}
   */
  request(type, fields = {}, opts = {}) {
    return this._request(type, fields, { timeout: opts.timeout, resend: true });
  }

  /** @returns {Promise<{groups: Array<{id: number, name: string, visibility: string, member: boolean, role: string|null}>}>} */
  groupList() { return this.request('group_list'); }
  /** @returns {Promise<{users: Array<{id: number, name: string, online: boolean}>}>} */
  userList() { return this.request('user_list'); }
  /** @returns {Promise<{conversations: Array<{conversation: string, last_seq: number, read_seq: number, title: string}>}>} */
  conversationList() { return this.request('conversation_list'); }

  /**
   * Older messages of a conversation, ascending by seq.
   * @param {string} conversation
   * @param {{beforeSeq?: number, limit?: number}} [opts]
   * @returns {Promise<{conversation: string, messages: object[], more: boolean}>}
   */
  history(conversation, opts = {}) {
    const f = { conversation };
    if (opts.beforeSeq != null)
      f.before_seq = opts.beforeSeq;
    if (opts.limit != null)
      f.limit = opts.limit;
    return this.request('history', f);
  }

  /**
   * Join a public group.  Resolves with `group_joined`.
   * @param {number} group
   */
  async joinGroup(group) {
    const r = await this.request('join_group', { group: Number(group) });
    // Baseline the group's conversation so that its old messages are not
    // replayed by the next sync (they are history, not missed messages).
    this._baselineUnknown(true).catch(() => {});
    return r;
  }

  /**
   * Leave a group.  Resolves with `group_left`.
   * @param {number} group
   */
  leaveGroup(group) { return this.request('leave_group', { group: Number(group) }); }

  /** Round trip to the relay.  Resolves with `pong` {server_time}. */
  ping() { return this.request('ping'); }

  /**
   * The last seq delivered to this client in a conversation (contiguous: every
   * message up to it was seen), or 0.
   * @param {string} conversation
   * @returns {number}
   */
  lastSeq(conversation) {
    return this._seqs[conversation] || 0;
  }

  // ================================================================ internals

  _rejected(err) {
    const p = Promise.reject(err);
    p.catch(() => {});
    return Object.assign(p, { clientId: null });
  }

  _key_(name) {
    return this._o.storagePrefix + name;
  }

  _readJson(store, name, fallback) {
    try {
      const v = store.getItem(this._key_(name));
      return v == null ? fallback : JSON.parse(v);
    } catch {
      return fallback;
    }
  }

  _writeJson(store, name, value) {
    try {
      if (value == null)
        store.removeItem(this._key_(name));
      else
        store.setItem(this._key_(name), JSON.stringify(value));
    } catch (e) {
      this._emit('error', new ParleyError('storage', 'could not write to storage', { cause: e }));
    }
  }

  _loadInstanceId() {
    let id = null;
    try { id = this._session.getItem(this._key_('instance')); } catch { /* none */ }
    if (!id || !/^[A-Za-z0-9-]{8,64}$/.test(id)) {
      id = this._uuid();
      try { this._session.setItem(this._key_('instance'), id); } catch { /* memory only */ }
    }
    return id;
  }

  // Browsers copy sessionStorage into a duplicated tab, so two tabs can
  // start with the same instance id and would replace each other (4009).
  // Each tab announces its id; a tab already using it answers, and the
  // newcomer takes a fresh one before it connects.
  _setupDuplicateTabDetection() {
    if (!this._BroadcastChannel || this._o.detectDuplicateTabs === false)
      return;
    try {
      this._bc = new this._BroadcastChannel(this._key_('instances'));
    } catch {
      this._bc = null;
      return;
    }
    this._tabNonce = this._uuid();
    this._bc.onmessage = (ev) => {
      const d = ev && ev.data;
      if (!d || d.instance !== this._instanceId)
        return;
      if (d.t === 'claim' && d.nonce !== this._tabNonce) {
        this._bc.postMessage({ t: 'taken', instance: d.instance, nonce: d.nonce });
      } else if (d.t === 'taken' && d.nonce === this._tabNonce) {
        this._instanceId = this._uuid();
        try { this._session.setItem(this._key_('instance'), this._instanceId); } catch { /* memory only */ }
        // The outbox belongs to the other tab's id; keep ours under the new one.
        this._saveOutbox();
        if (this._state === 'connecting' || this._state === 'open')
          this.reconnect();
      }
    };
    this._bc.postMessage({ t: 'claim', instance: this._instanceId, nonce: this._tabNonce });
  }

  _setState(state, detail = {}) {
    const previous = this._state;
    this._state = state;
    this._emit('state', { state, previous, ...detail });
    if (state === 'open') {
      const w = this._connectWaiters.splice(0);
      for (const x of w)
        x.resolve(this._welcome);
    } else if (state === 'offline' || state === 'signed_out' || state === 'replaced' || state === 'closed') {
      // Stopped: nothing will answer by waiting.
      const err = new ParleyError(state, `connection ${state}`);
      const w = this._connectWaiters.splice(0);
      for (const x of w)
        x.reject(err);
      this._rejectRequests(err, () => true);
    }
  }

  _timer(name, ms, fn) {
    this._cancel(name);
    const h = this._setTimeout(() => {
      this._timers.delete(name);
      fn();
    }, Math.max(0, ms));
    this._timers.set(name, h);
  }

  _cancel(name) {
    const h = this._timers.get(name);
    if (h !== undefined) {
      this._clearTimeout(h);
      this._timers.delete(name);
    }
  }

  _clearAllTimers() {
    for (const h of this._timers.values())
      this._clearTimeout(h);
    this._timers.clear();
    for (const h of this._retryTimers.values())
      this._clearTimeout(h);
    this._retryTimers.clear();
  }

  _tokenUser() {
    if (!this._token)
      return null;
    const sub = Number(this._token.sub);
    return Number.isSafeInteger(sub) ? sub : null;
  }

  _relayUrl(tok) {
    if (this._o.url)
      return this._o.url;
    if (tok && typeof tok.relay_url === 'string' && tok.relay_url)
      return tok.relay_url;
    const loc = this._location;
    if (!loc)
      throw new ParleyError('bad_argument', 'no relay url: pass options.url');
    return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
  }

  async _fetchToken() {
    const t0 = this._now();
    const r = await postJson(this._fetch, this._o.tokenUrl);
    if (!r || typeof r.token !== 'string' || !r.token)
      throw new ParleyError('bad_response', 'the token service sent no token');
    const claims = jwtClaims(r.token);
    const ttl = Number.isFinite(r.expires_in) ? r.expires_in * 1000 : 0;
    return {
      jwt: r.token,
      relay_url: r.relay_url,
      sub: claims.sub,
      lifetime: ttl,
      expiresAt: t0 + ttl,
      authed: false,
    };
  }

  // ---------------------------------------------------------- connecting

  _startAttempt() {
    this._cancel('reconnect');
    const gen = ++this._gen;
    this._setState('connecting', { attempt: this._attempt });
    this._attemptAsync(gen).catch((e) => {
      if (gen === this._gen)
        this._emit('error', e instanceof ParleyError ? e : new ParleyError('internal', String(e), { cause: e }));
    });
  }

  async _attemptAsync(gen) {
    // A token that already opened a connection is used again while it has
    // a comfortable time left; anything else is fetched anew, which is also
    // how a refused handshake (no close code reaches the page) finds out
    // whether the session is gone.
    let tok = this._token;
    const now = this._now();
    if (!tok || !tok.authed || tok.expiresAt - now < Math.max(30000, this._o.refreshLeadTime / 2)) {
      try {
        tok = await this._fetchToken();
      } catch (e) {
        if (gen !== this._gen)
          return;
        this._token = null;
        if (e.status === 401) {
          this._signedOut('token_service');
          return;
        }
        this._emit('error', e);
        if (e.status && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
          // forbidden_origin and friends do not heal by waiting.
          this._setState('offline', { reason: e.code, error: e });
          this._rejectRequests(new ParleyError('offline', 'offline'), () => true);
          return;
        }
        this._scheduleReconnect({ reason: e.code, minDelay: (e.retryAfter || 0) * 1000 });
        return;
      }
      if (gen !== this._gen)
        return;
      this._token = tok;
    }

    let ws;
    try {
      const url = this._relayUrl(tok);
      ws = new this._WebSocket(url, [PROTOCOL, `parley.token.${tok.jwt}`, `parley.instance.${this._instanceId}`]);
    } catch (e) {
      this._emit('error', new ParleyError('bad_argument', `cannot open the WebSocket: ${e && e.message}`, { cause: e }));
      this._token = null;
      this._scheduleReconnect({ reason: 'socket_error' });
      return;
    }
    this._ws = ws;
    this._authed = false;
    ws.onmessage = (ev) => {
      if (gen === this._gen)
        this._onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (gen === this._gen)
        this._onClose(ev.code, ev.reason || '');
    };
    ws.onerror = () => { /* a close event follows */ };
    this._timer('connect', this._o.connectTimeout, () => {
      if (gen !== this._gen || this._authed)
        return;
      this._closeLocally(1006, 'connect timeout');
    });
  }

  // Close the current socket (if any) and forget it: its later events are
  // ignored because the generation moves on.
  _dropSocket(code, reason) {
    const ws = this._ws;
    this._detach();
    if (ws) {
      ws.onmessage = null;
      ws.onclose = null;
      ws.onerror = null;
      try { ws.close(code, reason); } catch { /* already closed */ }
    }
  }

  // What ends with a connection, however it ended.
  _detach() {
    this._ws = null;
    this._authed = false;
    this._gen++;
    this._cancel('connect');
    this._cancel('heartbeat');
    this._cancel('pong');
    this._cancel('refresh');
    this._refreshing = false;
    this._readSent.clear();
    // Replies of connection-bound commands (sync, refresh) cannot come any
    // more; the others are sent again after the reconnect.
    this._rejectRequests(new ParleyError('disconnected', 'the connection closed'), (p) => !p.resend);
    for (const p of this._pending.values())
      p.sent = false;
    for (const e of this._outbox)
      if (e.status === 'sent')
        e.status = 'pending';
  }

  // Give up on a socket that does not answer: a dead TCP connection can take
  // minutes to report its close, so act as if it had closed now.
  _closeLocally(code, reason) {
    const ws = this._ws;
    if (ws) {
      ws.onmessage = null;
      ws.onclose = null;
      ws.onerror = null;
      try { ws.close(CloseCode.HEARTBEAT_TIMEOUT, reason); } catch { /* already closed */ }
    }
    this._onClose(code, reason);
  }

  _onClose(code, reason) {
    const wasAuthed = this._authed;
    this._detach();

    const terminal = TERMINAL_CLOSE.get(code);
    if (terminal === 'signed_out') {
      this._signedOut('relay', code, reason);
      return;
    }
    if (terminal === 'replaced') {
      this._setState('replaced', { code, reason });
      return;
    }
    if (!wasAuthed) {
      // The handshake failed or the socket died before welcome: the token
      // may be the reason (the page cannot see the HTTP 401), so the next
      // attempt fetches a new one.
      this._token = null;
    }
    if (code === CloseCode.TOKEN_EXPIRED) {
      // Not a network failure: fetch a new token and come back at once.
      this._token = null;
      this._scheduleReconnect({ code, reason, immediate: true });
      return;
    }
    this._scheduleReconnect({ code, reason });
  }

  /**
   * Schedule the next attempt, or go offline when the attempts are used up.
   * @param {{code?: number, reason?: string, minDelay?: number, immediate?: boolean}} [o]
   */
  _scheduleReconnect({ code, reason, minDelay = 0, immediate = false } = {}) {
    if (this._state === 'closed' || this._state === 'signed_out')
      return;
    if (this._browserOffline()) {
      this._setState('offline', { code, reason: 'network' });
      return;
    }
    if (!immediate && this._attempt >= this._o.maxReconnectAttempts) {
      this._setState('offline', { code, reason: reason || 'max_reconnect_attempts', attempts: this._attempt });
      this._rejectRequests(new ParleyError('offline', 'offline'), () => true);
      return;
    }
    const attempt = this._attempt;
    let delay = 0;
    if (!immediate) {
      delay = Math.max(minDelay, backoffDelay(attempt, { ...this._o, random: this._random }));
      this._attempt++;
    }
    const retryAt = this._now() + delay;
    this._setState('reconnecting', { code, reason, attempt, delay, retryAt });
    this._timer('reconnect', delay, () => this._startAttempt());
  }

  _signedOut(reason, code, closeReason) {
    this._dropSocket(CloseCode.NORMAL, 'signed out');
    this._cancel('reconnect');
    this._token = null;
    this._user = null;
    this._welcome = null;
    this._rejectRequests(new ParleyError('signed_out', 'signed out'), () => true);
    // The outbox belongs to the session that ended: on a shared computer the
    // next person must not send it.  Report each message as failed.
    const err = new ParleyError('signed_out', 'signed out before the message was acknowledged');
    for (const e of this._outbox.splice(0))
      this._failEntry(e, err, false);
    this._saveOutbox();
    this._seqsLoaded = false;
    this._seqs = {};
    this._ahead.clear();
    this._seen.clear();
    this._readWanted.clear();
    this._typingAt.clear();
    if (this._state !== 'signed_out')
      this._setState('signed_out', { reason, code, closeReason });
  }

  _networkLost() {
    // The browser says it is offline: waiting for "online" beats burning the
    // reconnect attempts on a network that is not there.
    if (this._state === 'reconnecting' || this._state === 'connecting') {
      this._dropSocket(CloseCode.NORMAL, 'offline');
      this._cancel('reconnect');
      this._setState('offline', { reason: 'network' });
    } else if (this._state === 'open') {
      // An open socket may survive a short outage, or sit half-open with
      // nothing getting through (what Chromium does): a ping tells.
      this._checkAlive('offline');
    }
  }

  _browserOffline() {
    return !!(this._navigator && this._navigator.onLine === false);
  }

  _wake(why) {
    if (this._state === 'reconnecting' || this._state === 'offline') {
      this._attempt = 0;
      this._startAttempt();
    } else if (this._state === 'open') {
      this._checkAlive(why);
    }
  }

  // A socket can look open long after its network went away; a ping answers
  // whether it still works.
  /** @param {string} [_why] what prompted the check (for debugging) */
  _checkAlive(_why) {
    if (this._timers.has('pong') || this._state !== 'open')
      return;
    const gen = this._gen;
    this._write({ type: 'ping' });
    this._timer('pong', this._o.pongTimeout, () => {
      if (gen !== this._gen)
        return;
      this._closeLocally(CloseCode.HEARTBEAT_TIMEOUT, 'no pong');
    });
  }

  _armHeartbeat() {
    const every = this._heartbeatMs;
    if (!every)
      return;
    this._timer('heartbeat', every, () => {
      if (this._state !== 'open')
        return;
      if (this._now() - this._lastRx >= every)
        this._checkAlive('idle');
      this._armHeartbeat();
    });
  }

  _write(obj) {
    const ws = this._ws;
    if (!ws || !this._authed)
      return false;
    try {
      ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  // ---------------------------------------------------------- frames

  _onFrame(data) {
    this._lastRx = this._now();
    if (this._timers.has('pong'))
      this._cancel('pong');
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      this._emit('error', new ParleyError('bad_frame', 'the relay sent a frame that is not JSON'));
      return;
    }
    if (!m || typeof m !== 'object' || typeof m.type !== 'string')
      return;
    this._emit('frame', m);
    if (m.type === 'welcome') {
      this._onWelcome(m);
      return;
    }
    const isMessage = m.type === 'private_message' || m.type === 'group_message';
    if (!isMessage && m.ref != null && this._pending.has(m.ref)) {
      const p = this._pending.get(m.ref);
      this._pending.delete(m.ref);
      this._clearTimeout(p.timer);
      if (m.type === 'error')
        p.reject(new ParleyError(m.code || 'error', m.message, { ref: m.ref }));
      else
        p.resolve(m);
      if (MEMBER_EVENTS.has(m.type))
        this._emit('members', m);
      return;
    }
    switch (m.type) {
    case 'private_message':
    case 'group_message':
      this._onMessage(m);
      break;
    case 'ack':
      this._onAck(m);
      break;
    case 'error':
      if (m.ref != null && this._outboxEntry(m.ref))
        this._onSendError(this._outboxEntry(m.ref), m);
      else
        this._emit('error', new ParleyError(m.code || 'error', m.message, { ref: m.ref }));
      break;
    case 'presence':
      this._emit('presence', m);
      break;
    case 'typing':
      this._emit('typing', m);
      break;
    case 'read':
      this._emit('read', m);
      break;
    case 'token_expiring':
      this._onTokenExpiring(m);
      break;
    default:
      if (MEMBER_EVENTS.has(m.type))
        this._emit('members', m);
    }
  }

  _onWelcome(m) {
    this._authed = true;
    this._cancel('connect');
    this._welcome = m;
    this._user = m.user || null;
    this._attempt = 0;
    const now = this._now();
    const server = Date.parse(m.server_time);
    this._skew = Number.isFinite(server) ? server - now : 0;
    if (this._token) {
      this._token.authed = true;
      if (Number.isFinite(m.token_expires_at))
        this._token.expiresAt = m.token_expires_at * 1000 - this._skew;
      this._scheduleRefresh();
    }
    this._heartbeatMs = Number.isFinite(m.heartbeat_interval) && m.heartbeat_interval > 0
      ? m.heartbeat_interval * 1000 : 0;
    this._lastRx = now;
    this._armHeartbeat();
    if (this._user)
      this._loadSeqs(this._user.id);
    this._adoptOutbox();
    this._setState('open', { connection_id: m.connection_id, user: this._user });
    if (this._state !== 'open')
      return;       // a state listener closed or signed out
    this._flushOutbox();
    this._flushRequests();
    this._flushReads();
    this._catchUp().catch((e) => {
      if (!(e instanceof ParleyError && (e.code === 'disconnected' || e.code === 'closed' || e.code === 'signed_out')))
        this._emit('error', e);
    });
  }

  // ---------------------------------------------------------- tokens

  _scheduleRefresh() {
    const t = this._token;
    if (!t || !t.expiresAt)
      return;
    const remaining = t.expiresAt - this._now();
    // Refresh refreshLeadTime before expiry, but never in the first half of
    // the token's life: a short WS_TOKEN_TTL (10 s in the tests) must not
    // turn into a refresh loop.
    const delay = Math.max(remaining - this._o.refreshLeadTime, remaining / 2, 0);
    this._timer('refresh', delay, () => this._refresh());
  }

  _onTokenExpiring(m) {
    this._emit('token', { event: 'expiring', expires_at: m.expires_at });
    const t = this._token;
    if (!t || this._refreshing)
      return;
    // The relay warns a minute before exp.  A token younger than half its
    // lifetime is only short-lived (the timer handles it), not forgotten.
    const age = t.lifetime - (t.expiresAt - this._now());
    if (t.lifetime && age < t.lifetime / 2)
      return;
    this._refresh();
  }

  async _refresh() {
    if (this._refreshing || this._state !== 'open')
      return;
    this._refreshing = true;
    const gen = this._gen;
    let tok;
    try {
      tok = await this._fetchToken();
    } catch (e) {
      this._refreshing = false;
      if (gen !== this._gen)
        return;
      if (e.status === 401) {
        this._signedOut('token_service');
        return;
      }
      this._emit('error', e);
      // Try again while the old token lasts; if it runs out first, 4010
      // brings a reconnect with a fresh token.
      const left = this._token ? this._token.expiresAt - this._now() : 0;
      this._timer('refresh', Math.max(1000, Math.min(5000, left / 4)), () => this._refresh());
      return;
    }
    if (gen !== this._gen) {
      this._refreshing = false;
      this._token = tok;        // fresh: the next attempt can use it
      return;
    }
    try {
      const r = await this._request('refresh', { token: tok.jwt }, { resend: false });
      tok.authed = true;
      if (Number.isFinite(r.token_expires_at))
        tok.expiresAt = r.token_expires_at * 1000 - this._skew;
      this._token = tok;
      this._refreshing = false;
      this._emit('token', { event: 'refreshed', expires_at: r.token_expires_at });
      if (gen === this._gen)
        this._scheduleRefresh();
    } catch (e) {
      this._refreshing = false;
      if (gen !== this._gen)
        return;
      // invalid_token / forbidden: the old token stays; 4010 follows if it
      // runs out, and the reconnect fetches another.
      this._emit('error', e);
      const left = this._token ? this._token.expiresAt - this._now() : 0;
      if (left > 2000)
        this._timer('refresh', Math.max(1000, left / 4), () => this._refresh());
    }
  }

  // ---------------------------------------------------------- requests

  /**
   * @param {string} type
   * @param {object} fields
   * @param {{timeout?: number, resend?: boolean}} [o] resend: send again after a reconnect
   * @returns {Promise<any>}
   */
  _request(type, fields, { timeout, resend = false } = {}) {
    // Stopped states do not end by waiting; idle, connecting and
    // reconnecting do.
    if (['closed', 'signed_out', 'offline', 'replaced'].includes(this._state))
      return Promise.reject(new ParleyError(this._state, `client is ${this._state}`));
    return new Promise((resolve, reject) => {
      const ref = `r${++this._refSeq}`;
      const frame = { ...fields, type, ref };
      const p = { ref, frame, resolve, reject, sent: false, resend, timer: null };
      p.timer = this._setTimeout(() => {
        this._pending.delete(ref);
        reject(new ParleyError('timeout', `no reply to ${type}`, { ref }));
      }, timeout ?? this._o.requestTimeout);
      this._pending.set(ref, p);
      if (this._state === 'open')
        p.sent = this._write(frame);
    });
  }

  _flushRequests() {
    for (const p of this._pending.values())
      if (!p.sent)
        p.sent = this._write(p.frame);
  }

  _rejectRequests(err, which) {
    for (const [ref, p] of [...this._pending]) {
      if (!which(p))
        continue;
      this._pending.delete(ref);
      this._clearTimeout(p.timer);
      p.reject(err);
    }
  }

  _flushReads() {
    for (const [conversation, seq] of this._readWanted) {
      if ((this._readSent.get(conversation) || 0) >= seq)
        continue;
      if (this._write({ type: 'read', conversation, seq }))
        this._readSent.set(conversation, seq);
    }
  }

  // ---------------------------------------------------------- seqs and sync

  _loadSeqs(userId) {
    if (this._seqsLoaded === userId)
      return;
    const stored = this._readJson(this._storage, `seqs:${userId}`, null);
    this._seqs = {};
    this._ahead.clear();
    this._seen.clear();
    this._firstVisit = stored == null;
    if (stored && typeof stored === 'object')
      for (const [k, v] of Object.entries(stored))
        if (Number.isSafeInteger(v) && v >= 0)
          this._seqs[k] = v;
    this._seqsLoaded = userId;
  }

  _saveSeqs() {
    if (!this._user)
      return;
    // Tabs share this key: keep the highest of theirs and ours.
    const name = `seqs:${this._user.id}`;
    const stored = this._readJson(this._storage, name, {}) || {};
    const out = { ...stored };
    for (const [k, v] of Object.entries(this._seqs))
      if (!(out[k] >= v))
        out[k] = v;
    this._writeJson(this._storage, name, out);
  }

  // Conversations this client has never seen get a starting point from
  // conversation_list, so that sync (which counts unlisted ones from 0)
  // replays what was missed, not a whole history.  On the very first
  // connection of a user in this browser nothing is replayed; later, a
  // conversation that appeared meanwhile replays at most syncBacklog.
  async _baselineUnknown(first) {
    const r = await this._request('conversation_list', {}, { resend: false });
    let changed = false;
    for (const c of r.conversations || []) {
      if (typeof c.conversation !== 'string' || c.conversation in this._seqs)
        continue;
      const last = Number(c.last_seq) || 0;
      this._seqs[c.conversation] = first ? last : Math.max(0, last - this._o.syncBacklog);
      changed = true;
    }
    if (changed)
      this._saveSeqs();
    return r;
  }

  async _catchUp() {
    const gen = this._gen;
    await this._baselineUnknown(this._firstVisit);
    this._firstVisit = false;
    if (gen !== this._gen)
      return;
    await this._sync();
  }

  async _sync() {
    // sync_done may say there is more (the relay pages large backlogs).
    for (let page = 0; page < 1000; page++) {
      const r = await this._request('sync', { since: { ...this._seqs } }, { resend: false });
      this._emit('sync', r);
      if (!r.more)
        return;
    }
  }

  _noteSeq(conversation, seq) {
    if (!Number.isSafeInteger(seq) || seq <= 0)
      return;
    if (!(conversation in this._seqs))
      this._seqs[conversation] = seq - 1;
    const last = this._seqs[conversation];
    if (seq <= last)
      return;
    let ahead = this._ahead.get(conversation);
    if (!ahead) {
      ahead = new Set();
      this._ahead.set(conversation, ahead);
    }
    ahead.add(seq);
    let n = last;
    while (ahead.has(n + 1)) {
      ahead.delete(n + 1);
      n++;
    }
    if (n !== last) {
      this._seqs[conversation] = n;
      this._saveSeqs();
    }
    if (ahead.size === 0) {
      this._ahead.delete(conversation);
    } else if (!this._timers.has(`gap:${conversation}`)) {
      const gen = this._gen;
      this._timer(`gap:${conversation}`, this._o.gapTimeout, () => {
        if (gen === this._gen && this._ahead.has(conversation) && this._state === 'open')
          this._sync().catch(() => {});
      });
    }
  }

  _isDuplicate(m) {
    if (m.id != null && this._seen.has(m.id))
      return true;
    const last = this._seqs[m.conversation];
    if (last !== undefined && m.seq <= last)
      return true;
    const ahead = this._ahead.get(m.conversation);
    return !!(ahead && ahead.has(m.seq));
  }

  _remember(id) {
    if (id == null)
      return;
    this._seen.add(id);
    if (this._seen.size > SEEN_IDS_MAX)
      this._seen.delete(this._seen.values().next().value);
  }

  _onMessage(m) {
    if (typeof m.conversation !== 'string')
      return;
    if (this._isDuplicate(m))
      return;
    this._remember(m.id);
    this._noteSeq(m.conversation, m.seq);
    // A message of ours sent from another tab or an earlier page load may
    // still sit in this outbox: it has arrived, so it is acked.
    if (m.client_id && this._user && m.from && m.from.id === this._user.id) {
      const e = this._outboxEntry(m.client_id);
      if (e)
        this._onAck({ client_id: m.client_id, id: m.id, conversation: m.conversation, seq: m.seq, ts: m.ts });
    }
    this._emit('message', m);
  }

  // ---------------------------------------------------------- outbox

  _loadOutbox() {
    const v = this._readJson(this._storage, `outbox:${this._instanceId}`, []);
    if (!Array.isArray(v))
      return [];
    return v.filter((e) => e && typeof e.client_id === 'string' && typeof e.body === 'string')
      .map((e) => ({ ...e, status: 'pending' }));
  }

  _saveOutbox() {
    // The status is not stored: after a reload everything is pending again.
    const items = this._outbox.map((e) => {
      const rest = { ...e };
      delete rest.status;
      return rest;
    });
    this._writeJson(this._storage, `outbox:${this._instanceId}`, items.length ? items : null);
  }

  _outboxEntry(clientId) {
    return this._outbox.find((e) => e.client_id === clientId);
  }

  _enqueue(target, body) {
    if (this._state === 'closed' || this._state === 'signed_out')
      return this._rejected(new ParleyError(this._state, `client is ${this._state}`));
    if (typeof body !== 'string' || body.length === 0)
      return this._rejected(new ParleyError('bad_argument', 'body must be a non-empty string'));
    const id = target.type === 'private_message' ? target.to : target.group;
    if (!Number.isSafeInteger(id) || id <= 0)
      return this._rejected(new ParleyError('bad_argument', 'bad recipient'));
    const me = this._user ? this._user.id : this._tokenUser();
    const entry = {
      client_id: this._uuid(),
      ...target,
      body,
      conversation: target.type === 'group_message' ? groupConversation(target.group)
        : (me != null ? dmConversation(me, target.to) : null),
      user: me,
      created: this._now(),
      attempts: 0,
      status: 'pending',
    };
    // A frame over the relay's limit closes the socket (1009); sending it
    // again after every reconnect would never end.
    if (byteLength(JSON.stringify(this._frameOf(entry))) > this._o.maxFrame)
      return this._rejected(new ParleyError('too_large', 'the message is larger than the relay accepts'));
    let resolve;
    let reject;
    const p = new Promise((res, rej) => { resolve = res; reject = rej; });
    // Failures are also reported as "outbox" events: an application that
    // does not await the promise must not get unhandled rejections.
    p.catch(() => {});
    this._waiters.set(entry.client_id, { resolve, reject });
    this._outbox.push(entry);
    this._saveOutbox();
    this._emit('outbox', { client_id: entry.client_id, status: 'pending', entry: { ...entry } });
    if (this._state === 'open')
      this._sendEntry(entry);
    return Object.assign(p, { clientId: entry.client_id });
  }

  _frameOf(e) {
    const f = { type: e.type, ref: e.client_id, client_id: e.client_id, body: e.body };
    if (e.type === 'private_message')
      f.to = e.to;
    else
      f.group = e.group;
    return f;
  }

  _sendEntry(e) {
    if (e.status === 'sent' || this._retryTimers.has(e.client_id))
      return;
    if (e.attempts >= this._o.maxSendAttempts) {
      this._removeEntry(e);
      this._failEntry(e, new ParleyError('no_ack', 'the relay never acknowledged the message'), true);
      return;
    }
    if (!this._write(this._frameOf(e)))
      return;
    e.attempts++;
    e.status = 'sent';
    this._saveOutbox();
    this._emit('outbox', { client_id: e.client_id, status: 'sent', entry: { ...e } });
    const gen = this._gen;
    this._timer(`ack:${e.client_id}`, this._o.ackTimeout, () => {
      // Lost somewhere: the same client_id again is safe (PROTOCOL.md §2, ack).
      if (gen === this._gen && e.status === 'sent' && this._outbox.includes(e)) {
        e.status = 'pending';
        this._sendEntry(e);
      }
    });
  }

  _flushOutbox() {
    for (const e of [...this._outbox])
      if (e.status === 'pending')
        this._sendEntry(e);
  }

  // Entries written before the user was known belong to the user who
  // connects; entries of another user (a different sign-in in this tab
  // that was never signed out) cannot be sent by this one.
  _adoptOutbox() {
    const me = this._user ? this._user.id : null;
    if (me == null)
      return;
    let changed = false;
    for (const e of [...this._outbox]) {
      if (e.user == null) {
        e.user = me;
        if (!e.conversation && e.type === 'private_message')
          e.conversation = dmConversation(me, e.to);
        changed = true;
      } else if (e.user !== me) {
        this._removeEntry(e);
        this._failEntry(e, new ParleyError('forbidden', 'queued by another user'), true);
      }
    }
    if (changed)
      this._saveOutbox();
  }

  _removeEntry(e) {
    const i = this._outbox.indexOf(e);
    if (i >= 0)
      this._outbox.splice(i, 1);
    this._cancel(`ack:${e.client_id}`);
    const t = this._retryTimers.get(e.client_id);
    if (t !== undefined) {
      this._clearTimeout(t);
      this._retryTimers.delete(e.client_id);
    }
    this._saveOutbox();
  }

  _failEntry(e, err, emitError) {
    this._cancel(`ack:${e.client_id}`);
    e.status = 'failed';
    this._emit('outbox', { client_id: e.client_id, status: 'failed', entry: { ...e }, error: err });
    const w = this._waiters.get(e.client_id);
    if (w) {
      this._waiters.delete(e.client_id);
      w.reject(err);
    } else if (emitError) {
      this._emit('error', err);
    }
  }

  _onAck(m) {
    const e = this._outboxEntry(m.client_id);
    if (m.conversation && m.seq != null) {
      this._remember(m.id);
      this._noteSeq(m.conversation, m.seq);
    }
    if (!e)
      return;       // a duplicate ack of one already settled
    this._removeEntry(e);
    e.status = 'acked';
    const ack = { client_id: m.client_id, id: m.id, conversation: m.conversation, seq: m.seq, ts: m.ts };
    this._emit('ack', ack);
    this._emit('outbox', { client_id: e.client_id, status: 'acked', entry: { ...e }, ack });
    const w = this._waiters.get(e.client_id);
    if (w) {
      this._waiters.delete(e.client_id);
      w.resolve(ack);
    }
  }

  _onSendError(e, m) {
    this._cancel(`ack:${e.client_id}`);
    const err = new ParleyError(m.code || 'error', m.message, { ref: m.ref });
    if (PERMANENT_SEND_ERRORS.has(m.code)) {
      this._removeEntry(e);
      this._failEntry(e, err, false);
      return;
    }
    // rate_limited, unavailable (database down: not stored), internal:
    // the same client_id again later.
    e.status = 'pending';
    this._emit('outbox', { client_id: e.client_id, status: 'pending', entry: { ...e }, error: err });
    const delay = backoffDelay(e.attempts, { reconnectDelay: 1000, maxReconnectDelay: 30000, random: this._random }) + 250;
    const t = this._setTimeout(() => {
      this._retryTimers.delete(e.client_id);
      if (this._outbox.includes(e) && this._state === 'open')
        this._sendEntry(e);
    }, delay);
    this._retryTimers.set(e.client_id, t);
  }
}

export default ParleyClient;
