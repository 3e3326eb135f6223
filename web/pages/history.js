// Past sessions: a student's own; staff see the organisation's.
import { h } from '../dom.js';
import { t } from '../i18n.js';
import { get } from '../api.js';
import { errorText } from './auth.js';
import { eventNode } from './chat.js';

const fmt = (iso) => { try { return new Date(iso).toLocaleString(); } catch { return iso; } };

export async function render(main) {
  const list = h('ul', { class: 'cards', id: 'sessions' });
  main.append(h('h1', {}, t('history.title')), list);
  try {
    const [{ items }, personas] = await Promise.all([get('/v1/chat/sessions?limit=100'), get('/v1/personas').then((r) => r.items).catch(() => [])]);
    const name = (id) => (personas.find((p) => p.id === id) || {}).name || t('chat.tutor');
    if (!items.length) list.append(h('li', {}, t('history.none')));
    for (const s of items) {
      list.append(h('li', { class: 'card' }, h('h2', {}, h('a', { href: `/history/${s.id}` }, name(s.persona_id))), h('p', { class: 'muted' }, fmt(s.created_at))));
    }
  } catch (err) {
    list.replaceWith(h('p', { class: 'alert', role: 'alert' }, errorText(err)));
  }
}

export async function session(main, ctx) {
  const id = ctx.params[0];
  const log = h('ol', { class: 'log-list' });
  const title = h('h1', {}, t('history.session'));
  main.append(title, h('div', { class: 'log', role: 'region', 'aria-label': t('chat.conversation'), tabindex: '0' }, log));
  try {
    const s = await get(`/v1/chat/sessions/${id}`);
    title.textContent = `${t('history.session')} · ${fmt(s.created_at)}`;
    for (const e of s.events) log.append(eventNode(e));
    main.append(h('p', {}, h('a', { class: 'button', href: `/chat/${s.persona_id}?session=${s.id}` }, t('history.continue'))));
  } catch (err) {
    log.replaceWith(h('p', { class: 'alert', role: 'alert' }, errorText(err)));
  }
}
