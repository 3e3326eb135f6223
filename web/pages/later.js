// Pages whose API is not built yet say so plainly, and show what they can.
import { h } from '../dom.js';
import { t } from '../i18n.js';
import { get } from '../api.js';
import { errorText } from './auth.js';

async function page(main, titleKey, path, show) {
  main.append(h('h1', {}, t(titleKey)));
  const body = h('div', { id: 'later' }, h('p', { role: 'status' }, t('later.loading')));
  main.append(body);
  try {
    const data = await get(path);
    body.replaceChildren(show(data));
  } catch (err) {
    body.replaceChildren(err.status === 404 || err.status === 405
      ? h('p', { class: 'notice', role: 'status' }, t('later.unavailable'))
      : h('p', { class: 'alert', role: 'alert' }, errorText(err)));
  }
}

export function analytics(main) {
  return page(main, 'later.analytics', '/v1/analytics/overview', (o) => h('dl', { class: 'figures' },
    h('dt', {}, t('later.students')), h('dd', {}, o.active_students),
    h('dt', {}, t('later.questions')), h('dd', {}, o.questions),
    h('dt', {}, t('later.grounded')), h('dd', {}, `${Math.round((o.grounded_rate || 0) * 100)}%`)));
}

export function billing(main) {
  return page(main, 'later.billing', '/v1/subscription', (s) => h('dl', { class: 'figures' },
    h('dt', {}, t('later.plan')), h('dd', {}, s.plan),
    h('dt', {}, t('later.status')), h('dd', {}, s.status)));
}
