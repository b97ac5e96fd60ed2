"""The run-card model: one pydantic class that validates a card and builds a connection from a form.

A card is data (YAML in ``run_cards/builtin/`` or in the admin folder ``RUN_CARDS_DIR``)::

    id: postgres
    transport: stdio
    command: npx
    args: ["-y", "@modelcontextprotocol/server-postgres@0.6.2"]   # the launcher: fixed
    server_args: ["{connection_string}"]                           # the server's own argv
    fields:
      - {key: connection_string, label: Connection string, required: true, endpoint: true}
      - {key: password, label: Password, secret: true}
    mapping:
      connection_string: arg               # fills the "{connection_string}" slot
      password: env:PGPASSWORD             # or {to: "header:Authorization", format: "Bearer {value}"}

Where a field's value goes (``mapping``):

- ``env:NAME`` (stdio): an environment variable of the server process.
- ``arg`` (stdio): the ``{key}`` placeholder of ``server_args``. A placeholder is always a whole
  argument (``"{key}"``, never ``"--x={key}"``), so a value becomes exactly one argv element,
  passed literally (no shell is ever involved). An empty optional value drops its argument.
  Values starting with ``-`` are refused for ``arg`` fields, so a value can never be read as an
  option. Secret fields can never be ``arg`` (argv is visible to every local user in ``ps``).
- ``header:Name`` (remote), with an optional ``format`` such as ``"Bearer {value}"``;
  ``header:{other_key}`` takes the header's *name* from the field ``other_key``, whose own
  mapping is ``header_name``.
- ``query:name`` (remote): a URL query parameter (``format`` allowed too).
- ``url`` (remote cards without a fixed ``url``, i.e. ``custom``): the server URL itself.
- ``transport`` (remote): the field picks ``streamable_http`` or ``sse``.

``env``, ``header`` and ``query`` are the places of ``mcp_core.connection_config.PLACES`` (one row
each: which servers use it, what a name looks like); the other kinds are this module's own.

``RunCard.build(values)`` checks the values and returns the ``NewConnection`` (non-secret env,
headers and query in ``config``; ``card_id`` set) and the secrets map (each ``SecretTarget`` as its
storage key — ``env:NAME``, ``header:Name``, ``query:name`` — → value) that the credential store
keeps under the connection's ``credential_ref``; the caller stores them and sets ``credential_ref``.

Preinstalled commands: stdio cards run their npm server through ``npx`` by default. An admin
can point a card at a preinstalled command instead with the environment variable
``RUN_CARD_<ID>_COMMAND`` (id upper-cased, ``-`` → ``_``), e.g.
``RUN_CARD_POSTGRES_COMMAND="node /opt/mcp/server-postgres/dist/index.js"``: the value is split
like a shell would split words (``shlex``, no shell runs) and replaces ``command`` and ``args``;
``server_args`` are kept. The loader applies these overrides (see ``loader.load_cards``).

Signing in with OAuth: a remote card with ``auth: oauth`` makes connections that sign in per person
(the core attaches an OAuth provider: discovery, client registration, PKCE, tokens in the
credential manager; the person gets a "Sign in" button). Such a card may have no fields at all,
never maps anything to ``header:Authorization`` (signing in sets it), and may refine the sign-in
with an ``oauth:`` block::

    auth: oauth
    oauth:
      scope: "read write"                # asked for only when the server names no scopes itself
      client_auth: client_secret_post    # for a client the operator registered (below)

A server without dynamic client registration needs a client the operator registered there, given
as ``OAUTH_<CARD>_CLIENT_ID`` / ``OAUTH_<CARD>_CLIENT_SECRET`` (``oauth_client_var``); the card's
``advice`` says so. ``build`` puts the block into ``config["oauth"]`` (``{}`` when there is none).

Only built-in and admin cards may use stdio: a card whose ``source`` is ``user`` must be remote.
A stdio field whose value names a host the server will connect to is marked ``endpoint: true``,
so the bot applies the network policy to it (``mcp_core.security.check_endpoint``).

Size (~600 lines): every rule a card must satisfy is a validator of this one model, so that a
card that loads is a card that builds; splitting the rules from the model would let them drift.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcp_core.connection_config import PLACES, CardFieldError, ConnectionConfig, OAuthOptions, SecretTarget
from mcp_core.models import NewConnection, Transport

__all__ = [
    "CARD_ID_RE",
    "CardField",
    "CardFieldError",
    "CardOAuth",
    "FieldMapping",
    "RunCard",
    "command_override_var",
    "oauth_client_var",
]

CARD_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
FIELD_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_WHOLE_PLACEHOLDER = re.compile(r"^\{([a-z][a-z0-9_]*)\}$")
_BEARER_PREFIX = re.compile(r"^bearer\s+", re.IGNORECASE)
_HEADER_NAME = PLACES["header"].name_pattern
_STDIO_KINDS = {"arg"} | {kind for kind, place in PLACES.items() if not place.remote}
_REMOTE_KINDS = {"url", "transport", "header_name"} | {kind for kind, place in PLACES.items() if place.remote}
_REMOTE_TRANSPORTS = ("streamable_http", "sse")
MAX_VALUE_CHARS = 4096
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")
"""RFC 6749 §3.3 scope-token: printable ASCII except space, ``"`` and ``\\``."""
MAX_SCOPE_CHARS = 1000
MAX_SCOPE_TOKENS = 50
_AUTHORIZATION = "authorization"
_OAUTH_CLIENT_PARTS = ("CLIENT_ID", "CLIENT_SECRET")


def command_override_var(card_id: str) -> str:
    """The environment variable that overrides a card's launcher: ``RUN_CARD_<ID>_COMMAND``."""
    return f"RUN_CARD_{card_id.upper().replace('-', '_')}_COMMAND"


def oauth_client_var(card_id: str, part: str) -> str:
    """The operator's variable for a client registered with a card's server:
    ``oauth_client_var("github-oauth", "CLIENT_ID")`` is ``OAUTH_GITHUB_OAUTH_CLIENT_ID``.

    Raises:
        ValueError: ``part`` is not ``CLIENT_ID`` or ``CLIENT_SECRET``.
    """
    if part not in _OAUTH_CLIENT_PARTS:
        raise ValueError(f"part is one of {', '.join(_OAUTH_CLIENT_PARTS)}, not {part!r}")
    return f"OAUTH_{card_id.upper().replace('-', '_')}_{part}"


class CardField(BaseModel):
    """One input of a card's form."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    label: str = Field(min_length=1, max_length=48)
    placeholder: str | None = Field(default=None, max_length=150)
    hint: str | None = Field(default=None, max_length=300)
    secret: bool = False
    required: bool = False
    pattern: str | None = None
    """A regular expression the whole value must match (``re.fullmatch``)."""
    default: str | None = None
    endpoint: bool = False
    """The value is a URL the local server will connect to (a database URL, say). Stdio servers run
    on the bot's machine, so its host gets the remote-URL network policy: public addresses only,
    unless ``MCP_ALLOWED_HOSTS`` lists it. Checked on submit and before every connect."""

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not FIELD_KEY_RE.fullmatch(value):
            raise ValueError("a field key is 1–32 of a-z, 0-9 and _, starting with a letter")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class CardOAuth(BaseModel):
    """A card's ``oauth:`` block (``auth: oauth`` only); ``build`` turns it into ``OAuthOptions``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: str | None = None
    """Space-separated scopes, asked for only when neither the server's challenge nor its
    metadata names any."""
    client_auth: Literal["none", "client_secret_basic", "client_secret_post"] | None = None
    """How a client the operator registered authenticates at the token endpoint; None:
    ``client_secret_basic`` with a secret, else ``none``."""

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("scope is empty; leave it out to ask for the server's own scopes")
        if len(value) > MAX_SCOPE_CHARS:
            raise ValueError(f"scope is too long (at most {MAX_SCOPE_CHARS} characters)")
        tokens = value.split(" ")
        if len(tokens) > MAX_SCOPE_TOKENS:
            raise ValueError(f"scope has too many entries (at most {MAX_SCOPE_TOKENS})")
        for token in tokens:
            if not _SCOPE_TOKEN.fullmatch(token):
                raise ValueError(
                    "scope is scope names separated by single spaces; a name is printable ASCII "
                    f'without spaces, quotes (") or backslashes (RFC 6749 §3.3), not {token!r}'
                )
        if len(set(tokens)) != len(tokens):
            raise ValueError("scope names a scope twice")
        return value

    def options(self) -> OAuthOptions:
        return OAuthOptions(scope=self.scope, client_auth=self.client_auth)


class FieldMapping(BaseModel):
    """Where one field's value goes; YAML may give just the ``to`` string."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str
    format: str | None = None
    """For header and query targets: the value as sent, with ``{value}`` standing for the input."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"to": data} if isinstance(data, str) else data

    @property
    def kind(self) -> str:
        return self.to.partition(":")[0]

    @property
    def target(self) -> str:
        return self.to.partition(":")[2]

    @model_validator(mode="after")
    def _check(self) -> FieldMapping:
        kind, sep, target = self.to.partition(":")
        if kind in PLACES:
            if not sep or not target:
                raise ValueError(f"{kind} needs a name: {kind}:<name>")
            name_re = PLACES[kind].name_pattern
            if not (name_re.fullmatch(target) or (kind == "header" and _WHOLE_PLACEHOLDER.fullmatch(target))):
                raise ValueError(f"{target!r} is not a valid {kind} name")
        elif kind in ("arg", "url", "transport", "header_name"):
            if sep:
                raise ValueError(f"{kind} takes no name")
        else:
            raise ValueError(
                "a mapping is env:NAME, arg, header:Name, query:name, url, transport or header_name"
            )
        if self.format is not None:
            if kind not in PLACES or not PLACES[kind].remote:
                raise ValueError("format applies to header and query mappings only")
            if self.format.count("{value}") != 1 or re.search(r"\{(?!value\})", self.format):
                raise ValueError('format must contain "{value}" exactly once and no other placeholder')
        return self


class RunCard(BaseModel):
    """A validated run card. See the module docstring for the YAML shape and the mapping rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = Field(min_length=1, max_length=48)
    emoji: str | None = None
    description: str = Field(min_length=1, max_length=150)
    docs_url: str | None = None
    source: Literal["builtin", "admin", "user"] = "builtin"
    """Set by the loader from the folder the card came from, never by the YAML itself."""
    transport: Transport
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    """Fixed launcher arguments (e.g. ``-y <package>@<version>`` for npx); no placeholders."""
    server_args: list[str] = Field(default_factory=list)
    """The server's own arguments, after ``args``; may hold whole-argument ``{key}`` placeholders."""
    url: str | None = None
    fields: list[CardField] = Field(default_factory=list)
    mapping: dict[str, FieldMapping] = Field(default_factory=dict)
    approval: Literal["writes", "always", "never"] = "writes"
    """Default approval policy for the connection's tools (used by the agent)."""
    advice: str | None = Field(default=None, max_length=1500)
    """Least-privilege advice shown in the form."""
    admin_only: bool = False
    auth: Literal["none", "oauth"] = "none"
    """``oauth``: each person signs in to the server (remote cards only; see the module docstring)."""
    oauth: CardOAuth | None = None
    """Refinements of the sign-in; only with ``auth: oauth``."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not CARD_ID_RE.fullmatch(value):
            raise ValueError("a card id is a slug: 1–32 of a-z, 0-9 and -, starting with a letter")
        return value

    @field_validator("description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value.strip() or "\r" in value:
            raise ValueError("the description is one line")
        return value.strip()

    @model_validator(mode="after")
    def _check(self) -> RunCard:
        keys = [f.key for f in self.fields]
        if len(set(keys)) != len(keys):
            raise ValueError("field keys must be unique")
        by_key = {f.key: f for f in self.fields}
        for key in self.mapping:
            if key not in by_key:
                raise ValueError(f"mapping names {key!r}, which is not a field")
        for key in keys:
            if key not in self.mapping:
                raise ValueError(f"field {key!r} has no mapping")
        for item in self.fields:
            if item.endpoint and (self.transport != "stdio" or item.secret):
                raise ValueError(
                    f"field {item.key!r}: endpoint is for non-secret fields of stdio cards "
                    "(a remote card's url is always checked)"
                )
        self._check_auth()
        if self.transport == "stdio":
            self._check_stdio(by_key)
        else:
            self._check_remote(by_key)
        destinations = [m.to for m in self.mapping.values() if m.kind not in ("arg", "header_name")]
        if len(set(destinations)) != len(destinations):
            raise ValueError("two fields map to the same destination")
        return self

    def _check_stdio(self, by_key: dict[str, CardField]) -> None:
        if self.source == "user":
            raise ValueError("only built-in and admin cards may run a local (stdio) command")
        if not self.command:
            raise ValueError("a stdio card needs a command")
        if self.url is not None:
            raise ValueError("a stdio card has no url")
        for arg in self.args:
            if "{" in arg or "}" in arg:
                raise ValueError(f"launcher args take no placeholders ({arg!r}); use server_args")
        slots: list[str] = []
        for arg in self.server_args:
            whole = _WHOLE_PLACEHOLDER.fullmatch(arg)
            if whole:
                slots.append(whole.group(1))
            elif "{" in arg or "}" in arg:
                raise ValueError(f"a placeholder must be a whole argument, not part of {arg!r}")
        for slot in slots:
            if slot not in by_key:
                raise ValueError(f"placeholder {{{slot}}} names no field")
        if len(set(slots)) != len(slots):
            raise ValueError("each placeholder may appear once")
        for key, mapping in self.mapping.items():
            if mapping.kind not in _STDIO_KINDS:
                raise ValueError(f"field {key!r}: a stdio card maps fields to env:NAME or arg only")
            if mapping.kind == "arg":
                if by_key[key].secret:
                    raise ValueError(
                        f"field {key!r} is secret and cannot be an argument (argv is visible in ps); "
                        "use env:NAME"
                    )
                if key not in slots:
                    raise ValueError(f"field {key!r} maps to arg but server_args has no {{{key}}}")
        for slot in slots:
            if self.mapping[slot].kind != "arg":
                raise ValueError(f"placeholder {{{slot}}} names a field that does not map to arg")

    def _check_remote(self, by_key: dict[str, CardField]) -> None:
        if self.command is not None or self.args or self.server_args:
            raise ValueError("a remote card has no command or args")
        kinds = [m.kind for m in self.mapping.values()]
        for key, mapping in self.mapping.items():
            if mapping.kind not in _REMOTE_KINDS:
                raise ValueError(f"field {key!r}: a remote card maps fields to header, query or url only")
            if mapping.kind in ("url", "transport", "header_name") and by_key[key].secret:
                raise ValueError(f"field {key!r}: a secret cannot be the {mapping.kind}; use header or query")
            if mapping.kind == "header" and (ref := _WHOLE_PLACEHOLDER.fullmatch(mapping.target)):
                other = ref.group(1)
                if other not in self.mapping or self.mapping[other].kind != "header_name":
                    raise ValueError(f"field {key!r}: header:{{{other}}} needs a field mapped to header_name")
        if kinds.count("url") > 1 or kinds.count("transport") > 1:
            raise ValueError("at most one field maps to url and one to transport")
        if self.url is None:
            if "url" not in kinds:
                raise ValueError("a remote card needs a url (or a field mapped to url)")
        else:
            if "url" in kinds:
                raise ValueError("a card with a fixed url cannot also take it from a field")
            if "{" in self.url or "}" in self.url:
                raise ValueError("the url takes no placeholders; map fields to query parameters instead")
            _check_url(self.url)
        for key, mapping in self.mapping.items():
            if mapping.kind == "header_name" and not self._header_users(key):
                raise ValueError(f"field {key!r} maps to header_name but no header:{{{key}}} uses it")

    def _check_auth(self) -> None:
        if self.oauth is not None and self.auth != "oauth":
            raise ValueError("an oauth: block needs auth: oauth")
        if self.auth != "oauth":
            return
        if self.transport == "stdio":
            raise ValueError(
                "auth: oauth is for remote servers (streamable_http or sse); a local (stdio) server "
                "has no sign-in"
            )
        for key, mapping in self.mapping.items():
            if mapping.kind == "header" and mapping.target.lower() == _AUTHORIZATION:
                raise ValueError(
                    f"field {key!r}: an auth: oauth card cannot set the Authorization header "
                    "(signing in sets it)"
                )

    # --- building ------------------------------------------------------------------------------

    def field(self, key: str) -> CardField:
        for item in self.fields:
            if item.key == key:
                return item
        raise KeyError(key)

    def secret_target(self, key: str, values: Mapping[str, str]) -> SecretTarget | None:
        """Where the secret field ``key`` is stored, given the form's ``values``; None when its
        header's name comes from a field left blank.

        Raises:
            KeyError: no such field.
        """
        mapping = self.mapping[key]
        target = mapping.target
        if ref := _WHOLE_PLACEHOLDER.fullmatch(target):
            target = values.get(ref.group(1), "")
        return SecretTarget.parse(f"{mapping.kind}:{target}") if target else None

    def cleaned(self, typed: Mapping[str, str]) -> dict[str, str]:
        """The typed values of this card's fields, cleaned the way people paste them: blanks
        dropped, a token's pasted ``Bearer`` prefix removed, ``sse`` for a URL ending in /sse."""
        values = {f.key: typed[f.key].strip() for f in self.fields if typed.get(f.key, "").strip()}
        for key, value in list(values.items()):
            mapping = self.mapping[key]
            if mapping.format and mapping.format.startswith("Bearer "):
                values[key] = _BEARER_PREFIX.sub("", value)
        transport = next((k for k, m in self.mapping.items() if m.kind == "transport"), None)
        url = self.url_field()
        if transport and url and transport not in values and values.get(url, "").rstrip("/").endswith("/sse"):
            values[transport] = "sse"  # legacy SSE endpoints end in /sse
        return values

    def url_field(self) -> str | None:
        """The field the server URL is typed in; None for a card with a fixed URL (or stdio)."""
        return next((k for k, m in self.mapping.items() if m.kind == "url"), None)

    def policy_fields(self, new: NewConnection, values: Mapping[str, str]) -> dict[str, str | None]:
        """Which form field holds each address the network policy checks: the remote URL's
        field (None for a fixed URL), or each stdio endpoint's."""
        if new.transport != "stdio":
            return {new.url or "": self.url_field()}
        return {values[f.key]: f.key for f in self.fields if f.endpoint and values.get(f.key)}

    def sent_value(self, key: str, value: str) -> str:
        """A field's value as it is sent: through the mapping's ``format``, if it has one."""
        mapping = self.mapping[key]
        return mapping.format.replace("{value}", value) if mapping.format else value

    def build(
        self,
        values: Mapping[str, str],
        *,
        name: str | None = None,
        unshown: Collection[str] = (),
        optional: Collection[str] = (),
    ) -> tuple[NewConnection, dict[str, str]]:
        """Turn form values into a connection and its secrets map.

        ``values`` are keyed by field key; unknown keys are refused. A missing or blank value
        falls back to the field's default. ``name`` defaults to the card id. The non-secret
        values are kept in ``config["card_values"]`` for the edit form, except ``unshown`` ones
        (values the operator supplied, which are never shown back); ``endpoint`` values are
        listed in ``config["endpoints"]`` for the network policy; an ``auth: oauth`` card's
        ``OAuthOptions`` go in ``config["oauth"]`` (``{}`` without an ``oauth:`` block).
        ``optional`` fields may be blank even if required (an Edit's blank secrets, which keep
        their stored values).

        Raises:
            CardFieldError: a value is missing, malformed or unsafe (``field_key`` says which).
            ValueError: ``name`` is not a valid connection name.
        """
        unknown = sorted(set(values) - {f.key for f in self.fields})
        if unknown:
            raise CardFieldError(unknown[0], "this card has no such field")
        resolved: dict[str, str] = {}
        for item in self.fields:
            value = self._check_value(
                item, values.get(item.key), required=item.required and item.key not in optional
            )
            if value is not None:
                resolved[item.key] = value

        plain: dict[str, dict[str, str]] = {kind: {} for kind in PLACES}
        secrets: dict[str, str] = {}
        url = self.url
        transport: Transport = self.transport
        argv = list(self.args)
        for arg in self.server_args:
            slot = _WHOLE_PLACEHOLDER.fullmatch(arg)
            if slot is None:
                argv.append(arg)
            elif slot.group(1) in resolved:
                argv.append(resolved[slot.group(1)])
        for key, value in resolved.items():
            mapping = self.mapping[key]
            item = self.field(key)
            kind, target = mapping.kind, mapping.target
            if kind in ("arg", "header_name"):
                continue
            if kind == "url":
                url = value
                continue
            if kind == "transport":
                transport = value  # type: ignore[assignment]  # checked by _check_value
                continue
            if kind == "header" and (ref := _WHOLE_PLACEHOLDER.fullmatch(target)):
                if ref.group(1) not in resolved:
                    raise CardFieldError(ref.group(1), "needed when a header value is given")
                target = resolved[ref.group(1)]
                if self.auth == "oauth" and target.lower() == _AUTHORIZATION:
                    message = "Authorization is set by signing in; pick another header"
                    raise CardFieldError(ref.group(1), message)
            sent = self.sent_value(key, value)
            if item.secret:
                destination = str(SecretTarget.parse(f"{kind}:{target}"))
                if kind == "header" and any(k.lower() == destination.lower() for k in secrets):
                    raise CardFieldError(key, f"the header {target} is already set by another field")
                secrets[destination] = sent
            else:
                plain[kind][target] = sent
        for key, mapping in self.mapping.items():
            if mapping.kind == "header_name" and key in resolved:
                users = self._header_users(key)
                if not any(k in resolved for k in users):
                    raise CardFieldError(users[0], "needed when a header name is given")
        plain_headers = {k.lower() for k in plain["header"]}
        for destination in map(SecretTarget.parse, secrets):
            if destination.kind == "header" and destination.name.lower() in plain_headers:
                message = f"the header {destination.name} is set twice"
                raise CardFieldError(self._header_name_field() or "", message)
        oauth = (self.oauth or CardOAuth()).options() if self.auth == "oauth" else None
        config = ConnectionConfig(
            card_values={k: v for k, v in resolved.items() if not self.field(k).secret and k not in unshown},
            endpoints=tuple(resolved[f.key] for f in self.fields if f.endpoint and f.key in resolved),
            oauth=oauth,
            **{place.config_field: plain[kind] for kind, place in PLACES.items()},
        )
        connection = NewConnection(
            name=name or self.id,
            transport=transport,
            url=url if transport != "stdio" else None,
            command=self.command if transport == "stdio" else None,
            args=argv if transport == "stdio" else [],
            config=config.stored(),
            card_id=self.id,
        )
        return connection, secrets

    def _header_users(self, name_key: str) -> list[str]:
        """The fields whose header name comes from the field ``name_key``."""
        return [k for k, m in self.mapping.items() if m.kind == "header" and m.target == f"{{{name_key}}}"]

    def _header_name_field(self) -> str | None:
        return next((k for k, m in self.mapping.items() if m.kind == "header_name"), None)

    def _check_value(self, item: CardField, raw: str | None, *, required: bool) -> str | None:
        kind = self.mapping[item.key].kind
        value = raw if raw is not None and raw.strip() else item.default
        if value is None or not value.strip():
            if required:
                raise CardFieldError(item.key, "required")
            return None
        if kind not in ("env", "arg"):
            value = value.strip()  # remote values: pasted tokens often carry a trailing newline
        if len(value) > MAX_VALUE_CHARS:
            raise CardFieldError(item.key, f"too long (at most {MAX_VALUE_CHARS} characters)")
        if "\x00" in value:
            raise CardFieldError(item.key, "contains a NUL character")
        if kind in ("header", "header_name", "url", "transport") and ("\n" in value or "\r" in value):
            raise CardFieldError(item.key, "must be a single line")
        if item.pattern and not re.fullmatch(item.pattern, value):
            shown = "" if item.secret else " (see the hint)"
            raise CardFieldError(item.key, f"is not in the expected format{shown}")
        if kind == "arg" and value.startswith("-"):
            raise CardFieldError(
                item.key, "cannot start with “-”: the server would read it as an option, not a value"
            )
        if kind == "header_name" and not _HEADER_NAME.fullmatch(value):
            raise CardFieldError(item.key, "a header name is letters, digits and - only")
        if kind == "transport" and value not in _REMOTE_TRANSPORTS:
            raise CardFieldError(item.key, "must be streamable_http or sse")
        if kind == "url":
            try:
                _check_url(value)
            except ValueError as exc:
                raise CardFieldError(item.key, str(exc)) from None
        if item.endpoint:
            try:
                host = urlsplit(value).hostname
            except ValueError:
                host = None
            if not host or any(c.isspace() for c in value):
                raise CardFieldError(item.key, "must be a URL with a host, like scheme://host:port/name")
        return value

    # --- overrides -----------------------------------------------------------------------------

    def with_command(self, command_line: str) -> RunCard:
        """This stdio card with ``command`` and ``args`` replaced by ``command_line`` (shlex-split).

        Raises:
            ValueError: the card is remote or ``command_line`` is empty or unparsable.
        """
        if self.transport != "stdio":
            raise ValueError(f"{self.id} is a remote card; {command_override_var(self.id)} applies to stdio")
        words = shlex.split(command_line)
        if not words:
            raise ValueError(f"{command_override_var(self.id)} is empty")
        data = self.model_dump() | {"command": words[0], "args": words[1:]}
        return RunCard.model_validate(data)


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry a user name or password; use the token field")
    if any(c.isspace() for c in url):
        raise ValueError("must not contain spaces")
