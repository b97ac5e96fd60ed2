"""SQLAlchemy Core tables mirroring the SQL migrations in ``sql/``.

The migrations are the schema's source of truth; these definitions only let the store build
queries with types. ``tests/store/test_schema_parity.py`` checks that both agree, so the
metadata is never used to create tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "UtcDateTime",
    "agent_turns",
    "answer_feedback",
    "audit_log",
    "catalog_versions",
    "connections",
    "credentials",
    "metadata",
    "oauth_clients",
    "oauth_grants",
    "oauth_pending",
    "schema_migrations",
    "slack_events",
    "slack_installations",
    "slack_oauth_states",
    "slack_workspaces",
    "team_usage_daily",
    "tool_usage",
    "turn_questions",
    "turns",
    "turns_daily",
    "usage_charts",
    "usage_daily",
    "usage_errors_daily",
    "usage_latency_daily",
    "workspace_policy",
    "workspace_removals",
]


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive
    UTC text, which also keeps them sorting in time order. A naive datetime handed in is taken
    to be UTC already.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json = sa.JSON().with_variant(JSONB(), "postgresql")

metadata = sa.MetaData()

connections = sa.Table(
    "mcp_connections",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("card_id", sa.Text),
    sa.Column("transport", sa.Text, nullable=False),
    sa.Column("url", sa.Text),
    sa.Column("command", sa.Text),
    sa.Column("args", Json, nullable=False),
    sa.Column("config", Json, nullable=False),
    sa.Column("credential_ref", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("status_detail", sa.Text),
    sa.Column("tools", Json, nullable=False),
    sa.Column("tool_prefs", Json, nullable=False),
    sa.Column("last_verified_at", UtcDateTime),
    sa.Column("last_used_at", UtcDateTime),
    sa.Column("usage_count", sa.BigInteger, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("team_id", "user_id", "name", name="mcp_connections_owner_name_key"),
)

tool_usage = sa.Table(
    "mcp_tool_usage",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("connection_id", sa.Uuid, sa.ForeignKey(connections.c.id, ondelete="SET NULL")),
    sa.Column("tool_name", sa.Text, nullable=False),
    sa.Column("latency_ms", sa.Double, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("error_class", sa.Text),
    sa.Column("error_message", sa.Text),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# What each agent turn cost (mcp_core.models.TurnRecord); 0006_turn_usage.
agent_turns = sa.Table(
    "mcp_agent_turns",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("rounds", sa.Integer, nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger),
    sa.Column("completion_tokens", sa.BigInteger),
    sa.Column("tool_calls", sa.Integer, nullable=False),
    sa.Column("answered", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("turn_id", sa.Text),  # 0008_answer_feedback
    sa.Index("mcp_agent_turns_owner_created_idx", "team_id", "user_id", "created_at"),
    sa.Index("mcp_agent_turns_turn_user_idx", "team_id", "turn_id", "user_id"),  # 0012
    sa.Index("mcp_agent_turns_created_idx", "created_at"),  # 0011_usage_rollups
)

# 👍 / 👎 on answers, one vote per (team, turn, voter); 0008_answer_feedback.
answer_feedback = sa.Table(
    "mcp_answer_feedback",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("turn_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("vote", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Agent turns in progress: owner, lease, owned messages and calls (mcp_core.turn_journal); 0009.
turns = sa.Table(
    "mcp_turns",
    metadata,
    sa.Column("turn_id", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("channel_id", sa.Text, nullable=False),
    sa.Column("thread_ts", sa.Text, nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("lease_until", UtcDateTime, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("messages", Json, nullable=False),
    sa.Column("calls", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("question", sa.Text),  # 0010_turn_questions
    sa.Column("question_expires_at", UtcDateTime),
    sa.Column("checkpoint", Json),
    sa.Column("stop_requested_at", UtcDateTime),  # 0014_turn_stops
    sa.Index("mcp_turns_state_lease_idx", "state", "lease_until"),
    sa.Index("mcp_turns_question_idx", "question", unique=True),
)

# A server's form question mid-call, answerable on any process; 0014_turn_stops.
turn_questions = sa.Table(
    "mcp_turn_questions",
    metadata,
    sa.Column("question_id", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("form", Json, nullable=False),
    sa.Column("answer", Json),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("mcp_turn_questions_expires_idx", "expires_at"),
)

slack_events = sa.Table(
    "mcp_slack_events",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text),
    sa.Column("received_at", UtcDateTime, nullable=False),
)

# The local credential backend's encrypted envelopes (mcp_core/credentials); 0002_credentials.
credentials = sa.Table(
    "mcp_credentials",
    metadata,
    sa.Column("ref", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("record", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Per-user OAuth sign-in (mcp_core/oauth); 0004_oauth.
oauth_pending = sa.Table(
    "mcp_oauth_pending",
    metadata,
    sa.Column("state_hash", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("connection_id", sa.Uuid, sa.ForeignKey(connections.c.id, ondelete="CASCADE"), nullable=False),
    sa.Column("credential_ref", sa.Text, nullable=False),
    sa.Column("flow", Json, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("mcp_oauth_pending_expires_idx", "expires_at"),
)

oauth_grants = sa.Table(
    "mcp_oauth_grants",
    metadata,
    sa.Column(
        "connection_id", sa.Uuid, sa.ForeignKey(connections.c.id, ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("credential_ref", sa.Text, nullable=False),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("scope", sa.Text),
    sa.Column("expires_at", UtcDateTime),
    sa.Column("lease_holder", sa.Text),
    sa.Column("lease_until", UtcDateTime),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

oauth_clients = sa.Table(
    "mcp_oauth_clients",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("server_url", sa.Text, primary_key=True),
    sa.Column("issuer", sa.Text),
    sa.Column("client_id", sa.Text, nullable=False),
    sa.Column("client_auth", sa.Text, nullable=False),
    sa.Column("credential_ref", sa.Text),
    sa.Column("added_by", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Bumped by triggers on mcp_connections (0007): who changed since version N, for other processes.
catalog_versions = sa.Table(
    "mcp_catalog_versions",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("changed_at", UtcDateTime, nullable=False),
    sa.Index("mcp_catalog_versions_version_idx", "version"),
)

# Created by migrate.py itself (it must exist before any numbered migration runs).
schema_migrations = sa.Table(
    "mcp_schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", UtcDateTime, nullable=False),
)


def _rollup_key() -> list[sa.Column[Any]]:
    return [
        sa.Column("team_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("connection_id", sa.Uuid, primary_key=True),
        sa.Column("tool_name", sa.Text, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
    ]


# Daily sums of tool calls, kept when raw rows are pruned (mcp_core.usage_rollups); 0011.
usage_daily = sa.Table(
    "mcp_usage_daily",
    metadata,
    *_rollup_key(),
    sa.Column("calls", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),
    sa.Column("latency_ms_sum", sa.Double, nullable=False),
    sa.Index("mcp_usage_daily_team_day_idx", "team_id", "day"),
)

usage_latency_daily = sa.Table(
    "mcp_usage_latency_daily",
    metadata,
    *_rollup_key(),
    sa.Column("bucket", sa.SmallInteger, primary_key=True),
    sa.Column("calls", sa.BigInteger, nullable=False),
    sa.Index("mcp_usage_latency_daily_team_day_idx", "team_id", "day"),
    sa.Index(
        "mcp_usage_latency_daily_owner_day_idx",
        *("team_id", "user_id", "day", "connection_id", "tool_name", "bucket", "calls"),
    ),
)

usage_errors_daily = sa.Table(
    "mcp_usage_errors_daily",
    metadata,
    *_rollup_key(),
    sa.Column("error_class", sa.Text, primary_key=True),
    sa.Column("calls", sa.BigInteger, nullable=False),
    sa.Index("mcp_usage_errors_daily_team_day_idx", "team_id", "day"),
    sa.Index("mcp_usage_errors_daily_team_day_cover_idx", "team_id", "day", "error_class", "calls"),
)

turns_daily = sa.Table(
    "mcp_turns_daily",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("turns", sa.BigInteger, nullable=False),
    sa.Column("answered", sa.BigInteger, nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Index("mcp_turns_daily_team_day_idx", "team_id", "day"),
    sa.Index(
        "mcp_turns_daily_team_day_cover_idx",
        *("team_id", "day", "model", "user_id", "turns", "prompt_tokens", "completion_tokens"),
    ),
)

# The newest usage chart sent to each person, linked from the App Home; 0012_admin_policy.
usage_charts = sa.Table(
    "mcp_usage_charts",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("file_id", sa.Text, nullable=False),
    sa.Column("permalink", sa.Text, nullable=False),
    sa.Column("days", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# One workspace's policy (mcp_core.policy.Policy); 0012_admin_policy.
workspace_policy = sa.Table(
    "mcp_workspace_policy",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("policy", Json, nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Policy changes and tool approvals / denials (mcp_core.audit); 0012_admin_policy.
audit_log = sa.Table(
    "mcp_audit_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("actor_id", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("detail", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("mcp_audit_log_team_created_idx", "team_id", "created_at"),
)

# A workspace's daily calls per server and tool, for /mcp admin (_rollups.server_key); 0012.
team_usage_daily = sa.Table(
    "mcp_team_usage_daily",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("server", sa.Text, primary_key=True),
    sa.Column("tool_name", sa.Text, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("calls", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),
    sa.Column("latency_ms_sum", sa.Double, nullable=False),
    sa.Index("mcp_team_usage_daily_team_day_idx", "team_id", "day"),
)

# Slack installations of a distributed app (tokens in the credential manager); 0013.
slack_installations = sa.Table(
    "mcp_slack_installations",
    metadata,
    sa.Column("client_id", sa.Text, primary_key=True),
    sa.Column("enterprise_id", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("is_enterprise_install", sa.Boolean, nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.Column("credential_ref", sa.Text, nullable=False),
    sa.Column("installed_at", UtcDateTime, nullable=False),
    sa.Index("mcp_slack_installations_newest_idx", "client_id", "enterprise_id", "team_id", "installed_at"),
)

slack_oauth_states = sa.Table(
    "mcp_slack_oauth_states",
    metadata,
    sa.Column("state", sa.Text, primary_key=True),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)

# Which Enterprise Grid org a workspace is in, as its requests said; 0013.
slack_workspaces = sa.Table(
    "mcp_slack_workspaces",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("enterprise_id", sa.Text, nullable=False),
    sa.Column("seen_at", UtcDateTime, nullable=False),
)

# Workspaces whose people's data is deleted after the grace period; 0013.
workspace_removals = sa.Table(
    "mcp_workspace_removals",
    metadata,
    sa.Column("enterprise_id", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("removed_at", UtcDateTime, nullable=False),
    sa.Column("purge_after", UtcDateTime, nullable=False),
)
