#!/usr/bin/env node
// oauth_browser.mjs plays the user's browser in OAuth tests: it opens an authorization URL
// in headless Debian chromium (driven by playwright-core), types a toolgate key into the
// gateway's sign-in page, clicks Approve and follows the redirects until the browser
// reaches the client's loopback callback. It prints one JSON line: {"ok", "url", "status",
// "error"}.
//
// Usage: node oauth_browser.mjs URL [KEY]
//   KEY may also come from TOOLGATE_LOGIN_KEY (so that clients which run $BROWSER with the URL
//   as the only argument, such as Claude Code, can use this script through a wrapper).
//   TOOLGATE_BROWSER_LOG, if set, names a file that gets one JSON line per run.
// Environment: CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { appendFileSync } from 'node:fs';

const [url, keyArg] = process.argv.slice(2);
const key = keyArg ?? process.env.TOOLGATE_LOGIN_KEY;
if (!url || !key) {
  process.stderr.write('usage: oauth_browser.mjs URL [KEY] (or TOOLGATE_LOGIN_KEY)\n');
  process.exit(2);
}

function report(o) {
  const line = JSON.stringify(o);
  process.stdout.write(line + '\n');
  if (process.env.TOOLGATE_BROWSER_LOG) appendFileSync(process.env.TOOLGATE_BROWSER_LOG, line + '\n');
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let result = { ok: false, url };
try {
  const page = await browser.newPage();
  const first = await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  const title = await page.title();
  if (title !== 'Sign in to toolgate') {
    throw new Error(`expected the toolgate sign-in page, got ${first?.status()} "${title}"`);
  }
  await page.fill('#key', key);
  // The form posts to the gateway, which redirects (303) to the client's redirect URI.
  // Wait for the navigation that leaves the gateway's origin.
  const origin = new URL(url).origin;
  const left = page.waitForURL((u) => u.origin !== origin, { timeout: 15000, waitUntil: 'commit' });
  await page.click('button[value=approve]');
  await left;
  const final = page.url();
  // Let the client's callback page finish loading; it may close its server at once.
  await page.waitForLoadState('load', { timeout: 5000 }).catch(() => {});
  result = { ok: new URL(final).searchParams.has('code'), url: final };
  if (!result.ok) result.error = `redirect carries no code: ${final}`;
} catch (e) {
  result = { ok: false, url, error: String(e?.message ?? e) };
} finally {
  await browser.close();
}
report(result);
process.exit(result.ok ? 0 : 1);
