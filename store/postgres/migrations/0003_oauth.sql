-- 0003_oauth: the gateway's OAuth clients, codes, tokens and upstream tokens.

CREATE TABLE oauth_clients (
	id                         TEXT PRIMARY KEY,
	secret_hash                TEXT NOT NULL DEFAULT '',
	name                       TEXT NOT NULL DEFAULT '',
	redirect_uris              JSONB NOT NULL DEFAULT '[]',
	grant_types                JSONB NOT NULL DEFAULT '[]',
	response_types             JSONB NOT NULL DEFAULT '[]',
	token_endpoint_auth_method TEXT NOT NULL DEFAULT '',
	application_type           TEXT NOT NULL DEFAULT '',
	scope                      TEXT NOT NULL DEFAULT '',
	client_uri                 TEXT NOT NULL DEFAULT '',
	created_at                 TIMESTAMPTZ NOT NULL
);

CREATE TABLE oauth_codes (
	code_hash      TEXT PRIMARY KEY,
	client_id      TEXT NOT NULL,
	redirect_uri   TEXT NOT NULL,
	subject        TEXT NOT NULL,
	scope          TEXT NOT NULL DEFAULT '',
	resource       TEXT NOT NULL DEFAULT '',
	code_challenge TEXT NOT NULL,
	expires_at     TIMESTAMPTZ NOT NULL,
	created_at     TIMESTAMPTZ NOT NULL
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
	expires_at TIMESTAMPTZ NOT NULL,
	revoked    BOOLEAN NOT NULL DEFAULT FALSE,
	created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_tokens_family ON oauth_tokens (family_id);
CREATE INDEX oauth_tokens_subject ON oauth_tokens (subject);
CREATE INDEX oauth_tokens_client ON oauth_tokens (client_id);
CREATE INDEX oauth_tokens_expires ON oauth_tokens (expires_at);

CREATE TABLE oauth_states (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	data       BYTEA,
	expires_at TIMESTAMPTZ NOT NULL,
	created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);

CREATE TABLE oauth_upstream_tokens (
	server_id  TEXT NOT NULL,
	subject    TEXT NOT NULL,
	sealed     BYTEA,
	expires_at TIMESTAMPTZ,
	updated_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (server_id, subject)
);
