"""Per-user OAuth 2.1 sign-in to remote MCP servers.

A person connects a server that signs people in with OAuth (an ``auth: oauth`` run card, or any
remote URL whose server answers 401 with discovery metadata). Opening the session runs the
SDK's discovery and client registration; where the SDK would wait for a browser, the pending
sign-in is stored in the database and ``SignInRequiredError`` carries the link to Slack. The
browser comes back to ``/oauth/callback`` on whichever process; ``ConnectionService
.complete_sign_in`` trades the code for tokens there (``OAuthFlows.finish``) and opens the
connection. Tokens live in the credential manager with their expiry; refresh is single-flight
across processes; disconnect revokes.

* ``grants``: the two tables (pending sign-ins, grants) and the refresh lease.
* ``provider``: ``GrantProvider``, the SDK provider made restartable and multi-process.
* ``flows``: ``OAuthFlows``, the bot's client identity and the end of a sign-in.
"""

from mcp_core.oauth.flows import (
    CALLBACK_PATH,
    CLIENT_METADATA_PATH,
    OAuthFlows,
    PreRegisteredClient,
    default_redirect_url,
)
from mcp_core.oauth.grants import GrantStore, Owner
from mcp_core.oauth.provider import GrantProvider

__all__ = [
    "CALLBACK_PATH",
    "CLIENT_METADATA_PATH",
    "GrantProvider",
    "GrantStore",
    "OAuthFlows",
    "Owner",
    "PreRegisteredClient",
    "default_redirect_url",
]
