-- 0002_identity: keys, users, teams, members, orgs, toolsets, budgets, spend logs, models.
-- Limits are kept as JSON on each identity; their budget fields are mirrored in budgets, which
-- holds the spend. Cascades between identities are done by the store code, in one transaction.
-- Money is NUMERIC so that sums and budget comparisons are exact.

CREATE TABLE keys (
	id                            TEXT PRIMARY KEY,
	token_hash                    TEXT NOT NULL UNIQUE,
	key_name                      TEXT NOT NULL DEFAULT '',
	key_alias                     TEXT UNIQUE, -- NULL when empty
	user_id                       TEXT NOT NULL DEFAULT '',
	team_id                       TEXT NOT NULL DEFAULT '',
	org_id                        TEXT NOT NULL DEFAULT '',
	models                        JSONB NOT NULL DEFAULT 'null',
	expires                       TIMESTAMPTZ,
	blocked                       BOOLEAN NOT NULL DEFAULT false,
	metadata                      JSONB NOT NULL DEFAULT 'null',
	tags                          JSONB NOT NULL DEFAULT 'null',
	permission                    JSONB NOT NULL DEFAULT '{}',
	limits                        JSONB NOT NULL DEFAULT '{}',
	allow_client_side_credentials BOOLEAN NOT NULL DEFAULT false,
	created_by                    TEXT NOT NULL DEFAULT '',
	created_at                    TIMESTAMPTZ NOT NULL,
	updated_at                    TIMESTAMPTZ NOT NULL
);
CREATE INDEX keys_user ON keys (user_id);
CREATE INDEX keys_team ON keys (team_id);
CREATE INDEX keys_created ON keys (created_at, id);

-- Previous token hashes of regenerated keys, valid until grace_until.
CREATE TABLE key_grace_hashes (
	token_hash  TEXT PRIMARY KEY,
	key_id      TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
	grace_until TIMESTAMPTZ NOT NULL
);
CREATE INDEX key_grace_hashes_key ON key_grace_hashes (key_id);

CREATE TABLE users (
	id         TEXT PRIMARY KEY,
	email      TEXT UNIQUE, -- NULL when empty
	role       TEXT NOT NULL DEFAULT '',
	org_id     TEXT NOT NULL DEFAULT '',
	models     JSONB NOT NULL DEFAULT 'null',
	metadata   JSONB NOT NULL DEFAULT 'null',
	permission JSONB NOT NULL DEFAULT '{}',
	limits     JSONB NOT NULL DEFAULT '{}',
	created_at TIMESTAMPTZ NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE orgs (
	id         TEXT PRIMARY KEY,
	alias      TEXT NOT NULL DEFAULT '',
	models     JSONB NOT NULL DEFAULT 'null',
	metadata   JSONB NOT NULL DEFAULT 'null',
	permission JSONB NOT NULL DEFAULT '{}',
	limits     JSONB NOT NULL DEFAULT '{}',
	created_at TIMESTAMPTZ NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE teams (
	id         TEXT PRIMARY KEY,
	alias      TEXT NOT NULL DEFAULT '',
	org_id     TEXT NOT NULL DEFAULT '',
	models     JSONB NOT NULL DEFAULT 'null',
	blocked    BOOLEAN NOT NULL DEFAULT false,
	metadata   JSONB NOT NULL DEFAULT 'null',
	permission JSONB NOT NULL DEFAULT '{}',
	limits     JSONB NOT NULL DEFAULT '{}',
	created_at TIMESTAMPTZ NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX teams_org ON teams (org_id);

CREATE TABLE team_members (
	team_id TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
	user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	role    TEXT NOT NULL DEFAULT '',
	limits  JSONB NOT NULL DEFAULT '{}',
	PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id, team_id);

CREATE TABLE toolsets (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL DEFAULT '',
	tools       JSONB NOT NULL DEFAULT 'null',
	created_by  TEXT NOT NULL DEFAULT '',
	created_at  TIMESTAMPTZ NOT NULL,
	updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE budgets (
	scope       TEXT NOT NULL,
	id          TEXT NOT NULL,
	max_budget  NUMERIC,
	soft_budget NUMERIC,
	duration    TEXT NOT NULL DEFAULT '',
	reset_at    TIMESTAMPTZ,
	spend       NUMERIC NOT NULL DEFAULT 0,
	reserved    NUMERIC NOT NULL DEFAULT 0,
	updated_at  TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (scope, id)
);
CREATE INDEX budgets_reset_at ON budgets (reset_at) WHERE reset_at IS NOT NULL;

CREATE TABLE budget_reservations (
	id         TEXT PRIMARY KEY,
	ref_scopes TEXT[] NOT NULL,
	ref_ids    TEXT[] NOT NULL,
	amount     NUMERIC NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL,
	created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX budget_reservations_expires ON budget_reservations (expires_at);

CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
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
	prompt_tokens     BIGINT NOT NULL DEFAULT 0,
	completion_tokens BIGINT NOT NULL DEFAULT 0,
	total_tokens      BIGINT NOT NULL DEFAULT 0,
	spend             NUMERIC NOT NULL DEFAULT 0,
	start_time        TIMESTAMPTZ NOT NULL,
	end_time          TIMESTAMPTZ NOT NULL,
	status            TEXT NOT NULL DEFAULT '',
	tags              JSONB NOT NULL DEFAULT 'null',
	metadata          JSONB
);
CREATE INDEX spend_logs_start ON spend_logs (start_time);
CREATE INDEX spend_logs_key ON spend_logs (key_id, start_time);
CREATE INDEX spend_logs_user ON spend_logs (user_id, start_time);
CREATE INDEX spend_logs_team ON spend_logs (team_id, start_time);

CREATE TABLE models (
	id          TEXT PRIMARY KEY,
	model_name  TEXT NOT NULL,
	params      JSONB,
	credentials BYTEA,
	model_info  JSONB,
	created_by  TEXT NOT NULL DEFAULT '',
	created_at  TIMESTAMPTZ NOT NULL,
	updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX models_name ON models (model_name, id);

-- toolgate_assert raises SQLSTATE TG001 unless ok, so that one statement can refuse and roll
-- itself back (a budget reservation that does not fit every budget).
CREATE FUNCTION toolgate_assert(ok boolean, msg text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF NOT ok THEN
		RAISE EXCEPTION '%', msg USING ERRCODE = 'TG001';
	END IF;
	RETURN true;
END
$$;
