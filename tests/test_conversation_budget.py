"""Fitting a conversation to the model's input budget: what goes first, what always stays."""

from __future__ import annotations

from typing import Any

from mcp_core.conversation_budget import TokenCounter, fit_history

SYSTEM = {"role": "system", "content": "You help."}


def call(call_id: str) -> dict[str, Any]:
    function = {"name": "toy__read", "arguments": "{}"}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": function}],
    }


def result(call_id: str, chars: int) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "r" * chars}


def size(history: list[dict[str, Any]], counter: TokenCounter) -> int:
    return sum(counter.message(m) for m in history)


def test_a_conversation_that_fits_is_returned_as_it_is() -> None:
    history = [SYSTEM, {"role": "user", "content": "hi"}]

    assert fit_history(history, budget=1000, tools_tokens=100, counter=TokenCounter()) is history


def test_earlier_tool_results_are_cut_before_any_message_is_dropped() -> None:
    counter = TokenCounter()
    history = [
        SYSTEM,
        {"role": "user", "content": "old question " * 50},
        {"role": "user", "content": "Summarise both files."},
        call("a"),
        result("a", 40_000),
        call("b"),
        result("b", 2_000),
    ]

    fitted = fit_history(history, budget=3_000, tools_tokens=500, counter=counter)

    assert [m["role"] for m in fitted] == [m["role"] for m in history]  # nothing dropped
    assert fitted[4]["content"].startswith("r" * 1000)
    assert "39,000 more characters cut" in fitted[4]["content"]
    assert fitted[6]["content"] == "r" * 2_000  # the newest round's result is what is answered from
    assert size(fitted, counter) + 500 <= 3_000
    assert history[4]["content"] == "r" * 40_000  # the caller's history is not changed


def test_then_the_oldest_thread_messages_go_and_the_question_stays() -> None:
    counter = TokenCounter()
    thread = [
        {"role": "user" if n % 2 else "assistant", "content": f"message {n} " + "x" * 700} for n in range(20)
    ]
    question = {"role": "user", "content": "What did we decide?"}
    history = [SYSTEM, *thread, question]

    fitted = fit_history(history, budget=1_500, tools_tokens=0, counter=counter)

    assert fitted[0] == SYSTEM
    assert fitted[-1] == question
    kept = fitted[1:-1]
    assert kept
    assert kept == thread[-len(kept) :]
    assert size(fitted, counter) <= 1_500


def test_the_newest_results_are_cut_to_their_share_when_nothing_else_is_left() -> None:
    counter = TokenCounter()
    history = [
        SYSTEM,
        {"role": "user", "content": "Read both."},
        call("a"),
        result("a", 30_000),
        result("a", 30_000),
    ]

    fitted = fit_history(history, budget=2_000, tools_tokens=200, counter=counter)

    assert len(fitted) == len(history)
    assert all(len(m["content"]) < 4_000 for m in fitted[3:])
    assert size(fitted, counter) + 200 <= 2_000


def test_a_tool_calling_message_is_never_dropped_apart_from_its_results() -> None:
    history = [
        SYSTEM,
        {"role": "user", "content": "q " * 2_000},
        call("a"),
        result("a", 10),
    ]

    fitted = fit_history(history, budget=300, tools_tokens=0, counter=TokenCounter())

    assert [m["role"] for m in fitted] == ["system", "user", "assistant", "tool"]
    assert fitted[1]["content"].startswith("q q")
    assert "cut to fit" in fitted[1]["content"]


def test_the_estimate_calibrates_to_what_the_endpoint_reports_and_ignores_nonsense() -> None:
    counter = TokenCounter()
    before = counter.text("hello world " * 100)

    counter.observe(1000.0, 2000)
    assert counter.text("hello world " * 100) == 2 * before
    for nonsense in (None, "12", -5, 0, True, 10**12):
        counter.observe(1000.0, nonsense)
    assert 0.25 <= counter.ratio <= 4.0


def test_characters_beyond_ascii_count_about_a_token_each() -> None:
    counter = TokenCounter()

    assert counter.text("漢字" * 100) >= 200
    assert counter.text("a" * 350) == 100
