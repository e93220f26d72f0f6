package store

import (
	"context"
	"time"
)

// Transports an upstream MCP server may speak.
const (
	TransportHTTP = "http" // streamable HTTP
	TransportSSE  = "sse"  // legacy HTTP+SSE (2024-11-05)
)

// Auth types for upstream MCP servers, in LiteLLM's spelling.
const (
	AuthNone          = "none"
	AuthAPIKey        = "api_key"      // credentials.api_key sent as X-API-Key (or auth_header_name)
	AuthBearer        = "bearer_token" // credentials.auth_value sent as Authorization: Bearer
	AuthBasic         = "basic"        // credentials.auth_value ("user:pass") sent as Authorization: Basic
	AuthAuthorization = "authorization"
	AuthOAuth2        = "oauth2"
)

// Health states of an upstream.
const (
	HealthUnknown   = "unknown"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// MCPServer is a registered upstream MCP server: the fields of LiteLLM's
// LiteLLM_MCPServerTable that toolgate uses.
type MCPServer struct {
	ID          string // server_id; a UUID assigned by CreateMCPServer when empty
	Name        string // server_name; unique, [A-Za-z0-9_]
	Alias       string
	Description string
	URL         string
	Transport   string // TransportHTTP or TransportSSE
	AuthType    string // one of the Auth* constants; empty means AuthNone

	// Credentials is the sealed (AES-GCM) JSON of the upstream credentials. The store keeps
	// it opaque; the gateway seals and opens it. It is never returned by the API.
	Credentials []byte

	ExtraHeaders  []string          // caller header names forwarded upstream
	StaticHeaders map[string]string // headers always sent upstream
	AllowedTools  []string          // if non-empty, only these upstream tools exist

	ToolNameToDisplayName map[string]string
	ToolNameToDescription map[string]string

	AccessGroups              []string
	AllowAllKeys              bool // every key may use this server
	AvailableOnPublicInternet bool // false: only internal callers see it

	// AllowKeyless lets callers without any credential use this server's own routes
	// (/mcp/{name}, /{name}/mcp). Off by default; meant for conformance runs.
	AllowKeyless bool

	// OAuth settings for AuthType oauth2 and pass-through.
	OAuth MCPServerOAuth

	// Cost of calls charged to budgets (LiteLLM mcp_info.mcp_server_cost_info).
	Cost MCPServerCost

	// Source says where the record came from: "db" (management API) or "config" (YAML).
	// Config servers are never written to the database; the gateway merges them.
	Source string

	HealthStatus    string // one of the Health* constants
	HealthError     string // last health-check error, empty when healthy
	LastHealthCheck time.Time

	CreatedAt time.Time
	UpdatedAt time.Time
	CreatedBy string
	UpdatedBy string
}

// MCPServerOAuth holds the non-secret OAuth settings of an upstream. The client secret,
// when there is one, lives in the sealed Credentials.
type MCPServerOAuth struct {
	ClientID               string
	AuthorizationURL       string
	TokenURL               string
	RegistrationURL        string
	Scopes                 []string
	GrantType              string // "authorization_code" (per user, default) or "client_credentials"
	Passthrough            bool   // LiteLLM oauth_passthrough: forward the caller's own token (outside the spec)
	DelegateAuthToUpstream bool   // LiteLLM delegate_auth_to_upstream
}

// MCPServerCost is LiteLLM's mcp_server_cost_info.
type MCPServerCost struct {
	DefaultCostPerQuery    float64
	ToolNameToCostPerQuery map[string]float64
}

// ServerStore persists registered upstream MCP servers.
type ServerStore interface {
	// CreateMCPServer inserts s, assigning s.ID (when empty), s.CreatedAt and s.UpdatedAt.
	// A duplicate Name or ID returns ErrConflict.
	CreateMCPServer(ctx context.Context, s *MCPServer) error
	// MCPServer returns the server with the given ID, or ErrNotFound.
	MCPServer(ctx context.Context, id string) (*MCPServer, error)
	// MCPServerByName returns the server with the given name, or ErrNotFound.
	MCPServerByName(ctx context.Context, name string) (*MCPServer, error)
	// MCPServers returns every server ordered by name.
	MCPServers(ctx context.Context) ([]*MCPServer, error)
	// UpdateMCPServer replaces the stored server with ID s.ID (all fields but CreatedAt/CreatedBy
	// and health), setting s.UpdatedAt. Unknown ID: ErrNotFound; a name taken by another
	// server: ErrConflict.
	UpdateMCPServer(ctx context.Context, s *MCPServer) error
	// DeleteMCPServer removes the server. Unknown ID: ErrNotFound.
	DeleteMCPServer(ctx context.Context, id string) error
	// SetMCPServerHealth records a health check result. Unknown ID: ErrNotFound.
	SetMCPServerHealth(ctx context.Context, id, status, errMsg string, at time.Time) error
}
