package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/toolgate/toolgate/store"
)

// AppendAudit inserts e, setting e.ID and, when zero, e.At.
func (db *DB) AppendAudit(ctx context.Context, e *store.AuditEntry) error {
	at := e.At
	if at.IsZero() {
		at = db.now()
	}
	res, err := db.exec(ctx, `INSERT INTO audit_log (at, actor, action, object_type, object_id, before, after)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, fmtTime(at), e.Actor, e.Action, e.ObjectType, e.ObjectID, rawJSON(e.Before), rawJSON(e.After))
	if err != nil {
		return mapErr("append audit", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return mapErr("append audit", err)
	}
	e.ID, e.At = id, at.UTC()
	return nil
}

// AuditLog returns matching entries, newest first.
func (db *DB) AuditLog(ctx context.Context, f store.AuditFilter) ([]*store.AuditEntry, error) {
	var where []string
	var args []any
	if f.ObjectType != "" {
		where, args = append(where, "object_type = ?"), append(args, f.ObjectType)
	}
	if f.ObjectID != "" {
		where, args = append(where, "object_id = ?"), append(args, f.ObjectID)
	}
	if f.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, f.Actor)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, fmtTime(f.Since))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q := `SELECT id, at, actor, action, object_type, object_id, before, after FROM audit_log`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY at DESC, id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := db.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, mapErr("audit log", err)
	}
	defer rows.Close()
	var out []*store.AuditEntry
	for rows.Next() {
		var (
			e             store.AuditEntry
			at            string
			before, after sql.NullString
		)
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.ObjectType, &e.ObjectID, &before, &after); err != nil {
			return nil, mapErr("audit log", err)
		}
		if e.At, err = parseTime(at); err != nil {
			return nil, err
		}
		e.Before, e.After = parseRawJSON(before), parseRawJSON(after)
		out = append(out, &e)
	}
	return out, mapErr("audit log", rows.Err())
}
