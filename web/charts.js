// Charts as inline SVG built with DOM calls: no library, and no inline
// style (the CSP forbids it), so colours come from classes in app.css. Each
// chart is an image with a title and a one-line summary, followed by a
// visually hidden table of the same figures for screen readers.
import { h } from './dom.js';
import { num, day } from './format.js';

const NS = 'http://www.w3.org/2000/svg';
let uid = 0;

// The drawing's width follows the screen's (up to 600), so text keeps its size on a phone.
const width = () => Math.round(Math.max(300, Math.min(600, (window.innerWidth || 600) - 40)));

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** 1, 2, 5, 10, 20, 50, … at or above n. */
function niceMax(n) {
  if (n <= 5) return 5;
  const p = 10 ** Math.floor(Math.log10(n));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= n);
}

function svgRoot(id, title, summary, W, height) {
  const tid = `chart-t${++uid}`;
  return s('svg', { id, class: 'chart', viewBox: `0 0 ${W} ${height}`, role: 'img', 'aria-labelledby': tid, 'aria-label': `${title}. ${summary}` },
    s('title', { id: tid }, `${title}. ${summary}`));
}

function hiddenTable(caption, head, rows) {
  return h('table', { class: 'visually-hidden' }, h('caption', {}, caption),
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map(([first, ...rest]) => h('tr', {}, h('th', { scope: 'row' }, first), rest.map((c) => h('td', {}, c))))));
}

/**
 * Questions per day as bars, and (unless `students` is false) active
 * students as a line. Bars carry `data-date` and `data-questions`.
 * labels: {title, summary, date, questions, students}
 */
export function dailyChart(id, days, labels, students = true) {
  const W = width();
  const H = 220;
  const left = 40;
  const top = 12;
  const bottom = 28;
  const plotW = W - left - 8;
  const plotH = H - top - bottom;
  const max = niceMax(Math.max(0, ...days.map((d) => Math.max(d.questions, students ? d.active_students : 0))));
  const y = (v) => top + plotH - (v / max) * plotH;
  const slot = plotW / Math.max(1, days.length);
  const svg = svgRoot(id, labels.title, labels.summary, W, H);
  for (const v of [0, max / 2, max].filter(Number.isInteger)) {
    svg.append(s('line', { class: v ? 'grid' : 'axis', x1: left, x2: W - 8, y1: y(v), y2: y(v) }),
      s('text', { class: 'tick', x: left - 6, y: y(v) + 4, 'text-anchor': 'end' }, num(v)));
  }
  const step = Math.ceil(days.length / Math.floor(plotW / 75));
  days.forEach((d, i) => {
    const x = left + i * slot;
    const bar = s('rect', {
      class: 'bar', x: x + slot * 0.2, y: y(d.questions), width: Math.max(1, slot * 0.6), height: Math.max(0, top + plotH - y(d.questions)),
      'data-date': d.date, 'data-questions': d.questions, 'data-active-students': d.active_students,
    }, s('title', {}, `${day(d.date)}: ${labels.questions} ${num(d.questions)}${students ? `, ${labels.students} ${num(d.active_students)}` : ''}`));
    svg.append(bar);
    if (i % step === 0) svg.append(s('text', { class: 'tick', x: x + slot / 2, y: H - 8, 'text-anchor': 'middle' }, day(d.date, true)));
  });
  if (students && days.length) {
    const pts = days.map((d, i) => [left + i * slot + slot / 2, y(d.active_students)]);
    svg.append(s('polyline', { class: 'line', points: pts.map((p) => p.join(',')).join(' ') }));
    days.forEach((d, i) => svg.append(s('circle', { class: 'dot', cx: pts[i][0], cy: pts[i][1], r: 3, 'data-date': d.date, 'data-active-students': d.active_students })));
  }
  const legend = h('ul', { class: 'legend', 'aria-hidden': 'true' },
    h('li', {}, h('span', { class: 'swatch bar' }), labels.questions),
    students ? h('li', {}, h('span', { class: 'swatch line' }), labels.students) : null);
  const head = [labels.date, labels.questions].concat(students ? [labels.students] : []);
  const rows = days.map((d) => [day(d.date), num(d.questions)].concat(students ? [num(d.active_students)] : []));
  return h('figure', { class: 'chart-box' }, svg, legend, hiddenTable(labels.title, head, rows));
}

/**
 * Horizontal bars, one per item {label, value, data}: the label above its
 * bar, the value after it. `data` becomes the bar's data-* attributes.
 * labels: {title, summary, name, value}
 */
export function barChart(id, items, labels) {
  const row = 44;
  const H = Math.max(row, items.length * row) + 4;
  const max = Math.max(1, ...items.map((i) => i.value));
  const W = width();
  const barMax = W - 80;
  const svg = svgRoot(id, labels.title, labels.summary, W, H);
  items.forEach((it, i) => {
    const y0 = i * row;
    const w = Math.max(2, (it.value / max) * barMax);
    const data = {};
    for (const [k, v] of Object.entries(it.data || {})) data[`data-${k}`] = v;
    svg.append(
      s('text', { class: 'label', x: 0, y: y0 + 14 }, it.label),
      s('rect', { class: 'bar', x: 0, y: y0 + 20, width: w, height: 16, 'data-value': it.value, ...data }, s('title', {}, `${it.label}: ${num(it.value)}`)),
      s('text', { class: 'tick', x: w + 6, y: y0 + 33 }, num(it.value)));
  });
  return h('figure', { class: 'chart-box' }, svg, hiddenTable(labels.title, [labels.name, labels.value], items.map((it) => [it.label, num(it.value)])));
}
