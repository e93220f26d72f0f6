// Package federation is the downstream side of toolgate's MCP gateway: it serves the union
// of the upstream servers over MCP (streamable HTTP in both protocol generations, legacy
// SSE) and REST, with stable federated names, per-caller views and principal-bound sessions.
package federation
