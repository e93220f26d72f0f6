package gateway

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"

	"github.com/toolgate/toolgate/oauth"
)

// TestOAuthConfigYAML pins the config keys of the OAuth section.
func TestOAuthConfigYAML(t *testing.T) {
	const doc = `
public_url: https://gw.example.com
authorization_server: true
scopes: [mcp]
client_id_metadata_documents: true
access_token_ttl: 30m
refresh_token_ttl: 720h
virtual_key_claim_field: key_alias
idp:
  issuer: https://idp.example.com
  client_id: toolgate
  client_secret: s3cret
  authorization_url: https://idp.example.com/authorize
  token_url: https://idp.example.com/token
  jwks_url: https://idp.example.com/jwks
  user_id_jwt_field: email
jwt_auth:
  jwks_url: https://global.example.com/jwks
  audience: toolgate
  issuers:
    - issuer: https://keycloak.example.com/realms/r
      jwks_url: https://keycloak.example.com/realms/r/protocol/openid-connect/certs
      audience: toolgate
      algorithms: [RS256, ES256]
      user_id_jwt_field: email
      team_ids_jwt_field: groups
      org_id_jwt_field: org
      roles_jwt_field: realm_access.roles
      scope_jwt_field: scope
    - issuer: https://workloads.example.com
      jwks_url: https://workloads.example.com/jwks
      disable_audience_validation: true
fetch:
  allow_private: true
`
	var got OAuthConfig
	if err := yaml.Unmarshal([]byte(doc), &got); err != nil {
		t.Fatal(err)
	}
	want := OAuthConfig{
		PublicURL: "https://gw.example.com", AuthorizationServer: true, Scopes: []string{"mcp"},
		ClientMetadataDocuments: true, AccessTokenTTL: 30 * time.Minute, RefreshTokenTTL: 720 * time.Hour,
		JWTKeyClaim: "key_alias",
		IdP: &oauth.IdPConfig{Issuer: "https://idp.example.com", ClientID: "toolgate", ClientSecret: "s3cret",
			AuthorizationURL: "https://idp.example.com/authorize", TokenURL: "https://idp.example.com/token",
			JWKSURL: "https://idp.example.com/jwks", ClaimMapping: oauth.ClaimMapping{UserID: "email"}},
		JWT: oauth.JWTConfig{
			JWKSURL: "https://global.example.com/jwks", Audience: "toolgate",
			Issuers: []oauth.IssuerConfig{
				{Issuer: "https://keycloak.example.com/realms/r", JWKSURL: "https://keycloak.example.com/realms/r/protocol/openid-connect/certs",
					Audience: "toolgate", Algorithms: []string{"RS256", "ES256"},
					ClaimMapping: oauth.ClaimMapping{UserID: "email", TeamIDs: "groups", OrgID: "org", Roles: "realm_access.roles", Scopes: "scope"}},
				{Issuer: "https://workloads.example.com", JWKSURL: "https://workloads.example.com/jwks", DisableAudienceValidation: true},
			},
		},
		Fetch: oauth.FetchConfig{AllowPrivate: true},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(oauth.IdPConfig{}, "Subject")); diff != "" {
		t.Errorf("OAuthConfig mismatch (-want +got):\n%s", diff)
	}
	if err := got.JWT.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
