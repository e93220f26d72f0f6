package sqlite

import (
	"context"
	"database/sql"

	"github.com/toolgate/toolgate/store"
)

const modelColumns = `id, model_name, params, credentials, model_info, created_by, created_at, updated_at`

func scanModel(sc scanner) (*store.Model, error) {
	var (
		m                store.Model
		params, info     sql.NullString
		created, updated string
	)
	if err := sc.Scan(&m.ID, &m.ModelName, &params, &m.Credentials, &info, &m.CreatedBy, &created, &updated); err != nil {
		return nil, err
	}
	m.Params, m.ModelInfo = parseRawJSON(params), parseRawJSON(info)
	var err error
	if m.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if m.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &m, nil
}

// CreateModel inserts m, assigning its ID when empty.
func (db *DB) CreateModel(ctx context.Context, m *store.Model) error {
	id := m.ID
	if id == "" {
		id = newID()
	}
	now := db.now()
	_, err := db.exec(ctx, `INSERT INTO models (`+modelColumns+`) VALUES (?,?,?,?,?,?,?,?)`,
		id, m.ModelName, rawJSON(m.Params), blob(m.Credentials), rawJSON(m.ModelInfo), m.CreatedBy, fmtTime(now), fmtTime(now))
	if err != nil {
		return mapErr("create model "+m.ModelName, err)
	}
	m.ID, m.CreatedAt, m.UpdatedAt = id, now, now
	return nil
}

// Model returns the deployment with the given ID.
func (db *DB) Model(ctx context.Context, id string) (*store.Model, error) {
	m, err := scanModel(db.db.QueryRowContext(ctx, `SELECT `+modelColumns+` FROM models WHERE id = ?`, id))
	if err != nil {
		return nil, mapErr("model "+id, err)
	}
	return m, nil
}

// Models returns every deployment ordered by model name, then ID.
func (db *DB) Models(ctx context.Context) ([]*store.Model, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+modelColumns+` FROM models ORDER BY model_name, id`)
	if err != nil {
		return nil, mapErr("list models", err)
	}
	defer rows.Close()
	var out []*store.Model
	for rows.Next() {
		m, err := scanModel(rows)
		if err != nil {
			return nil, mapErr("list models", err)
		}
		out = append(out, m)
	}
	return out, mapErr("list models", rows.Err())
}

// UpdateModel replaces the deployment with ID m.ID, except its creation fields.
func (db *DB) UpdateModel(ctx context.Context, m *store.Model) error {
	now := db.now()
	res, err := db.exec(ctx, `UPDATE models SET model_name = ?, params = ?, credentials = ?, model_info = ?,
		updated_at = ? WHERE id = ?`, m.ModelName, rawJSON(m.Params), blob(m.Credentials), rawJSON(m.ModelInfo), fmtTime(now), m.ID)
	if err != nil {
		return mapErr("update model "+m.ID, err)
	}
	if err := notFoundIfNone("update model "+m.ID, res); err != nil {
		return err
	}
	m.UpdatedAt = now
	return nil
}

// DeleteModel removes the deployment.
func (db *DB) DeleteModel(ctx context.Context, id string) error {
	res, err := db.exec(ctx, `DELETE FROM models WHERE id = ?`, id)
	if err != nil {
		return mapErr("delete model "+id, err)
	}
	return notFoundIfNone("delete model "+id, res)
}
