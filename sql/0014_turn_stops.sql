-- 0014_turn_stops: a Stop reaches the turn whatever process it lands on.
--
-- Behind a load balancer (or over several Socket Mode connections) a person's Stop may reach a
-- process that is not running the turn. That process checks the asker against the live row
-- and sets `stop_requested_at`; the owner looks for such rows among its own live turns about
-- once a second while it has any (mcp_core.turn_journal) and stops them as if clicked there.
ALTER TABLE mcp_turns ADD COLUMN stop_requested_at timestamptz;
