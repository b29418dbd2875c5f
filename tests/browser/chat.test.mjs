// tests/browser/chat.test.mjs: the demo chat (contrib/demo) on the client
// library (contrib/client) in a real headless Chromium, against the real
// stack: nginx, parley-token, parley-relay, PostgreSQL.
//
// Two users in two browser contexts exchange direct and group messages with
// presence, typing and unread counts; a second tab of a user sees the same
// conversation; public groups are joined and left; history loads on scroll;
// the relay is killed and restarted mid-conversation and nothing is lost or
// shown twice; a message written while the network is down is delivered
// after reconnection; logout in one tab signs out the others (4011).
// Screenshots of failures, and one of the working chat, are saved under
// tests/browser/artifacts/ of the build tree.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  skipReason, startStack, launchBrowser, newPage, withScreenshots, screenshot, signIn, waitOpen,
  openConversation, sendMessage, shownBodies, waitForMessage, countShown, recordStates, waitFor,
} from './browser-helpers.mjs';

const skip = skipReason();
const run = `${process.pid}`;           // keeps message texts unique per run

function dm(a, b) {
  return a.id < b.id ? `dm:${a.id}:${b.id}` : `dm:${b.id}:${a.id}`;
}

let stack;
let browser;

before(async () => {
  if (skip)
    return;
  stack = await startStack({ name: 'browser-chat' });
  browser = await launchBrowser();
});

after(async () => {
  if (browser)
    await browser.close();
  if (stack)
    await stack.stop();
});

async function context(t) {
  const c = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  t.after(() => c.close());
  return c;
}

test('two users exchange direct and group messages, with presence, typing and unread counts', { skip }, async (t) => {
  const { alice, bob } = stack.users;
  const pages = [];
  await withScreenshots(t, () => pages, async () => {
    const a = await newPage(await context(t), 'alice');
    const b = await newPage(await context(t), 'bob');
    pages.push(a, b);
    await signIn(a, stack.url, 'alice');
    assert.equal(await a.textContent('#me-name'), 'alice');
    await a.waitForSelector(`#people li[data-user="${bob.id}"][data-online="false"]`);
    await signIn(b, stack.url, 'bob');
    // Presence: alice sees bob come online without reloading.
    await a.waitForSelector(`#people li[data-user="${bob.id}"][data-online="true"]`);
    await b.waitForSelector(`#people li[data-user="${alice.id}"][data-online="true"]`);

    // Direct messages, with the typing indicator.
    const conv = dm(alice, bob);
    await openConversation(a, conv);
    await openConversation(b, conv);
    await a.type('#input', 'hel');
    await b.waitForFunction(() => document.querySelector('#typing').textContent === 'alice is typing…');
    await a.fill('#input', '');
    await sendMessage(a, `hello bob ${run}`);
    await waitForMessage(b, `hello bob ${run}`);
    await waitForMessage(a, `hello bob ${run}`);      // acked: no longer pending
    assert.equal(await b.textContent('#typing'), '', 'the message ends the typing indicator');
    await sendMessage(b, `hi alice ${run}`);
    await waitForMessage(a, `hi alice ${run}`);
    const mine = await a.$eval(`#messages .message[data-status="stored"]:last-child`, (e) => e.classList.contains('mine'));
    assert.equal(mine, false, "bob's message is shown as his");

    // Group messages in the public lobby.
    const lobby = `group:${stack.groups.lobby}`;
    await openConversation(a, lobby);
    await openConversation(b, lobby);
    await sendMessage(a, `hi lobby ${run}`);
    await waitForMessage(b, `hi lobby ${run}`);
    await sendMessage(b, `hello from bob in lobby ${run}`);
    await waitForMessage(a, `hello from bob in lobby ${run}`);

    // Unread counts: a direct message while bob looks at the lobby.
    await sendMessageTo(a, conv, `are you there? ${run}`);
    await b.waitForSelector(`#people li[data-user="${alice.id}"] .unread`);
    assert.equal(await b.textContent(`#people li[data-user="${alice.id}"] .unread`), '1');
    await openConversation(b, conv);
    await waitForMessage(b, `are you there? ${run}`);
    await b.waitForSelector(`#people li[data-user="${alice.id}"] .unread`, { state: 'detached' });

    // Each message exactly once on both sides.
    for (const p of [a, b]) {
      await openConversation(p, conv);
      const counts = await countShown(p);
      for (const text of [`hello bob ${run}`, `hi alice ${run}`, `are you there? ${run}`])
        assert.equal(counts.get(text), 1, `${p.label}: "${text}" shown once`);
    }
    await screenshot(a, 'chat-alice');
    await screenshot(b, 'chat-bob');
  });
});

// Send in a conversation other than the one open, then come back.
async function sendMessageTo(page, conversation, text) {
  const back = await page.evaluate(() => window.parleyDemo.state.active);
  await openConversation(page, conversation);
  await sendMessage(page, text);
  await waitForMessage(page, text);
  if (back)
    await openConversation(page, back);
}

test('a second tab of the same user sees the same conversation', { skip }, async (t) => {
  const { alice, carol } = stack.users;
  const pages = [];
  await withScreenshots(t, () => pages, async () => {
    const ctxA = await context(t);
    const a1 = await newPage(ctxA, 'alice-tab1');
    const a2 = await newPage(ctxA, 'alice-tab2');
    const c = await newPage(await context(t), 'carol');
    pages.push(a1, a2, c);
    await signIn(a1, stack.url, 'alice');
    await a2.goto(`${stack.url}/`);                 // same cookie: no sign-in
    await waitOpen(a2);
    await signIn(c, stack.url, 'carol');
    const ids = await Promise.all([a1, a2].map((p) => p.evaluate(() => window.parleyDemo.client.instanceId)));
    assert.notEqual(ids[0], ids[1], 'each tab its own client_instance');

    const conv = dm(alice, carol);
    for (const p of [a1, a2, c])
      await openConversation(p, conv);
    await sendMessage(c, `carol to alice ${run}`);
    await waitForMessage(a1, `carol to alice ${run}`);
    await waitForMessage(a2, `carol to alice ${run}`);
    await sendMessage(a1, `alice from tab 1 ${run}`);
    await waitForMessage(a2, `alice from tab 1 ${run}`);   // the sender's other connections get it
    await waitForMessage(c, `alice from tab 1 ${run}`);
    for (const p of [a1, a2]) {
      const counts = await countShown(p);
      assert.equal(counts.get(`carol to alice ${run}`), 1);
      assert.equal(counts.get(`alice from tab 1 ${run}`), 1);
    }
    // Both tabs stay connected side by side (no 4009 between them).
    await a1.waitForTimeout(500);
    for (const p of [a1, a2])
      assert.equal(await p.getAttribute('body', 'data-connection'), 'open');
    // Read positions are kept by the relay: after a reload, nothing in
    // this conversation counts as unread (alice read carol's message,
    // then wrote one herself).
    await a1.reload();
    await waitOpen(a1);
    await a1.waitForSelector(`#people li[data-user="${carol.id}"]`);
    assert.equal(await a1.$(`#people li[data-user="${carol.id}"] .unread`), null, 'no stale unread count');
  });
});

test('public groups can be joined and left', { skip }, async (t) => {
  const pages = [];
  await withScreenshots(t, () => pages, async () => {
    const c = await newPage(await context(t), 'carol');
    pages.push(c);
    await signIn(c, stack.url, 'carol');
    const g = stack.groups.random;
    await c.waitForSelector(`#groups li.not-member[data-group="${g}"] button[data-join="${g}"]`);
    assert.equal(await c.$(`#groups li[data-group="${stack.groups.staff}"]`), null, 'private groups are not listed');
    await c.click(`button[data-join="${g}"]`);
    await c.waitForSelector(`#groups li[data-conversation="group:${g}"]`);
    await c.waitForFunction((id) => window.parleyDemo.state.active === id, `group:${g}`);
    await sendMessage(c, `carol in random ${run}`);
    await waitForMessage(c, `carol in random ${run}`);
    await c.click('#leave');
    await c.waitForSelector(`#groups li.not-member[data-group="${g}"]`);
    const members = await stack.pg.psql(`SELECT count(*) FROM parley.group_members WHERE group_id = ${g}`);
    assert.equal(members.trim(), '0');
  });
});

test('older history loads on scroll up, in order, each message once', { skip }, async (t) => {
  const { alice, bob } = stack.users;
  const g = Number(await stack.pg.psql("SELECT parley.create_group('history', 'private')"));
  await stack.pg.psql(`SELECT parley.add_member(${g}, ${alice.id}); SELECT parley.add_member(${g}, ${bob.id})`);
  await stack.pg.psql(`SELECT parley.post_message(${bob.id}, 'group:${g}', 'old ' || i, 'h' || i)
    FROM generate_series(1, 130) AS i`);
  const pages = [];
  await withScreenshots(t, () => pages, async () => {
    const a = await newPage(await context(t), 'alice');
    pages.push(a);
    await signIn(a, stack.url, 'alice');
    await openConversation(a, `group:${g}`);
    let bodies = await shownBodies(a, 'stored');
    assert.equal(bodies.length, 50, 'the newest page first');
    assert.equal(bodies.at(-1), 'old 130');
    for (let i = 0; i < 10 && bodies.length < 130; i++) {
      await a.$eval('#messages', (e) => { e.scrollTop = 0; });
      await a.waitForFunction((n) => document.querySelectorAll('#messages .message').length > n
        || !window.parleyDemo.state.convs.get(window.parleyDemo.state.active).more, bodies.length);
      bodies = await shownBodies(a, 'stored');
    }
    assert.deepEqual(bodies, Array.from({ length: 130 }, (_, i) => `old ${i + 1}`));
  });
});

test('the relay killed and restarted mid-conversation: "reconnecting", then nothing lost or doubled', { skip }, async (t) => {
  const { alice, bob } = stack.users;
  const pages = [];
  await withScreenshots(t, () => pages, async () => {
    const a = await newPage(await context(t), 'alice');
    const b = await newPage(await context(t), 'bob');
    pages.push(a, b);
    await signIn(a, stack.url, 'alice');
    await signIn(b, stack.url, 'bob');
    const conv = dm(alice, bob);
    await openConversation(a, conv);
    await openConversation(b, conv);
    await sendMessage(a, `before 1 ${run}`);
    await waitForMessage(b, `before 1 ${run}`);
    await sendMessage(b, `before 2 ${run}`);
    await waitForMessage(a, `before 2 ${run}`);
    await recordStates(a);
    await recordStates(b);

    await stack.relay.kill();
    try {
      for (const p of [a, b]) {
        await p.waitForSelector('#banner[data-state="reconnecting"]', { state: 'visible', timeout: 10000 });
        // Waiting for the next attempt ("Reconnecting in 3 s") or in one
        // ("Reconnecting…"): full jitter may make the first delay zero.
        assert.match(await p.textContent('#banner-text'), /Reconnecting( in \d+ s|…)/);
      }
      await screenshot(a, 'relay-down-alice');
      await sendMessage(a, `during outage ${run}`);
      await a.waitForSelector('#messages .message[data-status="pending"], #messages .message[data-status="sent"]');
    } finally {
      // Whatever failed above, the tests after this one need their relay.
      await stack.relay.start();
    }
    await waitOpen(a, 60000);
    await waitOpen(b, 60000);
    await sendMessage(b, `after restart ${run}`);
    await waitForMessage(b, `during outage ${run}`, 30000);
    await waitForMessage(a, `during outage ${run}`, 30000);      // acked
    await waitForMessage(a, `after restart ${run}`, 30000);
    await waitForMessage(b, `after restart ${run}`, 30000);

    const texts = ['before 1', 'before 2', 'during outage', 'after restart'].map((x) => `${x} ${run}`);
    for (const p of [a, b]) {
      const counts = await countShown(p);
      for (const text of texts)
        assert.equal(counts.get(text), 1, `${p.label}: "${text}" shown exactly once`);
      const states = await p.evaluate(() => window.__states.map((s) => s.state));
      assert.ok(states.includes('reconnecting'), `${p.label} went through reconnecting: ${states}`);
      assert.equal(states.at(-1), 'open');
    }
    const stored = await stack.pg.psql(`SELECT count(*) FROM parley.messages WHERE body = 'during outage ${run}'`);
    assert.equal(stored.trim(), '1', 'stored once');
    // A reload shows the same conversation from history, each message once.
    await a.reload();
    await waitOpen(a);
    await openConversation(a, conv);
    const counts = await countShown(a);
    for (const text of texts)
      assert.equal(counts.get(text), 1, `after reload: "${text}" once`);
  });
});

test('a message written while the network is down is delivered after reconnection', { skip }, async (t) => {
  const { alice, bob } = stack.users;
  const pages = [];
  await withScreenshots(t, () => pages, async () => {
    const ctxA = await context(t);
    const a = await newPage(ctxA, 'alice');
    const b = await newPage(await context(t), 'bob');
    pages.push(a, b);
    await signIn(a, stack.url, 'alice');
    await signIn(b, stack.url, 'bob');
    const lobby = `group:${stack.groups.lobby}`;
    await openConversation(a, lobby);
    await openConversation(b, lobby);

    // Cut alice off.  Chromium keeps the socket "open" with nothing
    // getting through; the client's ping on the offline event finds out
    // within pongTimeout (10 s) and waits for the network.
    await ctxA.setOffline(true);
    await a.waitForSelector('#banner[data-state="offline"]', { state: 'visible', timeout: 20000 });
    assert.equal(await a.textContent('#banner-text'), 'You are offline.');
    await sendMessage(a, `written offline ${run}`);
    await a.waitForSelector('#messages .message[data-status="pending"]');
    // Meanwhile bob writes; alice must get it by sync.
    await sendMessage(b, `while alice was away ${run}`);
    await waitForMessage(b, `while alice was away ${run}`);
    const before = await stack.pg.psql(`SELECT count(*) FROM parley.messages WHERE body = 'written offline ${run}'`);
    assert.equal(before.trim(), '0', 'nothing reached the server while offline');

    await ctxA.setOffline(false);        // "online" wakes the client at once
    await waitOpen(a, 30000);
    await waitForMessage(b, `written offline ${run}`);
    await waitForMessage(a, `written offline ${run}`);
    await waitForMessage(a, `while alice was away ${run}`);
    for (const p of [a, b]) {
      const counts = await countShown(p);
      assert.equal(counts.get(`written offline ${run}`), 1, p.label);
      assert.equal(counts.get(`while alice was away ${run}`), 1, p.label);
    }
  });
});

test('logout in one tab signs out the other tabs (4011)', { skip }, async (t) => {
  const pages = [];
  await withScreenshots(t, () => pages, async () => {
    const ctx = await context(t);
    const a1 = await newPage(ctx, 'alice-tab1');
    const a2 = await newPage(ctx, 'alice-tab2');
    pages.push(a1, a2);
    await signIn(a1, stack.url, 'alice');
    await a2.goto(`${stack.url}/`);
    await waitOpen(a2);
    await recordStates(a2);
    await a1.click('#signout');
    await a1.locator('#signin').waitFor({ state: 'visible' });
    await a2.locator('#signin').waitFor({ state: 'visible', timeout: 10000 });
    assert.equal(await a2.getAttribute('#banner', 'data-state'), 'signed_out');
    const states = await a2.evaluate(() => window.__states);
    assert.equal(states.at(-1).state, 'signed_out');
    assert.equal(states.at(-1).code, 4011, 'closed by the relay with 4011');
    // And it stays signed out: no reconnect attempts.
    await a2.waitForTimeout(3000);
    assert.equal(await a2.evaluate(() => window.parleyDemo.client.state), 'signed_out');
    const status = await a2.evaluate(async () => (await fetch('/auth/token', { method: 'POST', credentials: 'include' })).status);
    assert.equal(status, 401);
  });
});
