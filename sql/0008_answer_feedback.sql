-- 0008_answer_feedback: 👍 / 👎 on the agent's answers, one vote per person per answer.
--
-- A turn gets its own id (text, made by the bot when the turn starts); the answer's feedback
-- buttons carry it, and the turn's usage row keeps it (mcp_agent_turns.turn_id, NULL for rows
-- written before this migration), so votes join the turn's model, rounds and tokens.
-- Anyone who sees an answer may vote on it: user_id is the verified clicker, not necessarily
-- the asker. A second click by the same person replaces their vote (the primary key).
-- No foreign key to mcp_agent_turns: its rows are written in background batches and may come
-- after the click (or never, when the model never answered).
ALTER TABLE mcp_agent_turns ADD COLUMN turn_id text;

CREATE INDEX mcp_agent_turns_turn_idx ON mcp_agent_turns (team_id, turn_id);

CREATE TABLE mcp_answer_feedback (
    team_id text NOT NULL,
    turn_id text NOT NULL,
    user_id text NOT NULL,
    vote text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, turn_id, user_id),
    CONSTRAINT mcp_answer_feedback_vote_check CHECK (vote IN ('up', 'down'))
);

ALTER TABLE mcp_answer_feedback ENABLE ROW LEVEL SECURITY;
