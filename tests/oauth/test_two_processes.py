"""Two bot processes on one PostgreSQL database share a grant: one refresh between them.

Authorization servers that rotate refresh tokens revoke the whole grant when an old one is used
again, so two processes refreshing the same expired token at once would sign the person out.
Each worker is a real child process with its own pool and engine; they call a tool at the same
moment after the access token expired.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mcp_core import errors
from mcp_core.models import NewConnection
from tests.credentials.conftest import KEY_1, pg_database
from tests.support.oauth_server import afollow_sign_in, start_oauth_server
from tests.support.registry import make_settings, open_services

from .refresh_worker import TEAM, USER

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

WORKERS = 3
WORKER_TIMEOUT_S = 60


def start_worker(database_url: str, keys: str, go: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.oauth.refresh_worker", database_url, keys, str(go)],
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_processes_refreshing_at_once_make_one_token_request(tmp_path: Path) -> None:
    keys = f"k1:{KEY_1}"
    with start_oauth_server("generic", rotate_refresh=True) as server:
        async with pg_database() as url:
            settings = make_settings(
                tmp_path,
                database_url=url,
                credential_keys=keys,
                oauth_redirect_url="http://localhost:3999/oauth/callback",
            )
            async with open_services(settings) as services:
                new_url = server.mcp_url
                new = NewConnection(
                    name="tracker", transport="streamable_http", url=new_url, config={"oauth": {}}
                )
                outcome = await services.registry.add_connection(TEAM, USER, new)
                assert isinstance(outcome.error, errors.SignInRequiredError)
                done = await services.connections.complete_sign_in(
                    await afollow_sign_in(outcome.error.authorize_url)
                )
                assert done.error is None
            server.expire_access()
            go = tmp_path / "go"
            workers = [start_worker(url, keys, go) for _ in range(WORKERS)]
            try:
                for worker in workers:
                    assert worker.stdout is not None
                    assert worker.stdout.readline().strip() == "READY"
                go.touch()
                outputs = [worker.communicate(timeout=WORKER_TIMEOUT_S)[0] for worker in workers]
            finally:
                for worker in workers:
                    worker.kill()
            assert all(out.strip() == "OK" for out in outputs), outputs
            stats = server.stats()
            assert stats["token_requests"].get("refresh_token") == 1
            assert stats["refresh_reuse"] == 0
