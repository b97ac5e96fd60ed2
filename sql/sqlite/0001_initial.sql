-- 0001_initial (SQLite twin of sql/0001_initial.sql; keep the two in step, see
-- tests/store/test_schema_parity.py). Numbered and append-only, like the PostgreSQL files.
--
-- Type mapping: uuid → TEXT (32 hex digits, as SQLAlchemy's Uuid stores it), jsonb → TEXT
-- checked with json_valid, timestamptz → TIMESTAMP holding UTC text 'YYYY-MM-DD HH:MM:SS.fff'
-- (so it sorts in time order), boolean → BOOLEAN (0/1), identity → INTEGER PRIMARY KEY
-- AUTOINCREMENT.
-- Primary keys say NOT NULL explicitly: SQLite otherwise lets non-integer keys be NULL.
-- Foreign keys need PRAGMA foreign_keys=ON, which mcp_core.store.create_engine sets.

CREATE TABLE mcp_connections (
    id TEXT NOT NULL PRIMARY KEY DEFAULT (lower(hex(randomblob(16)))),
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    card_id TEXT,
    transport TEXT NOT NULL,
    url TEXT,
    command TEXT,
    args TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(args)),
    config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config)),
    credential_ref TEXT,
    status TEXT NOT NULL DEFAULT 'new',
    status_detail TEXT,
    tools TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tools)),
    last_verified_at TIMESTAMP,
    last_used_at TIMESTAMP,
    usage_count INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT mcp_connections_owner_name_key UNIQUE (team_id, user_id, name),
    CONSTRAINT mcp_connections_transport_check
        CHECK (transport IN ('stdio', 'sse', 'streamable_http')),
    CONSTRAINT mcp_connections_status_check
        CHECK (status IN ('new', 'healthy', 'error', 'needs_auth')),
    CONSTRAINT mcp_connections_target_check CHECK (
        (transport = 'stdio' AND command IS NOT NULL AND command <> '')
        OR (transport <> 'stdio' AND url IS NOT NULL AND url <> '')
    ),
    CONSTRAINT mcp_connections_usage_count_check CHECK (usage_count >= 0)
);

CREATE TABLE mcp_tool_usage (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    connection_id TEXT,
    tool_name TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    success BOOLEAN NOT NULL CHECK (success IN (0, 1)),
    error_class TEXT,
    error_message TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT mcp_tool_usage_connection_id_fkey FOREIGN KEY (connection_id)
        REFERENCES mcp_connections (id) ON DELETE SET NULL,
    CONSTRAINT mcp_tool_usage_latency_check CHECK (latency_ms >= 0)
);

CREATE INDEX mcp_tool_usage_owner_created_idx ON mcp_tool_usage (team_id, user_id, created_at);
CREATE INDEX mcp_tool_usage_connection_created_idx ON mcp_tool_usage (connection_id, created_at);

CREATE TABLE mcp_run_cards (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    emoji TEXT,
    description TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    admin_only BOOLEAN NOT NULL DEFAULT 0 CHECK (admin_only IN (0, 1)),
    definition TEXT NOT NULL CHECK (json_valid(definition)),
    enabled BOOLEAN NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT mcp_run_cards_source_check CHECK (source IN ('builtin', 'admin'))
);

CREATE TABLE mcp_slack_events (
    event_id TEXT NOT NULL PRIMARY KEY,
    team_id TEXT,
    received_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE INDEX mcp_slack_events_received_at_idx ON mcp_slack_events (received_at);
