// REST client for /v1: bearer tokens kept in localStorage, refreshed before
// they expire (one refresh at a time across tabs: a refresh token presented
// twice revokes its whole family), problem+json errors as ApiError.

const KEY = 'bwenge.auth';
const listeners = new Set();
let auth = load();
let refreshing = null;
let timer = null;

function load() {
  try { return JSON.parse(localStorage.getItem(KEY) || 'null'); } catch { return null; }
}

function save(next) {
  auth = next;
  try {
    if (next) localStorage.setItem(KEY, JSON.stringify(next));
    else localStorage.removeItem(KEY);
  } catch { /* private mode: this tab only */ }
  schedule();
  for (const fn of listeners) fn(auth);
}

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = (problem && problem.code) || (status === 0 ? 'network' : 'error');
    this.field = problem && problem.field;
    this.detail = problem && problem.detail;
    this.problem = problem || {};
  }
}

export function currentUser() {
  return auth ? auth.user : null;
}

export function accessToken() {
  return auth ? auth.access_token : null;
}

export function onAuthChange(fn) {
  listeners.add(fn);
}

/** Keeps the tokens of a login, registration or invitation acceptance. */
export function signedIn(answer) {
  save({ ...withExpiry(answer.tokens), user: answer.user });
}

function withExpiry(tokens) {
  return {
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    expires_at: Date.now() + (tokens.expires_in || 900) * 1000,
  };
}

function schedule() {
  clearTimeout(timer);
  if (!auth) return;
  // A minute early, or at 80% of a short lifetime.
  const left = auth.expires_at - Date.now();
  const wait = Math.max(1000, Math.min(left - 60000, left * 0.8));
  timer = setTimeout(() => refresh().catch(() => {}), wait);
}

async function withLock(fn) {
  if (navigator.locks && navigator.locks.request) return navigator.locks.request('bwenge-refresh', fn);
  return fn();
}

/** Refreshes the tokens once, whoever asks; `force` even when not due. */
export function refresh(force = false) {
  if (refreshing) return refreshing;
  refreshing = withLock(async () => {
    const before = auth && auth.refresh_token;
    auth = load(); // another tab may have refreshed already
    if (!auth) throw new ApiError(401, { code: 'unauthorized' });
    if (auth.refresh_token !== before && auth.expires_at - Date.now() > 60000) {
      schedule();
      return auth;
    }
    if (!force && auth.expires_at - Date.now() > 60000) return auth;
    let res;
    try {
      res = await fetch('/v1/auth/refresh', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refresh_token: auth.refresh_token }),
      });
    } catch {
      schedule();
      throw new ApiError(0, { code: 'network' });
    }
    if (res.status === 401) {
      save(null);
      throw new ApiError(401, { code: 'unauthorized' });
    }
    if (!res.ok) {
      schedule();
      throw new ApiError(res.status, await res.json().catch(() => ({})));
    }
    const body = await res.json();
    save({ ...withExpiry(body.tokens), user: auth.user });
    return auth;
  }).finally(() => { refreshing = null; });
  return refreshing;
}

/**
 * Calls the API. `body` is sent as JSON, `form` as multipart; `raw` returns
 * the Response. A 401 refreshes the tokens once and tries again.
 */
export async function api(method, path, { body, form, raw, anonymous } = {}, retried = false) {
  if (auth && !anonymous && auth.expires_at - Date.now() < 30000) {
    await refresh().catch(() => {});
  }
  const headers = {};
  if (auth && !anonymous) headers.authorization = `Bearer ${auth.access_token}`;
  let payload;
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  } else if (form) {
    payload = form;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload });
  } catch {
    throw new ApiError(0, { code: 'network' });
  }
  if (res.status === 401 && auth && !anonymous && !retried) {
    await refresh(true);
    return api(method, path, { body, form, raw }, true);
  }
  if (!res.ok) {
    const problem = await res.json().catch(() => ({}));
    throw new ApiError(res.status, problem);
  }
  if (raw) return res;
  if (res.status === 204 || res.status === 202 && res.headers.get('content-length') === '0') return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, { body });
export const patch = (path, body) => api('PATCH', path, { body });
export const del = (path) => api('DELETE', path);

/** Uploads a file with XMLHttpRequest, for upload progress (0..1). */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const send = () => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', path);
      if (auth) xhr.setRequestHeader('authorization', `Bearer ${auth.access_token}`);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress && onProgress(e.loaded / e.total);
      xhr.onerror = () => reject(new ApiError(0, { code: 'network' }));
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { /* empty */ }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else reject(new ApiError(xhr.status, body || {}));
      };
      xhr.send(form);
    };
    if (auth && auth.expires_at - Date.now() < 30000) refresh().catch(() => {}).then(send);
    else send();
  });
}

export async function signOut() {
  const token = auth && auth.refresh_token;
  save(null);
  if (token) {
    await fetch('/v1/auth/logout', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: token }),
    }).catch(() => {});
  }
}

/** Keeps the stored user in step (after /v1/auth/me). */
export function updateUser(user) {
  if (auth) save({ ...auth, user });
}

window.addEventListener('storage', (e) => {
  if (e.key === KEY) {
    auth = load();
    schedule();
    for (const fn of listeners) fn(auth);
  }
});
schedule();
