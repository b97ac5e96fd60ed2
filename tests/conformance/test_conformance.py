"""The official MCP conformance harness against the bot's own client path, one test per leg.

``.ci/run`` installs the pinned harness (and Node 22) into ``.conformance/``. Each leg runs
``conformance client`` with its checked-in baseline of expected failures; the harness exits
non-zero on a failure not in the baseline *and* on a baseline entry that now passes, so the
baselines only shrink. Without the harness the legs are skipped, except under CI (``CI`` set),
where a missing harness is a broken build (as for the npm reference servers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.conformance

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HARNESS_BIN = ROOT / ".conformance" / "node_modules" / ".bin"
RESULTS_DIR = ROOT / ".conformance" / "results"
CLIENT_TIMEOUT_MS = 120_000
"""Per scenario, from the client's spawn; a run may first wait for a slot (client.py)."""
LEG_TIMEOUT_S = 900
TAIL_CHARS = 6000

LEGS = {
    "2025-11-25": ["--requirements", "2025-11-25"],
    "2026-07-28": ["--requirements", "2026-07-28"],
    "backcompat": ["--suite", "backcompat"],
}
"""Both frozen requirement sets (every scored scenario plus the unscored extensions, each at its
wire version), and the 2025-03-26 back-compat scenarios that neither set includes. Together:
every client scenario of ``--suite all`` except the skills ones (sep-2640), which the harness
skips for a client without skills."""


def harness() -> Path:
    """The harness's CLI; skip when it is not installed, fail under CI."""
    cli = HARNESS_BIN / "conformance"
    if not cli.exists() or not (HARNESS_BIN / "node").exists():
        message = f"conformance harness not installed in {HARNESS_BIN} (run the npm step of .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return cli


@pytest.mark.parametrize("leg", sorted(LEGS))
def test_the_bots_client_path_fails_only_the_baselined_conformance_checks(leg: str) -> None:
    cli = harness()
    client = Path(os.path.relpath(HERE / "client.py", ROOT))
    python = Path(os.path.relpath(sys.executable, ROOT)) if " " not in sys.executable else None
    command = f"{python or shutil.which('python3')} {client}"  # the harness splits it on spaces
    out = RESULTS_DIR / leg
    shutil.rmtree(out, ignore_errors=True)
    args = [str(cli), "client", "--command", command, *LEGS[leg], "--timeout", str(CLIENT_TIMEOUT_MS)]
    args += ["--expected-failures", str(HERE / f"baseline-{leg}.yml"), "-o", str(out)]
    env = {**os.environ, "PATH": f"{HARNESS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.monotonic()
    proc = subprocess.run(
        args,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=LEG_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started
    tail = (proc.stdout + proc.stderr)[-TAIL_CHARS:]
    assert proc.returncode == 0, (
        f"conformance leg {leg} exited {proc.returncode} after {elapsed:.0f} s:\n{tail}"
    )
