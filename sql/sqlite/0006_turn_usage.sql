-- 0006_turn_usage (SQLite twin of sql/0006_turn_usage.sql; keep the two in step, see
-- tests/store/test_schema_parity.py). Type mapping as in 0001_initial.sql.

CREATE TABLE mcp_agent_turns (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    model TEXT NOT NULL,
    rounds INTEGER NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    tool_calls INTEGER NOT NULL,
    answered BOOLEAN NOT NULL CHECK (answered IN (0, 1)),
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT mcp_agent_turns_counts_check CHECK (
        rounds >= 0 AND tool_calls >= 0 AND prompt_tokens >= 0 AND completion_tokens >= 0
    )
);

CREATE INDEX mcp_agent_turns_owner_created_idx ON mcp_agent_turns (team_id, user_id, created_at);
