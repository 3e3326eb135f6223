// The shell: routes, header, language, offline banner. Each page module
// exports `render(main, ctx)` and may return a cleanup function.
import { h, clear, append, $ } from './dom.js';
import { t, setLang, initialLang, LANGUAGES, lang, onLangChange } from './i18n.js';
import { currentUser, onAuthChange, signOut, get, updateUser } from './api.js';
import * as auth from './pages/auth.js';
import * as chat from './pages/chat.js';
import * as history from './pages/history.js';
import * as material from './pages/material.js';
import * as personas from './pages/personas.js';
import * as members from './pages/members.js';
import * as analytics from './pages/analytics.js';
import * as classroom from './pages/classroom.js';
import * as billing from './pages/billing.js';

const STAFF = ['admin', 'teacher'];

// [pattern, page, who may see it: null = anyone, 'in' = signed in, or roles]
const ROUTES = [
  [/^\/login$/, auth.login, null],
  [/^\/register$/, auth.register, null],
  [/^\/accept-invitation$/, auth.acceptInvitation, null],
  [/^\/invite\/accept$/, auth.acceptInvitation, null],
  [/^\/verify-email$/, auth.verifyEmail, null],
  [/^\/reset-password$/, auth.resetPassword, null],
  [/^\/chat$/, chat.pick, 'in'],
  [/^\/chat\/([0-9a-f-]{36})$/, chat.render, 'in'],
  [/^\/history$/, history.render, 'in'],
  [/^\/history\/([0-9a-f-]{36})$/, history.session, 'in'],
  [/^\/material$/, material.render, STAFF],
  [/^\/personas$/, personas.render, STAFF],
  [/^\/personas\/new$/, personas.edit, STAFF],
  [/^\/personas\/([0-9a-f-]{36})$/, personas.edit, STAFF],
  [/^\/members$/, members.render, STAFF],
  [/^\/analytics$/, analytics.render, STAFF],
  [/^\/analytics\/students\/([0-9a-f-]{36})$/, analytics.student, STAFF],
  [/^\/classroom$/, classroom.render, STAFF],
  [/^\/billing$/, billing.render, STAFF],
];

let cleanup = null;
let routed = 0;

export function navigate(path, replace = false) {
  if (replace) history_().replaceState(null, '', path);
  else history_().pushState(null, '', path);
  route();
}

function history_() {
  return window.history;
}

function home(user) {
  if (!user) return '/login';
  return STAFF.includes(user.role) ? '/material' : '/chat';
}

function route() {
  if (cleanup) { try { cleanup(); } catch { /* page gone */ } cleanup = null; }
  const user = currentUser();
  const path = location.pathname.replace(/\/+$/, '') || '/';
  // Stripe sends the admin back to `/?checkout=…&payment=…`.
  if (path === '/') return navigate(location.search.includes('checkout=') ? `/billing${location.search}` : home(user), true);
  const main = $('#main');
  let match = null;
  for (const [re, page, who] of ROUTES) {
    const m = path.match(re);
    if (m) { match = { page, who, params: m.slice(1) }; break; }
  }
  renderHeader();
  clear(main);
  if (!match) {
    main.append(h('h1', { tabindex: '-1' }, t('notfound.title')), h('p', {}, h('a', { href: home(user) }, t('notfound.home'))));
    focusTitle(main);
    return;
  }
  if (match.who && !user) {
    const next = encodeURIComponent(location.pathname + location.search);
    return navigate(`/login?next=${next}`, true);
  }
  if (Array.isArray(match.who) && !match.who.includes(user.role)) return navigate(home(user), true);
  document.body.dataset.page = path.split('/')[1] || 'home';
  const ctx = { params: match.params, query: new URLSearchParams(location.search), navigate, user, home: () => home(currentUser()) };
  const generation = ++routed;
  const out = match.page(main, ctx);
  if (typeof out === 'function') cleanup = out;
  else if (out && typeof out.then === 'function') {
    out.then((c) => {
      if (typeof c !== 'function') return;
      // A page that finished loading after the user moved on is closed at once.
      if (generation === routed) cleanup = c;
      else c();
    });
  }
  focusTitle(main);
}

function focusTitle(main) {
  const h1 = main.querySelector('h1');
  if (h1) {
    h1.setAttribute('tabindex', '-1');
    document.title = `${h1.textContent} · Bwenge`;
    // Move focus for screen readers only after a navigation, not on first load.
    if (navigated) h1.focus({ preventScroll: false });
  }
}
let navigated = false;

function link(path, label) {
  const current = location.pathname === path || location.pathname.startsWith(`${path}/`);
  return h('a', { href: path, 'aria-current': current ? 'page' : null }, label);
}

function renderHeader() {
  const top = $('#top');
  clear(top);
  const user = currentUser();
  const select = h('select', {
    id: 'lang', 'aria-label': t('nav.language'),
    onchange: async (e) => { await setLang(e.target.value); },
  }, Object.entries(LANGUAGES).map(([code, name]) => h('option', { value: code, selected: code === lang() }, name)));
  const nav = [];
  if (user) {
    if (STAFF.includes(user.role)) {
      nav.push(link('/material', t('nav.material')), link('/personas', t('nav.personas')), link('/chat', t('nav.chat')),
        link('/history', t('nav.history')), link('/members', t('nav.members')), link('/analytics', t('nav.analytics')),
        link('/classroom', t('nav.classroom')), link('/billing', t('nav.billing')));
    } else {
      nav.push(link('/chat', t('nav.chat')), link('/history', t('nav.history')));
    }
  }
  append(top, [
    h('a', { class: 'brand', href: '/' }, 'Bwenge'),
    user ? h('nav', { 'aria-label': t('nav.main') }, h('ul', {}, nav.map((a) => h('li', {}, a)))) : null,
    h('div', { class: 'top-tools' },
      h('label', { class: 'visually-hidden', for: 'lang' }, t('nav.language')),
      select,
      user ? h('span', { class: 'who' }, user.full_name) : null,
      user ? h('button', { type: 'button', id: 'signout', class: 'secondary', onclick: async () => { await signOut(); navigate('/login'); } }, t('nav.signout')) : null,
    ),
  ]);
}

function showBanner(text) {
  const b = $('#banner');
  if (text) { b.textContent = text; b.hidden = false; } else { b.textContent = ''; b.hidden = true; }
}

export function setBanner(text) {
  showBanner(text);
}

document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/v1/') || url.pathname.startsWith('/static/')) return;
  e.preventDefault();
  navigated = true;
  navigate(url.pathname + url.search + url.hash);
});
window.addEventListener('popstate', () => { navigated = true; route(); });
window.addEventListener('offline', () => showBanner(t('banner.offline')));
window.addEventListener('online', () => showBanner(null));
onAuthChange((a) => {
  if (!a && !['/login', '/register', '/accept-invitation', '/verify-email', '/reset-password'].includes(location.pathname)) {
    navigate('/login', true);
  } else {
    renderHeader();
  }
});

async function boot() {
  await setLang(initialLang()).catch(() => setLang('en'));
  // Registered after the first language is set: the page is drawn once.
  onLangChange(() => route());
  if (!navigator.onLine) showBanner(t('banner.offline'));
  route();
  if (currentUser()) get('/v1/auth/me').then(updateUser).catch(() => {});
}

boot();
