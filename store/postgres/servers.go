package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/toolgate/toolgate/store"
)

const serverColumns = `id, name, alias, description, url, transport, auth_type, credentials,
	extra_headers, static_headers, allowed_tools, tool_name_to_display_name, tool_name_to_description,
	access_groups, allow_all_keys, available_on_public_internet, allow_keyless, oauth, cost, source,
	health_status, health_error, last_health_check, created_at, updated_at, created_by, updated_by`

// serverArgs returns the values of the columns alias .. source, in serverColumns order.
func serverArgs(s *store.MCPServer) ([]any, error) {
	oauth, err := jsonText(s.OAuth)
	if err != nil {
		return nil, err
	}
	cost, err := jsonText(s.Cost)
	if err != nil {
		return nil, err
	}
	return []any{s.Alias, s.Description, s.URL, s.Transport, s.AuthType, s.Credentials,
		mustJSON(s.ExtraHeaders), mustJSON(s.StaticHeaders), mustJSON(s.AllowedTools),
		mustJSON(s.ToolNameToDisplayName), mustJSON(s.ToolNameToDescription), mustJSON(s.AccessGroups),
		s.AllowAllKeys, s.AvailableOnPublicInternet, s.AllowKeyless, oauth, cost, s.Source}, nil
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
	all = append(all, health, s.HealthError, nullTime(s.LastHealthCheck), now, now, s.CreatedBy, s.UpdatedBy)
	_, err = db.pool.Exec(ctx, `INSERT INTO mcp_servers (`+serverColumns+`)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27)`, all...)
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
		oauth, cost                                    string
		lastCheck                                      *time.Time
	)
	err := sc.Scan(&s.ID, &s.Name, &s.Alias, &s.Description, &s.URL, &s.Transport, &s.AuthType, &s.Credentials,
		&extra, &static, &allowed, &display, &descr, &groups, &s.AllowAllKeys, &s.AvailableOnPublicInternet,
		&s.AllowKeyless, &oauth, &cost, &s.Source, &s.HealthStatus, &s.HealthError, &lastCheck,
		&s.CreatedAt, &s.UpdatedAt, &s.CreatedBy, &s.UpdatedBy)
	if err != nil {
		return nil, err
	}
	if err := unJSONAll(extra, &s.ExtraHeaders, static, &s.StaticHeaders, allowed, &s.AllowedTools,
		display, &s.ToolNameToDisplayName, descr, &s.ToolNameToDescription, groups, &s.AccessGroups,
		oauth, &s.OAuth, cost, &s.Cost); err != nil {
		return nil, err
	}
	s.LastHealthCheck = fromNull(lastCheck)
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return &s, nil
}

func (db *DB) oneServer(ctx context.Context, what, where string, arg string) (*store.MCPServer, error) {
	s, err := scanServer(db.pool.QueryRow(ctx, `SELECT `+serverColumns+` FROM mcp_servers WHERE `+where, arg))
	if err != nil {
		return nil, mapErr(what, err)
	}
	return s, nil
}

// MCPServer returns the server with the given ID.
func (db *DB) MCPServer(ctx context.Context, id string) (*store.MCPServer, error) {
	return db.oneServer(ctx, "mcp server "+id, "id = $1", id)
}

// MCPServerByName returns the server with the given name.
func (db *DB) MCPServerByName(ctx context.Context, name string) (*store.MCPServer, error) {
	return db.oneServer(ctx, "mcp server "+name, "name = $1", name)
}

// MCPServers returns every server ordered by name.
func (db *DB) MCPServers(ctx context.Context) ([]*store.MCPServer, error) {
	return queryAll(ctx, db.pool, "list mcp servers", scanServer, `SELECT `+serverColumns+` FROM mcp_servers ORDER BY name`)
}

// queryAll runs a query and scans every row with scan.
func queryAll[T any](ctx context.Context, q queryer, what string, scan func(scanner) (*T, error), query string, args ...any) ([]*T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, mapErr(what, err)
	}
	defer rows.Close()
	var out []*T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, mapErr(what, err)
		}
		out = append(out, v)
	}
	return out, mapErr(what, rows.Err())
}

// UpdateMCPServer replaces the server with ID s.ID, keeping its creation and health fields.
func (db *DB) UpdateMCPServer(ctx context.Context, s *store.MCPServer) error {
	now := db.now()
	args, err := serverArgs(s)
	if err != nil {
		return fmt.Errorf("update mcp server %s: %w", s.ID, err)
	}
	all := append([]any{s.Name}, args...)
	all = append(all, now, s.UpdatedBy, s.ID)
	tag, err := db.pool.Exec(ctx, `UPDATE mcp_servers SET name = $1, alias = $2, description = $3, url = $4,
		transport = $5, auth_type = $6, credentials = $7, extra_headers = $8, static_headers = $9, allowed_tools = $10,
		tool_name_to_display_name = $11, tool_name_to_description = $12, access_groups = $13, allow_all_keys = $14,
		available_on_public_internet = $15, allow_keyless = $16, oauth = $17, cost = $18, source = $19,
		updated_at = $20, updated_by = $21
		WHERE id = $22`, all...)
	if err != nil {
		return mapErr("update mcp server "+s.ID, err)
	}
	if err := notFoundIfNone("update mcp server "+s.ID, tag); err != nil {
		return err
	}
	s.UpdatedAt = now
	return nil
}

// DeleteMCPServer removes the server.
func (db *DB) DeleteMCPServer(ctx context.Context, id string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM mcp_servers WHERE id = $1`, id)
	if err != nil {
		return mapErr("delete mcp server "+id, err)
	}
	return notFoundIfNone("delete mcp server "+id, tag)
}

// SetMCPServerHealth records a health check result.
func (db *DB) SetMCPServerHealth(ctx context.Context, id, status, errMsg string, at time.Time) error {
	tag, err := db.pool.Exec(ctx, `UPDATE mcp_servers SET health_status = $1, health_error = $2, last_health_check = $3
		WHERE id = $4`, status, errMsg, nullTime(at), id)
	if err != nil {
		return mapErr("set mcp server health "+id, err)
	}
	return notFoundIfNone("set mcp server health "+id, tag)
}
