-- 0014_turn_stops (SQLite twin of sql/0014_turn_stops.sql; keep the two in step, see
-- tests/store/test_schema_parity.py): a Stop that landed on a process not running the turn
-- asks the turn's owner to stop it.
ALTER TABLE mcp_turns ADD COLUMN stop_requested_at TIMESTAMP;
