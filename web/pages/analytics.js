// Teachers and admins: what the students ask, when, and what the material
// does not cover yet; one student's activity; CSV exports. The period and
// persona filter are kept in the URL (?from&to&persona_id), so a reload or
// a shared link shows the same view.
import { h, field, showFieldErrors } from '../dom.js';
import { t } from '../i18n.js';
import { get, api } from '../api.js';
import { errorText } from './auth.js';
import { dailyChart, barChart } from '../charts.js';
import { num, pct, ms, day, dateTime, isoDay } from '../format.js';

const DAY_RE = /^\d{4}-\d{2}-\d{2}$/;

function readPeriod(query) {
  const from = query.get('from');
  const to = query.get('to');
  return {
    from: DAY_RE.test(from || '') ? from : isoDay(6),
    to: DAY_RE.test(to || '') ? to : isoDay(0),
    persona_id: query.get('persona_id') || '',
  };
}

function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  return q.toString();
}

const alertBox = () => h('p', { class: 'alert', role: 'alert', hidden: true });
function showError(box, err) { box.hidden = !err; box.textContent = err ? errorText(err) : ''; }
const loading = () => h('p', { class: 'loading', role: 'status' }, t('analytics.loading'));

/** From/to dates and, with `personas`, the persona filter; `apply(period)` on submit. */
function periodForm(period, personas, apply) {
  const from = h('input', { type: 'date', name: 'from', id: 'period-from', required: true, value: period.from, max: isoDay(0) });
  const to = h('input', { type: 'date', name: 'to', id: 'period-to', required: true, value: period.to, max: isoDay(0) });
  const persona = personas ? h('select', { name: 'persona_id', id: 'period-persona' },
    h('option', { value: '' }, t('analytics.persona.all')),
    personas.map((p) => h('option', { value: p.id, selected: p.id === period.persona_id }, p.name))) : null;
  const form = h('form', { novalidate: true, class: 'filters', id: 'period', 'aria-label': t('analytics.period') },
    field(t('analytics.from'), from), field(t('analytics.to'), to),
    persona ? field(t('analytics.persona'), persona) : null,
    h('button', { type: 'submit' }, t('analytics.apply')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    if (!DAY_RE.test(from.value) || !DAY_RE.test(to.value) || from.value > to.value) {
      showFieldErrors(form, { field: DAY_RE.test(from.value) ? 'to' : 'from', detail: t('analytics.period.invalid') });
      return;
    }
    apply({ from: from.value, to: to.value, persona_id: persona ? persona.value : '' });
  });
  return form;
}

/** A figure's change against the previous period, as a symbol and words. */
function change(cur, prev, fmt) {
  if (cur === null || cur === undefined || prev === null || prev === undefined) return h('dd', { class: 'change muted small' }, t('analytics.change.none'));
  const dir = cur > prev ? 'up' : cur < prev ? 'down' : 'same';
  const symbol = { up: '▲', down: '▼', same: '=' }[dir];
  return h('dd', { class: `change ${dir} small`, 'data-change': dir },
    h('span', { 'aria-hidden': 'true' }, `${symbol} `), t(`analytics.change.${dir}`, { previous: fmt(prev) }));
}

function overview(o) {
  const p = o.previous || { first_token_ms: {} };
  const figures = [
    ['active-students', t('analytics.fig.students'), o.active_students, p.active_students, num],
    ['sessions', t('analytics.fig.sessions'), o.sessions, p.sessions, num],
    ['questions', t('analytics.fig.questions'), o.questions, p.questions, num],
    ['grounded-rate', t('analytics.fig.grounded'), o.grounded_rate, p.grounded_rate, pct],
    ['refusals', t('analytics.fig.refusals'), o.refusals, p.refusals, num],
    ['first-token-p50', t('analytics.fig.p50'), o.first_token_ms.p50, p.first_token_ms.p50, ms],
    ['first-token-p95', t('analytics.fig.p95'), o.first_token_ms.p95, p.first_token_ms.p95, ms],
  ];
  const dl = h('dl', { class: 'stats', id: 'overview', 'data-from': o.from, 'data-to': o.to });
  for (const [key, label, cur, prev, fmt] of figures) {
    dl.dataset[key.replace(/-(\w)/g, (m, c) => c.toUpperCase())] = cur ?? '';
    dl.append(h('div', { class: 'stat', 'data-figure': key, 'data-value': cur ?? '', 'data-previous': prev ?? '' },
      h('dt', {}, label), h('dd', { class: 'value' }, fmt(cur)), change(cur, prev, fmt)));
  }
  return [dl, o.previous ? h('p', { class: 'muted small' }, t('analytics.compared', { from: day(o.previous.from), to: day(o.previous.to) })) : null];
}

function byDayChart(days, students) {
  const total = days.reduce((n, d) => n + d.questions, 0);
  return dailyChart('by-day-chart', days, {
    title: t('analytics.chart.by_day'),
    summary: t('analytics.chart.by_day.summary', { n: num(total), days: num(days.length) }),
    date: t('analytics.col.date'), questions: t('analytics.fig.questions'), students: t('analytics.fig.students'),
  }, students);
}

function personaChart(id, rows, personaName) {
  if (!rows.length) return h('p', { class: 'muted' }, t('analytics.none'));
  const items = rows.map((r) => ({ label: r.name || personaName(r.persona_id), value: r.questions, data: { 'persona-id': r.persona_id, questions: r.questions } }));
  return barChart(id, items, {
    title: t('analytics.chart.personas'),
    summary: t('analytics.chart.personas.summary', { name: items[0].label }),
    name: t('analytics.persona'), value: t('analytics.fig.questions'),
  });
}

function groundedBadge(grounded) {
  if (grounded === true) return h('span', { class: 'badge ok' }, t('analytics.grounded'));
  if (grounded === false) return h('span', { class: 'badge warn' }, t('analytics.not_covered'));
  return null;
}

const TREND_SYMBOL = { improving: '↗', stable: '→', declining: '↘', insufficient_data: '·' };
function trend(value) {
  return h('span', { class: `trend ${value}`, 'data-trend': value },
    h('span', { 'aria-hidden': 'true' }, `${TREND_SYMBOL[value] || ''} `), t(`analytics.trend.${value}`));
}

/** A "more" button for a paged list: `load(cursor)` returns the next cursor. */
function moreButton(id, load, onError) {
  let cursor = null;
  const btn = h('button', { type: 'button', class: 'secondary', id, hidden: true }, t('analytics.more'));
  const set = (next) => { cursor = next; btn.hidden = !next; };
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    try { set(await load(cursor)); } catch (err) { onError(err); } finally { btn.disabled = false; }
  });
  return { btn, set };
}

async function download(report, period, status) {
  status.textContent = t('analytics.export.working');
  try {
    const res = await api('GET', `/v1/analytics/export?${qs({ report, ...period })}`, { raw: true });
    const url = URL.createObjectURL(await res.blob());
    const a = h('a', { href: url, download: `bwenge-${report}-${period.from}-${period.to}.csv`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    status.textContent = t('analytics.export.done');
  } catch (err) {
    status.textContent = errorText(err);
  }
}

export async function render(main, ctx) {
  const period = readPeriod(ctx.query);
  const alert = alertBox();
  main.append(h('h1', {}, t('analytics.title')), alert);
  let personas = [];
  try {
    personas = (await get('/v1/personas?limit=200')).items;
  } catch (err) {
    showError(alert, err);
  }
  const personaName = (id) => (personas.find((p) => p.id === id) || {}).name || t('analytics.persona.deleted');

  const sections = {
    overview: h('section', { 'aria-labelledby': 'h-overview' }),
    activity: h('section', { 'aria-labelledby': 'h-activity' }),
    personas: h('section', { 'aria-labelledby': 'h-personas' }),
  };
  const studentsBody = h('tbody', {});
  const studentsMore = moreButton('students-more', (c) => loadStudents(c), (err) => showError(alert, err));
  const gaps = h('ol', { class: 'gaps', id: 'gaps' });
  const flags = h('ol', { class: 'flags', id: 'flags' });
  const flagsMore = moreButton('flags-more', (c) => loadFlags(c), (err) => showError(alert, err));
  const exportStatus = h('p', { class: 'muted small', role: 'status' });

  const form = periodForm(period, personas, (next) => {
    Object.assign(period, next);
    history.replaceState(null, '', `/analytics?${qs(period)}`);
    load();
  });
  const exportButtons = ['questions', 'students', 'daily'].map((r) => h('button', {
    type: 'button', class: 'secondary', id: `export-${r}`, onclick: () => download(r, period, exportStatus),
  }, t(`analytics.export.${r}`)));

  main.append(form,
    h('h2', { id: 'h-overview' }, t('analytics.overview')), sections.overview,
    h('h2', { id: 'h-activity' }, t('analytics.chart.by_day')), sections.activity,
    h('h2', { id: 'h-personas' }, t('analytics.chart.personas')), sections.personas,
    h('h2', { id: 'h-students' }, t('analytics.students')),
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'h-students' }, h('table', { class: 'table', id: 'students', 'aria-labelledby': 'h-students' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, t('analytics.col.student')), h('th', { scope: 'col' }, t('analytics.fig.questions')),
        h('th', { scope: 'col' }, t('analytics.fig.sessions')), h('th', { scope: 'col' }, t('analytics.col.days')),
        h('th', { scope: 'col' }, t('analytics.col.last')), h('th', { scope: 'col' }, t('analytics.col.trend')))),
      studentsBody)),
    studentsMore.btn,
    h('h2', {}, t('analytics.gaps')), h('p', { class: 'muted' }, t('analytics.gaps.intro')), gaps,
    h('h2', {}, t('analytics.flags')), flags, flagsMore.btn,
    h('h2', { id: 'h-export' }, t('analytics.export')),
    h('div', { class: 'actions', role: 'group', 'aria-labelledby': 'h-export' }, exportButtons), exportStatus);

  const studentRow = (s) => {
    const link = h('a', { href: `/analytics/students/${s.user_id}?${qs(period)}` }, s.full_name);
    return h('tr', { 'data-user-id': s.user_id, class: 'clickable', onclick: (e) => { if (!e.target.closest('a')) link.click(); } },
      h('th', { scope: 'row' }, link), h('td', {}, num(s.questions)), h('td', {}, num(s.sessions)), h('td', {}, num(s.active_days)),
      h('td', {}, dateTime(s.last_active_at)), h('td', {}, trend(s.trend)));
  };
  async function loadStudents(cursor) {
    const r = await get(`/v1/analytics/students?${qs({ ...period, cursor })}`);
    if (!cursor && !r.items.length) studentsBody.append(h('tr', {}, h('td', { colspan: 6 }, t('analytics.students.none'))));
    studentsBody.append(...r.items.map(studentRow));
    return r.next_cursor;
  }

  const gapItem = (g) => h('li', { class: 'card gap', 'data-count': g.count },
    h('h3', {}, g.label),
    h('p', { class: 'muted small' }, t('analytics.gaps.count', { n: num(g.count), date: dateTime(g.last_asked_at) }),
      g.persona_ids.length ? ` · ${g.persona_ids.map(personaName).join(', ')}` : ''),
    g.examples.length ? h('ul', { class: 'examples', 'aria-label': t('analytics.gaps.examples') }, g.examples.map((x) => h('li', {}, `“${x}”`))) : null,
    h('p', { class: 'hint' }, h('a', { href: '/material' }, t('analytics.gaps.upload'))));

  const flagItem = (f) => h('li', { class: 'card flag', 'data-reason': f.reason, 'data-session-id': f.session_id || '', 'data-seq': f.seq ?? '' },
    h('p', { class: 'small' }, h('strong', {}, f.full_name || t('analytics.student.removed')), ' · ',
      f.persona_id ? personaName(f.persona_id) : '', ' · ', dateTime(f.at)),
    h('p', {}, h('span', { class: 'badge danger' }, t(`reason.${f.reason}`)), ' ', f.text),
    f.session_id ? h('p', { class: 'small' }, h('a', { href: `/history/${f.session_id}` }, t('analytics.open.session'))) : null);
  async function loadFlags(cursor) {
    const r = await get(`/v1/analytics/flags?${qs({ ...period, cursor })}`);
    if (!cursor && !r.items.length) flags.append(h('li', { class: 'muted' }, t('analytics.flags.none')));
    flags.append(...r.items.map(flagItem));
    return r.next_cursor;
  }

  async function load() {
    showError(alert, null);
    showFieldErrors(form, null);
    for (const s of Object.values(sections)) s.replaceChildren(loading());
    studentsBody.replaceChildren();
    gaps.replaceChildren();
    flags.replaceChildren();
    studentsMore.set(null);
    flagsMore.set(null);
    const fail = (err) => {
      // A bad period is the form's to show; anything else goes in the alert.
      if (!showFieldErrors(form, err)) showError(alert, err);
    };
    try {
      const o = await get(`/v1/analytics/overview?${qs(period)}`);
      sections.overview.replaceChildren(...overview(o).filter(Boolean));
      sections.activity.replaceChildren(byDayChart(o.by_day, true));
      sections.personas.replaceChildren(personaChart('personas-chart', o.top_personas, personaName));
    } catch (err) {
      for (const s of Object.values(sections)) s.replaceChildren();
      fail(err);
      return;
    }
    await Promise.all([
      loadStudents(null).then(studentsMore.set, fail),
      get(`/v1/analytics/gaps?${qs(period)}`).then((r) => {
        if (!r.items.length) gaps.append(h('li', { class: 'muted' }, t('analytics.gaps.none')));
        gaps.append(...r.items.map(gapItem));
      }, fail),
      loadFlags(null).then(flagsMore.set, fail),
    ]);
  }
  await load();
}

export async function student(main, ctx) {
  const id = ctx.params[0];
  const period = readPeriod(ctx.query);
  const alert = alertBox();
  const title = h('h1', {}, t('analytics.student'));
  const back = h('a', { href: `/analytics?${qs(period)}` }, t('analytics.back'));
  const body = h('div', { id: 'student' });
  main.append(h('p', { class: 'small' }, back), title, alert);
  const personas = get('/v1/personas?limit=200').then((r) => r.items, () => []);
  let personaName = () => '';
  const form = periodForm(period, null, (next) => {
    Object.assign(period, { from: next.from, to: next.to });
    history.replaceState(null, '', `/analytics/students/${id}?${qs(period)}`);
    back.setAttribute('href', `/analytics?${qs(period)}`);
    load();
  });
  main.append(form, body);

  async function load() {
    showError(alert, null);
    body.replaceChildren(loading());
    try {
      const [s, list] = await Promise.all([get(`/v1/analytics/students/${id}?${qs({ from: period.from, to: period.to })}`), personas]);
      personaName = (pid) => (list.find((p) => p.id === pid) || {}).name || t('analytics.persona.deleted');
      title.textContent = s.full_name;
      document.title = `${s.full_name} · Bwenge`;
      body.replaceChildren(
        h('dl', { class: 'stats', id: 'student-figures', 'data-user-id': s.user_id, 'data-questions': s.questions, 'data-sessions': s.sessions, 'data-active-days': s.active_days, 'data-trend': s.trend },
          h('div', { class: 'stat' }, h('dt', {}, t('analytics.fig.questions')), h('dd', { class: 'value' }, num(s.questions))),
          h('div', { class: 'stat' }, h('dt', {}, t('analytics.fig.sessions')), h('dd', { class: 'value' }, num(s.sessions))),
          h('div', { class: 'stat' }, h('dt', {}, t('analytics.col.days')), h('dd', { class: 'value' }, num(s.active_days))),
          h('div', { class: 'stat' }, h('dt', {}, t('analytics.col.trend')), h('dd', { class: 'value' }, trend(s.trend)))),
        h('h2', {}, t('analytics.chart.by_day')), byDayChart(s.by_day, false),
        h('h2', {}, t('analytics.chart.personas')), personaChart('by-persona-chart', s.by_persona, personaName),
        h('h2', {}, t('analytics.recent')),
        s.recent_questions.length
          ? h('ol', { class: 'recent', id: 'recent-questions' }, s.recent_questions.map((q) => h('li', { 'data-grounded': String(q.grounded) },
            h('p', { class: 'muted small' }, dateTime(q.at), q.persona_id ? ` · ${personaName(q.persona_id)}` : '', ' ', groundedBadge(q.grounded)),
            h('p', {}, q.text),
            q.session_id ? h('p', { class: 'small' }, h('a', { href: `/history/${q.session_id}` }, t('analytics.open.session'))) : null)))
          : h('p', { class: 'muted' }, t('analytics.none')));
    } catch (err) {
      body.replaceChildren();
      if (!showFieldErrors(form, err)) showError(alert, err);
    }
  }
  await load();
}
