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
