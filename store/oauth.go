package store

// OAuthStore persists the gateway's OAuth state: registered clients, authorization codes,
// issued tokens and per-user upstream tokens. Owned by the oauth work; see its methods.
type OAuthStore interface {
}
