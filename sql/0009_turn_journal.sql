-- 0009_turn_journal: agent turns in progress, so a turn whose process died is closed honestly.
--
-- One row per turn from its start (mcp_core.turn_journal). `owner` is the process running it
-- (host:pid:random) and `lease_until` how long that claim holds: the owner renews every lease
-- it holds in one UPDATE every few seconds; a row whose lease ran out belongs to a dead (or
-- cut-off) process, and another process's sweeper claims it (FOR UPDATE SKIP LOCKED: exactly
-- one claimer) and closes it in Slack. `messages`: the Slack ts of the messages the turn
-- owns (its progress message, its streamed messages), a JSON list of strings. `calls`: per
-- tool call its catalog name and whether it was sent and whether it ended, a JSON list of
-- {"name", "started", "finished"} — never arguments or results, which may hold secrets.
-- `state`: running | waiting (for a person's answer) | done (ended by its owner) | closed
-- (closed by a sweeper after its owner died).
CREATE TABLE mcp_turns (
    turn_id text PRIMARY KEY,
    team_id text NOT NULL,
    user_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    owner text NOT NULL,
    lease_until timestamptz NOT NULL,
    state text NOT NULL,
    messages jsonb NOT NULL DEFAULT '[]'::jsonb,
    calls jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mcp_turns_state_check CHECK (state IN ('running', 'waiting', 'done', 'closed'))
);

CREATE INDEX mcp_turns_state_lease_idx ON mcp_turns (state, lease_until);

ALTER TABLE mcp_turns ENABLE ROW LEVEL SECURITY;
