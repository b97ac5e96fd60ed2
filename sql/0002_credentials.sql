-- 0002_credentials: the local credential backend's encrypted records.
--
-- One row per credential_ref (an opaque id the app generates; mcp_connections.credential_ref
-- points at it). record is the AES-256-GCM envelope {v, kid, wdek, n, ct} written by
-- mcp_core/credentials: the payload is encrypted under a fresh data key, which is wrapped by a
-- master key from CREDENTIAL_KEYS (kid names it). Both are bound by associated data to
-- (team_id, user_id, ref), so a record copied to another row does not decrypt. No plaintext
-- secret or key material is ever stored here.
--
-- No foreign key to mcp_connections: the secret is stored before the connection that uses it
-- (so its first session already has it), and other backends keep the record elsewhere.

CREATE TABLE mcp_credentials (
    ref text PRIMARY KEY,
    team_id text NOT NULL,
    user_id text NOT NULL,
    record jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX mcp_credentials_owner_idx ON mcp_credentials (team_id, user_id);

ALTER TABLE mcp_credentials ENABLE ROW LEVEL SECURITY;
