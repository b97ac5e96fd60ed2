-- 0004_oauth (SQLite twin of sql/0004_oauth.sql; keep the two in step, see
-- tests/store/test_schema_parity.py). Type mapping as in 0001_initial.sql.

CREATE TABLE mcp_oauth_pending (
    state_hash TEXT NOT NULL PRIMARY KEY,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    credential_ref TEXT NOT NULL,
    flow TEXT NOT NULL CHECK (json_valid(flow)),
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT mcp_oauth_pending_connection_id_fkey FOREIGN KEY (connection_id)
        REFERENCES mcp_connections (id) ON DELETE CASCADE
);

CREATE INDEX mcp_oauth_pending_expires_idx ON mcp_oauth_pending (expires_at);

CREATE TABLE mcp_oauth_grants (
    connection_id TEXT NOT NULL PRIMARY KEY,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    credential_ref TEXT NOT NULL,
    metadata TEXT NOT NULL CHECK (json_valid(metadata)),
    scope TEXT,
    expires_at TIMESTAMP,
    lease_holder TEXT,
    lease_until TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT mcp_oauth_grants_connection_id_fkey FOREIGN KEY (connection_id)
        REFERENCES mcp_connections (id) ON DELETE CASCADE
);

CREATE TABLE mcp_oauth_clients (
    team_id TEXT NOT NULL,
    server_url TEXT NOT NULL,
    issuer TEXT,
    client_id TEXT NOT NULL,
    client_auth TEXT NOT NULL,
    credential_ref TEXT,
    added_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (team_id, server_url)
);
