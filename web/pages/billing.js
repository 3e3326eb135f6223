// The subscription: plan, allowances and their use, the plans on offer;
// for admins also checkout, payments and cancelling (teachers read only).
// Mobile money: the payer approves a prompt on the phone while this page
// polls the payment (reading a pending one asks the provider) until it
// ends. Stripe: the admin goes to Stripe's page and comes back to
// `/?checkout=success&payment=…`, which the shell sends here.
import { h, field, showFieldErrors, append, clear } from '../dom.js';
import { t } from '../i18n.js';
import { get, api, post, currentUser } from '../api.js';
import { errorText } from './auth.js';
import { num, money, bytes, date, dateTime } from '../format.js';

const POLL_MS = 3000;
const POLL_FOR_MS = 10 * 60000;
const E164 = /^\+[1-9]\d{7,14}$/;
// The currency each method is charged in.
const METHODS = { mtn_momo: 'RWF', airtel_money: 'RWF', stripe: 'USD' };

const priceIn = (plan, currency) => plan.prices.find((p) => p.currency === currency);
const isPaid = (plan) => plan.prices.some((p) => p.amount > 0);

function usage(id, label, u, fmt) {
  const limited = u.limit !== null && u.limit !== undefined;
  const text = limited ? t('billing.usage.of', { used: fmt(u.used), limit: fmt(u.limit) }) : t('billing.usage.unlimited', { used: fmt(u.used) });
  const meterId = `usage-${id}-meter`;
  return h('div', { class: 'usage', id: `usage-${id}`, 'data-used': u.used, 'data-limit': limited ? u.limit : 'unlimited' },
    limited ? h('label', { for: meterId }, label) : h('p', { class: 'usage-label' }, label),
    limited ? h('meter', { id: meterId, min: 0, max: u.limit, low: u.limit * 0.8, high: u.limit * 0.95, optimum: 0, value: Math.min(u.used, u.limit) }, text) : null,
    h('p', { class: 'small' }, text));
}

function prices(plan) {
  if (!isPaid(plan)) return t('billing.free');
  return plan.prices.map((p) => t('billing.per_month', { price: money(p.amount, p.currency) })).join(' · ');
}

export async function render(main, ctx) {
  const admin = currentUser().role === 'admin';
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const subBox = h('section', { id: 'subscription', 'aria-labelledby': 'h-subscription' });
  const status = h('p', { id: 'payment-status', class: 'notice', role: 'status', hidden: true });
  const plansList = h('ul', { class: 'cards plans', id: 'plans' });
  const paymentsBody = h('tbody', {});
  const more = h('button', { type: 'button', class: 'secondary', id: 'payments-more', hidden: true }, t('analytics.more'));
  append(main, [h('h1', {}, t('billing.title')), alert,
    h('h2', { id: 'h-subscription' }, t('billing.current.title')), subBox,
    h('h2', {}, t('billing.plans')), admin ? null : h('p', { class: 'muted' }, t('billing.readonly')), status, plansList,
    admin ? [h('h2', { id: 'h-payments' }, t('billing.payments')),
      h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'h-payments' }, h('table', { class: 'table', id: 'payments', 'aria-labelledby': 'h-payments' },
        h('thead', {}, h('tr', {}, [t('billing.col.date'), t('billing.col.plan'), t('billing.method'), t('billing.col.amount'), t('billing.col.status')]
          .map((c) => h('th', { scope: 'col' }, c)))), paymentsBody)), more] : null]);
  const fail = (err) => { alert.hidden = false; alert.textContent = errorText(err); };

  let plans = [];
  let sub = null;
  const planName = (id) => (plans.find((p) => p.id === id) || {}).name || id;

  // The subscription and its allowances.
  const drawSubscription = () => {
    subBox.dataset.plan = sub.plan;
    subBox.dataset.status = sub.status;
    subBox.dataset.cancelAtPeriodEnd = String(sub.cancel_at_period_end);
    const end = sub.current_period_end;
    const u = sub.usage;
    append(clear(subBox), [
      h('dl', { class: 'figures' },
        h('dt', {}, t('billing.col.plan')), h('dd', {}, sub.plan_name || planName(sub.plan)),
        h('dt', {}, t('billing.col.status')), h('dd', { class: `status ${sub.status}` }, t(`billing.status.${sub.status}`)),
        end ? h('dt', {}, sub.cancel_at_period_end ? t('billing.ends') : t('billing.renews')) : null,
        end ? h('dd', {}, date(end)) : null),
      sub.cancel_at_period_end && end ? h('p', { class: 'notice' }, t('billing.cancelled.note', { date: date(end) })) : null,
      h('h3', {}, t('billing.usage')),
      usage('questions', t('billing.usage.questions'), u.questions, num),
      sub.questions_reset_at ? h('p', { class: 'hint' }, t('billing.usage.reset', { date: date(sub.questions_reset_at) })) : null,
      usage('storage', t('billing.usage.storage'), u.storage_bytes, bytes),
      usage('members', t('billing.usage.members'), u.members, num),
      admin && sub.plan !== 'free' && sub.status !== 'cancelled' && !sub.cancel_at_period_end ? cancelBlock() : null]);
  };
  const loadSubscription = () => get('/v1/subscription').then((s) => { sub = s; drawSubscription(); drawPlans(); }, fail);

  // Cancelling, with a confirm step on the page.
  const cancelBlock = () => {
    const ask = h('button', { type: 'button', class: 'secondary danger', id: 'cancel-subscription' }, t('billing.cancel'));
    const yes = h('button', { type: 'button', class: 'danger', id: 'cancel-yes' }, t('billing.cancel.yes'));
    const no = h('button', { type: 'button', class: 'secondary', id: 'cancel-no' }, t('billing.cancel.no'));
    const confirmBox = h('div', { class: 'confirm', id: 'cancel-confirm', role: 'group', 'aria-labelledby': 'cancel-q', hidden: true },
      h('p', { id: 'cancel-q' }, t('billing.cancel.confirm', { date: date(sub.current_period_end) })), h('div', { class: 'actions' }, yes, no));
    ask.addEventListener('click', () => { ask.hidden = true; confirmBox.hidden = false; yes.focus(); });
    no.addEventListener('click', () => { confirmBox.hidden = true; ask.hidden = false; ask.focus(); });
    yes.addEventListener('click', async () => {
      yes.disabled = true;
      try {
        sub = await post('/v1/subscription/cancel');
        drawSubscription();
        subBox.querySelector('.notice')?.setAttribute('role', 'status');
      } catch (err) {
        fail(err);
        yes.disabled = false;
      }
    });
    return h('div', { class: 'cancel' }, ask, confirmBox);
  };

  // A payment followed until it ends.
  let timer = null;
  let stopped = false;
  let followedSince = 0;
  const showPayment = (pay) => {
    status.hidden = false;
    status.dataset.status = pay.status;
    status.dataset.paymentId = pay.id;
    status.className = pay.status === 'failed' || pay.status === 'expired' ? 'alert' : 'notice';
    const price = money(pay.amount, pay.currency);
    if (pay.status === 'succeeded') status.textContent = t('billing.payment.succeeded', { plan: planName(pay.plan) });
    else if (pay.status === 'failed') status.textContent = `${t('billing.payment.failed')} ${pay.failure_reason || ''}`.trim();
    else if (pay.status === 'expired') status.textContent = t('billing.payment.expired');
    else if (pay.method === 'stripe') status.textContent = t('billing.payment.pending.card', { price });
    else status.textContent = t('billing.payment.pending.phone', { price });
  };
  const follow = (pay) => {
    clearTimeout(timer);
    if (stopped) return;
    showPayment(pay);
    if (pay.status !== 'pending') {
      loadSubscription();
      loadPayments(null);
    } else if (Date.now() - followedSince < POLL_FOR_MS) {
      timer = setTimeout(() => get(`/v1/payments/${pay.id}`).then(follow, () => follow(pay)), POLL_MS);
    }
  };
  const startFollowing = (pay) => {
    followedSince = Date.now();
    follow(pay);
    status.scrollIntoView({ block: 'nearest' });
  };

  // A checkout form per paid plan: the method decides the currency.
  const checkoutForm = (plan) => {
    const methods = Object.keys(METHODS).filter((m) => priceIn(plan, METHODS[m]));
    if (!methods.length) return h('p', { class: 'muted small' }, t('billing.unavailable'));
    const method = h('select', { name: 'method', id: `method-${plan.id}` }, methods.map((m) => h('option', { value: m }, t(`billing.method.${m}`))));
    const phone = h('input', { type: 'tel', name: 'phone', id: `phone-${plan.id}`, autocomplete: 'tel', inputmode: 'tel', placeholder: '+250788123456' });
    const phoneField = field(t('billing.phone'), phone, t('billing.phone.hint'));
    const total = h('p', { class: 'total' });
    const formAlert = h('p', { class: 'alert', role: 'alert', hidden: true });
    const submit = h('button', { type: 'submit' }, t('billing.pay', { plan: plan.name }));
    const form = h('form', { novalidate: true, id: `checkout-${plan.id}`, class: 'checkout', 'data-plan': plan.id, 'aria-label': t('billing.pay', { plan: plan.name }) },
      field(t('billing.method'), method), phoneField, total, formAlert, submit);
    const sync = () => {
      const mobile = method.value !== 'stripe';
      phoneField.hidden = !mobile;
      phone.required = mobile;
      const p = priceIn(plan, METHODS[method.value]);
      total.textContent = t('billing.total', { price: money(p.amount, p.currency) });
    };
    method.addEventListener('change', sync);
    sync();
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      showFieldErrors(form, null);
      formAlert.hidden = true;
      const body = { plan: plan.id, method: method.value };
      if (method.value !== 'stripe') {
        const number = phone.value.replace(/[\s().-]/g, '');
        if (!E164.test(number)) {
          showFieldErrors(form, { field: 'phone', detail: number ? t('billing.phone.invalid') : t('billing.phone.required') });
          phone.focus();
          return;
        }
        body.phone = number;
      }
      submit.disabled = true;
      submit.setAttribute('aria-busy', 'true');
      try {
        const pay = await api('POST', '/v1/subscription/checkout', { body });
        if (pay.method === 'stripe' && pay.checkout_url) {
          location.assign(pay.checkout_url);
          return;
        }
        startFollowing(pay);
        loadPayments(null);
      } catch (err) {
        // 402, 409, 422: the server's own sentence says what is wrong.
        if (!showFieldErrors(form, err)) { formAlert.hidden = false; formAlert.textContent = errorText(err); }
      } finally {
        submit.disabled = false;
        submit.setAttribute('aria-busy', 'false');
      }
    });
    return form;
  };

  const drawPlans = () => {
    plansList.replaceChildren(...plans.map((p) => {
      const current = sub && sub.plan === p.id;
      const q = p.quotas;
      const or = (v, fmt) => (v === null || v === undefined ? t('billing.unlimited') : fmt(v));
      return h('li', { class: `card plan${current ? ' current' : ''}`, id: `plan-${p.id}`, 'data-plan': p.id, 'aria-current': current ? 'true' : null },
        h('h3', {}, p.name, current ? [' ', h('span', { class: 'badge ok' }, t('billing.current'))] : null),
        h('p', { class: 'price' }, prices(p)),
        h('ul', { class: 'quotas' },
          h('li', {}, t('billing.quota.questions', { n: or(q.questions_per_month, num) })),
          h('li', {}, t('billing.quota.storage', { n: or(q.storage_bytes, bytes) })),
          h('li', {}, t('billing.quota.members', { n: or(q.members, num) }))),
        admin && isPaid(p) ? checkoutForm(p) : null);
    }));
  };

  // Payments, newest first (admins).
  let cursor = null;
  const loadPayments = async (from) => {
    if (!admin) return;
    try {
      const r = await get(`/v1/payments?limit=20${from ? `&cursor=${encodeURIComponent(from)}` : ''}`);
      const rows = r.items.map((p) => h('tr', { 'data-id': p.id, 'data-status': p.status },
        h('td', {}, dateTime(p.created_at)), h('td', {}, planName(p.plan)), h('td', {}, t(`billing.method.${p.method}`)),
        h('td', {}, money(p.amount, p.currency)),
        h('td', {}, h('span', { class: `status ${p.status}` }, t(`billing.payment.status.${p.status}`)),
          p.failure_reason ? h('p', { class: 'small muted' }, p.failure_reason) : null)));
      if (from) paymentsBody.append(...rows);
      else paymentsBody.replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 5 }, t('billing.payments.none')))]));
      cursor = r.next_cursor;
      more.hidden = !cursor;
    } catch (err) {
      fail(err);
    }
  };
  more.addEventListener('click', () => loadPayments(cursor));

  subBox.append(h('p', { class: 'loading', role: 'status' }, t('analytics.loading')));
  try {
    plans = (await api('GET', '/v1/plans', { anonymous: true })).items;
  } catch (err) {
    fail(err);
  }
  drawPlans();
  await Promise.all([loadSubscription(), loadPayments(null)]);

  // Back from Stripe's page, or a payment to follow after a reload.
  const paymentId = ctx.query.get('payment');
  if (admin && paymentId) {
    history.replaceState(null, '', '/billing');
    if (ctx.query.get('checkout') === 'cancelled') {
      status.hidden = false;
      status.dataset.status = 'cancelled';
      status.textContent = t('billing.checkout.cancelled');
    } else {
      get(`/v1/payments/${paymentId}`).then(startFollowing, fail);
    }
  }
  return () => { stopped = true; clearTimeout(timer); };
}
