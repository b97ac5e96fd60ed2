"""A click that lands while a kept question is still being written into the turn's row.

The question is posted first (its checkpoint carries the message's ts), then written; a click
in between is answered on this process. The row must not keep that question open: a later
click on any process (or a sweeper after a restart) would take it and run the call again.
Real parts: the turn journal on SQLite, the approval desk, a thread on the fake Slack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.approvals import ApprovalDesk, Asking, KeptQuestion, ask_approval
from bot.replies import Thread
from mcp_core.agent import ToolCall
from mcp_core.store import create_engine, migrate
from mcp_core.store._turns import TurnStore
from mcp_core.turn_journal import TurnJournal
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.anyio

TEAM, USER, TURN = "T_TEST", "U_ASKER", "turn-1"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await migrate(engine)
    yield engine
    await engine.dispose()


@dataclass(frozen=True)
class ClickedAsPosted(Thread):
    """A real thread whose question gets its click the moment Slack shows it."""

    desk: ApprovalDesk | None = None

    async def post(self, text: str, blocks: list[Any] | None = None) -> str:
        ts = await super().post(text, blocks)
        value = next(
            e["value"] for b in blocks or [] for e in b.to_dict().get("elements", []) if "value" in e
        )
        assert self.desk is not None
        assert await self.desk.answer(value, TEAM, USER, "approved") == "ok"
        return ts


def kept_by(journal: TurnJournal) -> KeptQuestion:
    async def keep(question_id: str, expires_at: datetime, details: dict[str, Any]) -> None:
        await journal.suspend(TURN, question_id, expires_at, {"sealed": "checkpoint", **details})

    async def take(question_id: str, expired_ok: bool) -> bool:
        return await journal.take_own(TURN, question_id, expired_ok=expired_ok)

    return KeptQuestion(keep, take, journal.lost_signal(TURN))


async def test_a_click_before_the_question_is_written_leaves_no_open_question_in_the_row(
    engine: AsyncEngine,
) -> None:
    journal = TurnJournal(TurnStore(engine), lease_s=30.0)
    desk = ApprovalDesk()
    with FakeSlack() as fake:
        client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url)
        thread = ClickedAsPosted(client, "C_TEST", "1700000000.000100", desk)
        journal.begin(TURN, TEAM, USER, "C_TEST", thread.thread)
        await journal.durable(TURN)
        asking = Asking(TEAM, USER, thread, False, str, kept=kept_by(journal))
        call = ToolCall("call-1", "toy__write", {"path": "/tmp/x"}, None)
        try:
            approved = await ask_approval(desk, 30.0, asking, call)
            found = await TurnStore(engine).read(TURN)
        finally:
            await journal.aclose()

    assert approved is True
    assert found is not None
    row, _, _ = found
    assert row.question is None  # nothing left for another click (or process) to take
    assert row.state == "running"
