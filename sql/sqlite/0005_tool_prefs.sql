-- 0005_tool_prefs (SQLite twin of sql/0005_tool_prefs.sql; keep the two in step, see
-- tests/store/test_schema_parity.py): each person's choices about the tools of their own
-- connection.
--
-- tool_prefs is {"off": [tool names], "always": [tool names]}, by the server's own tool names:
-- "off" tools are never offered to the model and never run; "always" tools run without asking
-- (except in a thread where someone else wrote, see mcp_core.agent.approval_rule). It lives on
-- the connection row, so building a person's catalog reads nothing more than before, and it
-- goes when the connection goes.

ALTER TABLE mcp_connections ADD COLUMN tool_prefs TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(tool_prefs));
