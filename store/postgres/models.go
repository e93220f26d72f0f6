package postgres

import (
	"context"

	"github.com/toolgate/toolgate/store"
)

const modelColumns = `id, model_name, params, credentials, model_info, created_by, created_at, updated_at`

func scanModel(sc scanner) (*store.Model, error) {
	var (
		m            store.Model
		params, info []byte
	)
	if err := sc.Scan(&m.ID, &m.ModelName, &params, &m.Credentials, &info, &m.CreatedBy, &m.CreatedAt, &m.UpdatedAt); err != nil {
		return nil, err
	}
	m.Params, m.ModelInfo = parseRawJSON(params), parseRawJSON(info)
	m.CreatedAt, m.UpdatedAt = m.CreatedAt.UTC(), m.UpdatedAt.UTC()
	return &m, nil
}

// CreateModel inserts m, assigning its ID when empty.
func (db *DB) CreateModel(ctx context.Context, m *store.Model) error {
	id := m.ID
	if id == "" {
		id = newID()
	}
	now := db.now()
	_, err := db.pool.Exec(ctx, `INSERT INTO models (`+modelColumns+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$7)`,
		id, m.ModelName, rawJSON(m.Params), m.Credentials, rawJSON(m.ModelInfo), m.CreatedBy, now)
	if err != nil {
		return mapErr("create model "+m.ModelName, err)
	}
	m.ID, m.CreatedAt, m.UpdatedAt = id, now, now
	return nil
}

// Model returns the deployment with the given ID.
func (db *DB) Model(ctx context.Context, id string) (*store.Model, error) {
	m, err := scanModel(db.pool.QueryRow(ctx, `SELECT `+modelColumns+` FROM models WHERE id = $1`, id))
	if err != nil {
		return nil, mapErr("model "+id, err)
	}
	return m, nil
}

// Models returns every deployment ordered by model name, then ID.
func (db *DB) Models(ctx context.Context) ([]*store.Model, error) {
	return queryAll(ctx, db.pool, "list models", scanModel, `SELECT `+modelColumns+` FROM models ORDER BY model_name, id`)
}

// UpdateModel replaces the deployment with ID m.ID, except its creation fields.
func (db *DB) UpdateModel(ctx context.Context, m *store.Model) error {
	now := db.now()
	tag, err := db.pool.Exec(ctx, `UPDATE models SET model_name = $1, params = $2, credentials = $3, model_info = $4,
		updated_at = $5 WHERE id = $6`, m.ModelName, rawJSON(m.Params), m.Credentials, rawJSON(m.ModelInfo), now, m.ID)
	if err != nil {
		return mapErr("update model "+m.ID, err)
	}
	if err := notFoundIfNone("update model "+m.ID, tag); err != nil {
		return err
	}
	m.UpdatedAt = now
	return nil
}

// DeleteModel removes the deployment.
func (db *DB) DeleteModel(ctx context.Context, id string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM models WHERE id = $1`, id)
	if err != nil {
		return mapErr("delete model "+id, err)
	}
	return notFoundIfNone("delete model "+id, tag)
}
