"""The Bolt app, put together: middleware, then each surface's listeners.

Who is asking is always the verified request's team and user (Bolt has checked the
signature, or the Socket Mode connection is ours); ids carried in button values and in a
modal's private_metadata are only looked up *within* that user's connections, so a crafted
payload naming someone else's connection finds nothing and is refused.

Where each listener lives: ``/mcp`` in ``bot.commands``, connection buttons in
``bot.buttons``, the connect flow in ``bot.connect`` (and an admin's OAuth client form in
``bot.admin_clients``), ``/mcp admin`` and the workspace policy in ``bot.admin``, the Home
tab in ``bot.home`` and its usage chart in ``bot.usage_chart``, mentions, DMs and approvals
in ``bot.chat`` and ``bot.approvals``.
The browser's side of an OAuth sign-in is not Slack's and not Bolt's: ``bot.oauth_web``
(served by ``bot.runner``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.web.async_client import AsyncWebClient

from bot._respond import SharedSession
from bot.admin import AdminPanel, register_admin
from bot.admin_access import SlackRoles
from bot.admin_clients import register_admin_clients
from bot.buttons import register_buttons
from bot.chat import register_chat
from bot.commands import register_commands
from bot.connect import register_connect
from bot.distribution import Distribution, register_distribution
from bot.failures import Failures
from bot.feedback import register_feedback
from bot.home import Home, register_home
from bot.middleware import OwnedConnection, install_middleware
from bot.replies import Replies
from bot.usage_chart import register_usage_chart
from bot.workspaces import workspace_token_middleware
from mcp_core.oauth import PreRegisteredClient
from mcp_core.services import Services
from mcp_core.settings import Settings
from run_cards import CardCatalog, OperatorValues, RunCard, read_operator_values
from run_cards.oauth_clients import read_oauth_clients

logger = logging.getLogger(__name__)

__all__ = ["create_app"]


def create_app(
    services: Services,
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    cards: CardCatalog,
    responses: SharedSession | None = None,
    operator_values: OperatorValues | None = None,
    oauth_clients: Mapping[str, PreRegisteredClient] | None = None,
    distribution: Distribution | None = None,
) -> AsyncApp:
    """Build the app. ``client`` carries the bot token and the Web API base URL.

    ``cards`` is the run-card catalog, loaded once by the caller; each card's approval policy
    goes to the registry's catalog entries. ``operator_values`` pre-fill card fields for
    admins (read from ``./.env`` when None; see ``run_cards.operator``). ``oauth_clients`` are
    the operator's pre-registered OAuth clients by card (``OAUTH_<CARD>_CLIENT_ID`` / ``_SECRET``
    from the environment and ``./.env`` when None; see ``run_cards.oauth_clients``).

    ``signing_secret`` None means Socket Mode, where requests are not signed. ``responses`` is
    the HTTP session replies to response_url go through; the caller closes it on shutdown.
    """
    app = _bolt_app(client, signing_secret, distribution)
    store, settings = services.store, services.settings
    services.registry.use_card_approvals({card.id: card.approval for card in cards.all()})
    services.oauth.use_clients(read_oauth_clients(cards.all()) if oauth_clients is None else oauth_clients)
    if operator_values is None:
        operator_values = read_operator_values(cards.all(), Path(".env"))
    if operator_values and not settings.admin_user_ids:
        logger.warning("MCP_<CARD>_<FIELD> values in .env go to admins only, and ADMIN_USER_IDS is empty")

    replies = Replies(client)
    failures = Failures(replies)
    home = Home(store, client)
    owned = OwnedConnection(store, replies, failures)
    roles = SlackRoles(client, settings.admin_user_ids)
    admin = AdminPanel(services, client, roles, cards, replies)
    failures.install(app)
    turns = services.turns
    install_middleware(
        app,
        store=store,
        responses=responses or SharedSession(),
        signed=signing_secret is not None,
        draining=(lambda: turns.draining) if turns is not None else (lambda: False),
    )
    open_connect = register_connect(
        app,
        services=services,
        client=client,
        cards=cards,
        operator_fields=_operator_fields(settings, operator_values),
        replies=replies,
        home=home,
        owned=owned,
        failures=failures,
        roles=roles,
    )
    register_commands(
        app, services=services, home=home, open_connect=open_connect, admin=admin, failures=failures
    )
    register_admin(app, admin, failures)
    register_buttons(app, services=services, replies=replies, home=home, owned=owned, failures=failures)
    register_admin_clients(
        app, services=services, client=client, replies=replies, home=home, owned=owned, failures=failures
    )
    if distribution is not None:
        register_distribution(app, distribution, services)
    register_home(app, home, failures)
    register_usage_chart(app, services=services, client=client, replies=replies, home=home, failures=failures)
    register_chat(app, services, client, replies)
    register_feedback(app, store)
    return app


def _bolt_app(
    client: AsyncWebClient, signing_secret: str | None, distribution: Distribution | None
) -> AsyncApp:
    """Bolt's app, without its token warning.

    Given no token, Bolt falls back to $SLACK_BOT_TOKEN and then warns that the client's token
    wins over it. The client carries that same token, so the warning is noise; no argument
    avoids Bolt's fallback, hence the filter around the construction alone.
    """
    bolt_logger = logging.getLogger("slack_bolt.AsyncApp")

    def not_token_skipped(record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()

    bolt_logger.addFilter(not_token_skipped)
    distributed: dict[str, Any] = {}
    if distribution is not None:  # each request's installation, found by Bolt's authorize
        distributed = {
            "oauth_settings": distribution.oauth_settings(),
            "installation_store": distribution.installs,
            "installation_store_bot_only": True,
        }
    try:
        app = AsyncApp(
            client=client,
            signing_secret=signing_secret or "socket-mode-does-not-sign",
            request_verification_enabled=signing_secret is not None,
            ignoring_self_events_enabled=True,
            **distributed,
        )
    finally:
        bolt_logger.removeFilter(not_token_skipped)
    if distribution is not None:
        workspaces = distribution.workspaces

        async def workspace_token(context: Any, body: dict[str, Any], next: Any) -> None:
            await workspaces.seen(context.get("team_id") or "", context.get("enterprise_id") or "")
            await workspace_token_middleware(context, body, next)

        app.middleware(workspace_token)
    return app


def _operator_fields(settings: Settings, values: OperatorValues) -> Callable[[str, RunCard], dict[str, str]]:
    """The operator's pre-fill values of a card, for admins only (they are the operator's)."""

    def operator_fields(user_id: str, card: RunCard) -> dict[str, str]:
        return dict(values.get(card.id, {})) if user_id in settings.admin_user_ids else {}

    return operator_fields
