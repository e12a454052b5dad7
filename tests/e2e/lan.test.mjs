// `hearth run --lan` (issue 12): every request, reads included, needs a
// token; a phone pairs from the printed link and gets a device token of its
// own, which the owner revokes in the node tab. For the test the node binds
// a loopback address: no other address is ever used.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, stopNode, browser, openPage } from './harness.mjs';

let c; let br;

before(async () => {
  c = await startNode('lan', ['--name', 'Lan test', '--lan']);
  br = await browser();
});

after(async () => {
  await br?.close();
  await stopNode(c);
});

async function status(path, token, init = {}) {
  const res = await fetch(`${c.base}${path}`, {
    ...init,
    headers: { ...(init.headers || {}), ...(token ? { Authorization: `Bearer ${token}` } : {}) },
  });
  return res.status;
}

const nodeStatus = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'node.status' }) };

test('--lan prints a pairing link and its QR code', async () => {
  const [, url] = await c.waitLine(/^Pair a phone on this network: open (\S+)$/);
  assert.match(url, new RegExp(`^http://127\\.0\\.0\\.1:${c.port}/#pair=[0-9a-f]{64}$`));
  const qr = c.out.filter((l) => /[▀▄█]/.test(l));
  assert.ok(qr.length >= 10, 'a QR code drawn with half blocks follows');
});

test('the first run points a newcomer to the page in the browser', () => {
  const printed = `${c.out.join('\n')}\n${c.stderr()}`;
  assert.match(printed, /in your browser +open the `HTTP API:` link below/);
  assert.match(printed, /^HTTP API: http:\/\/127\.0\.0\.1:\d+\/#token=[0-9a-f]{64}$/m);
});

test('under --lan, reads without a token or with a wrong one are refused with 401; the page itself loads', async () => {
  assert.equal(await status('/health'), 401);
  assert.equal(await status('/metrics'), 401);
  assert.equal(await status('/rpc', null, nodeStatus), 401);
  assert.equal(await status('/health', 'f'.repeat(64)), 401);
  assert.equal(await status('/health', c.token), 200);
  assert.equal(await status('/'), 200);
  assert.equal(await status('/app.js'), 200);
  assert.equal(await status('/api/pair', null, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code: '00'.repeat(32) }) }), 401);
});

test('a phone that opens the pairing link gets a device token that works until the owner revokes it in the node tab', async () => {
  const [, url] = await c.waitLine(/^Pair a phone on this network: open (\S+)$/);
  const phoneContext = await br.newContext({ viewport: { width: 360, height: 780 }, locale: 'en-US', serviceWorkers: 'block' });
  const phone = await phoneContext.newPage();
  await phone.goto(url);
  await phone.waitForSelector('body[data-ready="true"]', { timeout: 20_000 });
  const device = await phone.evaluate(() => localStorage.getItem('hearth.token'));
  assert.match(device, /^[0-9a-f]{64}$/);
  assert.notEqual(device, c.token, 'the phone has its own token, not the owner\'s');
  assert.equal(new URL(phone.url()).hash, '', 'the code is taken off the address bar');
  assert.equal(await status('/health', device), 200);
  assert.equal(await status('/rpc', device, nodeStatus), 200);
  assert.equal(await status('/api/devices', device), 401, 'a device cannot manage devices');
  await phone.getByRole('button', { name: 'New post' }).click();
  await phone.getByLabel('Title').fill('Posted from the phone');
  await phone.getByRole('button', { name: 'Post', exact: true }).click();
  await phone.getByRole('article', { name: 'Posted from the phone' }).waitFor({ timeout: 5000 });

  const owner = await openPage(br, c);
  await owner.getByRole('tab', { name: 'Node' }).click();
  await owner.getByRole('img', { name: 'QR code of the pairing link' }).waitFor();
  const revoke = owner.getByRole('button', { name: /^Revoke / });
  assert.equal(await revoke.count(), 1);
  await revoke.click();
  await owner.getByText('No devices paired yet.').waitFor();
  assert.equal(await status('/health', device), 401, 'a revoked token is refused');
  assert.equal(await status('/rpc', device, nodeStatus), 401);
  assert.equal(await status('/health', c.token), 200, 'the owner token still works');
  await phoneContext.close();
  await owner.context().close();
});
