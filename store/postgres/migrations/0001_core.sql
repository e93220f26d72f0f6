-- 0001_core: MCP servers, audit log, settings. Written by the store work.

CREATE TABLE mcp_servers (
	id                           TEXT PRIMARY KEY,
	name                         TEXT NOT NULL UNIQUE,
	alias                        TEXT NOT NULL DEFAULT '',
	description                  TEXT NOT NULL DEFAULT '',
	url                          TEXT NOT NULL DEFAULT '',
	transport                    TEXT NOT NULL DEFAULT '',
	auth_type                    TEXT NOT NULL DEFAULT '',
	credentials                  BYTEA,
	extra_headers                JSONB NOT NULL DEFAULT 'null',
	static_headers               JSONB NOT NULL DEFAULT 'null',
	allowed_tools                JSONB NOT NULL DEFAULT 'null',
	tool_name_to_display_name    JSONB NOT NULL DEFAULT 'null',
	tool_name_to_description     JSONB NOT NULL DEFAULT 'null',
	access_groups                JSONB NOT NULL DEFAULT 'null',
	allow_all_keys               BOOLEAN NOT NULL DEFAULT false,
	available_on_public_internet BOOLEAN NOT NULL DEFAULT false,
	allow_keyless                BOOLEAN NOT NULL DEFAULT false,
	oauth                        JSONB NOT NULL DEFAULT '{}',
	cost                         JSONB NOT NULL DEFAULT '{}',
	source                       TEXT NOT NULL DEFAULT '',
	health_status                TEXT NOT NULL DEFAULT '',
	health_error                 TEXT NOT NULL DEFAULT '',
	last_health_check            TIMESTAMPTZ,
	created_at                   TIMESTAMPTZ NOT NULL,
	updated_at                   TIMESTAMPTZ NOT NULL,
	created_by                   TEXT NOT NULL DEFAULT '',
	updated_by                   TEXT NOT NULL DEFAULT ''
);

CREATE TABLE audit_log (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at          TIMESTAMPTZ NOT NULL,
	actor       TEXT NOT NULL DEFAULT '',
	action      TEXT NOT NULL DEFAULT '',
	object_type TEXT NOT NULL DEFAULT '',
	object_id   TEXT NOT NULL DEFAULT '',
	before      JSONB,
	after       JSONB
);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id, at);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE settings (
	name       TEXT PRIMARY KEY,
	value      TEXT NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL
);
