"""bench/stats.py runs to its tables on SQLite and on PostgreSQL (a few thousand rows: its
timings are the README's, not asserted here), and every answer it reads from the rollups is
the answer the raw rows give."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import PG_ADMIN_URL
from tests.support.servers import REPO

BENCH = REPO / "bench" / "stats.py"
ROWS = 3000
QUERIES = {"/mcp stats 7d", "/mcp stats 30d", "/mcp admin 7d", "/mcp admin 30d"}


def run(tmp_path: Path, *args: str) -> tuple[str, dict]:
    output = tmp_path / "out.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--rows",
            str(ROWS),
            "--people",
            "30",
            "--runs",
            "2",
            "--raw-runs",
            "1",
            "--output",
            str(output),
            *args,
        ],
        capture_output=True,
        timeout=180,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done.stdout.decode(), json.loads(output.read_text())


def check(table: str, got: dict, name: str) -> None:
    assert f"| {name} | {ROWS:,} | `/mcp stats 7d` |" in table
    assert "Rollup answers equal the raw rows' answers: 4 of 4 queries" in table
    assert set(got["queries"]) == QUERIES
    counts = got["counts"]
    assert counts["mcp_tool_usage"] == ROWS
    assert counts["mcp_agent_turns"] == ROWS // 5
    assert counts["mcp_usage_daily.calls"] == counts["mcp_team_usage_daily.calls"] == ROWS
    assert 0 < counts["errors"] < ROWS // 5
    assert set(got["load"]) == {"generate_s", "indexes_s", "rollups_s", "analyze_s"}
    for query, q in got["queries"].items():
        assert q["median_ms"] > 0, query
        assert q["raw"]["median_ms"] > 0, query
        assert q["same_answer"], query
        mine, raw = q["answer"], q["raw_answer"]
        assert mine["tools"], query  # the busiest person and the team did call tools
        assert [t[:4] for t in mine["tools"]] == [t[:4] for t in raw["tools"]], (
            query
        )  # calls, errors per tool
        assert mine == raw, query
    stats_7d, stats_30d = (
        got["queries"]["/mcp stats 7d"]["answer"],
        got["queries"]["/mcp stats 30d"]["answer"],
    )
    assert sum(t[2] for t in stats_7d["tools"]) < sum(t[2] for t in stats_30d["tools"])
    admin_30d = got["queries"]["/mcp admin 30d"]["answer"]
    team_calls = admin_30d["totals"][0]
    assert sum(t[2] for t in stats_30d["tools"]) < team_calls < ROWS  # a second team's rows stay out
    assert team_calls == sum(day[1] for day in admin_30d["per_day"])


def test_the_stats_bench_reads_the_same_answers_from_rollups_and_raw_rows_on_sqlite(tmp_path: Path) -> None:
    table, results = run(tmp_path, "--database", "sqlite")

    assert set(results) == {"machine", "cores", "sqlite"}
    check(table, results["sqlite"][str(ROWS)], "SQLite")


@pytest.mark.postgres
def test_the_stats_bench_reads_the_same_answers_from_rollups_and_raw_rows_on_postgresql(
    tmp_path: Path,
) -> None:
    table, results = run(tmp_path, "--database", "postgresql", "--database-url", PG_ADMIN_URL)

    check(table, results["postgresql"][str(ROWS)], "PostgreSQL")
