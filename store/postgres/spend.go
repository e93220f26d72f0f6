package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/toolgate/toolgate/store"
)

const spendColumns = `request_id, call_type, key_id, key_hash, key_alias, user_id, team_id, org_id, end_user,
	model, mcp_server, mcp_tool, prompt_tokens, completion_tokens, total_tokens, spend, start_time, end_time,
	status, tags, metadata`

// InsertSpendLogs writes logs in one transaction, skipping request IDs already stored. The
// rows go to the server as one pipelined batch.
func (db *DB) InsertSpendLogs(ctx context.Context, logs []*store.SpendLog) error {
	if len(logs) == 0 {
		return nil
	}
	return db.inTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, l := range logs {
			b.Queue(`INSERT INTO spend_logs (`+spendColumns+`)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21)
				ON CONFLICT (request_id) DO NOTHING`,
				l.RequestID, l.CallType, l.KeyID, l.KeyHash, l.KeyAlias, l.UserID, l.TeamID, l.OrgID, l.EndUser,
				l.Model, l.MCPServer, l.MCPTool, l.PromptTokens, l.CompletionTokens, l.TotalTokens, l.Spend,
				l.StartTime, l.EndTime, l.Status, mustJSON(l.Tags), rawJSON(l.Metadata))
		}
		return mapErr("insert spend logs", tx.SendBatch(ctx, b).Close())
	})
}

// SpendLogs returns matching rows, newest StartTime first.
func (db *DB) SpendLogs(ctx context.Context, f store.SpendFilter) ([]*store.SpendLog, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	for _, c := range []struct{ col, v string }{
		{"request_id", f.RequestID}, {"key_id", f.KeyID}, {"user_id", f.UserID}, {"team_id", f.TeamID}, {"org_id", f.OrgID},
	} {
		if c.v != "" {
			add(c.col+" = $%d", c.v)
		}
	}
	if !f.Start.IsZero() {
		add("start_time >= $%d", f.Start)
	}
	if !f.End.IsZero() {
		add("start_time < $%d", f.End)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	q := `SELECT ` + spendColumns + ` FROM spend_logs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(" ORDER BY start_time DESC, request_id DESC LIMIT $%d", len(args))
	return queryAll(ctx, db.pool, "spend logs", func(sc scanner) (*store.SpendLog, error) {
		var (
			l        store.SpendLog
			tags     string
			metadata []byte
		)
		if err := sc.Scan(&l.RequestID, &l.CallType, &l.KeyID, &l.KeyHash, &l.KeyAlias, &l.UserID, &l.TeamID, &l.OrgID,
			&l.EndUser, &l.Model, &l.MCPServer, &l.MCPTool, &l.PromptTokens, &l.CompletionTokens, &l.TotalTokens,
			&l.Spend, &l.StartTime, &l.EndTime, &l.Status, &tags, &metadata); err != nil {
			return nil, err
		}
		if err := unJSON(tags, &l.Tags); err != nil {
			return nil, err
		}
		l.StartTime, l.EndTime = l.StartTime.UTC(), l.EndTime.UTC()
		l.Metadata = parseRawJSON(metadata)
		return &l, nil
	}, q, args...)
}
