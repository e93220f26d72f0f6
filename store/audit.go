package store

import (
	"context"
	"encoding/json"
	"time"
)

// AuditEntry is one row of the audit log: who changed what, and the object before and after.
type AuditEntry struct {
	ID         int64 // assigned by AppendAudit
	At         time.Time
	Actor      string // the principal that made the change (key hash prefix, user ID or "master_key")
	Action     string // e.g. "create", "update", "delete", "block", "regenerate"
	ObjectType string // e.g. "mcp_server", "key", "team"
	ObjectID   string
	Before     json.RawMessage // nil for creations; must not contain secrets
	After      json.RawMessage // nil for deletions; must not contain secrets
}

// AuditFilter selects audit entries. Zero fields match everything.
type AuditFilter struct {
	ObjectType string
	ObjectID   string
	Actor      string
	Since      time.Time
	Limit      int // 0 means 100
}

// AuditStore persists the audit log. Entries are append-only.
type AuditStore interface {
	// AppendAudit inserts e, setting e.ID (and e.At when zero).
	AppendAudit(ctx context.Context, e *AuditEntry) error
	// AuditLog returns matching entries, newest first.
	AuditLog(ctx context.Context, f AuditFilter) ([]*AuditEntry, error)
}

// SettingStore persists small named values, such as the master key's hash.
type SettingStore interface {
	// Setting returns the value stored under name, or ErrNotFound.
	Setting(ctx context.Context, name string) (string, error)
	// SetSetting stores value under name, replacing any previous value.
	SetSetting(ctx context.Context, name, value string) error
	// SetSettingIfAbsent stores value under name unless the name exists. It reports whether it
	// stored; two concurrent callers never both get true.
	SetSettingIfAbsent(ctx context.Context, name, value string) (bool, error)
}
