// Conversations on the page (issue 14): under each post its public replies,
// a "Reply" box, claims ("I'd like this" on offers, "I can help" on
// requests) with "Accept" for the post's author and "Fulfilled by <name>"
// once one is accepted; the "Messages" tab (an inbox of private messages
// with unread counts, a thread view and a send box); browser notifications
// for emergencies and messages while the page is open. Everything goes
// through the public API (docs/api.md): conversation.get/list,
// market.reply/claim/accept_claim/withdraw_claim, dm.send,
// conversation.mark_read, and the stream's reply/claim/claim_accepted/message
// events. User text only ever enters the page as text (dom.js h()).
import { h, $, replace } from './dom.js';
import { t, relative, extend } from './i18n.js';
import * as api from './api.js';
import { hooks, toast } from './market.js';

/** Threads fetched in one JSON-RPC batch (the node takes up to 64 calls per batch). */
const BATCH_MAX = 50;
/** Replies a card shows before "Show all": a card stays a card. */
const REPLIES_SHOWN = 3;
/** Threads kept in memory (one per card the page made); the oldest go first. */
const THREADS_MAX = 600;
/** Drafts of reply boxes kept while their cards are re-made. */
const DRAFTS_MAX = 50;
/** Limits of the node (node/src/core/services/conversations.rs). */
const REPLY_MAX = 1000;
const DM_MAX = 3000;
/** Seconds between inbox refreshes when no stream event said anything changed. */
const INBOX_REFRESH_S = 20;
const NOTIFY_KEY = 'hearth.notify';

extend({
  en: {
    tabMessages: 'Messages',
    unreadN: '{n} unread',
    reply: 'Reply',
    yourReply: 'Your reply',
    sendReply: 'Send reply',
    replySent: 'Reply sent.',
    replies: 'Replies ({n})',
    showAllReplies: 'Show all {n} replies',
    showFewer: 'Show fewer',
    claimOffer: 'I’d like this',
    claimRequest: 'I can help',
    claimSent: 'Sent: the author sees it under the post.',
    claims: 'Interested ({n})',
    wantsIt: '{name} would like this',
    canHelp: '{name} can help',
    withdrawnClaim: 'withdrawn',
    acceptedClaim: 'accepted',
    accept: 'Accept',
    acceptName: 'Accept {name}',
    accepted: 'Accepted: the post is fulfilled.',
    withdrawClaim: 'Withdraw my interest',
    claimWithdrawn: 'Withdrawn.',
    fulfilledBy: 'Fulfilled by {name}',
    message: 'Message',
    messageName: 'Message {name}',
    conversations: 'Conversations',
    privateMessages: 'Private messages',
    postThreads: 'Posts you take part in',
    noConversations: 'No messages yet. Use “Message” on a neighbour’s post to write to them.',
    pickConversation: 'Choose a conversation, or use “Message” on a post.',
    messageTo: 'Message to {name}',
    send: 'Send',
    sent: 'Sent. It travels through the neighbourhood’s nodes, sealed so only {name} can read it.',
    sentSealed: 'Sent (sealed: only they can read it)',
    unreadable: 'This message could not be opened: {why}',
    aboutPost: 'About: {title}',
    aboutAPost: 'About a post',
    dropAbout: 'Not about this post',
    youName: 'You',
    errEmpty: 'Write something first.',
    errLong: 'That is {n} characters; at most {max}.',
    notifyAsk: 'Get a browser notification for emergencies and new messages while this page is open?',
    notifyOn: 'Turn on',
    notifyNo: 'No, thanks',
    notifySetting: 'Browser notifications for emergencies and new messages',
    notifyBlocked: 'The browser blocks notifications for this page; allow them in its site settings.',
    notifyUnsupported: 'This browser cannot show notifications.',
    notifyMessage: 'New message from {name}',
    notifyMessageBody: 'Open HearthNet to read it.',
    notifyEmergency: 'Emergency: {title}',
    dmWaiting: 'Messages waiting',
    dmWaitingWhy: 'sent to members who are offline',
    // refusals, in plain words
    rNotAdmitted: 'Your node is not admitted yet: an anchor of the community must add it first.',
    rPostGone: 'This post is no longer there (withdrawn, expired or removed).',
    rPostEnded: 'This post has ended; it can no longer be claimed or accepted.',
    rOwnPost: 'This is your own post: others can claim it, you cannot.',
    rNotClaimable: 'Only offers and requests can be claimed.',
    rClaimGone: 'That neighbour withdrew their interest.',
    rNotAuthor: 'Only the post’s author can accept a claim.',
    rNotMember: 'That person is not a member of this community (any more).',
    rSelf: 'That is you; write to a neighbour.',
    rTooLong: 'The text is too long; shorten it.',
    rBusy: 'Too many writes at once; wait a minute and try again.',
    rNoToken: 'This page has no key to write with. Open the link that `hearth run` printed (it ends in #token=…).',
    rUnsupported: 'Your node does not offer this yet; update HearthNet.',
  },
  de: {
    tabMessages: 'Nachrichten',
    unreadN: '{n} ungelesen',
    reply: 'Antworten',
    yourReply: 'Deine Antwort',
    sendReply: 'Antwort senden',
    replySent: 'Antwort gesendet.',
    replies: 'Antworten ({n})',
    showAllReplies: 'Alle {n} Antworten zeigen',
    showFewer: 'Weniger zeigen',
    claimOffer: 'Hätte ich gern',
    claimRequest: 'Ich kann helfen',
    claimSent: 'Gesendet: die Person sieht es unter dem Beitrag.',
    claims: 'Interesse ({n})',
    wantsIt: '{name} hätte das gern',
    canHelp: '{name} kann helfen',
    withdrawnClaim: 'zurückgezogen',
    acceptedClaim: 'angenommen',
    accept: 'Annehmen',
    acceptName: '{name} annehmen',
    accepted: 'Angenommen: der Beitrag ist erledigt.',
    withdrawClaim: 'Mein Interesse zurückziehen',
    claimWithdrawn: 'Zurückgezogen.',
    fulfilledBy: 'Erledigt durch {name}',
    message: 'Nachricht',
    messageName: 'Nachricht an {name}',
    conversations: 'Unterhaltungen',
    privateMessages: 'Private Nachrichten',
    postThreads: 'Beiträge, an denen du teilnimmst',
    noConversations: 'Noch keine Nachrichten. Mit „Nachricht“ an einem Beitrag schreibst du der Person.',
    pickConversation: 'Wähle eine Unterhaltung, oder nutze „Nachricht“ an einem Beitrag.',
    messageTo: 'Nachricht an {name}',
    send: 'Senden',
    sent: 'Gesendet. Sie reist über die Knoten der Nachbarschaft, versiegelt, so dass nur {name} sie lesen kann.',
    sentSealed: 'Gesendet (versiegelt: nur die Person kann sie lesen)',
    unreadable: 'Diese Nachricht ließ sich nicht öffnen: {why}',
    aboutPost: 'Betrifft: {title}',
    aboutAPost: 'Betrifft einen Beitrag',
    dropAbout: 'Nicht zu diesem Beitrag',
    youName: 'Du',
    errEmpty: 'Schreib zuerst etwas.',
    errLong: 'Das sind {n} Zeichen; höchstens {max}.',
    notifyAsk: 'Bei Notfällen und neuen Nachrichten eine Browser-Benachrichtigung zeigen, solange diese Seite offen ist?',
    notifyOn: 'Einschalten',
    notifyNo: 'Nein, danke',
    notifySetting: 'Browser-Benachrichtigungen bei Notfällen und neuen Nachrichten',
    notifyBlocked: 'Der Browser blockiert Benachrichtigungen für diese Seite; erlaube sie in den Website-Einstellungen.',
    notifyUnsupported: 'Dieser Browser kann keine Benachrichtigungen zeigen.',
    notifyMessage: 'Neue Nachricht von {name}',
    notifyMessageBody: 'Öffne HearthNet, um sie zu lesen.',
    notifyEmergency: 'Notfall: {title}',
    dmWaiting: 'Wartende Nachrichten',
    dmWaitingWhy: 'an Mitglieder, die offline sind',
    rNotAdmitted: 'Dein Knoten ist noch nicht aufgenommen: ein Anker der Gemeinschaft muss ihn erst hinzufügen.',
    rPostGone: 'Diesen Beitrag gibt es nicht mehr (zurückgezogen, abgelaufen oder entfernt).',
    rPostEnded: 'Dieser Beitrag ist beendet; er kann nicht mehr beansprucht oder angenommen werden.',
    rOwnPost: 'Das ist dein eigener Beitrag: andere können ihn beanspruchen, du nicht.',
    rNotClaimable: 'Nur Angebote und Gesuche können beansprucht werden.',
    rClaimGone: 'Diese Person hat ihr Interesse zurückgezogen.',
    rNotAuthor: 'Nur wer den Beitrag geschrieben hat, kann ein Interesse annehmen.',
    rNotMember: 'Diese Person ist (nicht mehr) Mitglied dieser Gemeinschaft.',
    rSelf: 'Das bist du; schreib einem Nachbarn.',
    rTooLong: 'Der Text ist zu lang; kürze ihn.',
    rBusy: 'Zu viele Schreibvorgänge auf einmal; warte eine Minute und versuch es nochmal.',
    rNoToken: 'Diese Seite hat keinen Schlüssel zum Schreiben. Öffne den Link, den `hearth run` ausgegeben hat (er endet auf #token=…).',
    rUnsupported: 'Dein Knoten bietet das noch nicht an; aktualisiere HearthNet.',
  },
});

const state = {
  /** This node's id (node.status). */
  me: null,
  /** Member id -> display name (member.list, member.level events). */
  names: new Map(),
  /** Post key -> conversation.get answer (`{post, thread, fulfilled_by}`). */
  threads: new Map(),
  /** Post key -> post ref, waiting to be fetched in the next batch. */
  queued: new Map(),
  flushing: false,
  /** Post key -> the text typed in its reply box. */
  drafts: new Map(),
  /** Reply boxes open (form ids): made only when asked for, so 300 cards stay light. */
  replying: new Set(),
  /** Post keys whose replies are shown in full. */
  expanded: new Set(),
  /** The inbox: conversation.list's entries. */
  conversations: [],
  /** The member whose messages are open, and the post the next message is about. */
  open: null,
  about: null,
  /** Whether the node serves conversation.mark_read (null: not asked yet). */
  markRead: null,
};

// --- plumbing ----------------------------------------------------------------

function key(ref) {
  return `${ref.author}/${ref.id}`;
}

function shortId(id) {
  return id ? `${id.slice(0, 8)}…` : '?';
}

/** A member's display name (or a short id), marked "(you)" for this node. */
export function nameOf(id) {
  const name = state.names.get(id) || shortId(id);
  return id && id === state.me ? `${name} (${t('you')})` : name;
}

/** The post a stream event is about: `post`, `target` or `{post_author, post_id}`. */
function postRef(data) {
  if (!data) return null;
  for (const k of ['post', 'target']) {
    const r = data[k];
    if (r && r.author && r.id !== undefined) return { author: r.author, id: r.id };
  }
  if (data.post_author && data.post_id !== undefined) return { author: data.post_author, id: data.post_id };
  return null;
}

/** Several JSON-RPC calls in one request; each answer is `{result}` or `{error}`. */
async function rpcBatch(calls) {
  const headers = { 'Content-Type': 'application/json' };
  if (api.token()) headers.Authorization = `Bearer ${api.token()}`;
  let res;
  try {
    res = await fetch('/rpc', {
      method: 'POST',
      headers,
      body: JSON.stringify(calls.map(([method, params], i) => ({ jsonrpc: '2.0', id: i + 1, method, params }))),
    });
  } catch (e) {
    throw new api.Unreachable(String((e && e.message) || e));
  }
  const body = await res.json().catch(() => null);
  if (!Array.isArray(body)) {
    const err = (body && body.error) || {};
    throw new api.ApiError((err.data && err.data.code) || 'internal', err.message || `HTTP ${res.status}`, res.status);
  }
  const byId = new Map(body.map((a) => [a.id, a]));
  return calls.map((_, i) => byId.get(i + 1) || { error: { message: 'no answer' } });
}

/**
 * A refusal in plain words, in the page's language. The node's messages
 * are English sentences; the common ones are recognised and said here in
 * both languages, anything else is shown as the node said it.
 */
export function plain(e) {
  if (e instanceof api.Unreachable) return t('unreachable');
  const m = String(e.message || '');
  if (e.code === 'unauthorized' && !api.token()) return t('rNoToken');
  if (e.code === 'unauthorized' && /not a member/.test(m)) return t('rNotAdmitted');
  if (e.code === 'overloaded' || e.status === 429) return t('rBusy');
  if (/method not found|unknown method|no capability/i.test(m)) return t('rUnsupported');
  if (/your own post/.test(m)) return t('rOwnPost');
  if (/only offers and requests/.test(m)) return t('rNotClaimable');
  if (/has (already )?ended|no longer be/.test(m)) return t('rPostEnded');
  if (/withdrawn by its author|was withdrawn/.test(m)) return t('rClaimGone');
  if (/you have no post|only a post's author/.test(m)) return t('rNotAuthor');
  if (/^no post\b/.test(m)) return t('rPostGone');
  if (/that is this node/.test(m)) return t('rSelf');
  if (/not a member of this community/.test(m)) return t('rNotMember');
  if (/over the limit|over the event limit|characters, over/.test(m)) return t('rTooLong');
  return t('refused', { msg: m });
}

function checkText(text, max) {
  if (!text.trim()) return t('errEmpty');
  const n = [...text].length;
  return n > max ? t('errLong', { n, max }) : null;
}

// --- threads under posts -------------------------------------------------------

function remember(k, answer) {
  state.threads.delete(k);
  state.threads.set(k, answer);
  while (state.threads.size > THREADS_MAX) state.threads.delete(state.threads.keys().next().value);
}

/** Asks for a post's thread in the next batch (several cards, one request). */
function queue(ref) {
  state.queued.set(key(ref), { author: ref.author, id: ref.id });
  if (!state.flushing) {
    state.flushing = true;
    queueMicrotask(flush);
  }
}

async function flush() {
  try {
    while (state.queued.size) {
      const batch = [...state.queued].slice(0, BATCH_MAX);
      for (const [k] of batch) state.queued.delete(k);
      const keys = batch.map(([k]) => k);
      const calls = batch.map(([, post]) => ['conversation.get', { post }]);
      let answers;
      try {
        answers = await rpcBatch(calls);
      } catch {
        return; // the node is away; the stream's reset reloads everything
      }
      keys.forEach((k, i) => {
        const a = answers[i];
        if (a && a.result) {
          remember(k, a.result);
          renderThreads(k);
        }
      });
    }
  } finally {
    state.flushing = false;
  }
}

/** Refetches one post's thread now (after a write or a stream event). */
async function refresh(ref) {
  const k = key(ref);
  try {
    const answer = await api.rpc('conversation.get', { post: { author: ref.author, id: ref.id } });
    remember(k, answer);
  } catch (e) {
    if (e instanceof api.ApiError && e.code === 'not_found') state.threads.delete(k);
  }
  renderThreads(k);
  return state.threads.get(k);
}

/** The cards of a post on the marketplace, and its thread on the Messages tab. */
function cards(k) {
  const sel = CSS.escape(k);
  return [...document.querySelectorAll(`article.post[data-key="${sel}"], .conv-view[data-key="${sel}"]`)];
}

function renderThreads(k) {
  for (const art of cards(k)) renderConv(art);
}

/** Called by market.js for every card it makes. */
function decorate(art, p) {
  const k = key(p);
  const box = h('div', { class: 'conv' });
  art.append(box);
  renderConv(art);
  if (!state.threads.has(k)) queue(p);
}

function isLive(p, thread) {
  return (!p.status || p.status === 'active') && !(thread && thread.fulfilled_by) && !(p.expires_at && p.expires_at <= Date.now());
}

/** Draws the conversation part of one card from the thread known now. */
function renderConv(art) {
  const p = art._post;
  const box = art.querySelector(':scope > .conv');
  if (!p || !box) return;
  const k = key(p);
  const answer = state.threads.get(k);
  const thread = answer && answer.thread;
  const fulfilledBy = answer && answer.fulfilled_by;
  const own = state.me && p.author === state.me;
  const live = isLive(p, answer);
  const claimable = p.category === 'offer' || p.category === 'request';
  const parts = [];

  if (fulfilledBy) {
    art.classList.add('ended');
    parts.push(h('p', { class: 'fulfilled', role: 'status' },
      h('span', { 'aria-hidden': 'true', text: '✔ ' }), t('fulfilledBy', { name: nameOf(fulfilledBy) })));
    // The post has ended: its own edit/fulfil/withdraw buttons no longer apply.
    art.querySelector(':scope > .actions')?.remove();
  }

  const claims = (thread && thread.claims) || [];
  if (claims.length) {
    const shown = claims.filter((c) => !c.withdrawn || c.claim.author === state.me);
    if (shown.length) {
      parts.push(h('div', { class: 'claims' },
        h('h4', { text: t('claims', { n: claims.filter((c) => !c.withdrawn).length }) }),
        h('ul', {}, ...shown.map((c) => claimItem(p, c, own && live)))));
    }
  }

  const replies = (thread && thread.replies) || [];
  if (replies.length) {
    const all = state.expanded.has(k);
    const list = all ? replies : replies.slice(-REPLIES_SHOWN);
    parts.push(h('div', { class: 'replies' },
      h('h4', { text: t('replies', { n: replies.length }) }),
      h('ul', {}, ...list.map((r) => h('li', {},
        h('span', { class: 'who', text: nameOf(r.author) }), ' ',
        h('time', { datetime: new Date(r.ts).toISOString(), text: relative(r.ts) }),
        h('p', { class: 'reply-body', text: r.body })))),
      replies.length > REPLIES_SHOWN ? h('button', {
        type: 'button', class: 'linkish', 'aria-expanded': String(all),
        onclick: () => {
          if (all) state.expanded.delete(k); else state.expanded.add(k);
          renderConv(art);
        },
        text: all ? t('showFewer') : t('showAllReplies', { n: replies.length }),
      }) : null));
  }

  const bar = h('div', { class: 'conv-actions' });
  const mine = claims.find((c) => c.claim.author === state.me && !c.withdrawn);
  if (!own && claimable && live && !mine) {
    bar.append(h('button', {
      type: 'button', class: 'btn small primary',
      onclick: (e) => claim(p, e.currentTarget),
      text: p.category === 'offer' ? t('claimOffer') : t('claimRequest'),
    }));
  }
  if (!own && mine && live) {
    bar.append(h('button', { type: 'button', class: 'btn small', onclick: (e) => withdrawClaim(p, mine.claim, e.currentTarget), text: t('withdrawClaim') }));
  }
  const formId = replyFormId(art, p);
  const form = state.replying.has(formId) ? replyForm(art, p, formId) : null;
  bar.append(h('button', {
    type: 'button', class: 'btn small reply-toggle', 'aria-expanded': String(!!form), 'aria-controls': form ? formId : null,
    onclick: () => {
      // The card's post as it is now (a live update may have replaced it).
      const id = replyFormId(art, art._post);
      if (state.replying.has(id)) state.replying.delete(id);
      else state.replying.add(id);
      renderConv(art);
      if (state.replying.has(id)) art.querySelector(`#${CSS.escape(id)} textarea`)?.focus();
      else art.querySelector('.reply-toggle')?.focus();
    },
    text: t('reply'),
  }));
  if (!own && p.author) {
    bar.append(h('button', {
      type: 'button', class: 'btn small', 'aria-label': t('messageName', { name: nameOf(p.author) }),
      onclick: () => openConversation(p.author, { author: p.author, id: p.id, title: p.title }),
      text: t('message'),
    }));
  }
  // Keep focus where it was when the part is redrawn under the reader.
  const focused = box.contains(document.activeElement) ? focusPath(box, document.activeElement) : null;
  replace(box, ...parts, bar, form);
  if (focused) restoreFocus(box, focused);
}

function focusPath(box, el) {
  if (el.tagName === 'TEXTAREA') return { sel: 'textarea' };
  const buttons = [...box.querySelectorAll('button')];
  return { index: buttons.indexOf(el), text: el.textContent };
}

function restoreFocus(box, f) {
  if (f.sel) {
    box.querySelector(f.sel)?.focus();
    return;
  }
  const buttons = [...box.querySelectorAll('button')];
  (buttons.find((b) => b.textContent === f.text) || buttons[Math.min(f.index, buttons.length - 1)])?.focus();
}

function claimItem(p, c, canAccept) {
  const name = nameOf(c.claim.author);
  const li = h('li', { class: c.withdrawn ? 'withdrawn' : c.accepted ? 'accepted' : '' },
    h('span', { text: p.category === 'request' ? t('canHelp', { name }) : t('wantsIt', { name }) }),
    c.claim.note ? h('span', { class: 'note', text: ` — ${c.claim.note}` }) : null,
    c.withdrawn ? h('span', { class: 'tag-state', text: ` (${t('withdrawnClaim')})` }) : null,
    c.accepted ? h('span', { class: 'tag-state good', text: ` ✔ ${t('acceptedClaim')}` }) : null);
  if (canAccept && !c.withdrawn && !c.accepted) {
    li.append(' ', h('button', {
      type: 'button', class: 'btn small good', 'aria-label': t('acceptName', { name }),
      onclick: (e) => accept(p, c.claim, e.currentTarget), text: t('accept'),
    }));
  }
  return li;
}

/** The same post can have a card and an open thread on the Messages tab: their ids differ. */
function replyFormId(art, p) {
  return `${art.classList.contains('conv-view') ? 'v' : 'r'}-${p.author.slice(0, 12)}-${p.id}`;
}

function replyForm(art, p, base) {
  const k = key(p);
  const area = h('textarea', { id: `${base}-text`, rows: 2, 'aria-describedby': `${base}-err` });
  area.value = state.drafts.get(k) || '';
  area.addEventListener('input', () => {
    state.drafts.set(k, area.value);
    while (state.drafts.size > DRAFTS_MAX) state.drafts.delete(state.drafts.keys().next().value);
  });
  const err = h('p', { id: `${base}-err`, class: 'field-error', hidden: true });
  const form = h('form', { id: base, class: 'reply-form' },
    h('label', { for: area.id, text: t('yourReply') }),
    area, err,
    h('div', { class: 'inline' }, h('button', { type: 'submit', class: 'btn small primary', text: t('sendReply') })));
  onTextSubmit(form, area, err, REPLY_MAX, async () => {
    await api.rpc('market.reply', { post: { author: p.author, id: p.id }, body: area.value });
    state.drafts.delete(k);
    state.replying.delete(base);
    toast(t('replySent'));
    await refresh(p);
    art.querySelector('.reply-toggle')?.focus();
  });
  return form;
}

/**
 * Sends a text form: checks the text (at most `max` characters) and says
 * what is wrong before anything is sent; the button is off while `send`
 * runs; a refusal is shown under the field in plain words.
 */
function onTextSubmit(form, area, err, max, send) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const bad = checkText(area.value, max);
    showError(area, err, bad);
    if (bad) {
      area.focus();
      return;
    }
    const btn = form.querySelector('button[type="submit"]');
    btn.disabled = true;
    try {
      await send();
    } catch (ex) {
      showError(area, err, plain(ex));
    } finally {
      btn.disabled = false;
    }
  });
}

function showError(input, el, text) {
  el.hidden = !text;
  el.textContent = text || '';
  if (text) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

async function claim(p, button) {
  button.disabled = true;
  try {
    await api.rpc('market.claim', { post: { author: p.author, id: p.id } });
    toast(t('claimSent'));
    await refresh(p);
  } catch (e) {
    button.disabled = false;
    toast(plain(e), 'error');
  }
}

async function withdrawClaim(p, c, button) {
  button.disabled = true;
  try {
    await api.rpc('market.withdraw_claim', { post: { author: p.author, id: p.id }, claim: c.id });
    toast(t('claimWithdrawn'));
    await refresh(p);
  } catch (e) {
    button.disabled = false;
    toast(plain(e), 'error');
  }
}

async function accept(p, c, button) {
  button.disabled = true;
  try {
    await api.rpc('market.accept_claim', { post: p.id, claim: { author: c.author, id: c.id } });
    toast(t('accepted'));
    await refresh(p);
  } catch (e) {
    button.disabled = false;
    toast(plain(e), 'error');
  }
}

/**
 * market.js asks before an ended post leaves the list: a post ended by an
 * accepted claim stays (until the next reload) saying who fulfilled it, so
 * both neighbours see the outcome; any other end removes it.
 */
async function gone(data, remove) {
  // `fulfilled_by` comes with an end by an accepted claim (docs/api.md).
  if (data.reason !== 'fulfilled' || !data.fulfilled_by || !cards(key(data)).length) {
    remove();
    return;
  }
  const answer = await refresh(data);
  if (!(answer && answer.fulfilled_by)) remove();
}

// --- the inbox -----------------------------------------------------------------

function panel() {
  return $('#inbox');
}

function unreadOf(c) {
  return Number(c.unread) || 0;
}

/** A list entry's identity: `dm:<member>` or `post:<author>/<id>`. */
function convId(c) {
  return c.kind === 'post' && c.post ? `post:${key(c.post)}` : `dm:${c.with}`;
}

function openId() {
  const o = state.open;
  return o ? (o.kind === 'post' ? `post:${key(o.post)}` : `dm:${o.with}`) : null;
}

async function loadInbox() {
  try {
    const r = await api.rpc('conversation.list', {});
    state.conversations = (r.conversations || []).map((c) => ({ kind: c.kind || 'dm', ...c }));
    for (const c of state.conversations) if (c.kind === 'dm' && c.name && c.with) state.names.set(c.with, c.name);
  } catch {
    return;
  }
  renderBadge();
  if (!$('#panel-messages').hidden) renderList();
}

function renderBadge() {
  const n = state.conversations.reduce((s, c) => s + unreadOf(c), 0);
  const badge = $('#unread-total');
  if (!badge) return;
  badge.hidden = n === 0;
  // Only the number shows (the tab stays one line on a phone); the words are read out.
  replace(badge, h('span', { class: 'sr-only', text: ', ' }), String(n), h('span', { class: 'sr-only', text: t('unreadN', { n }).replace(String(n), '') }));
}

function renderInbox() {
  const box = panel();
  if (!box) return;
  if (!box.querySelector('.inbox-grid')) {
    replace(box,
      notifySetting(),
      h('div', { class: 'inbox-grid' },
        h('nav', { class: 'conv-list card', 'aria-labelledby': 'conv-h' },
          h('h2', { id: 'conv-h', text: t('conversations') }),
          h('div', { id: 'conv-items' })),
        h('section', { class: 'thread card', 'aria-labelledby': 'thread-h', id: 'thread' })));
  }
  renderList();
  renderThread();
}

function listItem(c) {
  const n = unreadOf(c);
  const last = c.last || null;
  const isPost = c.kind === 'post';
  const title = isPost ? (c.title || t('aboutAPost')) : (c.name || nameOf(c.with));
  return h('li', {}, h('button', {
    type: 'button', class: `conv-item${n ? ' has-unread' : ''}${isPost ? ' is-post' : ''}`,
    'aria-current': convId(c) === openId() ? 'true' : null,
    onclick: () => (isPost ? openPostThread(c.post, c.title) : openConversation(c.with)),
  },
  h('span', { class: 'who', text: title }),
  n ? h('span', { class: 'unread', text: t('unreadN', { n }) }) : null,
  last && last.ts ? h('time', { class: 'muted small', datetime: new Date(last.ts).toISOString(), text: relative(last.ts) }) : null,
  last && last.text ? h('span', { class: 'preview', text: `${last.from === state.me ? `${t('youName')}: ` : ''}${last.text}` }) : null));
}

function renderList() {
  const list = $('#conv-items');
  if (!list) return;
  const items = [...state.conversations];
  const o = state.open;
  if (o && o.kind === 'dm' && !items.some((c) => convId(c) === openId())) items.unshift({ kind: 'dm', with: o.with, unread: 0 });
  const dms = items.filter((c) => c.kind !== 'post');
  const posts = items.filter((c) => c.kind === 'post');
  if (!items.length) {
    replace(list, h('p', { class: 'hint', text: t('noConversations') }));
    return;
  }
  replace(list,
    dms.length ? h('h3', { class: 'list-h', text: t('privateMessages') }) : null,
    dms.length ? h('ul', {}, ...dms.map(listItem)) : null,
    posts.length ? h('h3', { class: 'list-h', text: t('postThreads') }) : null,
    posts.length ? h('ul', {}, ...posts.map(listItem)) : null);
}

/** Opens the messages with `who` on the Messages tab; `about`: the post the next message is about. */
export function openConversation(who, about = null) {
  state.open = { kind: 'dm', with: who };
  state.about = about;
  showOpen();
  $('#dm-text')?.focus();
}

/** Opens a post's public thread (replies and claims) on the Messages tab. */
function openPostThread(post, title) {
  state.open = { kind: 'post', post: { author: post.author, id: post.id }, title };
  state.about = null;
  showOpen();
  $('#thread-h')?.focus();
}

/** Shows the open conversation at once (tab, heading, send box); its messages follow. */
function showOpen() {
  const tab = $('#tab-messages');
  // Selecting the tab calls show(), which draws the inbox and loads the thread.
  if (tab && tab.getAttribute('aria-selected') !== 'true') tab.click();
  else {
    renderInbox();
    loadThread(true);
  }
}

async function loadThread(markRead) {
  const o = state.open;
  if (!o) return;
  if (o.kind === 'post') {
    await loadPostView(o);
    if (markRead) await markAsRead(o);
    return;
  }
  let answer;
  try {
    answer = await api.rpc('conversation.get', { with: o.with });
  } catch (e) {
    const box = $('#thread-msgs');
    if (box) replace(box, h('p', { class: 'state error', role: 'alert', text: plain(e) }));
    return;
  }
  if (state.open !== o) return;
  renderMessages(answer.messages || []);
  if (markRead) await markAsRead(o);
}

async function markAsRead(o) {
  const entry = state.conversations.find((c) => convId(c) === openId());
  if (state.markRead === false || !entry || !unreadOf(entry)) return;
  try {
    await api.rpc('conversation.mark_read', o.kind === 'post' ? { post: o.post } : { with: o.with });
    state.markRead = true;
  } catch (e) {
    if (/method not found|unknown method|no capability/i.test(String(e.message))) state.markRead = false;
    return;
  }
  entry.unread = 0;
  renderBadge();
  renderList();
}

/** The open post thread: the post (whatever its status) with its conversation part. */
async function loadPostView(o) {
  const box = $('#thread-msgs');
  if (!box) return;
  let post = null;
  try {
    post = await api.get(`/api/posts/${encodeURIComponent(o.post.author)}/${encodeURIComponent(o.post.id)}`);
    post = post && (post.post || post);
  } catch { /* shown from the thread alone */ }
  if (state.open !== o) return;
  const p = { author: o.post.author, id: o.post.id, title: o.title || '', tags: [], ...(post || {}) };
  const view = h('div', { class: 'conv-view', 'data-key': key(p) },
    p.body ? h('p', { class: 'post-body', text: p.body }) : null,
    h('p', { class: 'meta', text: t('by', { name: nameOf(p.author) }) }),
    h('div', { class: 'conv' }));
  view._post = p;
  replace(box, view);
  if (!state.threads.has(key(p))) await refresh(p);
  else renderConv(view);
}

function renderThread() {
  const box = $('#thread');
  if (!box) return;
  const o = state.open;
  if (!o) {
    replace(box, h('h2', { id: 'thread-h', class: 'sr-only', text: t('tabMessages') }),
      h('p', { class: 'hint', text: t('pickConversation') }));
    return;
  }
  if (o.kind === 'post') {
    replace(box,
      h('h2', { id: 'thread-h', tabindex: '-1', text: o.title || t('aboutAPost') }),
      h('div', { id: 'thread-msgs' }));
    return;
  }
  const who = nameOf(o.with);
  const area = h('textarea', { id: 'dm-text', rows: 3, 'aria-describedby': 'dm-err' });
  const err = h('p', { id: 'dm-err', class: 'field-error', hidden: true });
  const form = h('form', { class: 'dm-form' },
    state.about ? h('p', { class: 'about' },
      h('span', { text: state.about.title ? t('aboutPost', { title: state.about.title }) : t('aboutAPost') }), ' ',
      h('button', { type: 'button', class: 'linkish', onclick: () => { state.about = null; renderThread(); loadThread(false); }, text: t('dropAbout') })) : null,
    h('label', { for: 'dm-text', text: t('messageTo', { name: who }) }),
    area, err,
    h('div', { class: 'inline' }, h('button', { type: 'submit', class: 'btn primary', text: t('send') })));
  onTextSubmit(form, area, err, DM_MAX, async () => {
    const params = { to: o.with, body: area.value };
    if (state.about) params.post = { author: state.about.author, id: state.about.id };
    await api.rpc('dm.send', params);
    area.value = '';
    state.about = null;
    toast(t('sent', { name: who }));
    renderThread();
    await loadThread(false);
    await loadInbox();
    $('#dm-text')?.focus();
  });
  replace(box,
    h('h2', { id: 'thread-h', text: who }),
    h('div', { id: 'thread-msgs', class: 'messages', 'aria-live': 'polite' }),
    form);
}

function postTitle(ref) {
  if (!ref) return null;
  const el = cards(key(ref))[0];
  if (el && el._post) return el._post.title;
  const c = state.conversations.find((x) => x.kind === 'post' && x.post && key(x.post) === key(ref));
  return c ? c.title : null;
}

function renderMessages(messages) {
  const box = $('#thread-msgs');
  if (!box) return;
  replace(box, h('ol', { class: 'msgs' }, ...messages.map((m) => {
    const out = m.outgoing || m.from === state.me;
    const title = m.post ? postTitle(m.post) : null;
    return h('li', { class: `msg ${out ? 'out' : 'in'}` },
      h('p', { class: 'msg-meta' }, h('span', { class: 'who', text: out ? t('youName') : nameOf(m.from) }), ' ',
        h('time', { datetime: new Date(m.ts).toISOString(), title: new Date(m.ts).toLocaleString(), text: relative(m.ts) })),
      m.post ? h('p', { class: 'about small', text: title ? t('aboutPost', { title }) : t('aboutAPost') }) : null,
      m.body !== null && m.body !== undefined ? h('p', { class: 'msg-body', text: m.body })
        : m.error ? h('p', { class: 'msg-body error', text: t('unreadable', { why: m.error }) })
          : h('p', { class: 'msg-body muted', text: t('sentSealed') }));
  })));
  const last = box.lastElementChild && box.lastElementChild.lastElementChild;
  if (last) last.scrollIntoView({ block: 'nearest' });
}

// --- notifications -------------------------------------------------------------

function notifyPref() {
  return localStorage.getItem(NOTIFY_KEY);
}

function canNotify() {
  return 'Notification' in window;
}

async function setNotify(on) {
  if (on && canNotify() && Notification.permission === 'default') {
    try {
      await Notification.requestPermission();
    } catch { /* old browsers: the callback form; the setting still records the wish */ }
  }
  localStorage.setItem(NOTIFY_KEY, on ? 'on' : 'off');
  $('#notify-ask')?.remove();
  const cb = $('#notify-on');
  if (cb) cb.checked = on;
  renderNotifyHint();
}

function renderNotifyHint() {
  const hint = $('#notify-hint');
  if (!hint) return;
  const text = !canNotify() ? t('notifyUnsupported')
    : notifyPref() === 'on' && Notification.permission === 'denied' ? t('notifyBlocked') : '';
  hint.textContent = text;
  hint.hidden = !text;
}

function notifySetting() {
  const cb = h('input', { type: 'checkbox', id: 'notify-on', 'aria-describedby': 'notify-hint' });
  cb.checked = notifyPref() === 'on';
  cb.disabled = !canNotify();
  cb.addEventListener('change', () => setNotify(cb.checked));
  const box = h('div', { class: 'notify-setting' },
    h('span', { class: 'check' }, cb, h('label', { for: 'notify-on', text: t('notifySetting') })),
    h('p', { id: 'notify-hint', class: 'hint', hidden: true }));
  queueMicrotask(renderNotifyHint);
  return box;
}

/** Asks once (a bar under the header, not the browser's prompt out of nowhere). */
function askOnce() {
  if (!canNotify() || notifyPref() || Notification.permission === 'denied' || $('#notify-ask')) return;
  const bar = h('div', { id: 'notify-ask', class: 'banner ask', role: 'region', 'aria-label': t('notifySetting') },
    h('span', { text: t('notifyAsk') }),
    h('span', { class: 'inline' },
      h('button', { type: 'button', class: 'btn small primary', onclick: () => setNotify(true), text: t('notifyOn') }),
      h('button', { type: 'button', class: 'btn small', onclick: () => setNotify(false), text: t('notifyNo') })));
  $('#banner').after(bar);
}

function notify(title, body, tag) {
  if (!canNotify() || notifyPref() !== 'on' || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(title, { body, tag, icon: '/icon.svg' });
    n.onclick = () => window.focus();
  } catch { /* some platforms allow notifications only from a service worker */ }
}

function messagesVisible(who) {
  const o = state.open;
  return document.visibilityState === 'visible' && !$('#panel-messages').hidden && !!o && o.kind === 'dm' && o.with === who;
}

// --- wiring --------------------------------------------------------------------

/** One event of the live stream (app.js passes each to market.js and here). */
export function onLive(type, data) {
  if (type === 'reset') {
    state.threads.clear();
    loadInbox();
    return;
  }
  if (type === 'reply' || type === 'claim' || type === 'claim_accepted' || type === 'claim_withdrawn') {
    const ref = postRef(data);
    if (ref && cards(key(ref)).length) refresh(ref);
    loadInbox();
    return;
  }
  if (type === 'message') {
    const who = data && data.with;
    if (!who) return;
    loadInbox();
    if (state.open && state.open.kind === 'dm' && state.open.with === who) loadThread(messagesVisible(who));
    if (!data.outgoing && data.unread && !messagesVisible(who)) notify(t('notifyMessage', { name: nameOf(who) }), t('notifyMessageBody'), `dm-${who}`);
    return;
  }
  if (type === 'member.level' && data && data.node && data.name) {
    state.names.set(data.node, data.name);
    return;
  }
  if (type === 'post.added' && data && data.category === 'emergency' && data.author !== state.me) {
    notify(t('notifyEmergency', { title: data.title }), data.body || '', `em-${key(data)}`);
  }
}

/** Called by app.js with each node.status. */
export function setNode(status) {
  const first = !state.me;
  state.me = status.node_id;
  if (first) {
    refreshNames();
    loadInbox();
  }
}

async function refreshNames() {
  try {
    const r = await api.rpc('member.list', {});
    for (const m of r.members || []) if (m.name) state.names.set(m.id, m.name);
  } catch { /* names are a nicety: short ids stand in */ }
}

/** Called when the Messages tab is shown. */
export function show() {
  renderInbox();
  loadInbox();
  if (state.open) loadThread(true);
}

/** Re-renders text after a language switch. */
export function retranslate() {
  renderBadge();
  for (const art of document.querySelectorAll('article.post')) renderConv(art);
  if (panel() && panel().querySelector('.inbox-grid')) {
    replace(panel());
    renderInbox();
    if (state.open) loadThread(false);
  }
  const ask = $('#notify-ask');
  if (ask) {
    ask.remove();
    askOnce();
  }
}

export function init() {
  hooks.card = decorate;
  hooks.gone = gone;
  askOnce();
  setInterval(() => { if (state.me) loadInbox(); }, INBOX_REFRESH_S * 1000);
}
