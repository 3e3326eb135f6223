// The interface's own strings: a catalogue per language (i18n/<code>.js),
// English built in, the others loaded when chosen. A key missing from a
// catalogue falls back to English.
import en from './i18n/en.js';

export const LANGUAGES = { en: 'English', fr: 'Français', rw: 'Kinyarwanda', sw: 'Kiswahili' };
const KEY = 'bwenge.lang';
let catalogue = en;
let current = 'en';
const listeners = new Set();

export function t(key, vars) {
  let s = catalogue[key] ?? en[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  return s;
}

export function lang() {
  return current;
}

export async function loadCatalogue(code) {
  if (code === 'en') return en;
  const mod = await import(`./i18n/${code}.js`);
  return mod.default;
}

export async function setLang(code) {
  if (!(code in LANGUAGES)) code = 'en';
  catalogue = await loadCatalogue(code);
  current = code;
  try { localStorage.setItem(KEY, code); } catch { /* private mode */ }
  document.documentElement.lang = code;
  for (const fn of listeners) fn(code);
}

export function onLangChange(fn) {
  listeners.add(fn);
}

export function initialLang() {
  let stored = null;
  try { stored = localStorage.getItem(KEY); } catch { /* private mode */ }
  if (stored && stored in LANGUAGES) return stored;
  const nav = (navigator.language || 'en').slice(0, 2);
  return nav in LANGUAGES ? nav : 'en';
}
