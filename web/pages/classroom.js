// Teachers and admins: the live classroom. One socket, authenticated like
// the chat's (`?access_token=`), sends a snapshot (who is online, the latest
// questions), then `presence`, `question`, `answer` and `flag` frames from
// every node. It reconnects with exponential backoff and full jitter; each
// connection starts with a fresh snapshot, merged into what is shown.
import { h, field } from '../dom.js';
import { t } from '../i18n.js';
import { get, refresh } from '../api.js';
import { wsUrl } from '../chat.js';
import { time, dateTime, ms, num } from '../format.js';

const MAX_FEED = 200;
const PING_MS = 20000;
const SILENT_MS = 45000;

/** The socket: `onFrame(frame)`, `onState('connecting'|'live'|'offline')`. */
class Watch {
  constructor(personaId, onFrame, onState) {
    this.personaId = personaId;
    this.onFrame = onFrame;
    this.onState = onState;
    this.attempt = 0;
    this.closed = false;
    this.ws = null;
    this.onOnline = () => { this.attempt = 0; if (!this.ws) this.connect(); };
    window.addEventListener('online', this.onOnline);
    this.connect();
  }

  connect() {
    if (this.closed) return;
    clearTimeout(this.retry);
    this.onState('connecting');
    let url = wsUrl('/v1/classroom/ws');
    if (this.personaId) url += `&persona_id=${encodeURIComponent(this.personaId)}`;
    let ws;
    try { ws = new WebSocket(url); } catch { this.scheduleRetry(); return; }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.lastFrameAt = Date.now();
      clearInterval(this.pinger);
      this.pinger = setInterval(() => {
        if (Date.now() - this.lastFrameAt > SILENT_MS) ws.close(4000, 'silent');
        else if (ws.readyState === 1) ws.send('{"type":"ping"}');
      }, PING_MS);
    };
    ws.onmessage = (m) => {
      this.lastFrameAt = Date.now();
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      if (f.type === 'snapshot') { this.attempt = 0; this.onState('live'); }
      this.onFrame(f);
    };
    ws.onclose = (e) => {
      clearInterval(this.pinger);
      if (this.ws !== ws || this.closed) return;
      this.ws = null;
      this.onState('offline');
      if (e.code === 4401) {
        refresh(true).then(() => this.connect(), () => {});
        return;
      }
      // Refused before the upgrade (an expired token, say): refresh if due.
      (opened ? Promise.resolve() : refresh().catch(() => {})).then(() => this.scheduleRetry());
    };
  }

  scheduleRetry() {
    clearTimeout(this.retry);
    const cap = Math.min(15000, 500 * 2 ** this.attempt);
    this.attempt += 1;
    this.retry = setTimeout(() => this.connect(), Math.random() * cap);
  }

  /** Watches another persona (or all: ''), on a new connection. */
  setPersona(personaId) {
    this.personaId = personaId;
    const old = this.ws;
    this.ws = null;
    if (old) old.close(1000, 'filter');
    this.attempt = 0;
    this.connect();
  }

  close() {
    this.closed = true;
    clearTimeout(this.retry);
    clearInterval(this.pinger);
    window.removeEventListener('online', this.onOnline);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
  }
}

export async function render(main) {
  const status = h('p', { id: 'classroom-status', class: 'live-state', role: 'status', 'data-state': 'connecting' }, t('classroom.status.connecting'));
  const select = h('select', { id: 'classroom-persona' }, h('option', { value: '' }, t('analytics.persona.all')));
  const online = h('ul', { id: 'online', class: 'online' });
  const onlineTitle = h('h2', { id: 'h-online' }, t('classroom.online', { n: 0 }));
  const feed = h('ol', { id: 'feed', class: 'feed', 'aria-labelledby': 'h-feed' });
  const announcer = h('p', { id: 'classroom-announce', class: 'visually-hidden', 'aria-live': 'polite' });
  main.append(h('h1', {}, t('classroom.title')), status,
    h('div', { class: 'filters' }, field(t('analytics.persona'), select)),
    h('div', { class: 'classroom' },
      h('section', { 'aria-labelledby': 'h-online' }, onlineTitle, online),
      h('section', { 'aria-labelledby': 'h-feed' }, h('h2', { id: 'h-feed' }, t('classroom.feed')), feed)),
    announcer);

  let personas = [];
  try { personas = (await get('/v1/personas?limit=200')).items; } catch { /* names fall back */ }
  select.append(...personas.map((p) => h('option', { value: p.id }, p.name)));
  const personaName = (id) => (personas.find((p) => p.id === id) || {}).name || t('chat.tutor');

  // Who is online: user → their sessions (a student may have several).
  const people = new Map();
  const drawOnline = () => {
    onlineTitle.textContent = t('classroom.online', { n: num(people.size) });
    online.replaceChildren(...[...people.entries()].map(([id, p]) => {
      const sessions = [...p.sessions.values()];
      const since = sessions.map((s) => s.since).filter(Boolean).sort()[0];
      return h('li', { 'data-user-id': id },
        h('strong', {}, p.name), ' ',
        h('span', { class: 'muted small' }, [...new Set(sessions.map((s) => personaName(s.persona_id)))].join(', '),
          since ? ` · ${t('classroom.since', { time: time(since) })}` : ''));
    }));
    if (!people.size) online.append(h('li', { class: 'muted' }, t('classroom.online.none')));
  };
  const presence = (f) => {
    const p = people.get(f.user_id) || { name: f.full_name, sessions: new Map() };
    if (f.online) p.sessions.set(f.session_id, { persona_id: f.persona_id, since: f.since || f.at });
    else p.sessions.delete(f.session_id);
    if (p.sessions.size) people.set(f.user_id, p); else people.delete(f.user_id);
  };

  // The feed, newest first: question key (session:seq) → its item.
  const items = new Map();
  const early = new Map(); // answers whose question has not arrived yet
  const setResult = (item, state, text) => {
    item.li.dataset.state = state;
    item.result.textContent = text;
  };
  const answer = (item, f) => {
    item.li.dataset.citations = f.citations;
    item.li.dataset.firstTokenMs = f.first_token_ms;
    const took = ms(f.first_token_ms);
    if (f.refusal && f.refusal !== 'not_covered') setResult(item, 'declined', t('classroom.declined', { reason: t(`reason.${f.refusal}`), ms: took }));
    else if (f.grounded) setResult(item, 'answered', t('classroom.answered', { n: num(f.citations), ms: took }));
    else setResult(item, 'not_covered', t('classroom.not_covered', { ms: took }));
  };
  const flag = (item, f) => {
    item.li.classList.add('flagged');
    item.li.dataset.flag = f.reason;
    item.flag.hidden = false;
    item.flag.textContent = t('classroom.flagged', { reason: t(`reason.${f.reason}`) });
  };
  const addQuestion = (q, live) => {
    const key = `${q.session_id}:${q.seq}`;
    if (items.has(key)) return items.get(key);
    const result = h('p', { class: 'result small' }, live ? t('classroom.waiting') : '');
    const flagNote = h('p', { class: 'badge danger', hidden: true });
    const li = h('li', { class: 'feed-item', 'data-key': key, 'data-session-id': q.session_id, 'data-seq': q.seq, 'data-user-id': q.user_id, 'data-state': live ? 'waiting' : 'earlier' },
      h('p', { class: 'meta small' }, h('strong', {}, q.full_name), ' · ', personaName(q.persona_id), ' · ',
        h('time', { datetime: q.at, title: dateTime(q.at) }, time(q.at))),
      h('p', { class: 'text' }, q.text), flagNote, result);
    const item = { li, result, flag: flagNote };
    items.set(key, item);
    feed.prepend(li);
    while (feed.children.length > MAX_FEED) {
      const last = feed.lastElementChild;
      items.delete(last.dataset.key);
      last.remove();
    }
    if (early.has(key)) {
      answer(item, early.get(key));
      early.delete(key);
    }
    return item;
  };
  const keepAnswer = (key, f) => {
    early.set(key, f);
    if (early.size > MAX_FEED) early.delete(early.keys().next().value);
  };

  const onFrame = (f) => {
    switch (f.type) {
      case 'snapshot':
        people.clear();
        for (const s of f.online || []) presence({ ...s, online: true });
        drawOnline();
        for (const q of f.recent || []) addQuestion(q, false);
        break;
      case 'presence':
        presence(f);
        drawOnline();
        break;
      case 'question':
        addQuestion(f, true);
        announcer.textContent = t('classroom.announce', { name: f.full_name, text: f.text });
        break;
      case 'answer': {
        const item = items.get(`${f.session_id}:${f.reply_to}`);
        if (item) answer(item, f); else keepAnswer(`${f.session_id}:${f.reply_to}`, f);
        break;
      }
      case 'flag': {
        // A flag names its question; shown on its own if the question is not in the feed.
        const item = items.get(`${f.session_id}:${f.seq}`) || addQuestion(f, true);
        flag(item, f);
        announcer.textContent = t('classroom.announce.flag', { name: f.full_name, reason: t(`reason.${f.reason}`) });
        break;
      }
      default:
    }
  };
  const onState = (s) => {
    status.dataset.state = s;
    status.textContent = t(`classroom.status.${s}`);
  };

  drawOnline();
  const watch = new Watch('', onFrame, onState);
  select.addEventListener('change', () => {
    people.clear();
    items.clear();
    early.clear();
    feed.replaceChildren();
    drawOnline();
    watch.setPersona(select.value);
  });
  return () => watch.close();
}
