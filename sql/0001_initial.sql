-- 0001_initial: connections, tool usage, run cards and Slack event dedupe.
--
-- Canonical schema for PostgreSQL / Supabase. sql/sqlite/0001_initial.sql is its SQLite twin;
-- tests/store/test_schema_parity.py keeps the two in step. Migrations are numbered and
-- append-only: never edit an applied file, add 0002_… instead.
--
-- mcp_core/store/migrate.py applies this file in one transaction and records it in
-- mcp_schema_migrations. By hand: psql --single-transaction -f sql/0001_initial.sql
--
-- Tables carry the mcp_ prefix because they share a Supabase project's public schema.
-- Row level security is enabled with no policies, so PostgREST's anon/authenticated roles see
-- nothing; the bot connects as the table owner (or service role), which RLS does not restrict.

CREATE TABLE mcp_connections (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id text NOT NULL,
    user_id text NOT NULL,
    -- Canonical lower-case name, validated by the app (models.normalize_connection_name).
    name text NOT NULL,
    card_id text,
    transport text NOT NULL,
    url text,
    command text,
    args jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- Non-secret settings only; secrets live in the credential store under credential_ref.
    config jsonb NOT NULL DEFAULT '{}'::jsonb,
    credential_ref text,
    status text NOT NULL DEFAULT 'new',
    status_detail text,
    tools jsonb NOT NULL DEFAULT '[]'::jsonb,
    last_verified_at timestamptz,
    last_used_at timestamptz,
    usage_count bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Its index also serves every (team_id, user_id) lookup, ordered by name.
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

-- One row per tool call, for analytics. Never arguments, results or secrets.
CREATE TABLE mcp_tool_usage (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id text NOT NULL,
    user_id text NOT NULL,
    connection_id uuid,
    tool_name text NOT NULL,
    latency_ms double precision NOT NULL,
    success boolean NOT NULL,
    error_class text,
    error_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Usage outlives a deleted connection; it just loses the link.
    CONSTRAINT mcp_tool_usage_connection_id_fkey FOREIGN KEY (connection_id)
        REFERENCES mcp_connections (id) ON DELETE SET NULL,
    CONSTRAINT mcp_tool_usage_latency_check CHECK (latency_ms >= 0)
);

CREATE INDEX mcp_tool_usage_owner_created_idx ON mcp_tool_usage (team_id, user_id, created_at);
-- Also serves the ON DELETE SET NULL lookup when a connection goes.
CREATE INDEX mcp_tool_usage_connection_created_idx ON mcp_tool_usage (connection_id, created_at);

CREATE TABLE mcp_run_cards (
    id text PRIMARY KEY,
    name text NOT NULL,
    emoji text,
    description text NOT NULL DEFAULT '',
    source text NOT NULL,
    admin_only boolean NOT NULL DEFAULT false,
    definition jsonb NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mcp_run_cards_source_check CHECK (source IN ('builtin', 'admin'))
);

-- Slack retries deliveries; the first process to insert an event_id handles it.
CREATE TABLE mcp_slack_events (
    event_id text PRIMARY KEY,
    team_id text,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX mcp_slack_events_received_at_idx ON mcp_slack_events (received_at);

ALTER TABLE mcp_connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_tool_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_run_cards ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_slack_events ENABLE ROW LEVEL SECURITY;
