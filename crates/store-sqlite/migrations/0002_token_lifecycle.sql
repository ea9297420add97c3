-- Token lifecycle and machine grants: refresh rotation, client secret rotation and revocation,
-- revoked access tokens, device authorization codes.

-- A consumed refresh token points at its successor; within a client's overlap window the
-- successor response is kept, encrypted under a key derived from the consumed token itself.
ALTER TABLE refresh_tokens ADD COLUMN successor_hash BLOB;
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed TEXT;

ALTER TABLE clients ADD COLUMN refresh_overlap_seconds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN previous_secret_hash BLOB;
ALTER TABLE clients ADD COLUMN previous_secret_expires_at INTEGER;
ALTER TABLE clients ADD COLUMN revoked_at INTEGER;

CREATE INDEX token_families_by_client ON token_families (client_id);

-- Access tokens are JWTs; revoking one records its jti until it would have expired anyway.
CREATE TABLE revoked_access_tokens (
    jti         TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    revoked_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE device_codes (
    device_code_hash  BLOB PRIMARY KEY,
    user_code         TEXT NOT NULL UNIQUE,
    client_id         TEXT NOT NULL REFERENCES clients (id),
    scopes            TEXT NOT NULL,
    status            TEXT NOT NULL,
    interval_seconds  INTEGER NOT NULL,
    last_polled_at    INTEGER,
    -- Whether the latest poll came sooner than the interval allowed (answered slow_down).
    poll_too_fast     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    user_id           TEXT REFERENCES users (id),
    workspace_id      TEXT REFERENCES workspaces (id),
    grant_id          TEXT REFERENCES grants (id),
    family_id         TEXT REFERENCES token_families (id),
    granted_scopes    TEXT,
    auth_time         INTEGER,
    decided_at        INTEGER
);
CREATE INDEX device_codes_by_expiry ON device_codes (expires_at);

-- Failed user-code entries, to rate-limit guessing (shared by every replica).
CREATE TABLE user_code_failures (
    user_id  TEXT NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX user_code_failures_by_user ON user_code_failures (user_id, at);
