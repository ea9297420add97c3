-- DPoP (RFC 9449). The key thumbprint (RFC 7638, base64url SHA-256) a token is bound to:
-- an authorization code requested with dpop_jkt (or pushed with a DPoP proof) must be redeemed
-- with a proof of that key; a public client's refresh token needs proofs of the key it was
-- issued against.
ALTER TABLE authorization_codes ADD COLUMN dpop_jkt TEXT;
ALTER TABLE refresh_tokens ADD COLUMN dpop_jkt TEXT;
-- RFC 9449 §5.2 dpop_bound_access_tokens: the client must always use DPoP.
ALTER TABLE clients ADD COLUMN dpop_bound BOOLEAN NOT NULL DEFAULT 0;
