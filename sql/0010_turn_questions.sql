-- 0010_turn_questions: a turn waiting for a person's answer can be continued by any process.
--
-- While a turn asks Approve/Deny, `question` holds the id its buttons carry (unique: one click
-- finds one turn) and `question_expires_at` when no answer counts as Deny. `checkpoint` is
-- where the turn stands (mcp_core.turn_checkpoint): the conversation, the round's calls with
-- their exact arguments, the answers so far — sealed with AES-256-GCM under the credential
-- keyring and bound to (team, user, turn), so it holds no readable words, results or
-- secrets. A click on any process takes the question in one conditional UPDATE (exactly one
-- taker) and goes on from the checkpoint; a turn whose owner died while it waited is parked
-- (owner '' and its lease until the question's expiry) instead of being closed.
ALTER TABLE mcp_turns ADD COLUMN question text;
ALTER TABLE mcp_turns ADD COLUMN question_expires_at timestamptz;
ALTER TABLE mcp_turns ADD COLUMN checkpoint jsonb;

CREATE UNIQUE INDEX mcp_turns_question_idx ON mcp_turns (question);
