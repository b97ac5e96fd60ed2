-- 0004_oauth: per-user OAuth sign-in to remote MCP servers (mcp_core/oauth).
--
-- mcp_oauth_pending holds authorizations started but not finished: the person's browser is at
-- the authorization server. It is keyed by the SHA-256 of the `state` sent in the redirect, so
-- reading this table cannot complete anyone's sign-in; the PKCE verifier and any client secret
-- live in the credential manager under credential_ref. Rows are single-use (deleted when the
-- callback arrives, on whichever process) and expire after ten minutes.
--
-- mcp_oauth_grants holds one grant per connection: where its tokens are (credential_ref into
-- the credential manager), the absolute expiry of the access token (the SDK forgets it on a
-- restart), the discovered metadata needed to refresh and revoke (non-secret), and a lease so
-- that one process at a time refreshes (authorization servers revoke a whole grant when a
-- rotated refresh token is used twice).

CREATE TABLE mcp_oauth_pending (
    state_hash text PRIMARY KEY,
    team_id text NOT NULL,
    user_id text NOT NULL,
    connection_id uuid NOT NULL,
    credential_ref text NOT NULL,
    flow jsonb NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mcp_oauth_pending_connection_id_fkey FOREIGN KEY (connection_id)
        REFERENCES mcp_connections (id) ON DELETE CASCADE
);

CREATE INDEX mcp_oauth_pending_expires_idx ON mcp_oauth_pending (expires_at);

CREATE TABLE mcp_oauth_grants (
    connection_id uuid PRIMARY KEY,
    team_id text NOT NULL,
    user_id text NOT NULL,
    credential_ref text NOT NULL,
    metadata jsonb NOT NULL,
    scope text,
    expires_at timestamptz,
    lease_holder text,
    lease_until timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mcp_oauth_grants_connection_id_fkey FOREIGN KEY (connection_id)
        REFERENCES mcp_connections (id) ON DELETE CASCADE
);

ALTER TABLE mcp_oauth_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_oauth_grants ENABLE ROW LEVEL SECURITY;

-- mcp_oauth_clients: clients a workspace admin registered with a server that lets the bot
-- neither register itself nor use a Client ID Metadata Document, entered in Slack. Bound to the
-- team and the exact MCP server URL (and to the issuer seen then, if any); the secret is in the
-- credential manager under the admin's (team, user).
CREATE TABLE mcp_oauth_clients (
    team_id text NOT NULL,
    server_url text NOT NULL,
    issuer text,
    client_id text NOT NULL,
    client_auth text NOT NULL,
    credential_ref text,
    added_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, server_url)
);

ALTER TABLE mcp_oauth_clients ENABLE ROW LEVEL SECURITY;
