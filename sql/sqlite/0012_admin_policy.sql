-- 0012_admin_policy (SQLite twin of sql/0012_admin_policy.sql; keep the two in step, see
-- tests/store/test_schema_parity.py): workspace usage per server and tool, newest usage chart per person, workspace policy,
-- audit log.

-- Indexes the stats read through without touching the tables (bench/stats.py at 10M calls):
-- the workspace's tokens and people asking, its errors by class, a person's latency buckets,
-- and who asked each answer that got a 👍 / 👎.
CREATE INDEX mcp_turns_daily_team_day_cover_idx
    ON mcp_turns_daily (team_id, day, model, user_id, turns, prompt_tokens, completion_tokens);
CREATE INDEX mcp_usage_errors_daily_team_day_cover_idx
    ON mcp_usage_errors_daily (team_id, day, error_class, calls);
CREATE INDEX mcp_usage_latency_daily_owner_day_idx
    ON mcp_usage_latency_daily (team_id, user_id, day, connection_id, tool_name, bucket, calls);
CREATE INDEX mcp_agent_turns_turn_user_idx ON mcp_agent_turns (team_id, turn_id, user_id);
DROP INDEX mcp_agent_turns_turn_idx;

CREATE TABLE mcp_usage_charts (
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    permalink TEXT NOT NULL,
    days INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (team_id, user_id)
);

CREATE TABLE mcp_workspace_policy (
    team_id TEXT NOT NULL PRIMARY KEY,
    policy TEXT NOT NULL CHECK (json_valid(policy)),
    updated_by TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE mcp_audit_log (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    team_id TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL CHECK (json_valid(detail)),
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE INDEX mcp_audit_log_team_created_idx ON mcp_audit_log (team_id, created_at);

CREATE TABLE mcp_team_usage_daily (
    team_id TEXT NOT NULL,
    server TEXT NOT NULL,
    tool_name TEXT NOT NULL,
    day DATE NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    latency_ms_sum REAL NOT NULL,
    PRIMARY KEY (team_id, server, tool_name, day)
);

CREATE INDEX mcp_team_usage_daily_team_day_idx ON mcp_team_usage_daily (team_id, day);

-- What 0011 summed before this migration, under the same server keys
-- (mcp_core.store._rollups.server_key; the host is the URL's text between "://" and the first
-- "/", "?", "#" or ":").
INSERT INTO mcp_team_usage_daily
WITH c AS (
    SELECT id, team_id, card_id, url, command,
        substr(url, instr(url, '://') + 3) || '/' AS rest
    FROM mcp_connections
), h AS (
    SELECT c.*, substr(rest, 1, instr(rest, '/') - 1) || '?' AS h1 FROM c
), q AS (
    SELECT h.*, substr(h1, 1, instr(h1, '?') - 1) || '#' AS h2 FROM h
), f AS (
    SELECT q.*, substr(h2, 1, instr(h2, '#') - 1) || ':' AS h3 FROM q
), s AS (
    SELECT f.*, lower(substr(h3, 1, instr(h3, ':') - 1)) AS host FROM f
)
SELECT d.team_id,
    CASE
        WHEN s.id IS NULL THEN 'removed'
        WHEN s.card_id IS NOT NULL AND s.card_id <> 'custom' THEN 'card:' || s.card_id
        WHEN s.url IS NOT NULL THEN 'url:' || s.host
        ELSE 'stdio:' || replace(coalesce(s.command, ''), rtrim(coalesce(s.command, ''), replace(coalesce(s.command, ''), '/', '')), '')
    END,
    d.tool_name, d.day, SUM(d.calls), SUM(d.errors), SUM(d.latency_ms_sum)
FROM mcp_usage_daily d
LEFT JOIN s ON s.id = d.connection_id AND s.team_id = d.team_id
GROUP BY 1, 2, 3, 4;
