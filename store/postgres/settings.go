package postgres

import (
	"context"
)

// Setting returns the value stored under name.
func (db *DB) Setting(ctx context.Context, name string) (string, error) {
	var v string
	if err := db.pool.QueryRow(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&v); err != nil {
		return "", mapErr("setting "+name, err)
	}
	return v, nil
}

// SetSetting stores value under name, replacing any previous value.
func (db *DB) SetSetting(ctx context.Context, name, value string) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, name, value, db.now())
	return mapErr("set setting "+name, err)
}

// SetSettingIfAbsent stores value under name unless it exists, and reports whether it stored.
func (db *DB) SetSettingIfAbsent(ctx context.Context, name, value string) (bool, error) {
	tag, err := db.pool.Exec(ctx, `INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO NOTHING`, name, value, db.now())
	if err != nil {
		return false, mapErr("set setting "+name, err)
	}
	return tag.RowsAffected() == 1, nil
}
