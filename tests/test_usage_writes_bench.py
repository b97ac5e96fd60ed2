"""bench/usage_writes.py runs to its table on SQLite and on PostgreSQL, both designs having
written every row (one round: its numbers are the README's, not a timed assertion here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import PG_ADMIN_URL
from tests.support.servers import REPO

BENCH = REPO / "bench" / "usage_writes.py"


def run(tmp_path: Path, *args: str) -> tuple[str, dict]:
    output = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--reps", "1", "--output", str(output), *args],
        capture_output=True,
        timeout=120,
        cwd=REPO,
        check=True,
    )
    return done.stdout.decode(), json.loads(output.read_text())


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_usage_writes_bench_times_both_designs_for_every_batch_size(
    tmp_path: Path, database: str
) -> None:
    table, results = run(tmp_path, *(["--database-url", PG_ADMIN_URL] if database == "postgresql" else []))

    assert f"| {database} | 500 |" in table
    got = results[database]
    assert got["rows_written"] == got["rows_expected"] > 0
    sizes = got["sizes"]
    assert sorted(sizes, key=int) == ["1", "50", "200", "500"]
    assert all(row[design]["cpu_ms"] > 0 for row in sizes.values() for design in ("now", "sqlalchemy"))
