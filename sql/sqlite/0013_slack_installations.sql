-- 0013_slack_installations (SQLite twin of sql/0013_slack_installations.sql; keep the two in
-- step, see tests/store/test_schema_parity.py): installations, OAuth states, workspace removals.

CREATE TABLE mcp_slack_installations (
    client_id TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    is_enterprise_install BOOLEAN NOT NULL CHECK (is_enterprise_install IN (0, 1)),
    data TEXT NOT NULL CHECK (json_valid(data)),
    credential_ref TEXT NOT NULL,
    installed_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (client_id, enterprise_id, team_id, user_id)
);

CREATE INDEX mcp_slack_installations_newest_idx
    ON mcp_slack_installations (client_id, enterprise_id, team_id, installed_at);

CREATE TABLE mcp_slack_oauth_states (
    state TEXT NOT NULL PRIMARY KEY,
    expires_at TIMESTAMP NOT NULL
);

CREATE TABLE mcp_slack_workspaces (
    team_id TEXT NOT NULL PRIMARY KEY,
    enterprise_id TEXT NOT NULL,
    seen_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE mcp_workspace_removals (
    enterprise_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    removed_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    purge_after TIMESTAMP NOT NULL,
    PRIMARY KEY (enterprise_id, team_id)
);
