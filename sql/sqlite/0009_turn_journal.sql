-- 0009_turn_journal (SQLite twin of sql/0009_turn_journal.sql; keep the two in step, see
-- tests/store/test_schema_parity.py): agent turns in progress, their owner and lease.

CREATE TABLE mcp_turns (
    turn_id TEXT NOT NULL PRIMARY KEY,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    owner TEXT NOT NULL,
    lease_until TIMESTAMP NOT NULL,
    state TEXT NOT NULL,
    messages TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(messages)),
    calls TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(calls)),
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT mcp_turns_state_check CHECK (state IN ('running', 'waiting', 'done', 'closed'))
);

CREATE INDEX mcp_turns_state_lease_idx ON mcp_turns (state, lease_until);
