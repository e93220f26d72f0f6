package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/toolgate/toolgate/store"
)

// AppendAudit inserts e, setting e.ID and, when zero, e.At.
func (db *DB) AppendAudit(ctx context.Context, e *store.AuditEntry) error {
	at := e.At.UTC()
	if at.IsZero() {
		at = db.now()
	}
	var id int64
	err := db.pool.QueryRow(ctx, `INSERT INTO audit_log (at, actor, action, object_type, object_id, before, after)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		at, e.Actor, e.Action, e.ObjectType, e.ObjectID, rawJSON(e.Before), rawJSON(e.After)).Scan(&id)
	if err != nil {
		return mapErr("append audit", err)
	}
	e.ID, e.At = id, at
	return nil
}

// AuditLog returns matching entries, newest first.
func (db *DB) AuditLog(ctx context.Context, f store.AuditFilter) ([]*store.AuditEntry, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.ObjectType != "" {
		add("object_type = $%d", f.ObjectType)
	}
	if f.ObjectID != "" {
		add("object_id = $%d", f.ObjectID)
	}
	if f.Actor != "" {
		add("actor = $%d", f.Actor)
	}
	if !f.Since.IsZero() {
		add("at >= $%d", f.Since)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q := `SELECT id, at, actor, action, object_type, object_id, before, after FROM audit_log`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(" ORDER BY at DESC, id DESC LIMIT $%d", len(args))
	return queryAll(ctx, db.pool, "audit log", func(sc scanner) (*store.AuditEntry, error) {
		var (
			e             store.AuditEntry
			before, after []byte
		)
		if err := sc.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.ObjectType, &e.ObjectID, &before, &after); err != nil {
			return nil, err
		}
		e.At = e.At.UTC()
		e.Before, e.After = parseRawJSON(before), parseRawJSON(after)
		return &e, nil
	}, q, args...)
}
