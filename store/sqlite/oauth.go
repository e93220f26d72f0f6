package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/toolgate/toolgate/store"
)

// oauthTimeLayout is fixed-width so that text comparison orders times.
const oauthTimeLayout = "2006-01-02T15:04:05.000000000Z"

func oauthTime(t time.Time) string { return t.UTC().Format(oauthTimeLayout) }

func oauthNullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return oauthTime(t)
}

func oauthParseTime(s sql.NullString) (time.Time, error) {
	if !s.Valid || s.String == "" {
		return time.Time{}, nil
	}
	return time.Parse(oauthTimeLayout, s.String)
}

func oauthJSON(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// oauthConflict maps a uniqueness violation to store.ErrConflict.
func oauthConflict(err error) error {
	var se *msqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return fmt.Errorf("%w: %v", store.ErrConflict, err)
		}
	}
	return err
}

// CreateOAuthClient implements store.OAuthStore.
func (db *DB) CreateOAuthClient(ctx context.Context, c *store.OAuthClient) error {
	c.CreatedAt = db.now()
	_, err := db.db.ExecContext(ctx, `INSERT INTO oauth_clients (id, secret_hash, name, redirect_uris,
		grant_types, response_types, token_endpoint_auth_method, application_type, scope, client_uri, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.SecretHash, c.Name, oauthJSON(c.RedirectURIs), oauthJSON(c.GrantTypes),
		oauthJSON(c.ResponseTypes), c.TokenEndpointAuthMethod, c.ApplicationType, c.Scope, c.ClientURI,
		oauthTime(c.CreatedAt))
	if err != nil {
		return fmt.Errorf("create oauth client: %w", oauthConflict(err))
	}
	return nil
}

// OAuthClient implements store.OAuthStore.
func (db *DB) OAuthClient(ctx context.Context, id string) (*store.OAuthClient, error) {
	var c store.OAuthClient
	var redirects, grants, responses string
	var created sql.NullString
	err := db.db.QueryRowContext(ctx, `SELECT id, secret_hash, name, redirect_uris, grant_types,
		response_types, token_endpoint_auth_method, application_type, scope, client_uri, created_at
		FROM oauth_clients WHERE id = ?`, id).Scan(&c.ID, &c.SecretHash, &c.Name, &redirects, &grants,
		&responses, &c.TokenEndpointAuthMethod, &c.ApplicationType, &c.Scope, &c.ClientURI, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("oauth client %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("oauth client %q: %w", id, err)
	}
	for _, f := range []struct {
		s   string
		dst *[]string
	}{{redirects, &c.RedirectURIs}, {grants, &c.GrantTypes}, {responses, &c.ResponseTypes}} {
		if err := json.Unmarshal([]byte(f.s), f.dst); err != nil {
			return nil, fmt.Errorf("oauth client %q: %w", id, err)
		}
	}
	if c.CreatedAt, err = oauthParseTime(created); err != nil {
		return nil, fmt.Errorf("oauth client %q: %w", id, err)
	}
	return &c, nil
}

// DeleteOAuthClient implements store.OAuthStore.
func (db *DB) DeleteOAuthClient(ctx context.Context, id string) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM oauth_clients WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete oauth client %q: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("oauth client %q: %w", id, store.ErrNotFound)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_codes WHERE client_id = ?`, id); err != nil {
		return fmt.Errorf("delete oauth client %q: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_tokens WHERE client_id = ?`, id); err != nil {
		return fmt.Errorf("delete oauth client %q: %w", id, err)
	}
	return tx.Commit()
}

// CreateOAuthCode implements store.OAuthStore.
func (db *DB) CreateOAuthCode(ctx context.Context, c *store.OAuthCode) error {
	c.CreatedAt = db.now()
	_, err := db.db.ExecContext(ctx, `INSERT INTO oauth_codes (code_hash, client_id, redirect_uri, subject,
		scope, resource, code_challenge, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.CodeHash, c.ClientID, c.RedirectURI, c.Subject, c.Scope, c.Resource, c.CodeChallenge,
		oauthTime(c.ExpiresAt), oauthTime(c.CreatedAt))
	if err != nil {
		return fmt.Errorf("create oauth code: %w", oauthConflict(err))
	}
	return nil
}

// ConsumeOAuthCode implements store.OAuthStore.
func (db *DB) ConsumeOAuthCode(ctx context.Context, codeHash string) (*store.OAuthCode, error) {
	var c store.OAuthCode
	var expires, created sql.NullString
	err := db.db.QueryRowContext(ctx, `DELETE FROM oauth_codes WHERE code_hash = ? RETURNING code_hash,
		client_id, redirect_uri, subject, scope, resource, code_challenge, expires_at, created_at`, codeHash).
		Scan(&c.CodeHash, &c.ClientID, &c.RedirectURI, &c.Subject, &c.Scope, &c.Resource, &c.CodeChallenge,
			&expires, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("oauth code: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("consume oauth code: %w", err)
	}
	if c.ExpiresAt, err = oauthParseTime(expires); err != nil {
		return nil, err
	}
	if c.CreatedAt, err = oauthParseTime(created); err != nil {
		return nil, err
	}
	return &c, nil
}

// CreateOAuthToken implements store.OAuthStore.
func (db *DB) CreateOAuthToken(ctx context.Context, t *store.OAuthToken) error {
	t.CreatedAt = db.now()
	_, err := db.db.ExecContext(ctx, `INSERT INTO oauth_tokens (token_hash, kind, family_id, client_id,
		subject, scope, resource, expires_at, revoked, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.TokenHash, t.Kind, t.FamilyID, t.ClientID, t.Subject, t.Scope, t.Resource,
		oauthTime(t.ExpiresAt), t.Revoked, oauthTime(t.CreatedAt))
	if err != nil {
		return fmt.Errorf("create oauth token: %w", oauthConflict(err))
	}
	return nil
}

// OAuthToken implements store.OAuthStore.
func (db *DB) OAuthToken(ctx context.Context, tokenHash string) (*store.OAuthToken, error) {
	var t store.OAuthToken
	var expires, created sql.NullString
	err := db.db.QueryRowContext(ctx, `SELECT token_hash, kind, family_id, client_id, subject, scope,
		resource, expires_at, revoked, created_at FROM oauth_tokens WHERE token_hash = ?`, tokenHash).
		Scan(&t.TokenHash, &t.Kind, &t.FamilyID, &t.ClientID, &t.Subject, &t.Scope, &t.Resource,
			&expires, &t.Revoked, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("oauth token: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("oauth token: %w", err)
	}
	if t.ExpiresAt, err = oauthParseTime(expires); err != nil {
		return nil, err
	}
	if t.CreatedAt, err = oauthParseTime(created); err != nil {
		return nil, err
	}
	return &t, nil
}

// RevokeOAuthToken implements store.OAuthStore.
func (db *DB) RevokeOAuthToken(ctx context.Context, tokenHash string) error {
	res, err := db.db.ExecContext(ctx, `UPDATE oauth_tokens SET revoked = 1 WHERE token_hash = ? AND revoked = 0`, tokenHash)
	if err != nil {
		return fmt.Errorf("revoke oauth token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var one int
	err = db.db.QueryRowContext(ctx, `SELECT 1 FROM oauth_tokens WHERE token_hash = ?`, tokenHash).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("oauth token: %w", store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke oauth token: %w", err)
	}
	return fmt.Errorf("oauth token already revoked: %w", store.ErrConflict)
}

// RevokeOAuthTokenFamily implements store.OAuthStore.
func (db *DB) RevokeOAuthTokenFamily(ctx context.Context, familyID string) (int64, error) {
	res, err := db.db.ExecContext(ctx, `UPDATE oauth_tokens SET revoked = 1 WHERE family_id = ? AND revoked = 0`, familyID)
	if err != nil {
		return 0, fmt.Errorf("revoke oauth token family: %w", err)
	}
	return res.RowsAffected()
}

// RevokeOAuthTokensBySubject implements store.OAuthStore.
func (db *DB) RevokeOAuthTokensBySubject(ctx context.Context, subject string) (int64, error) {
	res, err := db.db.ExecContext(ctx, `UPDATE oauth_tokens SET revoked = 1 WHERE subject = ? AND revoked = 0`, subject)
	if err != nil {
		return 0, fmt.Errorf("revoke oauth tokens of subject: %w", err)
	}
	return res.RowsAffected()
}

// CreateOAuthState implements store.OAuthStore.
func (db *DB) CreateOAuthState(ctx context.Context, s *store.OAuthState) error {
	s.CreatedAt = db.now()
	_, err := db.db.ExecContext(ctx, `INSERT INTO oauth_states (id, kind, data, expires_at, created_at)
		VALUES (?, ?, ?, ?, ?)`, s.ID, s.Kind, s.Data, oauthTime(s.ExpiresAt), oauthTime(s.CreatedAt))
	if err != nil {
		return fmt.Errorf("create oauth state: %w", oauthConflict(err))
	}
	return nil
}

// ConsumeOAuthState implements store.OAuthStore.
func (db *DB) ConsumeOAuthState(ctx context.Context, id, kind string) (*store.OAuthState, error) {
	var s store.OAuthState
	var expires, created sql.NullString
	err := db.db.QueryRowContext(ctx, `DELETE FROM oauth_states WHERE id = ? AND kind = ?
		RETURNING id, kind, data, expires_at, created_at`, id, kind).Scan(&s.ID, &s.Kind, &s.Data, &expires, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("oauth state: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("consume oauth state: %w", err)
	}
	if s.ExpiresAt, err = oauthParseTime(expires); err != nil {
		return nil, err
	}
	if s.CreatedAt, err = oauthParseTime(created); err != nil {
		return nil, err
	}
	return &s, nil
}

// PutUpstreamToken implements store.OAuthStore.
func (db *DB) PutUpstreamToken(ctx context.Context, t *store.UpstreamToken) error {
	t.UpdatedAt = db.now()
	_, err := db.db.ExecContext(ctx, `INSERT INTO oauth_upstream_tokens (server_id, subject, sealed,
		expires_at, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (server_id, subject) DO UPDATE SET sealed = excluded.sealed,
		expires_at = excluded.expires_at, updated_at = excluded.updated_at`,
		t.ServerID, t.Subject, t.Sealed, oauthNullTime(t.ExpiresAt), oauthTime(t.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put upstream token: %w", err)
	}
	return nil
}

// UpstreamToken implements store.OAuthStore.
func (db *DB) UpstreamToken(ctx context.Context, serverID, subject string) (*store.UpstreamToken, error) {
	var t store.UpstreamToken
	var expires, updated sql.NullString
	err := db.db.QueryRowContext(ctx, `SELECT server_id, subject, sealed, expires_at, updated_at
		FROM oauth_upstream_tokens WHERE server_id = ? AND subject = ?`, serverID, subject).
		Scan(&t.ServerID, &t.Subject, &t.Sealed, &expires, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("upstream token %s/%s: %w", serverID, subject, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream token: %w", err)
	}
	if t.ExpiresAt, err = oauthParseTime(expires); err != nil {
		return nil, err
	}
	if t.UpdatedAt, err = oauthParseTime(updated); err != nil {
		return nil, err
	}
	return &t, nil
}

// DeleteUpstreamToken implements store.OAuthStore.
func (db *DB) DeleteUpstreamToken(ctx context.Context, serverID, subject string) error {
	res, err := db.db.ExecContext(ctx, `DELETE FROM oauth_upstream_tokens WHERE server_id = ? AND subject = ?`, serverID, subject)
	if err != nil {
		return fmt.Errorf("delete upstream token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("upstream token %s/%s: %w", serverID, subject, store.ErrNotFound)
	}
	return nil
}

// DeleteExpiredOAuth implements store.OAuthStore.
func (db *DB) DeleteExpiredOAuth(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for _, q := range []string{
		`DELETE FROM oauth_codes WHERE expires_at < ?`,
		`DELETE FROM oauth_states WHERE expires_at < ?`,
		`DELETE FROM oauth_tokens WHERE expires_at < ?`,
	} {
		res, err := db.db.ExecContext(ctx, q, oauthTime(before))
		if err != nil {
			return total, fmt.Errorf("delete expired oauth: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}
