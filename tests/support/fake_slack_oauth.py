"""The fake Slack's distribution side: apps, the OAuth v2 install flow, one bot per installed workspace,
token rotation, uninstall and revocation.

`FakeSlack` owns one `SlackOAuth` as `fake.oauth` and exposes its helpers as `fake.<name>` too:

    fake.register_app("cid", "secret", redirect_uri="https://bot.example/slack/oauth_redirect")
    code = fake.authorize("cid", team_id="T_ONE", team_name="One")   # the person clicking Allow
    installer = AsyncWebClient(base_url=fake.base_url)                # no token: Basic auth is used
    answer = await installer.oauth_v2_access(client_id="cid", client_secret="secret", code=code)
    answer["access_token"]                 # xoxb-T_ONE-1-…: auth.test answers team T_ONE, bot U_BOT_T_ONE
    fake.calls("chat.postMessage")[0]["team_id"]    # the workspace of the token a call carried
    fake.authorize("cid", team_id="T_TWO", rotation=True)   # xoxe.xoxb-1-… + refresh_token xoxe-1-…
    fake.advance_clock(43_200)             # rotating tokens now answer token_expired, without sleeping
    payload = fake.uninstall("T_ONE")      # the app_uninstalled event_callback; T_ONE's tokens: token_revoked
    payload = fake.revoke_tokens("T_TWO", users=["U_INSTALLER"])   # tokens_revoked
    fake.oauth.events                      # every app_uninstalled / tokens_revoked Slack would have sent
    fake.oauth.event_callback(app_mention_event(...), team_id="T_TWO")   # an event for T_TWO's install

Tokens the fake did not issue (`xoxb-test`, `xapp-…`) answer as the default workspace `TEAM_ID`, as before;
set `fake.oauth.accept_unknown_tokens = False` to have them answer `invalid_auth`, as Slack would.

What the fake mirrors, and where Slack says so:
- oauth.v2.access: client credentials as HTTP Basic auth (preferred) or `client_id`/`client_secret` fields;
  the response shape (team null and `is_enterprise_install` true for an org-wide install, bot user `W…`),
  and the error names `invalid_client_id`, `bad_client_secret`, `invalid_code`, `bad_redirect_uri`,
  `invalid_grant_type`, `invalid_refresh_token`, `cannot_install_an_org_installed_app`
  (docs.slack.dev/reference/methods/oauth.v2.access; api.slack.com/authentication/oauth-v2;
  api.slack.com/enterprise/apps/reference; the method's error table as slack-ruby/slack-api-ref mirrors it
  in methods/oauth/oauth.v2.access.json).
- Codes expire after ten minutes; a `redirect_uri` sent to authorize must be sent again, equal, to
  oauth.v2.access, and must match or sit under a registered Redirect URL
  (api.slack.com/authentication/oauth-v2).
- Token rotation (api.slack.com/authentication/rotation): access tokens `xoxe.xoxb-1-…` / `xoxe.xoxp-1-…`
  expire in 43,200 s; refresh tokens `xoxe-1-…` are single use ("revoked after a short grace period":
  `refresh_grace_s`, 0 by default); refreshing does not end the old access token, but at most 2 access
  tokens stay active (the oldest extra one is revoked); rotation is an app setting that cannot be turned off.
- auth.revoke (`test` revokes nothing; answers `revoked`): on a rotating token it revokes that token only;
  otherwise the authorization, and once an install's last token is gone the app is uninstalled
  (api.slack.com/authentication/rotation "Uninstalling apps"; api.slack.com/events/app_uninstalled).
- apps.uninstall revokes every token of the calling token's install; errors `invalid_client_id`,
  `bad_client_secret`, `client_id_token_mismatch` (api.slack.com/methods/apps.uninstall).
- `app_uninstalled` / `tokens_revoked` payloads, `tokens: {oauth: [user ids], bot: [bot user ids]}`
  (api.slack.com/events/app_uninstalled, api.slack.com/events/tokens_revoked); Slack sends both on an
  uninstall, in no guaranteed order.

The fake's own choices, where Slack documents nothing: reinstalling into a workspace that still has the app
returns the same non-rotating bot token (scopes are additive, as documented), a rotating app gets a new pair;
auth.test for an org-wide token answers the enterprise as `team_id`/`team`; an org-wide lifecycle event has
`team_id: null` and `enterprise_id` at the top level (as `team_access_granted` does); an app registered
without Redirect URLs accepts any `redirect_uri`. Workspace data (`messages`, `users`, …) is shared.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CODE_TTL_S",
    "NO_TOKEN_METHODS",
    "ROTATING_TOKEN_TTL_S",
    "ActiveInstall",
    "App",
    "AuthorizeRefused",
    "Grant",
    "SlackOAuth",
    "Token",
]

CODE_TTL_S = 600.0  # "your temporary authorization code, which expires after ten minutes"
ROTATING_TOKEN_TTL_S = 43_200  # "It will always expire in 43,200 seconds, which is 12 hours."
MAX_ACTIVE_ROTATED = 2  # "we will enforce a limit of 2 active tokens"
NO_TOKEN_METHODS = frozenset({"oauth.v2.access"})
"""Methods called with client credentials instead of a bearer token."""

Answer = tuple[dict[str, Any], dict[str, str]]


class AuthorizeRefused(Exception):
    """slack.com/oauth/v2/authorize would show this error instead of redirecting with a code."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class App:
    """A registered Slack app: its credentials, its Redirect URLs and whether it rotates tokens."""

    client_id: str
    client_secret: str
    app_id: str
    redirect_uris: tuple[str, ...]
    rotation: bool = False


@dataclass
class Grant:
    """A one-time authorization code, bound to everything the person allowed."""

    code: str
    app: App
    redirect_uri: str | None
    team_id: str | None
    team_name: str
    enterprise_id: str | None
    enterprise_name: str | None
    is_enterprise_install: bool
    user_id: str
    scopes: tuple[str, ...]
    user_scopes: tuple[str, ...]
    expires_at: float
    used: bool = False


@dataclass
class ActiveInstall:
    """One app installed in one workspace, or org-wide in one Enterprise Grid org (`team_id` None)."""

    app: App
    team_id: str | None
    team_name: str
    enterprise_id: str | None
    enterprise_name: str | None
    is_enterprise_install: bool
    bot_user_id: str
    bot_id: str
    installer: str
    scopes: list[str]
    user_scopes: dict[str, list[str]] = field(default_factory=dict)
    active: bool = True

    @property
    def key(self) -> tuple[str, str]:
        return install_key(self.app.client_id, self.team_id, self.enterprise_id, self.is_enterprise_install)

    def team(self) -> dict[str, str] | None:
        return None if self.is_enterprise_install else {"id": str(self.team_id), "name": self.team_name}

    def enterprise(self) -> dict[str, str] | None:
        if self.enterprise_id is None:
            return None
        return {"id": self.enterprise_id, "name": self.enterprise_name or self.enterprise_id}


@dataclass
class Token:
    """A token the fake issued: a bot or user access token, or (``refresh``) the refresh token for one."""

    value: str
    kind: str  # "bot" | "user"
    install: ActiveInstall
    user_id: str  # the bot user for bot tokens, else the user
    issued_at: float
    refresh: bool = False
    expires_at: float | None = None
    revoked_at: float | None = None
    refresh_token: str | None = None
    """The refresh token issued with this (rotating) access token."""

    def revoked(self, now: float) -> bool:
        return (self.revoked_at is not None and now >= self.revoked_at) or not self.install.active

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def live(self, now: float) -> bool:
        return not self.revoked(now) and not self.expired(now)


def install_key(client_id: str, team_id: str | None, enterprise_id: str | None, org: bool) -> tuple[str, str]:
    """An install is one app in one workspace (team ids are unique) or in one org (an org-wide install)."""
    return client_id, str(enterprise_id if org else team_id)


def _error(error: str, **extra: Any) -> Answer:
    return {"ok": False, "error": error, **extra}, {}


class SlackOAuth:
    """Apps, authorization codes, installs and the tokens issued for them (see the module docstring)."""

    def __init__(
        self,
        event_callback: Callable[..., dict[str, Any]],
        *,
        app_id: str,
        team_id: str,
        scopes: Sequence[str],
    ) -> None:
        self.apps: dict[str, App] = {}
        self.grants: dict[str, Grant] = {}
        self.installs: dict[tuple[str, str], ActiveInstall] = {}
        """Every install by `(client_id, team_id or, org-wide, enterprise_id)`; uninstalled ones stay,
        with `active` False, until the app is installed there again."""
        self.tokens: dict[str, Token] = {}
        self.events: list[dict[str, Any]] = []
        """The app_uninstalled / tokens_revoked event_callback payloads Slack would have sent, in order."""
        self.offset_s = 0.0
        """Added to the wall clock for everything that expires (codes, rotating tokens): `advance_clock`."""
        self.token_ttl_s = ROTATING_TOKEN_TTL_S
        """`expires_in` of rotating tokens; lower it below Bolt's 2 h margin to have Bolt refresh at once."""
        self.refresh_grace_s = 0.0
        """How long a used refresh token still works ("a short grace period"; Slack names no length)."""
        self.accept_unknown_tokens = True
        """Tokens the fake did not issue answer as the default workspace; False: `invalid_auth`."""
        self._event_callback = event_callback
        self._default_app_id = app_id
        self._default_team_id = team_id
        self._default_scopes = tuple(scopes)
        self._lock = threading.RLock()
        self._serial = itertools.count(1)

    # -- the clock ---------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.offset_s

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock on: codes and rotating tokens expire as if `seconds` had passed."""
        self.offset_s += seconds

    # -- what a test calls -------------------------------------------------------------------------

    def register_app(
        self,
        client_id: str,
        client_secret: str,
        redirect_uri: str | Iterable[str] | None = None,
        *,
        app_id: str | None = None,
        rotation: bool = False,
    ) -> App:
        """Create the app (api.slack.com/apps): `redirect_uri` is its Redirect URL(s), the first one the
        default; the first app registered is `API_APP_ID` (the id the payload helpers carry)."""
        uris = (redirect_uri,) if isinstance(redirect_uri, str) else tuple(redirect_uri or ())
        with self._lock:
            if client_id in self.apps:
                raise ValueError(f"app {client_id!r} is already registered")
            taken = {app.app_id for app in self.apps.values()}
            app_id = app_id or (self._default_app_id if not taken else f"A_APP{len(taken) + 1}")
            if app_id in taken:
                raise ValueError(f"app id {app_id!r} is already taken")
            app = App(client_id, client_secret, app_id, uris, rotation)
            self.apps[client_id] = app
            return app

    def authorize(
        self,
        client_id: str,
        *,
        team_id: str | None,
        team_name: str | None = None,
        enterprise_id: str | None = None,
        enterprise_name: str | None = None,
        is_enterprise_install: bool = False,
        user_id: str = "U_INSTALLER",
        scopes: Sequence[str] | None = None,
        user_scopes: Sequence[str] = (),
        redirect_uri: str | None = None,
        rotation: bool | None = None,
    ) -> str:
        """The person `user_id` clicks Allow on slack.com/oauth/v2/authorize; return the `code` Slack would
        append to the redirect (valid `CODE_TTL_S`, once). `scopes` are the bot's (default: the fake's
        BOT_SCOPES), `user_scopes` ask for a user token too; an org-wide install has `team_id=None`,
        `is_enterprise_install=True` and an `enterprise_id`. `rotation=True` turns token rotation on for
        the app (for good, as in Slack); None keeps the app's setting.

        Raises:
            AuthorizeRefused: `invalid_client_id`, `bad_redirect_uri` or `no_scopes`, as Slack's page would.
            ValueError: for an org-wide install without an enterprise, or a workspace one without a team.
        """
        scopes = self._default_scopes if scopes is None else tuple(scopes)
        if is_enterprise_install and (enterprise_id is None or team_id is not None):
            raise ValueError("an org-wide install has an enterprise_id and team_id=None")
        if not is_enterprise_install and team_id is None:
            raise ValueError("a workspace install needs its team_id")
        with self._lock:
            app = self.apps.get(client_id)
            if app is None:
                raise AuthorizeRefused("invalid_client_id")
            if redirect_uri is not None and not _redirect_allowed(redirect_uri, app.redirect_uris):
                raise AuthorizeRefused("bad_redirect_uri")
            if not scopes and not user_scopes:
                raise AuthorizeRefused("no_scopes")
            if rotation is False and app.rotation:
                raise ValueError("token rotation cannot be turned off once it is on")
            app.rotation = app.rotation or bool(rotation)
            n = next(self._serial)
            code = f"{int(self.now())}.{n}.{secrets.token_hex(16)}"
            self.grants[code] = Grant(
                code=code,
                app=app,
                redirect_uri=redirect_uri,
                team_id=team_id,
                team_name=team_name or f"Team {team_id}",
                enterprise_id=enterprise_id,
                enterprise_name=enterprise_name,
                is_enterprise_install=is_enterprise_install,
                user_id=user_id,
                scopes=tuple(scopes),
                user_scopes=tuple(user_scopes),
                expires_at=self.now() + CODE_TTL_S,
            )
            return code

    def install(
        self, team_id: str | None = None, enterprise_id: str | None = None, *, client_id: str | None = None
    ) -> ActiveInstall:
        """The active install for workspace `team_id` (or, with only `enterprise_id`, the org-wide one).

        Raises:
            LookupError: if the app is not installed there (or `client_id` is needed to choose the app).
        """
        with self._lock:
            found = [
                install
                for install in self.installs.values()
                if install.active
                and (client_id is None or install.app.client_id == client_id)
                and (
                    install.team_id == team_id
                    if team_id is not None
                    else install.is_enterprise_install and install.enterprise_id == enterprise_id
                )
                and (enterprise_id is None or install.enterprise_id == enterprise_id)
            ]
            if len(found) != 1:
                where = team_id or enterprise_id
                raise LookupError(f"{len(found)} active installs in {where!r} (client_id={client_id!r})")
            return found[0]

    def event_callback(
        self,
        event: dict[str, Any],
        *,
        team_id: str | None,
        enterprise_id: str | None = None,
        client_id: str | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """`event` wrapped as Slack delivers it to the install serving workspace `team_id`: its own
        install there or, failing that, the org-wide one of `enterprise_id` (`authorizations` names
        that install's bot)."""
        try:
            install = self.install(team_id, enterprise_id, client_id=client_id)
        except LookupError:
            if team_id is None or enterprise_id is None:
                raise
            install = self.install(None, enterprise_id, client_id=client_id)
        return self._wrap(install, event, team_id=team_id, event_id=event_id)

    def uninstall(
        self, team_id: str | None = None, enterprise_id: str | None = None, *, client_id: str | None = None
    ) -> dict[str, Any]:
        """A workspace (or, `team_id=None`, an org) admin removes the app: every token of that install is
        revoked; return the `app_uninstalled` payload (it and `tokens_revoked` go to `events`)."""
        with self._lock:
            install = self.install(team_id, enterprise_id, client_id=client_id)
            return self._remove(install)

    def revoke_tokens(
        self,
        team_id: str | None = None,
        *,
        bot: bool = True,
        users: Iterable[str] = (),
        enterprise_id: str | None = None,
        client_id: str | None = None,
    ) -> dict[str, Any]:
        """Revoke the install's bot token (`bot`) and the user tokens of `users`; return the
        `tokens_revoked` payload (also in `events`). Once no token is left the app is uninstalled, and an
        `app_uninstalled` follows in `events`."""
        with self._lock:
            install = self.install(team_id, enterprise_id, client_id=client_id)
            users = list(users)
            now = self.now()
            for token in self._tokens_of(install):
                if (token.kind == "bot" and bot) or (token.kind == "user" and token.user_id in users):
                    token.revoked_at = now
            payload = self._tokens_revoked(install, bot=[install.bot_user_id] if bot else [], users=users)
            self.events.append(payload)
            if not any(t.live(now) for t in self._tokens_of(install)):
                install.active = False
                self.events.append(self._app_uninstalled(install))
            return payload

    # -- the Web API (FakeSlack._http hands these over) ----------------------------------------------

    def identify(self, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """`token`, `team_id` and `enterprise_id` for a recorded request: the workspace the call acts in."""
        if not token:
            return {"token": None, "team_id": None, "enterprise_id": None}
        with self._lock:
            issued = self.tokens.get(token)
        if issued is None:
            return {"token": token, "team_id": self._default_team_id, "enterprise_id": None}
        install = issued.install
        team_id = (body.get("team_id") or None) if install.is_enterprise_install else install.team_id
        return {"token": token, "team_id": team_id, "enterprise_id": install.enterprise_id}

    def token_refusal(self, method: str, token: str) -> dict[str, Any] | None:
        """Why Slack would refuse `token` for `method`, or None."""
        if method in NO_TOKEN_METHODS:
            return None
        with self._lock:
            issued = self.tokens.get(token)
            now = self.now()
        if issued is None:
            return None if self.accept_unknown_tokens else {"ok": False, "error": "invalid_auth"}
        if issued.refresh:
            return {"ok": False, "error": "invalid_auth"}
        if issued.revoked(now):
            return {"ok": False, "error": "token_revoked"}
        if issued.expired(now):
            return {"ok": False, "error": "token_expired"}
        return None

    def scopes_of(self, token: str | None) -> list[str] | None:
        """The scopes of a token the fake issued (None: not one of them)."""
        with self._lock:
            issued = self.tokens.get(token or "")
        if issued is None:
            return None
        install = issued.install
        return install.scopes if issued.kind == "bot" else install.user_scopes.get(issued.user_id, [])

    def answer(self, record: dict[str, Any]) -> Answer | None:
        """The answer to a call this module owns (oauth.v2.access, and auth.test, auth.revoke,
        apps.uninstall, conversations.open with a token it issued), or None for FakeSlack's own."""
        method, body = record["method"], record["body"]
        if method == "oauth.v2.access":
            return self._access(record)
        with self._lock:
            issued = self.tokens.get(record.get("token") or "")
            if issued is None:
                return None
            match method:
                case "auth.test":
                    return self._auth_test(issued)
                case "auth.revoke":
                    return self._auth_revoke(issued, body)
                case "apps.uninstall":
                    return self._apps_uninstall(issued, body)
                case "conversations.open" if issued.install.bot_user_id in _ids(body.get("users")):
                    return _error("cannot_dm_bot")
        return None

    def localize(self, record: dict[str, Any], payload: dict[str, Any]) -> None:
        """Make a canned answer speak for the install of the call's token: its bot posts, its views."""
        with self._lock:
            issued = self.tokens.get(record.get("token") or "")
        if issued is None or issued.kind != "bot":
            return
        install = issued.install
        if isinstance(message := payload.get("message"), dict) and "bot_id" in message:
            message |= {"user": install.bot_user_id, "bot_id": install.bot_id}
        if isinstance(view := payload.get("view"), dict) and "app_id" in view:
            team_id = record.get("team_id") or install.team_id or install.enterprise_id
            view |= {"team_id": team_id, "app_id": install.app.app_id, "bot_id": install.bot_id}

    # -- oauth.v2.access ---------------------------------------------------------------------------

    def _client(self, record: dict[str, Any]) -> App | Answer:
        """The app whose credentials came as Basic auth, else as `client_id`/`client_secret` fields."""
        authorization, body = record["headers"].get("authorization", ""), record["body"]
        client_id, secret = str(body.get("client_id") or ""), str(body.get("client_secret") or "")
        if authorization[:6].lower() == "basic ":
            try:
                client_id, _, secret = (
                    base64.b64decode(authorization[6:], validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                return _error("invalid_client_id")
        app = self.apps.get(client_id)
        if app is None:
            return _error("invalid_client_id")
        if not hmac.compare_digest(secret.encode(), app.client_secret.encode()):
            return _error("bad_client_secret")
        return app

    def _access(self, record: dict[str, Any]) -> Answer:
        body = record["body"]
        with self._lock:
            app = self._client(record)
            if not isinstance(app, App):
                return app
            match body.get("grant_type") or "authorization_code":
                case "authorization_code":
                    return self._exchange_code(app, body)
                case "refresh_token":
                    return self._refresh(app, str(body.get("refresh_token") or ""))
            return _error("invalid_grant_type")

    def _exchange_code(self, app: App, body: dict[str, Any]) -> Answer:
        now = self.now()
        grant = self.grants.get(str(body.get("code") or ""))
        if grant is None or grant.used or grant.app is not app or now >= grant.expires_at:
            return _error("invalid_code")
        sent = body.get("redirect_uri") or None
        if grant.redirect_uri is not None and sent != grant.redirect_uri:  # "must send that same field"
            return _error("bad_redirect_uri")
        if grant.redirect_uri is None and sent and app.redirect_uris and sent != app.redirect_uris[0]:
            return _error("bad_redirect_uri")  # the flow went to the first Redirect URL
        if not grant.is_enterprise_install and grant.enterprise_id is not None:
            org_key = install_key(app.client_id, None, grant.enterprise_id, org=True)
            if (org := self.installs.get(org_key)) is not None and org.active:
                return _error("cannot_install_an_org_installed_app")
        grant.used = True
        install = self._install(grant)
        answer: dict[str, Any] = {"ok": True, "app_id": app.app_id, "authed_user": {"id": grant.user_id}}
        if grant.user_scopes:
            user = self._current_or_new(install, "user", grant.user_id, now)
            scope = ",".join(install.user_scopes[grant.user_id])
            answer["authed_user"] |= {"scope": scope, "token_type": "user"} | self._pair(user)
        if grant.scopes:
            bot = self._current_or_new(install, "bot", install.bot_user_id, now)
            answer |= {"scope": ",".join(install.scopes), "token_type": "bot"} | self._pair(bot)
            answer["bot_user_id"] = install.bot_user_id
        answer |= {
            "team": install.team(),
            "enterprise": install.enterprise(),
            "is_enterprise_install": install.is_enterprise_install,
        }
        return answer, {}

    def _install(self, grant: Grant) -> ActiveInstall:
        """The install this grant creates, or adds its scopes to (scopes are additive across installs)."""
        key = install_key(
            grant.app.client_id, grant.team_id, grant.enterprise_id, grant.is_enterprise_install
        )
        install = self.installs.get(key)
        if install is None or not install.active:
            where = str(grant.enterprise_id if grant.is_enterprise_install else grant.team_id)
            suffix = where if grant.app.app_id == self._default_app_id else f"{where}_{grant.app.app_id}"
            install = ActiveInstall(
                app=grant.app,
                team_id=grant.team_id,
                team_name=grant.team_name,
                enterprise_id=grant.enterprise_id,
                enterprise_name=grant.enterprise_name,
                is_enterprise_install=grant.is_enterprise_install,
                bot_user_id=("W_BOT_" if grant.is_enterprise_install else "U_BOT_") + suffix,
                bot_id=f"B_BOT_{suffix}",
                installer=grant.user_id,
                scopes=[],
            )
            self.installs[key] = install
        install.team_name = grant.team_name
        install.scopes += [s for s in grant.scopes if s not in install.scopes]
        if grant.user_scopes:
            mine = install.user_scopes.setdefault(grant.user_id, [])
            mine += [s for s in grant.user_scopes if s not in mine]
        return install

    def _current_or_new(self, install: ActiveInstall, kind: str, user_id: str, now: float) -> Token:
        """A non-rotating install keeps its live token; a rotating one gets a fresh pair."""
        if not install.app.rotation:
            for token in self._tokens_of(install):
                if token.kind == kind and token.user_id == user_id and not token.refresh and token.live(now):
                    return token
        return self._issue(install, kind, user_id, now)

    def _issue(self, install: ActiveInstall, kind: str, user_id: str, now: float) -> Token:
        n = next(self._serial)
        where = install.team_id or install.enterprise_id
        prefix = "xoxb" if kind == "bot" else "xoxp"
        rotation = install.app.rotation
        value = f"{'xoxe.' if rotation else ''}{prefix}-{'1-' * rotation}{where}-{n}-{secrets.token_hex(6)}"
        expires_at = now + self.token_ttl_s if rotation else None
        token = Token(value, kind, install, user_id, issued_at=now, expires_at=expires_at)
        self.tokens[value] = token
        if rotation:
            refresh = f"xoxe-1-{where}-{n}-{secrets.token_hex(12)}"
            self.tokens[refresh] = Token(refresh, kind, install, user_id, issued_at=now, refresh=True)
            token.refresh_token = refresh
            self._limit_active(install, kind, user_id, now)
        return token

    def _pair(self, token: Token) -> dict[str, Any]:
        pair: dict[str, Any] = {"access_token": token.value}
        if token.expires_at is not None:
            pair["expires_in"] = round(token.expires_at - token.issued_at)
            pair["refresh_token"] = token.refresh_token
        return pair

    def _limit_active(self, install: ActiveInstall, kind: str, user_id: str, now: float) -> None:
        """At most 2 access tokens stay active: "the oldest additional token will be revoked"."""
        active = [
            t
            for t in self._tokens_of(install)
            if t.kind == kind and t.user_id == user_id and not t.refresh and t.live(now)
        ]
        for token in sorted(active, key=lambda t: t.issued_at)[: max(0, len(active) - MAX_ACTIVE_ROTATED)]:
            token.revoked_at = now

    def _refresh(self, app: App, value: str) -> Answer:
        now = self.now()
        old = self.tokens.get(value)
        if old is None or not old.refresh or old.install.app is not app or old.revoked(now):
            return _error("invalid_refresh_token")
        if old.revoked_at is None:
            old.revoked_at = now + self.refresh_grace_s
        install = old.install
        new = self._issue(install, old.kind, old.user_id, now)
        answer: dict[str, Any] = {"ok": True, "app_id": app.app_id, **self._pair(new)}
        if old.kind == "bot":
            answer |= {"token_type": "bot", "scope": ",".join(install.scopes)}
            answer["bot_user_id"] = install.bot_user_id
        else:
            scope = ",".join(install.user_scopes.get(old.user_id, []))
            answer |= {"token_type": "user", "scope": scope, "user_id": old.user_id}
        answer |= {
            "team": install.team(),
            "enterprise": install.enterprise(),
            "is_enterprise_install": install.is_enterprise_install,
        }
        return answer, {}

    # -- auth.test, auth.revoke, apps.uninstall --------------------------------------------------------

    def _auth_test(self, token: Token) -> Answer:
        install = token.install
        org = install.is_enterprise_install
        name = (install.enterprise_name or str(install.enterprise_id)) if org else install.team_name
        domain = "".join(c for c in name.lower() if c.isalnum()) or "team"
        answer: dict[str, Any] = {
            "ok": True,
            "url": f"https://{domain}.{'enterprise.' if org else ''}slack.com/",
            "team": name,
            "user": "mcp-bot" if token.kind == "bot" else token.user_id.lower(),
            "team_id": install.enterprise_id if org else install.team_id,
            "user_id": token.user_id,
        }
        if token.kind == "bot":
            answer["bot_id"] = install.bot_id
        if install.enterprise_id is not None:
            answer["enterprise_id"] = install.enterprise_id
        answer["is_enterprise_install"] = org
        if token.expires_at is not None:
            answer["expires_in"] = max(0, int(token.expires_at - self.now()))
        scopes = install.scopes if token.kind == "bot" else install.user_scopes.get(token.user_id, [])
        return answer, {"x-oauth-scopes": ",".join(scopes)}

    def _auth_revoke(self, token: Token, body: dict[str, Any]) -> Answer:
        if str(body.get("test", "")).lower() in ("1", "true"):
            return {"ok": True, "revoked": False}, {}
        now = self.now()
        install = token.install
        token.revoked_at = now
        if install.app.rotation:  # revokes this one token; the installation stays
            return {"ok": True, "revoked": True}, {}
        for other in self._tokens_of(install):  # the authorization goes with it
            if other.kind == token.kind and other.user_id == token.user_id:
                other.revoked_at = now
        bot, users = ([token.user_id], []) if token.kind == "bot" else ([], [token.user_id])
        self.events.append(self._tokens_revoked(install, bot=bot, users=users))
        if not any(t.live(now) for t in self._tokens_of(install)):
            install.active = False
            self.events.append(self._app_uninstalled(install))
        return {"ok": True, "revoked": True}, {}

    def _apps_uninstall(self, token: Token, body: dict[str, Any]) -> Answer:
        app = self.apps.get(str(body.get("client_id") or ""))
        if app is None:
            return _error("invalid_client_id")
        if not hmac.compare_digest(str(body.get("client_secret") or "").encode(), app.client_secret.encode()):
            return _error("bad_client_secret")
        if token.install.app is not app:
            return _error("client_id_token_mismatch")
        self._remove(token.install)
        return {"ok": True}, {}

    # -- installs going away -------------------------------------------------------------------------

    def _tokens_of(self, install: ActiveInstall) -> list[Token]:
        return [token for token in self.tokens.values() if token.install is install]

    def _remove(self, install: ActiveInstall) -> dict[str, Any]:
        now = self.now()
        tokens = [t for t in self._tokens_of(install) if t.live(now)]
        users = sorted({t.user_id for t in tokens if t.kind == "user"})
        bots = sorted({t.user_id for t in tokens if t.kind == "bot"})
        for token in tokens:
            token.revoked_at = now
        install.active = False
        uninstalled = self._app_uninstalled(install)
        self.events += [uninstalled, self._tokens_revoked(install, bot=bots, users=users)]
        return uninstalled

    def _wrap(
        self,
        install: ActiveInstall,
        event: dict[str, Any],
        *,
        team_id: str | None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        payload = self._event_callback(event, team_id=team_id, event_id=event_id)
        payload["api_app_id"] = install.app.app_id
        payload["authorizations"] = [
            {
                "enterprise_id": install.enterprise_id,
                "team_id": team_id,
                "user_id": install.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": install.is_enterprise_install,
            }
        ]
        if team_id is None:
            payload["enterprise_id"] = install.enterprise_id
        return payload

    def _app_uninstalled(self, install: ActiveInstall) -> dict[str, Any]:
        return self._wrap(install, {"type": "app_uninstalled"}, team_id=install.team_id)

    def _tokens_revoked(self, install: ActiveInstall, *, bot: list[str], users: list[str]) -> dict[str, Any]:
        event = {"type": "tokens_revoked", "tokens": {"oauth": users, "bot": bot}}
        return self._wrap(install, event, team_id=install.team_id)


def _redirect_allowed(uri: str, registered: tuple[str, ...]) -> bool:
    """`uri` equals or sits under one of the registered Redirect URLs (none registered: anything goes)."""
    if not registered:
        return True
    return any(uri == base or uri.startswith(base.rstrip("/") + "/") for base in registered)


def _ids(users: Any) -> list[str]:
    return [user.strip() for user in str(users or "").split(",")]
