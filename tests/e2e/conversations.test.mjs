// Conversations on the page end to end (issue 14): two real nodes on
// loopback in one community (A: Anna, the anchor; B: Ben, a member), each
// with its own page in Debian's chromium. The tests run in order and share
// the nodes and pages; nothing is reloaded unless a test says so, and
// `window.__sameDocument` proves it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { twoNodes, startNode, stopNode, hearth, browser, openPage, rpc, until, SHOTS } from './harness.mjs';

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
/** A well-formed post id (a ULID) that no node knows. */
const UNKNOWN = '01ARZ3NDEKTSV4RRFFQ69G5FAV';

/** Replaces the browser's Notification with a recorder that is already allowed. */
function recordNotifications() {
  window.__notes = [];
  window.__asked = 0;
  class Recorder {
    constructor(title, opts = {}) { window.__notes.push({ title, body: opts.body || '' }); }
    static requestPermission() { window.__asked += 1; Recorder.permission = 'granted'; return Promise.resolve('granted'); }
  }
  Recorder.permission = 'default';
  window.Notification = Recorder;
}

let a; let b; let br; let pageA; let pageB;
let offer; let request;

before(async () => {
  ({ a, b } = await twoNodes());
  br = await browser();
  pageA = await openPage(br, a, { init: recordNotifications });
  pageB = await openPage(br, b, { init: recordNotifications });
  for (const p of [pageA, pageB]) await p.evaluate(() => { window.__sameDocument = true; });
});

after(async () => {
  await br?.close();
  await stopNode(a);
  await stopNode(b);
});

function article(page, title) {
  return page.getByRole('article', { name: title, exact: true });
}

async function sameDocument(page) {
  return page.evaluate(() => window.__sameDocument === true);
}

test('asked once: the page offers notifications in a bar, and "Turn on" asks the browser and records the choice', async () => {
  const ask = pageA.getByRole('region', { name: 'Browser notifications for emergencies and new messages' });
  await ask.waitFor();
  await ask.getByRole('button', { name: 'Turn on' }).click();
  await ask.waitFor({ state: 'detached' });
  assert.equal(await pageA.evaluate(() => window.__asked), 1);
  assert.equal(await pageA.evaluate(() => localStorage.getItem('hearth.notify')), 'on');
  await pageB.getByRole('region', { name: 'Browser notifications for emergencies and new messages' })
    .getByRole('button', { name: 'No, thanks' }).click();
  assert.equal(await pageB.evaluate(() => localStorage.getItem('hearth.notify')), 'off');
  assert.equal(await pageB.evaluate(() => window.__asked), 0, 'declining does not ask the browser');
});

test('B claims A\'s offer on B\'s page; A accepts on A\'s page; both pages show "fulfilled by Ben" without reload', async () => {
  ({ post: offer } = await rpc(a, 'market.post', {
    category: 'offer', title: 'Water canisters to give away', body: 'Two 20-litre canisters, clean.', tags: ['water'],
  }));
  const onA = article(pageA, 'Water canisters to give away');
  const onB = article(pageB, 'Water canisters to give away');
  await onA.waitFor({ timeout: 5000 });
  await onB.waitFor({ timeout: 5000 });
  assert.equal(await onA.getByRole('button', { name: 'I’d like this' }).count(), 0, 'no claim button on one\'s own post');
  await onB.getByRole('button', { name: 'I’d like this' }).click();
  await onB.getByText('Ben (you) would like this').waitFor({ timeout: 5000 });
  const acceptBtn = onA.getByRole('button', { name: 'Accept Ben' });
  await acceptBtn.waitFor({ timeout: 5000 });
  assert.match(await onA.textContent(), /Ben would like this/);
  assert.equal(await onB.getByRole('button', { name: /^Accept/ }).count(), 0, 'only the author may accept');
  await acceptBtn.click();
  await onA.getByText('Fulfilled by Ben').waitFor({ timeout: 5000 });
  await onB.getByText('Fulfilled by Ben (you)').waitFor({ timeout: 5000 });
  assert.equal(await onA.getByRole('button', { name: 'Edit' }).count(), 0, 'an ended post offers no edit');
  assert.equal(await onB.getByRole('button', { name: 'I’d like this' }).count(), 0);
  assert.ok(await sameDocument(pageA) && await sameDocument(pageB), 'neither page was reloaded');
  fs.mkdirSync(SHOTS, { recursive: true });
  await onA.screenshot({ path: path.join(SHOTS, 'conversations-fulfilled-card.png') });
  // Every node agrees: the thread says Ben fulfilled it.
  for (const node of [a, b]) {
    const thread = await rpc(node, 'conversation.get', { post: { author: a.id, id: offer.id } });
    assert.equal(thread.fulfilled_by, b.id);
  }
});

test('a reply written on one page appears live on the other, under the post, as written', async () => {
  ({ post: request } = await rpc(b, 'market.post', {
    category: 'request', title: 'Need a drill', body: 'For one afternoon.', tags: ['tools'],
  }));
  const onA = article(pageA, 'Need a drill');
  const onB = article(pageB, 'Need a drill');
  await onA.waitFor({ timeout: 5000 });
  await onB.waitFor({ timeout: 5000 });
  assert.equal(await onA.getByRole('button', { name: 'I can help' }).count(), 1, 'a request says "I can help"');
  const text = 'Mine is in the shed — ring at number 12 <b>after six</b>.';
  await onA.getByRole('button', { name: 'Reply' }).click();
  await onA.getByLabel('Your reply').fill(text);
  await onA.getByRole('button', { name: 'Send reply' }).click();
  await onB.locator('.reply-body', { hasText: 'Mine is in the shed' }).waitFor({ timeout: 5000 });
  assert.equal(await onB.locator('.reply-body').first().textContent(), text, 'the reply reads as written (text, not HTML)');
  assert.match(await onB.locator('.replies').textContent(), /Anna \(No\. 12\)/, 'the author\'s name from the profile');
  await onA.locator('.reply-body').first().waitFor();

  // And back, by keyboard only on B's page.
  await onB.getByRole('button', { name: 'Reply' }).focus();
  await pageB.keyboard.press('Enter');
  assert.equal(await pageB.evaluate(() => document.activeElement?.tagName), 'TEXTAREA', 'Enter on "Reply" opens the box and focuses it');
  await pageB.keyboard.type('Great, thank you!');
  await pageB.keyboard.press('Tab');
  assert.equal(await pageB.evaluate(() => document.activeElement?.textContent), 'Send reply');
  await pageB.keyboard.press('Enter');
  await onA.locator('.reply-body', { hasText: 'Great, thank you!' }).waitFor({ timeout: 5000 });
  assert.ok(await sameDocument(pageA) && await sameDocument(pageB), 'neither page was reloaded');
});

test('a message written on B\'s page shows as unread on A\'s page, notifies A, and reads as written once opened', async () => {
  const written = 'Hallo Anna,\ncan I pick the canisters up at 18:00? <i>Ben</i>';
  const onB = article(pageB, 'Water canisters to give away');
  await onB.getByRole('button', { name: 'Message Anna (No. 12)' }).click();
  assert.equal(await pageB.getByRole('tab', { name: 'Messages' }).getAttribute('aria-selected'), 'true');
  assert.match(await pageB.locator('.dm-form .about').textContent(), /About: Water canisters to give away/);
  const box = pageB.getByLabel('Message to Anna (No. 12)');
  assert.equal(await pageB.evaluate(() => document.activeElement?.id), 'dm-text', 'the send box has the focus');
  await box.fill(written);
  await pageB.getByRole('button', { name: 'Send', exact: true }).click();
  await pageB.locator('.msg.out').first().waitFor({ timeout: 5000 });

  const tabA = pageA.getByRole('tab', { name: /Messages/ });
  const unread = async () => Number(((await tabA.textContent()).match(/(\d+) unread/) || [0, 0])[1]);
  await until('A\'s tab counts the message as unread', async () => (await unread()) >= 1, 5000);
  await until('A was notified', async () => (await pageA.evaluate(() => window.__notes))
    .some((n) => n.title === 'New message from Ben'), 5000);
  const notes = await pageA.evaluate(() => window.__notes);
  assert.ok(notes.every((n) => !n.body.includes('18:00')), 'the notification does not show the text');
  await tabA.click();
  const item = pageA.getByRole('button', { name: /^Ben/ });
  assert.match(await item.textContent(), /1 unread/);
  const withDm = await unread();
  await item.click();
  const msg = pageA.locator('.msg.in .msg-body').last();
  await msg.waitFor({ timeout: 5000 });
  assert.equal(await msg.textContent(), written);
  assert.match(await pageA.locator('.msg.in').last().textContent(), /About: Water canisters to give away/);
  await until('the message is no longer unread once opened', async () => !/unread/.test(await pageA.getByRole('button', { name: /^Ben/ }).textContent()), 5000);
  await until('the tab counts one fewer', async () => (await unread()) === withDm - 1, 5000);
  // Read state is the node's: another page of A's sees none unread.
  const list = await rpc(a, 'conversation.list');
  assert.equal(list.conversations.find((c) => c.with === b.id)?.unread ?? 0, 0);
  assert.ok(await sameDocument(pageA) && await sameDocument(pageB), 'neither page was reloaded');

  // A answers in the thread; it arrives on B's open thread and reads as written there too.
  await pageA.getByLabel('Message to Ben').fill('Yes, 18:00 is fine.');
  await pageA.getByRole('button', { name: 'Send', exact: true }).click();
  await pageB.locator('.msg.in .msg-body', { hasText: 'Yes, 18:00 is fine.' }).waitFor({ timeout: 5000 });
});

test('an emergency by a neighbour notifies a page that turned notifications on; the setting switches them off', async () => {
  const noted = (page) => page.evaluate(() => window.__notes.map((n) => n.title));
  await pageB.getByRole('tab', { name: 'Marketplace' }).click();
  await rpc(b, 'market.post', { category: 'emergency', title: 'Gas smell at the corner', body: 'Keep away, the utility is called.', tags: [] });
  await until('A was notified of the emergency', async () => (await noted(pageA)).includes('Emergency: Gas smell at the corner'), 5000);
  await article(pageB, 'Gas smell at the corner').waitFor({ timeout: 5000 });
  assert.deepEqual(await noted(pageB), [], 'B declined, and it is B\'s own post');

  await pageA.getByRole('tab', { name: /Messages/ }).click();
  const setting = pageA.getByLabel('Browser notifications for emergencies and new messages');
  assert.equal(await setting.isChecked(), true);
  await setting.uncheck();
  assert.equal(await pageA.evaluate(() => localStorage.getItem('hearth.notify')), 'off');
  const before = (await noted(pageA)).length;
  await rpc(b, 'market.post', { category: 'emergency', title: 'Second alarm', body: 'Test.', tags: [] });
  await pageA.getByRole('article', { name: 'Second alarm', includeHidden: true }).waitFor({ state: 'attached', timeout: 5000 });
  assert.equal((await noted(pageA)).length, before, 'switched off: no notification');
  await setting.check();
  await pageA.getByRole('tab', { name: 'Marketplace' }).click();
});

test('refusals are said in plain words, in English and German, whatever the node refused', async () => {
  // Each is a real refusal of the node, turned into words by the page.
  const cases = await pageB.evaluate(async ({ aId, bId, offerId, requestId, UNKNOWN }) => {
    const api = await import('/api.js');
    const conv = await import('/conversations.js');
    const said = async (method, params) => {
      try {
        await api.rpc(method, params);
        return 'accepted';
      } catch (e) {
        return conv.plain(e);
      }
    };
    return {
      gone: await said('market.reply', { post: { author: aId, id: UNKNOWN }, body: 'hello?' }),
      own: await said('market.claim', { post: { author: bId, id: requestId } }),
      ended: await said('market.claim', { post: { author: aId, id: offerId } }),
      notAuthor: await said('market.accept_claim', { post: UNKNOWN, claim: { author: aId, id: UNKNOWN } }),
      self: await said('dm.send', { to: bId, body: 'me' }),
      stranger: await said('dm.send', { to: '00'.repeat(32), body: 'hi' }),
    };
  }, { aId: a.id, bId: b.id, offerId: offer.id, requestId: request.id, UNKNOWN });
  assert.deepEqual(cases, {
    gone: 'This post is no longer there (withdrawn, expired or removed).',
    own: 'This is your own post: others can claim it, you cannot.',
    ended: 'This post has ended; it can no longer be claimed or accepted.',
    notAuthor: 'Only the post’s author can accept a claim.',
    self: 'That is you; write to a neighbour.',
    stranger: 'That person is not a member of this community (any more).',
  });

  // In the page: a reply to a post that went away in the meantime says so under the post.
  const card = article(pageB, 'Need a drill');
  await pageB.getByRole('tab', { name: 'Marketplace' }).click();
  const realId = await card.evaluate((el) => el._post.id);
  await card.evaluate((el, id) => { el._post = { ...el._post, id }; }, UNKNOWN);
  await card.getByRole('button', { name: 'Reply' }).click();
  await card.getByLabel('Your reply').fill('Still there?');
  await card.getByRole('button', { name: 'Send reply' }).click();
  await card.getByText('This post is no longer there (withdrawn, expired or removed).').waitFor({ timeout: 5000 });
  assert.equal(await card.getByLabel('Your reply').getAttribute('aria-invalid'), 'true');
  // An empty reply is stopped before anything is sent.
  await card.getByLabel('Your reply').fill('   ');
  await card.getByRole('button', { name: 'Send reply' }).click();
  await card.getByText('Write something first.').waitFor();
  await card.evaluate((el, id) => { el._post = { ...el._post, id }; }, realId);

  await pageB.getByLabel('Language').selectOption('de');
  const de = await pageB.evaluate(async ({ bId, requestId }) => {
    const api = await import('/api.js');
    const conv = await import('/conversations.js');
    try {
      await api.rpc('market.claim', { post: { author: bId, id: requestId } });
      return 'accepted';
    } catch (e) {
      return conv.plain(e);
    }
  }, { bId: b.id, requestId: request.id });
  assert.equal(de, 'Das ist dein eigener Beitrag: andere können ihn beanspruchen, du nicht.');
  await article(pageB, 'Need a drill').getByRole('button', { name: 'Antworten', exact: true }).waitFor();
  await pageB.getByLabel('Sprache').selectOption('en');
});

test('a node not yet admitted is told so in plain words', async () => {
  const invite = await hearth(a, 'community', 'invite');
  const c = await startNode('c', ['--join', invite]);
  try {
    const page = await openPage(br, c);
    const said = await page.evaluate(async ({ aId, offerId }) => {
      const api = await import('/api.js');
      const conv = await import('/conversations.js');
      try {
        await api.rpc('market.reply', { post: { author: aId, id: offerId }, body: 'hi' });
        return 'accepted';
      } catch (e) {
        return conv.plain(e);
      }
    }, { aId: a.id, offerId: offer.id });
    assert.equal(said, 'Your node is not admitted yet: an anchor of the community must add it first.');
    await page.context().close();
  } finally {
    await stopNode(c);
  }
});

async function axeScan(page) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
}

test('axe-core finds no serious or critical violations with threads, claims, reply boxes and the Messages tab', async () => {
  await pageA.getByRole('tab', { name: 'Marketplace' }).click();
  await article(pageA, 'Need a drill').getByRole('button', { name: 'Reply' }).click();
  assert.deepEqual(await axeScan(pageA), [], 'marketplace with conversations');
  await pageA.getByRole('tab', { name: /Messages/ }).click();
  await pageA.locator('.msg').first().waitFor();
  assert.deepEqual(await axeScan(pageA), [], 'messages tab');
  await pageA.getByRole('tab', { name: 'Node' }).click();
  await pageA.locator('#node-view .card').first().waitFor();
  assert.deepEqual(await axeScan(pageA), [], 'node tab');
  await pageA.getByRole('tab', { name: 'Marketplace' }).click();
});

test('screenshots of the conversations at 1280 px and 360 px are saved under target/e2e/', async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  for (const width of [1280, 360]) {
    const page = await openPage(br, b, { viewport: { width, height: width === 360 ? 780 : 900 }, init: recordNotifications });
    // A fresh page of B's: the fulfilled offer has left the list, the request and its replies remain.
    const card = article(page, 'Need a drill');
    await card.locator('.reply-body').first().waitFor();
    await card.getByRole('button', { name: 'Reply' }).click();
    await page.evaluate(() => window.scrollTo(0, 0));
    const market = path.join(SHOTS, `conversations-market-${width}.png`);
    await page.screenshot({ path: market, fullPage: width === 360 });
    await page.getByRole('tab', { name: /Messages/ }).click();
    await page.getByRole('button', { name: /^Anna/ }).click();
    await page.locator('.msg').first().waitFor();
    await page.evaluate(() => window.scrollTo(0, 0));
    const messages = path.join(SHOTS, `conversations-messages-${width}.png`);
    await page.screenshot({ path: messages, fullPage: width === 360 });
    for (const f of [market, messages]) assert.ok(fs.statSync(f).size > 10_000, f);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `no sideways scrolling at ${width} px (${overflow} px too wide)`);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  }
});

test('no page error was logged on either page', () => {
  assert.deepEqual(pageA.errors, []);
  assert.deepEqual(pageB.errors, []);
});

test('the node tab shows how many messages wait for members who are offline', async () => {
  await pageB.context().close();
  await stopNode(b);
  await until('A sees B gone', async () => (await rpc(a, 'node.status')).peers.length === 0, 20_000);
  await rpc(a, 'dm.send', { to: b.id, body: 'Are you there?' });
  await pageA.getByRole('tab', { name: 'Node' }).click();
  await until('the waiting count is shown', async () => {
    await pageA.evaluate(() => document.dispatchEvent(new CustomEvent('hearth:refresh')));
    await pageA.waitForTimeout(300); // the poll's pace: each refresh asks the node again
    const el = pageA.locator('#dm-waiting');
    return (await el.count()) && Number(await el.textContent()) >= 1;
  }, 20_000);
  const row = pageA.locator('dt', { hasText: 'Messages waiting' });
  assert.equal(await row.count(), 1);
  assert.match(await pageA.locator('#dm-waiting').locator('..').textContent(), /^\d+ \(sent to members who are offline\)$/);
  await pageA.getByRole('tab', { name: 'Marketplace' }).click();
  b = null;
  assert.deepEqual(pageA.errors, []);
});

