-- 0001_core: MCP servers, audit log, settings. Written by the store work.
-- Times are UTC text in a fixed-width RFC 3339 form (sortable); lists and maps are JSON text.

CREATE TABLE mcp_servers (
	id                           TEXT PRIMARY KEY,
	name                         TEXT NOT NULL UNIQUE,
	alias                        TEXT NOT NULL DEFAULT '',
	description                  TEXT NOT NULL DEFAULT '',
	url                          TEXT NOT NULL DEFAULT '',
	transport                    TEXT NOT NULL DEFAULT '',
	auth_type                    TEXT NOT NULL DEFAULT '',
	credentials                  BLOB,
	extra_headers                TEXT NOT NULL DEFAULT 'null',
	static_headers               TEXT NOT NULL DEFAULT 'null',
	allowed_tools                TEXT NOT NULL DEFAULT 'null',
	tool_name_to_display_name    TEXT NOT NULL DEFAULT 'null',
	tool_name_to_description     TEXT NOT NULL DEFAULT 'null',
	access_groups                TEXT NOT NULL DEFAULT 'null',
	allow_all_keys               INTEGER NOT NULL DEFAULT 0,
	available_on_public_internet INTEGER NOT NULL DEFAULT 0,
	allow_keyless                INTEGER NOT NULL DEFAULT 0,
	oauth                        TEXT NOT NULL DEFAULT '{}',
	cost                         TEXT NOT NULL DEFAULT '{}',
	source                       TEXT NOT NULL DEFAULT '',
	health_status                TEXT NOT NULL DEFAULT '',
	health_error                 TEXT NOT NULL DEFAULT '',
	last_health_check            TEXT,
	created_at                   TEXT NOT NULL,
	updated_at                   TEXT NOT NULL,
	created_by                   TEXT NOT NULL DEFAULT '',
	updated_by                   TEXT NOT NULL DEFAULT ''
);

CREATE TABLE audit_log (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	at          TEXT NOT NULL,
	actor       TEXT NOT NULL DEFAULT '',
	action      TEXT NOT NULL DEFAULT '',
	object_type TEXT NOT NULL DEFAULT '',
	object_id   TEXT NOT NULL DEFAULT '',
	before      TEXT,
	after       TEXT
);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id, at);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE settings (
	name       TEXT PRIMARY KEY,
	value      TEXT NOT NULL,
	updated_at TEXT NOT NULL
);
