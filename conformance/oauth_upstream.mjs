#!/usr/bin/env node
// oauth_upstream.mjs plays one user of a gateway route that fronts an upstream needing that
// user's own OAuth authorization (auth_type oauth2, authorization code). It prints one JSON
// line and exits 0 when the step ran (the Go test judges what it saw), 1 when it failed.
//
// Usage:
//   node oauth_upstream.mjs mcp --url URL --key KEY [--tool NAME --tool-args JSON]
//     The official TypeScript SDK client (1.32) connects with the toolgate key in
//     Authorization, lists tools (reporting the names and the result's _meta) and calls
//     --tool, reporting its text or the JSON-RPC error (code, message, data, and whether
//     the SDK raised it as a URL elicitation).
//   node oauth_upstream.mjs browser --url CONNECT_URL --key KEY --user NAME
//     Headless Debian chromium (playwright-core) opens the gateway's connect page, types the
//     key, signs in at the upstream's own login form as NAME and follows the redirects back
//     to the gateway's callback page. Reports the title of every page it saw.
// Environment: CHROMIUM (default /usr/bin/chromium).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';

const [mode, ...argv] = process.argv.slice(2);
const o = {};
for (let i = 0; i < argv.length; i++) {
  const k = argv[i];
  const v = () => argv[++i];
  switch (k) {
    case '--url': o.url = v(); break;
    case '--key': o.key = v(); break;
    case '--user': o.user = v(); break;
    case '--tool': o.tool = v(); break;
    case '--tool-args': o.toolArgs = JSON.parse(v()); break;
    default: process.stderr.write(`oauth_upstream: unknown flag ${k}\n`); process.exit(2);
  }
}
if (!['mcp', 'browser'].includes(mode) || !o.url || !o.key || (mode === 'browser' && !o.user)) {
  process.stderr.write('usage: oauth_upstream.mjs mcp --url URL --key KEY [--tool NAME --tool-args JSON]\n' +
    '       oauth_upstream.mjs browser --url CONNECT_URL --key KEY --user NAME\n');
  process.exit(2);
}

async function mcp() {
  const out = { ok: false };
  // Declaring URL elicitation is what lets a 2025-11-25 server answer -32042.
  const client = new Client({ name: 'toolgate-upstream-oauth-test', version: '1.0.0' },
    { capabilities: { elicitation: { url: {} } } });
  const transport = new StreamableHTTPClientTransport(new URL(o.url), {
    requestInit: { headers: { Authorization: `Bearer ${o.key}` } },
  });
  try {
    await client.connect(transport);
    out.protocolVersion = transport.protocolVersion;
    const list = await client.listTools();
    out.tools = list.tools.map((t) => t.name);
    out.meta = list._meta ?? null;
    if (o.tool) {
      try {
        const r = await client.callTool({ name: o.tool, arguments: o.toolArgs ?? {} });
        out.call = {
          isError: !!r.isError,
          text: (r.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n'),
        };
      } catch (e) {
        out.callError = { code: e?.code, message: String(e?.message ?? e), data: e?.data ?? null,
          urlElicitation: e instanceof UrlElicitationRequiredError };
      }
    }
    out.ok = true;
  } catch (e) {
    out.error = String(e?.stack ?? e);
  } finally {
    await client.close().catch(() => {});
  }
  return out;
}

async function browser() {
  const { chromium } = await import('playwright-core');
  const out = { ok: false, pages: [] };
  const b = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const page = await b.newPage();
    const seen = async () => {
      out.pages.push({ url: page.url(), title: await page.title() });
    };
    const first = await page.goto(o.url, { waitUntil: 'load', timeout: 15000 });
    await seen();
    if (!first?.ok() || !(await page.$('#key'))) throw new Error(`no key field on the connect page (status ${first?.status()})`);
    // The gateway's form posts, then 303s to the upstream's /authorize, which shows its own
    // login form because this browser has no session there yet.
    await page.fill('#key', o.key);
    await Promise.all([page.waitForSelector('#user', { timeout: 15000 }), page.click('button[type=submit]')]);
    await seen();
    await page.fill('#user', o.user);
    // Signing in redirects to /authorize again (now approved), then to the gateway's
    // callback, which exchanges the code and shows its result page.
    const gateway = new URL(o.url).origin;
    const back = page.waitForURL((u) => u.origin === gateway && u.pathname.endsWith('/oauth/upstream/callback'),
      { timeout: 15000, waitUntil: 'load' });
    await page.click('button[type=submit]');
    await back;
    await seen();
    out.ok = true;
  } catch (e) {
    out.error = String(e?.message ?? e);
    out.pages.push({ url: (await b.contexts()[0]?.pages()[0]?.url()) ?? '' });
  } finally {
    await b.close();
  }
  return out;
}

const out = mode === 'mcp' ? await mcp() : await browser();
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(out.ok ? 0 : 1);
