-- Scoped API keys, scope bundles, workload-identity trust policies and the event record.

CREATE TABLE api_keys (
    id                          TEXT PRIMARY KEY,
    workspace_id                TEXT NOT NULL REFERENCES workspaces (id),
    name                        TEXT NOT NULL,
    description                 TEXT,
    metadata                    TEXT,
    scopes                      TEXT NOT NULL,
    -- JSON array of CIDR blocks; empty means any address.
    allowed_cidrs               TEXT NOT NULL,
    rate_limit                  TEXT,
    environment                 TEXT NOT NULL,
    prefix                      TEXT NOT NULL,
    secret_hash                 BYTEA NOT NULL UNIQUE,
    previous_secret_hash        BYTEA,
    previous_secret_expires_at  BIGINT,
    bundle                      TEXT,
    created_at                  BIGINT NOT NULL,
    expires_at                  BIGINT,
    rotated_at                  BIGINT,
    revoked_at                  BIGINT,
    last_used_at                BIGINT,
    last_used_ip                TEXT
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, created_at);
CREATE INDEX api_keys_by_previous_hash ON api_keys (previous_secret_hash);

CREATE TABLE scope_bundles (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    name          TEXT NOT NULL,
    description   TEXT,
    scopes        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE trust_policies (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id),
    name             TEXT NOT NULL,
    issuer           TEXT NOT NULL,
    audience         TEXT NOT NULL,
    subject          TEXT NOT NULL,
    -- JSON object: claim name -> pattern.
    claims           TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    max_ttl_seconds  BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX trust_policies_by_issuer ON trust_policies (issuer);
CREATE INDEX trust_policies_by_workspace ON trust_policies (workspace_id);

CREATE TABLE events (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    kind          TEXT NOT NULL,
    actor         TEXT NOT NULL,
    subject       TEXT,
    detail        TEXT NOT NULL,
    ip            TEXT,
    at            BIGINT NOT NULL
);
CREATE INDEX events_by_workspace ON events (workspace_id, at);
