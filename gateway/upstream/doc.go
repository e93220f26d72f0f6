// Package upstream keeps the pool of MCP clients the gateway uses to talk to
// upstream MCP servers.
//
// A Pool holds one mcp-go client per upstream (and per credential, see
// WithCredential), shared by every caller. Update reconciles the set of
// servers without touching unchanged ones; each server gets a background
// loop that connects, lists its tools and keeps Health honest: a server is
// healthy only when its last tools/list succeeded, a failing one is retried
// with exponential backoff (with jitter), a healthy one is listed again
// every Config.HealthInterval.
//
// Connections. Streamable HTTP clients speak 2025-11-25 with the standalone
// GET stream open by default (Spec.Protocol "" — needed for 2025-era
// sampling, elicitation and list_changed), or negotiate 2026-07-28 first
// (Spec.Protocol "auto", list_changed then arrives on a subscriptions/listen
// stream the pool keeps open). SSE clients are rebuilt when their stream
// drops (mcp-go does not reconnect them). When an upstream answers that the
// session is gone (HTTP 404 on streamable HTTP, "Invalid session ID" on
// SSE) the client is rebuilt and the request retried once, invisibly;
// side-effect-free requests (lists, reads, prompts, completions) are also
// retried once after a connection error. A replaced client is closed when
// the requests still using it are done.
//
// Headers. Every request's headers come from the transport's header
// function: WithCredential headers beat Spec.AuthHeaders, which beat
// Spec.StaticHeaders, which beat caller headers (WithCallerHeaders) named in
// Spec.ForwardHeaders, names compared case-insensitively. X-Request-Id is
// forwarded when the caller sent one. Hop-by-hop headers (and those the
// caller's Connection header names), Cookie, Authorization,
// X-Toolgate-Api-Key, X-Litellm-Api-Key, Mcp-Session-Id, Host, Forwarded,
// X-Forwarded-* and the transport's own headers are never forwarded.
// Request values are rebuilt for the upstream, so inbound HTTP headers on a
// decoded request never leak.
//
// Side traffic. Each tools/call that carries a progress token is sent with
// a token the gateway generates; notifications/progress for it reach the
// caller's Observer.OnNotification with the caller's token restored, so
// callers sharing a client never see each other's progress.
// notifications/message (logging) carries no request id, so it goes to
// every call in flight on that client whose Observer has OnNotification.
// Sampling and elicitation requests go to the Observer of the call they
// arrived for (its response stream, or a 2026-07-28 multi round-trip),
// else to the most recent in-flight call on that client that can answer;
// with none, the upstream gets an error. list_changed notifications go to
// Config.OnListChanged, and health changes to Config.OnHealth, both on one
// pool goroutine, never on the reader's.
//
// Cancellation. When a caller's context ends (or the call times out) before
// the answer, the pool sends notifications/cancelled with the request id
// the upstream knows (mcp-go sends nothing over HTTP; the pool wraps the
// transport to see the id). On 2026-07-28 connections closing the response
// stream is the cancellation, so nothing is sent.
//
// Errors name the server and the operation, e.g.
// `upstream "github": call tool "x": context deadline exceeded`, and wrap
// the cause (ErrUnknownServer, context errors, mcp-go's JSON-RPC errors) for
// errors.Is/As.
package upstream
