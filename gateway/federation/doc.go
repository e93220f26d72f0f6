// Package federation is the downstream side of toolgate's MCP gateway: it serves the union
// of the upstream servers over MCP (streamable HTTP in both protocol generations, legacy
// SSE) and REST, with stable federated names, per-caller views and principal-bound sessions.
//
// Routes (Federation.Handler parses the path itself):
//
//	/mcp                  every server the caller may use; names "{server}-{tool}"
//	/mcp/{server}         one server; the upstream's own names (the prefixed spelling is
//	/{server}/mcp         accepted too), serverInfo.name is the server's name
//	/mcp/{a},{b}          these servers; prefixed names
//	/mcp/sse              legacy HTTP+SSE stream (every server), as LiteLLM names it
//	/mcp/sse/messages     its message endpoint (?sessionId=...)
//
// The x-mcp-servers header (comma-separated names) narrows any route to the listed servers
// it already includes. An unknown server, or one the Authorizer refuses, is a 404 JSON error.
//
// Names and URIs: see names.go. Tool and prompt names on aggregate routes are built from
// their own server and name only and resolved through per-server tables; resource URIs are
// "toolgate://{server}/{upstream URI}". Listed items carry their origin in _meta
// (MetaServer, MetaName); list results note servers that missed the deadline (MetaMissing).
//
// One mcp-go MCPServer serves every route: hooks replace list results with the caller's view
// and rewrite calls that resolve for the caller to an internal handler (see mcp.go), so a
// name that is not visible to a caller is answered exactly like an unknown one (-32602).
// Lists come from a per-server cache (cache.go and view.go: parallel, per-upstream deadline, refreshed on
// list_changed, SetServers and after CacheTTL); a server marked PerCaller (reached with
// each user's own credentials) is listed per caller instead, with the caller's context,
// cached per (server, principal), and a caller who has not authorized it is told where to
// (percaller.go). Sessions of the 2025 generation are
// HMAC-signed IDs bound to the principal and route (session.go), verifiable on any replica.
//
// resources/subscribe and unsubscribe (2025 generation) are resolved like a read and forwarded
// to the owning upstream once per principal and URI, and the upstream's
// notifications/resources/updated reach every subscribed session with the URI it used
// (subscribe.go). On a single-server route, 2026-07-28 results name that server in _meta
// serverInfo, as initialize does. A loopback listener refuses a non-loopback Host (DNS
// rebinding) with a JSON 403 before mcp-go sees the request.
package federation
