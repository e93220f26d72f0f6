package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/toolgate/toolgate/store"
)

const spendColumns = `request_id, call_type, key_id, key_hash, key_alias, user_id, team_id, org_id, end_user,
	model, mcp_server, mcp_tool, prompt_tokens, completion_tokens, total_tokens, spend, start_time, end_time,
	status, tags, metadata`

// spendRowsPerInsert is how many rows one INSERT statement carries: one statement per
// row spent more time in the driver than in SQLite.
const spendRowsPerInsert = 32

// insertSpendSQL returns the INSERT statement for n rows.
func insertSpendSQL(n int) string {
	row := "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
	return `INSERT INTO spend_logs (` + spendColumns + `) VALUES ` +
		strings.TrimSuffix(strings.Repeat(row+",", n), ",") + ` ON CONFLICT (request_id) DO NOTHING`
}

// InsertSpendLogs writes logs in one transaction, skipping request IDs already stored.
func (db *DB) InsertSpendLogs(ctx context.Context, logs []*store.SpendLog) error {
	if len(logs) == 0 {
		return nil
	}
	return db.inTx(ctx, func(sqlTx *sql.Tx) error {
		tx := &preparedTx{db: db, tx: sqlTx}
		defer tx.close()
		args := make([]any, 0, 21*spendRowsPerInsert)
		for len(logs) > 0 {
			chunk := logs[:min(len(logs), spendRowsPerInsert)]
			logs = logs[len(chunk):]
			args = args[:0]
			for _, l := range chunk {
				args = append(args, l.RequestID, l.CallType, l.KeyID, l.KeyHash, l.KeyAlias, l.UserID, l.TeamID,
					l.OrgID, l.EndUser, l.Model, l.MCPServer, l.MCPTool, l.PromptTokens, l.CompletionTokens, l.TotalTokens,
					l.Spend, fmtTime(l.StartTime), fmtTime(l.EndTime), l.Status, mustJSON(l.Tags), rawJSON(l.Metadata))
			}
			if _, err := tx.ExecContext(ctx, insertSpendSQL(len(chunk)), args...); err != nil {
				return mapErr("insert spend logs", err)
			}
		}
		return nil
	})
}

// SpendLogs returns matching rows, newest StartTime first.
func (db *DB) SpendLogs(ctx context.Context, f store.SpendFilter) ([]*store.SpendLog, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{
		{"request_id", f.RequestID}, {"key_id", f.KeyID}, {"user_id", f.UserID}, {"team_id", f.TeamID}, {"org_id", f.OrgID},
	} {
		if c.v != "" {
			where, args = append(where, c.col+" = ?"), append(args, c.v)
		}
	}
	if !f.Start.IsZero() {
		where, args = append(where, "start_time >= ?"), append(args, fmtTime(f.Start))
	}
	if !f.End.IsZero() {
		where, args = append(where, "start_time < ?"), append(args, fmtTime(f.End))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	q := `SELECT ` + spendColumns + ` FROM spend_logs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY start_time DESC, request_id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := db.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, mapErr("spend logs", err)
	}
	defer rows.Close()
	var out []*store.SpendLog
	for rows.Next() {
		var (
			l                store.SpendLog
			start, end, tags string
			metadata         sql.NullString
		)
		if err := rows.Scan(&l.RequestID, &l.CallType, &l.KeyID, &l.KeyHash, &l.KeyAlias, &l.UserID, &l.TeamID, &l.OrgID,
			&l.EndUser, &l.Model, &l.MCPServer, &l.MCPTool, &l.PromptTokens, &l.CompletionTokens, &l.TotalTokens,
			&l.Spend, &start, &end, &l.Status, &tags, &metadata); err != nil {
			return nil, mapErr("spend logs", err)
		}
		if l.StartTime, err = parseTime(start); err != nil {
			return nil, err
		}
		if l.EndTime, err = parseTime(end); err != nil {
			return nil, err
		}
		if err := unJSON(tags, &l.Tags); err != nil {
			return nil, err
		}
		l.Metadata = parseRawJSON(metadata)
		out = append(out, &l)
	}
	return out, mapErr("spend logs", rows.Err())
}
