// The node tab end to end (issues 12 and 16): how peers are connected and
// this node's reachability, the invite as text and QR code, and admitting a
// new device by scanning the QR code of its node id with a camera
// (Chromium's fake camera playing a video made from what the new device's
// page shows). Real nodes on loopback; the tests run in order.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { twoNodes, startNode, stopNode, browser, openPage, rpc, hearth, until, tmpdir } from './harness.mjs';

let a; let b; let c; let br; let camBr; let pageA;
const scratch = tmpdir('camera');
/** The invite the page showed (the next test joins a node with it). */
let invite = null;

before(async () => {
  ({ a, b } = await twoNodes());
  br = await browser();
  pageA = await openPage(br, a);
});

after(async () => {
  await br?.close();
  await camBr?.close();
  await stopNode(a);
  await stopNode(b);
  await stopNode(c);
  fs.rmSync(scratch, { recursive: true, force: true });
});

async function nodeTab(page) {
  await page.getByRole('tab', { name: 'Node' }).click();
  await page.locator('#node-view .card').first().waitFor();
}

function card(page, heading) {
  return page.locator('#node-view section.card').filter({ has: page.getByRole('heading', { name: heading, exact: true }) });
}

/**
 * Decodes the QR code drawn by `svgLocator` with the page's own vendored
 * decoder (jsQR), drawn large enough that every module is several pixels.
 */
async function decodeQr(svgLocator) {
  return svgLocator.evaluate(async (el) => {
    await import('/vendor/jsQR.js');
    const n = el.viewBox.baseVal.width;
    const scale = Math.max(4, Math.ceil(800 / n));
    const clone = el.cloneNode(true);
    clone.setAttribute('width', n * scale);
    clone.setAttribute('height', n * scale);
    const url = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(new XMLSerializer().serializeToString(clone))}`;
    const img = new Image();
    img.src = url;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = n * scale;
    canvas.height = n * scale;
    const ctx = canvas.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const found = self.jsQR(data.data, data.width, data.height);
    return found ? found.data : null;
  });
}

test('the node tab shows how each peer is connected (direct, relayed, hole-punched), this node\'s reachability and its relay slots', async () => {
  await nodeTab(pageA);
  const status = await rpc(a, 'node.status');
  const peer = status.peers.find((p) => p.node_id === b.id);
  assert.equal(peer.connection, 'direct', 'two nodes on loopback dial each other directly');
  const row = card(pageA, 'Peers').getByRole('row').filter({ hasText: 'Ben' });
  await row.waitFor();
  const headers = await card(pageA, 'Peers').locator('th').allTextContents();
  const cells = await row.locator('td').allTextContents();
  assert.equal(cells[headers.indexOf('Connection')].trim(), '● direct');
  // Issue 12: each peer's address, since when it is connected, and what it exchanged.
  assert.match(peer.address, /^\/ip4\/127\.0\.0\.1\//, 'a loopback peer has a loopback address');
  assert.equal(cells[headers.indexOf('Address')].trim(), peer.address);
  assert.ok(peer.connected_since_ms <= Date.now() && peer.connected_since_ms > Date.now() - 3_600_000);
  assert.match(cells[headers.indexOf('Connected')].trim(), /ago|now|gerade|vor/);
  assert.ok(Number.isInteger(peer.events_received) && Number.isInteger(peer.events_sent));
  // The counts move between the page's refresh and this status call: check the form.
  assert.match(cells[headers.indexOf('Events in / out')].trim(), /^↓ \d+ · ↑ \d+$/);

  const reach = card(pageA, 'Reachability');
  const verdict = {
    unknown: 'Not known yet',
    public: 'Reachable from the internet',
    private: 'Behind a router',
  }[status.reach.reachability];
  assert.match(await reach.locator('p.reach').textContent(), new RegExp(`^${verdict}`));
  const facts = Object.fromEntries(await reach.locator('dt').evaluateAll((dts) => dts.map((dt) => [dt.textContent, dt.nextElementSibling.textContent])));
  if (status.reach.reservations.length) {
    assert.equal(await reach.locator('.slot').count(), status.reach.reservations.length);
  } else {
    assert.equal(facts['Relay slots'], 'None: this node holds no slot on a relay.');
  }
  assert.equal(facts['Members known (Kademlia)'], String(status.reach.routing_table.length));
  assert.match(facts['Relaying for others'], status.reach.relay_server ? /^yes, \d+ slots held$/ : /^no$/);
});

test('the node tab shows the invite `hearth community invite` prints, as text with a copy button and as a QR code that decodes to it', async () => {
  const inviteCard = card(pageA, 'Invite a device');
  await inviteCard.getByRole('button', { name: 'Show invite' }).click();
  const text = inviteCard.getByRole('textbox', { name: 'Invite' });
  await text.waitFor();
  invite = await text.inputValue();
  assert.equal(invite, await hearth(a, 'community', 'invite'), 'the same string as the CLI');
  assert.match(invite, /^hearth-invite:[0-9a-f]+$/);
  const answer = await (await fetch(`${a.base}/api/invite`, { headers: { Authorization: `Bearer ${a.token}` } })).json();
  assert.ok(answer.addrs.length > 0);
  for (const addr of answer.addrs) {
    assert.doesNotMatch(addr, /\/ip4\/0\.0\.0\.0\/|\/ip6\/::\//, 'no unspecified address');
    assert.match(addr, new RegExp(`/p2p/${(await rpc(a, 'node.status')).peer_id}$`));
  }
  assert.equal(await inviteCard.getByRole('button', { name: 'Copy' }).count(), 1);
  const qr = inviteCard.getByRole('img', { name: 'QR code of the invite' });
  assert.equal(await decodeQr(qr), invite);
  // It survives the tab's refresh every few seconds.
  await pageA.evaluate(() => document.dispatchEvent(new CustomEvent('hearth:refresh')));
  await until('the refreshed tab', async () => (await inviteCard.getByRole('textbox', { name: 'Invite' }).inputValue()) === invite);
  // Needs a token: an invite hands out this node's addresses.
  const anonymous = await fetch(`${a.base}/api/invite`);
  assert.equal(anonymous.status, 401);
});

/**
 * A Y4M video (4:2:0, full range) of `png` (an RGBA screenshot of a QR
 * code), centred on a white 640x480 frame, drawn by the browser: what a
 * phone held up to the new device's screen would film.
 */
async function y4mOf(png, file) {
  const W = 640;
  const H = 480;
  const page = await br.newPage();
  const luma = await page.evaluate(async ({ b64, W, H }) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = W;
    canvas.height = H;
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, W, H);
    ctx.imageSmoothingEnabled = false;
    const side = Math.min(W, H) - 40;
    ctx.drawImage(img, (W - side) / 2, (H - side) / 2, side, side);
    const d = ctx.getImageData(0, 0, W, H).data;
    const y = new Uint8Array(W * H);
    for (let i = 0; i < W * H; i++) y[i] = Math.round(0.299 * d[4 * i] + 0.587 * d[4 * i + 1] + 0.114 * d[4 * i + 2]);
    let s = '';
    for (let i = 0; i < y.length; i += 8192) s += String.fromCharCode(...y.subarray(i, i + 8192));
    return btoa(s);
  }, { b64: png.toString('base64'), W, H });
  await page.close();
  const y = Buffer.from(luma, 'base64');
  const chroma = Buffer.alloc((W / 2) * (H / 2), 128);
  const frames = [Buffer.from(`YUV4MPEG2 W${W} H${H} F10:1 Ip A1:1 C420jpeg\n`)];
  for (let i = 0; i < 5; i++) frames.push(Buffer.from('FRAME\n'), y, chroma, chroma);
  fs.writeFileSync(file, Buffer.concat(frames));
}

test('an anchor admits a new device by scanning, with the camera, the QR code of the node id its node tab shows', async () => {
  assert.ok(invite, 'the invite test ran');
  c = await startNode('c', ['--join', invite]);
  const pageC = await openPage(br, c);
  await nodeTab(pageC);
  // Not admitted yet: its own id's QR code is shown open.
  const mine = pageC.getByRole('img', { name: 'QR code of this node’s ID' });
  await mine.waitFor();
  assert.equal(await decodeQr(mine), c.id);
  const video = path.join(scratch, 'qr.y4m');
  await y4mOf(await mine.screenshot(), video);
  await pageC.context().close();

  camBr = await browser(['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-video-capture=${video}`]);
  const page = await openPage(camBr, a, { permissions: ['camera'] });
  await nodeTab(page);
  const field = page.getByLabel('Admit a member');
  assert.equal(await field.inputValue(), '');
  await page.getByRole('button', { name: 'Scan QR code' }).click();
  await until('the scanned node id in the field', async () => (await field.inputValue()) === c.id, 20_000);
  assert.match(await page.locator('#scan-status').textContent(), /Scanned the node ID/);
  assert.equal(await page.locator('.scan video').count(), 0, 'the camera is closed after a scan');
  await page.getByRole('button', { name: 'Admit', exact: true }).click();
  await until('C admitted', async () => (await rpc(c, 'node.status')).level === 'member', 20_000);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('without a camera (or when it is refused) scanning says so plainly, and pasting the node id still admits', async () => {
  await nodeTab(pageA);
  await pageA.getByRole('button', { name: 'Scan QR code' }).click();
  const status = pageA.locator('#scan-status');
  await until('a message', async () => /Paste the node ID into the field instead/.test(await status.textContent()));
  assert.match(await status.textContent(), /^(The camera was not allowed|No camera is available here|The camera could not start)/);
  const field = pageA.getByLabel('Admit a member');
  await field.fill(b.id);
  assert.equal(await field.inputValue(), b.id);
  assert.deepEqual(pageA.errors, []);
});
