"""What one /mcp connect costs: database transactions and network-policy checks.

Pinned so a change that adds a round trip, or a second DNS-resolving policy check, to the
connect flow shows up here, measured through the same signed requests Slack sends. Before the
connection service one connect cost 11 transactions (8 reads) and 3 policy checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from mcp_core import security
from mcp_core.models import ConnectionStatus
from mcp_core.store._engine import BEGIN_IMMEDIATE
from tests.slack.conftest import SlackDriver, listeners_done
from tests.support.fake_slack import FakeSlack
from tests.support.registry import BEARER
from tests.support.servers import RunningServer

pytestmark = pytest.mark.anyio


@dataclass
class Cost:
    """Transactions begun on the store's engine (the local credential backend shares it) and
    calls of the URL policy, since the last ``reset``."""

    reads: int = 0
    writes: int = 0
    policy_checks: int = 0

    def reset(self) -> None:
        self.reads = self.writes = self.policy_checks = 0

    @property
    def seen(self) -> tuple[int, int, int]:
        """(transactions, of which reads, policy checks)."""
        return (self.reads + self.writes, self.reads, self.policy_checks)


@pytest.fixture
def cost(slack: SlackDriver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cost]:
    counted = Cost()

    def on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get(BEGIN_IMMEDIATE, False):
            counted.writes += 1
        else:
            counted.reads += 1

    def counting(check: Any) -> Any:
        async def counted_check(*args: Any, **kwargs: Any) -> None:
            counted.policy_checks += 1
            await check(*args, **kwargs)

        return counted_check

    for name in ("check_remote_url", "check_endpoint"):
        monkeypatch.setattr(security, name, counting(getattr(security, name)))
    engine = slack.services.store.engine.sync_engine
    sa.event.listen(engine, "begin", on_begin)
    yield counted
    sa.event.remove(engine, "begin", on_begin)


async def test_one_connect_costs_nine_transactions_and_one_policy_check(
    slack: SlackDriver, fake: FakeSlack, cost: Cost, bearer_server: RunningServer
) -> None:
    reply = await slack.submit_connect(name="mine", url=bearer_server.url, token=BEARER)
    await listeners_done()

    # reads: the workspace policy, the person's connections (edit target, duplicate, limit),
    # the secret for the session, the outcome, the Home tab (its connections, its week's usage
    # and newest chart in one read); writes: the secret, the row, the tools
    assert cost.seen == (9, 6, 1)
    assert (reply.status, reply.text) == (200, "")
    [post] = await fake.await_for("chat.postEphemeral")
    assert post["body"]["text"] == "✅ Connected *mine* — 9 tools available"


async def test_an_edit_checks_the_policy_once_and_a_test_click_once(
    slack: SlackDriver, fake: FakeSlack, cost: Cost, bearer_server: RunningServer, free_url: str
) -> None:
    broken = await slack.connect("mine", free_url, token=BEARER)
    metadata = {"channel": "C_TEST", "card": "custom", "edit": str(broken.id)}
    cost.reset()

    await slack.submit_connect(name="mine", url=bearer_server.url, metadata=metadata)
    await listeners_done()

    # reads: the policy, the connections, the kept secret, the secret for the session, the
    # outcome, Home (connections and usage); writes: the row, the tools
    assert cost.seen == (9, 7, 1)
    [connection] = await slack.connections()
    assert (connection.id, connection.status) == (broken.id, ConnectionStatus.HEALTHY)
    cost.reset()

    await slack.click("mcp_test", str(connection.id))
    await listeners_done()

    assert cost.policy_checks == 0  # the session the edit opened is live: nothing is resolved again
