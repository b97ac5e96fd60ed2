"""A sign-in started on one process finishes on another: the callback may land anywhere.

Process A is this test's own services (as a bot process would run them) on a PostgreSQL
database; process B is a real ``slack-mcp-bot run --http`` on the same database and credential
key, with the fake Slack. The person's browser brings the authorization server's redirect to
B's ``/oauth/callback``; B trades the code, stores the grant and tells the person in Slack; A
then calls a tool with the tokens B stored, without asking anyone to sign in again.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from mcp_core import errors
from mcp_core.models import NewConnection
from tests.credentials.conftest import KEY_1, pg_database
from tests.support.fake_slack import FakeSlack
from tests.support.oauth_server import afollow_sign_in, start_oauth_server
from tests.support.registry import make_settings, open_services

from .test_process import _free_port, _start, _stop, _wait_health

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

TEAM, USER = "T0001", "U000A"
SIGNING_SECRET = "two-process-secret"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


def get_page(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_the_callback_lands_on_another_process_and_the_first_uses_the_grant(
    fake: FakeSlack, tmp_path: Path
) -> None:
    keys = f"k1:{KEY_1}"
    port = _free_port()
    redirect = f"http://localhost:{port}/oauth/callback"
    with start_oauth_server("generic") as server:
        async with pg_database() as url:
            settings = make_settings(
                tmp_path, database_url=url, credential_keys=keys, oauth_redirect_url=redirect
            )
            async with open_services(settings) as services:  # process A (migrates the database)
                new = NewConnection(
                    name="tracker", transport="streamable_http", url=server.mcp_url, config={"oauth": {}}
                )
                outcome = await services.registry.add_connection(TEAM, USER, new)
                assert isinstance(outcome.error, errors.SignInRequiredError)
                query = await afollow_sign_in(outcome.error.authorize_url)
                query.pop("redirect_uri", None)
                process_b = _start(
                    ["run", "--http", "--port", str(port)],
                    fake,
                    tmp_path,
                    DATABASE_URL=url,
                    CREDENTIAL_KEYS=keys,
                    SLACK_SIGNING_SECRET=SIGNING_SECRET,
                    MCP_ALLOWED_HOSTS="127.0.0.1,localhost",
                    OAUTH_REDIRECT_URL=redirect,
                )
                try:
                    _wait_health(f"http://127.0.0.1:{port}/healthz", process_b)
                    status, page = get_page(f"http://127.0.0.1:{port}/oauth/callback?{urlencode(query)}")
                    [dm] = await fake.await_for("chat.postMessage")
                finally:
                    output, _ = _stop(process_b)
                assert status == 200, page
                assert "Connected" in page
                assert dm["body"]["channel"] == USER
                assert "Connected *tracker*" in dm["body"]["text"]
                for secret in (query["code"], query["state"]):
                    assert secret not in page
                    assert secret not in output
                    assert secret not in fake.all_traffic_text()

                catalog = {e.tool.name: e.name for e in await services.registry.catalog(TEAM, USER)}
                result = await services.registry.call(TEAM, USER, catalog["whoami"], {})
                assert not result.is_error, result.text
        assert server.stats()["authorizations"] == 1
