-- Dynamic client registration (RFC 7591/7592) and client ID metadata documents.
-- origin: 'admin' (created by an operator), 'dynamic' (RFC 7591) or 'metadata_document' (an
-- https client_id whose metadata document we fetched).
ALTER TABLE clients ADD COLUMN origin TEXT NOT NULL DEFAULT 'admin';
-- The client metadata as registered or fetched (JSON), returned by RFC 7592 reads.
ALTER TABLE clients ADD COLUMN metadata TEXT;
-- SHA-256 of the RFC 7592 registration access token.
ALTER TABLE clients ADD COLUMN registration_token_hash BLOB;
-- The address that registered the client, and a hash of (address, metadata): an identical
-- registration from the same address within the dedup window returns the existing client.
ALTER TABLE clients ADD COLUMN registered_from TEXT;
ALTER TABLE clients ADD COLUMN fingerprint TEXT;
-- Last token issued to the client (updated at most hourly); unused dynamic clients are reclaimed.
ALTER TABLE clients ADD COLUMN last_used_at INTEGER;
-- RFC 9126 §6: this client's authorization requests must be pushed first.
ALTER TABLE clients ADD COLUMN require_par BOOLEAN NOT NULL DEFAULT 0;
-- Metadata documents: when the fetched copy must be fetched again.
ALTER TABLE clients ADD COLUMN refresh_after INTEGER;
CREATE INDEX clients_fingerprint ON clients (fingerprint, created_at);
CREATE INDEX clients_origin_unused ON clients (origin, last_used_at, created_at);
