// tests/lib/wsraw.mjs: a WebSocket client on a bare TCP socket, for tests
// that must send what a well-behaved library never would.
//
// Frames are built by hand (encodeFrame): FIN, the three RSV bits and the
// opcode are free; the payload may be masked with a chosen key, masked with
// a random one, or sent unmasked; the length may be written in its minimal
// form or forced into the 16- or 64-bit form, and may even lie about the
// payload that follows.  Bytes can be written all at once or trickled.
//
// What comes back is parsed frame by frame (FIN, RSV, opcode, whether the
// server masked it, the length encoding it used), so a test can check the
// server's own framing too; close frames are decoded into code and reason;
// the end of the TCP connection is noticed and timed.
//
// Only node's standard library is used.

import crypto from 'node:crypto';
import net from 'node:net';

export const OP = {
  CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa,
};

const toBuf = (p) => (p === undefined ? Buffer.alloc(0) : Buffer.isBuffer(p) ? p : Buffer.from(p));

/**
 * One frame as bytes.
 *   fin (default true), rsv (0..7: RSV1 is 4), opcode (0..15),
 *   payload (Buffer or string),
 *   mask: true (random key, the default), false (unmasked), or a 4-byte Buffer,
 *   lenEncoding: 7, 16 or 64 to force that length form (default: minimal),
 *   declaredLength: a number or BigInt written as the length instead of the
 *     payload's (the payload bytes are still appended as given).
 */
export function encodeFrame({
  fin = true, rsv = 0, opcode = OP.TEXT, payload, mask = true, lenEncoding, declaredLength,
} = {}) {
  const data = toBuf(payload);
  const len = declaredLength === undefined ? BigInt(data.length) : BigInt(declaredLength);
  let enc = lenEncoding;
  if (enc === undefined)
    enc = len < 126n ? 7 : len < 65536n ? 16 : 64;
  const key = mask === false ? null : Buffer.isBuffer(mask) ? mask : crypto.randomBytes(4);
  const b0 = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 15);
  const mbit = key ? 0x80 : 0;
  let head;
  if (enc === 7) {
    if (len > 125n)
      throw new Error(`encodeFrame: ${len} does not fit the 7-bit length`);
    head = Buffer.from([b0, mbit | Number(len)]);
  } else if (enc === 16) {
    if (len > 65535n)
      throw new Error(`encodeFrame: ${len} does not fit the 16-bit length`);
    head = Buffer.alloc(4);
    head[0] = b0;
    head[1] = mbit | 126;
    head.writeUInt16BE(Number(len), 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = mbit | 127;
    head.writeBigUInt64BE(BigInt.asUintN(64, len), 2);
  }
  if (!key)
    return Buffer.concat([head, data]);
  const masked = Buffer.from(data);
  for (let i = 0; i < masked.length; i++)
    masked[i] ^= key[i & 3];
  return Buffer.concat([head, key, masked]);
}

/** A close frame's payload: the code (2 bytes, big endian) and a reason. */
export function closePayload(code, reason = '') {
  const r = toBuf(reason);
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code, 0);
  r.copy(b, 2);
  return b;
}

/**
 * Parse server frames from the front of buf.  Returns { frames, rest }.
 * Each frame: { fin, rsv, opcode, masked, lenEncoding, length, payload }
 * (payload unmasked if the server masked it, which it must not).
 */
export function parseFrames(buf) {
  const frames = [];
  for (;;) {
    if (buf.length < 2)
      break;
    const masked = !!(buf[1] & 0x80);
    let len = buf[1] & 127;
    let off = 2;
    let lenEncoding = 7;
    if (len === 126) {
      if (buf.length < 4)
        break;
      len = buf.readUInt16BE(2);
      off = 4;
      lenEncoding = 16;
    } else if (len === 127) {
      if (buf.length < 10)
        break;
      len = Number(buf.readBigUInt64BE(2));
      off = 10;
      lenEncoding = 64;
    }
    const keyLen = masked ? 4 : 0;
    if (buf.length < off + keyLen + len)
      break;
    let payload = buf.subarray(off + keyLen, off + keyLen + len);
    if (masked) {
      const key = buf.subarray(off, off + 4);
      payload = Buffer.from(payload);
      for (let i = 0; i < payload.length; i++)
        payload[i] ^= key[i & 3];
    }
    frames.push({
      fin: !!(buf[0] & 0x80), rsv: (buf[0] >> 4) & 7, opcode: buf[0] & 15,
      masked, lenEncoding, length: len, payload,
    });
    buf = buf.subarray(off + keyLen + len);
  }
  return { frames, rest: buf };
}

/** Decode a close frame's payload: { code (1005 if none), reason, reasonValidUtf8 }. */
export function decodeClose(payload) {
  if (payload.length < 2)
    return { code: 1005, reason: '', reasonValidUtf8: true, length: payload.length };
  const reasonBytes = payload.subarray(2);
  let valid = true;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(reasonBytes);
  } catch {
    valid = false;
  }
  return { code: payload.readUInt16BE(0), reason: reasonBytes.toString('utf8'), reasonValidUtf8: valid, length: payload.length };
}

function parseHead(text) {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) {
      const k = l.slice(0, i).trim().toLowerCase();
      const v = l.slice(i + 1).trim();
      headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
    }
  }
  return { status: m ? Number(m[1]) : 0, statusLine: lines[0], headers };
}

/**
 * The opening handshake request as text.  Options: host, path, key,
 * protocols (array), origin, headers (object or [name, value] pairs),
 * version (13).
 */
export function handshakeRequest({ host, path = '/ws', key, protocols = [], origin, headers = {}, version = 13 }) {
  const list = Array.isArray(headers) ? headers : Object.entries(headers);
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
    + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: ${version}\r\n`
    + (protocols.length ? `Sec-WebSocket-Protocol: ${protocols.join(', ')}\r\n` : '')
    + (origin !== undefined ? `Origin: ${origin}\r\n` : '')
    + list.map(([k, v]) => `${k}: ${v}\r\n`).join('')
    + '\r\n';
}

/**
 * Open a WebSocket on 127.0.0.1:port (or opts.host) with a raw socket.
 * Resolves to a WsRaw after a 101 whose Sec-WebSocket-Accept is right;
 * rejects with an Error carrying { status, headers, text, json } when the
 * server answers anything else, or { closed: true } when it closes first.
 */
export function wsConnect(port, opts = {}) {
  const { connectHost = '127.0.0.1', timeoutMs = 10000 } = opts;
  const host = opts.host || `127.0.0.1:${port}`;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: connectHost, port });
    socket.setNoDelay(true);
    const key = crypto.randomBytes(16).toString('base64');
    const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    let buf = Buffer.alloc(0);
    let ws = null;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no handshake answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const fail = (e) => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0)
        return;
      const head = parseHead(buf.subarray(0, end).toString('latin1'));
      if (head.status !== 101) {
        // The relay closes; a proxy may keep the connection alive, so a
        // body of known length is complete when it is all there.
        const rest = [buf.subarray(end + 4)];
        const want = head.headers['content-length'] !== undefined ? Number(head.headers['content-length']) : -1;
        let done = false;
        const have = () => rest.reduce((n, b) => n + b.length, 0);
        socket.removeListener('data', onData);
        socket.on('data', (x) => {
          rest.push(x);
          if (want >= 0 && have() >= want)
            finish();
        });
        const finish = () => {
          if (done)
            return;
          done = true;
          clearTimeout(timer);
          let body = Buffer.concat(rest);
          if (head.headers['content-length'] !== undefined)
            body = body.subarray(0, Number(head.headers['content-length']));
          const e = new Error(`handshake refused: ${head.statusLine}`);
          e.status = head.status;
          e.headers = head.headers;
          e.text = body.toString('utf8');
          try { e.json = JSON.parse(e.text); } catch { e.json = undefined; }
          socket.destroy();
          reject(e);
        };
        socket.once('end', finish);
        socket.once('close', finish);
        if (want >= 0 && have() >= want)
          finish();
        return;
      }
      if (head.headers['sec-websocket-accept'] !== accept) {
        fail(new Error(`bad Sec-WebSocket-Accept ${head.headers['sec-websocket-accept']}`));
        return;
      }
      clearTimeout(timer);
      socket.removeListener('data', onData);
      ws = new WsRaw(socket, head, buf.subarray(end + 4));
      resolve(ws);
    };
    socket.on('data', onData);
    socket.once('error', (e) => { if (!ws) fail(e); });
    socket.once('close', () => {
      if (!ws) {
        const e = new Error('connection closed during the handshake');
        e.closed = true;
        e.status = 0;
        fail(e);
      }
    });
    socket.once('connect', () => {
      socket.write(handshakeRequest({ ...opts, host, key }));
    });
  });
}

/** An open raw WebSocket (see wsConnect). */
export class WsRaw {
  constructor(socket, head, initial) {
    this.socket = socket;
    this.status = head.status;
    this.headers = head.headers;
    this.protocol = head.headers['sec-websocket-protocol'];
    this.buf = Buffer.alloc(0);
    this.frames = [];          // parsed, not yet consumed
    this.all = [];             // every frame received, for framing checks
    this.waiters = [];
    this.ended = false;        // the peer ended or closed TCP
    this.endedAt = 0;
    this.error = null;
    this.endWaiters = [];
    this.bytesIn = 0;
    socket.on('data', (d) => this.onData(d));
    const ended = () => {
      if (this.ended)
        return;
      this.ended = true;
      this.endedAt = Date.now();
      this.endWaiters.splice(0).forEach((f) => f());
      this.poke();
    };
    socket.on('end', ended);
    socket.on('close', ended);
    socket.on('error', (e) => {
      this.error = e;
      ended();
    });
    if (initial.length)
      this.onData(initial);
  }

  onData(d) {
    this.bytesIn += d.length;
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : Buffer.from(d);
    const { frames, rest } = parseFrames(this.buf);
    this.buf = rest;
    for (const f of frames) {
      this.all.push(f);
      this.frames.push(f);
    }
    if (frames.length)
      this.poke();
  }

  poke() {
    const still = [];
    for (const w of this.waiters) {
      const i = this.frames.findIndex(w.pred);
      if (i >= 0) {
        const [f] = this.frames.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(f);
      } else if (this.ended) {
        clearTimeout(w.timer);
        const e = new Error(`connection ended while waiting for a frame (${w.what})`);
        e.ended = true;
        w.reject(e);
      } else {
        still.push(w);
      }
    }
    this.waiters = still;
  }

  /** Write bytes (a frame from encodeFrame, or anything). */
  sendRaw(bytes) {
    if (!this.socket.destroyed)
      this.socket.write(bytes);
  }

  /** Build and write a frame (encodeFrame options). */
  send(opts) {
    this.sendRaw(encodeFrame(opts));
  }

  /** A text frame with a JSON object (or a string). */
  sendText(obj, opts = {}) {
    this.send({ opcode: OP.TEXT, payload: typeof obj === 'string' ? obj : JSON.stringify(obj), ...opts });
  }

  /** A close frame with code (and reason); no code at all when code is undefined. */
  sendClose(code, reason = '', opts = {}) {
    this.send({ opcode: OP.CLOSE, payload: code === undefined ? Buffer.alloc(0) : closePayload(code, reason), ...opts });
  }

  /** Write bytes a few at a time with a pause in between (resolves when done or ended). */
  async trickle(bytes, { chunk = 1, intervalMs = 10 } = {}) {
    for (let i = 0; i < bytes.length && !this.ended; i += chunk) {
      this.sendRaw(bytes.subarray(i, i + chunk));
      if (intervalMs)
        await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  /**
   * The next frame matching pred (default: any), consumed.  Rejects after
   * timeoutMs or when the connection ends first (err.ended).
   */
  nextFrame({ pred = () => true, timeoutMs = 5000, what = 'frame' } = {}) {
    return new Promise((resolve, reject) => {
      const w = { pred, resolve, reject, what };
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`no ${what} within ${timeoutMs} ms; pending ${this.frames.map((f) => f.opcode).join(',')}`));
      }, timeoutMs);
      this.waiters.push(w);
      this.poke();
    });
  }

  /** The next pong frame. */
  nextPong(opts = {}) {
    return this.nextFrame({ pred: (f) => f.opcode === OP.PONG, what: 'pong', ...opts });
  }

  /**
   * The next complete data message (fragments joined, control frames
   * skipped but kept): { opcode, payload, frames, text, json }.
   */
  async nextMessage({ timeoutMs = 5000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    const parts = [];
    let opcode = null;
    for (;;) {
      const f = await this.nextFrame({
        pred: (x) => x.opcode < 8, timeoutMs: Math.max(1, deadline - Date.now()), what: 'data frame',
      });
      if (opcode === null)
        opcode = f.opcode;
      parts.push(f);
      if (f.fin)
        break;
    }
    const payload = Buffer.concat(parts.map((f) => f.payload));
    const text = payload.toString('utf8');
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { opcode, payload, frames: parts, text, json };
  }

  /** The next JSON message matching pred (a type name or a function); others are skipped. */
  async nextJson(pred = () => true, { timeoutMs = 5000 } = {}) {
    const match = typeof pred === 'string' ? (m) => m && m.type === pred : pred;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.nextMessage({ timeoutMs: Math.max(1, deadline - Date.now()) });
      if (match(m.json))
        return m.json;
    }
  }

  /** Send a JSON command with a ref and wait for the reply with that ref. */
  async request(obj, opts) {
    const ref = obj.ref ?? crypto.randomBytes(6).toString('hex');
    this.sendText({ ...obj, ref });
    return this.nextJson((m) => m && m.ref === ref, opts);
  }

  /**
   * The close frame (other frames skipped): { code, reason,
   * reasonValidUtf8, length, frame }.  Rejects when the TCP connection ends
   * without one (err.ended) or after timeoutMs.
   */
  async readClose({ timeoutMs = 5000 } = {}) {
    const f = await this.nextFrame({ pred: (x) => x.opcode === OP.CLOSE, timeoutMs, what: 'close frame' });
    return { ...decodeClose(f.payload), frame: f };
  }

  /** Resolves (with the time it happened) once the peer ends the TCP connection. */
  waitEnd({ timeoutMs = 5000 } = {}) {
    if (this.ended)
      return Promise.resolve(this.endedAt);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`TCP connection still open after ${timeoutMs} ms`)), timeoutMs);
      this.endWaiters.push(() => {
        clearTimeout(t);
        resolve(this.endedAt);
      });
    });
  }

  /** Has nothing of `pred` arrived (and is the connection still open) after ms? */
  async quiet(ms = 300, pred = () => true) {
    await new Promise((r) => setTimeout(r, ms));
    return !this.frames.some(pred);
  }

  /** Server frames that break RFC 6455 §5.1/§5.2 rules for a server. */
  framingViolations() {
    const bad = [];
    for (const f of this.all) {
      if (f.masked)
        bad.push(`opcode ${f.opcode}: masked by the server`);
      if (f.rsv)
        bad.push(`opcode ${f.opcode}: RSV ${f.rsv}`);
      if ((f.opcode > 2 && f.opcode < 8) || f.opcode > 10)
        bad.push(`reserved opcode ${f.opcode}`);
      if (f.opcode >= 8 && (!f.fin || f.length > 125))
        bad.push(`bad control frame ${f.opcode} (fin ${f.fin}, ${f.length} bytes)`);
      if ((f.lenEncoding === 16 && f.length < 126) || (f.lenEncoding === 64 && f.length < 65536))
        bad.push(`opcode ${f.opcode}: length ${f.length} not in its minimal form`);
    }
    return bad;
  }

  destroy() {
    this.socket.destroy();
  }
}

/**
 * Send raw bytes as an HTTP request (e.g. a trickled handshake) and report
 * what happened: resolves to { status, head, bytes, endedAfterMs } when the
 * server closes or answers and closes.
 */
export function rawTcp(port, { host = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const t0 = Date.now();
    const chunks = [];
    const state = { socket, t0, ended: false, endedAt: 0, data: () => Buffer.concat(chunks) };
    socket.on('data', (d) => chunks.push(d));
    const done = () => {
      if (!state.ended) {
        state.ended = true;
        state.endedAt = Date.now();
      }
    };
    socket.on('end', done);
    socket.on('close', done);
    socket.on('error', done);
    socket.once('connect', () => resolve(state));
    socket.once('error', reject);
  });
}
