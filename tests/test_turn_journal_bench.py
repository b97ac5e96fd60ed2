"""bench/turn_journal.py runs to its table on SQLite and on PostgreSQL (a few turns: its verdict
is the README's, not a timed assertion here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import PG_ADMIN_URL
from tests.support.servers import REPO

BENCH = REPO / "bench" / "turn_journal.py"


def run(tmp_path: Path, *args: str) -> tuple[str, dict]:
    output = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--turns", "5", "--orphans", "7", "--output", str(output), *args],
        capture_output=True,
        timeout=120,
        cwd=REPO,
        check=True,
    )
    return done.stdout.decode(), json.loads(output.read_text())


def test_the_journal_bench_measures_turns_and_a_takeover_on_sqlite(tmp_path: Path) -> None:
    table, results = run(tmp_path)

    assert "| sqlite |" in table
    assert results["sqlite"]["takeover"]["orphans"] == 7
    assert results["sqlite"]["journal_per_turn"]["median_ms"] > 0
    assert "queue_hop" not in results["sqlite"]


@pytest.mark.postgres
def test_the_journal_bench_measures_the_queue_hop_beside_it_on_postgresql(tmp_path: Path) -> None:
    table, results = run(tmp_path, "--database-url", PG_ADMIN_URL)

    assert "| postgresql |" in table
    assert results["postgresql"]["queue_hop"]["median_ms"] > 0
