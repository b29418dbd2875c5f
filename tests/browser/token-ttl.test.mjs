// tests/browser/token-ttl.test.mjs: with WS_TOKEN_TTL=10s the demo chat in
// Chromium keeps one connection across several in-band token refreshes and
// the conversation continues: the failure of the system Parley replaces
// (tokens expiring every 30 s and dropping the socket) cannot happen.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  skipReason, startStack, launchBrowser, newPage, withScreenshots, signIn, openConversation,
  sendMessage, waitForMessage, countShown, recordStates,
} from './browser-helpers.mjs';

const skip = skipReason();
const run = `${process.pid}`;

let stack;
let browser;

before(async () => {
  if (skip)
    return;
  stack = await startStack({ name: 'browser-ttl', tokenTtl: '10s' });
  browser = await launchBrowser();
});

after(async () => {
  if (browser)
    await browser.close();
  if (stack)
    await stack.stop();
});

test('the conversation continues across several refreshes on one connection', { skip }, async (t) => {
  const { alice, bob } = stack.users;
  const conv = `dm:${Math.min(alice.id, bob.id)}:${Math.max(alice.id, bob.id)}`;
  const pages = [];
  await withScreenshots(t, () => pages, async () => {
    const ctxA = await browser.newContext();
    const ctxB = await browser.newContext();
    t.after(() => Promise.all([ctxA.close(), ctxB.close()]));
    const a = await newPage(ctxA, 'alice');
    const b = await newPage(ctxB, 'bob');
    pages.push(a, b);
    await signIn(a, stack.url, 'alice');
    await signIn(b, stack.url, 'bob');
    await recordStates(a);
    await recordStates(b);
    const connA = await a.evaluate(() => window.parleyDemo.client.welcome.connection_id);
    const connB = await b.evaluate(() => window.parleyDemo.client.welcome.connection_id);
    await openConversation(a, conv);
    await openConversation(b, conv);

    // 30 s: three token lifetimes, a message each way every 5 s.
    const texts = [];
    for (let i = 0; i < 6; i++) {
      const [from, to] = i % 2 ? [b, a] : [a, b];
      const text = `ttl round ${i} ${run}`;
      texts.push(text);
      await sendMessage(from, text);
      await waitForMessage(to, text, 10000);
      await a.waitForTimeout(5000);
    }

    for (const p of [a, b]) {
      const states = await p.evaluate(() => window.__states.map((s) => `${s.state}${s.code ? `:${s.code}` : ''}`));
      assert.deepEqual(states, [], `${p.label}: no state change at all (no 4010, no reconnect)`);
      const refreshed = await p.evaluate(() => window.__tokens.filter((e) => e === 'refreshed').length);
      assert.ok(refreshed >= 4, `${p.label}: refreshed ${refreshed} times in 30 s`);
      const counts = await countShown(p);
      for (const text of texts)
        assert.equal(counts.get(text), 1, `${p.label}: "${text}" once`);
    }
    assert.equal(await a.evaluate(() => window.parleyDemo.client.welcome.connection_id), connA);
    assert.equal(await b.evaluate(() => window.parleyDemo.client.welcome.connection_id), connB);
  });
});
