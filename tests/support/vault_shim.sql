-- TEST-ONLY stand-in for Supabase Vault (supabase_vault 0.3.x) on plain PostgreSQL >= 13 with pgcrypto.
--
-- Same SQL surface as Vault (schema vault, table vault.secrets with the partial unique index
-- secrets_name_idx, view vault.decrypted_secrets, vault.create_secret / vault.update_secret with
-- Vault's exact signatures), so the Supabase credential backend runs unchanged against it.
-- Encryption: pgp_sym_encrypt keyed by the GUC vault_shim.key plus the row id, so a ciphertext
-- copied into another row does not decrypt; the plaintext is encrypted before the INSERT and
-- never lands in a heap tuple. A test double, NOT a security equivalent: never use in production.
-- See /work/shared/reference/credentials.md §4.3.

CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA IF NOT EXISTS vault;

CREATE TABLE IF NOT EXISTS vault.secrets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text,
    description text NOT NULL DEFAULT '',
    secret text NOT NULL,
    key_id uuid,
    nonce bytea DEFAULT gen_random_bytes(24),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS secrets_name_idx ON vault.secrets (name) WHERE name IS NOT NULL;

CREATE OR REPLACE FUNCTION vault._shim_key() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(nullif(current_setting('vault_shim.key', true), ''), 'vault-shim-test-default-key')
$$;

CREATE OR REPLACE FUNCTION vault._shim_encrypt(plaintext text, row_id uuid) RETURNS text
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT encode(pgp_sym_encrypt(plaintext, vault._shim_key() || ':' || row_id::text), 'base64')
$$;

CREATE OR REPLACE FUNCTION vault._shim_decrypt(ciphertext text, row_id uuid) RETURNS text
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT pgp_sym_decrypt(decode(ciphertext, 'base64'), vault._shim_key() || ':' || row_id::text)
$$;

CREATE OR REPLACE VIEW vault.decrypted_secrets AS
SELECT s.id, s.name, s.description, s.secret,
       vault._shim_decrypt(s.secret, s.id) AS decrypted_secret,
       s.key_id, s.nonce, s.created_at, s.updated_at
FROM vault.secrets s;

CREATE OR REPLACE FUNCTION vault.create_secret(
    new_secret text,
    new_name text = NULL,
    new_description text = '',
    new_key_id uuid = NULL
) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    new_id uuid := gen_random_uuid();
BEGIN
    -- new_key_id is ignored, as in supabase_vault 0.3.x.
    INSERT INTO vault.secrets (id, secret, name, description)
    VALUES (new_id, vault._shim_encrypt(new_secret, new_id), new_name, coalesce(new_description, ''));
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION vault.update_secret(
    secret_id uuid,
    new_secret text = NULL,
    new_name text = NULL,
    new_description text = NULL,
    new_key_id uuid = NULL
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE vault.secrets s
    SET secret = CASE WHEN new_secret IS NULL THEN s.secret ELSE vault._shim_encrypt(new_secret, s.id) END,
        name = coalesce(new_name, s.name),
        description = coalesce(new_description, s.description),
        updated_at = now()
    WHERE s.id = secret_id;
END
$$;

REVOKE ALL ON SCHEMA vault FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA vault FROM PUBLIC;
REVOKE ALL ON FUNCTION vault._shim_key() FROM PUBLIC;
REVOKE ALL ON FUNCTION vault._shim_encrypt(text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault._shim_decrypt(text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.create_secret(text, text, text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.update_secret(uuid, text, text, text, uuid) FROM PUBLIC;
