// tests/e2e/relay-frames.test.mjs: RFC 6455 rules the relay enforces itself
// because civetweb does not (PROTOCOL.md §2 "Close codes"): binary 1003,
// invalid UTF-8 1007, RSV bits / reserved opcodes / bad control frames /
// continuation out of order 1002, messages over PARLEY_MAX_FRAME 1009 (also
// when fragmented), fragments joined with control frames in between, pings
// answered with the same payload, close frames answered, and a peer that
// never answers our close frame cut off after the grace period.

import { test, before, after } from 'node:test';
import {
  assert, skipReason, setupDatabase, writeHmacKey, makeUser, mint, startRelay,
  Client, rawConnect, tmpDir, waitFor,
} from './relay-helpers.mjs';

const skip = skipReason() || false;
let pg;
let key;
let relay;
let user;

before(async () => {
  if (skip)
    return;
  pg = await setupDatabase('relay-frames-pg');
  key = writeHmacKey(tmpDir('relay-frames'));
  relay = await startRelay({ pg, key, name: 'relay-frames' });
  user = await makeUser(pg, 'frames');
});

after(async () => {
  if (relay)
    await relay.stop();
  if (pg)
    await pg.stop();
});

/** A raw authenticated connection, its welcome already read. */
async function raw() {
  const r = await rawConnect(relay.port, { protocols: ['parley.v1', `parley.token.${await mint(key, user)}`] });
  const w = await r.nextFrame();
  assert.equal(w.opcode, 1);
  assert.equal(JSON.parse(w.payload.toString()).type, 'welcome');
  return r;
}

async function closesWith(send, code) {
  const r = await raw();
  send(r);
  assert.equal(await r.closeCode(), code);
  r.send({ opcode: 8, payload: Buffer.from([code >> 8, code & 255]) });
  await waitFor(() => r.ended, { what: 'the relay to close the TCP connection' });
  r.socket.destroy();
}

test('binary frames close with 1003', { skip }, async () => {
  await closesWith((r) => r.send({ opcode: 2, payload: Buffer.from('{"type":"ping"}') }), 1003);
});

test('text that is not UTF-8 closes with 1007', { skip }, async () => {
  await closesWith((r) => r.send({ opcode: 1, payload: Buffer.from([0x7b, 0xc3, 0x28, 0x7d]) }), 1007);
  // Split inside a character across fragments is fine; broken at the end is not.
  const r = await raw();
  const msg = Buffer.from('{"type":"ping","ref":"é"}');
  const cut = msg.indexOf(0xc3) + 1;
  r.send({ fin: false, opcode: 1, payload: msg.subarray(0, cut) });
  r.send({ fin: true, opcode: 0, payload: msg.subarray(cut) });
  const f = await r.nextFrame();
  assert.deepEqual(JSON.parse(f.payload.toString()).ref, 'é');
  r.socket.destroy();
});

test('protocol errors close with 1002', { skip }, async () => {
  await closesWith((r) => r.send({ rsv: 4, opcode: 1, payload: '{"type":"ping"}' }), 1002);
  await closesWith((r) => r.send({ opcode: 3, payload: 'x' }), 1002);
  await closesWith((r) => r.send({ opcode: 0xb, payload: 'x' }), 1002);
  await closesWith((r) => r.send({ opcode: 9, payload: Buffer.alloc(126) }), 1002);
  await closesWith((r) => r.send({ fin: false, opcode: 9, payload: 'x' }), 1002);
  await closesWith((r) => r.send({ opcode: 0, payload: 'stray continuation' }), 1002);
  await closesWith((r) => {
    r.send({ fin: false, opcode: 1, payload: '{"type":' });
    r.send({ opcode: 1, payload: '{"type":"ping"}' });
  }, 1002);
  await closesWith((r) => r.send({ opcode: 8, payload: Buffer.from([0x03, 0xed]) }), 1002); // 1005 may not be sent
});

test('fragments are joined, control frames between them answered', { skip }, async () => {
  const r = await raw();
  r.send({ fin: false, opcode: 1, payload: '{"type":"pi' });
  r.send({ opcode: 9, payload: 'are you there' });
  r.send({ fin: false, opcode: 0, payload: 'ng","ref"' });
  r.send({ fin: true, opcode: 0, payload: ':"frag"}' });
  const pong = await r.nextFrame();
  assert.equal(pong.opcode, 0xa);
  assert.equal(pong.payload.toString(), 'are you there');
  const reply = JSON.parse((await r.nextFrame()).payload.toString());
  assert.deepEqual([reply.type, reply.ref], ['pong', 'frag']);
  r.send({ opcode: 8, payload: Buffer.from([0x03, 0xe8]) });
  assert.equal(await r.closeCode(), 1000);
  await waitFor(() => r.ended, { what: 'the TCP close after the close handshake' });
  r.socket.destroy();
});

test('messages above PARLEY_MAX_FRAME (64k) close with 1009, fragmented or not', { skip }, async () => {
  const c = await Client.connect(relay.url, await mint(key, user));
  c.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(64 * 1024) }));
  assert.equal((await c.whenClosed()).code, 1009);
  await closesWith((r) => {
    r.send({ fin: false, opcode: 1, payload: Buffer.alloc(40000, 0x20) });
    r.send({ fin: true, opcode: 0, payload: Buffer.alloc(40000, 0x20) });
  }, 1009);
  // Just below the limit is a message like any other.
  const d = await Client.connect(relay.url, await mint(key, user));
  const p = await d.request({ type: 'ping', pad: 'x'.repeat(60 * 1024) });
  assert.equal(p.type, 'pong');
  d.close();
});

test('a peer that ignores our close frame is cut off after the grace period', { skip }, async () => {
  const r = await raw();
  r.send({ opcode: 2, payload: 'binary' });
  assert.equal(await r.closeCode(), 1003);
  const t0 = Date.now();
  await waitFor(() => r.ended, { timeoutMs: 6000, what: 'the forced close' });
  assert.ok(Date.now() - t0 >= 1000, 'closed before the grace period');
  r.socket.destroy();
});

test('a close frame from the client is answered with the same code', { skip }, async () => {
  const r = await raw();
  r.send({ opcode: 8, payload: Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from('bye')]) });
  assert.equal(await r.closeCode(), 4000);
  await waitFor(() => r.ended, { what: 'the TCP close' });
  r.socket.destroy();
  const c = await Client.connect(relay.url, await mint(key, user));
  c.ws.close(4321, 'going');
  assert.equal((await c.whenClosed()).code, 4321);
});
