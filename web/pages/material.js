// Teachers and admins: course material. Several files at once, by drag and
// drop or the file picker; per file the upload's progress, then the
// processing progress from the socket's `ingest` frames (with a slow poll
// as a fallback); clear errors for type (415), size (413) and quota (402).
import { h, clear, formatBytes } from '../dom.js';
import { t, lang } from '../i18n.js';
import { get, del, upload } from '../api.js';
import { IngestWatcher } from '../chat.js';
import { errorText } from './auth.js';

// The server's `detail` says exactly what is accepted or which allowance
// ran out (in English); other languages get their own lead sentence first.
function uploadError(err) {
  const key = { 415: 'material.error.type', 413: 'material.error.size', 402: 'material.error.quota' }[err.status];
  if (!key) return errorText(err);
  if (!err.detail) return t(key);
  return lang() === 'en' ? err.detail : `${t(key)} ${err.detail}`;
}

function statusLabel(s) {
  if (s.status === 'processing') return `${t(`material.stage.${s.stage}`)} · ${Math.round((s.progress || 0) * 100)}%`;
  return t(`material.status.${s.status}`);
}

export async function render(main) {
  const input = h('input', { type: 'file', id: 'files', multiple: true, class: 'visually-hidden', accept: '.pdf,.docx,.pptx,.txt,.md,.html,.htm,.srt,.vtt,text/*,application/pdf' });
  const pickLabel = h('label', { for: 'files', class: 'button' }, t('material.choose'));
  const drop = h('div', { class: 'drop', id: 'drop' },
    h('p', {}, t('material.drop')), input, pickLabel,
    h('p', { class: 'muted small' }, t('material.accepted')));
  const uploads = h('ul', { class: 'uploads', id: 'uploads', 'aria-live': 'polite' });
  const table = h('tbody', {});
  const listError = h('p', { class: 'alert', role: 'alert', hidden: true });
  main.append(
    h('h1', {}, t('material.title')),
    drop, uploads,
    h('h2', {}, t('material.list')),
    listError,
    h('table', { class: 'table', id: 'sources' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, t('material.col.title')),
        h('th', { scope: 'col' }, t('material.col.status')),
        h('th', { scope: 'col' }, t('material.col.size')),
        h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, t('material.col.actions'))))),
      table));

  const rows = new Map();
  const renderRow = (s) => {
    const progress = h('progress', { max: 1, value: s.status === 'ready' ? 1 : (s.progress || 0), 'aria-label': s.title });
    const tr = h('tr', { 'data-id': s.id, 'data-status': s.status },
      h('td', {}, s.title, h('br'), h('span', { class: 'muted small' }, s.filename)),
      h('td', {}, h('span', { class: `status ${s.status}` }, statusLabel(s)), s.status === 'processing' || s.status === 'queued' ? progress : null,
        s.error ? h('p', { class: 'field-error' }, s.error) : null),
      h('td', {}, formatBytes(s.size_bytes || 0)),
      h('td', {}, h('button', {
        type: 'button', class: 'secondary danger', 'aria-label': t('material.delete.label', { title: s.title }),
        onclick: async () => {
          if (!confirm(t('material.delete.confirm', { title: s.title }))) return;
          try { await del(`/v1/knowledge/${s.id}`); rows.get(s.id)?.tr.remove(); rows.delete(s.id); } catch (err) { listError.hidden = false; listError.textContent = errorText(err); }
        },
      }, t('material.delete'))));
    const old = rows.get(s.id);
    if (old) old.tr.replaceWith(tr); else table.append(tr);
    rows.set(s.id, { s, tr });
  };

  const load = async () => {
    try {
      const { items } = await get('/v1/knowledge?limit=200');
      for (const s of items) renderRow(s);
      listError.hidden = true;
    } catch (err) {
      listError.hidden = false;
      listError.textContent = errorText(err);
    }
  };
  await load();

  const watcher = new IngestWatcher((f) => {
    const row = rows.get(f.source_id);
    if (!row) { get(`/v1/knowledge/${f.source_id}`).then(renderRow).catch(() => {}); return; }
    renderRow({ ...row.s, status: f.status, stage: f.stage, progress: f.progress, error: f.error });
  });
  // A fallback while anything is in flight, in case a frame was missed.
  const poll = setInterval(() => {
    for (const { s } of rows.values()) {
      if (s.status === 'queued' || s.status === 'processing') {
        get(`/v1/knowledge/${s.id}`).then(renderRow).catch(() => {});
      }
    }
  }, 4000);

  const send = (file) => {
    const bar = h('progress', { max: 1, value: 0, 'aria-label': file.name });
    const note = h('span', { class: 'muted small' }, t('material.uploading'));
    const li = h('li', { 'data-file': file.name }, h('strong', {}, file.name), ' ', note, bar);
    uploads.append(li);
    const form = new FormData();
    form.append('file', file, file.name);
    upload('/v1/knowledge', form, (p) => { bar.value = p; })
      .then((s) => { li.remove(); renderRow(s); })
      .catch((err) => {
        bar.remove();
        li.classList.add('failed');
        li.dataset.error = String(err.status);
        note.textContent = uploadError(err);
        note.className = 'field-error';
        note.setAttribute('role', 'alert');
      });
  };
  const sendAll = (files) => { for (const f of files) send(f); };
  input.addEventListener('change', () => { sendAll([...input.files]); input.value = ''; });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    sendAll([...(e.dataTransfer?.files || [])]);
  });

  return () => { watcher.close(); clearInterval(poll); clear(uploads); };
}
