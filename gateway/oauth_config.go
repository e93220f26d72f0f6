package gateway

import (
	"time"

	"github.com/toolgate/toolgate/oauth"
)

// OAuthConfig configures the gateway's OAuth side: protected-resource discovery, the
// built-in authorization server, and external JWTs. The zero value turns all of it off
// (admission then knows only the master key and virtual keys).
type OAuthConfig struct {
	// PublicURL is the gateway's external base URL with its root path, e.g.
	// "https://gw.example.com" (general_settings.public_url, TOOLGATE_PUBLIC_URL). Required
	// for discovery and the authorization server; if empty, neither is served.
	PublicURL string `yaml:"public_url"`

	// AuthorizationServer turns on the built-in authorization server (login with a
	// toolgate key). If false, only JWTs from JWT.Issuers are accepted as bearer tokens.
	AuthorizationServer bool `yaml:"authorization_server"`
	// AuthorizationServers are advertised in protected-resource metadata. If nil, the
	// gateway itself when AuthorizationServer is on, else the JWT issuers.
	AuthorizationServers []string `yaml:"authorization_servers"`
	// Scopes are advertised and granted. If nil, ["mcp"].
	Scopes []string `yaml:"scopes"`
	// ClientMetadataDocuments accepts Client ID Metadata Document URLs as client IDs.
	ClientMetadataDocuments bool `yaml:"client_id_metadata_documents"`
	// AccessTokenTTL and RefreshTokenTTL bound issued tokens. If zero, 1h and 30 days.
	AccessTokenTTL  time.Duration `yaml:"access_token_ttl"`
	RefreshTokenTTL time.Duration `yaml:"refresh_token_ttl"`

	// IdP, if set, delegates the login step to an OpenID Connect provider instead of the
	// key form. Its user (user_id_jwt_field, default sub) must exist as a toolgate user;
	// tokens then carry that user's permissions. Its Subject field is set by the gateway.
	IdP *oauth.IdPConfig `yaml:"idp"`

	// JWT is the jwt_auth section: issuer-scoped and global key sets. If it has no issuer
	// and no jwks_url, JWTs are not accepted.
	JWT oauth.JWTConfig `yaml:"jwt_auth"`

	// JWTKeyClaim names a claim whose value is a virtual key's alias: a JWT carrying it is
	// admitted as that key, with the key's permissions and budgets (LiteLLM's
	// virtual_key_claim_field). A value naming no key falls back to the user/team mapping.
	// If empty, JWTs are never mapped to keys.
	JWTKeyClaim string `yaml:"virtual_key_claim_field"`

	// Fetch governs outbound fetches (JWKS, client metadata documents): set AllowLoopback
	// only for development and tests.
	Fetch oauth.FetchConfig `yaml:"fetch"`
}
