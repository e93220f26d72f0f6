package gateway

import (
	"context"

	"github.com/toolgate/toolgate/store"
)

// Principal kinds.
const (
	KindMaster    = "master"    // the master key
	KindKey       = "key"       // a virtual key (sk-...)
	KindOAuth     = "oauth"     // an access token issued by toolgate's authorization server
	KindJWT       = "jwt"       // a JWT from an external issuer
	KindAnonymous = "anonymous" // no credential (only on keyless servers' own routes)
)

// Principal is who is calling: set by the admission middleware before any handler runs.
type Principal struct {
	Kind   string // one of the Kind* constants
	Admin  bool   // master key, or a key whose user is proxy_admin
	Key    *store.Key
	User   *store.User
	Team   *store.Team
	Org    *store.Org
	Scopes []string
	// Audience is the RFC 8707 resource a gateway-issued access token was granted for
	// (KindOAuth); admission refuses it on routes outside that resource. Empty otherwise.
	Audience string
	// Subject identifies the caller in logs, audit entries and session binding: "master_key",
	// "key:<key id>", the OAuth/JWT subject, or "anonymous".
	Subject string
}

type principalKey struct{}

// WithPrincipal returns a copy of ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal in ctx, or nil when there is none.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// subject returns p.Subject, or "anonymous" for a nil principal.
func (p *Principal) subject() string {
	if p == nil || p.Subject == "" {
		return "anonymous"
	}
	return p.Subject
}
