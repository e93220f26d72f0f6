// Package llm routes OpenAI-compatible completion requests to LLM providers: the model
// router, the provider adapters, the cost map and the HTTP endpoints.
package llm
