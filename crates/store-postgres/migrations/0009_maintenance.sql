-- Leases: background work (sweeps, audit checkpoints and pruning, client reclamation) runs on one
-- replica at a time; a lease taken by a replica that died expires and another takes over.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
-- Sweeps of expired rows read these.
CREATE INDEX token_families_by_expiry ON token_families (expires_at);
CREATE INDEX token_families_by_revocation ON token_families (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX revoked_access_tokens_by_expiry ON revoked_access_tokens (expires_at);
CREATE INDEX user_code_failures_by_time ON user_code_failures (at);
CREATE INDEX authorization_codes_by_family ON authorization_codes (family_id);
CREATE INDEX device_codes_by_family ON device_codes (family_id);
