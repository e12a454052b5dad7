// The marketplace tab: pinned emergencies, filters (category and tag
// chips from the API's facets, search, sort, near me), the post list with
// infinite scroll and a "Load more" button, live updates, and the post form.
import { h, $, replace, icon } from './dom.js';
import { t, relative } from './i18n.js';
import * as api from './api.js';

/** Posts fetched per page. */
const PAGE = 50;
/** Tag chips shown (most used first); selected ones are always shown. */
const TAG_CHIPS_MAX = 12;
/** Posts past their TTL shown to those who may mark them stale (one page). */
const STALE_MAX = 50;
/** Posts kept in localStorage for the offline view. */
const CACHED_POSTS_MAX = 100;
/** Limits of the node (node/src/core/services/market.rs). */
const TITLE_MAX = 120;
const BODY_MAX = 4000;
const TAGS_MAX = 10;
const TAG_LEN_MAX = 32;
const DAY_S = 86400;

/**
 * Hooks another module sets (conversations.js): `card(article, post)` after
 * a card is made; `gone(data, remove)` decides when an ended post leaves.
 */
export const hooks = { card: null, gone: null };

const state = {
  /** node.status of this node (me.node_id, me.level). */
  me: null,
  ttlMaxDays: 30,
  filter: { categories: new Set(), tags: new Set(), q: '', sort: 'newest', near: false },
  cursor: null,
  loading: false,
  /** Live posts that arrived while the reader was scrolled down. */
  pending: 0,
  facets: null,
  generation: 0,
  editing: null,
  online: true,
};


export function settings() {
  try {
    return JSON.parse(localStorage.getItem('hearth.settings') || '{}');
  } catch {
    return {};
  }
}

function home() {
  const s = settings();
  return Number.isFinite(s.lat) && Number.isFinite(s.lng) ? { lat: s.lat, lng: s.lng, label: s.label || '' } : null;
}

/** Called by app.js whenever node.status or member.list is refreshed. */
export function setNode(me, ttlMaxS) {
  const changed = !state.me || state.me.level !== me.level || state.me.node_id !== me.node_id;
  state.me = me;
  if (ttlMaxS) state.ttlMaxDays = Math.max(1, Math.floor(Math.min(ttlMaxS, 30 * DAY_S) / DAY_S));
  if (changed) {
    rerenderActions();
    refreshStale();
  }
}

export function setOnline(online) {
  state.online = online;
}

// --- the list ----------------------------------------------------------------

function mainQuery(cursor) {
  const f = state.filter;
  const cats = f.categories.size ? [...f.categories] : api.CATEGORIES.filter((c) => c !== 'emergency');
  const q = { categories: cats, tags: [...f.tags], q: f.q, sort: f.sort, cursor, limit: PAGE };
  const hm = home();
  if (hm && (f.near || f.sort === 'nearest')) {
    q.near = hm;
    if (f.near) q.radius_km = settings().radius_km || 5;
  }
  return q;
}

function filtersActive() {
  const f = state.filter;
  return f.categories.size > 0 || f.tags.size > 0 || f.q !== '' || f.near;
}

/** Reloads the pinned emergencies and the first page. */
export async function reload() {
  const gen = ++state.generation;
  state.cursor = null;
  state.pending = 0;
  renderPill();
  const list = $('#post-list');
  list.setAttribute('aria-busy', 'true');
  replace($('#list-state'), h('p', { class: 'state loading', text: t('loading') }));
  $('#load-more').hidden = true;
  try {
    const [main, pinned] = await Promise.all([
      api.listPosts(mainQuery(null)),
      state.filter.categories.size && !state.filter.categories.has('emergency')
        ? Promise.resolve(null)
        : api.listPosts({ categories: ['emergency'], sort: 'newest', limit: 20 }),
    ]);
    if (gen !== state.generation) return;
    renderPinned(state.filter.categories.has('emergency') ? [] : (pinned ? pinned.items : []));
    replace(list);
    appendItems(main.items);
    state.cursor = main.next_cursor;
    state.facets = main.facets;
    renderFacets(main, pinned);
    renderSearchMode(main.search);
    renderListState(main.total);
    cache([...(pinned ? pinned.items : []), ...main.items]);
    setBanner(null);
    refreshStale();
  } catch (e) {
    if (gen !== state.generation) return;
    if (e instanceof api.Unreachable) {
      const cached = cached_();
      renderPinned(cached.filter((p) => p.category === 'emergency'));
      replace(list);
      appendItems(cached.filter((p) => p.category !== 'emergency'));
      replace($('#list-state'));
      setBanner(t('unreachable'), 'warn');
    } else {
      replace($('#list-state'), h('div', { class: 'state error', role: 'alert' },
        h('p', { text: t('errorList', { msg: e.message }) }),
        h('button', { type: 'button', class: 'btn', onclick: reload, text: t('retry') })));
    }
  } finally {
    if (gen === state.generation) list.setAttribute('aria-busy', 'false');
  }
}

async function loadMore() {
  if (state.loading || !state.cursor) return;
  state.loading = true;
  const gen = state.generation;
  const btn = $('#load-more');
  btn.disabled = true;
  btn.textContent = t('loading');
  try {
    const page = await api.listPosts(mainQuery(state.cursor));
    if (gen !== state.generation) return;
    appendItems(page.items);
    state.cursor = page.next_cursor;
  } catch (e) {
    replace($('#list-state'), h('p', { class: 'state error', role: 'alert', text: t('errorList', { msg: e.message }) }));
  } finally {
    state.loading = false;
    btn.disabled = false;
    btn.textContent = t('loadMore');
    btn.hidden = !state.cursor;
  }
}

function renderListState(total) {
  const el = $('#list-state');
  if (total > 0 || $('#post-list').children.length) {
    replace(el, h('p', { class: 'count', text: total === 1 ? t('results1') : t('results', { n: total }) }));
  } else if (filtersActive()) {
    replace(el, h('div', { class: 'state empty' },
      h('p', { text: t('noMatch') }),
      h('button', { type: 'button', class: 'btn', onclick: clearFilters, text: t('clearFilters') })));
  } else if (!$('#pinned-list').children.length) {
    replace(el, h('div', { class: 'state empty' },
      h('p', { class: 'empty-title', text: t('emptyTitle') }),
      h('p', { text: t('emptyText') }),
      h('button', { type: 'button', class: 'btn primary', onclick: () => openForm(), text: t('firstPost') })));
  } else {
    replace(el);
  }
  $('#load-more').hidden = !state.cursor;
}

function appendItems(items) {
  const list = $('#post-list');
  for (const p of items) {
    if (document.querySelector(`#post-list [data-key="${cssKey(p)}"]`)) continue;
    list.append(card(p));
  }
}

/** Whether this node may mark others' posts stale (trusted or anchor). */
function maySweep() {
  const lvl = state.me && state.me.level;
  return lvl === 'trusted' || lvl === 'anchor';
}

/**
 * The posts past their TTL that no node has marked stale yet, for a
 * trusted member or an anchor (`GET /api/posts?past_ttl=only`): a folded
 * section above the list, with "Mark stale" on each. Others never see it.
 */
export async function refreshStale() {
  const section = $('#stale');
  if (!maySweep()) {
    section.hidden = true;
    replace($('#stale-list'));
    return;
  }
  let page;
  try {
    page = await api.listPosts({ past_ttl: 'only', sort: 'expiring', limit: STALE_MAX });
  } catch {
    return; // the list's own error state tells the reader
  }
  if (!maySweep()) return;
  const list = $('#stale-list');
  const shown = new Set([...list.children].map((el) => el.dataset.key));
  const wanted = new Set(page.items.map(key));
  for (const el of [...list.children]) if (!wanted.has(el.dataset.key)) el.remove();
  for (const p of page.items) if (!shown.has(key(p))) list.append(card(p));
  renderStaleCount();
}

function renderStaleCount() {
  const n = $('#stale-list').children.length;
  $('#stale').hidden = n === 0;
  $('#stale-h').textContent = n === 1 ? t('stale1') : t('staleN', { n });
}

function renderPinned(items) {
  const list = $('#pinned-list');
  replace(list, ...items.map(card));
  $('#pinned').hidden = items.length === 0;
}

function cache(items) {
  try {
    localStorage.setItem('hearth.lastPosts', JSON.stringify(items.slice(0, CACHED_POSTS_MAX)));
  } catch { /* full storage: the offline view is a nicety */ }
}

function cached_() {
  try {
    return JSON.parse(localStorage.getItem('hearth.lastPosts') || '[]');
  } catch {
    return [];
  }
}

export function setBanner(text, kind = 'info') {
  const b = $('#banner');
  if (!text) {
    b.hidden = true;
    replace(b);
    return;
  }
  b.hidden = false;
  b.className = `banner ${kind}`;
  replace(b, h('span', { text }));
}

// --- cards --------------------------------------------------------------------

function key(p) {
  return `${p.author}/${p.id}`;
}

function cssKey(p) {
  return CSS.escape(key(p));
}

function shortId(id) {
  return `${id.slice(0, 8)}…`;
}

function card(p) {
  const headingId = `h-${p.author.slice(0, 12)}-${p.id}`;
  const own = state.me && p.author === state.me.node_id;
  const now = Date.now();
  const meta = h('p', { class: 'meta' },
    h('span', { class: 'author' },
      t('by', { name: p.author_name || shortId(p.author) }),
      own ? h('span', { class: 'you', text: ` (${t('you')})` }) : null),
    p.author_level ? h('span', { class: `level level-${p.author_level}`, text: t(`level_${p.author_level}`) }) : null,
    h('time', { datetime: new Date(p.created_ts).toISOString(), title: new Date(p.created_ts).toLocaleString(), text: relative(p.created_ts, now) }),
    // An emergency shows its time left in its head already: once is enough.
    p.category === 'emergency' && p.expires_at > now ? null
      : h('span', { class: 'expires', text: p.expires_at > now ? t('expiresIn', { rel: relative(p.expires_at, now) }) : t('expired') }),
    p.distance_km !== undefined ? h('span', { class: 'distance', text: t('kmAway', { km: p.distance_km.toFixed(1) }) }) : null,
  );
  const art = h('article', { class: `post cat-${p.category}`, 'data-key': key(p), 'aria-labelledby': headingId },
    h('div', { class: 'post-head' },
      h('span', { class: `badge badge-${p.category}` }, icon(p.category), ' ', t(`cat_${p.category}`)),
      p.category === 'emergency' && p.expires_at > now
        ? h('span', { class: 'time-left', text: t('expiresIn', { rel: relative(p.expires_at, now) }) }) : null),
    h('h3', { id: headingId, class: 'post-title', text: p.title }),
    p.body ? h('p', { class: 'post-body', text: p.body }) : null,
    p.tags.length ? h('ul', { class: 'post-tags' },
      ...p.tags.map((tag) => h('li', { text: `#${tag}` }))) : null,
    p.location && p.location.label ? h('p', { class: 'place' }, icon('pin'), ' ', p.location.label) : null,
    meta,
    actions(p),
  );
  art._post = p;
  if (hooks.card) hooks.card(art, p);
  return art;
}

function actions(p) {
  const own = state.me && p.author === state.me.node_id;
  const lvl = state.me && state.me.level;
  const bar = h('div', { class: 'actions' });
  if (own) {
    bar.append(
      h('button', { type: 'button', class: 'btn small', onclick: () => openForm(p), text: t('edit') }),
      h('button', { type: 'button', class: 'btn small good', onclick: (e) => expire(p, 'fulfilled', e.currentTarget), text: t('fulfilled') }),
      h('button', { type: 'button', class: 'btn small', onclick: () => confirmWithdraw(p, bar), text: t('withdraw') }),
    );
  } else if ((lvl === 'trusted' || lvl === 'anchor') && p.status === 'past_ttl') {
    bar.append(h('button', { type: 'button', class: 'btn small', onclick: () => confirmStale(p, bar), text: t('markStale') }));
  }
  return bar.children.length ? bar : null;
}

function rerenderActions() {
  for (const art of document.querySelectorAll('article.post')) {
    if (art._post) art.replaceWith(card(art._post));
  }
}

function confirmWithdraw(p, bar) {
  const before = [...bar.children];
  const restore = () => {
    replace(bar, ...before);
    before[2].focus();
  };
  const yes = h('button', { type: 'button', class: 'btn small danger', onclick: (e) => expire(p, 'withdrawn', e.currentTarget), text: t('withdrawYes') });
  replace(bar,
    h('span', { class: 'confirm', role: 'alert', text: t('withdrawConfirm') }),
    yes,
    h('button', { type: 'button', class: 'btn small', onclick: restore, text: t('keep') }));
  yes.focus();
}

function confirmStale(p, bar) {
  const before = [...bar.children];
  const restore = () => {
    replace(bar, ...before);
    before[0].focus();
  };
  const yes = h('button', { type: 'button', class: 'btn small danger', onclick: (e) => expire(p, 'stale', e.currentTarget), text: t('staleYes') });
  replace(bar,
    h('span', { class: 'confirm', role: 'alert', text: t('staleConfirm') }),
    yes,
    h('button', { type: 'button', class: 'btn small', onclick: restore, text: t('keep') }));
  yes.focus();
}

async function expire(p, reason, button) {
  if (button) button.disabled = true;
  try {
    await api.rpc('market.expire', { id: p.id, author: p.author, reason });
    removePost(p);
    toast(t('saved'));
  } catch (e) {
    if (button) button.disabled = false;
    toast(refusal(e), 'error');
  }
}

function removePost(p) {
  for (const el of document.querySelectorAll(`article[data-key="${cssKey(p)}"]`)) {
    const focusNext = el.contains(document.activeElement);
    const next = el.nextElementSibling || el.previousElementSibling;
    el.remove();
    if (focusNext && next) next.querySelector('h3')?.setAttribute('tabindex', '-1'), next.querySelector('h3')?.focus();
  }
  $('#pinned').hidden = $('#pinned-list').children.length === 0;
  renderStaleCount();
}

// --- live ---------------------------------------------------------------------

function matchesFilter(p) {
  const f = state.filter;
  if (f.q || f.near) return null; // cannot tell here: offer a reload
  if (p.category === 'emergency') return !f.categories.size || f.categories.has('emergency') ? 'pinned' : false;
  if (f.categories.size && !f.categories.has(p.category)) return false;
  return [...f.tags].every((tag) => p.tags.includes(tag));
}

/** One event of the live stream. */
export function onLive(type, data) {
  if (type === 'reset') {
    reload();
    return;
  }
  if (type === 'post.expired') {
    if (hooks.gone) hooks.gone(data, () => removePost(data));
    else removePost(data);
    return;
  }
  if (type !== 'post.added' && type !== 'post.updated') return;
  const p = data;
  if (p.status && p.status !== 'active') {
    removePost(p);
    return;
  }
  const existing = document.querySelectorAll(`article[data-key="${cssKey(p)}"]`);
  if (existing.length) {
    for (const el of existing) el.replaceWith(card(p));
    return;
  }
  // An update of a post not shown: the list orders by creation, so it
  // belongs further down (or on a page not loaded yet), not at the top.
  if (type === 'post.updated') return;
  const where = matchesFilter(p);
  if (where === false) return;
  if (where === 'pinned' && !state.filter.categories.has('emergency')) {
    $('#pinned-list').prepend(card(p));
    $('#pinned').hidden = false;
    return;
  }
  const atTop = window.scrollY < 80 && state.pending === 0 && state.filter.sort === 'newest';
  if (where === true && atTop) {
    $('#post-list').prepend(card(p));
    renderListStateAfterLive();
  } else {
    state.pending += 1;
    renderPill();
  }
}

function renderListStateAfterLive() {
  const el = $('#list-state');
  if (el.querySelector('.empty')) replace(el);
}

function renderPill() {
  const pill = $('#new-pill');
  pill.hidden = state.pending === 0;
  pill.textContent = state.pending === 1 ? t('newPost1') : t('newPosts', { n: state.pending });
}

// --- filters ------------------------------------------------------------------

function renderFacets(main, pinned) {
  const counts = (main.facets && main.facets.category) || {};
  const cats = $('#cat-chips');
  replace(cats, ...api.CATEGORIES.map((c) => {
    const n = c === 'emergency' && !state.filter.categories.has('emergency') ? (pinned ? pinned.total : 0) : counts[c];
    return h('button', {
      type: 'button', class: `chip chip-${c}`, 'aria-pressed': String(state.filter.categories.has(c)),
      onclick: () => toggle(state.filter.categories, c),
    }, icon(c), ' ', t(`cat_${c}`),
    n !== undefined ? h('span', { class: 'n', text: ` ${n}` }) : null);
  }));
  const tags = ((main.facets && main.facets.tags) || []).slice(0, TAG_CHIPS_MAX);
  for (const sel of state.filter.tags) if (!tags.some((x) => x.tag === sel)) tags.push({ tag: sel, count: 0 });
  const tagBox = $('#tag-chips');
  replace(tagBox, ...tags.map(({ tag, count }) => h('button', {
    type: 'button', class: 'chip tag', 'aria-pressed': String(state.filter.tags.has(tag)),
    onclick: () => toggle(state.filter.tags, tag),
  }, `#${tag}`, h('span', { class: 'n', text: ` ${count}` }))));
  $('#tag-group').hidden = tags.length === 0;
  renderSuggestions(tags);
}

function toggle(set, v) {
  if (set.has(v)) set.delete(v);
  else set.add(v);
  reload();
}

function clearFilters() {
  state.filter.categories.clear();
  state.filter.tags.clear();
  state.filter.q = '';
  state.filter.near = false;
  $('#search').value = '';
  $('#near').checked = false;
  reload();
}

function renderSearchMode(search) {
  const el = $('#search-mode');
  if (!search) {
    el.hidden = true;
    return;
  }
  el.hidden = false;
  const why = search.degraded === 'partition' ? t('noModel') : search.degraded;
  el.textContent = search.degraded
    ? t('searchDegraded', { why })
    : search.mode === 'semantic' ? t('searchSemantic')
      : search.mode === 'hybrid' ? t('searchHybrid') : t('searchKeyword');
}

// --- the form -----------------------------------------------------------------

function field(id) {
  return $(`#f-${id}`);
}

export function openForm(p = null) {
  state.editing = p;
  const dlg = $('#post-dialog');
  $('#form-title').textContent = p ? t('formEdit') : t('formNew');
  $('#f-submit').textContent = p ? t('save') : t('post');
  const form = $('#post-form');
  form.reset();
  clearErrors();
  const ttl = field('ttl');
  ttl.max = String(state.ttlMaxDays);
  ttl.value = String(Math.min(7, state.ttlMaxDays));
  $('#ttl-hint').textContent = t('ttlHint', { max: state.ttlMaxDays });
  $('#f-home').hidden = !home();
  if (p) {
    field('category').value = p.category;
    field('title').value = p.title;
    field('body').value = p.body;
    field('tags').value = p.tags.join(', ');
    ttl.value = String(Math.max(1, Math.min(state.ttlMaxDays, Math.round((p.expires_at - Date.now()) / 1000 / DAY_S))));
    if (p.location) {
      field('lat').value = String(p.location.lat / 1e6);
      field('lng').value = String(p.location.lng / 1e6);
      field('label').value = p.location.label || '';
    }
  }
  if (!api.token()) showFormError(t('noToken'));
  dlg.showModal();
  field('category').focus();
}

function clearErrors() {
  for (const el of document.querySelectorAll('#post-form .field-error')) {
    el.textContent = '';
    el.hidden = true;
  }
  for (const el of document.querySelectorAll('#post-form [aria-invalid]')) el.removeAttribute('aria-invalid');
  const summary = $('#form-error');
  summary.hidden = true;
  summary.textContent = '';
}

function fieldError(id, text) {
  const input = field(id);
  const msg = $(`#e-${id}`);
  if (text) {
    input.setAttribute('aria-invalid', 'true');
    msg.textContent = text;
    msg.hidden = false;
  } else {
    input.removeAttribute('aria-invalid');
    msg.textContent = '';
    msg.hidden = true;
  }
  return !text;
}

function showFormError(text) {
  const summary = $('#form-error');
  summary.textContent = text;
  summary.hidden = false;
}

function parseTags(text) {
  return text.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
}

/** Checks the form; each field's message says what is wrong. Returns the params or null. */
function validate() {
  const title = field('title').value.trim();
  const body = field('body').value;
  const tags = parseTags(field('tags').value);
  const days = Number(field('ttl').value);
  const lat = field('lat').value.trim();
  const lng = field('lng').value.trim();
  const ok = [
    fieldError('title', !title ? t('errTitle') : [...title].length > TITLE_MAX ? t('errTitleLong', { n: [...title].length, max: TITLE_MAX }) : null),
    fieldError('body', [...body].length > BODY_MAX ? t('errBodyLong', { n: [...body].length, max: BODY_MAX }) : null),
    fieldError('tags', tags.length > TAGS_MAX || tags.some((x) => [...x].length > TAG_LEN_MAX) ? t('errTags', { max: TAGS_MAX, len: TAG_LEN_MAX }) : null),
    fieldError('ttl', !Number.isInteger(days) || days < 1 || days > state.ttlMaxDays ? t('errTtl', { max: state.ttlMaxDays }) : null),
    fieldError('lat', (lat === '') !== (lng === '') || (lat && (!isFinite(Number(lat)) || Math.abs(Number(lat)) > 90 || !isFinite(Number(lng)) || Math.abs(Number(lng)) > 180)) ? t('errLoc') : null),
  ];
  if (ok.includes(false)) return null;
  const params = { category: field('category').value, title, body, tags: [...new Set(tags)], ttl_seconds: days * DAY_S };
  if (lat) params.location = { lat: Math.round(Number(lat) * 1e6), lng: Math.round(Number(lng) * 1e6), label: field('label').value.trim() };
  return params;
}

function refusal(e) {
  if (e instanceof api.Unreachable) return t('unreachable');
  if (e.code === 'unauthorized' && /not a member/.test(e.message)) return t('notMember', { msg: e.message });
  if (e.code === 'unauthorized' && !api.token()) return t('noToken');
  return t('refused', { msg: e.message });
}

async function submit(ev) {
  ev.preventDefault();
  clearErrors();
  const params = validate();
  if (!params) {
    showFormError(t('errFix'));
    const bad = document.querySelector('#post-form [aria-invalid="true"]');
    if (bad) bad.focus();
    return;
  }
  const btn = $('#f-submit');
  btn.disabled = true;
  try {
    let post;
    if (state.editing) {
      const p = state.editing;
      const upd = { id: p.id, category: params.category, title: params.title, body: params.body, tags: params.tags, ttl_seconds: params.ttl_seconds };
      if (params.location) upd.location = params.location;
      else if (p.location) upd.remove_location = true;
      post = await api.rpc('market.update', upd);
      post = post.post || post;
    } else {
      params.client_id = `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
      post = (await api.rpc('market.post', params)).post;
    }
    $('#post-dialog').close();
    if (post && post.id) onLive(state.editing ? 'post.updated' : 'post.added', post);
    toast(state.editing ? t('saved') : t('posted'));
    state.editing = null;
  } catch (e) {
    showFormError(refusal(e));
  } finally {
    btn.disabled = false;
  }
}

function renderSuggestions(tags) {
  const box = $('#tag-suggestions');
  const list = tags.filter((x) => x.count > 0).slice(0, 8);
  box.hidden = list.length === 0;
  replace(box, h('span', { text: t('suggested') }), ...list.map(({ tag }) => h('button', {
    type: 'button', class: 'chip small', 'aria-label': t('addTag', { tag }),
    onclick: () => {
      const input = field('tags');
      const now = parseTags(input.value);
      if (!now.includes(tag)) input.value = [...now, tag].join(', ');
      input.focus();
    },
  }, `#${tag}`)));
}

// --- toasts -------------------------------------------------------------------

let toastTimer = null;
export function toast(text, kind = 'ok') {
  const el = $('#toast');
  el.className = `toast ${kind}`;
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === 'error' ? 8000 : 3000);
}

// --- wiring -------------------------------------------------------------------

let searchTimer = null;

export function init() {
  $('#new-post').addEventListener('click', () => openForm());
  $('#post-form').addEventListener('submit', submit);
  $('#f-cancel').addEventListener('click', () => $('#post-dialog').close());
  field('title').addEventListener('blur', () => { if (field('title').value.trim()) fieldError('title', null); });
  field('ttl').addEventListener('input', () => {
    const d = Number(field('ttl').value);
    fieldError('ttl', !Number.isInteger(d) || d < 1 || d > state.ttlMaxDays ? t('errTtl', { max: state.ttlMaxDays }) : null);
  });
  $('#f-home').addEventListener('click', () => {
    const hm = home();
    if (!hm) return;
    field('lat').value = String(hm.lat / 1e6);
    field('lng').value = String(hm.lng / 1e6);
    field('label').value = hm.label;
  });
  $('#search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    clearTimeout(searchTimer);
    state.filter.q = $('#search').value.trim();
    reload();
  });
  $('#search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      const q = $('#search').value.trim();
      if (q !== state.filter.q) {
        state.filter.q = q;
        reload();
      }
    }, 350);
  });
  $('#sort').addEventListener('change', () => {
    state.filter.sort = $('#sort').value;
    reload();
  });
  $('#near').addEventListener('change', () => {
    state.filter.near = $('#near').checked;
    reload();
  });
  $('#new-pill').addEventListener('click', () => {
    window.scrollTo({ top: 0 });
    reload();
    $('#post-list').focus();
  });
  $('#load-more').addEventListener('click', loadMore);
  if ('IntersectionObserver' in window) {
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    }, { rootMargin: '600px 0px' });
    io.observe($('#load-more'));
  }
  refreshHomeControls();
}

/** Shows "near me" and "nearest" only once a home location is set. */
export function refreshHomeControls() {
  const has = !!home();
  $('#near-wrap').hidden = !has;
  $('#sort-nearest').hidden = !has;
  $('#sort-nearest').disabled = !has;
  if (!has) {
    state.filter.near = false;
    if (state.filter.sort === 'nearest') state.filter.sort = 'newest';
  }
}

/** Re-renders text after a language switch. */
export function retranslate() {
  rerenderActions();
  renderPill();
  if (state.facets) reload();
}
