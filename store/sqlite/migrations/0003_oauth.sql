-- 0003_oauth: the gateway's OAuth clients, codes, tokens and upstream tokens.
-- Times are UTC text in a fixed-width RFC 3339 form (sortable); lists are JSON text.

CREATE TABLE oauth_clients (
	id                         TEXT PRIMARY KEY,
	secret_hash                TEXT NOT NULL DEFAULT '',
	name                       TEXT NOT NULL DEFAULT '',
	redirect_uris              TEXT NOT NULL DEFAULT '[]',
	grant_types                TEXT NOT NULL DEFAULT '[]',
	response_types             TEXT NOT NULL DEFAULT '[]',
	token_endpoint_auth_method TEXT NOT NULL DEFAULT '',
	application_type           TEXT NOT NULL DEFAULT '',
	scope                      TEXT NOT NULL DEFAULT '',
	client_uri                 TEXT NOT NULL DEFAULT '',
	created_at                 TEXT NOT NULL
);

CREATE TABLE oauth_codes (
	code_hash      TEXT PRIMARY KEY,
	client_id      TEXT NOT NULL,
	redirect_uri   TEXT NOT NULL,
	subject        TEXT NOT NULL,
	scope          TEXT NOT NULL DEFAULT '',
	resource       TEXT NOT NULL DEFAULT '',
	code_challenge TEXT NOT NULL,
	expires_at     TEXT NOT NULL,
	created_at     TEXT NOT NULL
);
CREATE INDEX oauth_codes_expires ON oauth_codes (expires_at);

CREATE TABLE oauth_tokens (
	token_hash TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	family_id  TEXT NOT NULL,
	client_id  TEXT NOT NULL,
	subject    TEXT NOT NULL,
	scope      TEXT NOT NULL DEFAULT '',
	resource   TEXT NOT NULL DEFAULT '',
	expires_at TEXT NOT NULL,
	revoked    INTEGER NOT NULL DEFAULT 0,
	created_at TEXT NOT NULL
);
CREATE INDEX oauth_tokens_family ON oauth_tokens (family_id);
CREATE INDEX oauth_tokens_subject ON oauth_tokens (subject);
CREATE INDEX oauth_tokens_client ON oauth_tokens (client_id);
CREATE INDEX oauth_tokens_expires ON oauth_tokens (expires_at);

CREATE TABLE oauth_states (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	data       BLOB,
	expires_at TEXT NOT NULL,
	created_at TEXT NOT NULL
);
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);

CREATE TABLE oauth_upstream_tokens (
	server_id  TEXT NOT NULL,
	subject    TEXT NOT NULL,
	sealed     BLOB,
	expires_at TEXT,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (server_id, subject)
);
