"""bench/scale.py at a size the suite can afford: two real bot processes on one PostgreSQL,
a few turns each, one process killed with SIGKILL half-way through its tool calls.

The bench's own verdicts are the assertions: no thread answered twice or a tool run twice, no
thread left saying Thinking and no live turn row left, every thread answered or closed with a
message. No timing is asserted (the numbers are the bench's to report).
"""

from __future__ import annotations

import pytest

from bench.scale import bench, parse_args

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def test_a_process_killed_mid_run_leaves_no_duplicate_no_orphan_and_every_thread_settled() -> None:
    args = parse_args(["--turns", "5", "--snooze-s", "1.5", "--both-share", "0.3", "--output", "/dev/null"])

    baseline, killed = await bench(args)

    for outcome in (baseline, killed):
        assert outcome.problems == [], outcome.name
        assert (outcome.duplicates, outcome.orphans, outcome.live_rows) == (0, 0, 0), outcome.name
        assert outcome.settled_share == 1.0, outcome.name
        assert outcome.most_runs_of_one_call == 1, outcome.name
        assert outcome.delivered_to_both == 3, outcome.name
    assert baseline.answered == baseline.turns
    assert killed.killed_at_s is not None
    assert killed.closed >= 1  # A's turns in their tool call were closed by B, not run again
    assert killed.answered + killed.closed == killed.turns
