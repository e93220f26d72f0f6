// Package upstream keeps the pool of MCP clients the gateway uses to talk to
// upstream MCP servers: one client per server, reused across callers,
// reconnected with backoff, with per-call timeouts, header precedence rules,
// progress/logging routing back to the right caller and honest health.
package upstream
