// The service worker: the page's files and the last answers of the post
// list come from the network when it answers, else from this cache, so a
// page added to the home screen opens offline with the last loaded posts.
// Network first: an updated node serves its new page at once.
const CACHE = 'hearth-v1';
const SHELL = ['/', '/app.css', '/app.js', '/api.js', '/dom.js', '/i18n.js', '/market.js', '/conversations.js', '/nodetab.js', '/icon.svg', '/manifest.webmanifest'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== location.origin) return;
  // The stream never ends: never cache it. Node-tab reads are live data only.
  const cacheable = SHELL.includes(url.pathname) || url.pathname === '/api/posts';
  if (!cacheable) return;
  event.respondWith(fetch(event.request).then((res) => {
    if (res.ok) {
      const copy = res.clone();
      caches.open(CACHE).then((c) => c.put(event.request, copy));
    }
    return res;
  }).catch(() => caches.match(event.request, { ignoreSearch: false })
    .then((hit) => hit || caches.match(url.pathname === '/' ? '/' : event.request))
    .then((hit) => hit || Response.error())));
});
