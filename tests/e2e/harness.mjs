// Starts real `hearth run` nodes on loopback (free ports, never 7878) and
// Debian's chromium through playwright-core, for the page's e2e tests.
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '..', '..');
export const HEARTH = process.env.HEARTH_BIN || path.join(ROOT, 'target', 'debug', 'hearth');
export const SHOTS = path.join(ROOT, 'target', 'e2e');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** How long a node may take to print its HTTP line (a debug build under load). */
const START_MS = 60_000;

const run = promisify(execFile);

export function tmpdir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `hearth-e2e-${prefix}-`));
}

/** A TCP port free on loopback now (the OS picks it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * The nodes' sweepers never run during a test (a day): a post past its TTL
 * stays listed until a test marks it stale, as on a node whose trusted
 * members are all offline.
 */
const SWEEP_ENV = { HEARTH_MARKET_SWEEP_INTERVAL_SECONDS: '86400' };

/**
 * A `hearth run` child. Resolves once it printed its HTTP API line; `out`
 * keeps every line it printed, `waitLine(re)` awaits one.
 */
export async function startNode(name, args) {
  const dir = tmpdir(name);
  const port = await freePort();
  const child = spawn(HEARTH, ['--data-dir', dir, 'run', '--http', `127.0.0.1:${port}`,
    '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--sync-interval-seconds', '2', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...SWEEP_ENV, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  const node = { name, dir, port, child, out: [], waiters: [] };
  const onLine = (line) => {
    node.out.push(line);
    node.waiters = node.waiters.filter((w) => {
      const m = line.match(w.re);
      if (m) w.resolve(m);
      return !m;
    });
  };
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  let err = '';
  child.stderr.on('data', (d) => { err = (err + d).slice(-20000); });
  node.stderr = () => err;
  child.on('exit', (code) => {
    for (const w of node.waiters) w.reject(new Error(`${name} exited (${code}) before printing ${w.re}:\n${err}`));
    node.waiters = [];
  });
  node.waitLine = (re, ms = START_MS) => {
    const seen = node.out.map((l) => l.match(re)).find(Boolean);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no line ${re} in ${ms} ms; printed:\n${node.out.join('\n')}\n${err}`)), ms);
      node.waiters.push({ re, resolve: (m) => { clearTimeout(timer); resolve(m); }, reject });
    });
  };
  const [, url] = await node.waitLine(/^HTTP API: (\S+)$/);
  node.url = url;
  node.base = `http://127.0.0.1:${port}`;
  node.token = new URL(url).hash.replace('#token=', '');
  node.id = (await node.waitLine(/^node ([0-9a-f]{64}) in community/))[1];
  return node;
}

/** Stops the node (SIGTERM: a clean stop) and removes its data dir. */
export async function stopNode(node) {
  if (!node) return;
  if (node.child.exitCode === null && node.child.signalCode === null) {
    const done = new Promise((r) => node.child.once('exit', r));
    node.child.kill('SIGTERM');
    await done;
  }
  fs.rmSync(node.dir, { recursive: true, force: true });
}

export async function hearth(node, ...args) {
  const { stdout } = await run(HEARTH, ['--data-dir', node.dir, ...args]);
  return stdout.trim();
}

/** A JSON-RPC call on a node's HTTP API with its owner token. */
export async function rpc(node, method, params = {}, token = node.token) {
  const res = await fetch(`${node.base}/rpc`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = await res.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

/**
 * Calls `capability` with each of `paramsList` in turn over the node's
 * local Unix socket (`node.sock`, one JSON object per line): the owner's
 * own door, which the HTTP API's per-client write limit does not meter, so
 * a test can set up hundreds of posts quickly.
 */
export async function socketCalls(node, capability, paramsList) {
  const sock = net.connect(path.join(node.dir, 'node.sock'));
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  const answers = [];
  let buf = '';
  let wake = null;
  sock.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      answers.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
    if (wake) wake();
  });
  const out = [];
  try {
    for (const params of paramsList) {
      sock.write(`${JSON.stringify({ capability, params })}\n`);
      while (!answers.length) await new Promise((r) => { wake = r; });
      const a = answers.shift();
      if (a.error) throw new Error(`${capability}: ${a.error.message}`);
      out.push(a.ok);
    }
  } finally {
    sock.end();
  }
  return out;
}

/** Polls `check` (an async predicate) until it holds; fails after `ms`. */
export async function until(what, check, ms = 20_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

/**
 * Two nodes in one community: A founds it (anchor), B joins from A's
 * invite and A admits B as a plain member. Posts per author raised so one
 * member can hold the 300 posts of the scroll test.
 */
export async function twoNodes() {
  const a = await startNode('a', ['--name', 'Lindenhof Street']);
  await a.waitLine(/^listening on \/ip4\/127\.0\.0\.1\/tcp\/\d+/);
  const invite = await hearth(a, 'community', 'invite');
  const b = await startNode('b', ['--join', invite]);
  await rpc(a, 'community.member.set', { member: b.id, level: 'member' });
  await rpc(a, 'community.settings', { posts_per_author_max: 400 });
  await until('B admitted and synced', async () => {
    const s = await rpc(b, 'node.status');
    return s.level === 'member' && s.peers.length > 0;
  });
  // Display names, as neighbours set them (and as the screenshots show).
  await rpc(a, 'member.profile', { name: 'Anna (No. 12)' });
  await rpc(b, 'member.profile', { name: 'Ben' });
  return { a, b };
}

export function checkChromium() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium), or set CHROMIUM=/path/to/chromium`);
  }
}

/**
 * Debian's chromium, headless, with everything that would dial out turned
 * off; `extraArgs` add flags (e.g. a fake camera).
 */
export async function browser(extraArgs = []) {
  checkChromium();
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // playwright-core gives every launch a fresh temporary --user-data-dir.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs],
  });
}

/** A page of `node` opened with its owner token, ready (first list loaded). */
export async function openPage(br, node, { viewport = { width: 1280, height: 900 }, token = node.token, init, permissions = [] } = {}) {
  const context = await br.newContext({ viewport, locale: 'en-US', serviceWorkers: 'block', permissions });
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); });
  await page.goto(token ? `${node.base}/#token=${token}` : `${node.base}/`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20_000 });
  return page;
}
