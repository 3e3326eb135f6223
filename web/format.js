// Numbers, money and dates in the interface's language (English where the
// browser has no data for it). Dates of reports (`YYYY-MM-DD`) are UTC days.
import { lang } from './i18n.js';

const locales = () => [lang(), 'en'];

export function num(n) {
  return n === null || n === undefined ? '—' : new Intl.NumberFormat(locales()).format(n);
}

export function pct(r) {
  return r === null || r === undefined ? '—' : new Intl.NumberFormat(locales(), { style: 'percent', maximumFractionDigits: 0 }).format(r);
}

export function ms(n) {
  return n === null || n === undefined ? '—' : `${num(Math.round(n))} ms`;
}

/** A `YYYY-MM-DD` day; `short` without the year. */
export function day(d, short = false) {
  const opts = short ? { day: 'numeric', month: 'short' } : { dateStyle: 'medium' };
  try { return new Date(`${d}T00:00:00Z`).toLocaleDateString(locales(), { ...opts, timeZone: 'UTC' }); } catch { return d; }
}

export function date(iso) {
  if (!iso) return '—';
  try { return new Date(iso).toLocaleDateString(locales(), { dateStyle: 'medium' }); } catch { return iso; }
}

export function dateTime(iso) {
  if (!iso) return '—';
  try { return new Date(iso).toLocaleString(locales(), { dateStyle: 'medium', timeStyle: 'short' }); } catch { return iso; }
}

export function time(iso) {
  try { return new Date(iso).toLocaleTimeString(locales(), { timeStyle: 'short' }); } catch { return iso; }
}

/** An amount in the currency's minor unit (ISO 4217: RWF has none, USD 2). */
export function money(amount, currency) {
  try {
    const f = new Intl.NumberFormat(locales(), { style: 'currency', currency });
    const digits = f.resolvedOptions().maximumFractionDigits;
    return f.format(amount / 10 ** digits);
  } catch {
    return `${amount} ${currency}`;
  }
}

/** Bytes for people, in binary units as the server counts them. */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${new Intl.NumberFormat(locales(), { maximumFractionDigits: i && v < 10 ? 1 : 0 }).format(v)} ${units[i]}`;
}

/** Today's UTC date, `YYYY-MM-DD`, `back` days ago. */
export function isoDay(back = 0) {
  return new Date(Date.now() - back * 86400000).toISOString().slice(0, 10);
}
