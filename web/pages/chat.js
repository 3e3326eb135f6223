// Students (and staff trying their personas): pick a persona, then chat.
// Text chat works at once; the 3D avatar is loaded afterwards, only when
// WebGL is there, and never blocks a question.
import { h, clear, field } from '../dom.js';
import { t } from '../i18n.js';
import { get, post } from '../api.js';
import { ChatClient } from '../chat.js';
import { setBanner } from '../app.js';
import { errorText } from './auth.js';

export async function pick(main) {
  const list = h('ul', { class: 'cards' });
  main.append(h('h1', {}, t('chat.pick.title')), h('p', {}, t('chat.pick.intro')), list);
  try {
    const { items } = await get('/v1/personas');
    if (!items.length) list.replaceWith(h('p', {}, t('chat.pick.none')));
    for (const p of items) {
      list.append(h('li', { class: 'card' },
        h('h2', {}, h('a', { href: `/chat/${p.id}` }, p.name)),
        p.subject ? h('p', { class: 'muted' }, p.subject) : null,
        p.description ? h('p', {}, p.description) : null));
    }
  } catch (err) {
    list.replaceWith(h('p', { role: 'alert', class: 'alert' }, errorText(err)));
  }
}

function webglAvailable() {
  try {
    const c = document.createElement('canvas');
    return !!(window.WebGLRenderingContext && (c.getContext('webgl2') || c.getContext('webgl')));
  } catch {
    return false;
  }
}

export function citationChips(citations) {
  if (!citations || !citations.length) return null;
  return h('ul', { class: 'chips', 'aria-label': t('chat.sources') }, citations.map((c) => {
    const label = `[${c.n}] ${c.source_title}${c.page ? ` · ${t('chat.page', { page: c.page })}` : ''}`;
    const btn = h('button', {
      type: 'button', class: 'chip', title: c.quote || '', 'data-source': c.source_id, 'data-page': c.page || '',
      onclick: () => openCitation(c, btn),
    }, h('span', { class: 'chip-title' }, label), c.quote ? h('span', { class: 'chip-quote' }, `“${c.quote}”`) : null);
    return h('li', {}, btn);
  }));
}

/**
 * Opens the cited file at its page in a new tab: the tab opens a short-lived
 * signed link (no token can follow a tab), so a PDF shows in the browser's
 * own viewer at `#page=N`. The tab is opened at the click, before the link
 * arrives, so that no pop-up blocker stops it.
 */
async function openCitation(c, btn) {
  const win = window.open('', '_blank');
  if (win) win.opener = null;
  btn.setAttribute('aria-busy', 'true');
  try {
    const link = await get(`/v1/knowledge/${c.source_id}/file-url`);
    const target = c.page ? `${link.url}#page=${c.page}` : link.url;
    btn.dataset.href = target;
    btn.dataset.opened = 'opened';
    if (win) win.location.href = target;
    else window.location.assign(target);
    post('/v1/analytics/events', { type: 'citation_opened' }).catch(() => {});
  } catch (err) {
    if (win) win.close();
    btn.dataset.opened = String(err.status || 'error');
    alert(errorText(err));
  } finally {
    btn.removeAttribute('aria-busy');
  }
}

export function eventNode(e) {
  const who = e.role === 'user' ? t('chat.you') : t('chat.tutor');
  return h('li', { class: `msg ${e.role === 'user' ? 'mine' : 'theirs'}`, 'data-seq': e.seq, 'data-reply-to': e.reply_to ?? '' },
    h('span', { class: 'visually-hidden' }, `${who}: `),
    h('p', { class: 'text' }, e.text),
    e.role !== 'user' && e.grounded === false ? h('p', { class: 'muted small' }, t('chat.ungrounded')) : null,
    e.role !== 'user' ? citationChips(e.citations) : null);
}

export async function render(main, ctx) {
  const personaId = ctx.params[0];
  const log = h('ol', { class: 'log-list', id: 'log' });
  // The live region wraps the list (a list with role=log would lose its items' semantics).
  const region = h('div', { class: 'log', id: 'log-region', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions text', 'aria-label': t('chat.conversation'), tabindex: '0' }, log);
  const status = h('p', { class: 'conn', id: 'conn', role: 'status' });
  const errors = h('p', { class: 'alert', role: 'alert', hidden: true });
  const textarea = h('textarea', { name: 'question', id: 'question', rows: 2, maxlength: 2000, required: true });
  const form = h('form', { class: 'ask' }, field(t('chat.question'), textarea), h('button', { type: 'submit', id: 'send' }, t('chat.send')));
  const stage = h('div', { class: 'avatar', id: 'avatar', 'aria-hidden': 'true' });
  const title = h('h1', {}, t('chat.title'));
  const newBtn = h('button', { type: 'button', class: 'secondary', onclick: () => { client.newSession(); clear(log); } }, t('chat.new'));
  main.append(h('div', { class: 'chat' },
    h('div', { class: 'chat-head' }, title, newBtn),
    stage,
    h('div', { class: 'chat-body' }, status, region, errors, form)));
  document.body.dataset.avatarClip = '';
  document.body.dataset.avatar = 'none';

  get(`/v1/personas/${personaId}`).then((p) => { title.textContent = p.name; document.title = `${p.name} · Bwenge`; }).catch(() => {});

  const pendingNodes = new Map(); // client_id → li
  const streamNodes = new Map(); // reply_to → li
  let avatar = null;

  const place = (node, seq) => {
    const after = [...log.children].find((li) => li.dataset.seq && Number(li.dataset.seq) > seq);
    log.insertBefore(node, after || pendingFirst());
  };
  const pendingFirst = () => [...log.children].find((li) => li.classList.contains('pending')) || null;
  const scroll = () => { region.scrollTop = region.scrollHeight; };

  const showEvent = (e) => {
    if (log.querySelector(`li[data-seq="${e.seq}"]`)) return;
    if (e.role === 'user' && e.client_id && pendingNodes.has(e.client_id)) {
      pendingNodes.get(e.client_id).remove();
      pendingNodes.delete(e.client_id);
    }
    if (e.role !== 'user' && streamNodes.has(e.reply_to)) {
      streamNodes.get(e.reply_to).remove();
      streamNodes.delete(e.reply_to);
    }
    place(eventNode(e), e.seq);
    if (e.role !== 'user' && avatar) avatar.play(e.animation && e.animation.gesture);
    scroll();
  };

  const showPending = (q) => {
    const li = h('li', { class: 'msg mine pending', 'data-client-id': q.client_id },
      h('span', { class: 'visually-hidden' }, `${t('chat.you')}: `),
      h('p', { class: 'text' }, q.text), h('p', { class: 'muted small' }, t('chat.sending')));
    pendingNodes.set(q.client_id, li);
    log.append(li);
    scroll();
  };

  const client = new ChatClient(personaId, {
    onEvent: showEvent,
    onDelta: (replyTo, text) => {
      let li = streamNodes.get(replyTo);
      if (!li) {
        li = h('li', { class: 'msg theirs streaming', 'data-streaming': replyTo }, h('span', { class: 'visually-hidden' }, `${t('chat.tutor')}: `), h('p', { class: 'text' }));
        streamNodes.set(replyTo, li);
        const q = log.querySelector(`li[data-seq="${replyTo}"]`);
        if (q && q.nextSibling) log.insertBefore(li, q.nextSibling); else log.insertBefore(li, pendingFirst());
        if (avatar) avatar.play('talking', true);
      }
      const p = li.querySelector('.text');
      p.classList.remove('muted');
      p.textContent = text;
      scroll();
    },
    onQueued: (replyTo, position) => {
      // A placeholder where the answer will stream, saying where it stands.
      if (streamNodes.has(replyTo)) return;
      const li = h('li', { class: 'msg theirs streaming', 'data-streaming': replyTo }, h('span', { class: 'visually-hidden' }, `${t('chat.tutor')}: `), h('p', { class: 'text muted' }, t('chat.queued', { n: position })));
      streamNodes.set(replyTo, li);
      const q = log.querySelector(`li[data-seq="${replyTo}"]`);
      if (q && q.nextSibling) log.insertBefore(li, q.nextSibling); else log.insertBefore(li, pendingFirst());
      scroll();
    },
    onRetry: (clientId, seconds) => {
      const li = pendingNodes.get(clientId);
      if (li) { const s = li.querySelector('.muted'); if (s) s.textContent = t('chat.retrying', { s: seconds }); }
    },
    onAck: (clientId, seq) => {
      const li = pendingNodes.get(clientId);
      if (li) { const s = li.querySelector('.muted'); if (s) s.textContent = t('chat.sent'); li.dataset.ack = seq; }
    },
    onStatus: (s) => {
      status.textContent = s === 'online' ? '' : t(`chat.status.${s}`);
      status.dataset.state = s;
      document.body.dataset.chat = s;
      setBanner(s === 'offline' ? t('banner.reconnecting') : null);
    },
    onError: (f) => {
      errors.hidden = false;
      errors.textContent = f.code === 'quota_exceeded' ? `${t('error.quota_exceeded')} ${f.message || ''}` : (f.message || t('error.generic'));
      if (avatar) avatar.play('idle');
    },
    onSession: (id) => { document.body.dataset.session = id; },
  });
  const sessionParam = ctx.query.get('session');
  if (sessionParam && sessionParam !== client.state.session_id) {
    try {
      const s = await get(`/v1/chat/sessions/${sessionParam}`);
      client.useSession(s.id, s.events);
    } catch { /* keep the current one */ }
  }
  for (const e of client.state.events) place(eventNode(e), e.seq);
  for (const q of client.state.outbox) showPending(q);
  scroll();
  // For tests and debugging: the live connection.
  window.bwengeChat = client;
  client.connect();

  const ask = () => {
    const text = textarea.value.trim();
    if (!text) return;
    errors.hidden = true;
    textarea.value = '';
    showPending(client.ask(text));
    if (avatar) avatar.play('thinking', true);
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); ask(); });
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); ask(); }
  });

  // The avatar, after the text chat is up.
  let disposed = false;
  if (webglAvailable()) {
    document.body.dataset.avatar = 'loading';
    get(`/v1/personas/${personaId}/avatar`).then(async (a) => {
      if (disposed) return;
      if (!a.model) { document.body.dataset.avatar = 'none'; return; }
      const mod = await import('../avatar.js');
      if (disposed) return;
      avatar = await mod.mountAvatar(stage, a.model, a.gestures);
      if (disposed) { avatar.dispose(); return; }
      stage.classList.add('shown');
      document.body.dataset.avatar = 'ready';
    }).catch(() => { document.body.dataset.avatar = 'unavailable'; });
  } else {
    document.body.dataset.avatar = 'unavailable';
  }

  return () => {
    disposed = true;
    client.close();
    if (window.bwengeChat === client) window.bwengeChat = null;
    setBanner(null);
    if (avatar) avatar.dispose();
  };
}
