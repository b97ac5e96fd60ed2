"""The composition root: build every real component from ``Settings`` in one place.

Tests build the same ``Services`` with their own parts (a temporary database, a secret
source of their own) through the keyword arguments. Without a secret source of their own,
secrets live in the local credential backend on the same database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

from openai import AsyncOpenAI
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core._transports import OpenTransport
from mcp_core.agent import Agent
from mcp_core.connection_service import ConnectionService
from mcp_core.connections import ConnectionPool
from mcp_core.credentials import CredentialStore, Keyring, detect_backend, open_backend, preflight
from mcp_core.credentials.keys import load_keyring
from mcp_core.errors import ConfigError
from mcp_core.kept_questions import KeptQuestions
from mcp_core.metrics import Metrics
from mcp_core.oauth import GrantStore, OAuthFlows, default_redirect_url
from mcp_core.policy import PolicyCache
from mcp_core.registry import SecretSource, ToolRegistry
from mcp_core.sandbox import StdioSandbox
from mcp_core.settings import Settings
from mcp_core.store import ConnectionChanges, Store, create_engine, migrate, watch_connection_changes
from mcp_core.store._turns import TurnStore
from mcp_core.turn_journal import TurnJournal
from mcp_core.usage import UsagePruner, UsageRecorder

logger = logging.getLogger(__name__)

__all__ = ["LLM_MAX_RETRIES", "Services", "build_services"]

LLM_MAX_RETRIES = 2
"""Model requests change nothing, so the OpenAI client may retry them (with its own backoff)."""


@dataclass
class Services:
    settings: Settings
    store: Store
    pool: ConnectionPool
    usage: UsageRecorder
    registry: ToolRegistry
    oauth: OAuthFlows
    credentials: CredentialStore | None = None
    """Where the bot puts and deletes users' secrets: the local backend unless the caller
    passed ``secrets``; then that source if it is a full ``CredentialStore`` (put/get/delete),
    else None (a read-only test source)."""
    agent: Agent | None = None
    """The LLM agent; None without OPENAI_API_KEY (mentions and DMs then say so)."""
    turns: TurnJournal | None = None
    """The turns in progress, in the database, and the sweeper that closes other processes'
    interrupted ones (started by the Slack side, which knows how to close them)."""
    changes: ConnectionChanges | None = None
    """Tells the registry about other processes' connection changes (its catalogs are cached
    until they change)."""
    _engine: AsyncEngine | None = None
    _llm: AsyncOpenAI | None = None
    _owns_credentials: bool = False
    """True when ``credentials`` was opened here (not passed in as ``secrets``)."""
    pruner: UsagePruner | None = None
    """Deletes raw usage rows past USAGE_RETENTION_DAYS (the daily rollups stay)."""
    metrics: Metrics = field(default_factory=Metrics)
    """What ``/metrics`` serves: this bot's own registry (several bots in one process, as in
    tests, each count their own), fed by the pool, the registry, the agent and the Slack edge."""

    @cached_property
    def policies(self) -> PolicyCache:
        """Workspace policies as the agent's hot path reads them (cached briefly)."""
        return PolicyCache(self.store)

    @cached_property
    def connections(self) -> ConnectionService:
        """Connect, edit, disconnect and test, on these parts (tests' own parts included)."""
        return ConnectionService(self.store, self.registry, self.credentials, self.settings, self.oauth)

    @cached_property
    def checkpoint_keys(self) -> Keyring | None:
        """The keyring that seals waiting turns' checkpoints (``mcp_core.turn_checkpoint``):
        the credential keyring (CREDENTIAL_KEYS or DATA_DIR's key file). None when there is
        none (a cloud backend without local keys): questions are then answered only on the
        process that asked."""
        try:
            return load_keyring(self.settings)
        except ConfigError:
            return None

    @cached_property
    def kept_questions(self) -> KeptQuestions | None:
        """Servers' form questions mid-call, answerable on any process (``mcp_core.kept_questions``);
        None without a turn journal or a keyring (they are then answered where asked)."""
        keys = self.checkpoint_keys
        if self.turns is None or keys is None:
            return None
        return KeptQuestions(self.store.engine, keys)

    async def aclose(self) -> None:
        """Close sessions (reaping children), flush usage, then release the credential backend,
        LLM client and engine we made (the engine last: the backend may borrow it). Safe to
        call twice."""
        if self.changes is not None:
            await self.changes.aclose()
        if self.turns is not None:
            await self.turns.aclose()
        await self.pool.aclose()
        if self.pruner is not None:
            await self.pruner.aclose()
        await self.usage.aclose()
        await self.oauth.aclose()
        if self._owns_credentials and self.credentials is not None:
            await self.credentials.aclose()
        if self._llm is not None:
            await self._llm.close()
        if self._engine is not None:
            await self._engine.dispose()


async def build_services(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    secrets: SecretSource | None = None,
    run_migrations: bool = True,
    open_transport: OpenTransport | None = None,
    oauth_redirect_url: str | None = None,
) -> Services:
    """Wire the real store, credentials, pool, usage recorder and registry; migrate first.

    With ``secrets`` None the credential backend is chosen by CREDENTIAL_BACKEND or detected
    from the environment (``mcp_core.credentials.backends``); the local one keeps its master
    key in CREDENTIAL_KEYS or DATA_DIR/credential.key (generated, with a WARNING, once).

    Raises:
        ConfigError: the chosen credential backend cannot work with this configuration, or the
            credential keys are malformed or unsafe (checked before the database is touched).
        StoreError: the database is unreachable or a migration failed.

    ``open_transport`` replaces how the pool reaches servers (tests: in-memory SDK servers).
    ``oauth_redirect_url`` is where sign-ins come back (default: ``OAUTH_REDIRECT_URL``, else
    the local callback on ``OAUTH_PORT``; HTTP mode passes its own port's).
    """
    selection = None
    if secrets is None:
        selection = detect_backend(settings)
        preflight(selection, settings)
    owned = engine is None
    engine = engine or create_engine(settings)
    if run_migrations:
        applied = await migrate(engine)
        if applied:
            logger.info("applied database migrations %s", applied)
    store = Store(engine)
    credentials: CredentialStore | None
    if selection is not None:
        credentials = await open_backend(selection, settings, engine)
        logger.info("credential backend: %s (%s)", selection.backend, selection.reason)
        secrets = credentials
    else:
        credentials = secrets if isinstance(secrets, CredentialStore) else None
    usage = UsageRecorder(store)
    pruner = UsagePruner(store, settings.usage_retention_days)
    metrics = Metrics()
    pool = ConnectionPool(
        idle_timeout_s=settings.mcp_idle_timeout_s,
        max_sessions=settings.mcp_max_sessions,
        elicitation_timeout_s=settings.elicitation_timeout_s,
        task_timeout_s=settings.mcp_task_timeout_s,
        sandbox=StdioSandbox.from_settings(settings),
        open_transport=open_transport,
    )
    redirect = oauth_redirect_url or default_redirect_url(settings)
    oauth = OAuthFlows(GrantStore(engine, credentials), store, settings, redirect)
    metrics.observe_sessions(pool.live_by_transport)
    registry = ToolRegistry(store, pool, usage, settings, secrets, oauth=oauth, metrics=metrics)
    pool.on_tools_changed = registry.on_tools_changed
    changes = await watch_connection_changes(engine, registry)
    llm = agent = None
    if settings.openai_api_key is not None:
        llm = AsyncOpenAI(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            timeout=settings.openai_timeout_s,
            max_retries=LLM_MAX_RETRIES,
        )
        agent = Agent(
            llm,
            settings.openai_model,
            max_steps=settings.agent_max_steps,
            max_tools=settings.agent_max_tools,
            preselect_above=settings.agent_tool_preselect_above,
            max_input_tokens=settings.agent_max_input_tokens,
            parallel_calls=settings.agent_parallel_calls,
            metrics=metrics,
        )
    pruner.start()  # last: nothing above can fail and leave it running
    return Services(
        settings,
        store,
        pool,
        usage,
        registry,
        oauth,
        credentials,
        agent,
        TurnJournal(
            TurnStore(engine),
            lease_s=settings.turn_lease_s,
            sole_process=engine.dialect.name == "sqlite",
        ),
        changes,
        engine if owned else None,
        llm,
        _owns_credentials=selection is not None,
        pruner=pruner,
        metrics=metrics,
    )
