// Teachers and admins: personas, their scope over the material, safety,
// avatar model (upload or pick) and gesture overrides, with a 3D preview
// that plays each clip.
import { h, clear, field, showFieldErrors } from '../dom.js';
import { t } from '../i18n.js';
import { get, api, upload, del } from '../api.js';
import { errorText } from './auth.js';

export const GESTURES = ['idle', 'talking', 'thinking', 'happy', 'sad', 'excited', 'greeting', 'explaining', 'pointing', 'nodding', 'shaking_head', 'waving'];

export async function render(main) {
  const list = h('ul', { class: 'cards', id: 'personas' });
  main.append(h('div', { class: 'row' }, h('h1', {}, t('personas.title')), h('a', { class: 'button', href: '/personas/new' }, t('personas.new'))), list);
  try {
    const { items } = await get('/v1/personas');
    if (!items.length) list.append(h('li', {}, t('personas.none')));
    for (const p of items) {
      list.append(h('li', { class: 'card' },
        h('h2', {}, h('a', { href: `/personas/${p.id}` }, p.name)),
        h('p', { class: 'muted' }, [p.subject, p.language].filter(Boolean).join(' · ')),
        h('p', {}, p.knowledge_source_ids.length ? t('personas.scope.some', { n: p.knowledge_source_ids.length }) : t('personas.scope.all')),
        h('p', {}, h('a', { href: `/chat/${p.id}` }, t('personas.try')))));
    }
  } catch (err) {
    list.replaceWith(h('p', { class: 'alert', role: 'alert' }, errorText(err)));
  }
}

export async function edit(main, ctx) {
  const id = ctx.params[0] || null;
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  main.append(h('h1', {}, id ? t('personas.edit') : t('personas.new')), alert);
  let persona = { name: '', subject: '', description: '', language: 'en', grade_level: '', system_prompt: '', knowledge_source_ids: [], safety: { blocked_topics: [], stay_on_subject: true }, avatar_model_id: null, gestures: {} };
  let sources = [];
  let models = [];
  try {
    [sources, models] = await Promise.all([
      get('/v1/knowledge?limit=200').then((r) => r.items),
      get('/v1/models?limit=200').then((r) => r.items).catch(() => []),
    ]);
    if (id) persona = await get(`/v1/personas/${id}`);
  } catch (err) {
    alert.hidden = false;
    alert.textContent = errorText(err);
    return undefined;
  }
  const text = (name, value, attrs = {}) => h('input', { name, type: 'text', value: value || '', ...attrs });
  const language = h('select', { name: 'language' }, [['en', 'English'], ['fr', 'Français'], ['rw', 'Kinyarwanda'], ['sw', 'Kiswahili']]
    .map(([v, l]) => h('option', { value: v, selected: persona.language === v }, l)));
  const all = h('input', { type: 'checkbox', name: 'scope_all', id: 'scope-all', checked: persona.knowledge_source_ids.length === 0 });
  const scopeList = h('ul', { class: 'checks' }, sources.map((s) => h('li', {},
    h('input', { type: 'checkbox', name: 'source', value: s.id, id: `src-${s.id}`, checked: persona.knowledge_source_ids.includes(s.id) }),
    h('label', { for: `src-${s.id}` }, s.title, ' ', h('span', { class: 'muted small' }, t(`material.status.${s.status}`))))));
  const syncScope = () => { scopeList.hidden = all.checked; };
  all.addEventListener('change', syncScope);
  syncScope();
  const modelSelect = h('select', { name: 'avatar_model_id' },
    h('option', { value: '' }, t('personas.avatar.none')),
    models.map((m) => h('option', { value: m.id, selected: persona.avatar_model_id === m.id }, `${m.name} (v${m.version})`)));
  const modelFile = h('input', { type: 'file', name: 'model_file', accept: '.glb,.gltf,model/gltf-binary' });
  const gestureBox = h('div', { class: 'gestures' });
  const preview = h('div', { class: 'avatar preview', id: 'preview' });
  const previewNote = h('p', { class: 'muted small', role: 'status' });

  const form = h('form', { novalidate: true, class: 'persona-form' },
    field(t('personas.name'), text('name', persona.name, { required: true })),
    field(t('personas.subject'), text('subject', persona.subject)),
    field(t('personas.description'), h('textarea', { name: 'description', rows: 2 }, persona.description || '')),
    field(t('personas.language'), language),
    field(t('personas.grade'), text('grade_level', persona.grade_level)),
    field(t('personas.prompt'), h('textarea', { name: 'system_prompt', rows: 3 }, persona.system_prompt || '')),
    h('fieldset', {}, h('legend', {}, t('personas.scope')),
      h('div', { class: 'check' }, all, h('label', { for: 'scope-all' }, t('personas.scope.all'))), scopeList),
    h('fieldset', {}, h('legend', {}, t('personas.safety')),
      field(t('personas.blocked'), text('blocked_topics', (persona.safety.blocked_topics || []).join(', ')), t('personas.blocked.hint')),
      h('div', { class: 'check' }, h('input', { type: 'checkbox', name: 'stay_on_subject', id: 'stay', checked: persona.safety.stay_on_subject }), h('label', { for: 'stay' }, t('personas.stay')))),
    h('fieldset', {}, h('legend', {}, t('personas.avatar')),
      field(t('personas.avatar.model'), modelSelect),
      field(t('personas.avatar.upload'), modelFile, t('personas.avatar.upload.hint')),
      preview, previewNote, gestureBox),
    h('div', { class: 'row' },
      h('button', { type: 'submit' }, t('personas.save')),
      id ? h('button', { type: 'button', class: 'secondary danger', onclick: async () => {
        if (!confirm(t('personas.delete.confirm', { name: persona.name }))) return;
        try { await del(`/v1/personas/${id}`); ctx.navigate('/personas'); } catch (err) { alert.hidden = false; alert.textContent = errorText(err); }
      } }, t('personas.delete')) : null),
  );
  main.append(form);

  let avatar = null;
  let disposed = false;
  const showGestures = async (modelId) => {
    clear(gestureBox);
    if (avatar) { avatar.dispose(); avatar = null; }
    const model = models.find((m) => m.id === modelId);
    if (!model) { previewNote.textContent = ''; return; }
    const clips = model.animations || [];
    let matched = {};
    if (id && persona.avatar_model_id === modelId) {
      try { matched = (await get(`/v1/personas/${id}/avatar`)).gestures; } catch { /* none */ }
    }
    gestureBox.append(h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('personas.gesture')), h('th', { scope: 'col' }, t('personas.clip')), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, t('personas.play'))))),
      h('tbody', {}, GESTURES.map((g) => {
        const sel = h('select', { name: `gesture-${g}`, 'aria-label': t('personas.clip.for', { gesture: g }) },
          h('option', { value: '' }, t('personas.clip.auto')),
          clips.map((c) => h('option', { value: c, selected: (persona.gestures || {})[g] === c }, c)));
        return h('tr', {}, h('th', { scope: 'row' }, g), h('td', {}, sel),
          h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: () => {
            if (avatar) avatar.playClip(sel.value || matched[g] || null, g);
          } }, t('personas.play'), h('span', { class: 'visually-hidden' }, ` ${g}`))));
      }))));
    previewNote.textContent = t('personas.preview.loading');
    try {
      const mod = await import('../avatar.js');
      if (disposed) return;
      avatar = await mod.mountAvatar(preview, model, matched);
      preview.classList.add('shown');
      previewNote.textContent = t('personas.preview.clips', { clips: clips.join(', ') || '—' });
    } catch {
      previewNote.textContent = t('personas.preview.none');
    }
  };
  modelSelect.addEventListener('change', () => showGestures(modelSelect.value));
  if (persona.avatar_model_id) showGestures(persona.avatar_model_id);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    alert.hidden = true;
    const f = form.elements;
    const body = {
      name: f.name.value.trim(),
      subject: f.subject.value.trim() || null,
      description: f.description.value.trim() || null,
      language: f.language.value,
      grade_level: f.grade_level.value.trim() || null,
      system_prompt: f.system_prompt.value.trim() || null,
      knowledge_source_ids: all.checked ? [] : [...form.querySelectorAll('input[name=source]:checked')].map((c) => c.value),
      safety: { blocked_topics: f.blocked_topics.value.split(',').map((s) => s.trim()).filter(Boolean), stay_on_subject: f.stay_on_subject.checked },
      avatar_model_id: modelSelect.value || null,
    };
    try {
      const saved = id ? await api('PATCH', `/v1/personas/${id}`, { body }) : await api('POST', '/v1/personas', { body });
      if (modelFile.files.length) {
        const fd = new FormData();
        fd.append('file', modelFile.files[0]);
        fd.append('persona_id', saved.id);
        await upload('/v1/models', fd);
      } else if (modelSelect.value) {
        const gestures = {};
        for (const g of GESTURES) {
          const sel = form.querySelector(`select[name="gesture-${g}"]`);
          if (sel) gestures[g] = sel.value || null;
        }
        await api('PATCH', `/v1/personas/${saved.id}`, { body: { gestures } });
      }
      ctx.navigate(`/personas/${saved.id}`, true);
    } catch (err) {
      if (!showFieldErrors(form, err)) { alert.hidden = false; alert.textContent = errorText(err); }
    }
  });
  return () => { disposed = true; if (avatar) avatar.dispose(); };
}
