// The web page end to end (issue 12): two real nodes on loopback in one
// community, Debian's chromium driven by playwright-core. The tests run in
// order and share the nodes: each builds on the posts the earlier ones made.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { twoNodes, stopNode, browser, openPage, rpc, socketCalls, until, SHOTS } from './harness.mjs';

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

let a; let b; let br; let pageA; let pageB;

before(async () => {
  ({ a, b } = await twoNodes());
  br = await browser();
  pageA = await openPage(br, a);
  pageB = await openPage(br, b);
});

after(async () => {
  await br?.close();
  await stopNode(a);
  await stopNode(b);
});

/** Titles of the articles inside `selector`, in page order. */
function titles(page, selector = '#post-list') {
  return page.locator(`${selector} article h3`).allTextContents();
}

function article(page, title) {
  return page.getByRole('article', { name: title, exact: true });
}

test('user content with <script> and <img onerror> is shown as text, never run', async () => {
  const title = '<script>window.__pwned = 1</script>Free <b>chairs</b>';
  const body = '<img src=x onerror="window.__pwned = 2"> pick them up';
  const { post } = await rpc(a, 'market.post', { category: 'offer', title, body, tags: ['<i>x</i>'] });
  await pageA.reload();
  await pageA.waitForSelector('body[data-ready="true"]');
  const card = article(pageA, title);
  await card.waitFor();
  assert.equal(await card.locator('h3').textContent(), title);
  assert.equal(await card.locator('.post-body').textContent(), body);
  assert.equal(await card.locator('img, script, b').count(), 0, 'no element was made from the text');
  assert.equal(await pageA.evaluate(() => window.__pwned), undefined);
  await rpc(a, 'market.expire', { id: post.id, reason: 'withdrawn' });
  await card.waitFor({ state: 'detached', timeout: 5000 });
});

test('a post made through node A\'s form appears on node B\'s open page without reload within 5 s', async () => {
  await pageB.evaluate(() => { window.__sameDocument = true; });
  await pageA.getByRole('button', { name: 'New post' }).click();
  await pageA.getByLabel('Category').selectOption('offer');
  await pageA.getByLabel('Title').fill('Ladder to lend');
  await pageA.getByLabel('Body').fill('Three metres, aluminium. Ring at number 12.');
  await pageA.getByLabel('Tags').fill('tools, garden');
  await pageA.getByLabel('Expires in').fill('3');
  const posted = Date.now();
  await pageA.getByRole('button', { name: 'Post', exact: true }).click();
  await article(pageA, 'Ladder to lend').waitFor({ timeout: 5000 });
  await article(pageB, 'Ladder to lend').waitFor({ timeout: 5000 });
  assert.ok(Date.now() - posted <= 5000, `took ${Date.now() - posted} ms`);
  assert.equal(await pageB.evaluate(() => window.__sameDocument), true, 'page B was not reloaded');
  const card = article(pageB, 'Ladder to lend');
  assert.match(await card.textContent(), /#tools/);
  assert.match(await card.textContent(), /expires in 3 days/);
});

test('validation: an empty title and a TTL above the maximum show messages and send nothing', async () => {
  const sent = [];
  const watch = (req) => { if (req.method() === 'POST' && /market\.(post|update)/.test(req.postData() || '')) sent.push(req.postData()); };
  pageA.on('request', watch);
  await pageA.getByRole('button', { name: 'New post' }).click();
  const max = Number(await pageA.getByLabel('Expires in').getAttribute('max'));
  assert.ok(max >= 1);
  await pageA.getByLabel('Title').fill('   ');
  await pageA.getByLabel('Expires in').fill(String(max + 1));
  await pageA.getByRole('button', { name: 'Post', exact: true }).click();
  await pageA.locator('#e-title').waitFor();
  assert.equal(await pageA.locator('#e-title').textContent(), 'Give your post a title.');
  assert.equal(await pageA.locator('#e-ttl').textContent(), `Choose between 1 and ${max} days.`);
  assert.equal(await pageA.getByLabel('Title').getAttribute('aria-invalid'), 'true');
  assert.equal(await pageA.getByLabel('Expires in').getAttribute('aria-invalid'), 'true');
  // Give any request a chance to leave before looking.
  await pageA.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 200))));
  pageA.off('request', watch);
  assert.deepEqual(sent, []);
  await pageA.getByRole('button', { name: 'Cancel' }).click();
});

test('the emergency post is first', async () => {
  await rpc(a, 'market.post', { category: 'emergency', title: 'Water pipe burst on Linden St', body: 'Avoid the corner; the road is flooded.', tags: ['street'] });
  await article(pageB, 'Water pipe burst on Linden St').waitFor({ timeout: 5000 });
  const first = pageB.getByRole('article').first();
  assert.equal(await first.locator('h3').textContent(), 'Water pipe burst on Linden St');
  assert.match(await first.textContent(), /Emergency/);
  assert.match(await first.textContent(), /expires in/);
});

test('filters: a category chip, a tag chip and the search box narrow the list to exactly the expected posts', async () => {
  await rpc(b, 'market.post', { category: 'request', title: 'Need a drill', body: 'For one afternoon.', tags: ['tools'] });
  await rpc(a, 'market.post', { category: 'offer', title: 'Spare tomatoes', body: 'Too many this year.', tags: ['garden', 'food'] });
  await rpc(a, 'market.post', { category: 'info', title: 'Street party Saturday', body: 'Bring a dish.', tags: ['party', 'garden'] });
  await pageA.reload();
  await pageA.waitForSelector('body[data-ready="true"]');
  await article(pageA, 'Need a drill').waitFor({ timeout: 10_000 });

  await pageA.getByRole('button', { name: /^.? ?Request/ }).click();
  await until('request chip applied', async () => (await titles(pageA)).join('|') === 'Need a drill');
  await pageA.getByRole('button', { name: /^.? ?Request/ }).click();

  await pageA.getByRole('button', { name: /^#garden/ }).click();
  await until('garden tag applied', async () => {
    const t = await titles(pageA);
    return t.length === 3 && ['Ladder to lend', 'Spare tomatoes', 'Street party Saturday'].every((x) => t.includes(x));
  });
  await pageA.getByRole('button', { name: /^#garden/ }).click();

  const search = pageA.getByRole('searchbox', { name: 'Search' });
  await search.fill('tomatoes');
  await search.press('Enter');
  await until('search applied', async () => (await titles(pageA)).join('|') === 'Spare tomatoes');
  // Keyword mode: plain, or the fallback when no embedding model is reachable.
  assert.match(await pageA.locator('#search-mode').textContent(), /^Keyword search/);
  await search.fill('');
  await search.press('Enter');
  await until('search cleared', async () => (await titles(pageA)).length === 4);
});

test('keyboard only: a post is created with Tab and Enter', async () => {
  await pageA.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await pageA.locator('body').focus();
  let found = false;
  for (let i = 0; i < 40 && !found; i++) {
    await pageA.keyboard.press('Tab');
    found = await pageA.evaluate(() => document.activeElement?.id === 'new-post');
  }
  assert.ok(found, 'the New post button is reachable with Tab');
  await pageA.keyboard.press('Enter');
  assert.equal(await pageA.evaluate(() => document.activeElement?.id), 'f-category');
  await pageA.keyboard.press('Tab');
  assert.equal(await pageA.evaluate(() => document.activeElement?.id), 'f-title');
  await pageA.keyboard.type('Typed without a mouse');
  await pageA.keyboard.press('Tab');
  await pageA.keyboard.type('Hello from the keyboard.');
  let onPost = false;
  for (let i = 0; i < 20 && !onPost; i++) {
    await pageA.keyboard.press('Tab');
    onPost = await pageA.evaluate(() => document.activeElement?.id === 'f-submit');
  }
  assert.ok(onPost, 'the Post button is reachable with Tab');
  await pageA.keyboard.press('Enter');
  await article(pageA, 'Typed without a mouse').waitFor({ timeout: 5000 });
});

test('"Fulfilled" on one\'s own post removes it from both pages; a plain member sees no "Fulfilled" on a neighbour\'s post', async () => {
  await pageB.reload();
  await pageB.waitForSelector('body[data-ready="true"]');
  const onB = article(pageB, 'Spare tomatoes');
  await onB.waitFor();
  assert.equal(await onB.getByRole('button', { name: 'Fulfilled' }).count(), 0);
  assert.equal(await onB.getByRole('button', { name: 'Withdraw' }).count(), 0);
  assert.equal(await article(pageB, 'Need a drill').getByRole('button', { name: 'Fulfilled' }).count(), 1, 'B sees it on its own post');
  await article(pageA, 'Spare tomatoes').getByRole('button', { name: 'Fulfilled' }).click();
  await article(pageA, 'Spare tomatoes').waitFor({ state: 'detached', timeout: 5000 });
  await onB.waitFor({ state: 'detached', timeout: 5000 });
});

test('"Edit" on one\'s own post changes it on both pages', async () => {
  await article(pageA, 'Street party Saturday').getByRole('button', { name: 'Edit' }).click();
  assert.equal(await pageA.getByLabel('Title').inputValue(), 'Street party Saturday');
  await pageA.getByLabel('Title').fill('Street party Sunday');
  await pageA.getByRole('button', { name: 'Save' }).click();
  await article(pageA, 'Street party Sunday').waitFor({ timeout: 5000 });
  await article(pageB, 'Street party Sunday').waitFor({ timeout: 5000 });
  assert.equal(await article(pageB, 'Street party Saturday').count(), 0);
});

test('"Withdraw" asks first, then removes the post', async () => {
  const card = article(pageA, 'Typed without a mouse');
  await card.getByRole('button', { name: 'Withdraw' }).click();
  await card.getByRole('button', { name: 'Keep it' }).click();
  await card.getByRole('button', { name: 'Withdraw' }).click();
  await card.getByRole('button', { name: 'Yes, withdraw' }).click();
  await card.waitFor({ state: 'detached', timeout: 5000 });
});

/** Resolves once the wall clock is past `ms` (a post's TTL ends by time, not by an event). */
async function pastTime(ms) {
  await until(`the clock past ${ms}`, async () => Date.now() > ms + 50, 10_000);
}

async function reloadReady(page) {
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
}

test('"Mark stale": only trusted members and anchors see it on posts past their TTL; marking one stale removes it from both pages', async () => {
  const { post } = await rpc(a, 'market.post', { category: 'offer', title: 'Old bike, past its time', body: 'Nobody took it.', tags: ['bike'], ttl_seconds: 1 });
  await until('B has the post', async () => (await rpc(b, 'market.get', { id: post.id, author: a.id })).id === post.id);
  await pastTime(post.expires_at);
  // The API: listed with past_ttl=only (status past_ttl), left out by default.
  const only = await (await fetch(`${b.base}/api/posts?past_ttl=only`)).json();
  assert.deepEqual(only.items.map((p) => [p.title, p.status]), [['Old bike, past its time', 'past_ttl']]);
  const live = await (await fetch(`${b.base}/api/posts?limit=200`)).json();
  assert.equal(live.items.filter((p) => p.id === post.id).length, 0);
  const refused = await fetch(`${b.base}/api/posts?past_ttl=maybe`);
  assert.equal(refused.status, 400);
  assert.match((await refused.json()).error.message, /past_ttl must be exclude, include or only/);

  // B, a plain member, sees neither the section nor the button.
  await reloadReady(pageB);
  await article(pageB, 'Ladder to lend').waitFor();
  assert.equal(await pageB.locator('#stale').isHidden(), true);
  assert.equal(await pageB.getByRole('button', { name: 'Mark stale' }).count(), 0);
  assert.equal(await article(pageB, 'Old bike, past its time').count(), 0);

  // Trusted now: B sees the post in the folded section, with the button.
  await rpc(a, 'community.member.set', { member: b.id, level: 'trusted' });
  await until('B is trusted', async () => (await rpc(b, 'node.status')).level === 'trusted');
  await reloadReady(pageB);
  await reloadReady(pageA);
  const summary = pageB.locator('#stale summary');
  await summary.waitFor();
  assert.equal(await summary.textContent(), '1 post past its time, not yet marked stale');
  await summary.click();
  const onB = pageB.locator('#stale-list').getByRole('article', { name: 'Old bike, past its time' });
  await pageA.locator('#stale summary').click();
  const onA = pageA.locator('#stale-list').getByRole('article', { name: 'Old bike, past its time' });
  await onA.waitFor();
  // Asks first; "Keep it" leaves it be.
  await onB.getByRole('button', { name: 'Mark stale' }).click();
  await onB.getByRole('button', { name: 'Keep it' }).click();
  await onB.getByRole('button', { name: 'Mark stale' }).click();
  await onB.getByRole('button', { name: 'Yes, mark stale' }).click();
  await onB.waitFor({ state: 'detached', timeout: 5000 });
  await onA.waitFor({ state: 'detached', timeout: 5000 });
  assert.equal(await pageA.locator('#stale').isHidden(), true, 'the empty section folds away');
  const ended = await rpc(a, 'market.get', { id: post.id, author: a.id });
  assert.equal(ended.status, 'expired');
  assert.equal(ended.expired_reason, 'stale');
  assert.equal(ended.expired_by, b.id);

  // B stays trusted: demoting B would revive the post (DESIGN.md: a `stale`
  // expiry by someone else counts while they are trusted or an anchor).
  // One left past its TTL, for the anchor's screenshots.
  const { post: hose } = await rpc(b, 'market.post', { category: 'offer', title: 'Garden hose, 20 m', body: 'Still here?', tags: ['garden'], ttl_seconds: 1 });
  await pastTime(hose.expires_at);
  await reloadReady(pageB);
  await reloadReady(pageA);
});

test('the page lists posts only through GET /api/posts: when that fails it says so, and sends no market.list stand-in', async () => {
  const context = await br.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', serviceWorkers: 'block' });
  await context.route(/\/api\/posts\?/, (route) => route.fulfill({
    status: 404, contentType: 'application/json',
    body: JSON.stringify({ error: { code: 'not_found', message: 'no such route here' } }),
  }));
  const page = await context.newPage();
  const rpcs = [];
  page.on('request', (req) => { if (req.url().endsWith('/rpc')) rpcs.push(JSON.parse(req.postData() || '{}').method); });
  await page.goto(`${a.base}/#token=${a.token}`);
  await page.waitForSelector('body[data-ready="true"]');
  const alert = page.locator('#list-state [role="alert"]');
  await alert.waitFor();
  assert.match(await alert.textContent(), /no such route here/);
  assert.equal(await page.locator('#post-list article').count(), 0);
  assert.deepEqual(rpcs.filter((m) => /^market\.(list|search)$/.test(m)), []);
  await context.close();
});

async function axeScan(page) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
}

test('axe-core finds no serious or critical violations on either tab', async () => {
  assert.deepEqual(await axeScan(pageA), [], 'marketplace tab');
  await pageA.getByRole('button', { name: 'New post' }).click();
  assert.deepEqual(await axeScan(pageA), [], 'post form');
  await pageA.getByRole('button', { name: 'Cancel' }).click();
  await pageA.getByRole('tab', { name: 'Node' }).click();
  await pageA.locator('#node-view .card').first().waitFor();
  assert.deepEqual(await axeScan(pageA), [], 'node tab');
  await pageA.getByRole('tab', { name: 'Marketplace' }).click();
});

test('screenshots of both tabs at 1280 px and 360 px are saved under target/e2e/', async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  for (const width of [1280, 360]) {
    const page = await openPage(br, a, { viewport: { width, height: width === 360 ? 780 : 900 } });
    await article(page, 'Ladder to lend').waitFor();
    // The anchor's folded list of posts past their time, opened.
    await page.locator('#stale summary').click();
    for (const tab of ['Marketplace', 'Node']) {
      await page.getByRole('tab', { name: tab }).click();
      if (tab === 'Node') {
        await page.locator('#node-view .card').first().waitFor();
        // Shown as a neighbour would look at them: the invite open.
        await page.getByRole('button', { name: 'Show invite' }).click();
        await page.getByRole('img', { name: 'QR code of the invite' }).waitFor();
      }
      // Opening things scrolled the page: shoot it from the top.
      await page.evaluate(() => window.scrollTo(0, 0));
      const file = path.join(SHOTS, `${tab.toLowerCase()}-${width}.png`);
      await page.screenshot({ path: file, fullPage: tab === 'Node' || width === 360 });
      assert.ok(fs.statSync(file).size > 10_000, file);
    }
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `no sideways scrolling at ${width} px (${overflow} px too wide)`);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  }
});

test('installable and offline: a manifest, a service worker, and the last loaded posts shown when the node cannot be reached', async () => {
  const context = await br.newContext({ viewport: { width: 360, height: 780 }, locale: 'en-US' });
  const page = await context.newPage();
  await page.goto(`${a.base}/#token=${a.token}`);
  await page.waitForSelector('body[data-ready="true"]');
  await article(page, 'Ladder to lend').waitFor();
  const manifest = await page.evaluate(async () => (await fetch(document.querySelector('link[rel=manifest]').href)).json());
  assert.equal(manifest.start_url, '/');
  assert.equal(manifest.display, 'standalone');
  await page.evaluate(() => navigator.serviceWorker.ready);
  await context.setOffline(true);
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20_000 });
  await article(page, 'Ladder to lend').waitFor({ timeout: 5000 });
  assert.match(await page.locator('#banner').textContent(), /Cannot reach your node/);
  await context.close();
});

test('infinite scroll over 300 posts reaches the last one; "Load more" works with scrolling disabled', async () => {
  const params = Array.from({ length: 300 }, (_, i) => ({
    category: 'offer', title: `Bulk ${String(i + 1).padStart(3, '0')}`, body: 'Scroll test.', tags: ['bulk'],
  }));
  await socketCalls(b, 'market.post', params);
  const scroll = await openPage(br, b);
  await article(scroll, 'Bulk 300').waitFor();
  for (let i = 0; i < 20 && !(await article(scroll, 'Bulk 001').count()); i++) {
    const before = await scroll.locator('#post-list article').count();
    await scroll.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    await until('the next page', async () => (await scroll.locator('#post-list article').count()) > before
      || (await article(scroll, 'Bulk 001').count()) > 0, 10_000);
  }
  await article(scroll, 'Bulk 001').waitFor({ timeout: 1000 });
  await scroll.context().close();

  const noScroll = await openPage(br, b, { init: () => { delete window.IntersectionObserver; } });
  const more = noScroll.getByRole('button', { name: 'Load more' });
  const first = await noScroll.locator('#post-list article').count();
  await noScroll.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  await noScroll.evaluate(() => new Promise((r) => setTimeout(r, 300)));
  assert.equal(await noScroll.locator('#post-list article').count(), first, 'scrolling alone loads nothing here');
  for (let i = 0; i < 20 && !(await article(noScroll, 'Bulk 001').count()); i++) {
    const before = await noScroll.locator('#post-list article').count();
    await more.click();
    await until('Load more loaded', async () => (await noScroll.locator('#post-list article').count()) > before, 10_000);
  }
  await article(noScroll, 'Bulk 001').waitFor({ timeout: 1000 });
  // Older posts follow the bulk ones: the button stays until the last page.
  for (let i = 0; i < 5 && await more.isVisible(); i++) await more.click();
  await more.waitFor({ state: 'hidden', timeout: 5000 });
  await noScroll.context().close();
});

test('no page error was logged on either page', () => {
  assert.deepEqual(pageA.errors, []);
  assert.deepEqual(pageB.errors, []);
});
