// Package oauth implements toolgate's OAuth side. It never imports the gateway; the gateway
// wires it in (gateway/oauth_*.go).
//
//   - JWTValidator: issuer-scoped JWT validation (per-issuer JWKS, cached in an LRU and
//     refreshed on an unknown kid at a bounded rate, asymmetric algorithm allow-list,
//     audience required unless disabled, exp/nbf/iat with leeway, internal-looking claims
//     stripped) producing a Principal.
//   - Resource: RFC 9728 protected-resource metadata for every MCP route and the 401/403
//     WWW-Authenticate challenges.
//   - Server: the gateway as an OAuth 2.1 authorization server for its own routes: RFC 8414
//     metadata, /authorize with a login and consent page (a toolgate key, or an OIDC
//     provider), /token (PKCE S256, rotating refresh tokens with replay detection,
//     client_credentials), RFC 7591 registration and Client ID Metadata Documents. Tokens
//     are opaque, stored hashed, bound to an RFC 8707 resource, and die with their key.
//   - Upstream: the gateway as OAuth client of auth_type oauth2 upstreams (per-user
//     authorization code with sealed, refreshed tokens; client credentials).
//   - Passthrough and ForwardAuthorization: the opt-in pass-through of a caller's own
//     token, and upstream metadata served for it.
//   - NewHTTPClient: the SSRF-safe client every outbound fetch uses.
//
// Errors that reach the wire are *Error values (status, OAuth code, safe description)
// wrapping sentinel causes such as ErrExpired; map them with ErrorStatus.
package oauth
