-- The tamper-evident audit log (issue 6). One log per workspace plus `_system`.
-- Entries are chained (prev_hash -> hash) and the hashes are RFC 9162 Merkle leaves; `audit_logs`
-- holds each log's head (size, last hash, Merkle frontier), locked by every append.
-- Times in `audit_entries.at` are microseconds; elsewhere seconds, as in every other table.
-- The old `events` table is no longer written (credential events are audit entries now) and is
-- kept, unchanged, so nothing recorded before this version is lost.

CREATE TABLE audit_logs (
    log         TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    head        BLOB NOT NULL,
    frontier    BLOB NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE audit_entries (
    log              TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    id               TEXT NOT NULL,
    at               INTEGER NOT NULL,
    workspace_id     TEXT,
    event            TEXT NOT NULL,
    actor            TEXT,
    subject          TEXT,
    credential_kind  TEXT,
    credential_id    TEXT,
    user_id          TEXT,
    client_id        TEXT,
    ip               TEXT,
    ip_key           BLOB,
    method           TEXT,
    route            TEXT,
    path             TEXT,
    tool             TEXT,
    params           TEXT NOT NULL,
    status           INTEGER,
    error            TEXT,
    duration_us      INTEGER,
    request_id       TEXT,
    pii_access       INTEGER NOT NULL,
    prev_hash        BLOB NOT NULL,
    hash             BLOB NOT NULL,
    PRIMARY KEY (log, seq)
);
-- One index per search filter, each ending in `at` so a filtered search reads newest first
-- straight from the index.
CREATE INDEX audit_by_time ON audit_entries (log, at, seq);
CREATE INDEX audit_by_event ON audit_entries (log, event, at);
CREATE INDEX audit_by_credential ON audit_entries (log, credential_id, at);
CREATE INDEX audit_by_kind ON audit_entries (log, credential_kind, at);
CREATE INDEX audit_by_user ON audit_entries (log, user_id, at);
CREATE INDEX audit_by_client ON audit_entries (log, client_id, at);
CREATE INDEX audit_by_ip ON audit_entries (log, ip_key, at);
CREATE INDEX audit_by_route ON audit_entries (log, route, at);
CREATE INDEX audit_by_path ON audit_entries (log, path, at);
CREATE INDEX audit_by_tool ON audit_entries (log, tool, at) WHERE tool IS NOT NULL;
CREATE INDEX audit_by_status ON audit_entries (log, status, at);
CREATE INDEX audit_by_pii ON audit_entries (log, at) WHERE pii_access;

CREATE TABLE audit_checkpoints (
    log         TEXT NOT NULL,
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    head        BLOB NOT NULL,
    frontier    BLOB NOT NULL,
    note        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (log, size)
);

CREATE TABLE audit_sinks (
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id),
    url               TEXT NOT NULL,
    secret_sealed     BLOB NOT NULL,
    next_seq          INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    disabled_at       INTEGER,
    failures          INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    last_delivery_at  INTEGER,
    lease_holder      TEXT,
    lease_until       INTEGER
);
CREATE INDEX audit_sinks_by_workspace ON audit_sinks (workspace_id);
