"""Every knob, read from the environment or ``.env`` (pydantic-settings).

Names are the environment variable names, upper-cased. Secrets are ``SecretStr`` so they
print as ``**********`` everywhere, including ``slack-mcp-bot check``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["CONNECT_TIMEOUT_S", "Settings", "parse_prices"]

CONNECT_TIMEOUT_S = 15.0
CALL_TIMEOUT_S = 60.0
IDLE_TIMEOUT_S = 15 * 60.0
MAX_LIVE_SESSIONS = 50
MAX_OUTPUT_CHARS = 100_000
LLM_TIMEOUT_S = 60.0
MAX_AGENT_STEPS = 8
"""Model rounds per turn before the model must answer with what it has."""
APPROVAL_TIMEOUT_S = 10 * 60.0
"""How long an Approve/Deny question waits; no answer counts as Deny."""
ELICITATION_TIMEOUT_S = 5 * 60.0
"""How long a server's question (elicitation) waits for the person; no answer is a cancel."""
TASK_TIMEOUT_S = 30 * 60.0
"""A tool the server runs as a task (long jobs) may take this long in all, then is cancelled."""
MAX_AGENT_TOOLS = 128
"""Tools one model request offers at most: OpenAI refuses more than 128 (HTTP 400)."""
TOOL_PRESELECT_ABOVE = 40
"""Above this many tools a request offers the best-ranked ones and ``find_tools``: models
choose worse past 30–50 tools (mcp_core.tool_selection)."""
MAX_INPUT_TOKENS = 64_000
"""A model request's input at most (estimated): half of gpt-4o-mini's 128k context, the rest
left for the answer and for estimates that run short (mcp_core.conversation_budget)."""
PARALLEL_CALLS = 8
"""Read-only tool calls of one model answer that run at the same time (mcp_core.agent)."""
HISTORY_MESSAGES = 30
"""Thread messages (newest) the agent reads as the conversation."""
MAX_CONNECTIONS_PER_USER = 10
"""Connections one person may keep (the origin documents' suggestion)."""
MAX_TURNS_PER_USER = 2
"""Agent answers one person may have in progress at once (in this process)."""
MAX_CALLS_PER_MINUTE = 60
"""Tool calls one person may make in any 60 s (in this process)."""
STDIO_MEMORY_MB = 16384
"""Address-space limit of a stdio server. V8 reserves far more than it uses: node 20 starts
in ~1 GB, and its built-in ``fetch`` (undici's llhttp is WebAssembly) reserves ~10 GB more,
so any node server making an HTTP request needs at least 11264 (measured; see mcp_core.sandbox)."""
STDIO_CPU_S = 3600
"""CPU seconds a stdio server may use over its life (idle sessions are closed and restarted)."""
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
"""Largest image from a tool result that is uploaded into the answer's thread."""
TURN_LEASE_S = 30.0
"""How long a turn's owner holds it without renewing (renewed every third of it); past it
another process closes the turn as interrupted (mcp_core.turn_journal)."""
TURN_DRAIN_S = 20.0
"""On SIGTERM, how long running turns get to finish before they are closed as interrupted."""
STDIO_MAX_FILES = 1024
STDIO_MAX_PROCESSES = 256

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def parse_prices(text: str) -> dict[str, tuple[float, float]]:
    """``MODEL_PRICES``: ``model=prompt/completion,…`` in US dollars per million tokens.

    Raises:
        ValueError: an entry is not ``name=number/number`` with numbers ≥ 0.
    """
    prices: dict[str, tuple[float, float]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = entry.partition("=")
        prompt, _, completion = value.partition("/")
        try:
            pair = (float(prompt), float(completion))
        except ValueError:
            raise ValueError(f"MODEL_PRICES entry {entry!r} is not model=prompt/completion") from None
        if not name.strip() or min(pair) < 0:
            raise ValueError(f"MODEL_PRICES entry {entry!r} is not model=prompt/completion")
        prices[name.strip()] = pair
    return prices


class Settings(BaseSettings):
    """The bot's configuration. Build with ``Settings()``; tests pass values directly."""

    # env_ignore_empty: `SLACK_BOT_TOKEN=` or `PORT=` (a line uncommented, not filled in) means
    # "not set" — the default, or "missing" in `check` — never an empty token sent to Slack.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str | None = Field(default=None, description="Web API base URL override")
    slack_client_id: str | None = Field(
        default=None, description="distributed app (with the secret, no bot token): OAuth install flow"
    )
    slack_client_secret: SecretStr | None = None
    slack_install_redirect_url: str | None = Field(
        default=None, description="the install flow's redirect URL (…/slack/oauth_redirect)"
    )
    slack_uninstall_grace_days: int = Field(
        default=30, ge=0, le=365, description="an uninstalled workspace's data goes this many days later"
    )
    port: int = Field(default=3000, ge=1, le=65535, description="HTTP mode's port; --port wins")
    slack_streaming: bool = Field(
        default=True, description="stream answers with task cards (chat.startStream); off: edit one message"
    )
    slack_agent_sessions: bool = Field(
        default=True, description="agent session status and Slack's Stop button (app declared as an agent)"
    )
    slack_status_refresh_s: float = Field(
        default=60.0, gt=0, le=110, description="status line and a running call's card re-sent this often"
    )

    @property
    def multi_workspace(self) -> bool:
        """A distributed app: installed per workspace through the OAuth flow (client id and
        secret set, no SLACK_BOT_TOKEN; a bot token keeps single-workspace mode as before)."""
        return bool(self.slack_client_id and self.slack_client_secret and not self.slack_bot_token)

    # Storage
    data_dir: Path = Path("./data")
    database_url: SecretStr | None = Field(
        default=None, description="postgresql://… for PostgreSQL/Supabase; default SQLite in DATA_DIR"
    )

    # Credentials
    credential_backend: Literal["local", "gcp", "aws", "supabase"] | None = None
    credential_keys: SecretStr | None = None
    google_cloud_project: str | None = Field(default=None, description="GCP project of Secret Manager")
    aws_secrets_prefix: str = Field(
        default="slack-mcp-bot/", description="name prefix in AWS Secrets Manager"
    )

    # LLM
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout_s: float = Field(default=LLM_TIMEOUT_S, gt=0)
    agent_max_steps: int = Field(default=MAX_AGENT_STEPS, ge=1, le=50)
    agent_approval_timeout_s: float = Field(default=APPROVAL_TIMEOUT_S, gt=0)
    elicitation_timeout_s: float = Field(default=ELICITATION_TIMEOUT_S, gt=0)
    agent_max_tools: int = Field(default=MAX_AGENT_TOOLS, ge=2, description="tools per model request")
    agent_tool_preselect_above: int = Field(default=TOOL_PRESELECT_ABOVE, ge=2)
    agent_history_messages: int = Field(default=HISTORY_MESSAGES, ge=1, le=200)
    agent_max_input_tokens: int = Field(default=MAX_INPUT_TOKENS, ge=1000)
    agent_parallel_calls: int = Field(default=PARALLEL_CALLS, ge=1, le=32)
    agent_max_turns_per_user: int = Field(default=MAX_TURNS_PER_USER, ge=1)
    turn_lease_s: float = Field(
        default=TURN_LEASE_S, ge=0.3, le=3600, description="a turn's lease; renewed every third of it"
    )
    turn_drain_s: float = Field(
        default=TURN_DRAIN_S, ge=0, le=3600, description="SIGTERM: running turns get this long to finish"
    )

    # OAuth sign-in to remote MCP servers (mcp_core.oauth)
    oauth_redirect_url: str | None = Field(
        default=None,
        description="public https URL of /oauth/callback; default http://localhost:<port>/oauth/callback",
    )
    oauth_port: int = Field(
        default=3001, ge=1, le=65535, description="Socket Mode's OAuth callback listener port"
    )

    # People and policy
    admin_user_ids: CommaList = Field(default_factory=list)
    run_cards_dir: Path | None = None
    mcp_allowed_hosts: CommaList = Field(default_factory=list)

    # MCP connection pool
    mcp_connect_timeout_s: float = Field(default=CONNECT_TIMEOUT_S, gt=0)
    mcp_call_timeout_s: float = Field(default=CALL_TIMEOUT_S, gt=0)
    mcp_task_timeout_s: float = Field(default=TASK_TIMEOUT_S, gt=0)
    usage_retention_days: int = Field(default=90, ge=1, le=3650)
    model_prices: str = ""
    mcp_idle_timeout_s: float = Field(default=IDLE_TIMEOUT_S, gt=0)
    mcp_max_sessions: int = Field(default=MAX_LIVE_SESSIONS, ge=1)
    mcp_max_output_chars: int = Field(default=MAX_OUTPUT_CHARS, ge=1000)
    mcp_max_connections_per_user: int = Field(default=MAX_CONNECTIONS_PER_USER, ge=1)
    mcp_max_calls_per_minute: int = Field(default=MAX_CALLS_PER_MINUTE, ge=1)
    max_upload_bytes: int = Field(
        default=MAX_UPLOAD_BYTES, ge=1024, le=1024**3, description="largest tool-result image uploaded"
    )

    # Sandbox of local (stdio) servers
    mcp_stdio_sandbox: Literal["auto", "bwrap", "rlimits", "off"] = "auto"
    mcp_stdio_memory_mb: int = Field(default=STDIO_MEMORY_MB, ge=64)
    mcp_stdio_cpu_s: int = Field(default=STDIO_CPU_S, ge=1)
    mcp_stdio_max_files: int = Field(default=STDIO_MAX_FILES, ge=16)
    mcp_stdio_max_processes: int = Field(default=STDIO_MAX_PROCESSES, ge=1)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one line for people; json: one JSON object per line (mcp_core.logs)",
    )

    _split = field_validator("admin_user_ids", "mcp_allowed_hosts", mode="before")(_split_commas)

    @field_validator("model_prices")
    @classmethod
    def _valid_prices(cls, text: str) -> str:
        parse_prices(text)
        return text

    @field_validator("mcp_allowed_hosts")
    @classmethod
    def _valid_hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if "/" in host:
                try:
                    ipaddress.ip_network(host, strict=False)
                except ValueError as exc:
                    raise ValueError(f"MCP_ALLOWED_HOSTS: {host!r} is not a valid CIDR") from exc
        return [h.lower() for h in hosts]

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: asyncpg for PostgreSQL, aiosqlite file in DATA_DIR otherwise."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'slack-mcp-bot.db').resolve()}"
        url = self.database_url.get_secret_value()
        for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        if url.startswith("sqlite"):
            return url.replace("sqlite://", "sqlite+aiosqlite://", 1) if "+aiosqlite" not in url else url
        raise ValueError("DATABASE_URL must start with postgresql:// or sqlite://")
