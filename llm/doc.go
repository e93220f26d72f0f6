// Package llm routes OpenAI-compatible completion requests to LLM providers: the model
// router, the provider adapters, the cost map and the HTTP endpoints.
//
// A Server serves /v1/chat/completions (and /chat/completions), /v1/embeddings,
// /v1/images/generations, /v1/images/edits (multipart/form-data, or JSON), /v1/messages
// (Anthropic's Messages API: passed through to anthropic/* deployments, translated to and
// from chat completions for the others, errors in Anthropic's shape) and its
// /v1/messages/count_tokens, /v1/models, LiteLLM's /model/new, /model/info,
// /model/update and /model/delete, and /spend/logs. The gateway authenticates the caller
// and puts a Caller in the request context (WithCaller); the Server never sees credentials
// of its own.
//
// Every call goes through the same steps: request hygiene (fields that would redirect the
// call or its credentials are refused unless the key allows client-side credentials), the
// caller's model list, the caller's rate limits (llm/budget.Limiter), a budget reservation
// (llm/budget.Manager) of the worst case the model can cost, the Router (deployments,
// retries, fallbacks, cooldown), then the actual cost committed and one spend log row
// queued. A failed or cancelled call releases its reservation (a non-streaming call sees
// its caller's cancellation when the provider answers: fasthttp, which carries those
// calls, takes no context).
//
// The outbound body is the caller's: only "model" is rewritten to the deployment's model
// and the gateway's own fields (metadata, tags, and client-side credentials when allowed)
// are dropped. A multipart image edit is sent on as multipart, every other part (files,
// and fields such as curl -F 'image=<file' sends) byte for byte. In particular max_tokens
// and stream_options are never added or changed (a /v1/messages call translated to a chat
// completion is the exception: it asks for stream_options.include_usage). For streams this
// means usage is taken from the provider's chunks when it sends it (OpenAI does when the
// caller asked with stream_options.include_usage; Anthropic always does); otherwise the
// completion tokens are estimated from the content streamed (one token per four bytes) and
// the prompt tokens from the request. A client that disconnects mid-stream is charged the
// same way for what was streamed up to then. A provider stream that ends before its end
// marker ([DONE] with no finish_reason seen, or no message_stop) is a failure: the client
// gets an error event instead of a normal end, and the call is logged as failed and
// charged for what was streamed.
//
// Providers: OpenAI and anything OpenAI-compatible (azure/ with deployment URLs and
// api-version, groq/, mistral/, deepseek/, ollama/, hosted_vllm/ and any api_base), and
// anthropic/ (chat completions translated to and from the Messages API, tools and
// streaming included).
package llm
