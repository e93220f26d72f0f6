-- 0002_identity: keys, users, teams, members, orgs, toolsets, budgets, spend logs, models.
-- Limits are kept as JSON on each identity; their budget fields are mirrored in budgets, which
-- holds the spend. Cascades between identities are done by the store code, in one transaction.

CREATE TABLE keys (
	id                            TEXT PRIMARY KEY,
	token_hash                    TEXT NOT NULL UNIQUE,
	key_name                      TEXT NOT NULL DEFAULT '',
	key_alias                     TEXT UNIQUE, -- NULL when empty
	user_id                       TEXT NOT NULL DEFAULT '',
	team_id                       TEXT NOT NULL DEFAULT '',
	org_id                        TEXT NOT NULL DEFAULT '',
	models                        TEXT NOT NULL DEFAULT 'null',
	expires                       TEXT,
	blocked                       INTEGER NOT NULL DEFAULT 0,
	metadata                      TEXT NOT NULL DEFAULT 'null',
	tags                          TEXT NOT NULL DEFAULT 'null',
	permission                    TEXT NOT NULL DEFAULT '{}',
	limits                        TEXT NOT NULL DEFAULT '{}',
	allow_client_side_credentials INTEGER NOT NULL DEFAULT 0,
	created_by                    TEXT NOT NULL DEFAULT '',
	created_at                    TEXT NOT NULL,
	updated_at                    TEXT NOT NULL
);
CREATE INDEX keys_user ON keys (user_id);
CREATE INDEX keys_team ON keys (team_id);
CREATE INDEX keys_created ON keys (created_at, id);

-- Previous token hashes of regenerated keys, valid until grace_until.
CREATE TABLE key_grace_hashes (
	token_hash  TEXT PRIMARY KEY,
	key_id      TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
	grace_until TEXT NOT NULL
);
CREATE INDEX key_grace_hashes_key ON key_grace_hashes (key_id);

CREATE TABLE users (
	id         TEXT PRIMARY KEY,
	email      TEXT UNIQUE, -- NULL when empty
	role       TEXT NOT NULL DEFAULT '',
	org_id     TEXT NOT NULL DEFAULT '',
	models     TEXT NOT NULL DEFAULT 'null',
	metadata   TEXT NOT NULL DEFAULT 'null',
	permission TEXT NOT NULL DEFAULT '{}',
	limits     TEXT NOT NULL DEFAULT '{}',
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
);

CREATE TABLE orgs (
	id         TEXT PRIMARY KEY,
	alias      TEXT NOT NULL DEFAULT '',
	models     TEXT NOT NULL DEFAULT 'null',
	metadata   TEXT NOT NULL DEFAULT 'null',
	permission TEXT NOT NULL DEFAULT '{}',
	limits     TEXT NOT NULL DEFAULT '{}',
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
);

CREATE TABLE teams (
	id         TEXT PRIMARY KEY,
	alias      TEXT NOT NULL DEFAULT '',
	org_id     TEXT NOT NULL DEFAULT '',
	models     TEXT NOT NULL DEFAULT 'null',
	blocked    INTEGER NOT NULL DEFAULT 0,
	metadata   TEXT NOT NULL DEFAULT 'null',
	permission TEXT NOT NULL DEFAULT '{}',
	limits     TEXT NOT NULL DEFAULT '{}',
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
);
CREATE INDEX teams_org ON teams (org_id);

CREATE TABLE team_members (
	team_id TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
	user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	role    TEXT NOT NULL DEFAULT '',
	limits  TEXT NOT NULL DEFAULT '{}',
	PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id, team_id);

CREATE TABLE toolsets (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL DEFAULT '',
	tools       TEXT NOT NULL DEFAULT 'null',
	created_by  TEXT NOT NULL DEFAULT '',
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL
);

CREATE TABLE budgets (
	scope       TEXT NOT NULL,
	id          TEXT NOT NULL,
	max_budget  REAL,
	soft_budget REAL,
	duration    TEXT NOT NULL DEFAULT '',
	reset_at    TEXT,
	spend       REAL NOT NULL DEFAULT 0,
	reserved    REAL NOT NULL DEFAULT 0,
	updated_at  TEXT NOT NULL,
	PRIMARY KEY (scope, id)
);
CREATE INDEX budgets_reset_at ON budgets (reset_at) WHERE reset_at IS NOT NULL;

CREATE TABLE budget_reservations (
	id         TEXT PRIMARY KEY,
	refs       TEXT NOT NULL, -- JSON [{"scope":..,"id":..}]
	amount     REAL NOT NULL,
	expires_at TEXT NOT NULL,
	created_at TEXT NOT NULL
);
CREATE INDEX budget_reservations_expires ON budget_reservations (expires_at);

CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at TEXT NOT NULL
);

CREATE TABLE spend_logs (
	request_id        TEXT PRIMARY KEY,
	call_type         TEXT NOT NULL DEFAULT '',
	key_id            TEXT NOT NULL DEFAULT '',
	key_hash          TEXT NOT NULL DEFAULT '',
	key_alias         TEXT NOT NULL DEFAULT '',
	user_id           TEXT NOT NULL DEFAULT '',
	team_id           TEXT NOT NULL DEFAULT '',
	org_id            TEXT NOT NULL DEFAULT '',
	end_user          TEXT NOT NULL DEFAULT '',
	model             TEXT NOT NULL DEFAULT '',
	mcp_server        TEXT NOT NULL DEFAULT '',
	mcp_tool          TEXT NOT NULL DEFAULT '',
	prompt_tokens     INTEGER NOT NULL DEFAULT 0,
	completion_tokens INTEGER NOT NULL DEFAULT 0,
	total_tokens      INTEGER NOT NULL DEFAULT 0,
	spend             REAL NOT NULL DEFAULT 0,
	start_time        TEXT NOT NULL,
	end_time          TEXT NOT NULL,
	status            TEXT NOT NULL DEFAULT '',
	tags              TEXT NOT NULL DEFAULT 'null',
	metadata          TEXT
);
CREATE INDEX spend_logs_start ON spend_logs (start_time);
CREATE INDEX spend_logs_key ON spend_logs (key_id, start_time);
CREATE INDEX spend_logs_user ON spend_logs (user_id, start_time);
CREATE INDEX spend_logs_team ON spend_logs (team_id, start_time);

CREATE TABLE models (
	id          TEXT PRIMARY KEY,
	model_name  TEXT NOT NULL,
	params      TEXT,
	credentials BLOB,
	model_info  TEXT,
	created_by  TEXT NOT NULL DEFAULT '',
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL
);
CREATE INDEX models_name ON models (model_name, id);
