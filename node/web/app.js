// The page's start: the token or pairing code from the address, the tabs,
// the language switch, the node's status every few seconds, the live
// stream, and the service worker (offline: the last loaded posts).
import { $, $$ } from './dom.js';
import { t, translateStatic, setLanguage, language } from './i18n.js';
import * as api from './api.js';
import * as market from './market.js';
import * as nodetab from './nodetab.js';
import * as conv from './conversations.js';

/** Seconds between status refreshes (the offline banner, the node tab, the charts' samples). */
const STATUS_S = nodetab.SAMPLE_S;

let lastStatus = null;

async function pairIfAsked(code) {
  if (!code) return;
  market.setBanner(t('pairing'));
  const ua = navigator.userAgent;
  const name = /Android/.test(ua) ? 'Android phone' : /iPhone|iPad/.test(ua) ? 'iPhone' : 'Browser';
  try {
    const answer = await api.restCall('POST', '/api/pair', { code, name: `${name} ${new Date().toISOString().slice(0, 10)}` });
    api.setToken(answer.token);
    market.setBanner(t('pairedOk'));
  } catch (e) {
    market.setBanner(t('pairFailed', { msg: e.message }), 'error');
  }
}

function selectTab(which) {
  for (const tab of $$('[role="tab"]')) {
    const on = tab.id === `tab-${which}`;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`#${tab.getAttribute('aria-controls')}`).hidden = !on;
  }
  if (which === 'node' && lastStatus) nodetab.render(lastStatus);
  if (which === 'messages') conv.show();
  if (location.hash !== `#${which}`) history.replaceState(null, '', which === 'market' ? location.pathname : `#${which}`);
}

function initTabs() {
  const tabs = $$('[role="tab"]');
  for (const tab of tabs) {
    tab.addEventListener('click', () => selectTab(tab.id.slice(4)));
    tab.addEventListener('keydown', (e) => {
      const i = tabs.indexOf(tab);
      let next = null;
      if (e.key === 'ArrowRight') next = tabs[(i + 1) % tabs.length];
      if (e.key === 'ArrowLeft') next = tabs[(i - 1 + tabs.length) % tabs.length];
      if (e.key === 'Home') next = tabs[0];
      if (e.key === 'End') next = tabs[tabs.length - 1];
      if (next) {
        e.preventDefault();
        next.focus();
        selectTab(next.id.slice(4));
      }
    });
  }
}

async function refreshStatus() {
  try {
    const status = await api.rpc('node.status', {});
    const first = !lastStatus;
    lastStatus = status;
    nodetab.sample(status);
    $('#community').textContent = status.community_name || '';
    document.title = status.community_name ? `${status.community_name} · HearthNet` : 'HearthNet';
    let ttlMax = null;
    if (first) {
      const members = await api.rpc('member.list', {}).catch(() => null);
      ttlMax = members && members.settings && members.settings.post_ttl_max_s;
    }
    market.setNode(status, ttlMax);
    // Posts pass their TTL with no event: look again for ones to mark stale.
    if (!first) market.refreshStale();
    conv.setNode(status);
    market.setOnline(true);
    if (!status.peers.length) market.setBanner(t('offlineNode', { n: 0 }), 'warn');
    else if ($('#banner').classList.contains('warn')) market.setBanner(null);
    if (!$('#panel-node').hidden && !document.querySelector('#panel-node :focus')) nodetab.render(status);
    return status;
  } catch (e) {
    if (e instanceof api.Unreachable) {
      market.setOnline(false);
      market.setBanner(t('unreachable'), 'warn');
    }
    return null;
  }
}

async function main() {
  const { pair } = api.takeFragment();
  const wanted = ['#node', '#messages'].includes(location.hash) ? location.hash.slice(1) : 'market';
  document.documentElement.lang = language();
  $('#lang').value = language();
  translateStatic();
  initTabs();
  market.init();
  conv.init();
  $('#lang').addEventListener('change', () => {
    setLanguage($('#lang').value);
    market.retranslate();
    conv.retranslate();
    if (!$('#panel-node').hidden && lastStatus) nodetab.render(lastStatus);
  });
  document.addEventListener('hearth:refresh', () => refreshStatus().then((s) => s && nodetab.render(s)));
  await pairIfAsked(pair);
  await refreshStatus();
  selectTab(wanted);
  await market.reload();
  api.follow((type, data) => {
    market.onLive(type, data);
    conv.onLive(type, data);
  }, (s) => {
    if (s === 'down') market.setBanner(t('unreachable'), 'warn');
    else if ($('#banner').textContent === t('unreachable')) {
      market.setBanner(null);
      market.reload();
    }
  });
  setInterval(refreshStatus, STATUS_S * 1000);
  document.body.dataset.ready = 'true';
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/sw.js').catch(() => {});
  }
}

main();
