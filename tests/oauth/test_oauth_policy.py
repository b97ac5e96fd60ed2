"""A server cannot use OAuth discovery to make the bot fetch from places the network policy refuses.

The resource server here is a few aiohttp routes: it answers 401 and publishes protected
resource metadata naming an authorization server on a private or metadata address. The bot
must refuse before sending anything there, and say why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from mcp_core import errors
from mcp_core.models import NewConnection
from tests.credentials.conftest import KEY_1
from tests.support.registry import make_settings, open_services

pytestmark = pytest.mark.anyio

TEAM, USER = "T0001", "U000A"


@pytest.fixture
async def hostile_resource() -> AsyncIterator[tuple[str, list[str]]]:
    """(MCP URL, paths it was asked for) of a server whose metadata points at 169.254.169.254."""
    seen: list[str] = []

    async def any_route(request: web.Request) -> web.Response:
        seen.append(request.path)
        base = f"http://127.0.0.1:{request.url.port}"
        if request.path.startswith("/.well-known/oauth-protected-resource"):
            return web.json_response(
                {"resource": f"{base}/mcp", "authorization_servers": ["http://169.254.169.254/latest"]}
            )
        challenge = f'Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/mcp", seen
    finally:
        await runner.cleanup()


async def test_metadata_naming_a_private_authorization_server_is_refused(
    tmp_path: Path, hostile_resource: tuple[str, list[str]]
) -> None:
    url, seen = hostile_resource
    async with open_services(make_settings(tmp_path, credential_keys=f"k1:{KEY_1}")) as services:
        new = NewConnection(name="evil", transport="streamable_http", url=url)
        outcome = await services.registry.add_connection(TEAM, USER, new)
    assert isinstance(outcome.error, errors.PolicyError), outcome.error
    assert "169.254.169.254" in str(outcome.error)
    assert "/mcp" in seen  # it was asked, and its metadata read, and nothing else followed
