#!/usr/bin/env node
// ts-client.mjs drives one MCP server with the official TypeScript SDK client and prints one JSON
// line describing each operation: initialize, tools/list, tools/call, resources/list,
// resources/read, prompts/list, prompts/get and a tools/call with progress notifications.
//
// Usage: node ts-client.mjs --url URL [--transport http|sse] [--header 'Name: value']...
//          [--tool NAME --tool-args JSON] [--resource URI|first] [--prompt NAME --prompt-args JSON]
//          [--progress-tool NAME --progress-args JSON --min-progress N] [--timeout MS]
// Exit code: 0 when every requested operation succeeded, 1 otherwise, 2 on bad usage.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

function parseArgs(argv) {
  const o = { transport: 'http', headers: {}, timeout: 20000, minProgress: 1 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) usage(`${k} needs a value`);
      return argv[++i];
    };
    switch (k) {
      case '--url': o.url = v(); break;
      case '--transport': o.transport = v(); break;
      case '--header': {
        const h = v();
        const at = h.indexOf(':');
        if (at < 1) usage(`bad header ${h}`);
        o.headers[h.slice(0, at).trim()] = h.slice(at + 1).trim();
        break;
      }
      case '--tool': o.tool = v(); break;
      case '--tool-args': o.toolArgs = JSON.parse(v()); break;
      case '--resource': o.resource = v(); break;
      case '--prompt': o.prompt = v(); break;
      case '--prompt-args': o.promptArgs = JSON.parse(v()); break;
      case '--progress-tool': o.progressTool = v(); break;
      case '--progress-args': o.progressArgs = JSON.parse(v()); break;
      case '--min-progress': o.minProgress = Number(v()); break;
      case '--timeout': o.timeout = Number(v()); break;
      default: usage(`unknown flag ${k}`);
    }
  }
  if (!o.url) usage('--url is required');
  if (o.transport !== 'http' && o.transport !== 'sse') usage('--transport must be http or sse');
  return o;
}

function usage(msg) {
  process.stderr.write(`ts-client: ${msg}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const ops = {};
let failed = false;

async function op(name, fn) {
  const start = Date.now();
  try {
    const detail = await fn();
    ops[name] = { ok: true, ms: Date.now() - start, ...detail };
  } catch (err) {
    failed = true;
    ops[name] = { ok: false, ms: Date.now() - start, error: String(err?.message ?? err) };
  }
}

const url = new URL(opts.url);
const requestInit = { headers: opts.headers };
const transport = opts.transport === 'sse'
  ? new SSEClientTransport(url, {
    requestInit,
    eventSourceInit: {
      fetch: (u, init) => fetch(u, { ...init, headers: { ...(init?.headers ?? {}), ...opts.headers } }),
    },
  })
  : new StreamableHTTPClientTransport(url, { requestInit });
const client = new Client({ name: 'toolgate-interop-ts', version: '1.0.0' }, { capabilities: {} });
const reqOpts = { timeout: opts.timeout };

// Give up on the whole run well after every single request would have timed out.
const watchdog = setTimeout(() => {
  process.stdout.write(JSON.stringify({ ok: false, error: 'watchdog timeout', ops }) + '\n');
  process.exit(1);
}, opts.timeout * 6);
watchdog.unref();

await op('initialize', async () => {
  await client.connect(transport, reqOpts);
  const v = client.getServerVersion();
  return { server: v?.name, protocol: transport.protocolVersion };
});

if (ops.initialize.ok) {
  let resources = [];
  await op('tools/list', async () => {
    const r = await client.listTools({}, reqOpts);
    return { count: r.tools.length, names: r.tools.map((t) => t.name) };
  });
  if (opts.tool) {
    await op('tools/call', async () => {
      const r = await client.callTool({ name: opts.tool, arguments: opts.toolArgs ?? {} }, CallToolResultSchema, reqOpts);
      if (r.isError) throw new Error(`isError: ${JSON.stringify(r.content)}`);
      const text = r.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');
      return { text };
    });
  }
  if (opts.resource) {
    await op('resources/list', async () => {
      const r = await client.listResources({}, reqOpts);
      resources = r.resources;
      return { count: r.resources.length };
    });
    await op('resources/read', async () => {
      let uri = opts.resource;
      if (uri === 'first') {
        if (resources.length === 0) throw new Error('resources/list returned no resources');
        uri = resources[0].uri;
      }
      const r = await client.readResource({ uri }, reqOpts);
      if (!r.contents?.length) throw new Error('no contents');
      return { uri, contents: r.contents.length };
    });
  }
  if (opts.prompt) {
    await op('prompts/list', async () => {
      const r = await client.listPrompts({}, reqOpts);
      return { count: r.prompts.length };
    });
    await op('prompts/get', async () => {
      const r = await client.getPrompt({ name: opts.prompt, arguments: opts.promptArgs ?? {} }, reqOpts);
      if (!r.messages?.length) throw new Error('no messages');
      return { messages: r.messages.length };
    });
  }
  if (opts.progressTool) {
    await op('progress', async () => {
      const seen = [];
      const r = await client.callTool(
        { name: opts.progressTool, arguments: opts.progressArgs ?? {} },
        CallToolResultSchema,
        { ...reqOpts, onprogress: (p) => seen.push(p.progress) },
      );
      if (r.isError) throw new Error(`isError: ${JSON.stringify(r.content)}`);
      if (seen.length < opts.minProgress) {
        throw new Error(`got ${seen.length} progress notifications [${seen}], want at least ${opts.minProgress}`);
      }
      return { progress: seen };
    });
  }
}

try {
  await client.close();
} catch {
  // closing is best effort
}
process.stdout.write(JSON.stringify({ ok: !failed, ops }) + '\n');
process.exit(failed ? 1 : 0);
