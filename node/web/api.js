// The page's one door to the node: the public HTTP API of docs/api.md
// (nothing private), with the token from `#token=` kept in localStorage and
// sent as Bearer. Anything the page does, a script can do the same way.

const TOKEN_KEY = 'hearth.token';

/** Takes `#token=...` (or `#pair=...`) off the address bar and returns what it held. */
export function takeFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  const pair = params.get('pair');
  if (token || pair) history.replaceState(null, '', location.pathname + location.search);
  if (token) localStorage.setItem(TOKEN_KEY, token.trim());
  return { token, pair };
}

export function token() {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(t) {
  localStorage.setItem(TOKEN_KEY, t);
}

function headers(extra = {}) {
  const h = { ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

/** An error the node answered, with its wire code and message. */
export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** Thrown when the node cannot be reached at all. */
export class Unreachable extends Error {}

async function send(url, init) {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw new Unreachable(String(e && e.message || e));
  }
}

let rpcId = 0;

/** One JSON-RPC call on `POST /rpc`; resolves to its result. */
export async function rpc(method, params = {}) {
  const res = await send('/rpc', {
    method: 'POST',
    headers: headers({ 'Content-Type': 'application/json' }),
    body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method, params }),
  });
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError('internal', `HTTP ${res.status}`, res.status);
  }
  if (body.error) {
    const code = (body.error.data && body.error.data.code) || 'internal';
    throw new ApiError(code, body.error.message, res.status);
  }
  return body.result;
}

/** A REST read (`GET`); a refusal (404 included) throws an ApiError. */
export async function get(path) {
  const res = await send(path, { headers: headers() });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const err = (body && body.error) || {};
    throw new ApiError(err.code || 'internal', err.message || `HTTP ${res.status}`, res.status);
  }
  return body;
}

export async function restCall(method, path, body) {
  const res = await send(path, {
    method,
    headers: headers({ 'Content-Type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const answer = await res.json().catch(() => null);
  if (!res.ok) {
    const err = (answer && answer.error) || {};
    throw new ApiError(err.code || 'internal', err.message || `HTTP ${res.status}`, res.status);
  }
  return answer;
}

// --- the marketplace -------------------------------------------------------

export const CATEGORIES = ['offer', 'request', 'info', 'emergency'];

/**
 * One page of posts: `{items, next_cursor, total, facets, search?}` as
 * `GET /api/posts` answers it. `q`: {categories[], tags[], q, sort, near,
 * radius_km, past_ttl, cursor, limit}.
 */
export async function listPosts(q) {
  const p = new URLSearchParams();
  p.set('limit', String(q.limit || 50));
  if (q.cursor) p.set('cursor', q.cursor);
  if (q.sort) p.set('sort', q.sort);
  for (const c of q.categories || []) p.append('category', c);
  if (q.tags && q.tags.length) p.set('tags', q.tags.join(','));
  if (q.q) p.set('q', q.q);
  if (q.past_ttl) p.set('past_ttl', q.past_ttl);
  if (q.near) {
    // The query takes decimal degrees; the page keeps microdegrees (as on the wire).
    p.set('near', `${q.near.lat / 1e6},${q.near.lng / 1e6}`);
    if (q.radius_km) p.set('radius_km', String(q.radius_km));
  }
  return get(`/api/posts?${p}`);
}

// --- live updates ----------------------------------------------------------

/** Bytes of one SSE event the reader holds before giving up on it (a post is ~16 KiB). */
const SSE_EVENT_BYTES_MAX = 256 * 1024;
/** Wait before reconnecting, doubling to this bound. */
const RECONNECT_MS_MAX = 15000;

/**
 * Follows `GET /api/stream` (read with fetch, so the Bearer token goes
 * along, which EventSource cannot send), reconnecting with Last-Event-ID.
 * `on(type, data)` gets each event; `reset` means: reload. Returns a
 * function that stops it.
 */
export function follow(on, onState = () => {}) {
  let stopped = false;
  let lastId = null;
  let delay = 1000;
  let controller = null;

  async function streamOnce() {
    controller = new AbortController();
    const h = headers({ Accept: 'text/event-stream' });
    if (lastId) h['Last-Event-ID'] = lastId;
    const res = await fetch('/api/stream', { headers: h, signal: controller.signal });
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
    onState('live');
    delay = 1000;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'closed';
      buf += value;
      if (buf.length > SSE_EVENT_BYTES_MAX) buf = buf.slice(-SSE_EVENT_BYTES_MAX);
      let cut;
      while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
        let type = 'message';
        let id = null;
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith(':')) continue;
          const i = line.indexOf(':');
          const field = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (field === 'event') type = val;
          else if (field === 'data') data.push(val);
          else if (field === 'id') id = val;
        }
        if (id !== null) lastId = id;
        if (!data.length) continue;
        try {
          on(type, JSON.parse(data.join('\n')));
        } catch (e) {
          console.warn('stream event not understood', type, e);
        }
      }
    }
  }

  (async () => {
    while (!stopped) {
      try {
        await streamOnce();
      } catch (e) {
        if (stopped) return;
        onState('down');
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, RECONNECT_MS_MAX);
    }
  })();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}
