// Members and invitations (admins; teachers may invite students).
import { h, field, showFieldErrors } from '../dom.js';
import { t } from '../i18n.js';
import { get, api, del, currentUser } from '../api.js';
import { errorText } from './auth.js';

export async function render(main) {
  const me = currentUser();
  const admin = me.role === 'admin';
  const tbody = h('tbody', {});
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const done = h('p', { class: 'alert ok', role: 'status', hidden: true });
  const role = h('select', { name: 'role' }, (admin ? ['student', 'teacher', 'admin'] : ['student']).map((r) => h('option', { value: r }, t(`role.${r}`))));
  const form = h('form', { novalidate: true, class: 'inline' },
    field(t('auth.email'), h('input', { name: 'email', type: 'email', required: true, autocomplete: 'off' })),
    field(t('members.role'), role),
    h('button', { type: 'submit' }, t('members.invite')));
  main.append(h('h1', {}, t('members.title')),
    h('h2', {}, t('members.invite.title')), done, form,
    h('h2', {}, t('members.list')), alert,
    h('table', { class: 'table', id: 'members' }, h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, t('auth.fullname')), h('th', { scope: 'col' }, t('auth.email')), h('th', { scope: 'col' }, t('members.role')),
      h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, t('material.col.actions'))))), tbody));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    done.hidden = true;
    try {
      const inv = await api('POST', '/v1/invitations', { body: { email: form.email.value.trim(), role: role.value } });
      done.hidden = false;
      done.textContent = t('members.invited', { email: inv.email });
      form.email.value = '';
    } catch (err) {
      if (!showFieldErrors(form, err)) { done.hidden = false; done.textContent = errorText(err); }
    }
  });
  const load = async () => {
    try {
      const { items } = await get('/v1/members');
      tbody.replaceChildren(...items.map((u) => {
        const roleCell = admin && u.id !== me.id
          ? h('select', { 'aria-label': t('members.role.for', { name: u.full_name }), onchange: async (e) => {
            try { await api('PATCH', `/v1/members/${u.id}`, { body: { role: e.target.value } }); } catch (err) { alert.hidden = false; alert.textContent = errorText(err); load(); }
          } }, ['student', 'teacher', 'admin'].map((r) => h('option', { value: r, selected: u.role === r }, t(`role.${r}`))))
          : t(`role.${u.role}`);
        return h('tr', {}, h('td', {}, u.full_name), h('td', {}, u.email), h('td', {}, roleCell),
          h('td', {}, admin && u.id !== me.id ? h('button', { type: 'button', class: 'secondary danger', onclick: async () => {
            if (!confirm(t('members.remove.confirm', { name: u.full_name }))) return;
            try { await del(`/v1/members/${u.id}`); load(); } catch (err) { alert.hidden = false; alert.textContent = errorText(err); }
          } }, t('members.remove'), h('span', { class: 'visually-hidden' }, ` ${u.full_name}`)) : null));
      }));
    } catch (err) {
      alert.hidden = false;
      alert.textContent = errorText(err);
    }
  };
  load();
}
