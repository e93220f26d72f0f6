package postgres

import (
	"context"

	"github.com/toolgate/toolgate/store"
)

const toolsetColumns = `id, name, description, tools, created_by, created_at, updated_at`

func scanToolset(sc scanner) (*store.Toolset, error) {
	var (
		t     store.Toolset
		tools string
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Description, &tools, &t.CreatedBy, &t.CreatedAt, &t.UpdatedAt); err != nil {
		return nil, err
	}
	if err := unJSON(tools, &t.Tools); err != nil {
		return nil, err
	}
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	return &t, nil
}

// CreateToolset inserts t, assigning its ID when empty.
func (db *DB) CreateToolset(ctx context.Context, t *store.Toolset) error {
	id := t.ID
	if id == "" {
		id = newID()
	}
	now := db.now()
	_, err := db.pool.Exec(ctx, `INSERT INTO toolsets (`+toolsetColumns+`) VALUES ($1,$2,$3,$4,$5,$6,$6)`,
		id, t.Name, t.Description, mustJSON(t.Tools), t.CreatedBy, now)
	if err != nil {
		return mapErr("create toolset "+t.Name, err)
	}
	t.ID, t.CreatedAt, t.UpdatedAt = id, now, now
	return nil
}

// Toolset returns the toolset with the given ID.
func (db *DB) Toolset(ctx context.Context, id string) (*store.Toolset, error) {
	t, err := scanToolset(db.pool.QueryRow(ctx, `SELECT `+toolsetColumns+` FROM toolsets WHERE id = $1`, id))
	if err != nil {
		return nil, mapErr("toolset "+id, err)
	}
	return t, nil
}

// ToolsetByName returns the toolset with the given name.
func (db *DB) ToolsetByName(ctx context.Context, name string) (*store.Toolset, error) {
	t, err := scanToolset(db.pool.QueryRow(ctx, `SELECT `+toolsetColumns+` FROM toolsets WHERE name = $1`, name))
	if err != nil {
		return nil, mapErr("toolset "+name, err)
	}
	return t, nil
}

// Toolsets returns every toolset ordered by name.
func (db *DB) Toolsets(ctx context.Context) ([]*store.Toolset, error) {
	return queryAll(ctx, db.pool, "list toolsets", scanToolset, `SELECT `+toolsetColumns+` FROM toolsets ORDER BY name`)
}

// UpdateToolset replaces the name, description and tools of the toolset with ID t.ID.
func (db *DB) UpdateToolset(ctx context.Context, t *store.Toolset) error {
	now := db.now()
	tag, err := db.pool.Exec(ctx, `UPDATE toolsets SET name = $1, description = $2, tools = $3, updated_at = $4 WHERE id = $5`,
		t.Name, t.Description, mustJSON(t.Tools), now, t.ID)
	if err != nil {
		return mapErr("update toolset "+t.ID, err)
	}
	if err := notFoundIfNone("update toolset "+t.ID, tag); err != nil {
		return err
	}
	t.UpdatedAt = now
	return nil
}

// DeleteToolset removes the toolset.
func (db *DB) DeleteToolset(ctx context.Context, id string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM toolsets WHERE id = $1`, id)
	if err != nil {
		return mapErr("delete toolset "+id, err)
	}
	return notFoundIfNone("delete toolset "+id, tag)
}
