-- Signing keys are numbered: a rotation adds the next generation, and the unique index lets only
-- one of several replicas rotating at the same moment succeed. Older keys keep NULL.
ALTER TABLE signing_keys ADD COLUMN generation BIGINT;
CREATE UNIQUE INDEX signing_keys_by_generation ON signing_keys (generation);
