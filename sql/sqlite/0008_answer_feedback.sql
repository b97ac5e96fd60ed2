-- 0008_answer_feedback (SQLite twin of sql/0008_answer_feedback.sql; keep the two in step, see
-- tests/store/test_schema_parity.py): 👍 / 👎 on the agent's answers, one vote per person per
-- answer, and the turn's own id on its usage row.

ALTER TABLE mcp_agent_turns ADD COLUMN turn_id TEXT;

CREATE INDEX mcp_agent_turns_turn_idx ON mcp_agent_turns (team_id, turn_id);

CREATE TABLE mcp_answer_feedback (
    team_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    vote TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (team_id, turn_id, user_id),
    CONSTRAINT mcp_answer_feedback_vote_check CHECK (vote IN ('up', 'down'))
);
