// Package oauth implements toolgate's OAuth side: RFC 9728 protected-resource metadata,
// RFC 8414 authorization-server metadata, the gateway as an authorization server and proxy
// for its own MCP routes, upstream OAuth clients, pass-through, and issuer-scoped JWT
// validation.
package oauth
