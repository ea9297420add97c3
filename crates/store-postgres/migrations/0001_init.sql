-- Portcullis schema, PostgreSQL. Times are Unix seconds; secrets are stored only as SHA-256 hashes.

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE TABLE memberships (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    permissions   TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id);

CREATE TABLE clients (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    secret_hash    BYTEA,
    redirect_uris  TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    grant_types    TEXT NOT NULL,
    workspace_id   TEXT REFERENCES workspaces (id),
    created_at     BIGINT NOT NULL
);

CREATE TABLE grants (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    client_id     TEXT NOT NULL REFERENCES clients (id),
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    scopes        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
-- At most one active grant per user, client and workspace; consent again updates it.
CREATE UNIQUE INDEX grants_one_active ON grants (user_id, client_id, workspace_id) WHERE revoked_at IS NULL;
CREATE INDEX grants_by_client ON grants (client_id);
CREATE INDEX grants_by_workspace ON grants (workspace_id);

CREATE TABLE pending_authorizations (
    id          TEXT PRIMARY KEY,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX pending_authorizations_by_expiry ON pending_authorizations (expires_at);

CREATE TABLE token_families (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL REFERENCES clients (id),
    user_id         TEXT REFERENCES users (id),
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id),
    grant_id        TEXT REFERENCES grants (id),
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    revoked_at      BIGINT,
    revoked_reason  TEXT
);
CREATE INDEX token_families_by_grant ON token_families (grant_id);

CREATE TABLE authorization_codes (
    code_hash              BYTEA PRIMARY KEY,
    client_id              TEXT NOT NULL REFERENCES clients (id),
    user_id                TEXT NOT NULL REFERENCES users (id),
    workspace_id           TEXT NOT NULL REFERENCES workspaces (id),
    grant_id               TEXT NOT NULL REFERENCES grants (id),
    family_id              TEXT NOT NULL REFERENCES token_families (id),
    redirect_uri           TEXT NOT NULL,
    redirect_uri_explicit  BOOLEAN NOT NULL,
    code_challenge         TEXT NOT NULL,
    scopes                 TEXT NOT NULL,
    nonce                  TEXT,
    auth_time              BIGINT NOT NULL,
    created_at             BIGINT NOT NULL,
    expires_at             BIGINT NOT NULL,
    redeemed_at            BIGINT
);
CREATE INDEX authorization_codes_by_expiry ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash   BYTEA PRIMARY KEY,
    family_id    TEXT NOT NULL REFERENCES token_families (id),
    client_id    TEXT NOT NULL REFERENCES clients (id),
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    consumed_at  BIGINT
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_key  TEXT NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    active_from  BIGINT NOT NULL,
    retired_at   BIGINT
);

CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash  BYTEA PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    auth_time   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
