// openai-sdk.mjs drives toolgate's LLM routes (chat completions, the Responses API,
// embeddings, the model list) with OpenAI's official JavaScript SDK, the
// way an application would after changing only its base URL and key. It prints one JSON
// object with what each call returned, then calls until the key's budget refuses, and
// reports that error as the SDK surfaced it.
//
// usage: node openai-sdk.mjs BASE_URL API_KEY
import OpenAI from 'openai';

const [base, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base + '/v1', apiKey, maxRetries: 0, timeout: 20_000 });
const out = {};
const messages = [{ role: 'user', content: 'Say hello.' }];

try {
  const { data: chat, response } = await client.chat.completions
    .create({
      model: 'gpt',
      messages,
      max_tokens: 16,
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }],
    })
    .withResponse();
  out.chat = {
    content: chat.choices[0].message.content,
    finish: chat.choices[0].finish_reason,
    usage: chat.usage,
    callID: response.headers.get('x-litellm-call-id'),
  };

  const stream = await client.chat.completions.create({
    model: 'gpt',
    messages,
    max_tokens: 16,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  let chunks = 0;
  for await (const c of stream) {
    chunks++;
    text += c.choices[0]?.delta?.content ?? '';
    if (c.usage) usage = c.usage;
  }
  out.stream = { text, usage, chunks };

  const emb = await client.embeddings.create({ model: 'emb', input: 'hello' });
  out.embedding = { dims: emb.data[0].embedding.length, usage: emb.usage };

  const resp = await client.responses.create({ model: 'gpt', input: 'Say hello.', max_output_tokens: 16 });
  out.responses = {
    text: resp.output.flatMap((o) => o.content ?? []).filter((c) => c.type === 'output_text').map((c) => c.text).join(''),
    usage: resp.usage,
  };

  const rstream = await client.responses.create({ model: 'gpt', input: 'Say hello.', max_output_tokens: 16, stream: true });
  out.responsesStream = { text: '', usage: null, events: 0 };
  for await (const ev of rstream) {
    out.responsesStream.events++;
    if (ev.type === 'response.output_text.delta') out.responsesStream.text += ev.delta;
    if (ev.type === 'response.completed') out.responsesStream.usage = ev.response.usage;
  }

  const bridged = await client.responses.create({ model: 'claude', input: 'Say hello.', max_output_tokens: 16, stream: true });
  out.bridgedStream = { text: '', usage: null, types: [] };
  for await (const ev of bridged) {
    out.bridgedStream.types.push(ev.type);
    if (ev.type === 'response.output_text.delta') out.bridgedStream.text += ev.delta;
    if (ev.type === 'response.completed') out.bridgedStream.usage = ev.response.usage;
  }

  // The stored response: continued (previous_response_id), read back, its input items
  // listed, deleted, all by the ID the gateway gave.
  const again = await client.responses.create({ model: 'gpt', input: 'And then?', previous_response_id: resp.id, max_output_tokens: 16 });
  const got = await client.responses.retrieve(resp.id);
  const items = [];
  for await (const it of client.responses.inputItems.list(resp.id)) items.push(it.id);
  await client.responses.delete(resp.id);
  out.stored = { id: resp.id, nextID: again.id, retrievedID: got.id, retrievedText: got.output_text, items };

  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  out.models = models.sort();

  out.calls = 0;
  for (;;) {
    await client.chat.completions.create({ model: 'gpt', messages, max_tokens: 16 });
    out.calls++;
    if (out.calls > 100) throw new Error('the budget never refused a call');
  }
} catch (err) {
  if (err instanceof OpenAI.APIError) {
    out.refused = { status: err.status, type: err.type, code: err.code, message: err.message };
  } else {
    out.failure = String(err?.stack ?? err);
  }
}
console.log(JSON.stringify(out));
