package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/toolgate/toolgate/store"
)

const spendColumns = `request_id, call_type, key_id, key_hash, key_alias, user_id, team_id, org_id, end_user,
	model, mcp_server, mcp_tool, prompt_tokens, completion_tokens, total_tokens, spend, start_time, end_time,
	status, tags, metadata`

// insertSpendSQL inserts a batch of rows given as one array per column: one statement,
// planned once, instead of one INSERT per row. Spend travels as text so that its numeric
// value is the float's shortest exact decimal, as a float parameter would give.
const insertSpendSQL = `INSERT INTO spend_logs (` + spendColumns + `)
	SELECT r, ct, k, kh, ka, u, t, o, eu, m, ms, mt, pt, c, tt, sp::numeric, st, et, s, tg::jsonb, md::jsonb
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
		$9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::bigint[], $15::bigint[], $16::text[],
		$17::timestamptz[], $18::timestamptz[], $19::text[], $20::text[], $21::text[])
		AS x(r, ct, k, kh, ka, u, t, o, eu, m, ms, mt, pt, c, tt, sp, st, et, s, tg, md)
	ON CONFLICT (request_id) DO NOTHING`

// InsertSpendLogs writes logs in one statement, skipping request IDs already stored.
func (db *DB) InsertSpendLogs(ctx context.Context, logs []*store.SpendLog) error {
	if len(logs) == 0 {
		return nil
	}
	n := len(logs)
	text := make([][]string, 12)
	for i := range text {
		text[i] = make([]string, n)
	}
	ints := [3][]int64{make([]int64, n), make([]int64, n), make([]int64, n)}
	spend, status, tags := make([]string, n), make([]string, n), make([]string, n)
	times := [2][]time.Time{make([]time.Time, n), make([]time.Time, n)}
	meta := make([]*string, n)
	for i, l := range logs {
		for j, v := range [12]string{l.RequestID, l.CallType, l.KeyID, l.KeyHash, l.KeyAlias, l.UserID, l.TeamID,
			l.OrgID, l.EndUser, l.Model, l.MCPServer, l.MCPTool} {
			text[j][i] = v
		}
		ints[0][i], ints[1][i], ints[2][i] = l.PromptTokens, l.CompletionTokens, l.TotalTokens
		spend[i] = strconv.FormatFloat(l.Spend, 'g', -1, 64)
		times[0][i], times[1][i] = l.StartTime, l.EndTime
		status[i], tags[i] = l.Status, mustJSON(l.Tags)
		if l.Metadata != nil {
			m := string(l.Metadata)
			meta[i] = &m
		}
	}
	args := make([]any, 0, 21)
	for _, col := range text {
		args = append(args, col)
	}
	args = append(args, ints[0], ints[1], ints[2], spend, times[0], times[1], status, tags, meta)
	_, err := db.pool.Exec(ctx, insertSpendSQL, args...)
	return mapErr("insert spend logs", err)
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
