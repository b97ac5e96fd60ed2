-- 0014_turn_stops: a Stop reaches the turn whatever process it lands on.
--
-- Behind a load balancer (or over several Socket Mode connections) a person's Stop may reach a
-- process that is not running the turn. That process checks the asker against the live row
-- and sets `stop_requested_at`; the owner looks for such rows among its own live turns about
-- once a second while it has any (mcp_core.turn_journal) and stops them as if clicked there.
ALTER TABLE mcp_turns ADD COLUMN stop_requested_at timestamptz;

-- A server's question mid-call (elicitation, form mode) can be answered on any process: the
-- asking process keeps the form here, sealed with AES-256-GCM under the credential keyring
-- and bound to (team, user, question), until the question ends. A click on another process
-- opens the form from this row; its answer (what the person typed, sealed the same way) is
-- written once (`answer IS NULL` is the condition) and the asking process, which looks for it
-- every half second while it waits, sends it to the server and deletes the row. Rows a dead
-- process left are deleted once they expire (the turn journal's purge).
CREATE TABLE mcp_turn_questions (
    question_id text PRIMARY KEY,
    team_id text NOT NULL,
    user_id text NOT NULL,
    form jsonb NOT NULL,
    answer jsonb,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX mcp_turn_questions_expires_idx ON mcp_turn_questions (expires_at);
ALTER TABLE mcp_turn_questions ENABLE ROW LEVEL SECURITY;
