// Sign-in, registration, invitation acceptance, email verification and
// password reset. The last three open from the links in the mails
// (`/accept-invitation?token=…`, `/verify-email?token=…`,
// `/reset-password?token=…`).
import { h, field, showFieldErrors } from '../dom.js';
import { t } from '../i18n.js';
import { api, signedIn, currentUser } from '../api.js';

export function errorText(err) {
  if (!err) return '';
  const key = `error.${err.code}`;
  const known = t(key);
  if (err.code === 'network') return known;
  if (err.detail) return err.detail;
  return known === key ? t('error.generic') : known;
}

function alertBox() {
  return h('div', { class: 'alert', role: 'alert', hidden: true });
}

function showAlert(box, text, ok = false) {
  box.textContent = text || '';
  box.hidden = !text;
  box.classList.toggle('ok', ok);
}

function input(name, type, autocomplete, extra = {}) {
  return h('input', { name, type, autocomplete, required: true, ...extra });
}

function submitting(form, busy) {
  const b = form.querySelector('button[type=submit]');
  if (b) { b.disabled = busy; b.setAttribute('aria-busy', busy ? 'true' : 'false'); }
}

function afterSignIn(ctx) {
  const next = ctx.query.get('next');
  ctx.navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : ctx.home(), true);
}

function card(title, ...children) {
  return h('section', { class: 'card narrow' }, h('h1', {}, title), ...children);
}

export function login(main, ctx) {
  if (currentUser()) return afterSignIn(ctx);
  const alert = alertBox();
  const form = h('form', { novalidate: true },
    field(t('auth.email'), input('email', 'email', 'username', { id: 'login-email' })),
    field(t('auth.password'), input('password', 'password', 'current-password', { id: 'login-password' })),
    h('button', { type: 'submit' }, t('auth.signin')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    showAlert(alert, '');
    submitting(form, true);
    try {
      const answer = await api('POST', '/v1/auth/login', {
        anonymous: true,
        body: { email: form.email.value.trim(), password: form.password.value },
      });
      signedIn(answer);
      afterSignIn(ctx);
    } catch (err) {
      if (!showFieldErrors(form, err)) showAlert(alert, errorText(err));
    } finally {
      submitting(form, false);
    }
  });
  main.append(card(t('auth.signin.title'), alert, form,
    h('p', {}, h('a', { href: '/reset-password' }, t('auth.forgot'))),
    h('p', {}, t('auth.noaccount'), ' ', h('a', { href: '/register' }, t('auth.register.link'))),
  ));
}

export function register(main, ctx) {
  const alert = alertBox();
  const form = h('form', { novalidate: true },
    field(t('auth.school'), input('organization_name', 'text', 'organization')),
    field(t('auth.fullname'), input('full_name', 'text', 'name')),
    field(t('auth.email'), input('email', 'email', 'email')),
    field(t('auth.password'), input('password', 'password', 'new-password', { minlength: 10 }), t('auth.password.hint')),
    h('button', { type: 'submit' }, t('auth.register')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    showAlert(alert, '');
    submitting(form, true);
    try {
      const answer = await api('POST', '/v1/auth/register', {
        anonymous: true,
        body: {
          organization_name: form.organization_name.value.trim(),
          full_name: form.full_name.value.trim(),
          email: form.email.value.trim(),
          password: form.password.value,
        },
      });
      signedIn(answer);
      ctx.navigate('/material', true);
    } catch (err) {
      if (!showFieldErrors(form, err)) showAlert(alert, errorText(err));
    } finally {
      submitting(form, false);
    }
  });
  main.append(card(t('auth.register.title'), h('p', {}, t('auth.register.intro')), alert, form,
    h('p', {}, h('a', { href: '/login' }, t('auth.haveaccount')))));
}

export function acceptInvitation(main, ctx) {
  const token = ctx.query.get('token') || '';
  const alert = alertBox();
  const form = h('form', { novalidate: true },
    field(t('auth.fullname'), input('full_name', 'text', 'name')),
    field(t('auth.password'), input('password', 'password', 'new-password', { minlength: 10 }), t('auth.password.hint')),
    h('button', { type: 'submit' }, t('auth.accept')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    showAlert(alert, '');
    submitting(form, true);
    try {
      const answer = await api('POST', '/v1/invitations/accept', {
        anonymous: true,
        body: { token, full_name: form.full_name.value.trim(), password: form.password.value },
      });
      signedIn(answer);
      ctx.navigate(ctx.home(), true);
    } catch (err) {
      if (!showFieldErrors(form, err)) showAlert(alert, errorText(err));
    } finally {
      submitting(form, false);
    }
  });
  main.append(card(t('auth.accept.title'), h('p', {}, t('auth.accept.intro')),
    token ? null : h('p', { class: 'alert', role: 'alert' }, t('auth.token.missing')), alert, form));
}

// A token is single use: never sent twice from this page, even if it is drawn again.
const verifying = new Map();

export function verifyEmail(main, ctx) {
  const token = ctx.query.get('token') || '';
  const status = h('p', { role: 'status' }, t('auth.verify.working'));
  main.append(card(t('auth.verify.title'), status, h('p', {}, h('a', { href: '/' }, t('notfound.home')))));
  if (!token) { status.textContent = t('auth.token.missing'); return; }
  if (!verifying.has(token)) verifying.set(token, api('POST', '/v1/auth/verify-email', { anonymous: true, body: { token } }));
  verifying.get(token)
    .then(() => { status.textContent = t('auth.verify.done'); })
    .catch((err) => { status.textContent = errorText(err); });
}

export function resetPassword(main, ctx) {
  const token = ctx.query.get('token');
  const alert = alertBox();
  if (!token) {
    const form = h('form', { novalidate: true },
      field(t('auth.email'), input('email', 'email', 'email')),
      h('button', { type: 'submit' }, t('auth.reset.send')),
    );
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      submitting(form, true);
      try {
        await api('POST', '/v1/auth/password-reset', { anonymous: true, body: { email: form.email.value.trim() } });
        showAlert(alert, t('auth.reset.sent'), true);
      } catch (err) {
        showAlert(alert, errorText(err));
      } finally {
        submitting(form, false);
      }
    });
    main.append(card(t('auth.reset.title'), h('p', {}, t('auth.reset.intro')), alert, form));
    return;
  }
  const form = h('form', { novalidate: true },
    field(t('auth.newpassword'), input('new_password', 'password', 'new-password', { minlength: 10 }), t('auth.password.hint')),
    h('button', { type: 'submit' }, t('auth.reset.save')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    submitting(form, true);
    try {
      await api('POST', '/v1/auth/password-reset/confirm', { anonymous: true, body: { token, new_password: form.new_password.value } });
      showAlert(alert, t('auth.reset.done'), true);
      form.hidden = true;
      main.querySelector('section').append(h('p', {}, h('a', { href: '/login' }, t('auth.signin'))));
    } catch (err) {
      if (!showFieldErrors(form, err)) showAlert(alert, errorText(err));
    } finally {
      submitting(form, false);
    }
  });
  main.append(card(t('auth.reset.title'), alert, form));
}
