#!/usr/bin/env node
// oauth_client.mjs connects the official TypeScript SDK client (1.32) with its OAuth client
// provider to an OAuth-protected MCP endpoint and reports what happened as one JSON line.
//
// Phase "login": connect without a token, get the 401 challenge, let the SDK discover the
// protected resource and its authorization server, register dynamically (RFC 7591), and send
// the "browser" to /authorize with PKCE S256 and the RFC 8707 resource. The browser is either
// headless chromium typing a toolgate key into the gateway's sign-in page (--login-key), or a
// plain redirect walk against an auto-approving authorization server (--auto). The code comes
// back to a loopback callback server, the SDK exchanges it and the client lists tools (and
// calls --tool). Phase "refresh": a second client starts with the saved tokens but a broken
// access token; the SDK must refresh without the browser and list tools again.
//
// Usage: node oauth_client.mjs --url URL (--login-key KEY | --auto) [--tool NAME --tool-args JSON]
//          [--header 'Name: value']... [--no-refresh]
// Exit code: 0 when every phase succeeded, 1 otherwise, 2 on bad usage.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const o = { headers: {}, refresh: true };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const k = argv[i];
  const v = () => argv[++i];
  switch (k) {
    case '--url': o.url = v(); break;
    case '--login-key': o.key = v(); break;
    case '--auto': o.auto = true; break;
    case '--tool': o.tool = v(); break;
    case '--tool-args': o.toolArgs = JSON.parse(v()); break;
    case '--header': { const h = v(); const at = h.indexOf(':'); o.headers[h.slice(0, at).trim()] = h.slice(at + 1).trim(); break; }
    case '--no-refresh': o.refresh = false; break;
    default: process.stderr.write(`oauth_client: unknown flag ${k}\n`); process.exit(2);
  }
}
if (!o.url || (!o.key && !o.auto)) {
  process.stderr.write('oauth_client: --url and one of --login-key, --auto are required\n');
  process.exit(2);
}

const out = { ok: false, steps: [], phases: {} };
const step = (s) => out.steps.push(s);

// Every request the SDK makes (MCP, discovery, registration, token) goes through here.
const loggingFetch = async (input, init) => {
  const u = typeof input === 'string' ? input : input.url ?? String(input);
  const method = init?.method ?? 'GET';
  const res = await fetch(input, init);
  const e = { method, url: u, status: res.status };
  const wa = res.headers.get('www-authenticate');
  if (wa) e.wwwAuthenticate = wa;
  step(e);
  return res;
};

// The loopback callback: the authorization server redirects the browser here with ?code.
let codeWaiter;
const callback = createServer((req, res) => {
  const u = new URL(req.url, 'http://127.0.0.1');
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>done</title><p>Signed in. You can close this window.</p>');
  if (u.pathname === '/callback' && codeWaiter) {
    const w = codeWaiter;
    codeWaiter = undefined;
    if (u.searchParams.get('error')) w.reject(new Error(`authorization failed: ${u.searchParams.get('error')}`));
    else w.resolve({ code: u.searchParams.get('code'), iss: u.searchParams.get('iss'), state: u.searchParams.get('state') });
  }
});
await new Promise((r) => callback.listen(0, '127.0.0.1', r));
const redirectUrl = `http://127.0.0.1:${callback.address().port}/callback`;

function runBrowser(url) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(here, 'oauth_browser.mjs'), url, o.key], { stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    p.stdout.on('data', (d) => { s += d; });
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(s.trim().split('\n').pop())) : reject(new Error(`browser: ${s.trim()}`))));
  });
}

// walkRedirects follows an auto-approving authorization server's redirects by hand
// (fetch with redirect: 'manual') until it reaches the callback.
async function walkRedirects(url) {
  for (let i = 0; i < 10; i++) {
    const res = await fetch(url, { redirect: 'manual' });
    const loc = res.headers.get('location');
    if (!loc) throw new Error(`authorize ended with ${res.status} and no redirect`);
    url = new URL(loc, url).toString();
    if (url.startsWith(redirectUrl)) {
      await fetch(url);
      return;
    }
  }
  throw new Error('too many redirects');
}

class Provider {
  constructor() { this.browserRuns = 0; this.authURL = undefined; }
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return {
      client_name: 'toolgate oauth test (TS SDK)', redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none',
    };
  }
  state() { return 'st-' + Math.random().toString(36).slice(2); }
  clientInformation() { return this.client; }
  saveClientInformation(c) { this.client = c; }
  tokens() { return this.tok; }
  saveTokens(t) { this.tok = t; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
  async redirectToAuthorization(url) {
    this.browserRuns++;
    this.authURL = url.toString();
    this.pending = new Promise((resolve, reject) => { codeWaiter = { resolve, reject }; });
    this.pending.catch(() => {});
    if (o.auto) await walkRedirects(this.authURL);
    else out.browser = await runBrowser(this.authURL);
  }
}

async function connect(provider) {
  const client = new Client({ name: 'toolgate-oauth-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(o.url), {
    authProvider: provider, fetch: loggingFetch, requestInit: { headers: o.headers },
  });
  await client.connect(transport);
  return client;
}

async function use(client, phase) {
  const tools = await client.listTools();
  phase.tools = tools.tools.map((t) => t.name);
  if (o.tool) {
    const r = await client.callTool({ name: o.tool, arguments: o.toolArgs ?? {} });
    phase.callError = !!r.isError;
    phase.text = (r.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
  }
  await client.close();
}

const provider = new Provider();
try {
  // Phase 1: log in.
  const login = (out.phases.login = { ok: false });
  try {
    await connect(provider);
    throw new Error('connected without authorization; expected a 401 challenge');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  login.authorizeURL = provider.authURL;
  const cb = await provider.pending;
  login.iss = cb.iss;
  // The SDK keeps the transport's state in the provider; a new transport finishes the flow.
  const t = new StreamableHTTPClientTransport(new URL(o.url), { authProvider: provider, fetch: loggingFetch, requestInit: { headers: o.headers } });
  await t.finishAuth(cb.code);
  login.tokenType = provider.tok?.token_type;
  login.hasRefreshToken = !!provider.tok?.refresh_token;
  await use(await connect(provider), login);
  login.ok = true;

  // Phase 2: a later connection with a broken access token refreshes without the browser.
  if (o.refresh) {
    const refresh = (out.phases.refresh = { ok: false });
    const p2 = new Provider();
    p2.client = provider.client;
    p2.tok = { ...provider.tok, access_token: 'tgat_expired_or_unknown' };
    await use(await connect(p2), refresh);
    refresh.browserRuns = p2.browserRuns;
    refresh.refreshed = p2.tok.access_token !== 'tgat_expired_or_unknown' && p2.tok.access_token !== provider.tok.access_token;
    refresh.ok = refresh.browserRuns === 0 && refresh.refreshed;
  }
  out.ok = Object.values(out.phases).every((p) => p.ok);
} catch (e) {
  out.error = String(e?.stack ?? e);
} finally {
  callback.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(out.ok ? 0 : 1);
