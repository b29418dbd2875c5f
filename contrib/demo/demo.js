// contrib/demo/demo.js: the Parley demo chat, built on the client library
// alone (served at /client/parley.js next to this page).
//
// Sign in and out through the token service, online users with presence,
// groups (list, join public ones, leave), direct and group conversations,
// older history when scrolling up, typing indicators, unread counts from
// read positions, and a banner that always says how the connection is.
// Everything the page shows is built with DOM calls and textContent: no
// message text is ever parsed as HTML.

import {
  ParleyClient, login, getSession, dmConversation, groupConversation, parseConversation,
} from '/client/parley.js';

const $ = (id) => document.getElementById(id);
const client = ParleyClient.get();

/** Everything the page knows; rebuilt from the relay after every (re)connect. */
const S = {
  me: null,                 // { id, name }
  users: new Map(),         // id -> { id, name, online }
  groups: new Map(),        // id -> { id, name, visibility, member, role }
  convs: new Map(),         // conversation -> conv (see convOf)
  active: null,             // conversation id shown in the pane
  typing: new Map(),        // conversation -> Map(user id -> timer)
  countdown: null,
};

// Exposed for the browser tests and for curious developers' consoles.
window.parleyDemo = { client, state: S };

const TYPING_SHOWN_MS = 4000;
const PAGE = 50;

// ------------------------------------------------------------------ model

function convOf(id) {
  let c = S.convs.get(id);
  if (!c) {
    c = { id, title: null, lastSeq: 0, readSeq: 0, messages: new Map(), loaded: false, more: true, loading: false };
    S.convs.set(id, c);
  }
  return c;
}

function titleOf(c) {
  const p = parseConversation(c.id);
  if (p && p.kind === 'group') {
    const g = S.groups.get(p.group);
    return g ? `# ${g.name}` : c.title || c.id;
  }
  if (p && S.me) {
    const other = p.users[0] === S.me.id ? p.users[1] : p.users[0];
    const u = S.users.get(other);
    return u ? u.name : c.title || c.id;
  }
  return c.title || c.id;
}

function unreadOf(c) {
  return Math.max(0, c.lastSeq - c.readSeq);
}

function addMessage(m) {
  const c = convOf(m.conversation);
  if (m.client_id)
    c.messages.delete(`c:${m.client_id}`);
  c.messages.set(`m:${m.id}`, { ...m, status: 'stored' });
  c.lastSeq = Math.max(c.lastSeq, m.seq);
  return c;
}

// Whoever writes a message has read the conversation up to it: move the
// read position, here and for the user's other tabs and devices.
function readUpTo(c, seq) {
  if (seq <= c.readSeq)
    return;
  c.readSeq = seq;
  client.markRead(c.id, seq);
}

function isMine(m) {
  return !!(S.me && m.from && m.from.id === S.me.id);
}

function addPending(entry, status) {
  if (!entry.conversation)
    return null;
  const c = convOf(entry.conversation);
  c.messages.set(`c:${entry.client_id}`, {
    client_id: entry.client_id, conversation: entry.conversation, body: entry.body,
    from: S.me, ts: new Date(entry.created).toISOString(), seq: Infinity, created: entry.created, status,
  });
  return c;
}

function sortedMessages(c) {
  return [...c.messages.values()].sort((a, b) => (a.seq - b.seq) || ((a.created || 0) - (b.created || 0)));
}

function oldestSeq(c) {
  let min = Infinity;
  for (const m of c.messages.values())
    if (m.status === 'stored' && m.seq < min)
      min = m.seq;
  return min === Infinity ? null : min;
}

// ------------------------------------------------------------------ rendering helpers

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false)
      continue;
    if (k === 'class')
      e.className = v;
    else if (k === 'text')
      e.textContent = v;
    else if (k.startsWith('on'))
      e.addEventListener(k.slice(2), v);
    else
      e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const ch of children)
    if (ch != null)
      e.append(ch);
  return e;
}

function timeOf(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function badge(n) {
  return n > 0 ? el('span', { class: 'unread', 'aria-label': `${n} unread`, text: n > 99 ? '99+' : String(n) }) : null;
}

// ------------------------------------------------------------------ sidebar

function renderSidebar() {
  const groups = $('groups');
  groups.replaceChildren();
  const sorted = [...S.groups.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const g of sorted) {
    const id = groupConversation(g.id);
    if (g.member) {
      const c = convOf(id);
      groups.append(el('li', {
        'data-conversation': id, 'data-group': g.id, 'aria-current': S.active === id ? 'true' : null,
        onclick: () => openConversation(id),
      }, el('span', { class: 'name', text: `# ${g.name}` }), badge(unreadOf(c))));
    } else {
      groups.append(el('li', { class: 'not-member', 'data-group': g.id },
        el('span', { class: 'name', text: `# ${g.name}` }),
        el('button', { type: 'button', class: 'link join', 'data-join': g.id, text: 'Join', onclick: (ev) => { ev.stopPropagation(); joinGroup(g.id); } })));
    }
  }

  const people = $('people');
  people.replaceChildren();
  if (!S.me)
    return;
  const users = [...S.users.values()].filter((u) => u.id !== S.me.id)
    .sort((a, b) => (b.online - a.online) || a.name.localeCompare(b.name));
  for (const u of users) {
    const id = dmConversation(S.me.id, u.id);
    const c = S.convs.get(id);
    people.append(el('li', {
      'data-conversation': id, 'data-user': u.id, 'data-online': u.online ? 'true' : 'false',
      'aria-current': S.active === id ? 'true' : null,
      onclick: () => openConversation(id),
    },
    el('span', { class: `dot${u.online ? ' online' : ''}`, title: u.online ? 'online' : 'offline' }),
    el('span', { class: 'name', text: u.name }),
    c ? badge(unreadOf(c)) : null));
  }
}

// ------------------------------------------------------------------ conversation pane

function renderPane({ keep = 'auto' } = {}) {
  const list = $('messages');
  const c = S.active ? S.convs.get(S.active) : null;
  const p = c ? parseConversation(c.id) : null;
  $('title').textContent = c ? titleOf(c) : 'Pick a conversation';
  $('leave').hidden = !(p && p.kind === 'group');
  const canWrite = !!c && !(p && p.kind === 'group' && !(S.groups.get(p.group) || {}).member);
  $('input').disabled = !canWrite;
  $('send').disabled = !canWrite;
  if (!c) {
    list.replaceChildren();
    return;
  }

  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const fromBottom = list.scrollHeight - list.scrollTop;
  const items = [];
  if (c.loaded && c.more)
    items.push(el('li', { class: 'more', text: c.loading ? 'Loading…' : 'Scroll up for older messages' }));
  for (const m of sortedMessages(c)) {
    const mine = isMine(m);
    items.push(el('li', {
      class: `message${mine ? ' mine' : ''}`,
      'data-id': m.id, 'data-seq': Number.isFinite(m.seq) ? m.seq : null,
      'data-client-id': m.client_id, 'data-status': m.status,
    },
    el('div', { class: 'meta' },
      el('span', { class: 'from', text: mine ? 'You' : (m.from && m.from.name) || '?' }),
      el('time', { datetime: m.ts, text: timeOf(m.ts) }),
      el('span', { class: 'status' })),
    el('div', { class: 'body', text: m.body }),
    m.status === 'failed' ? el('button', { type: 'button', class: 'link', text: 'Send again', onclick: () => resend(m) }) : null));
  }
  list.replaceChildren(...items);
  if (keep === 'anchor')
    list.scrollTop = list.scrollHeight - fromBottom;
  else if (keep === 'bottom' || atBottom)
    list.scrollTop = list.scrollHeight;
  renderTyping();
}

function renderTyping() {
  const who = S.active && S.typing.get(S.active);
  const names = who ? [...who.keys()].map((id) => (S.users.get(id) || { name: 'Someone' }).name) : [];
  $('typing').textContent = names.length === 0 ? ''
    : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
}

function render(opts) {
  renderSidebar();
  renderPane(opts);
}

function notice(text) {
  const n = $('notice');
  n.textContent = text || '';
  n.hidden = !text;
}

// ------------------------------------------------------------------ actions

async function openConversation(id) {
  S.active = id;
  notice('');
  const c = convOf(id);
  render({ keep: 'bottom' });
  $('input').focus();
  if (!c.loaded)
    await loadOlder(c, { first: true });
  markActiveRead();
}

async function loadOlder(c, { first = false } = {}) {
  if (c.loading || (!first && !c.more))
    return;
  c.loading = true;
  try {
    const before = first ? null : oldestSeq(c);
    const r = await client.history(c.id, { beforeSeq: before ?? undefined, limit: PAGE });
    for (const m of r.messages)
      if (!c.messages.has(`m:${m.id}`))
        addMessage(m);
    c.more = !!r.more;
    c.loaded = true;
  } catch (e) {
    // A direct conversation without messages yet is simply empty.
    c.loaded = true;
    c.more = false;
    if (e.code !== 'not_found')
      console.warn('parley demo: history failed:', e.code);
  } finally {
    c.loading = false;
  }
  if (S.active === c.id)
    render({ keep: first ? 'bottom' : 'anchor' });
}

function markActiveRead() {
  const c = S.active && S.convs.get(S.active);
  if (!c || document.visibilityState !== 'visible' || c.lastSeq <= c.readSeq)
    return;
  c.readSeq = c.lastSeq;
  client.markRead(c.id, c.lastSeq);
  renderSidebar();
}

function send(body) {
  const p = parseConversation(S.active);
  if (!p || !body.trim())
    return;
  if (p.kind === 'group')
    client.sendGroup(p.group, body);
  else
    client.sendPrivate(p.users[0] === S.me.id ? p.users[1] : p.users[0], body);
}

function resend(m) {
  const c = S.convs.get(m.conversation);
  if (c)
    c.messages.delete(`c:${m.client_id}`);
  send(m.body);
  renderPane();
}

async function joinGroup(id) {
  try {
    await client.joinGroup(id);
    await loadLists();
    openConversation(groupConversation(id));
  } catch (e) {
    notice(`Could not join: ${e.message}`);
  }
}

async function leaveGroup() {
  const p = parseConversation(S.active);
  if (!p || p.kind !== 'group')
    return;
  try {
    await client.leaveGroup(p.group);
    S.active = null;
    await loadLists();
    render();
  } catch (e) {
    notice(`Could not leave: ${e.message}`);
  }
}

async function loadLists() {
  const [u, g, cl] = await Promise.all([client.userList(), client.groupList(), client.conversationList()]);
  if (!S.me)
    return;                     // signed out meanwhile
  S.users = new Map(u.users.map((x) => [x.id, x]));
  S.groups = new Map(g.groups.map((x) => [x.id, x]));
  for (const x of cl.conversations) {
    const c = convOf(x.conversation);
    c.title = x.title;
    c.lastSeq = Math.max(c.lastSeq, x.last_seq);
    c.readSeq = Math.max(c.readSeq, x.read_seq);
  }
  render();
  markActiveRead();
}

// ------------------------------------------------------------------ connection banner

function setBanner(state, text, action) {
  const b = $('banner');
  b.dataset.state = state;
  b.hidden = !text;
  $('banner-text').textContent = text || '';
  const btn = $('banner-action');
  btn.hidden = !action;
  btn.textContent = action ? action.label : '';
  btn.onclick = action ? action.run : null;
}

function showState(ev) {
  clearInterval(S.countdown);
  S.countdown = null;
  switch (ev.state) {
  case 'connecting':
    setBanner('connecting', ev.previous === 'idle' || ev.previous === 'signed_out' ? 'Connecting…' : 'Reconnecting…');
    break;
  case 'open':
    setBanner('open', null);
    break;
  case 'reconnecting': {
    const tick = () => {
      const s = Math.max(0, Math.ceil((ev.retryAt - Date.now()) / 1000));
      setBanner('reconnecting', `Connection lost. Reconnecting in ${s} s…`, { label: 'Retry now', run: () => client.reconnect() });
    };
    tick();
    S.countdown = setInterval(tick, 1000);
    break;
  }
  case 'offline':
    setBanner('offline', ev.reason === 'network' ? 'You are offline.' : 'Cannot reach the chat server.',
      { label: 'Retry', run: () => client.reconnect() });
    break;
  case 'replaced':
    setBanner('replaced', 'This chat was opened in another window.', { label: 'Use here', run: () => client.reconnect() });
    break;
  case 'signed_out':
    setBanner('signed_out', 'You are signed out.');
    showSignin();
    break;
  default:
    break;
  }
}

// ------------------------------------------------------------------ client events

client.on('state', (ev) => {
  showState(ev);
  if (ev.state === 'open') {
    if (ev.user)
      S.me = ev.user;
    loadLists().catch((e) => console.warn('parley demo: lists failed:', e.code));
  }
  document.body.dataset.connection = ev.state;
});

client.on('message', (m) => {
  const c = addMessage(m);
  if (isMine(m))
    readUpTo(c, m.seq);         // sent from another tab of ours
  const who = S.typing.get(m.conversation);
  if (who && m.from && who.has(m.from.id)) {
    clearTimeout(who.get(m.from.id));
    who.delete(m.from.id);
  }
  if (S.active === c.id) {
    renderPane();
    markActiveRead();
  }
  renderSidebar();
});

client.on('outbox', (ev) => {
  let c = null;
  if (ev.status === 'acked') {
    c = convOf(ev.ack.conversation);
    c.messages.delete(`c:${ev.client_id}`);
    if (!c.messages.has(`m:${ev.ack.id}`))
      addMessage({ id: ev.ack.id, conversation: ev.ack.conversation, seq: ev.ack.seq, ts: ev.ack.ts,
        from: S.me, body: ev.entry.body, client_id: ev.client_id });
    readUpTo(c, ev.ack.seq);
    renderSidebar();
  } else {
    c = addPending(ev.entry, ev.status);
    if (ev.status === 'failed' && ev.error)
      notice(`A message was not sent: ${ev.error.message}`);
  }
  if (c && S.active === c.id)
    renderPane({ keep: ev.status === 'pending' ? 'bottom' : 'auto' });
});

client.on('presence', (p) => {
  const u = S.users.get(p.user);
  if (u) {
    u.online = p.online;
    renderSidebar();
  } else if (client.isOpen) {
    loadLists().catch(() => {});
  }
});

client.on('typing', (t) => {
  if (!S.typing.has(t.conversation))
    S.typing.set(t.conversation, new Map());
  const who = S.typing.get(t.conversation);
  const uid = typeof t.user === 'object' && t.user ? t.user.id : t.user;
  clearTimeout(who.get(uid));
  who.set(uid, setTimeout(() => {
    who.delete(uid);
    renderTyping();
  }, TYPING_SHOWN_MS));
  renderTyping();
});

client.on('read', (r) => {
  const c = convOf(r.conversation);
  c.readSeq = Math.max(c.readSeq, r.seq);
  renderSidebar();
});

client.on('members', (m) => {
  if (m.type === 'removed_from_group' && S.active === groupConversation(m.group))
    notice('You were removed from this group.');
  const concernsMe = m.type === 'removed_from_group' || !m.user || (S.me && m.user === S.me.id);
  if (concernsMe && client.isOpen)
    loadLists().catch(() => {});
});

client.on('error', (e) => {
  // Codes only: never message bodies or tokens in the console.
  console.warn('parley:', e.code);
});

// ------------------------------------------------------------------ page

function showSignin(message) {
  S.me = null;
  S.active = null;
  S.convs.clear();
  S.users.clear();
  S.groups.clear();
  $('chat').hidden = true;
  $('me').hidden = true;
  $('signin').hidden = false;
  const err = $('signin-error');
  err.textContent = message || '';
  err.hidden = !message;
  $('password').value = '';
  $('username').focus();
}

function startChat(user) {
  S.me = user;
  $('me-name').textContent = user.name;
  $('me').hidden = false;
  $('signin').hidden = true;
  $('chat').hidden = false;
  // Messages of an earlier visit still waiting in the outbox.
  for (const e of client.outbox())
    addPending(e, e.status);
  render();
  client.connect();
}

$('signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const button = $('signin-submit');
  button.disabled = true;
  try {
    const s = await login($('username').value.trim(), $('password').value);
    startChat(s.user);
  } catch (e) {
    const text = e.code === 'invalid_credentials' ? 'Wrong user name or password.'
      : e.code === 'too_many_attempts' ? `Too many attempts. Try again in ${e.retryAfter || 60} s.`
        : `Sign-in failed (${e.code}).`;
    showSignin(text);
  } finally {
    button.disabled = false;
  }
});

$('signout').addEventListener('click', async () => {
  try {
    await client.logout();
  } catch (e) {
    console.warn('parley demo: logout:', e.code);
  }
  showSignin();
});

$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('input');
  const body = input.value;
  if (!body.trim())
    return;
  send(body);
  input.value = '';
  input.focus();
});

$('input').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $('composer').requestSubmit();
  }
});

$('input').addEventListener('input', () => {
  if (S.active && $('input').value)
    client.typing(S.active);
});

$('messages').addEventListener('scroll', () => {
  const c = S.active && S.convs.get(S.active);
  if (c && c.loaded && c.more && $('messages').scrollTop < 60)
    loadOlder(c);
});

$('leave').addEventListener('click', leaveGroup);

document.addEventListener('visibilitychange', markActiveRead);
window.addEventListener('focus', markActiveRead);

(async () => {
  try {
    const s = await getSession();
    if (s)
      startChat(s.user);
    else
      showSignin();
  } catch (e) {
    showSignin(`The chat service is unavailable (${e.code}).`);
  }
})();
