-- 0006_turn_usage: what each agent turn cost, per person and model (mcp_core.models.TurnUsage).
--
-- One row per turn that got at least one answer from the model: its rounds, the prompt and
-- completion tokens the API's `usage` reported, summed over those rounds (NULL when the
-- endpoint did not report them: some OpenAI-compatible servers never do), how many of the
-- person's tools it called, and whether it ended with an answer (false: it failed after some
-- rounds, whose tokens were spent all the same). Never the conversation itself.
CREATE TABLE mcp_agent_turns (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id text NOT NULL,
    user_id text NOT NULL,
    model text NOT NULL,
    rounds integer NOT NULL,
    prompt_tokens bigint,
    completion_tokens bigint,
    tool_calls integer NOT NULL,
    answered boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mcp_agent_turns_counts_check CHECK (
        rounds >= 0 AND tool_calls >= 0 AND prompt_tokens >= 0 AND completion_tokens >= 0
    )
);

CREATE INDEX mcp_agent_turns_owner_created_idx ON mcp_agent_turns (team_id, user_id, created_at);

ALTER TABLE mcp_agent_turns ENABLE ROW LEVEL SECURITY;
