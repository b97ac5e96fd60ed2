"""Bolt's installation and OAuth state stores on the project's database (a distributed app).

``DatabaseInstallationStore`` keeps each workspace's (or Enterprise Grid org's) installation:
the non-secret fields as a row (``mcp_slack_installations``, migration 0013), the tokens —
bot token, refresh token, any user token and incoming webhook URL — in the credential manager,
encrypted at rest like every other secret, under the workspace as owner. Token rotation is
Bolt's (``AsyncInstallationStoreAuthorize`` refreshes a bot token close to expiry and saves
it back through ``async_save_bot``). ``DatabaseStateStore`` issues the install flow's one-time
``state`` values into ``mcp_slack_oauth_states`` so any process can finish an install another
one started.

Deleting an installation deletes its tokens at once; the workspace's people's data waits for
the grace period (``bot.workspaces``).
"""

from __future__ import annotations

import inspect
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from mcp_core.credentials import CredentialStore
from mcp_core.models import InstallationRecord
from mcp_core.store import Store

logger = logging.getLogger(__name__)

__all__ = ["DatabaseInstallationStore", "DatabaseStateStore", "token_owner"]

SECRET_FIELDS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token", "incoming_webhook_url")
"""Installation fields kept in the credential manager, never in the row."""
INSTALLATION_OWNER = "slack-installation"
STATE_EXPIRES_S = 600


def token_owner(enterprise_id: str, team_id: str) -> tuple[str, str]:
    """The credential manager's (team, user) for a workspace's (or org's) tokens."""
    return team_id or enterprise_id, INSTALLATION_OWNER


class DatabaseInstallationStore(AsyncInstallationStore):
    """Installations of the app ``client_id`` (one deployment may serve several apps' ids)."""

    def __init__(self, store: Store, credentials: CredentialStore, client_id: str) -> None:
        self._store, self._credentials, self._client_id = store, credentials, client_id

    @property
    def logger(self) -> logging.Logger:
        return logger

    async def async_save(self, installation: Installation) -> None:
        values = installation.to_dict()
        enterprise_id, team_id = values.get("enterprise_id") or "", values.get("team_id") or ""
        if installation.is_enterprise_install:
            team_id = ""  # an org-wide install answers for every workspace of the org
        tokens = {_key(k): str(values[k]) for k in SECRET_FIELDS if values.get(k)}
        owner = token_owner(enterprise_id, team_id)
        ref = await self._credentials.put(*owner, tokens)
        record = InstallationRecord(
            client_id=self._client_id,
            enterprise_id=enterprise_id,
            team_id=team_id,
            user_id=str(values.get("user_id") or ""),
            is_enterprise_install=bool(installation.is_enterprise_install),
            data=_plain({k: v for k, v in values.items() if k not in SECRET_FIELDS}),
            credential_ref=ref,
            installed_at=datetime.now(UTC),
        )
        replaced = await self._store.save_installation(record)
        if replaced is not None:
            await self._credentials.delete(*owner, replaced)
        logger.info("saved the installation of %s", team_id or enterprise_id)

    async def async_save_bot(self, bot: Bot) -> None:
        """A rotated bot token: written over the newest installation's tokens."""
        enterprise_id = bot.enterprise_id or ""
        team_id = "" if bot.is_enterprise_install else bot.team_id or ""
        record = await self._store.newest_installation(self._client_id, enterprise_id, team_id)
        if record is None:
            return
        owner = token_owner(enterprise_id, team_id)
        tokens = dict(await self._credentials.get(*owner, record.credential_ref))
        tokens[_key("bot_token")] = bot.bot_token
        if bot.bot_refresh_token:
            tokens[_key("bot_refresh_token")] = bot.bot_refresh_token
        await self._credentials.put(*owner, tokens, ref=record.credential_ref)
        data = dict(record.data)
        data["bot_token_expires_at"] = bot.bot_token_expires_at  # epoch seconds (Bot keeps an int)
        await self._store.save_installation(record.model_copy(update={"data": data}))

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        installation = await self.async_find_installation(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
        )
        return installation.to_bot() if installation is not None and installation.bot_token else None

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        enterprise, team = enterprise_id or "", "" if is_enterprise_install else team_id or ""
        record = await self._store.newest_installation(self._client_id, enterprise, team, user_id)
        if record is None and not is_enterprise_install and enterprise:
            record = await self._store.newest_installation(
                self._client_id, enterprise, "", user_id
            )  # org-wide
        if record is None:
            return None
        return await self._installation(record, team_id)

    async def _installation(self, record: InstallationRecord, team_id: str | None) -> Installation:
        owner = token_owner(record.enterprise_id, record.team_id)
        tokens = await self._credentials.get(*owner, record.credential_ref)
        fields = {**record.data, **{k: tokens[_key(k)] for k in SECRET_FIELDS if _key(k) in tokens}}
        fields["installed_at"] = record.installed_at.timestamp()
        if record.is_enterprise_install and team_id:
            fields["team_id"] = team_id  # the workspace asking, inside the org
        return Installation(**{k: v for k, v in fields.items() if k in _INSTALLATION_ARGS})

    async def find_bot_for_team(self, team_id: str) -> Bot | None:
        """The bot answering for ``team_id`` when its org is not known (work begun outside a
        request): the workspace's own install, else its org's org-wide one."""
        record = await self._store.installation_for_team(self._client_id, team_id)
        if record is None:
            return None
        installation = await self._installation(record, team_id)
        return installation.to_bot() if installation.bot_token else None

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.async_delete_all(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        await self._delete(enterprise_id or "", team_id or "", user_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._delete(enterprise_id or "", team_id or "", None)

    async def _delete(self, enterprise_id: str, team_id: str, user_id: str | None) -> None:
        gone = await self._store.delete_installations(self._client_id, enterprise_id, team_id, user_id)
        if not gone and enterprise_id and team_id:  # an org-wide install, named by one of its workspaces
            gone = await self._store.delete_installations(self._client_id, enterprise_id, "", user_id)
        for record in gone:
            await self._credentials.delete(
                *token_owner(record.enterprise_id, record.team_id), record.credential_ref
            )
        if gone:
            logger.info(
                "deleted %d installation(s) of %s and their tokens", len(gone), team_id or enterprise_id
            )

    async def installations(self) -> tuple[int, int]:
        """(workspaces and orgs installed, installation rows), for ``slack-mcp-bot check``."""
        return await self._store.count_installations(self._client_id)


class DatabaseStateStore(AsyncOAuthStateStore):
    """One-time ``state`` values of installs in progress, valid ``expires_s``."""

    def __init__(self, store: Store, *, expires_s: float = STATE_EXPIRES_S) -> None:
        self._store, self._expires_s = store, expires_s

    @property
    def logger(self) -> logging.Logger:
        return logger

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(32)
        await self._store.issue_oauth_state(state, datetime.now(UTC) + timedelta(seconds=self._expires_s))
        return state

    async def async_consume(self, state: str) -> bool:
        return bool(state) and await self._store.consume_oauth_state(state)


_INSTALLATION_ARGS = frozenset(inspect.signature(Installation.__init__).parameters) - {"self"}


def _key(field: str) -> str:
    """The credential manager's key of a token field (its keys look like ``env:<NAME>``)."""
    return f"env:SLACK_{field.upper()}"


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready: datetimes as whole epoch seconds (what Installation takes back)."""
    return {k: (int(v.timestamp()) if isinstance(v, datetime) else v) for k, v in values.items()}
