// tests/e2e/conformance.test.mjs: RFC 6455 conformance of parley-relay,
// case by case, in the categories Autobahn|Testsuite checks (it cannot be
// installed here): opening handshake, framing and lengths, ping/pong,
// reserved bits, opcodes, fragmentation, UTF-8 in text and close reasons,
// the close handshake and close codes, and limits.
//
// Every case runs on its own authenticated connection (token in the
// subprotocol, tests/lib/wsraw.mjs builds the frames by hand) and records
// what RFC 6455 expects and what the relay did.  The relay speaks JSON, not
// echo: where Autobahn expects an echoed message, a case sends a `ping`
// command (padded to the length under test) and expects the `pong` reply
// with its ref.  "Failing the connection" (RFC 6455 §7.1.7) is checked as: a
// close frame with the expected code, and the TCP connection closed by the
// relay once the client has answered it.
//
// Deviations that civetweb 1.15 forces on the relay are asserted as
// documented in parley-relay(8) and marked `deviation (civetweb)`; cases
// where Parley's own protocol decides (binary frames, non-JSON text) are
// marked `parley`.  The run writes tests/conformance-results.json and
// tests/conformance-table.md into the build tree; docs/conformance.md is
// made from a green run of it.

import { test, before, after } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import { topBuilddir } from '../lib/proc.mjs';
import { wsConnect, OP, encodeFrame, closePayload, rawTcp } from '../lib/wsraw.mjs';
import {
  assert, skipReason, setupDatabase, writeHmacKey, makeUser, mint, startRelay, tmpDir, waitFor,
} from './relay-helpers.mjs';

const skip = skipReason() || false;
const MAX_FRAME = 65536;
const CONN_TIMEOUT_S = 6;       // WS_CONNECTION_TIMEOUT of this relay (case 9.4)

let pg;
let key;
let relay;
let user;
const results = [];
const opened = [];

before(async () => {
  if (skip)
    return;
  pg = await setupDatabase('conformance-pg');
  key = writeHmacKey(tmpDir('conformance'));
  relay = await startRelay({
    pg, key, name: 'conformance',
    env: { WS_CONNECTION_TIMEOUT: `${CONN_TIMEOUT_S}s`, PARLEY_MAX_FRAME: '64k', PARLEY_MAX_CONN_PER_USER: '64' },
  });
  user = await makeUser(pg, 'conf');
});

after(async () => {
  for (const ws of opened)
    ws.destroy();
  if (results.length) {
    const dir = path.join(topBuilddir, 'tests');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'conformance-results.json'), JSON.stringify(results, null, 1) + '\n');
    fs.writeFileSync(path.join(dir, 'conformance-table.md'), table(results));
  }
  if (relay)
    await relay.stop();
  if (pg)
    await pg.stop();
});

/** The Markdown table of docs/conformance.md. */
function table(rows) {
  const esc = (s) => String(s).replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = ['| case | category | RFC 6455 | expected | Parley | verdict |', '|---|---|---|---|---|---|'];
  const key = (id) => id.split('.').map(Number);
  const byId = [...rows].sort((a, b) => {
    const x = key(a.id);
    const y = key(b.id);
    for (let i = 0; i < Math.max(x.length, y.length); i++)
      if ((x[i] ?? -1) !== (y[i] ?? -1))
        return (x[i] ?? -1) - (y[i] ?? -1);
    return 0;
  });
  for (const r of byId)
    lines.push(`| ${r.id} ${esc(r.title)} | ${r.category} | ${r.section} | ${esc(r.expected)} | ${esc(r.parley)} | ${r.verdict} |`);
  return lines.join('\n') + '\n';
}

/**
 * One case: `fn` returns a short description of what the relay did and
 * asserts it.  verdict: 'conforms' (default), 'deviation (civetweb)',
 * 'parley' (the protocol on top decides), 'informational'.
 */
function kase(id, category, section, title, expected, fn, { verdict = 'conforms', bug } = {}) {
  test(`${id} ${title}`, { skip, todo: bug ? `known relay bug: ${bug}` : undefined }, async () => {
    const rec = { id, category, section, title, expected, parley: '', verdict };
    results.push(rec);
    try {
      rec.parley = await fn(rec);
    } catch (e) {
      rec.parley = `${rec.parley ? rec.parley + '; ' : ''}${bug ? 'BUG' : 'FAILED'}: ${e.message.split('\n')[0].replace(/\s+$/, '')}`;
      rec.verdict = bug ? 'bug (reported)' : 'FAIL';
      throw e;
    }
  });
}

/** A raw connection authenticated in the handshake, its welcome read. */
async function open() {
  const ws = await wsConnect(relay.port, { protocols: ['parley.v1', `parley.token.${await mint(key, user)}`] });
  opened.push(ws);
  assert.equal(ws.protocol, 'parley.v1');
  const w = await ws.nextJson('welcome');
  assert.equal(w.user.id, user.id);
  return ws;
}

/** A `ping` command of exactly n bytes of JSON text. */
function pingText(n, ref) {
  const base = JSON.stringify({ type: 'ping', ref, pad: '' }).length;
  assert.ok(n >= base, `a ping command needs at least ${base} bytes`);
  const s = JSON.stringify({ type: 'ping', ref, pad: 'x'.repeat(n - base) });
  assert.equal(Buffer.byteLength(s), n);
  return s;
}

/** Wait for the reply with this ref; returns its description. */
async function replied(ws, ref, type = 'pong') {
  const m = await ws.nextJson((x) => x && x.ref === ref);
  assert.equal(m.type, type, JSON.stringify(m));
  return `reply \`${m.type}\``;
}

/**
 * The relay fails the connection with `code`: its close frame (reason
 * valid UTF-8, at most 123 bytes), our answer, then the relay closes TCP.
 */
async function failsWith(ws, code) {
  const c = await ws.readClose();
  assert.equal(c.code, code, `closed with ${c.code} ("${c.reason}"), expected ${code}`);
  assert.ok(c.reasonValidUtf8 && c.length <= 125, 'the close reason is valid UTF-8 and fits');
  ws.sendClose(c.code);
  await ws.waitEnd();
  return `close ${code}, TCP closed by the relay`;
}

/** No data or pong frame arrives within ms; the connection is still open. */
async function nothingMore(ws, ms = 300) {
  assert.ok(await ws.quiet(ms, (f) => f.opcode !== OP.PING), `unexpected frame: ${ws.frames.map((f) => f.opcode)}`);
}

/** Still open and answering: a ping command gets its pong. */
async function stillServing(ws) {
  const ref = `alive-${Math.random().toString(36).slice(2, 8)}`;
  ws.sendText({ type: 'ping', ref });
  await replied(ws, ref);
}

const FAIL = (code) => `fail the connection: close ${code}`;
const utf8 = (...bytes) => Buffer.from(bytes);

// ================================================================ 0 opening handshake

kase('0.1', 'handshake', '4.2.2', 'subprotocol selection', 'exactly one offered subprotocol echoed', async () => {
  const ws = await open();
  assert.equal(ws.protocol, 'parley.v1');
  assert.equal(ws.headers.upgrade.toLowerCase(), 'websocket');
  ws.destroy();
  return 'Sec-WebSocket-Protocol: parley.v1 (the token is never echoed)';
});

/** Send a handshake by hand; resolves to the raw answer (until the relay closes). */
async function rawAnswer(request) {
  const t = await rawTcp(relay.port);
  t.socket.write(request);
  const deadline = Date.now() + 5000;
  while (!t.ended && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  t.socket.destroy();
  return t.data().toString('latin1');
}

/** What a raw answer starts with, for the table. */
function firstLine(text) {
  const l = text.split(/\r?\n/)[0];
  return l ? `"${l}"` : 'nothing';
}

const upgradeHead = () => `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${relay.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`;

kase('0.5', 'handshake', '9.1', 'permessage-deflate offered', 'no extension the server does not use is accepted', async () => {
  const ws = await wsConnect(relay.port, {
    protocols: ['parley.v1', `parley.token.${await mint(key, user)}`],
    headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' },
  });
  opened.push(ws);
  assert.equal(ws.headers['sec-websocket-extensions'], undefined, 'an extension was accepted');
  await ws.nextJson('welcome');
  await stillServing(ws);
  ws.destroy();
  return 'no Sec-WebSocket-Extensions in the 101; frames stay uncompressed';
});

kase('0.2', 'handshake', '4.4', 'unsupported Sec-WebSocket-Version (8)', 'refuse: HTTP 426 with Sec-WebSocket-Version: 13', async () => {
  const a = await rawAnswer(`${upgradeHead()}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n`);
  assert.doesNotMatch(a, /^HTTP\/1\.1 101/, 'upgraded');
  assert.match(a, /426/, 'no 426 at all');
  return `refused, but the answer is ${firstLine(a)} with no status line or headers (civetweb's error reply on WebSocket requests)`;
}, { verdict: 'deviation (civetweb)' });

kase('0.3', 'handshake', '4.2.1', 'no Sec-WebSocket-Key', 'refuse: HTTP 400', async () => {
  const a = await rawAnswer(`${upgradeHead()}Sec-WebSocket-Version: 13\r\n\r\n`);
  assert.doesNotMatch(a, /^HTTP\/1\.1 101/, 'upgraded without a key');
  assert.match(a, /400/);
  return `refused, but the answer is ${firstLine(a)} with no status line or headers (civetweb)`;
}, { verdict: 'deviation (civetweb)' });

kase('0.4', 'handshake', '4.2.1', 'GET /ws without Upgrade', 'not a WebSocket handshake: an HTTP error', async () => {
  const a = await rawAnswer(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${relay.port}\r\n\r\n`);
  const st = /^HTTP\/1\.1 (\d{3})/.exec(a);
  assert.ok(st && Number(st[1]) >= 400, firstLine(a));
  return `HTTP ${st[1]} (${/content-type: ([^\r;]+)/i.exec(a)?.[1] || 'no type'})`;
}, { verdict: 'informational' });

// ================================================================ 1 framing and lengths

for (const [id, n, enc] of [['1.1', 125, '7-bit'], ['1.2', 126, '16-bit'], ['1.3', 127, '16-bit'],
  ['1.4', 65535, '16-bit'], ['1.5', 65536, '64-bit']]) {
  kase(id, 'framing', '5.2', `text message of ${n} bytes (${enc} length)`, 'message delivered', async () => {
    const ws = await open();
    ws.send({ opcode: OP.TEXT, payload: pingText(n, id) });
    const r = await replied(ws, id);
    ws.destroy();
    return r;
  });
}

kase('1.6', 'framing', '5.6', 'empty text message', 'message delivered (valid, empty)', async () => {
  const ws = await open();
  ws.send({ opcode: OP.TEXT, payload: '' });
  const m = await ws.nextJson('error');
  assert.equal(m.code, 'bad_request');
  await stillServing(ws);
  ws.destroy();
  return 'error `bad_request` (not a JSON object); connection stays open';
}, { verdict: 'parley' });

kase('1.7', 'framing', '5.2', '20-byte payload with a 16-bit length field', 'minimal encoding is a sender MUST; a receiver may accept', async () => {
  const ws = await open();
  ws.send({ opcode: OP.TEXT, payload: pingText(40, '1.7'), lenEncoding: 16 });
  const r = await replied(ws, '1.7');
  ws.destroy();
  return `${r} (accepted)`;
}, { verdict: 'informational' });

kase('1.8', 'framing', '5.2', '40-byte payload with a 64-bit length field', 'minimal encoding is a sender MUST; a receiver may accept', async () => {
  const ws = await open();
  ws.send({ opcode: OP.TEXT, payload: pingText(40, '1.8'), lenEncoding: 64 });
  const r = await replied(ws, '1.8');
  ws.destroy();
  return `${r} (accepted)`;
}, { verdict: 'informational' });

kase('1.9', 'framing', '5.2', '64-bit length with the most significant bit set', FAIL(1002), async () => {
  const ws = await open();
  ws.send({ opcode: OP.TEXT, payload: 'x', declaredLength: (1n << 63n) | 1n });
  const c = await ws.readClose({ timeoutMs: 3000 }).catch((e) => (e.ended ? null : Promise.reject(e)));
  await ws.waitEnd();
  assert.equal(c, null, 'civetweb drops such a frame without a close frame (parley-relay(8))');
  return 'TCP closed without a close frame (civetweb refuses lengths above 0x7FFF0000 before the relay sees the frame)';
}, { verdict: 'deviation (civetweb)' });

kase('1.10', 'framing', '5.2', 'a frame trickled one byte at a time', 'message delivered', async () => {
  const ws = await open();
  await ws.trickle(encodeFrame({ opcode: OP.TEXT, payload: pingText(130, '1.10') }), { chunk: 1, intervalMs: 2 });
  const r = await replied(ws, '1.10');
  ws.destroy();
  return r;
});

kase('1.11', 'framing', '5.2', 'several frames in one TCP segment', 'each message delivered, in order', async () => {
  const ws = await open();
  ws.sendRaw(Buffer.concat(['a', 'b', 'c'].map((r) => encodeFrame({ opcode: OP.TEXT, payload: JSON.stringify({ type: 'ping', ref: r }) }))));
  const got = [];
  for (let i = 0; i < 3; i++)
    got.push((await ws.nextJson('pong')).ref);
  assert.deepEqual(got, ['a', 'b', 'c']);
  ws.destroy();
  return 'three replies in order';
});

kase('1.12', 'framing', '5.1', 'unmasked client frame', FAIL(1002), async () => {
  const ws = await open();
  ws.send({ opcode: OP.TEXT, payload: JSON.stringify({ type: 'ping', ref: '1.12' }), mask: false });
  const r = await replied(ws, '1.12');
  ws.destroy();
  return `${r}: accepted (civetweb unmasks, or not, before the relay sees the frame; the mask bit never reaches its handler)`;
}, { verdict: 'deviation (civetweb)' });

kase('1.13', 'framing', '5.3', 'masking key of four zero bytes', 'message delivered', async () => {
  const ws = await open();
  ws.send({ opcode: OP.TEXT, payload: JSON.stringify({ type: 'ping', ref: '1.13' }), mask: Buffer.alloc(4) });
  const r = await replied(ws, '1.13');
  ws.destroy();
  return r;
});

kase('1.14', 'framing', '7.4.1', 'binary message', 'any data type the endpoint cannot accept: close 1003', async () => {
  const ws = await open();
  ws.send({ opcode: OP.BINARY, payload: Buffer.from(JSON.stringify({ type: 'ping' })) });
  return failsWith(ws, 1003);
}, { verdict: 'parley' });

// ================================================================ 2 ping and pong

kase('2.1', 'ping/pong', '5.5.2', 'ping without payload', 'pong without payload', async () => {
  const ws = await open();
  ws.send({ opcode: OP.PING });
  const p = await ws.nextPong();
  assert.equal(p.payload.length, 0);
  ws.destroy();
  return 'pong, empty';
});

kase('2.2', 'ping/pong', '5.5.3', 'ping with 125 bytes of text', 'pong with the same payload', async () => {
  const ws = await open();
  const payload = Buffer.from('*'.repeat(125));
  ws.send({ opcode: OP.PING, payload });
  const p = await ws.nextPong();
  assert.deepEqual(p.payload, payload);
  ws.destroy();
  return 'pong, same 125 bytes';
});

kase('2.3', 'ping/pong', '5.5.3', 'ping with 125 bytes of binary (every byte value)', 'pong with the same payload', async () => {
  const ws = await open();
  const payload = Buffer.from(Array.from({ length: 125 }, (_, i) => (i * 67 + 255) & 255));
  ws.send({ opcode: OP.PING, payload });
  const p = await ws.nextPong();
  assert.deepEqual(p.payload, payload);
  ws.destroy();
  return 'pong, same bytes';
});

kase('2.4', 'ping/pong', '5.5', 'ping with 126 bytes', FAIL(1002), async () => {
  const ws = await open();
  ws.send({ opcode: OP.PING, payload: Buffer.alloc(126, 0x2a) });
  const r = await failsWith(ws, 1002);
  assert.ok(!ws.all.some((f) => f.opcode === OP.PONG), 'no pong');
  return `${r}, no pong`;
});

kase('2.5', 'ping/pong', '5.5.3', 'unsolicited pong without payload', 'ignored', async () => {
  const ws = await open();
  ws.send({ opcode: OP.PONG });
  await nothingMore(ws);
  await stillServing(ws);
  ws.destroy();
  return 'ignored, connection open';
});

kase('2.6', 'ping/pong', '5.5.3', 'unsolicited pong with 125 bytes, then a ping', 'pong ignored, ping answered', async () => {
  const ws = await open();
  ws.send({ opcode: OP.PONG, payload: Buffer.alloc(125, 0x41) });
  ws.send({ opcode: OP.PING, payload: 'after-pong' });
  const p = await ws.nextPong();
  assert.equal(p.payload.toString(), 'after-pong');
  ws.destroy();
  return 'pong ignored; ping answered';
});

kase('2.7', 'ping/pong', '5.5.3', '10 pings back to back', 'a pong for at least the last ping', async () => {
  const ws = await open();
  ws.sendRaw(Buffer.concat(Array.from({ length: 10 }, (_, i) => encodeFrame({ opcode: OP.PING, payload: `p${i}` }))));
  const got = [];
  for (let i = 0; i < 10; i++)
    got.push((await ws.nextPong()).payload.toString());
  assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => `p${i}`));
  ws.destroy();
  return 'ten pongs, in order, each with its payload';
});

kase('2.8', 'ping/pong', '5.5.2', 'ping with 125 bytes sent one byte at a time', 'pong with the same payload', async () => {
  const ws = await open();
  const payload = Buffer.alloc(125, 0x7e);
  await ws.trickle(encodeFrame({ opcode: OP.PING, payload }), { chunk: 1, intervalMs: 1 });
  const p = await ws.nextPong();
  assert.deepEqual(p.payload, payload);
  ws.destroy();
  return 'pong, same payload';
});

kase('2.9', 'ping/pong', '5.5.1', 'ping, then close', 'pong, then the close answered', async () => {
  const ws = await open();
  ws.send({ opcode: OP.PING, payload: 'last' });
  ws.sendClose(1000);
  const p = await ws.nextPong();
  assert.equal(p.payload.toString(), 'last');
  const c = await ws.readClose();
  assert.equal(c.code, 1000);
  await ws.waitEnd();
  return 'pong, close 1000, TCP closed by the relay';
});

// ================================================================ 3 reserved bits

for (const [id, rsv, op, what] of [['3.1', 4, OP.TEXT, 'RSV1 on a text frame'], ['3.2', 2, OP.TEXT, 'RSV2 on a text frame'],
  ['3.3', 1, OP.TEXT, 'RSV3 on a text frame'], ['3.4', 7, OP.TEXT, 'all RSV bits on a text frame'],
  ['3.5', 2, OP.PING, 'RSV2 on a ping'], ['3.6', 1, OP.CLOSE, 'RSV3 on a close frame']]) {
  kase(id, 'reserved bits', '5.2', what, FAIL(1002), async () => {
    const ws = await open();
    ws.send({ rsv, opcode: op, payload: op === OP.CLOSE ? closePayload(1000) : JSON.stringify({ type: 'ping', ref: id }) });
    const r = await failsWith(ws, 1002);
    assert.ok(!ws.all.some((f) => f.opcode === OP.PONG || (f.opcode === OP.TEXT && f.payload.includes(`"${id}"`))), 'the frame was not acted upon');
    return r;
  });
}

kase('3.7', 'reserved bits', '5.2', 'RSV1 on a continuation frame', FAIL(1002), async () => {
  const ws = await open();
  ws.send({ fin: false, opcode: OP.TEXT, payload: '{"type":' });
  ws.send({ rsv: 4, opcode: OP.CONT, payload: '"ping"}' });
  return failsWith(ws, 1002);
});

kase('3.8', 'reserved bits', '5.2', 'valid message, RSV2 frame, then a ping', 'reply to the first, fail with 1002, no pong', async () => {
  const ws = await open();
  ws.sendRaw(Buffer.concat([
    encodeFrame({ opcode: OP.TEXT, payload: JSON.stringify({ type: 'ping', ref: '3.8' }) }),
    encodeFrame({ rsv: 2, opcode: OP.TEXT, payload: JSON.stringify({ type: 'ping', ref: 'bad' }) }),
    encodeFrame({ opcode: OP.PING, payload: 'after' }),
  ]));
  await replied(ws, '3.8');
  const r = await failsWith(ws, 1002);
  assert.ok(!ws.all.some((f) => f.opcode === OP.PONG), 'no pong after the failure');
  return `reply, then ${r}, no pong`;
});

// ================================================================ 4 opcodes

for (const op of [3, 4, 5, 6, 7]) {
  kase(`4.1.${op - 2}`, 'opcodes', '5.2', `reserved non-control opcode ${op}`, FAIL(1002), async () => {
    const ws = await open();
    ws.send({ opcode: op, payload: op % 2 ? JSON.stringify({ type: 'ping' }) : '' });
    return failsWith(ws, 1002);
  });
}
for (const op of [0xb, 0xc, 0xd, 0xe, 0xf]) {
  kase(`4.2.${op - 10}`, 'opcodes', '5.2', `reserved control opcode 0x${op.toString(16).toUpperCase()}`, FAIL(1002), async () => {
    const ws = await open();
    ws.send({ opcode: op, payload: op % 2 ? 'reserved' : '' });
    return failsWith(ws, 1002);
  });
}

kase('4.3', 'opcodes', '5.2', 'valid message, reserved opcode 5, then a ping', 'reply to the first, fail with 1002, no pong', async () => {
  const ws = await open();
  ws.sendRaw(Buffer.concat([
    encodeFrame({ opcode: OP.TEXT, payload: JSON.stringify({ type: 'ping', ref: '4.3' }) }),
    encodeFrame({ opcode: 5, payload: 'x' }),
    encodeFrame({ opcode: OP.PING, payload: 'after' }),
  ]));
  await replied(ws, '4.3');
  const r = await failsWith(ws, 1002);
  assert.ok(!ws.all.some((f) => f.opcode === OP.PONG));
  return `reply, then ${r}, no pong`;
});

// ================================================================ 5 fragmentation

kase('5.1', 'fragmentation', '5.5', 'ping in two fragments', FAIL(1002), async () => {
  const ws = await open();
  ws.send({ fin: false, opcode: OP.PING, payload: 'frag' });
  ws.send({ fin: true, opcode: OP.CONT, payload: 'ment' });
  const r = await failsWith(ws, 1002);
  assert.ok(!ws.all.some((f) => f.opcode === OP.PONG));
  return r;
});

kase('5.2', 'fragmentation', '5.5', 'pong in two fragments', FAIL(1002), async () => {
  const ws = await open();
  ws.send({ fin: false, opcode: OP.PONG, payload: 'frag' });
  ws.send({ fin: true, opcode: OP.CONT, payload: 'ment' });
  return failsWith(ws, 1002);
});

kase('5.3', 'fragmentation', '5.4', 'text message in two fragments', 'message delivered', async () => {
  const ws = await open();
  const s = JSON.stringify({ type: 'ping', ref: '5.3' });
  ws.send({ fin: false, opcode: OP.TEXT, payload: s.slice(0, 10) });
  ws.send({ fin: true, opcode: OP.CONT, payload: s.slice(10) });
  const r = await replied(ws, '5.3');
  ws.destroy();
  return r;
});

kase('5.4', 'fragmentation', '5.4', 'empty first, middle and last fragments', 'message delivered', async () => {
  const ws = await open();
  const s = JSON.stringify({ type: 'ping', ref: '5.4' });
  ws.send({ fin: false, opcode: OP.TEXT, payload: '' });
  ws.send({ fin: false, opcode: OP.CONT, payload: s.slice(0, 5) });
  ws.send({ fin: false, opcode: OP.CONT, payload: '' });
  ws.send({ fin: false, opcode: OP.CONT, payload: s.slice(5) });
  ws.send({ fin: true, opcode: OP.CONT, payload: '' });
  const r = await replied(ws, '5.4');
  ws.destroy();
  return r;
});

kase('5.5', 'fragmentation', '5.4', 'ping between two fragments (one TCP write)', 'pong, then the message', async () => {
  const ws = await open();
  const s = JSON.stringify({ type: 'ping', ref: '5.5' });
  ws.sendRaw(Buffer.concat([
    encodeFrame({ fin: false, opcode: OP.TEXT, payload: s.slice(0, 7) }),
    encodeFrame({ opcode: OP.PING, payload: 'between' }),
    encodeFrame({ fin: true, opcode: OP.CONT, payload: s.slice(7) }),
  ]));
  const p = await ws.nextPong();
  assert.equal(p.payload.toString(), 'between');
  const r = await replied(ws, '5.5');
  const order = ws.all.filter((f) => f.opcode === OP.PONG || f.opcode === OP.TEXT).slice(-2).map((f) => f.opcode);
  assert.deepEqual(order, [OP.PONG, OP.TEXT], 'the pong comes before the reply');
  ws.destroy();
  return `pong, then ${r}`;
});

kase('5.6', 'fragmentation', '5.4', 'five fragments, a ping after each, sent in separate writes', 'a pong for each ping, then the message', async () => {
  const ws = await open();
  const s = JSON.stringify({ type: 'ping', ref: '5.6', pad: 'abcdefghij' });
  const cut = [0, 6, 12, 18, 24, s.length];
  for (let i = 0; i < 5; i++) {
    ws.send({ fin: i === 4, opcode: i === 0 ? OP.TEXT : OP.CONT, payload: s.slice(cut[i], cut[i + 1]) });
    ws.send({ opcode: OP.PING, payload: `p${i}` });
    await new Promise((r) => setTimeout(r, 20));
  }
  const pongs = [];
  for (let i = 0; i < 5; i++)
    pongs.push((await ws.nextPong()).payload.toString());
  assert.deepEqual(pongs, ['p0', 'p1', 'p2', 'p3', 'p4']);
  const r = await replied(ws, '5.6');
  ws.destroy();
  return `five pongs in order, ${r}`;
});

kase('5.7', 'fragmentation', '5.4', 'continuation (FIN set) with no message started', FAIL(1002), async () => {
  const ws = await open();
  ws.send({ fin: true, opcode: OP.CONT, payload: JSON.stringify({ type: 'ping' }) });
  return failsWith(ws, 1002);
});

kase('5.8', 'fragmentation', '5.4', 'continuation (FIN clear) with no message started', FAIL(1002), async () => {
  const ws = await open();
  ws.send({ fin: false, opcode: OP.CONT, payload: '{"type":' });
  return failsWith(ws, 1002);
});

kase('5.9', 'fragmentation', '5.4', 'continuation after a complete fragmented message', 'reply to the message, fail with 1002', async () => {
  const ws = await open();
  const s = JSON.stringify({ type: 'ping', ref: '5.9' });
  ws.send({ fin: false, opcode: OP.TEXT, payload: s.slice(0, 4) });
  ws.send({ fin: true, opcode: OP.CONT, payload: s.slice(4) });
  ws.send({ fin: true, opcode: OP.CONT, payload: 'extra' });
  await replied(ws, '5.9');
  return `reply, then ${await failsWith(ws, 1002)}`;
});

kase('5.10', 'fragmentation', '5.4', 'new text frame inside a fragmented message', FAIL(1002), async () => {
  const ws = await open();
  ws.send({ fin: false, opcode: OP.TEXT, payload: '{"type":' });
  ws.send({ fin: true, opcode: OP.TEXT, payload: JSON.stringify({ type: 'ping', ref: '5.10' }) });
  return failsWith(ws, 1002);
});

kase('5.11', 'fragmentation', '5.4', 'binary frame inside a fragmented text message', FAIL(1002), async () => {
  const ws = await open();
  ws.send({ fin: false, opcode: OP.TEXT, payload: '{"type":' });
  ws.send({ fin: true, opcode: OP.BINARY, payload: 'x' });
  return failsWith(ws, 1002);
});

kase('5.12', 'fragmentation', '5.4', 'binary message in fragments', 'close 1003 (binary not accepted)', async () => {
  const ws = await open();
  ws.send({ fin: false, opcode: OP.BINARY, payload: 'ab' });
  ws.send({ fin: true, opcode: OP.CONT, payload: 'cd' });
  return failsWith(ws, 1003);
}, { verdict: 'parley' });

kase('5.13', 'fragmentation', '5.5.1', 'close frame in the middle of a fragmented message', 'close answered (control frames may be interleaved)', async () => {
  const ws = await open();
  ws.send({ fin: false, opcode: OP.TEXT, payload: '{"type":' });
  ws.sendClose(1000, 'mid-message');
  const c = await ws.readClose();
  assert.equal(c.code, 1000);
  await ws.waitEnd();
  return 'close 1000 echoed, TCP closed by the relay';
});

kase('5.14', 'fragmentation', '5.4', '200 fragments of one byte or so', 'message delivered', async () => {
  const ws = await open();
  const s = Buffer.from(JSON.stringify({ type: 'ping', ref: '5.14', pad: 'y'.repeat(160) }));
  const frames = [];
  for (let i = 0; i < s.length; i++)
    frames.push(encodeFrame({ fin: i === s.length - 1, opcode: i === 0 ? OP.TEXT : OP.CONT, payload: s.subarray(i, i + 1) }));
  ws.sendRaw(Buffer.concat(frames));
  const r = await replied(ws, '5.14');
  ws.destroy();
  return `${r} (${s.length} fragments)`;
});

// ================================================================ 6 UTF-8

kase('6.1', 'UTF-8', '5.6', 'valid 2-, 3- and 4-byte sequences', 'message delivered, text intact', async () => {
  const ws = await open();
  const ref = 'é€𝄞κόσμε';
  ws.sendText({ type: 'ping', ref });
  const m = await ws.nextJson((x) => x && x.type === 'pong');
  assert.equal(m.ref, ref);
  ws.destroy();
  return 'reply, ref returned byte for byte';
});

kase('6.2', 'UTF-8', '5.6', 'valid text split inside a 4-byte character, at every offset', 'messages delivered', async () => {
  const ws = await open();
  for (let cut = 1; cut <= 3; cut++) {
    const ref = `𝄞${cut}`;
    const b = Buffer.from(JSON.stringify({ type: 'ping', ref }));
    const at = b.indexOf(0xf0) + cut;
    ws.send({ fin: false, opcode: OP.TEXT, payload: b.subarray(0, at) });
    ws.send({ fin: true, opcode: OP.CONT, payload: b.subarray(at) });
    const m = await ws.nextJson((x) => x && x.type === 'pong');
    assert.equal(m.ref, ref);
  }
  ws.destroy();
  return 'three replies, refs intact';
});

kase('6.3', 'UTF-8', '5.6', 'a 3-byte character over three fragments', 'message delivered', async () => {
  const ws = await open();
  const b = Buffer.from(JSON.stringify({ type: 'ping', ref: '€' }));
  const at = b.indexOf(0xe2);
  ws.send({ fin: false, opcode: OP.TEXT, payload: b.subarray(0, at + 1) });
  ws.send({ fin: false, opcode: OP.CONT, payload: b.subarray(at + 1, at + 2) });
  ws.send({ fin: true, opcode: OP.CONT, payload: b.subarray(at + 2) });
  const m = await ws.nextJson((x) => x && x.type === 'pong');
  assert.equal(m.ref, '€');
  ws.destroy();
  return 'reply, ref intact';
});

kase('6.4', 'UTF-8', '5.6', 'noncharacters U+FFFE, U+FFFF, U+10FFFF and a BOM', 'valid UTF-8: message delivered', async () => {
  const ws = await open();
  const ref = '\ufffe\uffff\u{10ffff}\ufeff';
  ws.sendText({ type: 'ping', ref });
  const m = await ws.nextJson((x) => x && x.type === 'pong');
  assert.equal(m.ref, ref);
  ws.destroy();
  return 'reply, ref intact';
});

const invalid = [
  ['6.5', 'lone continuation byte 0x80', utf8(0x80)],
  ['6.6', 'byte 0xFF', utf8(0xff)],
  ['6.7', 'overlong 2-byte "/" (C0 AF)', utf8(0xc0, 0xaf)],
  ['6.8', 'overlong 3-byte "/" (E0 80 AF)', utf8(0xe0, 0x80, 0xaf)],
  ['6.9', 'UTF-16 surrogate U+D800 (ED A0 80)', utf8(0xed, 0xa0, 0x80)],
  ['6.10', 'code point above U+10FFFF (F4 90 80 80)', utf8(0xf4, 0x90, 0x80, 0x80)],
  ['6.11', '5-byte sequence (F8 88 80 80 80)', utf8(0xf8, 0x88, 0x80, 0x80, 0x80)],
  ['6.12', 'truncated 3-byte sequence at the end (E2 82)', utf8(0xe2, 0x82)],
];
for (const [id, what, bytes] of invalid) {
  kase(id, 'UTF-8', '8.1', `invalid text: ${what}`, FAIL(1007), async () => {
    const ws = await open();
    const last = id === '6.12';
    ws.send({ opcode: OP.TEXT, payload: Buffer.concat([Buffer.from('{"type":"ping","ref":"'), bytes, Buffer.from(last ? '' : '"}')]) });
    return failsWith(ws, 1007);
  });
}

kase('6.13', 'UTF-8', '8.1', 'invalid byte in the first fragment, the rest valid', FAIL(1007), async () => {
  const ws = await open();
  ws.send({ fin: false, opcode: OP.TEXT, payload: Buffer.concat([Buffer.from('{"type":"ping","ref":"'), utf8(0xff)]) });
  ws.send({ fin: true, opcode: OP.CONT, payload: '"}' });
  return `${await failsWith(ws, 1007)} (at the end of the message: no fail-fast, which §8.1 allows)`;
});

kase('6.14', 'UTF-8', '8.1', 'fragmented message ending inside a character', FAIL(1007), async () => {
  const ws = await open();
  ws.send({ fin: false, opcode: OP.TEXT, payload: '{"type":"ping","ref":"' });
  ws.send({ fin: true, opcode: OP.CONT, payload: utf8(0xf0, 0x9d, 0x84) });
  return failsWith(ws, 1007);
});

kase('6.15', 'UTF-8', '8.1', 'surrogate split over two fragments (ED | A0 80)', FAIL(1007), async () => {
  const ws = await open();
  ws.send({ fin: false, opcode: OP.TEXT, payload: Buffer.concat([Buffer.from('{"type":"ping","ref":"'), utf8(0xed)]) });
  ws.send({ fin: true, opcode: OP.CONT, payload: Buffer.concat([utf8(0xa0, 0x80), Buffer.from('"}')]) });
  return failsWith(ws, 1007);
});

kase('6.16', 'UTF-8', '5.6', 'valid UTF-8 that is not JSON', 'message delivered (the application decides)', async () => {
  const ws = await open();
  ws.send({ opcode: OP.TEXT, payload: 'κόσμε, not JSON' });
  const m = await ws.nextJson('error');
  assert.equal(m.code, 'bad_request');
  await stillServing(ws);
  ws.destroy();
  return 'error `bad_request`; connection stays open';
}, { verdict: 'parley' });

kase('6.17', 'UTF-8', '5.6', 'U+0000 as a raw byte in text', 'valid UTF-8: message delivered', async () => {
  const ws = await open();
  ws.send({ opcode: OP.TEXT, payload: Buffer.from('{"type":"ping","ref":"a\u0000b"}') });
  const m = await ws.nextJson('error');
  assert.equal(m.code, 'bad_request');
  await stillServing(ws);
  ws.destroy();
  return 'error `bad_request` (JSON forbids raw control characters); connection stays open';
}, { verdict: 'parley' });

// ================================================================ 7 close handshake and codes

kase('7.1', 'close', '5.5.1', 'close 1000', 'close echoed; the server closes TCP first', async () => {
  const ws = await open();
  ws.sendClose(1000, 'bye');
  const c = await ws.readClose();
  assert.equal(c.code, 1000);
  await ws.waitEnd();
  return 'close 1000, TCP closed by the relay';
});

kase('7.2', 'close', '7.4.1', 'close without payload', 'close without payload or with 1000 (never 1005)', async () => {
  const ws = await open();
  ws.sendClose();
  const c = await ws.readClose();
  assert.ok(c.length === 0 || c.code === 1000, `answered ${c.code}`);
  await ws.waitEnd();
  return c.length === 0 ? 'empty close, TCP closed' : 'close 1000, TCP closed by the relay';
});

kase('7.3', 'close', '5.5.1', 'close payload of one byte', FAIL(1002), async () => {
  const ws = await open();
  ws.send({ opcode: OP.CLOSE, payload: Buffer.from([0x03]) });
  return failsWith(ws, 1002);
});

kase('7.4', 'close', '5.5', 'close 1000 with a 123-byte reason', 'close echoed', async () => {
  const ws = await open();
  ws.sendClose(1000, 'r'.repeat(123));
  const c = await ws.readClose();
  assert.equal(c.code, 1000);
  await ws.waitEnd();
  return 'close 1000, TCP closed by the relay';
});

kase('7.5', 'close', '5.5', 'close with a 124-byte reason (payload 126)', FAIL(1002), async () => {
  const ws = await open();
  ws.sendClose(1000, 'r'.repeat(124));
  return failsWith(ws, 1002);
});

kase('7.6', 'close', '8.1', 'close reason not UTF-8', FAIL(1007), async () => {
  const ws = await open();
  ws.send({ opcode: OP.CLOSE, payload: Buffer.concat([closePayload(1000), utf8(0xce, 0xba, 0xed, 0xa0, 0x80)]) });
  return failsWith(ws, 1007);
});

kase('7.7', 'close', '5.5.1', 'close reason with multi-byte UTF-8', 'close echoed', async () => {
  const ws = await open();
  ws.sendClose(1000, 'κόσμε 𝄞');
  const c = await ws.readClose();
  assert.equal(c.code, 1000);
  await ws.waitEnd();
  return 'close 1000, TCP closed by the relay';
});

kase('7.8', 'close', '5.5.1', 'text and ping after our close', 'ignored: nothing but the close answer', async () => {
  const ws = await open();
  // One write: frames the relay has not read when it closes would make the
  // kernel answer with a reset, which can destroy its close frame in flight.
  ws.sendRaw(Buffer.concat([
    encodeFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }),
    encodeFrame({ opcode: OP.TEXT, payload: JSON.stringify({ type: 'ping', ref: '7.8' }) }),
    encodeFrame({ opcode: OP.PING, payload: 'late' }),
  ]));
  const c = await ws.readClose();
  assert.equal(c.code, 1000);
  await ws.waitEnd();
  assert.ok(!ws.all.some((f) => f.opcode === OP.PONG || (f.opcode === OP.TEXT && f.payload.includes('7.8'))), 'acted after the close');
  return 'close 1000 only; the text and ping ignored';
});

kase('7.9', 'close', '5.5.1', 'two close frames', 'one close answered', async () => {
  const ws = await open();
  ws.sendRaw(Buffer.concat([encodeFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }),
    encodeFrame({ opcode: OP.CLOSE, payload: closePayload(1001) })]));
  const c = await ws.readClose();
  assert.equal(c.code, 1000);
  await ws.waitEnd();
  assert.equal(ws.all.filter((f) => f.opcode === OP.CLOSE).length, 1);
  return 'one close (1000), TCP closed';
});

kase('7.10', 'close', '7.1.1', 'relay-initiated close (after 1003): it waits for our close, then closes TCP', 'close sent, TCP closed by the server after the answer', async () => {
  const ws = await open();
  ws.send({ opcode: OP.BINARY, payload: 'x' });
  const c = await ws.readClose();
  assert.equal(c.code, 1003);
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(!ws.ended, 'TCP closed before our close answer');
  ws.sendClose(1003);
  await ws.waitEnd();
  return 'close 1003; TCP open until we answered, then closed by the relay';
});

for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]) {
  kase(`7.11.${code}`, 'close codes', '7.4.1', `valid close code ${code}`, 'close 1000 or the code echoed', async () => {
    const ws = await open();
    ws.sendClose(code);
    const c = await ws.readClose();
    assert.ok(c.code === code || c.code === 1000, `answered ${c.code}`);
    await ws.waitEnd();
    return `close ${c.code}${c.code === code ? ' (echoed)' : ''}`;
  });
}

for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
  const why = { 1004: 'reserved', 1005: 'MUST NOT be sent', 1006: 'MUST NOT be sent', 1015: 'MUST NOT be sent' }[code]
    || (code < 1000 ? 'unused range' : code >= 5000 ? 'outside 1000-4999' : 'unassigned');
  kase(`7.12.${code}`, 'close codes', code >= 5000 ? '7.4.2' : '7.4.1', `invalid close code ${code} (${why})`, FAIL(1002), async () => {
    const ws = await open();
    ws.sendClose(code);
    return failsWith(ws, 1002);
  }, { verdict: code >= 5000 ? 'informational' : 'conforms' });
}

for (const code of [1012, 1013, 1014]) {
  kase(`7.13.${code}`, 'close codes', '7.4.2', `close code ${code} (IANA-registered after RFC 6455)`,
    'echo (IANA registry) or 1002 (RFC 6455 text); Autobahn tests neither', async () => {
      const ws = await open();
      ws.sendClose(code);
      const c = await ws.readClose();
      assert.equal(c.code, 1002, 'parley-relay accepts only the codes RFC 6455 defines');
      ws.sendClose(1002);
      await ws.waitEnd();
      return 'close 1002 (only RFC 6455 codes accepted from peers)';
    }, { verdict: 'informational' });
}

// ================================================================ 9 limits

kase('9.1', 'limits', '10.4', `message of exactly PARLEY_MAX_FRAME (${MAX_FRAME} bytes)`, 'message delivered', async () => {
  const ws = await open();
  ws.send({ opcode: OP.TEXT, payload: pingText(MAX_FRAME, '9.1') });
  const r = await replied(ws, '9.1');
  ws.destroy();
  return r;
}, { verdict: 'parley' });

kase('9.2', 'limits', '10.4', `one frame of PARLEY_MAX_FRAME + 1 bytes`, 'close 1009', async () => {
  const ws = await open();
  ws.send({ opcode: OP.TEXT, payload: pingText(MAX_FRAME + 1, '9.2') });
  const r = await failsWith(ws, 1009);
  assert.ok(!ws.all.some((f) => f.opcode === OP.TEXT && f.payload.includes('"9.2"')), 'the message was processed');
  return r;
}, { verdict: 'parley' });

kase('9.3', 'limits', '10.4', 'fragments adding up to PARLEY_MAX_FRAME + 1', 'close 1009 when the sum passes the limit', async () => {
  const ws = await open();
  const s = Buffer.from(pingText(MAX_FRAME + 1, '9.3'));
  ws.send({ fin: false, opcode: OP.TEXT, payload: s.subarray(0, 40000) });
  ws.send({ fin: true, opcode: OP.CONT, payload: s.subarray(40000) });
  return failsWith(ws, 1009);
}, { verdict: 'parley' });

kase('9.6', 'limits', '10.4', 'a fragmented message with 16 empty fragments, then one with 17', 'a limit on the message counted in frames: 16 empty fragments delivered, the 17th closes with 1009', async () => {
  const ws = await open();
  const s = JSON.stringify({ type: 'ping', ref: '9.6' });
  const empties = (n) => Array.from({ length: n }, () => encodeFrame({ fin: false, opcode: OP.CONT, payload: '' }));
  ws.sendRaw(Buffer.concat([encodeFrame({ fin: false, opcode: OP.TEXT, payload: s.slice(0, 5) }), ...empties(16),
    encodeFrame({ fin: true, opcode: OP.CONT, payload: s.slice(5) })]));
  const r = await replied(ws, '9.6');
  ws.sendRaw(Buffer.concat([encodeFrame({ fin: false, opcode: OP.TEXT, payload: s.slice(0, 5) }), ...empties(17)]));
  return `16: ${r}; 17: ${await failsWith(ws, 1009)}`;
}, { verdict: 'parley' });

function memOf(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s) || [])[1] || 0);
  return { rss: kb('VmRSS') / 1024, size: kb('VmSize') / 1024 };
}

kase('9.4', 'limits', '10.4', 'header declaring 2 GiB - 64 KiB, then 1 KiB and silence', 'refuse the frame (1009) before buffering it',
  async (rec) => {
    const ws = await open();
    const m0 = memOf(relay.pid);
    const t0 = Date.now();
    ws.send({ opcode: OP.TEXT, payload: Buffer.alloc(1024, 0x20), declaredLength: 0x7fff0000 });
    await waitFor(() => memOf(relay.pid).size - m0.size > 1500, { timeoutMs: 5000, what: 'the allocation' }).catch(() => {});
    const m1 = memOf(relay.pid);
    rec.parley = `civetweb allocated the declared size first (VmSize +${Math.round(m1.size - m0.size)} MiB, VmRSS +${Math.round(m1.rss - m0.rss)} MiB)`;
    assert.ok(m1.size - m0.size > 1500, `no allocation seen: VmSize +${m1.size - m0.size} MiB`);
    assert.ok(m1.rss - m0.rss < 64, `RSS grew by ${m1.rss - m0.rss} MiB`);
    const c = await ws.readClose({ timeoutMs: (CONN_TIMEOUT_S + 6) * 1000 });
    const closedAfter = (Date.now() - t0) / 1000;
    assert.equal(c.code, 4000, 'closed by the heartbeat timeout');
    await ws.waitEnd({ timeoutMs: 5000 });
    // civetweb frees the buffer when its read fails, a moment after the shutdown.
    const released = await waitFor(() => memOf(relay.pid).size - m0.size < 512, { timeoutMs: 5000, what: 'the allocation to be released' }).catch(() => false);
    assert.ok(released, `the allocation was not released: VmSize +${(memOf(relay.pid).size - m0.size).toFixed(0)} MiB`);
    return `${rec.parley}; the relay never saw the frame: close 4000 (WS_CONNECTION_TIMEOUT ${CONN_TIMEOUT_S} s) ${closedAfter.toFixed(1)} s after the header, TCP shut, memory released`;
  }, { verdict: 'deviation (civetweb)' });

kase('9.5', 'limits', '10.4', 'header declaring 4 GiB', 'refuse the frame (1009)', async () => {
  const ws = await open();
  ws.send({ opcode: OP.TEXT, payload: 'x', declaredLength: 1n << 32n });
  const c = await ws.readClose({ timeoutMs: 3000 }).catch((e) => (e.ended ? null : Promise.reject(e)));
  await ws.waitEnd();
  assert.equal(c, null);
  return 'TCP closed without a close frame (civetweb: above 0x7FFF0000)';
}, { verdict: 'deviation (civetweb)' });

// ================================================================ the relay's own frames

kase('1.15', 'framing', '5.1', "every frame the relay sent during this run", 'unmasked, RSV 0, known opcodes, short unfragmented control frames, minimal lengths, valid UTF-8 text', async () => {
  let n = 0;
  const bad = [];
  const dec = new TextDecoder('utf-8', { fatal: true });
  for (const ws of opened) {
    bad.push(...ws.framingViolations());
    for (const f of ws.all) {
      n++;
      if (f.opcode === OP.TEXT) {
        assert.ok(f.fin, 'the relay does not fragment its messages');
        try { dec.decode(f.payload); } catch { bad.push('text frame not UTF-8'); }
      }
    }
  }
  assert.deepEqual(bad, []);
  assert.ok(n > 100, `only ${n} frames seen`);
  return `${n} frames on ${opened.length} connections, none at fault`;
});
