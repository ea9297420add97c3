-- RFC 8707: the protected resources an authorization was granted for, space-separated. Empty means
-- none was named: tokens get the default audience.
ALTER TABLE token_families ADD COLUMN resources TEXT NOT NULL DEFAULT '';
ALTER TABLE device_codes ADD COLUMN resources TEXT NOT NULL DEFAULT '';
