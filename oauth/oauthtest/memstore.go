package oauthtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/toolgate/toolgate/store"
)

// MemStore is an in-memory store.OAuthStore for tests. It is safe for concurrent use.
type MemStore struct {
	mu       sync.Mutex
	clients  map[string]store.OAuthClient
	codes    map[string]store.OAuthCode
	tokens   map[string]store.OAuthToken
	states   map[string]store.OAuthState
	upstream map[[2]string]store.UpstreamToken
}

var _ store.OAuthStore = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{clients: map[string]store.OAuthClient{}, codes: map[string]store.OAuthCode{},
		tokens: map[string]store.OAuthToken{}, states: map[string]store.OAuthState{},
		upstream: map[[2]string]store.UpstreamToken{}}
}

func notFound(what string) error { return fmt.Errorf("%s: %w", what, store.ErrNotFound) }
func conflict(what string) error { return fmt.Errorf("%s: %w", what, store.ErrConflict) }

// CreateOAuthClient implements store.OAuthStore.
func (m *MemStore) CreateOAuthClient(_ context.Context, c *store.OAuthClient) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.clients[c.ID]; ok {
		return conflict("oauth client")
	}
	c.CreatedAt = time.Now().UTC()
	cp := *c
	cp.RedirectURIs, cp.GrantTypes, cp.ResponseTypes = clone(c.RedirectURIs), clone(c.GrantTypes), clone(c.ResponseTypes)
	m.clients[c.ID] = cp
	return nil
}

func clone(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// OAuthClient implements store.OAuthStore.
func (m *MemStore) OAuthClient(_ context.Context, id string) (*store.OAuthClient, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clients[id]
	if !ok {
		return nil, notFound("oauth client")
	}
	c.RedirectURIs, c.GrantTypes, c.ResponseTypes = clone(c.RedirectURIs), clone(c.GrantTypes), clone(c.ResponseTypes)
	return &c, nil
}

// DeleteOAuthClient implements store.OAuthStore.
func (m *MemStore) DeleteOAuthClient(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.clients[id]; !ok {
		return notFound("oauth client")
	}
	delete(m.clients, id)
	for k, c := range m.codes {
		if c.ClientID == id {
			delete(m.codes, k)
		}
	}
	for k, t := range m.tokens {
		if t.ClientID == id {
			delete(m.tokens, k)
		}
	}
	return nil
}

// CreateOAuthCode implements store.OAuthStore.
func (m *MemStore) CreateOAuthCode(_ context.Context, c *store.OAuthCode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.codes[c.CodeHash]; ok {
		return conflict("oauth code")
	}
	c.CreatedAt = time.Now().UTC()
	m.codes[c.CodeHash] = *c
	return nil
}

// ConsumeOAuthCode implements store.OAuthStore.
func (m *MemStore) ConsumeOAuthCode(_ context.Context, h string) (*store.OAuthCode, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.codes[h]
	if !ok {
		return nil, notFound("oauth code")
	}
	delete(m.codes, h)
	return &c, nil
}

// CreateOAuthToken implements store.OAuthStore.
func (m *MemStore) CreateOAuthToken(_ context.Context, t *store.OAuthToken) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tokens[t.TokenHash]; ok {
		return conflict("oauth token")
	}
	t.CreatedAt = time.Now().UTC()
	m.tokens[t.TokenHash] = *t
	return nil
}

// OAuthToken implements store.OAuthStore.
func (m *MemStore) OAuthToken(_ context.Context, h string) (*store.OAuthToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[h]
	if !ok {
		return nil, notFound("oauth token")
	}
	return &t, nil
}

// RevokeOAuthToken implements store.OAuthStore.
func (m *MemStore) RevokeOAuthToken(_ context.Context, h string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[h]
	switch {
	case !ok:
		return notFound("oauth token")
	case t.Revoked:
		return conflict("oauth token already revoked")
	}
	t.Revoked = true
	m.tokens[h] = t
	return nil
}

func (m *MemStore) revokeWhere(match func(store.OAuthToken) bool) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for k, t := range m.tokens {
		if !t.Revoked && match(t) {
			t.Revoked = true
			m.tokens[k] = t
			n++
		}
	}
	return n
}

// RevokeOAuthTokenFamily implements store.OAuthStore.
func (m *MemStore) RevokeOAuthTokenFamily(_ context.Context, family string) (int64, error) {
	return m.revokeWhere(func(t store.OAuthToken) bool { return t.FamilyID == family }), nil
}

// RevokeOAuthTokensBySubject implements store.OAuthStore.
func (m *MemStore) RevokeOAuthTokensBySubject(_ context.Context, subject string) (int64, error) {
	return m.revokeWhere(func(t store.OAuthToken) bool { return t.Subject == subject }), nil
}

// CreateOAuthState implements store.OAuthStore.
func (m *MemStore) CreateOAuthState(_ context.Context, s *store.OAuthState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.states[s.ID]; ok {
		return conflict("oauth state")
	}
	s.CreatedAt = time.Now().UTC()
	cp := *s
	cp.Data = slices.Clone(s.Data)
	m.states[s.ID] = cp
	return nil
}

// ConsumeOAuthState implements store.OAuthStore.
func (m *MemStore) ConsumeOAuthState(_ context.Context, id, kind string) (*store.OAuthState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.states[id]
	if !ok || s.Kind != kind {
		return nil, notFound("oauth state")
	}
	delete(m.states, id)
	return &s, nil
}

// PutUpstreamToken implements store.OAuthStore.
func (m *MemStore) PutUpstreamToken(_ context.Context, t *store.UpstreamToken) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t.UpdatedAt = time.Now().UTC()
	cp := *t
	cp.Sealed = slices.Clone(t.Sealed)
	m.upstream[[2]string{t.ServerID, t.Subject}] = cp
	return nil
}

// UpstreamToken implements store.OAuthStore.
func (m *MemStore) UpstreamToken(_ context.Context, serverID, subject string) (*store.UpstreamToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.upstream[[2]string{serverID, subject}]
	if !ok {
		return nil, notFound("upstream token")
	}
	return &t, nil
}

// DeleteUpstreamToken implements store.OAuthStore.
func (m *MemStore) DeleteUpstreamToken(_ context.Context, serverID, subject string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{serverID, subject}
	if _, ok := m.upstream[k]; !ok {
		return notFound("upstream token")
	}
	delete(m.upstream, k)
	return nil
}

// DeleteExpiredOAuth implements store.OAuthStore.
func (m *MemStore) DeleteExpiredOAuth(_ context.Context, before time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for k, c := range m.codes {
		if c.ExpiresAt.Before(before) {
			delete(m.codes, k)
			n++
		}
	}
	for k, s := range m.states {
		if s.ExpiresAt.Before(before) {
			delete(m.states, k)
			n++
		}
	}
	for k, t := range m.tokens {
		if t.ExpiresAt.Before(before) {
			delete(m.tokens, k)
			n++
		}
	}
	return n, nil
}
