// The node tab: who this node is, its health, log and peers, charts of the
// last hour (sampled by this page), the members (an anchor admits and sets
// levels here), the paired phones (with --lan) and this browser's settings.
import { h, svg, $, replace, qrSvg } from './dom.js';
import { t, relative, dateTime } from './i18n.js';
import * as api from './api.js';
import { settings, refreshHomeControls, toast } from './market.js';

/** The invite shown (kept across the tab's re-renders every few seconds). */
let shownInvite = null;
/** The camera scan running now: `{stop()}`; the tab does not re-render under it. */
let scanning = null;
/** The QR rows of this node's id, fetched once. */
let myQr = null;
/** Longest a scan runs before it stops by itself (the camera light stays off otherwise). */
const SCAN_MS_MAX = 120_000;
/** Widest frame handed to the decoder: bigger is slower, not better. */
const SCAN_WIDTH_MAX = 640;

/** Seconds between samples for the charts. */
export const SAMPLE_S = 15;
/** Samples kept: one hour at SAMPLE_S. */
const SAMPLES_MAX = 3600 / SAMPLE_S;

const samples = loadSamples();

function loadSamples() {
  try {
    const s = JSON.parse(sessionStorage.getItem('hearth.samples') || '[]');
    return Array.isArray(s) ? s.slice(-SAMPLES_MAX) : [];
  } catch {
    return [];
  }
}

/** Records one sample of the node's status (called by app.js). */
export function sample(status) {
  samples.push({ at: Date.now(), events: status.events, peers: status.peers.length });
  while (samples.length > SAMPLES_MAX) samples.shift();
  try {
    sessionStorage.setItem('hearth.samples', JSON.stringify(samples));
  } catch { /* charts are a nicety */ }
}

function section(title, ...body) {
  const id = `n-${title.replace(/\W+/g, '-').toLowerCase()}`;
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id, text: title }), ...body);
}

function dl(pairs) {
  return h('dl', { class: 'facts' }, ...pairs.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)]));
}

function chart(label, values, unit = '') {
  const w = 300;
  const hgt = 80;
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${values.length < 2 ? w : (i / (values.length - 1)) * w},${hgt - (v / max) * (hgt - 6) - 3}`);
  const last = values.length ? values[values.length - 1] : 0;
  if (values.length < 2) {
    return h('figure', { class: 'chart' }, h('div', { class: 'chart-empty', text: t('collecting') }),
      h('figcaption', {}, `${label}: `, h('strong', { text: `${last}${unit}` })));
  }
  return h('figure', { class: 'chart' },
    svg('svg', { viewBox: `0 0 ${w} ${hgt}`, role: 'img', 'aria-label': `${label}: ${last}${unit}`, preserveAspectRatio: 'none' },
      svg('polyline', { points: pts.join(' '), fill: 'none', stroke: 'currentColor', 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' })),
    h('figcaption', {}, `${label}: `, h('strong', { text: `${last}${unit}` }), h('span', { class: 'muted', text: ` (max ${max})` })));
}

function eventsPerMinute() {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dtMin = (samples[i].at - samples[i - 1].at) / 60000;
    out.push(dtMin > 0 ? Math.max(0, Math.round((samples[i].events - samples[i - 1].events) / dtMin)) : 0);
  }
  return out;
}

/** Renders the whole tab from fresh answers of the node. */
export async function render(status) {
  if (scanning) return;
  const view = $('#node-view');
  const [health, members, devices] = await Promise.all([
    api.get('/health').catch((e) => ({ status: 'failing', reasons: [e.message] })),
    api.rpc('member.list', {}).catch(() => null),
    api.token() ? api.get('/api/devices').catch(() => null) : Promise.resolve(null),
  ]);
  const me = status;
  const copyBtn = h('button', { type: 'button', class: 'btn small', text: t('copy') });
  copyBtn.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(me.node_id);
    } catch {
      const r = document.createRange();
      r.selectNodeContents($('#my-id'));
      getSelection().removeAllRanges();
      getSelection().addRange(r);
    }
    copyBtn.textContent = t('copied');
  });
  const hs = (health && health.status) || 'failing';
  if (!myQr || myQr.id !== me.node_id) {
    const answer = await api.get(`/api/qr?text=${me.node_id}`).catch(() => null);
    myQr = answer && { id: me.node_id, rows: answer.qr };
  }
  const cards = [
    section(t('thisNode'), dl([
      [t('nodeId'), h('span', { class: 'id-row' }, h('code', { id: 'my-id', class: 'id', text: me.node_id }), copyBtn)],
      [t('community'), h('span', { text: me.community_name || '' })],
      [t('level'), me.level ? h('span', { class: `level level-${me.level}`, text: t(`level_${me.level}`) }) : h('span', { text: t('notAdmitted') })],
    ]), myQrBlock(me)),
    section(t('health'),
      h('p', { class: `health health-${hs}` }, h('span', { 'aria-hidden': 'true', text: hs === 'ok' ? '✔ ' : hs === 'degraded' ? '◐ ' : '✖ ' }), t(`health_${hs}`)),
      health && health.reasons && health.reasons.length ? h('ul', { class: 'reasons' }, ...health.reasons.map((r) => h('li', { text: r }))) : null,
      dl([[t('events'), h('span', { text: String(me.events) })], [t('maxLamport'), h('span', { text: String(me.clock) })],
        [t('pending'), h('span', { text: String(me.pending) })], [t('activePosts'), h('span', { text: String(me.posts) })],
        ...(me.dm_waiting === undefined ? [] : [[t('dmWaiting'), h('span', {}, h('span', { id: 'dm-waiting', text: String(me.dm_waiting) }),
          h('span', { class: 'muted', text: ` (${t('dmWaitingWhy')})` }))]])])),
    section(t('charts'),
      h('div', { class: 'charts' }, chart(t('eventsPerMin'), eventsPerMinute()), chart(t('peersOverTime'), samples.map((s) => s.peers))),
      h('p', { class: 'hint', text: t('chartNote', { s: SAMPLE_S }) })),
    section(t('peers'), me.peers.length ? peerTable(me.peers, members) : h('p', { text: t('noPeers') })),
    reachSection(me.reach, members),
  ];
  if (members) cards.push(memberSection(members, me));
  cards.push(inviteSection());
  cards.push(deviceSection(devices));
  cards.push(settingsSection());
  replace(view, ...cards);
}

function nameOf(members, id) {
  const m = members && members.members.find((x) => x.id === id);
  return (m && m.name) || (id ? `${id.slice(0, 12)}…` : '?');
}

function peerTable(peers, members) {
  // Focusable: a narrow screen scrolls it sideways, by keyboard too.
  return h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': t('peers') }, h('table', {},
    h('thead', {}, h('tr', {}, ...[t('member'), t('connection'), t('address'), t('connectedSince'), t('lastSync'), t('exchanged'), t('score')].map((c) => h('th', { scope: 'col', text: c })))),
    h('tbody', {}, ...peers.map((p) => h('tr', {},
      // The libp2p peer id on hover: people read names and node ids.
      h('td', { title: p.peer_id, text: p.node_id ? nameOf(members, p.node_id) : `…${p.peer_id.slice(-8)}` }),
      h('td', {}, p.connection
        ? h('span', { class: `conn conn-${p.connection}` }, h('span', { 'aria-hidden': 'true', text: CONN_ICON[p.connection] || '' }), ` ${t(`conn_${p.connection}`)}`)
        : '—'),
      h('td', { class: 'mono', text: p.address || '—' }),
      h('td', { text: p.connected_since_ms ? relative(p.connected_since_ms) : '—' }),
      h('td', { text: p.last_sync_ms ? relative(p.last_sync_ms) : t('never') }),
      h('td', {
        title: t('exchangedTitle', { in: p.events_received ?? 0, out: p.events_sent ?? 0 }),
        text: `↓ ${p.events_received ?? 0} · ↑ ${p.events_sent ?? 0}`,
      }),
      h('td', { text: p.score === null || p.score === undefined ? '—' : p.score.toFixed(1) }))))));
}

/** A mark next to each kind of connection, so it is not told by colour alone. */
const CONN_ICON = { direct: '●', relayed: '⇄', hole_punched: '◎' };

/** A node id (or a libp2p peer id) as people read it: the member's name, or its start. */
function whoIs(members, peerOrNode) {
  const m = members && members.members.find((x) => x.id === peerOrNode);
  if (m) return m.name || `${m.id.slice(0, 12)}…`;
  return `…${String(peerOrNode).slice(-8)}`;
}

/** What `hearth status` shows of reachability: verdict, addresses, relay slots. */
function reachSection(reach, members) {
  const r = reach || {};
  const verdict = r.reachability || 'unknown';
  const slots = r.reservations || [];
  const facts = (pairs) => h('dl', { class: 'facts stacked' }, ...pairs.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)]));
  return section(t('reach'),
    h('p', { class: `reach reach-${verdict}`, text: t(`reach_${verdict}`) }),
    facts([
      [t('external'), (r.external || []).length
        ? h('ul', { class: 'plain' }, ...r.external.map((a) => h('li', {}, h('code', { class: 'link', text: a }))))
        : h('span', { text: '—' })],
      [t('relaySlots'), slots.length
        ? h('ul', { class: 'plain' }, ...slots.map((s) => h('li', {},
          h('code', { class: 'id', title: s.relay, text: whoIs(members, s.relay) }), ' ',
          h('span', { class: s.accepted ? 'slot ok' : 'slot', text: s.accepted ? t('slotReserved') : t('slotAsking') }))))
        : h('span', { text: t('noRelaySlots') })],
      [t('relaying'), h('span', { text: r.relay_server ? t('relayingN', { n: r.reservations_held || 0 }) : t('no') })],
      [t('known'), h('span', { text: String((r.routing_table || []).length) })],
    ]));
}

/** This node's id as a QR code, for an anchor to scan: open while not admitted. */
function myQrBlock(me) {
  if (!myQr || !myQr.rows || !myQr.rows.length) return null;
  const body = h('div', { class: 'pairing' },
    qrSvg(myQr.rows, t('myQrLabel')),
    h('p', { class: 'hint', text: t('myQrHint') }));
  const details = h('details', { class: 'my-qr', open: !me.level }, h('summary', { text: t('myQr') }), body);
  return details;
}

/** The invite as text (with a copy button) and QR code, on request. */
function inviteSection() {
  const parts = [h('p', { class: 'hint', text: t('inviteHint') })];
  if (!api.token()) {
    parts.push(h('p', { text: t('inviteNoToken') }));
    return section(t('invite'), ...parts);
  }
  if (!shownInvite) {
    const btn = h('button', { type: 'button', class: 'btn', text: t('inviteShow') });
    btn.addEventListener('click', async () => {
      btn.disabled = true;
      try {
        shownInvite = await api.get('/api/invite');
        document.dispatchEvent(new CustomEvent('hearth:refresh'));
      } catch (e) {
        btn.disabled = false;
        toast(t('refused', { msg: e.message }), 'error');
      }
    });
    parts.push(btn);
    return section(t('invite'), ...parts);
  }
  const copy = h('button', { type: 'button', class: 'btn small', text: t('copy') });
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(shownInvite.invite);
    } catch {
      $('#invite-text').select();
    }
    copy.textContent = t('copied');
  });
  parts.push(
    h('label', { for: 'invite-text', text: t('inviteText') }),
    h('div', { class: 'invite-row' },
      h('textarea', { id: 'invite-text', class: 'invite', readonly: true, rows: 3, spellcheck: 'false', text: shownInvite.invite }),
      copy),
    shownInvite.qr ? h('div', { class: 'invite-qr' }, qrSvg(shownInvite.qr, t('inviteQr'))) : h('p', { class: 'hint', text: t('inviteTooLong') }));
  return section(t('invite'), ...parts);
}

const LEVELS = ['member', 'trusted', 'anchor', 'removed'];

function memberSection(list, me) {
  const anchor = me.level === 'anchor';
  const rows = list.members.map((m) => {
    let levelCell;
    if (anchor && m.id !== me.node_id) {
      const sel = h('select', { 'aria-label': t('setLevel', { name: m.name || m.id.slice(0, 12) }) },
        ...LEVELS.map((l) => h('option', { value: l, text: l === 'removed' ? '✖ removed' : t(`level_${l}`) })));
      sel.value = m.level;
      sel.addEventListener('change', () => setLevel(m.id, sel.value));
      levelCell = sel;
    } else {
      levelCell = h('span', { class: `level level-${m.level}`, text: t(`level_${m.level}`) });
    }
    return h('tr', {},
      h('td', { text: m.name || '—' }),
      h('td', {}, h('code', { class: 'id', text: `${m.id.slice(0, 12)}…`, title: m.id })),
      h('td', {}, levelCell));
  });
  const parts = [h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': t('members') }, h('table', {},
    h('thead', {}, h('tr', {}, ...[t('name'), t('nodeId'), t('level')].map((c) => h('th', { scope: 'col', text: c })))),
    h('tbody', {}, ...rows)))];
  if (anchor) {
    const input = h('input', { id: 'admit-id', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'admit-hint scan-status' });
    const scanBox = h('div', { class: 'scan', hidden: true });
    const status = h('p', { id: 'scan-status', class: 'hint', role: 'status' });
    const scanBtn = h('button', { type: 'button', class: 'btn', text: t('scan') });
    scanBtn.addEventListener('click', () => (scanning ? stopScan() : startScan(input, scanBox, status, scanBtn)));
    const form = h('form', { class: 'admit' },
      h('label', { for: 'admit-id', text: t('admit') }),
      h('p', { id: 'admit-hint', class: 'hint', text: t('admitHint') }),
      h('div', { class: 'inline' }, input, h('button', { type: 'submit', class: 'btn primary', text: t('admitButton') }), scanBtn),
      status,
      scanBox);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const id = input.value.trim();
      if (id) setLevel(id, 'member');
    });
    parts.push(form);
  }
  return section(t('members'), ...parts);
}

const NODE_ID = /^[0-9a-f]{64}$/;

/**
 * Opens the camera (getUserMedia) and decodes frames with the vendored
 * jsQR until one holds a node id, which fills the admit field. Refused or
 * missing cameras leave a plain message; pasting always works.
 */
async function startScan(input, box, status, btn) {
  const say = (text) => { status.textContent = text; };
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    say(t('scanNoCamera'));
    return;
  }
  say(t('scanLoading'));
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
  } catch (e) {
    const name = e && e.name;
    say(name === 'NotAllowedError' || name === 'SecurityError' ? t('scanDenied')
      : name === 'NotFoundError' || name === 'OverconstrainedError' ? t('scanNoCamera')
        : t('scanFailed', { msg: (e && e.message) || name }));
    return;
  }
  let jsQR;
  try {
    await import('/vendor/jsQR.js');
    jsQR = self.jsQR;
  } catch (e) {
    for (const tr of stream.getTracks()) tr.stop();
    say(t('scanFailed', { msg: e.message }));
    return;
  }
  const video = h('video', { muted: true, playsinline: true, 'aria-label': t('scanVideo') });
  video.srcObject = stream;
  replace(box, video);
  box.hidden = false;
  btn.textContent = t('scanStop');
  say(t('scanHint'));
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  let timer = null;
  const started = Date.now();
  const stop = () => {
    clearTimeout(timer);
    for (const tr of stream.getTracks()) tr.stop();
    video.srcObject = null;
    box.hidden = true;
    replace(box);
    btn.textContent = t('scan');
    scanning = null;
  };
  scanning = { stop };
  await video.play().catch(() => {});
  const tick = () => {
    if (!scanning) return;
    if (Date.now() - started > SCAN_MS_MAX) {
      stop();
      say(t('scanHint'));
      return;
    }
    if (video.videoWidth) {
      const scale = Math.min(1, SCAN_WIDTH_MAX / video.videoWidth);
      canvas.width = Math.round(video.videoWidth * scale);
      canvas.height = Math.round(video.videoHeight * scale);
      ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
      const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
      const found = jsQR(img.data, img.width, img.height, { inversionAttempts: 'attemptBoth' });
      if (found && found.data) {
        const text = found.data.trim().toLowerCase();
        if (NODE_ID.test(text)) {
          stop();
          input.value = text;
          input.focus();
          say(t('scanDone'));
          return;
        }
        say(t('scanNotId'));
      }
    }
    timer = setTimeout(tick, 150);
  };
  tick();
}

function stopScan() {
  if (scanning) scanning.stop();
}

async function setLevel(member, level) {
  try {
    await api.rpc('community.member.set', { member, level });
    toast(t('changed'));
    document.dispatchEvent(new CustomEvent('hearth:refresh'));
  } catch (e) {
    toast(t('refused', { msg: e.message }), 'error');
  }
}

function deviceSection(devices) {
  if (!devices) return section(t('devices'), h('p', { class: 'hint', text: t('pairNoLan') }));
  const parts = [];
  if (devices.pairing) {
    parts.push(h('div', { class: 'pairing' },
      qrSvg(devices.pairing.qr, t('pairQr')),
      h('div', {}, h('p', { text: t('pairHint') }), h('p', {}, h('code', { class: 'link', text: devices.pairing.url })))));
  } else {
    parts.push(h('p', { class: 'hint', text: t('pairNoLan') }));
  }
  if (!devices.devices.length) {
    if (devices.pairing) parts.push(h('p', { text: t('noDevices') }));
  }
  else {
    parts.push(h('ul', { class: 'devices' }, ...devices.devices.map((d) => {
      const btn = h('button', { type: 'button', class: 'btn small danger', 'aria-label': t('revokeName', { name: d.name }), text: t('revoke') });
      btn.addEventListener('click', async () => {
        try {
          await api.restCall('DELETE', `/api/devices/${encodeURIComponent(d.id)}`);
          document.dispatchEvent(new CustomEvent('hearth:refresh'));
        } catch (e) {
          toast(t('refused', { msg: e.message }), 'error');
        }
      });
      return h('li', {}, h('span', {}, h('strong', { text: d.name }), ' ', h('span', { class: 'muted', text: t('paired', { date: dateTime(d.created_ms) }) })), btn);
    })));
  }
  return section(t('devices'), ...parts);
}

function settingsSection() {
  const s = settings();
  const num = (id, label, value) => h('span', {},
    h('label', { for: id, text: label }),
    h('input', { id, inputmode: 'decimal', autocomplete: 'off', value: value ?? '' }));
  const form = h('form', { class: 'settings' },
    h('fieldset', {}, h('legend', { text: t('home') }),
      h('p', { class: 'hint', text: t('homeHint') }),
      h('div', { class: 'loc-row' },
        num('s-lat', t('lat'), Number.isFinite(s.lat) ? s.lat / 1e6 : ''),
        num('s-lng', t('lng'), Number.isFinite(s.lng) ? s.lng / 1e6 : '')),
      h('div', { class: 'loc-row' },
        num('s-label', t('locLabel'), s.label || ''),
        num('s-radius', t('radius'), s.radius_km || 5))),
    h('button', { type: 'submit', class: 'btn primary', text: t('saveSettings') }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const lat = Number($('#s-lat').value);
    const lng = Number($('#s-lng').value);
    const next = { radius_km: Math.max(0.1, Number($('#s-radius').value) || 5), label: $('#s-label').value.trim() };
    if ($('#s-lat').value.trim() && $('#s-lng').value.trim() && Math.abs(lat) <= 90 && Math.abs(lng) <= 180) {
      next.lat = Math.round(lat * 1e6);
      next.lng = Math.round(lng * 1e6);
    }
    localStorage.setItem('hearth.settings', JSON.stringify(next));
    refreshHomeControls();
    toast(t('changed'));
  });
  return section(t('settings'), form);
}
