package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/toolgate/toolgate/store"
)

const serverColumns = `id, name, alias, description, url, transport, auth_type, credentials,
	extra_headers, static_headers, allowed_tools, tool_name_to_display_name, tool_name_to_description,
	access_groups, allow_all_keys, available_on_public_internet, allow_keyless, oauth, cost, source,
	health_status, health_error, last_health_check, created_at, updated_at, created_by, updated_by`

// serverArgs returns the values of the columns after id and name that a create or update
// writes, in serverColumns order (alias .. source).
func serverArgs(s *store.MCPServer) ([]any, error) {
	oauth, err := jsonText(s.OAuth)
	if err != nil {
		return nil, err
	}
	cost, err := jsonText(s.Cost)
	if err != nil {
		return nil, err
	}
	return []any{s.Alias, s.Description, s.URL, s.Transport, s.AuthType, blob(s.Credentials),
		mustJSON(s.ExtraHeaders), mustJSON(s.StaticHeaders), mustJSON(s.AllowedTools),
		mustJSON(s.ToolNameToDisplayName), mustJSON(s.ToolNameToDescription), mustJSON(s.AccessGroups),
		boolInt(s.AllowAllKeys), boolInt(s.AvailableOnPublicInternet), boolInt(s.AllowKeyless),
		oauth, cost, s.Source}, nil
}

// CreateMCPServer inserts s, assigning its ID when empty.
func (db *DB) CreateMCPServer(ctx context.Context, s *store.MCPServer) error {
	id := s.ID
	if id == "" {
		id = newID()
	}
	now := db.now()
	args, err := serverArgs(s)
	if err != nil {
		return fmt.Errorf("create mcp server %s: %w", s.Name, err)
	}
	health := s.HealthStatus
	if health == "" {
		health = store.HealthUnknown
	}
	all := append([]any{id, s.Name}, args...)
	all = append(all, health, s.HealthError, nullTime(s.LastHealthCheck), fmtTime(now), fmtTime(now), s.CreatedBy, s.UpdatedBy)
	_, err = db.exec(ctx, `INSERT INTO mcp_servers (`+serverColumns+`)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, all...)
	if err != nil {
		return mapErr("create mcp server "+s.Name, err)
	}
	s.ID, s.HealthStatus, s.CreatedAt, s.UpdatedAt = id, health, now, now
	return nil
}

func scanServer(sc scanner) (*store.MCPServer, error) {
	var (
		s                                              store.MCPServer
		extra, static, allowed, display, descr, groups string
		allowAll, public, keyless                      bool
		oauth, cost                                    string
		lastCheck                                      sql.NullString
		created, updated                               string
	)
	err := sc.Scan(&s.ID, &s.Name, &s.Alias, &s.Description, &s.URL, &s.Transport, &s.AuthType, &s.Credentials,
		&extra, &static, &allowed, &display, &descr, &groups, &allowAll, &public, &keyless, &oauth, &cost,
		&s.Source, &s.HealthStatus, &s.HealthError, &lastCheck, &created, &updated, &s.CreatedBy, &s.UpdatedBy)
	if err != nil {
		return nil, err
	}
	s.AllowAllKeys, s.AvailableOnPublicInternet, s.AllowKeyless = allowAll, public, keyless
	for _, f := range []struct {
		text string
		dst  any
	}{
		{extra, &s.ExtraHeaders}, {static, &s.StaticHeaders}, {allowed, &s.AllowedTools},
		{display, &s.ToolNameToDisplayName}, {descr, &s.ToolNameToDescription}, {groups, &s.AccessGroups},
		{oauth, &s.OAuth}, {cost, &s.Cost},
	} {
		if err := unJSON(f.text, f.dst); err != nil {
			return nil, err
		}
	}
	if s.LastHealthCheck, err = parseNullTime(lastCheck); err != nil {
		return nil, err
	}
	if s.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if s.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &s, nil
}

// MCPServer returns the server with the given ID.
func (db *DB) MCPServer(ctx context.Context, id string) (*store.MCPServer, error) {
	s, err := scanServer(db.db.QueryRowContext(ctx, `SELECT `+serverColumns+` FROM mcp_servers WHERE id = ?`, id))
	if err != nil {
		return nil, mapErr("mcp server "+id, err)
	}
	return s, nil
}

// MCPServerByName returns the server with the given name.
func (db *DB) MCPServerByName(ctx context.Context, name string) (*store.MCPServer, error) {
	s, err := scanServer(db.db.QueryRowContext(ctx, `SELECT `+serverColumns+` FROM mcp_servers WHERE name = ?`, name))
	if err != nil {
		return nil, mapErr("mcp server "+name, err)
	}
	return s, nil
}

// MCPServers returns every server ordered by name.
func (db *DB) MCPServers(ctx context.Context) ([]*store.MCPServer, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+serverColumns+` FROM mcp_servers ORDER BY name`)
	if err != nil {
		return nil, mapErr("list mcp servers", err)
	}
	defer rows.Close()
	var out []*store.MCPServer
	for rows.Next() {
		s, err := scanServer(rows)
		if err != nil {
			return nil, mapErr("list mcp servers", err)
		}
		out = append(out, s)
	}
	return out, mapErr("list mcp servers", rows.Err())
}

// UpdateMCPServer replaces the server with ID s.ID, keeping its creation and health fields.
func (db *DB) UpdateMCPServer(ctx context.Context, s *store.MCPServer) error {
	now := db.now()
	args, err := serverArgs(s)
	if err != nil {
		return fmt.Errorf("update mcp server %s: %w", s.ID, err)
	}
	all := append([]any{s.Name}, args...)
	all = append(all, fmtTime(now), s.UpdatedBy, s.ID)
	res, err := db.exec(ctx, `UPDATE mcp_servers SET name = ?, alias = ?, description = ?, url = ?,
		transport = ?, auth_type = ?, credentials = ?, extra_headers = ?, static_headers = ?, allowed_tools = ?,
		tool_name_to_display_name = ?, tool_name_to_description = ?, access_groups = ?, allow_all_keys = ?,
		available_on_public_internet = ?, allow_keyless = ?, oauth = ?, cost = ?, source = ?,
		updated_at = ?, updated_by = ?
		WHERE id = ?`, all...)
	if err != nil {
		return mapErr("update mcp server "+s.ID, err)
	}
	if err := notFoundIfNone("update mcp server "+s.ID, res); err != nil {
		return err
	}
	s.UpdatedAt = now
	return nil
}

// DeleteMCPServer removes the server.
func (db *DB) DeleteMCPServer(ctx context.Context, id string) error {
	res, err := db.exec(ctx, `DELETE FROM mcp_servers WHERE id = ?`, id)
	if err != nil {
		return mapErr("delete mcp server "+id, err)
	}
	return notFoundIfNone("delete mcp server "+id, res)
}

// SetMCPServerHealth records a health check result.
func (db *DB) SetMCPServerHealth(ctx context.Context, id, status, errMsg string, at time.Time) error {
	res, err := db.exec(ctx, `UPDATE mcp_servers SET health_status = ?, health_error = ?, last_health_check = ?
		WHERE id = ?`, status, errMsg, nullTime(at), id)
	if err != nil {
		return mapErr("set mcp server health "+id, err)
	}
	return notFoundIfNone("set mcp server health "+id, res)
}
