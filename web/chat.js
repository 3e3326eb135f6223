// The chat socket, built for a weak connection.
//
// What survives a reload (localStorage, per persona): the session id, the
// last `seq` seen, the events shown, and the questions not yet acknowledged
// (each with its own `client_id`). On every (re)connection the client sends
// `resume` with the last seq, then re-sends every unacknowledged question
// with the same `client_id` (the server acknowledges it again and never
// answers it twice). Events are kept by `seq`, so a replayed one is never
// shown twice. Reconnection waits with exponential backoff and full jitter.
import { accessToken, refresh } from './api.js';

const PING_MS = 20000;
const SILENT_MS = 45000;
const MAX_EVENTS = 300;

export function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

export function wsUrl(path = '/v1/chat/ws') {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${path}?access_token=${encodeURIComponent(accessToken() || '')}`;
}

function storageKey(personaId) {
  return `bwenge.chat.${personaId}`;
}

export function loadChatState(personaId) {
  try {
    const s = JSON.parse(localStorage.getItem(storageKey(personaId)) || 'null');
    if (s && Array.isArray(s.events) && Array.isArray(s.outbox)) return s;
  } catch { /* fall through */ }
  return { session_id: null, last_seq: 0, events: [], outbox: [] };
}

export class ChatClient {
  /**
   * handlers: onEvent(event), onDelta(replyTo, text, reset), onAck(clientId, seq),
   * onStatus('connecting'|'online'|'offline'), onError(frame), onSession(id),
   * onQueued(replyTo, position), onRetry(clientId, seconds)
   */
  constructor(personaId, handlers = {}) {
    this.personaId = personaId;
    this.h = handlers;
    this.state = loadChatState(personaId);
    this.ws = null;
    this.joined = false;
    this.attempt = 0;
    this.closed = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastFrameAt = 0;
    this.streams = new Map();
    this.onOnline = () => this.reconnectNow();
    this.onOffline = () => { if (this.ws) this.ws.close(); this.status('offline'); };
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
  }

  save() {
    if (this.state.events.length > MAX_EVENTS) this.state.events = this.state.events.slice(-MAX_EVENTS);
    try { localStorage.setItem(storageKey(this.personaId), JSON.stringify(this.state)); } catch { /* full */ }
  }

  status(s) {
    this.currentStatus = s;
    if (this.h.onStatus) this.h.onStatus(s);
  }

  /** Switches to another (past) session, its events already known. */
  useSession(sessionId, events) {
    this.state = { session_id: sessionId, last_seq: 0, events: [], outbox: [] };
    for (const e of events || []) this.addEvent(e, true);
    this.save();
    if (this.ws) this.ws.close(4000, 'switch');
  }

  /** Forgets the session: the next connection starts a new one. */
  newSession() {
    this.state = { session_id: null, last_seq: 0, events: [], outbox: this.state.outbox };
    this.save();
    if (this.ws) this.ws.close(4000, 'switch');
  }

  connect() {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.status(this.attempt === 0 ? 'connecting' : 'offline');
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    this.joined = false;
    ws.onopen = () => {
      this.lastFrameAt = Date.now();
      if (this.state.session_id) {
        this.sendFrame({ type: 'resume', session_id: this.state.session_id, last_seq: this.state.last_seq });
      } else {
        this.sendFrame({ type: 'start', persona_id: this.personaId });
      }
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => {
        if (Date.now() - this.lastFrameAt > SILENT_MS) ws.close(4000, 'silent');
        else this.sendFrame({ type: 'ping' });
      }, PING_MS);
    };
    ws.onmessage = (m) => {
      this.lastFrameAt = Date.now();
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      this.frame(f);
    };
    ws.onclose = (e) => {
      clearInterval(this.pingTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      this.joined = false;
      if (this.closed) return;
      if (e.code === 4404) {
        // The session is gone: start a new one, keeping unsent questions.
        this.state.session_id = null;
        this.state.last_seq = 0;
        this.save();
      }
      if (e.code === 4401) {
        refresh(true).then(() => this.reconnectNow(), () => this.status('signed_out'));
        return;
      }
      if (e.code === 4000) {
        this.attempt = 0;
        this.connect();
        return;
      }
      this.status('offline');
      this.scheduleRetry(e.code === 4429 ? 5000 : 0);
    };
  }

  scheduleRetry(floor = 0) {
    clearTimeout(this.retryTimer);
    const cap = Math.min(15000, 500 * 2 ** this.attempt);
    const wait = Math.max(floor, Math.random() * cap);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  reconnectNow() {
    if (this.closed) return;
    this.attempt = 0;
    if (this.ws && this.ws.readyState <= 1) return;
    this.connect();
  }

  sendFrame(f) {
    if (this.ws && this.ws.readyState === 1) {
      this.ws.send(JSON.stringify(f));
      return true;
    }
    return false;
  }

  frame(f) {
    switch (f.type) {
      case 'session':
        if (this.state.session_id && this.state.session_id !== f.session_id) {
          this.state.events = [];
          this.state.last_seq = 0;
        }
        this.state.session_id = f.session_id;
        this.save();
        this.joined = true;
        this.attempt = 0;
        this.status('online');
        if (this.h.onSession) this.h.onSession(f.session_id);
        for (const q of this.state.outbox) this.sendFrame({ type: 'message', client_id: q.client_id, text: q.text });
        break;
      case 'ack': {
        const q = this.state.outbox.find((x) => x.client_id === f.client_id);
        if (q) q.seq = f.seq;
        this.save();
        if (this.h.onAck) this.h.onAck(f.client_id, f.seq);
        break;
      }
      case 'replay':
        for (const e of f.events || []) this.addEvent(e);
        break;
      case 'message':
        this.addEvent(f);
        break;
      case 'delta': {
        if (this.state.events.some((e) => e.role !== 'user' && e.reply_to === f.reply_to)) break;
        const text = f.reset ? '' : (this.streams.get(f.reply_to) || '') + (f.text || '');
        this.streams.set(f.reply_to, text);
        if (this.h.onDelta) this.h.onDelta(f.reply_to, text, !!f.reset);
        break;
      }
      case 'queued':
        if (this.h.onQueued) this.h.onQueued(f.reply_to, f.position);
        break;
      case 'error': {
        // Refused before it was stored because the server's line is full:
        // send it again (same client_id) once the server says.
        const q = f.code === 'overloaded' && this.state.outbox.find((x) => x.client_id === f.client_id);
        if (q) {
          const wait = (f.retry_after_ms || 1000) + Math.random() * 500;
          setTimeout(() => {
            if (this.joined) this.sendFrame({ type: 'message', client_id: q.client_id, text: q.text });
          }, wait);
          if (this.h.onRetry) this.h.onRetry(q.client_id, Math.ceil(wait / 1000));
          break;
        }
        if (this.h.onError) this.h.onError(f);
        break;
      }
      default:
        if (this.h.onOther) this.h.onOther(f);
    }
  }

  /** Adds a stored event once (by seq); true when it was new. */
  addEvent(e, quiet = false) {
    if (typeof e.seq !== 'number') return false;
    if (this.state.events.some((x) => x.seq === e.seq)) return false;
    this.state.events.push(e);
    this.state.events.sort((a, b) => a.seq - b.seq);
    this.state.last_seq = Math.max(this.state.last_seq, e.seq);
    if (e.role === 'user' && e.client_id) {
      this.state.outbox = this.state.outbox.filter((q) => q.client_id !== e.client_id);
    }
    if (e.role !== 'user') {
      this.streams.delete(e.reply_to);
      // An answer proves its question arrived.
      const q = this.state.outbox.find((x) => x.seq !== undefined && x.seq === e.reply_to);
      if (q) this.state.outbox = this.state.outbox.filter((x) => x !== q);
    }
    this.save();
    if (!quiet && this.h.onEvent) this.h.onEvent(e);
    return true;
  }

  /** Queues a question; sent now if connected, else on reconnection. */
  ask(text) {
    const q = { client_id: newClientId(), text, at: new Date().toISOString() };
    this.state.outbox.push(q);
    this.save();
    if (this.joined) this.sendFrame({ type: 'message', client_id: q.client_id, text });
    return q;
  }

  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
  }
}

/** A staff socket for `ingest` progress frames, reconnecting like the chat. */
export class IngestWatcher {
  constructor(onFrame, onStatus) {
    this.onFrame = onFrame;
    this.onStatus = onStatus || (() => {});
    this.attempt = 0;
    this.closed = false;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const ws = new WebSocket(wsUrl());
    this.ws = ws;
    ws.onopen = () => { this.attempt = 0; this.onStatus('online'); };
    ws.onmessage = (m) => {
      try {
        const f = JSON.parse(m.data);
        if (f.type === 'ingest') this.onFrame(f);
      } catch { /* ignore */ }
    };
    ws.onclose = (e) => {
      if (this.closed) return;
      this.onStatus('offline');
      if (e.code === 4401) {
        refresh(true).then(() => this.connect(), () => {});
        return;
      }
      const cap = Math.min(15000, 500 * 2 ** this.attempt++);
      this.timer = setTimeout(() => this.connect(), Math.random() * cap);
    };
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'bye');
  }
}
