"""Typed objects handed between layers: connections, tools, results, usage rows.

Each step of a flow passes the next one of these rather than a dict of dicts. Secrets are
never part of a stored model; they are joined in only when a session is opened
(``SessionSpec``), and ``SessionSpec.__repr__`` hides them.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mcp_core.connection_config import ConnectionConfig
from mcp_core.rich_results import RichPart
from mcp_core.settings import CALL_TIMEOUT_S, CONNECT_TIMEOUT_S

__all__ = [
    "CONNECTION_NAME_RE",
    "AnswerFeedback",
    "ApprovalPolicy",
    "AuditEntry",
    "CatalogEntry",
    "Connection",
    "ConnectionStatus",
    "InstallationRecord",
    "NewConnection",
    "SessionSpec",
    "ToolInfo",
    "ToolPrefs",
    "ToolResult",
    "Transport",
    "TurnRecord",
    "TurnUsage",
    "UsageChart",
    "UsageRecord",
    "Vote",
    "normalize_connection_name",
]

Transport = Literal["stdio", "sse", "streamable_http"]
ApprovalPolicy = Literal["writes", "always", "never"]
"""Which of a connection's tools ask the person first: those that may write, all, or none."""

# Connection names become the prefix of tool names the LLM sees, so they must be short and
# made of characters OpenAI function names allow; lower case makes matching case-insensitive.
CONNECTION_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def normalize_connection_name(name: str) -> str:
    """Return the canonical (lower-case, trimmed) form of a connection name.

    Raises:
        ValueError: the name is empty, too long or uses characters other than a-z, 0-9, _ and -.
    """
    canonical = name.strip().lower()
    if not CONNECTION_NAME_RE.fullmatch(canonical):
        raise ValueError(
            "Connection names are 1–32 characters: letters, digits, “-” and “_”, "
            "starting with a letter or digit."
        )
    return canonical


class ConnectionStatus(StrEnum):
    NEW = "new"
    HEALTHY = "healthy"
    ERROR = "error"
    NEEDS_AUTH = "needs_auth"


class ToolInfo(BaseModel):
    """One tool as a server listed it, trimmed to what the bot uses."""

    model_config = ConfigDict(frozen=True)

    name: str
    title: str | None = None
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    read_only: bool | None = None
    destructive: bool | None = None
    idempotent: bool | None = None
    open_world: bool | None = None
    task_support: Literal["forbidden", "optional", "required"] | None = None
    """``execution.taskSupport`` (2025-11-25): whether the server runs calls of it as tasks
    (``mcp_core._tasks``). Not in the fingerprint: how a call runs, not what it does."""

    @property
    def fingerprint(self) -> str:
        """A digest of everything the server says about the tool besides its name: what an
        *Always allow* was given for (``ToolPrefs``). Not cached: ``model_copy`` would carry a
        cached digest over to a changed copy."""
        said = [self.title, self.description, self.input_schema]
        said += [self.read_only, self.destructive, self.idempotent, self.open_world]
        canonical = json.dumps(said, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    @property
    def always_asks(self) -> bool:
        """The server says the tool may delete or overwrite things, so every call is asked
        about, *Always allow* or not: a claim that only makes the bot more careful needs no
        trust. (A tool that says nothing is not taken as destructive, or nothing could be.)"""
        return self.destructive is True and self.read_only is not True


class ToolPrefs(BaseModel):
    """A person's choices about their connection's tools, by the server's tool names.

    ``off``: never offered to the model and never run. ``always``: runs without asking
    (``mcp_core.agent.needs_approval``), except where someone else wrote in the thread — for
    the tool *as it was* when the person chose it: each name keeps the tool's
    ``ToolInfo.fingerprint``, and a server that later changes the tool's description, schema
    or hints (a harmless "read" turned into something else) is asked about again.
    Stored on the connection row (``mcp_connections.tool_prefs``), so the catalog needs no
    other read; names of tools the server stopped listing are kept for when they return.
    """

    model_config = ConfigDict(frozen=True)

    off: frozenset[str] = frozenset()
    always: Mapping[str, str] = Field(default_factory=dict)
    """Tool name → the fingerprint of the definition the person allowed."""

    @field_validator("always", mode="before")
    @classmethod
    def _names_only(cls, value: Any) -> Any:
        """Names without a fingerprint (a list) match no definition: they ask again."""
        return dict.fromkeys(value, "") if isinstance(value, list | set | frozenset) else value

    def allows(self, tool: ToolInfo) -> bool:
        """The person chose *Always allow* for exactly this definition of ``tool``."""
        return self.always.get(tool.name) == tool.fingerprint

    def with_choice(
        self, kind: Literal["off", "always"], tool: str, chosen: bool, *, fingerprint: str = ""
    ) -> ToolPrefs:
        """These prefs with ``tool`` added to (``chosen``) or removed from ``kind``;
        ``fingerprint``: the definition allowed, for ``always``."""
        if kind == "off":
            return self.model_copy(update={"off": self.off | {tool} if chosen else self.off - {tool}})
        always = {name: pin for name, pin in self.always.items() if name != tool}
        if chosen:
            always[tool] = fingerprint
        return self.model_copy(update={"always": always})

    def stored(self) -> dict[str, Any]:
        """The JSON kept in the store (sorted, so equal prefs are equal documents)."""
        return {"off": sorted(self.off), "always": dict(sorted(self.always.items()))}


class NewConnection(BaseModel):
    """What a user asks for when connecting a server; non-secret parts only.

    ``config`` is the non-secret settings as stored (JSON), validated on the way in by
    :class:`~mcp_core.connection_config.ConnectionConfig` and read through ``typed_config``.
    Secret values live in the credential store under keys such as ``header:Authorization``
    (a :class:`~mcp_core.connection_config.SecretTarget`) and are joined in only when a
    session opens.
    """

    name: str
    transport: Transport
    url: str | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    card_id: str | None = None
    credential_ref: str | None = None

    @field_validator("name")
    @classmethod
    def _canonical_name(cls, value: str) -> str:
        return normalize_connection_name(value)

    @field_validator("config")
    @classmethod
    def _typed_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        return ConnectionConfig.model_validate(value).stored()

    @property
    def typed_config(self) -> ConnectionConfig:
        """``config`` as its model (validated when the connection was made)."""
        return ConnectionConfig.model_validate(self.config)

    def model_post_init(self, _context: Any) -> None:
        if self.transport == "stdio" and not self.command:
            raise ValueError("A stdio connection needs a command.")
        if self.transport != "stdio" and not self.url:
            raise ValueError("A remote connection needs a URL.")


class Connection(NewConnection):
    """A stored connection, always owned by exactly one (team, user)."""

    id: uuid.UUID
    team_id: str
    user_id: str
    status: ConnectionStatus = ConnectionStatus.NEW
    status_detail: str | None = None
    tools: list[ToolInfo] = Field(default_factory=list)
    tool_prefs: ToolPrefs = Field(default_factory=ToolPrefs)
    last_verified_at: datetime | None = None
    last_used_at: datetime | None = None
    usage_count: int = 0
    created_at: datetime
    updated_at: datetime

    @property
    def needs_sign_in(self) -> bool:
        """Refused, and the fix is to sign in with OAuth again (not to paste a new token):
        the connection signs in with OAuth (an ``auth: oauth`` card, or a server that asked),
        as a person (a machine client's fix is new client credentials)."""
        oauth = self.typed_config.oauth
        return (
            self.status == ConnectionStatus.NEEDS_AUTH
            and oauth is not None
            and oauth.grant == "authorization_code"
        )


class SessionSpec(BaseModel):
    """Everything needed to open one live session, secrets included. Never logged or stored."""

    model_config = ConfigDict(frozen=True)

    connection_id: uuid.UUID
    name: str
    transport: Transport
    url: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    call_timeout_s: float = CALL_TIMEOUT_S
    protocol_mode: Literal["auto", "legacy"] = "auto"
    secret_values: tuple[str, ...] = ()
    """Every secret joined into env, headers or the URL, so error texts can be scrubbed of them."""
    http_auth: Any = Field(default=None, exclude=True, repr=False)
    """An ``httpx2.Auth`` for a remote session (``mcp_core.oauth.GrantProvider``), or None."""

    def __repr__(self) -> str:
        return f"SessionSpec(name={self.name!r}, transport={self.transport!r}, id={self.connection_id})"

    __str__ = __repr__


class CatalogEntry(BaseModel):
    """A tool as the LLM sees it: a unique function name mapped back to (connection, tool),
    with its connection's approval policy (its run card's) and the person's *Always allow*,
    so a turn needs nothing else. Tools the person switched off have no entry."""

    model_config = ConfigDict(frozen=True)

    name: str
    connection_id: uuid.UUID
    connection_name: str
    tool: ToolInfo
    approval: ApprovalPolicy = "writes"
    """The run card's policy (``mcp_core.agent.needs_approval``)."""
    always_allowed: bool = False
    """The person chose *Always allow* for this tool of this connection (``ToolPrefs.always``)."""


class ToolResult(BaseModel):
    """A tool's answer flattened to text for Slack and the LLM, capped in size; ``rich``: what
    the person sees of it besides (images, links, records: ``mcp_core.rich_results``), which
    the model never reads."""

    text: str
    is_error: bool = False
    truncated: bool = False
    structured: Any = None
    latency_ms: float = 0.0
    rich: tuple[RichPart, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecord:
    """One tool call for analytics. Never holds arguments, results or secrets.

    A plain dataclass, not a pydantic model: one is built on every tool call from values the
    registry already holds, and validating them cost ~8 µs of that call (timed in the real loop)."""

    team_id: str
    user_id: str
    connection_id: uuid.UUID | None
    tool_name: str
    latency_ms: float
    success: bool
    error_class: str | None = None
    error_message: str | None = None
    created_at: datetime
    server: str | None = None
    """The connection's server key (``mcp_core.store._rollups.server_key``) when the caller
    knows it; else the usage writer looks it up."""


class TurnUsage(BaseModel):
    """What one agent turn cost: its model rounds, the tokens the API's ``usage`` reported,
    and the calls of the person's tools it made (``find_tools`` is the agent's own)."""

    model_config = ConfigDict(frozen=True)

    model: str
    rounds: int = Field(default=0, ge=0)
    prompt_tokens: int | None = Field(default=0, ge=0)
    completion_tokens: int | None = Field(default=0, ge=0)
    """Sums over the turn's rounds; None once a round's answer reported no usage (some
    OpenAI-compatible servers never do), so a number is always the whole turn's."""
    tool_calls: int = Field(default=0, ge=0)
    answered: bool = False
    """False for a turn that ended in an error after some rounds (their tokens were spent)."""

    def plus(self, tokens: tuple[int, int] | None) -> TurnUsage:
        """This usage with one more round's (prompt, completion) tokens; None: not reported."""
        if tokens is None or self.prompt_tokens is None or self.completion_tokens is None:
            return self.model_copy(update={"prompt_tokens": None, "completion_tokens": None})
        prompt, completion = tokens
        return self.model_copy(
            update={
                "prompt_tokens": self.prompt_tokens + prompt,
                "completion_tokens": self.completion_tokens + completion,
            }
        )


class TurnRecord(TurnUsage):
    """One agent turn of one person, for analytics. Never holds the conversation."""

    team_id: str
    user_id: str
    created_at: datetime
    turn_id: str | None = None
    """The turn's own id (what its answer's feedback buttons carry), when the surface gave one."""


Vote = Literal["up", "down"]


class AnswerFeedback(BaseModel):
    """One person's 👍 or 👎 on one answer (a turn), changeable: the latest click counts."""

    model_config = ConfigDict(frozen=True)

    team_id: str
    turn_id: str
    user_id: str
    """Who voted (the verified clicker), not necessarily who asked."""
    vote: Vote
    updated_at: datetime


class UsageChart(BaseModel):
    """The newest usage chart sent to one person: a PNG of their calls and errors per day,
    uploaded into their DM with the bot, which the App Home links to."""

    model_config = ConfigDict(frozen=True)

    team_id: str
    user_id: str
    file_id: str
    """Slack's id of the uploaded file."""
    permalink: str
    """Slack's link to the file ("" when Slack's answer had none)."""
    days: int
    """The window it shows: 7 or 30 days."""
    created_at: datetime


class AuditEntry(BaseModel):
    """One line of a workspace's audit log (``mcp_core.audit``): never a secret."""

    id: int
    team_id: str
    actor_id: str
    action: str
    """``policy_changed``, ``tool_approved`` or ``tool_denied``."""
    detail: dict[str, Any]
    created_at: datetime


class InstallationRecord(BaseModel):
    """One installation of a distributed Slack app (migration 0013), as stored: never a token.
    ``enterprise_id`` / ``team_id`` are '' for none (``team_id`` '' is an org-wide install)."""

    client_id: str
    enterprise_id: str
    team_id: str
    user_id: str
    """Who installed it."""
    is_enterprise_install: bool
    data: dict[str, Any]
    """Bolt's Installation fields other than tokens (names, app and bot ids, scopes, expiry)."""
    credential_ref: str
    """The tokens, in the credential manager."""
    installed_at: datetime
