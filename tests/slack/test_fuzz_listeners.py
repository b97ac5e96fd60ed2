"""Every listener, fed random payload shapes through signed HTTP, answers in words or not at all.

Hypothesis draws the payloads: slash-command text, block_actions on every action_id the app
registers with odd values (huge numbers, JSON fragments, nested junk), view submissions with
odd ``state`` / ``private_metadata``, and events with odd fields. All of one family go to one
running bot. For each example: never HTTP 500, no ERROR record or traceback in the log, and
``texts.INTERNAL_ERROR`` never reaches Slack. The edge may refuse a shape with 400.

Hypothesis runs in a worker thread (``anyio.to_thread``) and hands each request back to the
test's event loop (``anyio.from_thread.run``), where the bot is served. ``derandomize=True``
makes every run draw the same examples, so CI is reproducible; the deadline is Slack's own
3-second window for an answer.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import anyio.from_thread
import anyio.to_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import admin_views, stats_views, texts, views
from tests.slack.conftest import SECRET, TEAM, USER, SlackDriver, listeners_done
from tests.support.fake_slack import (
    FORM,
    JSON,
    FakeSlack,
    app_home_opened_event,
    app_mention_event,
    block_actions,
    event_body,
    message_im_event,
    post_signed,
    slash_command_body,
    view_submission,
)

AGENT_ACTIONS = (views.APPROVE_ACTION, views.ALWAYS_ACTION, views.DENY_ACTION, views.ARGUMENTS_ACTION)
"""Buttons only ever posted in a channel message (so their clicks carry a response_url)."""
ACTION_IDS = [  # every action the app registers (bot/app.py, bot/chat.py)
    "mcp_test",
    "mcp_retry",
    "mcp_tools",
    "mcp_tools_page_0",
    "mcp_tools_page_7",
    "mcp_disconnect",
    "mcp_connect_open",
    "mcp_edit",
    views.TOOL_SWITCH_ACTION,
    f"{views.TOOL_ON_ACTION}_0",
    f"{views.ASK_AGAIN_ACTION}_3",
    views.CARD_PICK_ACTION,
    stats_views.CHART_ACTION,
    admin_views.ADMIN_POLICY_ACTION,
    admin_views.ADMIN_CSV_ACTION,
    admin_views.ADMIN_AUDIT_ACTION,
    admin_views.ADMIN_CONNECTIONS_ACTION,
    *AGENT_ACTIONS,
]
FORM_BLOCKS = ["name", "url", "bearer_token", "token", "value", ""]


def fuzz(max_examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=timedelta(seconds=3),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**20, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "1e999", "-1", "null", "[]", "{}", str(uuid.uuid4()), "{{", '{"c": 1}']),
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
json_text = st.builds(json.dumps, junk)
numbers = st.sampled_from(["1e999", "-1e999", "1E400", "NaN", "Infinity", "-0", "2.5", "1" * 5000, "-3"])
tools_values = st.builds(  # what Tools / Next / Previous carry, {"c": id, "p": page}, with odd parts
    lambda c, p: f'{{"c": {json.dumps(c)}, "p": {p}}}',
    st.one_of(st.just(str(uuid.uuid4())), junk),
    st.one_of(numbers, json_text),
)
tool_values = st.builds(  # what a tool's switch / Turn on / Ask again carry, with odd parts
    lambda c, t, on: json.dumps({"c": c, "p": 0, "t": t, "on": on}),
    st.one_of(st.just(str(uuid.uuid4())), junk),
    junk,
    junk,
)
values = st.one_of(st.text(max_size=40), json_text, numbers, junk)
card_ids = st.sampled_from(["custom", "github", "GitHub", "supabase", "nope"])


def _value_for(action_id: str) -> st.SearchStrategy[Any]:
    if action_id.startswith("mcp_tools"):
        return st.one_of(tools_values, values)
    if action_id.startswith("mcp_tool_"):
        return st.one_of(tool_values, values)
    return st.one_of(card_ids, values) if action_id == views.CARD_PICK_ACTION else values


buttons = st.sampled_from(ACTION_IDS).flatmap(lambda a: st.tuples(st.just(a), _value_for(a)))
metadata = st.one_of(
    junk,
    json_text,
    st.builds(lambda m: json.dumps(m), st.dictionaries(st.sampled_from(["channel", "card", "edit"]), junk)),
)
element = st.one_of(junk, st.fixed_dictionaries({"type": st.just("plain_text_input"), "value": junk}))
states = st.one_of(
    junk,
    st.fixed_dictionaries({"values": junk}),
    st.fixed_dictionaries(
        {
            "values": st.dictionaries(
                st.sampled_from(FORM_BLOCKS), junk | st.dictionaries(st.text(max_size=5), element)
            )
        }
    ),
)
command_text = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda sub, rest: f"{sub} {rest}",
        st.sampled_from(["connect", "list", "tools", "test", "disconnect", "help", "payload", "CONNECT"]),
        st.text(max_size=40),
    ),
)
event_fields = st.dictionaries(
    st.sampled_from(
        ["user", "channel", "ts", "thread_ts", "text", "subtype", "bot_id", "channel_type", "tab", "team"]
    ),
    junk,
    max_size=3,
)


class Checker:
    """Posts one signed request to the running bot and checks what came of it."""

    def __init__(self, slack: SlackDriver, fake: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
        self.slack, self.fake, self.caplog = slack, fake, caplog
        self.statuses: dict[int, int] = {}
        self.response_url = fake.response_url("fuzz")

    async def post(self, body: str, content_type: str) -> None:
        records, requests = len(self.caplog.records), len(self.fake.requests)
        status, _, text = await post_signed(self.slack.url, body, content_type, SECRET)
        await listeners_done()
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status in (200, 400), (status, text)
        bad = [r for r in self.caplog.records[records:] if r.levelno >= logging.ERROR or r.exc_info]
        assert not bad, [logging.Formatter().format(r) for r in bad]  # with the traceback
        sent = [json.dumps(r["body"], ensure_ascii=False, default=str) for r in self.fake.requests[requests:]]
        assert not [s for s in sent if texts.INTERNAL_ERROR in s], sent

    def run(self, body: str, content_type: str) -> None:
        """From Hypothesis's worker thread: post on the test's event loop."""
        anyio.from_thread.run(self.post, body, content_type)

    async def explore(self, test: Callable[[], None]) -> None:
        await anyio.to_thread.run_sync(test)
        assert "Traceback" not in self.caplog.text
        assert self.statuses.get(200), self.statuses  # most examples reached a listener


@pytest.fixture
def checker(slack: SlackDriver, fake: FakeSlack, caplog: pytest.LogCaptureFixture) -> Checker:
    caplog.set_level(logging.INFO)
    return Checker(slack, fake, caplog)


@pytest.mark.anyio
async def test_slash_commands_with_any_text_are_answered_in_words(checker: Checker, fake: FakeSlack) -> None:
    @fuzz(60)
    @given(text=command_text)
    def example(text: str) -> None:
        body = slash_command_body(text, user_id=USER, team_id=TEAM, response_url=fake.response_url("fuzz"))
        checker.run(body, FORM)

    await checker.explore(example)


@pytest.mark.anyio
async def test_any_button_with_any_value_is_answered_in_words(checker: Checker, fake: FakeSlack) -> None:
    @fuzz(150)
    @given(
        button=buttons,
        where=st.sampled_from(["message", "home", "modal"]),
        view_metadata=metadata,
        extra=st.dictionaries(
            st.sampled_from(["channel", "container", "message", "state", "view"]), junk, max_size=1
        ),
    )
    def example(button: tuple[str, Any], where: str, view_metadata: Any, extra: dict[str, Any]) -> None:
        action_id, value = button
        place: dict[str, Any] = {"channel_id": "C_TEST", "response_url": fake.response_url("fuzz")}
        if where != "message" and action_id not in AGENT_ACTIONS:
            place = {"view": {"id": "V_X", "type": where, "hash": "h", "private_metadata": view_metadata}}
        payload = block_actions(action_id, "", user_id=USER, team_id=TEAM, **place)
        payload["actions"][0]["value"] = value
        checker.run(urlencode({"payload": json.dumps(payload | extra)}), FORM)

    await checker.explore(example)


@pytest.mark.anyio
async def test_a_click_whose_sender_and_place_are_shaped_oddly_is_answered_in_words(checker: Checker) -> None:
    """Who clicked and where (user, team, enterprise, channel, container) in any shape."""
    ids = st.one_of(
        junk,
        st.text(min_size=1, max_size=8),  # Bolt itself accepts a bare id for any of them
        st.fixed_dictionaries({"id": junk}),
        st.fixed_dictionaries({"team_id": junk, "id": junk}),
    )
    where = st.dictionaries(
        st.sampled_from(["channel", "channel", "container", "enterprise", "team", "user"]),
        ids,
        min_size=1,
        max_size=3,
    )

    @fuzz(100)
    @given(action_id=st.sampled_from(["mcp_connect_open", "mcp_test", views.APPROVE_ACTION]), fields=where)
    def example(action_id: str, fields: dict[str, Any]) -> None:
        payload = block_actions(
            action_id, "x", user_id=USER, team_id=TEAM, channel_id="C_TEST", response_url=checker.response_url
        )
        checker.run(urlencode({"payload": json.dumps(payload | fields)}), FORM)

    await checker.explore(example)


@pytest.mark.anyio
async def test_a_card_picked_in_a_picker_of_any_shape_is_answered_in_words(checker: Checker) -> None:
    """The picker's own view travels with the click: its metadata, id and hash are read back."""

    @fuzz(60)
    @given(
        card=card_ids,
        view=st.fixed_dictionaries({"private_metadata": metadata}, optional={"id": junk, "hash": junk}),
    )
    def example(card: str, view: dict[str, Any]) -> None:
        payload = block_actions(views.CARD_PICK_ACTION, card, user_id=USER, team_id=TEAM, view=view)
        checker.run(urlencode({"payload": json.dumps(payload)}), FORM)

    await checker.explore(example)


@pytest.mark.anyio
async def test_a_connect_form_submitted_with_any_state_is_answered_in_words(checker: Checker) -> None:
    @fuzz(100)
    @given(state=states, private_metadata=metadata)
    def example(state: Any, private_metadata: Any) -> None:
        payload = view_submission(views.CONNECT_CALLBACK, {}, user_id=USER, team_id=TEAM)
        payload["view"] |= {"state": state, "private_metadata": private_metadata}
        checker.run(urlencode({"payload": json.dumps(payload)}), FORM)

    await checker.explore(example)


@pytest.mark.anyio
async def test_an_admins_policy_form_submitted_with_any_state_is_answered_in_words(
    checker: Checker, fake: FakeSlack
) -> None:
    fake.users[USER] = {"id": USER, "team_id": TEAM, "is_admin": True}

    @fuzz(100)
    @given(state=states, private_metadata=metadata)
    def example(state: Any, private_metadata: Any) -> None:
        payload = view_submission(admin_views.POLICY_CALLBACK, {}, user_id=USER, team_id=TEAM)
        payload["view"] |= {"state": state, "private_metadata": private_metadata}
        checker.run(urlencode({"payload": json.dumps(payload)}), FORM)

    await checker.explore(example)


@pytest.mark.anyio
async def test_mentions_dms_and_home_events_with_any_fields_do_not_fail(checker: Checker) -> None:
    events = {
        "app_mention": app_mention_event("hi", user_id=USER),
        "message": message_im_event("hi", user_id=USER),
        "app_home_opened": app_home_opened_event(USER),
    }

    @fuzz(100)
    @given(kind=st.sampled_from(list(events)), fields=event_fields)
    def example(kind: str, fields: dict[str, Any]) -> None:
        checker.run(event_body(events[kind] | fields, team_id=TEAM), JSON)

    await checker.explore(example)
