"""A request that fails verification, or that is not shaped like Slack's, has no effect.

Every request here carries a ``response_url`` on the fake and a ``user_id``: before the edge
existed, a non-numeric timestamp made Bolt's check raise and the error handler POSTed to
that URL and DMed that user. Now the answer is 401/400 and the fake receives nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from urllib.parse import urlencode

import aiohttp
import pytest
from slack_bolt.async_app import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot import commands
from bot.app import create_app
from bot.runner import load_run_cards
from mcp_core.services import Services
from tests.slack.conftest import SECRET, TEAM, USER, SlackDriver, listeners_done
from tests.support.fake_slack import (
    FORM,
    JSON,
    WAIT_S,
    FakeSlack,
    app_home_opened_event,
    block_actions,
    block_actions_body,
    event_body,
    event_callback,
    sign,
    slash_command_body,
    view_submission,
)


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=WAIT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


def signed(raw: bytes, timestamp: str | None = None) -> dict[str, str]:
    """Slack's signature headers over raw bytes (which need not be UTF-8)."""
    ts = timestamp or str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest}"}


def command_body(fake: FakeSlack) -> str:
    return slash_command_body("list", user_id=USER, team_id=TEAM, response_url=fake.response_url("evil"))


def assert_nothing_happened(fake: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    assert fake.requests == []  # no response_url POST, no chat.postMessage, not even auth.test
    assert "Traceback" not in caplog.text
    refusals = [r for r in caplog.records if r.name == "bot._edge"]
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
    assert len(refusals[0].getMessage()) < 200
    assert all(r.exc_info is None for r in caplog.records)


def now() -> str:
    return str(int(time.time()))


BAD_HEADERS = {
    "a non-numeric timestamp": lambda body: {**sign(SECRET, body), "x-slack-request-timestamp": "abc"},
    "a float timestamp": lambda body: {**sign(SECRET, body), "x-slack-request-timestamp": now() + ".5"},
    "a negative timestamp": lambda body: {**sign(SECRET, body), "x-slack-request-timestamp": "-" + now()},
    "a huge timestamp": lambda body: {**sign(SECRET, body), "x-slack-request-timestamp": "9" * 400},
    "an empty timestamp": lambda body: {**sign(SECRET, body), "x-slack-request-timestamp": ""},
    "no timestamp": lambda body: {"x-slack-signature": sign(SECRET, body)["x-slack-signature"]},
    "no signature": lambda body: {"x-slack-request-timestamp": now()},
    "no headers at all": lambda body: {},
    "a stale timestamp": lambda body: sign(SECRET, body, int(time.time()) - 301),
    "a timestamp from the future": lambda body: sign(SECRET, body, int(time.time()) + 301),
    "the epoch": lambda body: sign(SECRET, body, 0),
    "another secret": lambda body: sign("not-the-signing-secret", body),
    "a v1 signature": lambda body: {**sign(SECRET, body), "x-slack-signature": "v1=" + "0" * 64},
    "a signature that is not hex": lambda body: {**sign(SECRET, body), "x-slack-signature": "v0=" + "z" * 64},
    "an upper-case signature": lambda body: {
        **sign(SECRET, body),
        "x-slack-signature": sign(SECRET, body)["x-slack-signature"].upper(),
    },
    "a truncated signature": lambda body: {
        **sign(SECRET, body),
        "x-slack-signature": sign(SECRET, body)["x-slack-signature"][:-2],
    },
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(BAD_HEADERS))
async def test_a_slash_command_that_fails_verification_gets_401_and_sends_nothing(
    slack: SlackDriver, fake: FakeSlack, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.DEBUG)
    body = command_body(fake)

    status, text = await post(slack.url, body.encode(), {"content-type": FORM, **BAD_HEADERS[case](body)})

    assert (status, json.loads(text)) == (401, {"error": "invalid request"})
    await listeners_done()
    assert_nothing_happened(fake, caplog)


@pytest.mark.anyio
@pytest.mark.parametrize("case", ["a non-numeric timestamp", "no signature", "another secret"])
async def test_a_button_click_that_fails_verification_sends_no_dm(
    slack: SlackDriver, fake: FakeSlack, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    """A Home-tab click has no response_url, so an error report would go to the user by DM."""
    body = block_actions_body("mcp_test", "not-a-uuid", user_id=USER, team_id=TEAM, view={"id": "V_HOME"})

    status, _ = await post(slack.url, body.encode(), {"content-type": FORM, **BAD_HEADERS[case](body)})

    assert status == 401
    await listeners_done()
    assert_nothing_happened(fake, caplog)


@pytest.mark.anyio
async def test_an_event_with_a_garbled_timestamp_gets_401_and_is_not_handled(
    slack: SlackDriver, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    body = event_body(app_home_opened_event(USER), team_id=TEAM)
    headers = {"content-type": JSON, **BAD_HEADERS["a non-numeric timestamp"](body)}

    status, _ = await post(slack.url, body.encode(), headers)

    assert status == 401
    await listeners_done()
    assert_nothing_happened(fake, caplog)


def interaction(payload: object) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def click(fake: FakeSlack, **changes: object) -> dict[str, object]:
    payload = block_actions(
        "mcp_test", "x", user_id=USER, team_id=TEAM, channel_id="C1", response_url=fake.response_url("evil")
    )
    return payload | changes


def submission(**view_changes: object) -> dict[str, object]:
    payload = view_submission("mcp_connect_submit", {}, user_id=USER, team_id=TEAM)
    return payload | {"view": payload["view"] | view_changes}  # type: ignore[operator]


MALFORMED: dict[str, tuple[str, object]] = {
    "a payload that is not JSON": (FORM, b"payload=%7Bnot+json"),
    "a payload that is a JSON array": (FORM, b"payload=%5B1%2C2%5D"),
    "a payload that is a JSON string": (FORM, b"payload=%22click%22"),
    "a payload nested beyond recursion": (FORM, b"payload=" + b"%5B" * 100_000),
    "a JSON body that is an array": (JSON, b'[{"type": "event_callback"}]'),
    "a JSON body that is not JSON": (JSON, b'{"type": '),
    "a body that is not UTF-8": (JSON, b'{"type": "\xff\xfe"}'),
    "a form that is not a form": (FORM, b"just some words"),
    "a form that is neither a command nor a payload": (FORM, b"user_id=U1&team_id=T1"),
    "an empty body": (FORM, b""),
    "a body of another content type": ("text/plain", b"command=%2Fmcp&text=list"),
    "a JSON body sent as a form": (FORM, json.dumps({"type": "url_verification", "challenge": "c"}).encode()),
    "a click whose actions is not a list": ("shape", "actions"),
    "a click whose actions are strings": ("shape", "action strings"),
    "a click with no actions": ("shape", "no actions"),
    "a click whose action_id is a number": ("shape", "action_id number"),
    "a click without its user": ("shape", "no user"),
    "a click whose user is a list": ("shape", "user list"),
    "a click that names no workspace": ("shape", "no team"),
    "a click whose view is a string": ("shape", "view string"),
    "a click whose enterprise is a number": ("shape", "enterprise number"),
    "a submission whose view is a list": ("shape", "view list"),
    "a submission whose callback_id is an object": ("shape", "callback object"),
    "an event that is not an object": ("event", "not an object"),
    "an event without a type": ("event", "no type"),
    "a mention without a channel": ("event", "mention without channel"),
    "a command without its user": (
        FORM,
        urlencode({"command": "/mcp", "team_id": TEAM, "text": "x"}).encode(),
    ),
}


def malformed(fake: FakeSlack, case: str) -> tuple[str, bytes]:
    kind, spec = MALFORMED[case]
    if isinstance(spec, bytes):
        return kind, spec
    if kind == "event":
        event: object = {
            "not an object": ["app_mention"],
            "no type": {"user": USER, "channel": "C1", "ts": "1.2"},
            "mention without channel": {"type": "app_mention", "user": USER, "ts": "1.2", "text": "hi"},
        }[str(spec)]
        return JSON, json.dumps(event_callback({"type": "x"}, team_id=TEAM) | {"event": event}).encode()
    payload = {
        "actions": click(fake, actions={"action_id": "mcp_test"}),
        "action strings": click(fake, actions=["mcp_test"]),
        "no actions": click(fake, actions=[]),
        "action_id number": click(fake, actions=[{"action_id": 7, "value": "x"}]),
        "no user": {k: v for k, v in click(fake).items() if k != "user"},
        "user list": click(fake, user=[USER]),
        "no team": click(fake, team=None, user={"id": USER}),
        "view string": click(fake, view="V1"),
        "enterprise number": click(fake, enterprise=7),
        "view list": view_submission("mcp_connect_submit", {}, user_id=USER, team_id=TEAM) | {"view": []},
        "callback object": submission(callback_id={"id": "mcp_connect_submit"}),
    }[str(spec)]
    return FORM, interaction(payload)


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_signed_body_that_is_not_shaped_like_slacks_gets_400_without_a_traceback(
    slack: SlackDriver, fake: FakeSlack, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.DEBUG)
    content_type, body = malformed(fake, case)

    status, text = await post(slack.url, body, {"content-type": content_type, **signed(body)})

    assert (status, json.loads(text)) == (400, {"error": "malformed request"})
    await listeners_done()
    assert_nothing_happened(fake, caplog)


@pytest.mark.anyio
async def test_an_unsigned_malformed_body_gets_401_before_it_is_read(
    slack: SlackDriver, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    status, _ = await post(slack.url, b"payload=%7Bnot+json", {"content-type": FORM})

    assert status == 401
    await listeners_done()
    assert_nothing_happened(fake, caplog)


@pytest.mark.anyio
async def test_a_slash_command_that_mentions_payload_is_answered_like_any_other(slack: SlackDriver) -> None:
    """Bolt alone reads any form containing the word "payload" as an (empty) interaction."""
    reply = await slack.command("payload")

    assert (reply.status, reply.text) == (200, "")
    assert await slack.reply_text(reply) == commands.USAGE


@pytest.mark.anyio
async def test_bolt_behind_no_edge_still_sends_nothing_for_a_request_whose_check_raised(
    services: Services, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    """The error path itself is safe: Bolt's verifier raises on a non-numeric timestamp, and
    the error handler then holds a body nobody vouched for."""
    app = create_app(
        services,
        client=AsyncWebClient(token="xoxb-test", base_url=fake.base_url),
        signing_secret=SECRET,
        cards=load_run_cards(services.settings),
    )
    body = command_body(fake)
    headers = {"content-type": FORM, **sign(SECRET, body), "x-slack-request-timestamp": "abc"}

    response = await app.async_dispatch(AsyncBoltRequest(body=body, headers=headers))

    assert response.status == 500  # Bolt's own answer; the edge answers 401 before this
    await listeners_done()
    assert fake.requests == []
    assert "Traceback" not in caplog.text
    assert "before it was verified (nothing sent)" in caplog.text
