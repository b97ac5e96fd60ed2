-- 0011_usage_rollups: daily sums of tool calls and agent turns, so stats stay fast at any
-- size and outlive the raw rows (USAGE_RETENTION_DAYS prunes mcp_tool_usage and
-- mcp_agent_turns; these are kept).
--
-- Written by the usage recorder in the same transaction as the raw rows (one upsert per
-- touched key and batch). Days are UTC. A call whose connection was already gone is kept
-- under the nil uuid; a deleted connection's sums stay under its id (no foreign key).
-- Latency is kept as counts per bucket (upper edges in ms: 1, 2, 5, 10, 20, 50, 100, 200,
-- 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000, 60000,
-- 120000, then everything slower: buckets 0..23, mcp_core.usage_rollups.LATENCY_EDGES_MS),
-- from which p50 / p95 are estimated. Errors are counted per error class. Tokens per model.

CREATE TABLE mcp_usage_daily (
    team_id text NOT NULL,
    user_id text NOT NULL,
    connection_id uuid NOT NULL,
    tool_name text NOT NULL,
    day date NOT NULL,
    calls bigint NOT NULL,
    errors bigint NOT NULL,
    latency_ms_sum double precision NOT NULL,
    PRIMARY KEY (team_id, user_id, connection_id, tool_name, day)
);

CREATE INDEX mcp_usage_daily_team_day_idx ON mcp_usage_daily (team_id, day);

CREATE TABLE mcp_usage_latency_daily (
    team_id text NOT NULL,
    user_id text NOT NULL,
    connection_id uuid NOT NULL,
    tool_name text NOT NULL,
    day date NOT NULL,
    bucket smallint NOT NULL,
    calls bigint NOT NULL,
    PRIMARY KEY (team_id, user_id, connection_id, tool_name, day, bucket)
);

CREATE INDEX mcp_usage_latency_daily_team_day_idx ON mcp_usage_latency_daily (team_id, day);

CREATE TABLE mcp_usage_errors_daily (
    team_id text NOT NULL,
    user_id text NOT NULL,
    connection_id uuid NOT NULL,
    tool_name text NOT NULL,
    day date NOT NULL,
    error_class text NOT NULL,
    calls bigint NOT NULL,
    PRIMARY KEY (team_id, user_id, connection_id, tool_name, day, error_class)
);

CREATE INDEX mcp_usage_errors_daily_team_day_idx ON mcp_usage_errors_daily (team_id, day);

CREATE TABLE mcp_turns_daily (
    team_id text NOT NULL,
    user_id text NOT NULL,
    model text NOT NULL,
    day date NOT NULL,
    turns bigint NOT NULL,
    answered bigint NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    PRIMARY KEY (team_id, user_id, model, day)
);

CREATE INDEX mcp_turns_daily_team_day_idx ON mcp_turns_daily (team_id, day);

-- USAGE_RETENTION_DAYS prunes raw rows by age.
CREATE INDEX mcp_tool_usage_created_idx ON mcp_tool_usage (created_at);
CREATE INDEX mcp_agent_turns_created_idx ON mcp_agent_turns (created_at);

-- What was recorded before this migration, summed the same way.
INSERT INTO mcp_usage_daily
SELECT team_id, user_id, COALESCE(connection_id, '00000000-0000-0000-0000-000000000000'::uuid), tool_name, (created_at AT TIME ZONE 'UTC')::date,
    COUNT(*), SUM(CASE WHEN success THEN 0 ELSE 1 END), SUM(latency_ms)
FROM mcp_tool_usage
GROUP BY 1, 2, 3, 4, 5;

INSERT INTO mcp_usage_latency_daily
SELECT team_id, user_id, COALESCE(connection_id, '00000000-0000-0000-0000-000000000000'::uuid), tool_name, (created_at AT TIME ZONE 'UTC')::date,
    CASE
        WHEN latency_ms < 1 THEN 0
        WHEN latency_ms < 2 THEN 1
        WHEN latency_ms < 5 THEN 2
        WHEN latency_ms < 10 THEN 3
        WHEN latency_ms < 20 THEN 4
        WHEN latency_ms < 50 THEN 5
        WHEN latency_ms < 100 THEN 6
        WHEN latency_ms < 200 THEN 7
        WHEN latency_ms < 300 THEN 8
        WHEN latency_ms < 500 THEN 9
        WHEN latency_ms < 750 THEN 10
        WHEN latency_ms < 1000 THEN 11
        WHEN latency_ms < 1500 THEN 12
        WHEN latency_ms < 2000 THEN 13
        WHEN latency_ms < 3000 THEN 14
        WHEN latency_ms < 5000 THEN 15
        WHEN latency_ms < 7500 THEN 16
        WHEN latency_ms < 10000 THEN 17
        WHEN latency_ms < 15000 THEN 18
        WHEN latency_ms < 20000 THEN 19
        WHEN latency_ms < 30000 THEN 20
        WHEN latency_ms < 60000 THEN 21
        WHEN latency_ms < 120000 THEN 22
        ELSE 23
    END,
    COUNT(*)
FROM mcp_tool_usage
GROUP BY 1, 2, 3, 4, 5, 6;

INSERT INTO mcp_usage_errors_daily
SELECT team_id, user_id, COALESCE(connection_id, '00000000-0000-0000-0000-000000000000'::uuid), tool_name, (created_at AT TIME ZONE 'UTC')::date,
    COALESCE(error_class, 'Error'), COUNT(*)
FROM mcp_tool_usage
WHERE NOT success
GROUP BY 1, 2, 3, 4, 5, 6;

INSERT INTO mcp_turns_daily
SELECT team_id, user_id, model, (created_at AT TIME ZONE 'UTC')::date,
    COUNT(*), SUM(CASE WHEN answered THEN 1 ELSE 0 END),
    COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)
FROM mcp_agent_turns
GROUP BY 1, 2, 3, 4;

ALTER TABLE mcp_usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_usage_latency_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_usage_errors_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_turns_daily ENABLE ROW LEVEL SECURITY;
