-- 0002_credentials (SQLite twin of sql/0002_credentials.sql; keep the two in step, see
-- tests/store/test_schema_parity.py). Type mapping as in 0001_initial.sql.

CREATE TABLE mcp_credentials (
    ref TEXT NOT NULL PRIMARY KEY,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    record TEXT NOT NULL CHECK (json_valid(record)),
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE INDEX mcp_credentials_owner_idx ON mcp_credentials (team_id, user_id);
