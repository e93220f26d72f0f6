package store

import (
	"context"
	"time"
)

// Token kinds of an OAuthToken.
const (
	TokenAccess  = "access"
	TokenRefresh = "refresh"
)

// OAuthClient is a client registered with the gateway's authorization server (RFC 7591
// dynamic registration). Clients identified by a Client ID Metadata Document URL are not
// stored here; they are fetched.
type OAuthClient struct {
	ID                      string   // client_id; unique
	SecretHash              string   // hex SHA-256 of client_secret; empty for public clients
	Name                    string   // client_name
	RedirectURIs            []string // exact redirect URIs (loopback ones match on any port)
	GrantTypes              []string // e.g. authorization_code, refresh_token
	ResponseTypes           []string // e.g. code
	TokenEndpointAuthMethod string   // none, client_secret_post or client_secret_basic
	ApplicationType         string   // web or native
	Scope                   string   // space-separated scopes it registered for
	ClientURI               string
	CreatedAt               time.Time
}

// OAuthCode is an authorization code, single-use. Only its hash is stored.
type OAuthCode struct {
	CodeHash      string // hex SHA-256 of the code; unique
	ClientID      string
	RedirectURI   string
	Subject       string // who approved it (an opaque subject chosen by the gateway)
	Scope         string
	Resource      string // RFC 8707 resource the token will be bound to
	CodeChallenge string // PKCE S256 challenge
	ExpiresAt     time.Time
	CreatedAt     time.Time
}

// OAuthToken is an opaque access or refresh token issued by the gateway. Only its hash is
// stored.
type OAuthToken struct {
	TokenHash string // hex SHA-256 of the token; unique
	Kind      string // TokenAccess or TokenRefresh
	FamilyID  string // tokens descended from one authorization code share it
	ClientID  string
	Subject   string
	Scope     string
	Resource  string
	ExpiresAt time.Time
	Revoked   bool
	CreatedAt time.Time
}

// OAuthState is a short-lived, single-use value kept between two legs of a browser
// redirect: a pending authorization request, or the state of an upstream authorization.
type OAuthState struct {
	ID        string // random, unguessable; unique
	Kind      string // what the Data means, e.g. "authorize" or "upstream"
	Data      []byte // opaque to the store
	ExpiresAt time.Time
	CreatedAt time.Time
}

// UpstreamToken is a user's token at an upstream MCP server's authorization server, held by
// the gateway acting as that user's OAuth client.
type UpstreamToken struct {
	ServerID  string
	Subject   string // the gateway user or subject the token belongs to
	Sealed    []byte // sealed (AES-GCM) JSON of the token; opaque to the store
	ExpiresAt time.Time
	UpdatedAt time.Time
}

// OAuthStore persists the gateway's OAuth state: registered clients, authorization codes,
// issued tokens, redirect states and per-user upstream tokens. Implementations are safe for
// concurrent use; every "consume" is atomic, so of two concurrent callers exactly one wins.
// Expired records are returned as they are (callers check ExpiresAt) until
// DeleteExpiredOAuth removes them.
type OAuthStore interface {
	// CreateOAuthClient inserts c, setting CreatedAt. A duplicate ID returns ErrConflict.
	CreateOAuthClient(ctx context.Context, c *OAuthClient) error
	// OAuthClient returns the client with the given ID, or ErrNotFound.
	OAuthClient(ctx context.Context, id string) (*OAuthClient, error)
	// DeleteOAuthClient removes the client and every code and token issued to it.
	// Unknown ID: ErrNotFound.
	DeleteOAuthClient(ctx context.Context, id string) error

	// CreateOAuthCode inserts c, setting CreatedAt. A duplicate hash returns ErrConflict.
	CreateOAuthCode(ctx context.Context, c *OAuthCode) error
	// ConsumeOAuthCode deletes and returns the code with the given hash. A missing or
	// already consumed code returns ErrNotFound.
	ConsumeOAuthCode(ctx context.Context, codeHash string) (*OAuthCode, error)

	// CreateOAuthToken inserts t, setting CreatedAt. A duplicate hash returns ErrConflict.
	CreateOAuthToken(ctx context.Context, t *OAuthToken) error
	// OAuthToken returns the token with the given hash, revoked or not, or ErrNotFound.
	OAuthToken(ctx context.Context, tokenHash string) (*OAuthToken, error)
	// RevokeOAuthToken marks the token revoked. It returns ErrNotFound when the token does
	// not exist and ErrConflict when it was already revoked (so a refresh token is rotated
	// exactly once).
	RevokeOAuthToken(ctx context.Context, tokenHash string) error
	// RevokeOAuthTokenFamily revokes every token of the family and returns how many were
	// still live.
	RevokeOAuthTokenFamily(ctx context.Context, familyID string) (int64, error)
	// RevokeOAuthTokensBySubject revokes every token issued to subject and returns how many
	// were still live.
	RevokeOAuthTokensBySubject(ctx context.Context, subject string) (int64, error)

	// CreateOAuthState inserts s, setting CreatedAt. A duplicate ID returns ErrConflict.
	CreateOAuthState(ctx context.Context, s *OAuthState) error
	// ConsumeOAuthState deletes and returns the state with the given ID and kind. Missing,
	// of another kind, or already consumed: ErrNotFound.
	ConsumeOAuthState(ctx context.Context, id, kind string) (*OAuthState, error)

	// PutUpstreamToken inserts or replaces the token of (t.ServerID, t.Subject), setting
	// UpdatedAt.
	PutUpstreamToken(ctx context.Context, t *UpstreamToken) error
	// UpstreamToken returns the token of (serverID, subject), or ErrNotFound.
	UpstreamToken(ctx context.Context, serverID, subject string) (*UpstreamToken, error)
	// DeleteUpstreamToken removes the token of (serverID, subject). Missing: ErrNotFound.
	DeleteUpstreamToken(ctx context.Context, serverID, subject string) error

	// DeleteExpiredOAuth removes codes, states and tokens that expired before the given
	// time and returns how many rows went. Upstream tokens are kept (they refresh).
	DeleteExpiredOAuth(ctx context.Context, before time.Time) (int64, error)
}
