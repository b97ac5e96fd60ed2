"""One bot process's worth of services that calls a tool once, for the two-process tests.

``python -m tests.oauth.refresh_worker <database-url> <credential-keys> <go-file>``: builds the
real services on that database, prints ``READY``, waits for ``<go-file>`` to exist (so several
workers call at the same moment), calls ``tracker__whoami`` as the test's person and prints
``OK`` or the error. The allowed hosts let in the local OAuth server.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from mcp_core import errors
from mcp_core.services import build_services
from mcp_core.settings import Settings

TEAM, USER = "T0001", "U000A"


def wait_for_file(path: Path) -> None:
    """Block until ``path`` exists (the test's starting gun), polling every 10 ms."""
    while not path.exists():
        time.sleep(0.01)


async def main(database_url: str, keys: str, go_file: str) -> int:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(data_dir),
            database_url=database_url,
            credential_keys=keys,
            mcp_allowed_hosts=["127.0.0.1", "localhost"],
            oauth_redirect_url="http://localhost:3999/oauth/callback",
        )
        services = await build_services(settings, run_migrations=False)
        try:
            print("READY", flush=True)
            await asyncio.to_thread(wait_for_file, Path(go_file))
            try:
                result = await services.registry.call(TEAM, USER, "tracker__whoami", {})
            except errors.McpCoreError as exc:
                print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
                return 1
            print("OK" if not result.is_error else f"TOOL-ERROR {result.text[:200]}", flush=True)
            return 0 if not result.is_error else 1
        finally:
            await services.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
