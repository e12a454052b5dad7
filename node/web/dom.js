// Small DOM helpers. User content only ever enters the page as text:
// `h()` sets strings with textContent (never innerHTML), so a title such as
// "<img src=x onerror=...>" is shown as those characters.

/**
 * Creates an element. `attrs` keys: `class`, `text` (textContent), `on*`
 * (listeners), `aria-*`/`data-*`/others (setAttribute), and booleans
 * (`hidden`, `disabled`) set as properties. Children: nodes or strings
 * (strings become text nodes).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/** An SVG element (for the charts and the QR code). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
}

export function $(sel, root = document) {
  return root.querySelector(sel);
}

export function $$(sel, root = document) {
  return [...root.querySelectorAll(sel)];
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Draws a QR module matrix (rows of "1"/"0") as an SVG with a margin. */
export function qrSvg(rows, label) {
  const n = rows.length;
  const quiet = 4;
  const size = n + 2 * quiet;
  const out = svg('svg', {
    viewBox: `0 0 ${size} ${size}`, width: 220, height: 220, role: 'img',
    'aria-label': label, class: 'qr', 'shape-rendering': 'crispEdges',
  });
  out.append(svg('rect', { width: size, height: size, fill: '#fff' }));
  let d = '';
  rows.forEach((row, y) => {
    for (let x = 0; x < row.length; x++) if (row[x] === '1') d += `M${x + quiet} ${y + quiet}h1v1h-1z`;
  });
  out.append(svg('path', { d, fill: '#000' }));
  return out;
}

/** Line icons (24x24, currentColor), so no emoji font is needed. */
const ICONS = {
  offer: ['M3 8h18v4H3z', 'M5 12v9h14v-9', 'M12 8v13', 'M12 8C10 4 6.5 4 6.5 6.3S12 8 12 8s5.5 0 5.5-1.7S14 4 12 8'],
  request: ['M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z', 'M9.5 9.2a2.6 2.6 0 1 1 3.6 2.4c-.7.3-1.1.9-1.1 1.6v.8', 'M12 17.2h.01'],
  info: ['M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z', 'M12 11v6', 'M12 7.5h.01'],
  emergency: ['M12 3 2 20.5h20z', 'M12 9.5v5', 'M12 17.5h.01'],
  plus: ['M12 5v14', 'M5 12h14'],
  pin: ['M12 21s-7-6.2-7-11.5a7 7 0 0 1 14 0C19 14.8 12 21 12 21z', 'M12 12a2.5 2.5 0 1 0 0-5 2.5 2.5 0 0 0 0 5z'],
};

export function icon(name) {
  return svg('svg', { viewBox: '0 0 24 24', width: 16, height: 16, class: `icon icon-${name}`, 'aria-hidden': 'true', focusable: 'false' },
    ...(ICONS[name] || []).map((d) => svg('path', { d, fill: 'none', stroke: 'currentColor', 'stroke-width': 2.2, 'stroke-linecap': 'round', 'stroke-linejoin': 'round' })));
}
