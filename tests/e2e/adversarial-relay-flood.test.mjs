// tests/e2e/adversarial-relay-flood.test.mjs: floods, bombs and hostile
// payloads against parley-relay, with its memory measured around each.
//
// Slowloris on the upgrade (civetweb's request_timeout_ms, 10 s, ends it);
// connection floods from one address (PARLEY_CONN_RATE: 429, also through
// nginx with forged X-Forwarded-For); ping floods from a peer that reads and
// from one that never does (PARLEY_SEND_QUEUE: 4030); a command flood
// (rate_limited, then 4029); fragmentation bombs (65536 one-byte fragments,
// 100000 empty ones: 1009 past 16, a message never finished); JSON nested 16, 17, 1000
// and 100000 deep; sender spoofing (`from`, `sender_id`, `user` in a
// command are ignored); SQL, script, NUL, astral and bidi payloads stored
// and relayed byte for byte.  Each case states its documented answer
// (PROTOCOL.md §2, parley-relay(8)); RSS before and after every flood must
// stay within a stated tolerance (larger under AddressSanitizer, whose
// quarantine keeps freed memory).

import { before, after } from 'node:test';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { wsConnect, OP, encodeFrame, rawTcp } from '../lib/wsraw.mjs';
import { startNginx, haveNginx } from '../lib/web.mjs';
import {
  assert, skipReason, setupDatabase, writeHmacKey, makeUser, mint, startRelay, relayBinary,
  Client, tmpDir, waitFor,
} from './relay-helpers.mjs';
import { caseSuite, memMiB, cpuSeconds, sleep } from './adversarial-helpers.mjs';

const skip = skipReason() || false;
const suite = caseSuite('relay-flood');
const asan = !skip && fs.readFileSync(relayBinary).includes('__asan_init');
// RSS growth allowed per flood, and over the whole file (MiB).
const PER_FLOOD = asan ? 320 : 24;
const TOTAL = asan ? 640 : 64;

let pg;
let key;
let main;         // defaults (64k frames, 2 min connection timeout)
let short;        // WS_CONNECTION_TIMEOUT 3s, PARLEY_MAX_FRAME 1m
let flood;        // PARLEY_CONN_RATE 5/s
let nginx;        // in front of `flood`
let alice;
let bob;
let rss0;

before(async () => {
  if (skip)
    return;
  const dir = tmpDir('adv-relay-flood');
  pg = await setupDatabase('adv-relay-flood-pg');
  key = writeHmacKey(dir);
  main = await startRelay({ pg, key, name: 'adv-flood-main' });
  short = await startRelay({
    pg, key, name: 'adv-flood-short',
    env: { WS_CONNECTION_TIMEOUT: '3s', PARLEY_MAX_FRAME: '1m' },
  });
  flood = await startRelay({ pg, key, name: 'adv-flood-rate', env: { PARLEY_CONN_RATE: '5/s', PARLEY_MAX_CONN_PER_USER: '64' } });
  if (haveNginx)
    nginx = await startNginx({ name: 'adv-flood-nginx', sock: `${dir}/no-token.sock`, relay: `127.0.0.1:${flood.port}` });
  alice = await makeUser(pg, 'alice');
  bob = await makeUser(pg, 'bob');
  rss0 = memMiB(main.pid).rss;
});

after(async () => {
  if (nginx)
    await nginx.stop();
  for (const r of [main, short, flood])
    if (r)
      await r.stop();
  if (pg)
    await pg.stop();
});

/** A raw connection of `user` on `relay`, welcome read. */
async function open(relay, user = alice, opts = {}) {
  const ws = await wsConnect(relay.port, { protocols: ['parley.v1', `parley.token.${await mint(key, user)}`], ...opts });
  await ws.nextJson('welcome');
  return ws;
}

/** Run fn and check the relay's RSS afterwards; returns fn's text with the numbers. */
async function bounded(relay, fn) {
  const m0 = memMiB(relay.pid);
  const text = await fn();
  await sleep(300);
  const m1 = memMiB(relay.pid);
  const grew = m1.rss - m0.rss;
  assert.ok(grew < PER_FLOOD, `RSS grew by ${grew.toFixed(1)} MiB (tolerance ${PER_FLOOD})`);
  assert.ok(relay.running(), 'the relay is still running');
  return `${text}; RSS ${m0.rss.toFixed(1)} -> ${m1.rss.toFixed(1)} MiB (tolerance +${PER_FLOOD})`;
}

/** Close frame (or TCP end) after a failure, answered. */
async function closeCode(ws, timeoutMs = 5000) {
  const c = await ws.readClose({ timeoutMs }).catch((e) => (e.ended ? { code: 'none (TCP closed)' } : Promise.reject(e)));
  if (typeof c.code === 'number')
    ws.sendClose(c.code);
  return c.code;
}

// ================================================================ slowloris and connection floods

suite.case('F1', 'relay', 'slowloris: upgrade headers trickled one byte per 300 ms, 30 such sockets at once', 'each cut off by civetweb request_timeout_ms (10 s); a normal client still connects meanwhile', async (rec) => {
  const head = Buffer.from(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${main.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Slow: ${'s'.repeat(200)}`);
  const socks = [];
  for (let i = 0; i < 30; i++)
    socks.push(await rawTcp(main.port));
  let stop = false;
  const drip = (async () => {
    for (let i = 0; !stop && i < head.length; i++) {
      for (const s of socks)
        if (!s.ended)
          s.socket.write(head.subarray(i, i + 1));
      await sleep(300);
    }
  })();
  await sleep(1000);
  const t = Date.now();
  const c = await Client.connect(main.url, await mint(key, alice));
  const connectMs = Date.now() - t;
  c.close();
  await waitFor(() => socks.every((s) => s.ended), { timeoutMs: 20000, intervalMs: 100, what: 'every slow socket to be closed' });
  stop = true;
  await drip;
  const lives = socks.map((s) => (s.endedAt - s.t0) / 1000);
  const worst = Math.max(...lives);
  const answered = socks.filter((s) => s.data().length > 0).length;
  const first = (socks.find((s) => s.data().length > 0)?.data().toString('latin1') || '').split(/\r?\n/)[0];
  socks.forEach((s) => s.socket.destroy());
  rec.numbers = { connectMs, worstSeconds: worst, answered };
  assert.ok(worst <= 15, `a slow socket lived ${worst} s`);
  assert.ok(connectMs < 3000, `a normal client needed ${connectMs} ms`);
  return `all 30 closed by the relay after ${Math.min(...lives).toFixed(1)}-${worst.toFixed(1)} s (${answered} answered "${first}"); a normal client connected in ${connectMs} ms meanwhile`;
}, { skip, timeout: 30000 });

/**
 * n handshakes at once; { accepted, limited, most } where `most` is what
 * PARLEY_CONN_RATE=5/s lets through in the time the burst took (burst 10
 * plus the refill, plus one for rounding).
 */
async function handshakeBurst(port, n, headersOf = () => ({})) {
  const token = await mint(key, alice);
  const t0 = Date.now();
  const tries = await Promise.all(Array.from({ length: n }, (_, i) => wsConnect(port, {
    protocols: ['parley.v1', `parley.token.${token}`], headers: headersOf(i),
  }).then((ws) => { ws.destroy(); return { ok: true }; }, (e) => ({ ok: false, e }))));
  const most = 10 + Math.ceil(5 * (Date.now() - t0) / 1000) + 1;
  const limited = tries.filter((x) => !x.ok && x.e.status === 429);
  const other = tries.filter((x) => !x.ok && x.e.status !== 429);
  assert.deepEqual(other.map((x) => `${x.e.status} ${x.e.message}`), [], 'refusals other than 429');
  for (const x of limited) {
    assert.equal(x.e.json && x.e.json.error, 'rate_limited');
    assert.match(x.e.headers['retry-after'] || '', /^\d+$/);
  }
  return { accepted: tries.filter((x) => x.ok).length, limited: limited.length, most };
}

suite.case('F2', 'relay', 'connection flood: 40 handshakes at once from one address (PARLEY_CONN_RATE=5/s)', 'at most the burst (10) plus refill pass; the rest 429 rate_limited with Retry-After; later ones pass again', async () => bounded(flood, async () => {
  await sleep(2100);          // a full bucket
  const r = await handshakeBurst(flood.port, 40);
  assert.ok(r.limited >= 1 && r.accepted <= r.most, JSON.stringify(r));
  await sleep(1200);
  const later = await handshakeBurst(flood.port, 1);
  assert.equal(later.accepted, 1, 'a connection after the refill');
  return `${r.accepted} accepted, ${r.limited} x 429 rate_limited (Retry-After); 1.2 s later accepted again`;
}), { skip });

suite.case('F3', 'relay', 'connection flood through nginx, each request with a forged X-Forwarded-For', 'still limited: nginx appends the real address and the relay takes the last one', async () => bounded(flood, async () => {
  await sleep(2100);
  const r = await handshakeBurst(nginx.port, 40, (i) => ({ 'X-Forwarded-For': `203.0.113.${i + 1}` }));
  assert.ok(r.limited >= 1 && r.accepted <= r.most, JSON.stringify(r));
  return `${r.accepted} accepted, ${r.limited} x 429`;
}), { skip: skip || (!haveNginx && 'nginx not installed') });

suite.case('F4', 'relay', 'forged X-Forwarded-For sent straight to the relay from a trusted proxy address (127.0.0.1)', 'believed, as documented for PARLEY_TRUSTED_PROXIES: the relay must be reachable by the proxy only', async () => {
  await sleep(2100);
  const r = await handshakeBurst(flood.port, 30, (i) => ({ 'X-Forwarded-For': `198.51.100.${i + 1}` }));
  assert.equal(r.limited, 0, JSON.stringify(r));
  return `${r.accepted} of 30 accepted: each forged address has its own bucket`;
}, { skip });

// ================================================================ ping and command floods

suite.case('F5', 'relay', 'ping flood: 20000 pings of 125 bytes from a peer that reads (1000 in flight)', 'every ping answered with its payload, in order; memory bounded; control frames are not rate-limited', async () => bounded(main, async () => {
  const ws = await open(main);
  const pongs = () => ws.all.filter((f) => f.opcode === OP.PONG).length;
  const t0 = Date.now();
  for (let s = 0; s < 20000; s += 1000) {
    ws.sendRaw(Buffer.concat(Array.from({ length: 1000 }, (_, i) =>
      encodeFrame({ opcode: OP.PING, payload: `${String(s + i).padStart(6, '0')}${'*'.repeat(119)}` }))));
    await waitFor(() => pongs() >= s || ws.ended, { timeoutMs: 20000, intervalMs: 5, what: `pongs for ${s}` });
  }
  await waitFor(() => pongs() >= 20000 || ws.ended, { timeoutMs: 20000, intervalMs: 20, what: '20000 pongs' });
  const all = ws.all.filter((f) => f.opcode === OP.PONG);
  assert.equal(all.length, 20000, `closed: ${ws.all.filter((f) => f.opcode === OP.CLOSE).map((f) => f.payload.readUInt16BE(0))}`);
  assert.ok(all.every((p, i) => p.payload.length === 125 && p.payload.toString().startsWith(String(i).padStart(6, '0'))), 'pongs in order with their payloads');
  await ws.request({ type: 'ping' });
  ws.destroy();
  return `20000 pongs in order in ${Date.now() - t0} ms, connection still usable`;
}), { skip, timeout: 60000 });

suite.case('F6', 'relay', 'ping flood from a peer that never reads: 60000 pings (7.6 MiB) in one write', 'the pongs fill PARLEY_SEND_QUEUE (1 MiB): closed with 4030 (slow consumer), not buffered without bound', async () => bounded(main, async () => {
  const ws = await open(main);
  ws.socket.pause();
  const frames = [];
  for (let i = 0; i < 60000; i++)
    frames.push(encodeFrame({ opcode: OP.PING, payload: '*'.repeat(125) }));
  const big = Buffer.concat(frames);
  const from = main.logSize();
  const t0 = Date.now();
  await new Promise((r) => ws.socket.write(big, r));
  const sent = Date.now() - t0;
  // The relay decides while we are still not reading.
  await main.waitForLog(/closing: 4030/, { from, timeoutMs: 20000 });
  ws.socket.resume();
  await ws.waitEnd({ timeoutMs: 15000 });
  const pongs = ws.all.filter((f) => f.opcode === OP.PONG).length;
  const close = ws.all.find((f) => f.opcode === OP.CLOSE);
  const code = close ? close.payload.readUInt16BE(0) : null;
  assert.ok(pongs < 60000, 'every pong was kept for a peer that does not read');
  assert.ok(code === null || code === 4030, `close ${code}`);
  return `written in ${sent} ms; relay closed the connection after ${pongs} pongs (${(pongs * 127 / 1048576).toFixed(1)} MiB), ${code ? `close ${code}` : 'the close frame stuck behind the full socket, TCP shut after the grace period'}`;
}), { skip, timeout: 60000 });

suite.case('F7', 'relay', 'command flood: 2000 JSON ping commands in one write', 'burst (2 x PARLEY_RATE = 40) answered, then rate_limited errors, then close 4029 after 50 in a row', async () => bounded(main, async () => {
  const ws = await open(main);
  ws.sendRaw(Buffer.concat(Array.from({ length: 2000 }, (_, i) => encodeFrame({ opcode: OP.TEXT, payload: JSON.stringify({ type: 'ping', ref: `c${i}` }) }))));
  const code = await closeCode(ws);
  const msgs = ws.all.filter((f) => f.opcode === OP.TEXT).map((f) => JSON.parse(f.payload));
  const pongs = msgs.filter((m) => m.type === 'pong').length;
  const limited = msgs.filter((m) => m.type === 'error' && m.code === 'rate_limited').length;
  let run = 0;
  while (run < msgs.length && msgs[msgs.length - 1 - run].code === 'rate_limited')
    run++;
  assert.equal(code, 4029);
  assert.ok(pongs >= 40 && pongs < 2000 - 49, `${pongs} pongs`);
  assert.equal(run, 49, 'the 50th rate-limited command in a row closes instead of answering');
  ws.destroy();
  return `${pongs} pongs, ${limited} rate_limited (the last 49 in a row), then close 4029`;
}), { skip });

// ================================================================ fragmentation bombs

suite.case('F8', 'relay', 'fragmentation bomb: a 64 KiB command in 65536 one-byte fragments', 'joined and answered (the limit is on bytes, not fragments); one more byte is 1009', async () => bounded(main, async () => {
  const ws = await open(main);
  const base = JSON.stringify({ type: 'ping', ref: 'bomb', pad: '' }).length;
  const msg = Buffer.from(JSON.stringify({ type: 'ping', ref: 'bomb', pad: 'b'.repeat(65536 - base) }));
  assert.equal(msg.length, 65536);
  const frag = (m) => Buffer.concat(Array.from(m, (b, i) => encodeFrame({ fin: i === m.length - 1, opcode: i ? OP.CONT : OP.TEXT, payload: Buffer.from([b]) })));
  const bytes = frag(msg);
  const cpu0 = cpuSeconds(main.pid);
  const t0 = Date.now();
  ws.sendRaw(bytes);
  const reply = await ws.nextJson((m) => m && m.ref === 'bomb', { timeoutMs: 30000 });
  assert.equal(reply.type, 'pong');
  const ms = Date.now() - t0;
  const cpu = cpuSeconds(main.pid) - cpu0;
  const over = Buffer.from(JSON.stringify({ type: 'ping', ref: 'bomb2', pad: 'b'.repeat(65537 - base) }));
  ws.sendRaw(frag(over));
  const code = await closeCode(ws, 30000);
  assert.equal(code, 1009);
  ws.destroy();
  return `answered after ${ms} ms (relay CPU ${cpu.toFixed(2)} s); 65537 one-byte fragments: close 1009`;
}), { skip, timeout: 60000 });

const EMPTY_FRAGS_MAX = 16;     // WS_EMPTY_FRAGS_MAX in relay/ws.c

suite.case('F9', 'relay', 'fragmentation bomb: 100000 empty continuation frames inside one message', `the limit is ${EMPTY_FRAGS_MAX} empty fragments per message: a message with that many completes normally; one more closes with 1009 (RFC 6455 §10.4: a limit on the message, counted in frames); memory bounded`, async () => bounded(main, async () => {
  const s = JSON.stringify({ type: 'ping', ref: 'empty' });
  const empty = encodeFrame({ fin: false, opcode: OP.CONT, payload: '' });
  const message = (n, ref) => {
    const t = JSON.stringify({ type: 'ping', ref });
    return Buffer.concat([
      encodeFrame({ fin: false, opcode: OP.TEXT, payload: t.slice(0, 5) }),
      ...Array.from({ length: n }, () => empty),
      encodeFrame({ fin: true, opcode: OP.CONT, payload: t.slice(5) }),
    ]);
  };
  // At the limit, twice on one connection: the count is per message.
  const ok = await open(main);
  ok.sendRaw(Buffer.concat([message(EMPTY_FRAGS_MAX, 'at-limit-1'), message(EMPTY_FRAGS_MAX, 'at-limit-2')]));
  for (const ref of ['at-limit-1', 'at-limit-2'])
    assert.equal((await ok.nextJson((m) => m && m.ref === ref, { timeoutMs: 10000 })).type, 'pong', ref);
  // An empty first fragment counts too.
  ok.sendRaw(Buffer.concat([encodeFrame({ fin: false, opcode: OP.TEXT, payload: '' }),
    ...Array.from({ length: EMPTY_FRAGS_MAX - 1 }, () => empty),
    encodeFrame({ fin: true, opcode: OP.CONT, payload: s.replace('empty', 'first-empty') })]));
  assert.equal((await ok.nextJson((m) => m && m.ref === 'first-empty', { timeoutMs: 10000 })).type, 'pong');
  ok.destroy();
  // The bomb: 100000 empty fragments in one message.
  const ws = await open(main);
  const cpu0 = cpuSeconds(main.pid);
  ws.sendRaw(encodeFrame({ fin: false, opcode: OP.TEXT, payload: s.slice(0, 5) }));
  let sent = 0;
  for (let i = 0; i < 10 && !ws.ended; i++, sent += 10000)
    ws.sendRaw(Buffer.concat(Array.from({ length: 10000 }, () => empty)));
  const c = await ws.readClose({ timeoutMs: 10000 });
  assert.equal(c.code, 1009, `close ${c.code} ${c.reason}`);
  assert.match(c.reason, /empty fragments/);
  ws.sendClose(c.code);
  const cpu = cpuSeconds(main.pid) - cpu0;
  ws.destroy();
  // One over the limit, alone: the 17th empty fragment closes.
  const one = await open(main);
  one.sendRaw(Buffer.concat([encodeFrame({ fin: false, opcode: OP.TEXT, payload: s.slice(0, 5) }),
    ...Array.from({ length: EMPTY_FRAGS_MAX + 1 }, () => empty)]));
  assert.equal((await one.readClose({ timeoutMs: 10000 })).code, 1009, `${EMPTY_FRAGS_MAX + 1} empty fragments`);
  one.destroy();
  return `${EMPTY_FRAGS_MAX} empty fragments (twice, and with an empty first one): answered; ${EMPTY_FRAGS_MAX + 1}: close 1009; 100000: close 1009 "${c.reason}" (relay CPU ${cpu.toFixed(2)} s)`;
}), { skip, timeout: 60000 });

suite.case('F10', 'relay', 'continuation without end: a message started, then silence', 'closed with 4000 after WS_CONNECTION_TIMEOUT (3 s here); the partial message freed', async () => bounded(short, async () => {
  const ws = await open(short);
  ws.send({ fin: false, opcode: OP.TEXT, payload: Buffer.alloc(500000, 0x20) });
  const t0 = Date.now();
  const code = await closeCode(ws, 10000);
  assert.equal(code, 4000);
  await ws.waitEnd();
  return `close 4000 after ${((Date.now() - t0) / 1000).toFixed(1)} s`;
}), { skip });

// ================================================================ nested JSON

const nestedArr = (d) => `{"type":"ping","ref":"n${d}","x":${'['.repeat(d - 1)}${']'.repeat(d - 1)}}`;

suite.case('F11', 'relay', 'JSON nested 16 deep (the limit), then 17 and 1000 deep', '16: answered; 17 and 1000: error bad_request, connection open', async () => {
  const ws = await open(main);
  ws.sendText(nestedArr(16));
  assert.equal((await ws.nextJson((m) => m && (m.ref === 'n16' || m.type === 'error'))).type, 'pong');
  for (const d of [17, 1000]) {
    ws.sendText(nestedArr(d));
    const e = await ws.nextJson('error');
    assert.equal(e.code, 'bad_request', `depth ${d}`);
  }
  ws.sendText(`{"type":"ping",${'"a":{'.repeat(999)}"b":1${'}'.repeat(999)}}`);
  assert.equal((await ws.nextJson('error')).code, 'bad_request');
  await ws.request({ type: 'ping' });
  ws.destroy();
  return 'depth 16 pong; 17, 1000 (arrays) and 1000 (objects): bad_request; still serving';
}, { skip });

suite.case('F12', 'relay', 'JSON nested 100000 deep (200 KB)', 'default 64 KiB limit: close 1009 before parsing; with PARLEY_MAX_FRAME=1m: error bad_request; no crash', async () => {
  const a = await open(main);
  a.sendText(nestedArr(100000));
  assert.equal(await closeCode(a), 1009);
  a.destroy();
  const b = await open(short);
  b.sendText(nestedArr(100000));
  assert.equal((await b.nextJson('error')).code, 'bad_request');
  b.sendText(`{"type":"ping","x":${'{"a":'.repeat(100000)}1${'}'.repeat(100000)}}`);
  assert.equal((await b.nextJson('error')).code, 'bad_request');
  await b.request({ type: 'ping' });
  b.destroy();
  assert.ok(main.running() && short.running());
  return '64 KiB relay: 1009; 1 MiB relay: bad_request (arrays and objects), still serving';
}, { skip });

suite.case('F13', 'relay', 'unauthenticated first frame nested 30000 deep', 'close 1008 (only auth before authentication); no crash', async () => {
  const ws = await wsConnect(main.port, { protocols: ['parley.v1'] });
  ws.sendText(`{"type":"auth","token":${'['.repeat(30000)}${']'.repeat(30000)}}`);
  const code = await closeCode(ws);
  assert.ok(code === 1008 || code === 4001, `close ${code}`);
  ws.destroy();
  assert.ok(main.running());
  return `close ${code}`;
}, { skip });

// ================================================================ spoofing and payloads

suite.case('F14', 'relay', 'sender spoofing: from, sender_id, user, sub, name in private and group messages', 'ignored: the stored and delivered sender is the token\'s user', async () => {
  const gid = Number(await pg.psql(`SELECT parley.create_group('spoof${process.pid}', 'private')`));
  await pg.psql(`SELECT parley.add_member(${gid}, ${alice.id}); SELECT parley.add_member(${gid}, ${bob.id})`);
  const a = await Client.connect(main.url, await mint(key, alice));
  const b = await Client.connect(main.url, await mint(key, bob));
  const forged = { from: { id: bob.id, name: bob.name }, sender_id: bob.id, user: bob.id, sub: String(bob.id), name: bob.name, sender: bob.id };
  const pm = await a.request({ type: 'private_message', to: bob.id, body: 'spoof-pm', client_id: `sp-${Date.now()}`, ...forged });
  assert.equal(pm.type, 'ack', JSON.stringify(pm));
  const gm = await a.request({ type: 'group_message', group: gid, body: 'spoof-gm', client_id: `sg-${Date.now()}`, ...forged });
  assert.equal(gm.type, 'ack', JSON.stringify(gm));
  const ev1 = await b.next((m) => m.type === 'private_message' && m.body === 'spoof-pm');
  const ev2 = await b.next((m) => m.type === 'group_message' && m.body === 'spoof-gm');
  for (const ev of [ev1, ev2])
    assert.deepEqual(ev.from, { id: alice.id, name: alice.name });
  const rows = await pg.psql(`SELECT sender_id FROM parley.messages WHERE id IN (${pm.id}, ${gm.id})`);
  assert.deepEqual(rows.split('\n').map(Number), [alice.id, alice.id]);
  // A message "to" oneself from bob's point of view cannot be forged either.
  const self = await a.request({ type: 'private_message', to: alice.id, body: 'x', client_id: `ss-${Date.now()}`, from: bob.id });
  a.close();
  b.close();
  return `stored sender_id ${alice.id} (alice) twice; bob saw from.id ${alice.id}; message to oneself: ${self.type}${self.code ? ` ${self.code}` : ''}`;
}, { skip });

const payloads = {
  sql: "'); DROP TABLE parley.messages; --",
  sql2: "1' OR '1'='1'; DELETE FROM parley.sessions WHERE ''='",
  script: '<script>alert(document.cookie)</script><img src=x onerror=alert(1)>',
  astral: '😀🏳️‍🌈👩‍👩‍👧‍👦𝄞𐍈',
  rtl: 'abc\u202edcba\u202c \u2066x\u2069 \u200f',
  zwj: 'a\u200bb\u200cc\u200dd\ufeff',
  nulText: 'literal \\u0000 and %00 and \\x00',
  controls: 'tab\tnewline\ncr\rbell\u0007esc\u001b[31m',
  combining: 'Z\u0351\u0358\u0360a\u035b\u0303l\u0307g\u0308o',
  json: '{"type":"private_message","to":1,"body":"inner"}',
  big: '长'.repeat(20000),
};

suite.case('F15', 'relay', `SQL, script, astral, bidi, control and other payloads (${Object.keys(payloads).length})`, 'stored and relayed byte for byte; the schema intact', async () => {
  const a = await Client.connect(main.url, await mint(key, alice));
  const b = await Client.connect(main.url, await mint(key, bob));
  const ids = {};
  for (const [name, body] of Object.entries(payloads)) {
    const ack = await a.request({ type: 'private_message', to: bob.id, body, client_id: `pl-${name}-${Date.now()}` });
    assert.equal(ack.type, 'ack', `${name}: ${JSON.stringify(ack)}`);
    ids[name] = ack.id;
    const ev = await b.next((m) => m.type === 'private_message' && m.id === ack.id);
    assert.equal(ev.body, body, `${name}: relayed`);
    const hex = await pg.psql(`SELECT encode(convert_to(body, 'UTF8'), 'hex') FROM parley.messages WHERE id = ${ack.id}`);
    assert.equal(hex, Buffer.from(body).toString('hex'), `${name}: stored`);
  }
  const lo = Math.min(alice.id, bob.id);
  const hi = Math.max(alice.id, bob.id);
  const h = await a.request({ type: 'history', conversation: `dm:${lo}:${hi}`, limit: 100 });
  for (const [name, id] of Object.entries(ids))
    assert.equal(h.messages.find((m) => m.id === id).body, payloads[name], `${name}: history`);
  assert.equal(await pg.psql("SELECT to_regclass('parley.messages') IS NOT NULL AND to_regclass('parley.sessions') IS NOT NULL"), 't');
  a.close();
  b.close();
  return 'stored (hex compared), delivered and returned by history unchanged';
}, { skip });

suite.case('F16', 'relay', 'body with a NUL (\\u0000) or a lone surrogate escape (\\ud800)', 'error bad_request (without ref: the command is not JSON that can be read); nothing stored', async () => {
  const ws = await open(main);
  const before = await pg.psql('SELECT count(*) FROM parley.messages');
  for (const raw of ['a\\u0000b', '\\ud800', 'x\\udc00y']) {
    ws.sendText(`{"type":"private_message","to":${bob.id},"body":"${raw}","client_id":"nul-${Math.random()}","ref":"nul"}`);
    // Not JSON jansson accepts, so there is no ref to echo.
    const e = await ws.nextJson((m) => m && m.type === 'error');
    assert.deepEqual([e.type, e.code, e.ref], ['error', 'bad_request', undefined], raw);
  }
  assert.equal(await pg.psql('SELECT count(*) FROM parley.messages'), before);
  ws.destroy();
  return 'bad_request for each, no row';
}, { skip });

suite.case('F17', 'relay', "client_id and ref with SQL metacharacters", 'stored as given; the ack carries them back', async () => {
  const ws = await open(main);
  const cid = "x'); DROP TABLE parley.messages; --";
  const r = await ws.request({ type: 'private_message', to: bob.id, body: 'cid', client_id: cid, ref: "r'--" });
  assert.deepEqual([r.type, r.client_id, r.ref], ['ack', cid, "r'--"]);
  assert.equal(await pg.psql(`SELECT count(*) FROM parley.messages WHERE client_id = ${"'" + cid.replace(/'/g, "''") + "'"}`), '1');
  ws.destroy();
  return 'acked and stored verbatim';
}, { skip });

suite.case('F18', 'relay', 'memory over this whole file', `RSS of the main relay within +${TOTAL} MiB of its start`, async () => {
  const now = memMiB(main.pid);
  assert.ok(now.rss - rss0 < TOTAL, `${rss0.toFixed(1)} -> ${now.rss.toFixed(1)} MiB`);
  return `RSS ${rss0.toFixed(1)} -> ${now.rss.toFixed(1)} MiB, ${now.threads} threads${asan ? ' (AddressSanitizer build)' : ''}`;
}, { skip });
