package sqlite

import (
	"context"

	"github.com/toolgate/toolgate/store"
)

const toolsetColumns = `id, name, description, tools, created_by, created_at, updated_at`

func scanToolset(sc scanner) (*store.Toolset, error) {
	var (
		t                       store.Toolset
		tools, created, updated string
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Description, &tools, &t.CreatedBy, &created, &updated); err != nil {
		return nil, err
	}
	var err error
	if err = unJSON(tools, &t.Tools); err != nil {
		return nil, err
	}
	if t.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if t.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &t, nil
}

// CreateToolset inserts t, assigning its ID when empty.
func (db *DB) CreateToolset(ctx context.Context, t *store.Toolset) error {
	id := t.ID
	if id == "" {
		id = newID()
	}
	now := db.now()
	_, err := db.exec(ctx, `INSERT INTO toolsets (`+toolsetColumns+`) VALUES (?,?,?,?,?,?,?)`,
		id, t.Name, t.Description, mustJSON(t.Tools), t.CreatedBy, fmtTime(now), fmtTime(now))
	if err != nil {
		return mapErr("create toolset "+t.Name, err)
	}
	t.ID, t.CreatedAt, t.UpdatedAt = id, now, now
	return nil
}

// Toolset returns the toolset with the given ID.
func (db *DB) Toolset(ctx context.Context, id string) (*store.Toolset, error) {
	t, err := scanToolset(db.db.QueryRowContext(ctx, `SELECT `+toolsetColumns+` FROM toolsets WHERE id = ?`, id))
	if err != nil {
		return nil, mapErr("toolset "+id, err)
	}
	return t, nil
}

// ToolsetByName returns the toolset with the given name.
func (db *DB) ToolsetByName(ctx context.Context, name string) (*store.Toolset, error) {
	t, err := scanToolset(db.db.QueryRowContext(ctx, `SELECT `+toolsetColumns+` FROM toolsets WHERE name = ?`, name))
	if err != nil {
		return nil, mapErr("toolset "+name, err)
	}
	return t, nil
}

// Toolsets returns every toolset ordered by name.
func (db *DB) Toolsets(ctx context.Context) ([]*store.Toolset, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+toolsetColumns+` FROM toolsets ORDER BY name`)
	if err != nil {
		return nil, mapErr("list toolsets", err)
	}
	defer rows.Close()
	var out []*store.Toolset
	for rows.Next() {
		t, err := scanToolset(rows)
		if err != nil {
			return nil, mapErr("list toolsets", err)
		}
		out = append(out, t)
	}
	return out, mapErr("list toolsets", rows.Err())
}

// UpdateToolset replaces the name, description and tools of the toolset with ID t.ID.
func (db *DB) UpdateToolset(ctx context.Context, t *store.Toolset) error {
	now := db.now()
	res, err := db.exec(ctx, `UPDATE toolsets SET name = ?, description = ?, tools = ?, updated_at = ? WHERE id = ?`,
		t.Name, t.Description, mustJSON(t.Tools), fmtTime(now), t.ID)
	if err != nil {
		return mapErr("update toolset "+t.ID, err)
	}
	if err := notFoundIfNone("update toolset "+t.ID, res); err != nil {
		return err
	}
	t.UpdatedAt = now
	return nil
}

// DeleteToolset removes the toolset.
func (db *DB) DeleteToolset(ctx context.Context, id string) error {
	res, err := db.exec(ctx, `DELETE FROM toolsets WHERE id = ?`, id)
	if err != nil {
		return mapErr("delete toolset "+id, err)
	}
	return notFoundIfNone("delete toolset "+id, res)
}
