"""What a server says mid-call reaches that call's CallEvents: questions (elicitation) and progress.

Against tests/servers/asking.py (served in-process through the pool's transport seam), on both
protocol generations: 2025-11-25 ("legacy": a standalone elicitation/create request) and
2026-07-28 ("auto": an input_required result the SDK retries).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import pytest

from mcp_core.call_events import CallEvents, progress_note
from mcp_core.connections import ConnectionPool
from mcp_core.elicitation import (
    ElicitAnswer,
    ElicitRequest,
    FormRequest,
    RefusedRequest,
    UrlRequest,
    check_answers,
)
from mcp_core.models import SessionSpec
from tests.servers.asking import SIGN_UP_URL
from tests.support.in_process import ASKING
from tests.support.pool import WAIT_S, Mode, opener, stdio_spec, text_of

pytestmark = pytest.mark.anyio
pytest_plugins = ["tests.support.pool_fixtures"]

MODES: list[Mode] = ["legacy", "auto"]


def asking_spec(mode: Mode, **options: Any) -> SessionSpec:
    return stdio_spec(sys.executable, str(ASKING), name="asking", mode=mode, **options)


class Person:
    """Answers questions with a script, remembering what was asked."""

    def __init__(self, *answers: ElicitAnswer, wait_s: float = 0.0) -> None:
        self.answers = list(answers)
        self.asked: list[ElicitRequest] = []
        self.wait_s = wait_s

    async def __call__(self, request: ElicitRequest) -> ElicitAnswer:
        self.asked.append(request)
        await anyio.sleep(self.wait_s)
        return self.answers.pop(0) if self.answers else ElicitAnswer("cancel")


async def ask(
    pool: ConnectionPool, spec: SessionSpec, tool: str, events: CallEvents | None, **args: Any
) -> str:
    with anyio.fail_after(WAIT_S * 3):
        result = await pool.call_tool(spec.connection_id, opener(spec), tool, args, events=events)
    return text_of(result)


@pytest.mark.parametrize("mode", MODES)
async def test_a_form_question_reaches_the_calls_own_events_and_its_answer_the_server(
    in_process_pool: ConnectionPool, mode: Mode
) -> None:
    spec = asking_spec(mode)
    person = Person()

    async def fill(request: ElicitRequest) -> ElicitAnswer:
        person.asked.append(request)
        assert isinstance(request, FormRequest)
        return check_answers(request, {"destination": "Porto", "travellers": "3", "email": "a@b.example"})

    text = await ask(in_process_pool, spec, "ask", CallEvents(on_elicit=fill), form="trip")

    [form] = person.asked
    assert isinstance(form, FormRequest)
    assert form.server == "asking"
    assert form.message == "Planning your trip: a few details, please."
    by_name = {f.name: f for f in form.fields}
    assert by_name["destination"].min_length == 2
    assert by_name["destination"].default == "Lisbon"
    assert by_name["travellers"].kind == "integer"
    assert by_name["travellers"].maximum == 9
    assert [c.title for c in by_name["cabin"].choices] == ["Economy", "Business"]
    assert by_name["meals"].kind == "choices"
    assert by_name["meals"].max_items == 2
    assert by_name["email"].required
    assert not by_name["budget"].required
    action, content = text.split(" ", 1)
    assert action == "accept"
    assert json.loads(content) == {
        "destination": "Porto",
        "travellers": 3,
        "email": "a@b.example",
        "insurance": False,
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_decline_and_cancel_reach_the_server_as_said(
    in_process_pool: ConnectionPool, mode: Mode, action: str
) -> None:
    person = Person(ElicitAnswer(action))  # type: ignore[arg-type]
    text = await ask(in_process_pool, asking_spec(mode), "ask", CallEvents(on_elicit=person), form="trip")
    assert text == action


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["nested", "crowded"])
async def test_a_schema_that_is_not_a_flat_form_is_refused_and_declined(
    in_process_pool: ConnectionPool, mode: Mode, form: str
) -> None:
    person = Person(ElicitAnswer("accept", {"address": "x"}))
    text = await ask(in_process_pool, asking_spec(mode), "ask", CallEvents(on_elicit=person), form=form)
    [refused] = person.asked
    assert isinstance(refused, RefusedRequest)
    assert "cannot be shown" in refused.why
    assert text == "decline"  # whatever the surface said


@pytest.mark.parametrize("mode", MODES)
async def test_a_url_question_carries_the_full_url_and_accept_reaches_the_server(
    in_process_pool: ConnectionPool, mode: Mode
) -> None:
    person = Person(ElicitAnswer("accept"))
    text = await ask(in_process_pool, asking_spec(mode), "sign_up", CallEvents(on_elicit=person))
    [shown] = person.asked
    assert isinstance(shown, UrlRequest)
    assert (shown.url, shown.host, shown.message) == (
        SIGN_UP_URL,
        "accounts.example.com",
        "Create your account to continue.",
    )
    assert text == "accept"


@pytest.mark.parametrize("mode", MODES)
async def test_no_answer_within_the_elicitation_timeout_is_a_cancel(
    pools: Any, servers: Any, mode: Mode
) -> None:
    pool = pools(open_transport=servers, elicitation_timeout_s=0.3)
    person = Person(ElicitAnswer("accept", {}), wait_s=30)
    text = await ask(pool, asking_spec(mode), "ask", CallEvents(on_elicit=person), form="trip")
    assert text == "cancel"


@pytest.mark.parametrize("mode", MODES)
async def test_the_calls_own_timeout_does_not_run_while_the_person_answers(
    in_process_pool: ConnectionPool, mode: Mode
) -> None:
    spec = asking_spec(mode, call_timeout_s=0.5)
    person = Person(ElicitAnswer("decline"), wait_s=1.0)
    text = await ask(in_process_pool, spec, "ask", CallEvents(on_elicit=person), form="trip")
    assert text == "decline"


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_without_events_gets_its_questions_cancelled(
    in_process_pool: ConnectionPool, mode: Mode
) -> None:
    assert await ask(in_process_pool, asking_spec(mode), "ask", None, form="trip") == "cancel"


@pytest.mark.parametrize("surfaces", [("thread-1", "thread-2"), ("thread-1", "thread-1")])
async def test_a_legacy_question_during_concurrent_calls_goes_to_a_call_of_its_conversation_only(
    pool: ConnectionPool, surfaces: tuple[str, str]
) -> None:
    """2025-11-25 names no call in a question: with calls of two threads in flight on one session,
    showing it in either could be the wrong place, so it is cancelled; calls of one thread share
    it (the oldest call's hook asks). A real stdio child: in-process memory streams would carry
    the asking call's context across, which no real transport does."""
    spec = asking_spec("legacy", connect_timeout_s=WAIT_S * 2)
    first, second = Person(ElicitAnswer("accept", {})), Person(ElicitAnswer("accept", {}))
    results: dict[str, str] = {}

    async def run(name: str, events: CallEvents, tool: str, **args: Any) -> None:
        results[name] = await ask(pool, spec, tool, events, **args)

    async with anyio.create_task_group() as tg:
        await ask(pool, spec, "index", None, steps=0)  # the session is open
        tg.start_soon(lambda: run("slow", CallEvents(on_elicit=first, surface=surfaces[0]), "index", steps=3))
        await anyio.sleep(0.2)
        tg.start_soon(
            lambda: run("ask", CallEvents(on_elicit=second, surface=surfaces[1]), "ask", form="trip")
        )
    if surfaces[0] != surfaces[1]:
        assert results == {"slow": "indexed", "ask": "cancel"}
        assert first.asked == second.asked == []
    else:
        assert results == {"slow": "indexed", "ask": "accept {}"}
        assert len(first.asked) == 1
        assert second.asked == []


@pytest.mark.parametrize("mode", MODES)
async def test_progress_reaches_the_call_cleaned_and_at_most_once_a_second(
    in_process_pool: ConnectionPool, mode: Mode
) -> None:
    heard: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append((progress, total, message))

    text = await ask(
        in_process_pool, asking_spec(mode), "index", CallEvents(on_progress=on_progress), steps=3
    )
    assert text == "indexed"
    assert heard[0] == (1.0, 3.0, "indexing <@U0EVIL> part 1")
    assert len(heard) < 3  # 0.3 s apart: throttled
    assert progress_note(*heard[0]) == "1 of 3 — indexing <@U0EVIL> part 1"


def test_answers_are_checked_against_the_forms_limits_and_formats() -> None:
    from mcp_core.elicitation import read_request
    from tests.servers.asking import TRIP

    form = read_request("s", {"mode": "form", "message": "m", "requestedSchema": TRIP})
    assert isinstance(form, FormRequest)
    bad = check_answers(
        form,
        {
            "destination": "P",
            "travellers": "12",
            "budget": "lots",
            "email": "nope",
            "website": "not a url",
            "start": "2026-13-01",
            "seat": "roof",
            "meals": ["veg", "halal", "kosher"],
        },
    )
    assert bad.action == "cancel"
    assert bad.errors == {
        "destination": "Use at least 2 characters.",
        "travellers": "Enter 9 or less.",
        "budget": "Enter a number.",
        "email": "Enter an email address.",
        "website": "Enter a web address.",
        "start": "Enter a date (YYYY-MM-DD).",
        "seat": "Pick one of the choices.",
        "meals": "Pick at most 2.",
    }
    missing = check_answers(form, {})
    assert set(missing.errors) == {"destination", "travellers", "email"}
