"""Connecting, editing, disconnecting and testing a person's MCP servers: the order of checks.

A connect (or an Edit) is two calls, because a form must be answered within seconds and the
connecting takes longer::

    checked = await connections.check(form)      # before the form closes: every check, once
    if isinstance(checked, ConnectPlan):
        result = await connections.connect(checked)   # after: store, open, discover

``check`` reads the person's connections once (the one being edited, duplicate names, the
per-person limit), builds the connection from the run card, keeps stored secrets for blank
secret fields of an Edit, and asks the network policy once. Problems come back by form field;
otherwise a ``ConnectPlan``, which ``connect`` executes without checking anything again: the
plan's policy verdict goes along to the registry and the first session.

``connect`` puts the secrets first (so the first session has them), stores the connection,
takes a new secret back out if storing failed, and deletes the old secret an Edit replaced.
What to tell the person is a typed result (``ConnectOutcome`` or ``NotSaved``) and the
problems are ``FormProblem`` kinds; the Slack layer turns both into words.

Connections are built from templates (run cards): ``ConnectionTemplate`` is what this module
needs of one, so that the core does not import ``run_cards``, which sits above it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from mcp_core import errors
from mcp_core.connection_config import CardFieldError, SecretTarget
from mcp_core.credentials import CredentialStore
from mcp_core.limits import too_many_connections
from mcp_core.models import Connection, NewConnection, normalize_connection_name
from mcp_core.oauth import OAuthFlows
from mcp_core.registry import ConnectOutcome, HealthReport, ToolRegistry
from mcp_core.security import NetworkTargets, PolicyVerdict, judge_targets
from mcp_core.settings import Settings
from mcp_core.store import Store

__all__ = [
    "FORM_CHECK_TIMEOUT_S",
    "ConnectForm",
    "ConnectPlan",
    "ConnectResult",
    "ConnectionService",
    "ConnectionTemplate",
    "FormProblem",
    "NotSaved",
    "ProblemKind",
    "SignInDone",
]

FORM_CHECK_TIMEOUT_S = 2.0
"""A form is answered within seconds (Slack: 3 s), so each URL check (DNS) gets at most this."""


class TemplateField(Protocol):
    """One field of a connection template's form."""

    key: str
    secret: bool
    required: bool


class ConnectionTemplate(Protocol):
    """What the service needs of a template (``run_cards.RunCard`` is one)."""

    id: str

    @property
    def fields(self) -> Sequence[TemplateField]: ...

    def field(self, key: str) -> TemplateField: ...

    def cleaned(self, typed: Mapping[str, str]) -> dict[str, str]:
        """The typed values, cleaned the way people paste them."""
        ...

    def build(
        self,
        values: Mapping[str, str],
        *,
        name: str | None = None,
        unshown: Collection[str] = (),
        optional: Collection[str] = (),
    ) -> tuple[NewConnection, dict[str, str]]:
        """The connection and its secrets by credential key.

        Raises:
            CardFieldError: a value is missing, malformed or unsafe.
            ValueError: ``name`` is not a valid connection name.
        """
        ...

    def secret_target(self, key: str, values: Mapping[str, str]) -> SecretTarget | None: ...

    def sent_value(self, key: str, value: str) -> str: ...

    def policy_fields(self, new: NewConnection, values: Mapping[str, str]) -> dict[str, str | None]:
        """The form field holding each address the network policy checks (None: no field)."""
        ...


@dataclass(frozen=True)
class ConnectForm:
    """A submitted connect form: who (from the verified request), which card, what was typed."""

    team_id: str
    user_id: str
    card: ConnectionTemplate
    name: str
    values: Mapping[str, str]
    """What was typed, by field key (other keys are ignored)."""
    operator: Mapping[str, str] = field(default_factory=dict)
    """The operator's ``.env`` values for this card that this person may use (admins only)."""
    editing_id: uuid.UUID | None = None
    """The connection an Edit form was opened for; one that is gone, not theirs or of another
    card makes the form add a new connection."""


class ProblemKind(StrEnum):
    INVALID = "invalid"
    """``message`` says what is wrong."""
    DUPLICATE_NAME = "duplicate_name"
    """Another of the person's connections has this name (``message`` is the name)."""
    OPERATOR_VALUE_INVALID = "operator_value_invalid"
    """The operator's ``.env`` value for the field is malformed; ``message`` says how, without it."""
    OPERATOR_VALUE_REFUSED = "operator_value_refused"
    """The operator's value points where the network policy refuses; it is never shown back."""
    NO_CREDENTIAL_STORE = "no_credential_store"
    """A secret was given but the bot has nowhere to keep it."""


@dataclass(frozen=True)
class FormProblem:
    field: str | None
    """The card field it belongs to; None: the connection's name (or the card as a whole)."""
    kind: ProblemKind
    message: str = ""


@dataclass(frozen=True)
class ConnectPlan:
    """A form that passed every check: exactly what ``connect`` stores and opens."""

    team_id: str
    user_id: str
    new: NewConnection
    secrets: Mapping[str, str]
    verdict: PolicyVerdict
    editing: Connection | None = None
    keeps_credential: bool = False
    """An Edit whose secrets are the stored ones: the record stays as it is."""


@dataclass(frozen=True)
class NotSaved:
    """Nothing was stored (the database refused, say); ``error`` says why."""

    name: str
    error: errors.McpCoreError


@dataclass(frozen=True)
class SignInDone:
    """A finished sign-in: the connection as stored after it reopened, and why it still could
    not be opened, if it could not (the grant is kept either way)."""

    connection: Connection
    error: errors.McpCoreError | None = None


ConnectResult = ConnectOutcome | NotSaved
"""Stored (``error`` set if it could not be opened: it is kept, marked error) or not at all."""


class _Problems:
    def __init__(self) -> None:
        self.found: dict[str | None, FormProblem] = {}

    def first(self, where: str | None, kind: ProblemKind, message: str = "") -> None:
        """Record a problem unless the field already has one."""
        self.found.setdefault(where, FormProblem(where, kind, message))

    def instead(self, where: str | None, kind: ProblemKind, message: str = "") -> None:
        """Record a problem in place of any the field had (it says more)."""
        self.found[where] = FormProblem(where, kind, message)


class ConnectionService:
    """The connection lifecycle for one person at a time, scoped by the verified (team, user)."""

    def __init__(
        self,
        store: Store,
        registry: ToolRegistry,
        credentials: CredentialStore | None,
        settings: Settings,
        oauth: OAuthFlows | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._credentials = credentials
        self._settings = settings
        self._oauth = oauth

    async def check(self, form: ConnectForm) -> ConnectPlan | list[FormProblem]:
        """Every check a connect form needs, each once: the plan, or the problems by field.

        Raises:
            StoreError, CredentialError: the person's connections or stored secrets could not
                be read.
        """
        card, team_id, user_id = form.card, form.team_id, form.user_id
        existing = await self._store.list_connections(team_id, user_id)
        editing = next((c for c in existing if c.id == form.editing_id), None)
        if editing is not None and (editing.card_id or "custom") != card.id:
            editing = None
        values = card.cleaned(form.values)
        from_operator = {  # blank fields the operator's .env fills; an edit keeps stored secrets
            k: v
            for k, v in form.operator.items()
            if k not in values and not (editing and card.field(k).secret)
        }
        values.update(from_operator)
        problems = _Problems()
        name = ""
        try:
            name = normalize_connection_name(form.name)
        except ValueError as exc:
            problems.instead(None, ProblemKind.INVALID, str(exc))
        blank_secrets = [f.key for f in card.fields if f.secret and not values.get(f.key)]
        old_secrets: dict[str, str] = {}
        keep_stored = blank_secrets if editing is not None else []  # blank secrets keep their values
        if keep_stored and editing is not None and editing.credential_ref and self._credentials is not None:
            old_secrets = dict(await self._credentials.get(team_id, user_id, editing.credential_ref))
        new = None
        secrets: dict[str, str] = {}
        try:
            new, secrets = card.build(
                values, name=name or card.id, unshown=from_operator, optional=keep_stored
            )
        except CardFieldError as exc:
            known = any(f.key == exc.field_key for f in card.fields)
            by_operator = exc.field_key in from_operator  # the message never holds the value
            kind = ProblemKind.OPERATOR_VALUE_INVALID if by_operator else ProblemKind.INVALID
            problems.first(exc.field_key if known else None, kind, exc.message)
        except ValueError as exc:
            problems.first(None, ProblemKind.INVALID, str(exc))
        if new is not None and editing is not None:
            for key in blank_secrets:
                target = card.secret_target(key, values)
                stored = str(target) if target is not None else ""
                if stored in old_secrets:
                    secrets[stored] = old_secrets[stored]
                elif target is not None and key in form.operator:
                    secrets[stored] = card.sent_value(key, form.operator[key])
                elif card.field(key).required:
                    problems.instead(key, ProblemKind.INVALID, "required")
        verdict = None
        if new is not None:
            verdict = await judge_targets(
                NetworkTargets.of(new), self._settings.mcp_allowed_hosts, timeout_s=FORM_CHECK_TIMEOUT_S
            )
            fields = card.policy_fields(new, values)
            for url, why in verdict.refused.items():
                key = fields.get(url)
                if key in from_operator:  # an operator's value is never shown back
                    problems.first(key, ProblemKind.OPERATOR_VALUE_REFUSED)
                else:
                    problems.first(key, ProblemKind.INVALID, str(why))
        taken = next((c for c in existing if c.name == name), None) if name else None
        if taken is not None and (editing is None or taken.id != editing.id):
            problems.instead(None, ProblemKind.DUPLICATE_NAME, name)
        limit = self._settings.mcp_max_connections_per_user
        if editing is None and len(existing) >= limit:
            problems.instead(None, ProblemKind.INVALID, too_many_connections(limit))
        if secrets and self._credentials is None:
            first_secret = next(f.key for f in card.fields if f.secret)
            problems.instead(first_secret, ProblemKind.NO_CREDENTIAL_STORE)
        if problems.found or new is None or verdict is None:
            return list(problems.found.values())
        keeps = editing is not None and bool(secrets) and secrets == old_secrets
        return ConnectPlan(team_id, user_id, new, secrets, verdict, editing, keeps)

    async def connect(self, plan: ConnectPlan) -> ConnectResult:
        """Store and open what ``check`` planned: secrets first, then the connection.

        Raises:
            CredentialError: the secrets could not be stored (nothing else was).
        """
        team_id, user_id, new, editing = plan.team_id, plan.user_id, plan.new, plan.editing
        old_ref = editing.credential_ref if editing is not None else None
        ref = None
        if plan.keeps_credential:
            ref = old_ref
        elif plan.secrets and self._credentials is not None:
            ref = await self._credentials.put(team_id, user_id, plan.secrets)
        if editing is not None and editing.url != new.url and self._signs_in(editing):
            await self._oauth.revoke(editing)  # its grant was for the old server
        stored = False
        try:
            if editing is not None:  # changed in place: same id, usage history kept
                outcome = await self._registry.update_connection(
                    team_id,
                    user_id,
                    editing.id,
                    checked=plan.verdict,
                    name=new.name,
                    transport=new.transport,
                    url=new.url,
                    args=new.args,
                    config=new.config,
                    credential_ref=ref,
                )
            else:
                outcome = await self._registry.add_connection(
                    team_id, user_id, new.model_copy(update={"credential_ref": ref}), checked=plan.verdict
                )
            stored = True
        except errors.McpCoreError as exc:
            return NotSaved(new.name, exc)
        finally:
            if not stored and ref is not None and ref != old_ref and self._credentials is not None:
                await self._credentials.delete(team_id, user_id, ref)  # nothing was changed: it goes too
        if old_ref and old_ref != ref and self._credentials is not None:
            await self._credentials.delete(team_id, user_id, old_ref)
        return outcome

    async def disconnect(self, team_id: str, user_id: str, connection: Connection) -> None:
        """Close the session, delete the connection, then its secrets.

        ``connection`` is one the store returned for this (team, user).

        Raises:
            ConnectionNotFoundError: it is not (or no longer) theirs.
        """
        if self._signs_in(connection):  # before the row goes: the grant is found by the connection
            await self._oauth.revoke(connection)
        await self._registry.remove_connection(team_id, user_id, connection.id)
        if connection.credential_ref and self._credentials is not None:
            await self._credentials.delete(team_id, user_id, connection.credential_ref)

    def _signs_in(self, connection: Connection) -> bool:
        """Whether the connection may hold an OAuth grant (only those that signed in do; the
        registry marks them), so other connections cost no grant lookup."""
        return self._oauth is not None and connection.typed_config.oauth is not None

    async def complete_sign_in(self, query: Mapping[str, str]) -> SignInDone:
        """Finish the OAuth sign-in a browser came back with (``/oauth/callback``'s query), on
        whichever process it lands, then open the connection with its new tokens.

        Raises:
            SignInError: the sign-in could not be finished; the text says why and what to do.
        """
        if self._oauth is None:
            raise errors.SignInError("OAuth sign-in is not available on this bot.")
        connection = await self._oauth.finish(query)
        outcome = await self._registry.reconnect(connection.team_id, connection.user_id, connection.id)
        return SignInDone(outcome.connection, outcome.error)

    async def sign_in_url(self, team_id: str, user_id: str, connection_id: uuid.UUID) -> str | None:
        """A new sign-in link for the person's connection ("Sign in again"), or None when it
        opened without one (it was signed in after all).

        Raises:
            ConnectionNotFoundError: not theirs.
            McpCoreError: the server failed in another way (the text says how).
        """
        outcome = await self._registry.reconnect(team_id, user_id, connection_id)
        if isinstance(outcome.error, errors.SignInRequiredError):
            return outcome.error.authorize_url
        if outcome.error is not None:
            raise outcome.error
        return None

    async def test(self, team_id: str, user_id: str, connection_id: uuid.UUID) -> HealthReport:
        """List the connection's tools again and time it (one policy check, as for any connect)."""
        return await self._registry.test(team_id, user_id, connection_id)
