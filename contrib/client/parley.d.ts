// parley.d.ts: TypeScript declarations of parley.js, the Parley browser
// client (wire contract: PROTOCOL.md, version 1).

export const VERSION: string;
/** The subprotocol of wire contract version 1: "parley.v1". */
export const PROTOCOL: 'parley.v1';

export const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  POLICY: 1008;
  TOO_BIG: 1009;
  HEARTBEAT_TIMEOUT: 4000;
  AUTH_FAILED: 4001;
  AUTH_TIMEOUT: 4002;
  REPLACED: 4009;
  TOKEN_EXPIRED: 4010;
  SIGNED_OUT: 4011;
  FLOOD: 4029;
  SLOW_CONSUMER: 4030;
}>;

export const DEFAULTS: Readonly<Required<Pick<ParleyClientOptions,
  'tokenUrl' | 'loginUrl' | 'logoutUrl' | 'sessionUrl' | 'reconnectDelay' | 'maxReconnectDelay' |
  'maxReconnectAttempts' | 'refreshLeadTime' | 'requestTimeout' | 'connectTimeout' | 'pongTimeout' |
  'ackTimeout' | 'maxSendAttempts' | 'typingInterval' | 'gapTimeout' | 'syncBacklog' | 'maxFrame' |
  'storagePrefix'>>>;

/** Error codes of the protocol and of the client itself. */
export type ParleyErrorCode =
  | 'bad_request' | 'unknown_type' | 'forbidden' | 'not_found' | 'too_large' | 'rate_limited'
  | 'unavailable' | 'internal' | 'invalid_token' | 'invalid_session' | 'invalid_credentials'
  | 'too_many_attempts' | 'forbidden_origin'
  | 'timeout' | 'disconnected' | 'not_connected' | 'signed_out' | 'replaced' | 'closed' | 'offline'
  | 'network' | 'duplicate_client' | 'no_ack' | 'bad_argument' | 'bad_response' | 'bad_frame'
  | 'storage' | (string & {});

export class ParleyError extends Error {
  constructor(code: string, message?: string, extra?: { status?: number; retryAfter?: number; ref?: string; cause?: unknown });
  name: 'ParleyError';
  code: ParleyErrorCode;
  /** HTTP status, for token service errors. */
  status?: number;
  /** Seconds, from a Retry-After header. */
  retryAfter?: number;
  ref?: string;
}

export type ParleyState =
  | 'idle' | 'connecting' | 'open' | 'reconnecting' | 'offline' | 'signed_out' | 'replaced' | 'closed';

export interface User { id: number; name: string }

/** A localStorage-like store. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface EventTargetLike {
  addEventListener(type: string, fn: (ev: unknown) => void): void;
  removeEventListener(type: string, fn: (ev: unknown) => void): void;
}

export interface ParleyClientOptions {
  /** Relay WebSocket URL. Default: the token's relay_url, else ws(s)://<page host>/ws. */
  url?: string;
  /** Token service endpoints (same origin; the session cookie is sent). */
  tokenUrl?: string;
  loginUrl?: string;
  logoutUrl?: string;
  sessionUrl?: string;
  /** WS_RECONNECT_DELAY: backoff base, ms (5000). */
  reconnectDelay?: number;
  /** Cap of one backoff window, ms (60000). */
  maxReconnectDelay?: number;
  /** WS_MAX_RECONNECT_ATTEMPTS (5); then state "offline" until online/visible/connect(). */
  maxReconnectAttempts?: number;
  /** Refresh the token this long before it expires, ms (60000); never in its first half-life. */
  refreshLeadTime?: number;
  /** Request/reply commands, ms (10000). */
  requestTimeout?: number;
  /** New socket to welcome, ms (15000). */
  connectTimeout?: number;
  /** A liveness ping unanswered this long closes the socket, ms (10000). */
  pongTimeout?: number;
  /** A sent message unacked this long is sent again (same client_id), ms (20000). */
  ackTimeout?: number;
  /** Writes of one message without an ack before it fails with no_ack (10). */
  maxSendAttempts?: number;
  /** At most one typing command per conversation per this, ms (3000). */
  typingInterval?: number;
  /** A seq gap still open after this is repaired with sync, ms (2000). */
  gapTimeout?: number;
  /** Messages replayed at most for a conversation first seen on a reconnect (100). */
  syncBacklog?: number;
  /** The relay's frame limit in bytes (65536): larger messages are refused at once. */
  maxFrame?: number;
  /** Prefix of storage keys ("parley:v1:"). */
  storagePrefix?: string;
  /** Answer "taken" to a duplicated tab claiming our instance id (true, needs BroadcastChannel). */
  detectDuplicateTabs?: boolean;
  /** Reserved for a connection shared by all tabs; not implemented (throws when true). */
  shared?: false;

  // Injectable environment (tests; unusual hosts).
  clock?: Partial<Clock>;
  random?: () => number;
  uuid?: () => string;
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
  fetch?: typeof fetch;
  /** Persistent store for the outbox and seqs (localStorage). */
  storage?: StorageLike;
  /** Per-tab store for the instance id (sessionStorage). */
  sessionStorage?: StorageLike;
  /** Source of online/offline events (window); null for none. */
  window?: EventTargetLike | null;
  /** Source of visibilitychange and visibilityState (document); null for none. */
  document?: (EventTargetLike & { visibilityState?: string }) | null;
  location?: { protocol: string; host: string } | null;
  /** navigator.onLine === false means: wait for "online" instead of retrying. */
  navigator?: { onLine?: boolean } | null;
  BroadcastChannel?: (new (name: string) => BroadcastChannel) | null;
  /** Where exceptions thrown by event listeners go (globalThis.reportError). */
  reportError?: (error: unknown) => void;
}

export interface Welcome {
  type: 'welcome';
  user: User;
  connection_id: number | string;
  heartbeat_interval: number;
  token_expires_at: number;
  server_time: string;
}

export interface Message {
  type: 'private_message' | 'group_message';
  id: number;
  conversation: string;
  seq: number;
  from: User;
  to?: number;
  group?: number;
  body: string;
  client_id: string;
  ts: string;
}

export interface Ack {
  client_id: string;
  id: number;
  conversation: string;
  seq: number;
  ts: string;
}

export interface OutboxEntry {
  client_id: string;
  type: 'private_message' | 'group_message';
  to?: number;
  group?: number;
  body: string;
  conversation: string | null;
  user: number | null;
  created: number;
  attempts: number;
  status: 'pending' | 'sent' | 'acked' | 'failed';
}

export interface OutboxEvent {
  client_id: string;
  status: 'pending' | 'sent' | 'acked' | 'failed';
  entry: OutboxEntry;
  ack?: Ack;
  error?: ParleyError;
}

export interface StateEvent {
  state: ParleyState;
  previous: ParleyState;
  /** reconnecting / connecting: reconnects scheduled since the last welcome. */
  attempt?: number;
  /** reconnecting: the backoff delay (ms) and when it ends (epoch ms of the client clock). */
  delay?: number;
  retryAt?: number;
  /** The close code and reason that led here, when one did. */
  code?: number;
  reason?: string;
  /** offline after giving up: how many reconnects were made. */
  attempts?: number;
  user?: User | null;
  connection_id?: number | string;
  error?: ParleyError;
}

export interface PresenceEvent { type: 'presence'; user: number; online: boolean }
export interface TypingEvent { type: 'typing'; conversation: string; user?: number | User; [k: string]: unknown }
export interface ReadEvent { type: 'read'; conversation: string; seq: number; [k: string]: unknown }
export interface MembersEvent {
  type: 'member_joined' | 'member_left' | 'removed_from_group' | 'group_joined' | 'group_left';
  group: number;
  user?: number;
  [k: string]: unknown;
}
export interface TokenEvent { event: 'expiring' | 'refreshed'; expires_at: number }

export interface ParleyEvents {
  message: Message;
  ack: Ack;
  outbox: OutboxEvent;
  presence: PresenceEvent;
  typing: TypingEvent;
  read: ReadEvent;
  members: MembersEvent;
  state: StateEvent;
  error: ParleyError;
  sync: { type: 'sync_done'; ref: string; more?: boolean };
  token: TokenEvent;
  /** Every frame from the relay, parsed. */
  frame: { type: string; [k: string]: unknown };
}

export interface GroupInfo { id: number; name: string; visibility: 'public' | 'private' | string; member: boolean; role: string | null }
export interface UserInfo { id: number; name: string; online: boolean }
export interface ConversationInfo { conversation: string; last_seq: number; read_seq: number; title: string }

export type SendPromise = Promise<Ack> & { clientId: string | null };

export class ParleyClient {
  /** The page's client for these options' relay and token service (created on first use). */
  static get(options?: ParleyClientOptions): ParleyClient;
  static keyOf(options?: ParleyClientOptions): string;
  /** Throws ParleyError "duplicate_client" when the page has a client for the same relay. */
  constructor(options?: ParleyClientOptions);

  readonly state: ParleyState;
  readonly user: User | null;
  readonly instanceId: string;
  readonly welcome: Welcome | null;
  readonly isOpen: boolean;

  on<K extends keyof ParleyEvents>(type: K, fn: (detail: ParleyEvents[K]) => void): () => void;
  off<K extends keyof ParleyEvents>(type: K, fn: (detail: ParleyEvents[K]) => void): void;
  once<K extends keyof ParleyEvents>(type: K, fn: (detail: ParleyEvents[K]) => void): () => void;

  connect(): Promise<Welcome>;
  reconnect(): void;
  close(): void;
  logout(): Promise<void>;

  send(conversation: string, body: string): SendPromise;
  sendPrivate(to: number, body: string): SendPromise;
  sendGroup(group: number, body: string): SendPromise;
  outbox(): OutboxEntry[];
  markRead(conversation: string, seq: number): void;
  typing(conversation: string): boolean;

  request<T = any>(type: string, fields?: object, opts?: { timeout?: number }): Promise<T>;
  groupList(): Promise<{ type: 'group_list'; groups: GroupInfo[] }>;
  userList(): Promise<{ type: 'user_list'; users: UserInfo[] }>;
  conversationList(): Promise<{ type: 'conversation_list'; conversations: ConversationInfo[] }>;
  history(conversation: string, opts?: { beforeSeq?: number; limit?: number }):
    Promise<{ type: 'history'; conversation: string; messages: Message[]; more: boolean }>;
  joinGroup(group: number): Promise<{ type: 'group_joined'; group: number }>;
  leaveGroup(group: number): Promise<{ type: 'group_left'; group: number }>;
  ping(): Promise<{ type: 'pong'; server_time: string }>;
  lastSeq(conversation: string): number;
}

export default ParleyClient;

export function dmConversation(a: number, b: number): string;
export function groupConversation(group: number): string;
export function parseConversation(conversation: string):
  | { kind: 'dm'; users: [number, number] } | { kind: 'group'; group: number } | null;
export function backoffDelay(attempt: number,
  o?: { reconnectDelay?: number; maxReconnectDelay?: number; random?: () => number }): number;

export interface Session { user: User; session_expires_at: string | number }
export function login(username: string, password: string, opts?: { url?: string; fetch?: typeof fetch }): Promise<Session>;
export function getSession(opts?: { url?: string; fetch?: typeof fetch }): Promise<Session | null>;
export function logout(opts?: { url?: string; fetch?: typeof fetch }): Promise<boolean>;
