package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/toolgate/toolgate/store"
)

// oauthConflict maps a uniqueness violation to store.ErrConflict.
func oauthConflict(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("%w: %v", store.ErrConflict, err)
	}
	return err
}

func oauthList(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func oauthNullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// CreateOAuthClient implements store.OAuthStore.
func (db *DB) CreateOAuthClient(ctx context.Context, c *store.OAuthClient) error {
	c.CreatedAt = db.now()
	_, err := db.pool.Exec(ctx, `INSERT INTO oauth_clients (id, secret_hash, name, redirect_uris,
		grant_types, response_types, token_endpoint_auth_method, application_type, scope, client_uri, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		c.ID, c.SecretHash, c.Name, oauthList(c.RedirectURIs), oauthList(c.GrantTypes),
		oauthList(c.ResponseTypes), c.TokenEndpointAuthMethod, c.ApplicationType, c.Scope, c.ClientURI, c.CreatedAt)
	if err != nil {
		return fmt.Errorf("create oauth client: %w", oauthConflict(err))
	}
	return nil
}

// OAuthClient implements store.OAuthStore.
func (db *DB) OAuthClient(ctx context.Context, id string) (*store.OAuthClient, error) {
	var c store.OAuthClient
	err := db.pool.QueryRow(ctx, `SELECT id, secret_hash, name, redirect_uris, grant_types,
		response_types, token_endpoint_auth_method, application_type, scope, client_uri, created_at
		FROM oauth_clients WHERE id = $1`, id).Scan(&c.ID, &c.SecretHash, &c.Name, &c.RedirectURIs,
		&c.GrantTypes, &c.ResponseTypes, &c.TokenEndpointAuthMethod, &c.ApplicationType, &c.Scope,
		&c.ClientURI, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("oauth client %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("oauth client %q: %w", id, err)
	}
	c.CreatedAt = c.CreatedAt.UTC()
	return &c, nil
}

// DeleteOAuthClient implements store.OAuthStore.
func (db *DB) DeleteOAuthClient(ctx context.Context, id string) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM oauth_clients WHERE id = $1`, id)
		if err != nil {
			return fmt.Errorf("delete oauth client %q: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("oauth client %q: %w", id, store.ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM oauth_codes WHERE client_id = $1`, id); err != nil {
			return fmt.Errorf("delete oauth client %q: %w", id, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM oauth_tokens WHERE client_id = $1`, id); err != nil {
			return fmt.Errorf("delete oauth client %q: %w", id, err)
		}
		return nil
	})
}

// CreateOAuthCode implements store.OAuthStore.
func (db *DB) CreateOAuthCode(ctx context.Context, c *store.OAuthCode) error {
	c.CreatedAt = db.now()
	_, err := db.pool.Exec(ctx, `INSERT INTO oauth_codes (code_hash, client_id, redirect_uri, subject,
		scope, resource, code_challenge, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.CodeHash, c.ClientID, c.RedirectURI, c.Subject, c.Scope, c.Resource, c.CodeChallenge,
		c.ExpiresAt.UTC(), c.CreatedAt)
	if err != nil {
		return fmt.Errorf("create oauth code: %w", oauthConflict(err))
	}
	return nil
}

// ConsumeOAuthCode implements store.OAuthStore.
func (db *DB) ConsumeOAuthCode(ctx context.Context, codeHash string) (*store.OAuthCode, error) {
	var c store.OAuthCode
	err := db.pool.QueryRow(ctx, `DELETE FROM oauth_codes WHERE code_hash = $1 RETURNING code_hash,
		client_id, redirect_uri, subject, scope, resource, code_challenge, expires_at, created_at`, codeHash).
		Scan(&c.CodeHash, &c.ClientID, &c.RedirectURI, &c.Subject, &c.Scope, &c.Resource, &c.CodeChallenge,
			&c.ExpiresAt, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("oauth code: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("consume oauth code: %w", err)
	}
	c.ExpiresAt, c.CreatedAt = c.ExpiresAt.UTC(), c.CreatedAt.UTC()
	return &c, nil
}

// CreateOAuthToken implements store.OAuthStore.
func (db *DB) CreateOAuthToken(ctx context.Context, t *store.OAuthToken) error {
	t.CreatedAt = db.now()
	_, err := db.pool.Exec(ctx, `INSERT INTO oauth_tokens (token_hash, kind, family_id, client_id,
		subject, scope, resource, expires_at, revoked, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		t.TokenHash, t.Kind, t.FamilyID, t.ClientID, t.Subject, t.Scope, t.Resource,
		t.ExpiresAt.UTC(), t.Revoked, t.CreatedAt)
	if err != nil {
		return fmt.Errorf("create oauth token: %w", oauthConflict(err))
	}
	return nil
}

// OAuthToken implements store.OAuthStore.
func (db *DB) OAuthToken(ctx context.Context, tokenHash string) (*store.OAuthToken, error) {
	var t store.OAuthToken
	err := db.pool.QueryRow(ctx, `SELECT token_hash, kind, family_id, client_id, subject, scope,
		resource, expires_at, revoked, created_at FROM oauth_tokens WHERE token_hash = $1`, tokenHash).
		Scan(&t.TokenHash, &t.Kind, &t.FamilyID, &t.ClientID, &t.Subject, &t.Scope, &t.Resource,
			&t.ExpiresAt, &t.Revoked, &t.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("oauth token: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("oauth token: %w", err)
	}
	t.ExpiresAt, t.CreatedAt = t.ExpiresAt.UTC(), t.CreatedAt.UTC()
	return &t, nil
}

// RevokeOAuthToken implements store.OAuthStore.
func (db *DB) RevokeOAuthToken(ctx context.Context, tokenHash string) error {
	tag, err := db.pool.Exec(ctx, `UPDATE oauth_tokens SET revoked = TRUE WHERE token_hash = $1 AND NOT revoked`, tokenHash)
	if err != nil {
		return fmt.Errorf("revoke oauth token: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var one int
	err = db.pool.QueryRow(ctx, `SELECT 1 FROM oauth_tokens WHERE token_hash = $1`, tokenHash).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("oauth token: %w", store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke oauth token: %w", err)
	}
	return fmt.Errorf("oauth token already revoked: %w", store.ErrConflict)
}

// RevokeOAuthTokenFamily implements store.OAuthStore.
func (db *DB) RevokeOAuthTokenFamily(ctx context.Context, familyID string) (int64, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE oauth_tokens SET revoked = TRUE WHERE family_id = $1 AND NOT revoked`, familyID)
	if err != nil {
		return 0, fmt.Errorf("revoke oauth token family: %w", err)
	}
	return tag.RowsAffected(), nil
}

// RevokeOAuthTokensBySubject implements store.OAuthStore.
func (db *DB) RevokeOAuthTokensBySubject(ctx context.Context, subject string) (int64, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE oauth_tokens SET revoked = TRUE WHERE subject = $1 AND NOT revoked`, subject)
	if err != nil {
		return 0, fmt.Errorf("revoke oauth tokens of subject: %w", err)
	}
	return tag.RowsAffected(), nil
}

// CreateOAuthState implements store.OAuthStore.
func (db *DB) CreateOAuthState(ctx context.Context, s *store.OAuthState) error {
	s.CreatedAt = db.now()
	_, err := db.pool.Exec(ctx, `INSERT INTO oauth_states (id, kind, data, expires_at, created_at)
		VALUES ($1, $2, $3, $4, $5)`, s.ID, s.Kind, s.Data, s.ExpiresAt.UTC(), s.CreatedAt)
	if err != nil {
		return fmt.Errorf("create oauth state: %w", oauthConflict(err))
	}
	return nil
}

// ConsumeOAuthState implements store.OAuthStore.
func (db *DB) ConsumeOAuthState(ctx context.Context, id, kind string) (*store.OAuthState, error) {
	var s store.OAuthState
	err := db.pool.QueryRow(ctx, `DELETE FROM oauth_states WHERE id = $1 AND kind = $2
		RETURNING id, kind, data, expires_at, created_at`, id, kind).Scan(&s.ID, &s.Kind, &s.Data, &s.ExpiresAt, &s.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("oauth state: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("consume oauth state: %w", err)
	}
	s.ExpiresAt, s.CreatedAt = s.ExpiresAt.UTC(), s.CreatedAt.UTC()
	return &s, nil
}

// PutUpstreamToken implements store.OAuthStore.
func (db *DB) PutUpstreamToken(ctx context.Context, t *store.UpstreamToken) error {
	t.UpdatedAt = db.now()
	_, err := db.pool.Exec(ctx, `INSERT INTO oauth_upstream_tokens (server_id, subject, sealed,
		expires_at, updated_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (server_id, subject) DO UPDATE SET sealed = EXCLUDED.sealed,
		expires_at = EXCLUDED.expires_at, updated_at = EXCLUDED.updated_at`,
		t.ServerID, t.Subject, t.Sealed, oauthNullTime(t.ExpiresAt), t.UpdatedAt)
	if err != nil {
		return fmt.Errorf("put upstream token: %w", err)
	}
	return nil
}

// UpstreamToken implements store.OAuthStore.
func (db *DB) UpstreamToken(ctx context.Context, serverID, subject string) (*store.UpstreamToken, error) {
	var t store.UpstreamToken
	var expires *time.Time
	err := db.pool.QueryRow(ctx, `SELECT server_id, subject, sealed, expires_at, updated_at
		FROM oauth_upstream_tokens WHERE server_id = $1 AND subject = $2`, serverID, subject).
		Scan(&t.ServerID, &t.Subject, &t.Sealed, &expires, &t.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("upstream token %s/%s: %w", serverID, subject, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream token: %w", err)
	}
	if expires != nil {
		t.ExpiresAt = expires.UTC()
	}
	t.UpdatedAt = t.UpdatedAt.UTC()
	return &t, nil
}

// DeleteUpstreamToken implements store.OAuthStore.
func (db *DB) DeleteUpstreamToken(ctx context.Context, serverID, subject string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM oauth_upstream_tokens WHERE server_id = $1 AND subject = $2`, serverID, subject)
	if err != nil {
		return fmt.Errorf("delete upstream token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("upstream token %s/%s: %w", serverID, subject, store.ErrNotFound)
	}
	return nil
}

// DeleteExpiredOAuth implements store.OAuthStore.
func (db *DB) DeleteExpiredOAuth(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for _, q := range []string{
		`DELETE FROM oauth_codes WHERE expires_at < $1`,
		`DELETE FROM oauth_states WHERE expires_at < $1`,
		`DELETE FROM oauth_tokens WHERE expires_at < $1`,
	} {
		tag, err := db.pool.Exec(ctx, q, before.UTC())
		if err != nil {
			return total, fmt.Errorf("delete expired oauth: %w", err)
		}
		total += tag.RowsAffected()
	}
	return total, nil
}
