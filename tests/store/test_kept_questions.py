"""A server's form question kept for other processes, on SQLite and PostgreSQL: only its asker
reads it, one answer is written, the asking process hears it, and nothing in the row is
readable without the keyring."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import anyio
import pytest
import sqlalchemy as sa

from mcp_core import kept_questions
from mcp_core.credentials._crypto import parse_keyring
from mcp_core.elicitation import Choice, ElicitAnswer, FormField, FormRequest
from mcp_core.kept_questions import KeptQuestions
from mcp_core.store._tables import turn_questions

from .conftest import TEAM, USER

pytestmark = pytest.mark.anyio

KEYS = parse_keyring(f"k1:{base64.b64encode(os.urandom(32)).decode()}")
FORM = FormRequest(
    "trips",
    "Where to, secretly-named-island?",
    (
        FormField("destination", "string", "Destination", required=True, max_length=40),
        FormField("seat", "choice", "Seat", choices=(Choice("w", "Window"), Choice("a", "Aisle"))),
    ),
)


def later(minutes: float = 5) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


@pytest.fixture
def kept(engine) -> KeptQuestions:
    return KeptQuestions(engine, KEYS)


async def test_the_asker_reads_the_form_back_whole_and_nobody_else_does(kept, engine) -> None:
    await kept.keep("q1", TEAM, USER, FORM, later())

    assert await kept.find("q1", TEAM, USER) == FORM
    assert await kept.find("q1", TEAM, "U0MALLORY") == USER  # someone else: told whose it is
    assert await kept.find("q1", "T0OTHER", USER) == "gone"  # another workspace finds nothing
    assert await kept.find("q-unknown", TEAM, USER) == "gone"
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(turn_questions))).mappings().one()
    assert "secretly-named-island" not in str(dict(row))  # sealed, not stored as text


async def test_one_answer_is_written_and_the_asking_process_hears_it(kept, monkeypatch) -> None:
    monkeypatch.setattr(kept_questions, "POLL_S", 0.02)
    await kept.keep("q1", TEAM, USER, FORM, later())
    answer = ElicitAnswer("accept", {"destination": "Porto", "seat": "w"})

    assert not await kept.answer("q1", TEAM, "U0MALLORY", ElicitAnswer("decline"))
    assert await kept.answer("q1", TEAM, USER, answer)
    assert not await kept.answer("q1", TEAM, USER, ElicitAnswer("cancel"))  # a second one: refused
    with anyio.fail_after(5):
        heard = await kept.wait("q1", TEAM, USER)

    assert heard == ElicitAnswer("accept", {"destination": "Porto", "seat": "w"})
    assert await kept.find("q1", TEAM, USER) == "gone"  # answered: no form to open any more


async def test_an_expired_or_forgotten_question_is_gone_and_takes_no_answer(kept, engine) -> None:
    await kept.keep("old", TEAM, USER, FORM, later(-1))
    await kept.keep("done", TEAM, USER, FORM, later())
    await kept.forget("done")

    assert await kept.find("old", TEAM, USER) == "gone"
    assert not await kept.answer("old", TEAM, USER, ElicitAnswer("decline"))
    assert await kept.find("done", TEAM, USER) == "gone"
    await kept.keep("long-dead", TEAM, USER, FORM, later(-60))
    await kept.keep("new", TEAM, USER, FORM, later())  # deletes what dead processes left
    async with engine.connect() as conn:
        left = set((await conn.execute(sa.select(turn_questions.c.question_id))).scalars())
    assert left == {"old", "new"}


async def test_a_form_sealed_under_another_key_does_not_open(kept, engine) -> None:
    other = KeptQuestions(engine, parse_keyring(f"k9:{base64.b64encode(os.urandom(32)).decode()}"))
    await other.keep("q1", TEAM, USER, FORM, later())

    assert await kept.find("q1", TEAM, USER) == "gone"
