"""The project's exceptions outside Slack, one small tree.

Foreign exceptions (SQLAlchemy, the mcp SDK, httpx2, OSError, pydantic) are translated
where they enter this layer (``raise ... from exc``), so callers only ever catch these.
``str(error)`` is always safe to show a user or the LLM: it names the connection and says
what to do, and never contains a secret or a stack trace::

    McpCoreError
    ├── ConfigError                 settings that cannot work (bad URL, bad key list)
    ├── StoreError                  the database failed
    │   ├── DuplicateConnectionError    name already used by this user
    │   ├── ConnectionNotFoundError     no such connection for this user
    │   └── TurnTakenOverError          this process lost a turn to another one's sweeper
    │       │                           (its lease ran out): it must not send another call
    │       └── TurnContinuedElsewhereError  a click on another process took the turn's
    │                                        question; that process goes on with the turn
    ├── CredentialError             stored credentials cannot be decrypted (wrong or retired
    │                               master key, tampered or misplaced record); names the connection
    │   └── CredentialBackendError      the secret store is down, slow, throttling or refusing
    │                                   the bot (an outage: retrying later can work)
    ├── PolicyError                 a URL or command the security policy refuses
    ├── LimitError                  one person reached a limit (connections, answers in
    │                               progress, tool calls per minute); others are unaffected
    ├── McpServerError              a user's MCP server failed (names the connection)
    │   ├── ServerUnavailableError      could not connect: refused, missing command, handshake
    │   │   └── ServerAuthError             the server refused our credentials (401/403)
    │   ├── ServerTimeoutError          connect or tool call ran past its timeout
    │   ├── ServerCrashedError          the session died (process exited, stream closed)
    │   └── ServerProtocolError         the server answered with something off-spec
    ├── CallStoppedError            the person stopped a call (a task followed after a
    │                               restart): its server was asked to cancel it
    ├── ToolError                   the tool call itself is wrong
    │   ├── UnknownToolError            no such tool in the user's catalog
    │   └── ToolArgumentsError          arguments do not match the tool's inputSchema
    └── LlmError                    the language model did not answer (unreachable, refused
                                    the key, rate-limited, timed out)

A tool that runs and reports failure (``isError``) is not an exception: it comes back as a
``ToolResult`` with ``is_error=True``, because the model should read it and adapt.
"""

from __future__ import annotations

__all__ = [
    "CallStoppedError",
    "ConfigError",
    "ConnectionNotFoundError",
    "CredentialBackendError",
    "CredentialError",
    "DuplicateConnectionError",
    "LimitError",
    "LlmError",
    "McpCoreError",
    "McpServerError",
    "PolicyError",
    "ServerAuthError",
    "ServerCrashedError",
    "ServerProtocolError",
    "ServerTimeoutError",
    "ServerUnavailableError",
    "StoreError",
    "ToolArgumentsError",
    "ToolError",
    "TurnContinuedElsewhereError",
    "TurnTakenOverError",
    "UnknownToolError",
]


class McpCoreError(Exception):
    """Base of every error raised by mcp_core; its text is fit for users."""


class ConfigError(McpCoreError):
    """The configuration cannot work as given."""


class StoreError(McpCoreError):
    """The database could not complete an operation."""


class TurnTakenOverError(StoreError):
    """The turn's lease ran out (the database was unreachable too long, or the process was
    frozen) and another process closed it in the thread; nothing more may run for it."""

    def __init__(self) -> None:
        super().__init__("This answer was interrupted and closed in the meantime. Ask again to continue.")


class TurnContinuedElsewhereError(TurnTakenOverError):
    """The turn's question was answered on another process, which goes on with the turn:
    this process lets it go without a word in the thread."""


class DuplicateConnectionError(StoreError):
    """A connection with this name already exists for this user."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"You already have a connection named “{name}”. "
            "Pick another name or disconnect the old one first."
        )
        self.name = name


class ConnectionNotFoundError(StoreError):
    """No connection with this id or name belongs to this user."""

    def __init__(self, name: str) -> None:
        super().__init__(f"You have no connection named “{name}”.")
        self.name = name


class CredentialError(McpCoreError):
    """A stored credential record cannot be decrypted or is not a valid record.

    ``str()`` is the user's text: what happened and what to do, naming the connection once the
    caller knows it (:meth:`for_connection`). ``reason`` is a short detail for the operator's
    log (which key id, which check failed). Neither ever contains a secret or key material.
    """

    def __init__(self, reason: str, connection: str | None = None) -> None:
        subject = (
            f"{connection}: the stored credentials"
            if connection
            else "The stored credentials for this connection"
        )
        super().__init__(
            f"{subject} can't be read (wrong key or tampered record). "
            "Reconnect it, or ask an admin to check CREDENTIAL_KEYS."
        )
        self.reason = reason
        self.connection = connection

    def for_connection(self, connection: str) -> CredentialError:
        """The same error, naming the connection whose credentials these are."""
        return type(self)(self.reason, connection)


class CredentialBackendError(CredentialError):
    """The credential backend (a cloud secret store, the database) could not be reached in
    time or refused the bot access; nothing is wrong with the stored record itself.

    ``reason`` names the service and the failure for the operator's log (never a secret).
    """

    def __init__(self, reason: str, connection: str | None = None) -> None:
        subject = (
            f"{connection}: the stored credentials"
            if connection
            else "The stored credentials for this connection"
        )
        McpCoreError.__init__(
            self,
            f"{subject} can't be reached right now ({reason}). Try again in a moment; "
            "if it keeps failing, ask an admin to check the bot's access to its secret store.",
        )
        self.reason = reason
        self.connection = connection


class PolicyError(McpCoreError):
    """The security policy refuses a URL, host or command."""


class LimitError(McpCoreError):
    """One person reached a per-user limit; the text says which and what to do."""


class McpServerError(McpCoreError):
    """A user's MCP server failed; ``connection`` names it."""

    def __init__(self, connection: str, message: str) -> None:
        super().__init__(f"{connection}: {message}")
        self.connection = connection
        self.reason = message


class ServerUnavailableError(McpServerError):
    """The server could not be reached or refused the handshake."""


class ServerAuthError(ServerUnavailableError):
    """The server answered 401/403: the credentials are missing, wrong or expired."""


class SignInRequiredError(ServerAuthError):
    """The server signs people in with OAuth and this connection has no usable grant.

    ``authorize_url`` is where the person's browser goes (it carries only the single-use,
    expiring ``state``, never a secret); ``mcp_core.oauth`` finishes the flow when the callback
    arrives, on whichever process it lands.
    """

    def __init__(self, connection: str, authorize_url: str, *, scope: str | None = None) -> None:
        super().__init__(connection, "needs sign-in")
        self.authorize_url = authorize_url
        self.scope = scope


class OAuthClientMissingError(ServerAuthError):
    """The server wants OAuth but offers the bot no way to identify itself: no pre-registered
    client, no Client ID Metadata Document support, no dynamic registration. An admin must
    register the bot with the server and give its client id (``OAUTH_<CARD>_CLIENT_ID``, or
    in Slack: ``OAuthFlows.add_team_client``)."""

    def __init__(self, connection: str, issuer: str, server_url: str = "") -> None:
        super().__init__(
            connection,
            f"the sign-in server {issuer} does not let the bot register itself; an admin must "
            "register the bot there and give the bot its client id",
        )
        self.issuer = issuer
        self.server_url = server_url
        """The MCP server's URL, which an admin's client is then bound to."""


class SignInError(McpCoreError):
    """A sign-in callback could not be completed (unknown or expired state, refused code,
    the person declined); the text says what happened and what to do, without any secret."""


class ServerTimeoutError(McpServerError):
    """The server did not answer within the timeout."""


class ServerCrashedError(McpServerError):
    """The live session died; the next use opens a new one."""


class ServerProtocolError(McpServerError):
    """The server sent something the MCP spec does not allow."""


class CallStoppedError(McpCoreError):
    """The person stopped the call; its server was asked to cancel it (it may have done some
    of the work already)."""


class ToolError(McpCoreError):
    """The requested tool call cannot be made as asked."""


class UnknownToolError(ToolError):
    """The tool is not in this user's catalog."""

    def __init__(self, tool: str) -> None:
        super().__init__(f"There is no tool named “{tool}” among your connections.")
        self.tool = tool


class ToolArgumentsError(ToolError):
    """The arguments do not satisfy the tool's inputSchema; nothing was sent."""

    def __init__(self, tool: str, problems: list[str]) -> None:
        joined = "; ".join(problems)
        super().__init__(f"Arguments for {tool} do not match its schema: {joined}")
        self.tool = tool
        self.problems = problems


class LlmError(McpCoreError):
    """The OpenAI-compatible model could not answer; the text says why without the API key."""
