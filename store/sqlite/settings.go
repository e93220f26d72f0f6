package sqlite

import (
	"context"
)

// Setting returns the value stored under name.
func (db *DB) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := db.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	if err != nil {
		return "", mapErr("setting "+name, err)
	}
	return v, nil
}

// SetSetting stores value under name, replacing any previous value.
func (db *DB) SetSetting(ctx context.Context, name, value string) error {
	_, err := db.exec(ctx, `INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		name, value, fmtTime(db.now()))
	return mapErr("set setting "+name, err)
}

// SetSettingIfAbsent stores value under name unless it exists, and reports whether it stored.
func (db *DB) SetSettingIfAbsent(ctx context.Context, name, value string) (bool, error) {
	res, err := db.exec(ctx, `INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO NOTHING`, name, value, fmtTime(db.now()))
	if err != nil {
		return false, mapErr("set setting "+name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, mapErr("set setting "+name, err)
	}
	return n == 1, nil
}
