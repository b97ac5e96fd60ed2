-- 0012_admin_policy: what a workspace's admins decide and what they can look back on.
--
-- mcp_team_usage_daily: a workspace's daily tool calls per server (a run card, a URL's host,
-- a stdio command's name) and tool, for /mcp admin: the person-level rollups of 0011 summed
-- once more, so workspace stats read a few thousand rows at any size.
-- mcp_usage_charts: the newest usage chart each person was sent (a PNG in their DM with the
-- bot), so the App Home can link to it. One row per person, replaced by the next chart.
-- mcp_workspace_policy: one row per workspace (mcp_core.policy.Policy as JSON): which run
-- cards are allowed, whether custom URLs are, who may add connections, channels where the
-- agent runs no tools or only read-only ones. No row: everything allowed, as before.
-- mcp_audit_log: who did what, when: policy changes, and tool calls approved or denied
-- (connection and tool; arguments only when the policy says to keep them).

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
    team_id text NOT NULL,
    user_id text NOT NULL,
    file_id text NOT NULL,
    permalink text NOT NULL,
    days integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);

CREATE TABLE mcp_workspace_policy (
    team_id text PRIMARY KEY,
    policy jsonb NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mcp_audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id text NOT NULL,
    actor_id text NOT NULL,
    action text NOT NULL,
    detail jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX mcp_audit_log_team_created_idx ON mcp_audit_log (team_id, created_at);

CREATE TABLE mcp_team_usage_daily (
    team_id text NOT NULL,
    server text NOT NULL,
    tool_name text NOT NULL,
    day date NOT NULL,
    calls bigint NOT NULL,
    errors bigint NOT NULL,
    latency_ms_sum double precision NOT NULL,
    PRIMARY KEY (team_id, server, tool_name, day)
);

CREATE INDEX mcp_team_usage_daily_team_day_idx ON mcp_team_usage_daily (team_id, day);

-- What 0011 summed before this migration, under the same server keys
-- (mcp_core.store._rollups.server_key).
INSERT INTO mcp_team_usage_daily
SELECT d.team_id,
    CASE
        WHEN c.id IS NULL THEN 'removed'
        WHEN c.card_id IS NOT NULL AND c.card_id <> 'custom' THEN 'card:' || c.card_id
        WHEN c.url IS NOT NULL THEN 'url:' || lower(substring(c.url from '^[A-Za-z][A-Za-z0-9+.-]*://([^/:?#]+)'))
        ELSE 'stdio:' || regexp_replace(coalesce(c.command, ''), '^.*/', '')
    END,
    d.tool_name, d.day, SUM(d.calls), SUM(d.errors), SUM(d.latency_ms_sum)
FROM mcp_usage_daily d
LEFT JOIN mcp_connections c ON c.id = d.connection_id AND c.team_id = d.team_id
GROUP BY 1, 2, 3, 4;

ALTER TABLE mcp_team_usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_usage_charts ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_workspace_policy ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_audit_log ENABLE ROW LEVEL SECURITY;
