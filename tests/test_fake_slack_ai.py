"""The fake Slack's streaming, status, agent-session and file-upload methods validate like Slack, and
slack_sdk's own helpers (`chat_stream`, `files_upload_v2`) work against them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import MarkdownTextChunk, PlanUpdateChunk, TaskUpdateChunk
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.fake_slack import BOT_ID, TEAM_ID, FakeSlack
from tests.support.fake_slack_ai import MARKDOWN_LIMIT, WORKSPACE_URL, ManualClock

CHANNEL, DM, ROOT, ASKER = "C_AI", "D_AI", "1700000000.000100", "U_ASKER"
RECIPIENT = {"recipient_user_id": ASKER, "recipient_team_id": TEAM_ID}


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as running:
        running.ai.clock = ManualClock()
        yield running


@pytest.fixture
async def client(fake: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    web_client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url)
    yield web_client
    if web_client.session is not None:
        await web_client.session.close()


def clock(fake: FakeSlack) -> ManualClock:
    assert isinstance(fake.ai.clock, ManualClock)
    return fake.ai.clock


async def refused(call: Any) -> dict[str, Any]:
    """The error answer of an awaited Web API call that must fail."""
    with pytest.raises(SlackApiError) as raised:
        await call
    return dict(raised.value.response.data)


async def start(client: AsyncWebClient, **extra: Any) -> str:
    started = await client.chat_startStream(channel=CHANNEL, thread_ts=ROOT, **RECIPIENT, **extra)
    return str(started["ts"])


# -- streaming --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_chat_stream_helper_streams_text_and_task_cards_readable_in_the_thread(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    streamer = await client.chat_stream(channel=CHANNEL, thread_ts=ROOT, buffer_size=5, **RECIPIENT)
    await streamer.append(markdown_text="Looking ")
    await streamer.append(chunks=[TaskUpdateChunk(id="t1", title="github__search", status="in_progress")])
    await streamer.append(
        chunks=[TaskUpdateChunk(id="t1", title="github__search", status="complete", output="3 issues")]
    )
    await streamer.append(markdown_text="up: found 3.")
    await streamer.stop(blocks=[{"type": "divider"}])

    stream = fake.ai.streams[str(streamer.ts)]
    assert [method for method, _ in stream.calls] == [
        "chat.startStream",
        "chat.appendStream",
        "chat.appendStream",
        "chat.appendStream",
        "chat.stopStream",
    ]
    assert stream.text == "Looking up: found 3."
    assert stream.tasks() == {
        "t1": {
            "type": "task_update",
            "id": "t1",
            "title": "github__search",
            "status": "complete",
            "output": "3 issues",
        }
    }
    assert stream.state == "stopped"
    assert (stream.recipient_user_id, stream.recipient_team_id) == (ASKER, TEAM_ID)
    replies = await client.conversations_replies(channel=CHANNEL, ts=ROOT)
    [message] = replies["messages"]
    assert (message["text"], message["thread_ts"], message["bot_id"]) == (
        "Looking up: found 3.",
        ROOT,
        BOT_ID,
    )
    assert message["blocks"] == [{"type": "divider"}]


@pytest.mark.anyio
async def test_a_stream_stopped_before_any_flush_is_started_empty_then_stopped_with_its_text(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    streamer = await client.chat_stream(channel=DM, thread_ts=ROOT)
    await streamer.append(markdown_text="short")
    await streamer.stop()

    stream = fake.ai.streams[str(streamer.ts)]
    assert stream.calls == [
        ("chat.startStream", []),
        ("chat.stopStream", [{"type": "markdown_text", "text": "short"}]),
    ]


@pytest.mark.anyio
async def test_dms_stream_without_recipients_but_channels_need_both(client: AsyncWebClient) -> None:
    await client.chat_startStream(channel=DM, thread_ts=ROOT, markdown_text="hi")

    no_user = await refused(
        client.chat_startStream(channel=CHANNEL, thread_ts=ROOT, recipient_team_id=TEAM_ID)
    )
    no_team = await refused(client.chat_startStream(channel=CHANNEL, thread_ts=ROOT, recipient_user_id=ASKER))
    assert no_user["error"] == "missing_recipient_user_id"
    assert no_team["error"] == "missing_recipient_team_id"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "payload", "message"),
    [
        ("chat.startStream", {"channel": DM}, "[ERROR] missing required field: thread_ts"),
        ("chat.startStream", {"thread_ts": ROOT}, "[ERROR] missing required field: channel"),
        ("chat.appendStream", {"channel": DM, "markdown_text": "x"}, "[ERROR] missing required field: ts"),
        ("chat.stopStream", {"ts": "1.2"}, "[ERROR] missing required field: channel"),
    ],
)
async def test_stream_methods_refuse_missing_required_arguments(
    client: AsyncWebClient, method: str, payload: dict[str, Any], message: str
) -> None:
    answer = await refused(client.api_call(method, json=payload))
    assert answer["error"] == "invalid_arguments"
    assert answer["response_metadata"]["messages"] == [message]


@pytest.mark.anyio
async def test_an_append_needs_text_or_chunks_and_a_known_stream(client: AsyncWebClient) -> None:
    ts = await start(client)

    empty = await refused(client.chat_appendStream(channel=CHANNEL, ts=ts))
    unknown = await refused(client.chat_appendStream(channel=CHANNEL, ts="9.9", markdown_text="x"))
    elsewhere = await refused(client.chat_appendStream(channel="C_OTHER", ts=ts, markdown_text="x"))
    assert empty["error"] == "invalid_arguments"
    assert (unknown["error"], elsewhere["error"]) == ("message_not_found", "message_not_found")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("chunk", "problem"),
    [
        (
            {"type": "task_update", "id": "t1", "title": "x", "status": "completed"},
            "must be one of ['complete', 'error', 'in_progress', 'pending'] [json-pointer:/chunks/0/status]",
        ),
        (
            {"type": "task_update", "title": "x", "status": "pending"},
            "must provide a string [json-pointer:/chunks/0/id]",
        ),
        (
            {"type": "task_update", "id": "t1", "title": "x", "status": "error", "output": 3},
            "must be a string [json-pointer:/chunks/0/output]",
        ),
        ({"type": "plan_update"}, "must provide a string [json-pointer:/chunks/0/title]"),
        (
            {"type": "markdown_text", "markdown_text": "x"},
            "must provide a string [json-pointer:/chunks/0/text]",
        ),
        ({"type": "card"}, "unknown chunk type 'card' [json-pointer:/chunks/0/type]"),
    ],
)
async def test_malformed_chunks_are_refused_with_a_pointer(
    client: AsyncWebClient, chunk: dict[str, Any], problem: str
) -> None:
    ts = await start(client)
    answer = await refused(client.chat_appendStream(channel=CHANNEL, ts=ts, chunks=[chunk]))
    assert answer["error"] == "invalid_arguments"
    assert answer["response_metadata"]["messages"] == [problem]


@pytest.mark.anyio
async def test_every_chunk_shape_slack_sdk_builds_is_accepted(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    ts = await start(client, task_display_mode="plan", chunks=[PlanUpdateChunk(title="Find the bug")])
    sources = [{"type": "url", "url": "https://example.com/1", "text": "issue 1"}]
    chunks = [
        MarkdownTextChunk(text="Plan:"),
        TaskUpdateChunk(id="a", title="search", status="pending", details="query x", sources=sources),
        TaskUpdateChunk(id="a", title="search", status="error", output="timed out"),
        {"type": "blocks", "blocks": [{"type": "divider"}]},
    ]
    await client.chat_appendStream(channel=CHANNEL, ts=ts, chunks=chunks)

    stream = fake.ai.streams[ts]
    assert stream.task_display_mode == "plan"
    assert [c["type"] for c in stream.chunks] == [
        "plan_update",
        "markdown_text",
        "task_update",
        "task_update",
        "blocks",
    ]
    assert stream.tasks()["a"]["status"] == "error"
    bad_mode = await refused(client.chat_startStream(channel=DM, thread_ts=ROOT, task_display_mode="grid"))
    assert bad_mode["error"] == "invalid_arguments"


@pytest.mark.anyio
async def test_a_stream_holds_at_most_12000_characters_of_markdown(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    too_long = await refused(client.chat_startStream(channel=DM, thread_ts=ROOT, markdown_text="x" * 12_001))
    ts = await start(client, markdown_text="x" * 6_000)
    await client.chat_appendStream(channel=CHANNEL, ts=ts, chunks=[MarkdownTextChunk(text="y" * 6_000)])
    over = await refused(client.chat_appendStream(channel=CHANNEL, ts=ts, markdown_text="z"))
    over_at_stop = await refused(client.chat_stopStream(channel=CHANNEL, ts=ts, markdown_text="z"))

    assert (too_long["error"], over["error"], over_at_stop["error"]) == ("msg_too_long",) * 3
    assert len(fake.ai.streams[ts].text) == MARKDOWN_LIMIT
    await client.chat_stopStream(channel=CHANNEL, ts=ts)  # a refused call leaves the stream open


@pytest.mark.anyio
async def test_nothing_can_be_appended_or_stopped_after_stop(client: AsyncWebClient) -> None:
    ts = await start(client, markdown_text="done")
    await client.chat_stopStream(channel=CHANNEL, ts=ts)

    append = await refused(client.chat_appendStream(channel=CHANNEL, ts=ts, markdown_text="more"))
    stop = await refused(client.chat_stopStream(channel=CHANNEL, ts=ts))
    assert (append["error"], stop["error"]) == ("message_not_in_streaming_state",) * 2


@pytest.mark.anyio
async def test_a_stream_idle_for_the_configured_time_is_no_longer_streaming(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    assert fake.ai.stream_idle_s == 300
    ts = await start(client, markdown_text="a")
    clock(fake).advance(299)
    await client.chat_appendStream(channel=CHANNEL, ts=ts, markdown_text="b")  # an append resets the timer
    clock(fake).advance(299)
    await client.chat_appendStream(channel=CHANNEL, ts=ts, markdown_text="c")
    clock(fake).advance(300)
    idle = await refused(client.chat_appendStream(channel=CHANNEL, ts=ts, markdown_text="d"))

    fake.ai.stream_idle_s = 10
    short = await start(client)
    clock(fake).advance(10)
    stopped_late = await refused(client.chat_stopStream(channel=CHANNEL, ts=short))
    assert (idle["error"], stopped_late["error"]) == ("message_not_in_streaming_state",) * 2
    assert fake.ai.streams[ts].text == "abc"


@pytest.mark.anyio
async def test_a_killed_stream_dies_and_chat_update_on_its_ts_replaces_the_text(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    ts = await start(client, markdown_text="partial")
    fake.ai.kill_stream(ts)
    died = await refused(client.chat_appendStream(channel=CHANNEL, ts=ts, markdown_text=" more"))
    await client.chat_update(channel=CHANNEL, ts=ts, text="partial more (finished with chat.update)")

    assert died["error"] == "message_not_in_streaming_state"
    [message] = (await client.conversations_replies(channel=CHANNEL, ts=ROOT))["messages"]
    assert message["text"] == "partial more (finished with chat.update)"


@pytest.mark.anyio
async def test_an_older_workspace_or_a_missing_scope_refuses_streaming(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.unknown_methods.add("chat.startStream")
    unknown = await refused(client.chat_startStream(channel=DM, thread_ts=ROOT))
    fake.unknown_methods.clear()
    fake.scopes.remove("chat:write")
    scope = await refused(client.chat_startStream(channel=DM, thread_ts=ROOT))
    auth = await client.auth_test()

    assert (unknown["error"], unknown["req_method"]) == ("unknown_method", "chat.startStream")
    assert (scope["error"], scope["needed"]) == ("missing_scope", "chat:write")
    assert "chat:write" not in auth.headers["x-oauth-scopes"].split(",")
    assert fake.ai.streams == {}


@pytest.mark.anyio
async def test_stop_validates_its_blocks_and_session_status_and_sets_the_session(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    ts = await start(client)
    too_many = await refused(
        client.chat_stopStream(channel=CHANNEL, ts=ts, blocks=[{"type": "divider"}] * 51)
    )
    bad_status = await refused(client.chat_stopStream(channel=CHANNEL, ts=ts, session_status="paused"))
    await client.chat_stopStream(channel=CHANNEL, ts=ts, session_status="suspended")

    assert too_many["error"] == "invalid_blocks"
    assert bad_status["error"] == "invalid_arguments"
    assert fake.ai.sessions[(CHANNEL, ROOT)].status == "suspended"


# -- status and agent sessions ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_thread_status_is_set_cleared_by_empty_status_and_by_a_bot_reply(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await client.assistant_threads_setStatus(
        channel_id=CHANNEL,
        thread_ts=ROOT,
        status="is calling github__search…",
        loading_messages=["Searching"],
    )
    status = fake.ai.thread_status(CHANNEL, ROOT)
    assert status is not None
    assert (status.status, status.loading_messages) == ("is calling github__search…", ["Searching"])

    await client.assistant_threads_setStatus(channel_id=CHANNEL, thread_ts=ROOT, status="")
    assert fake.ai.thread_status(CHANNEL, ROOT) is None

    await client.assistant_threads_setStatus(channel_id=CHANNEL, thread_ts=ROOT, status="thinking")
    await client.chat_postMessage(channel=CHANNEL, thread_ts=ROOT, text="answer")
    assert fake.ai.thread_status(CHANNEL, ROOT) is None


@pytest.mark.anyio
async def test_thread_status_clears_itself_after_two_minutes_without_a_message(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await client.assistant_threads_setStatus(channel_id=CHANNEL, thread_ts=ROOT, status="working")
    clock(fake).advance(119)
    assert fake.ai.thread_status(CHANNEL, ROOT) is not None
    await client.assistant_threads_setStatus(channel_id=CHANNEL, thread_ts=ROOT, status="still working")
    clock(fake).advance(119)
    assert fake.ai.thread_status(CHANNEL, ROOT) is not None  # the refresh restarted the two minutes
    clock(fake).advance(1)
    assert fake.ai.thread_status(CHANNEL, ROOT) is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "payload",
    [
        {"thread_ts": ROOT, "status": "x"},
        {"channel_id": CHANNEL, "status": "x"},
        {"channel_id": CHANNEL, "thread_ts": ROOT},
        {"channel_id": CHANNEL, "thread_ts": ROOT, "status": "x", "loading_messages": ["m"] * 11},
        {"channel_id": CHANNEL, "thread_ts": ROOT, "status": "x", "loading_messages": "m"},
    ],
)
async def test_thread_status_refuses_bad_arguments(client: AsyncWebClient, payload: dict[str, Any]) -> None:
    answer = await refused(client.api_call("assistant.threads.setStatus", json=payload))
    assert answer["error"] == "invalid_arguments"


@pytest.mark.anyio
async def test_an_agent_session_moves_through_its_statuses(fake: FakeSlack, client: AsyncWebClient) -> None:
    first = await client.agents_sessions_setStatus(
        channel_id=DM, thread_ts=ROOT, status="processing", title="Find bugs", initiator_user_id=ASKER
    )
    await client.agents_sessions_setStatus(channel_id=DM, thread_ts=ROOT, status="suspended")
    await client.agents_sessions_setStatus(channel_id=DM, thread_ts=ROOT, status="closed")

    session = fake.ai.sessions[(DM, ROOT)]
    assert session.history == ["processing", "suspended", "closed"]
    assert (session.title, session.initiator_user_id) == ("Find bugs", ASKER)
    assert "warning" not in first.data


@pytest.mark.anyio
async def test_agent_session_status_is_validated_and_needs_an_app_declared_as_an_agent(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    bad = await refused(client.agents_sessions_setStatus(channel_id=DM, status="thinking"))
    long_title = await refused(
        client.agents_sessions_setStatus(channel_id=DM, status="active", title="t" * 201)
    )
    fake.ai.agent_session_stopped_subscribed = False
    warned = await client.agents_sessions_setStatus(channel_id=DM, status="active")
    fake.scopes.remove("assistant:write")
    undeclared = await refused(client.agents_sessions_setStatus(channel_id=DM, status="processing"))

    assert (bad["error"], long_title["error"]) == ("invalid_arguments", "invalid_arguments")
    assert warned["warning"] == "missing_agent_session_stopped_event_subscription"
    assert undeclared["error"] == "not_authorized"
    assert fake.ai.sessions[(DM, None)].history == ["active"]


# -- file uploads -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_files_upload_v2_uploads_the_bytes_and_shares_them_in_the_thread(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    done = await client.files_upload_v2(
        content=png,
        filename="chart.png",
        title="Chart",
        channel=CHANNEL,
        thread_ts=ROOT,
        initial_comment="Here",
    )

    upload = fake.ai.uploads[done["file"]["id"]]
    assert (upload.data, upload.title, upload.filename) == (png, "Chart", "chart.png")
    assert done["file"]["permalink"] == upload.permalink
    assert upload.permalink == f"{WORKSPACE_URL}files/U_BOT/{upload.file_id}/chart.png"
    assert (done["file"]["user"], done["file"]["size"]) == ("U_BOT", len(png))
    assert (upload.channel_id, upload.thread_ts, upload.completed) == (CHANNEL, ROOT, True)
    [post] = fake.calls(f"/upload/{upload.file_id}")
    assert post["body"] == {"bytes": len(png)}
    [message] = (await client.conversations_replies(channel=CHANNEL, ts=ROOT))["messages"]
    assert message["text"] == "Here"
    assert [f["id"] for f in message["files"]] == [upload.file_id]


async def post_bytes(url: str, data: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(url, data=data) as response:
        return response.status, await response.text()


@pytest.mark.anyio
async def test_an_upload_of_the_wrong_length_is_refused_and_cannot_be_completed(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    issued = await client.files_getUploadURLExternal(filename="a.txt", length=10)
    status, text = await post_bytes(issued["upload_url"], b"12345")
    incomplete = await refused(
        client.files_completeUploadExternal(files=[{"id": issued["file_id"]}], channel_id=DM)
    )

    assert (status, text) == (400, "length mismatch: got 5 bytes, expected 10")
    assert incomplete["error"] == "file_not_found"
    assert fake.ai.uploads[issued["file_id"]].data is None


@pytest.mark.anyio
async def test_completing_an_unknown_or_already_completed_file_is_file_not_found(
    client: AsyncWebClient,
) -> None:
    issued = await client.files_getUploadURLExternal(filename="a.txt", length=3)
    assert (await post_bytes(issued["upload_url"], b"abc"))[0] == 200
    await client.files_completeUploadExternal(files=[{"id": issued["file_id"], "title": "A"}], channel_id=DM)

    twice = await refused(
        client.files_completeUploadExternal(files=[{"id": issued["file_id"]}], channel_id=DM)
    )
    unknown = await refused(client.files_completeUploadExternal(files=[{"id": "F_NOPE"}]))
    reupload, _ = await post_bytes(issued["upload_url"], b"abc")
    assert (twice["error"], unknown["error"]) == ("file_not_found", "file_not_found")
    assert "already completed" in twice["response_metadata"]["messages"][0]
    assert reupload == 404


@pytest.mark.anyio
async def test_uploads_are_refused_above_the_size_cap_without_a_length_or_without_files_write(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.ai.max_upload_bytes = 100
    too_big = await refused(client.files_upload_v2(content=b"x" * 101, filename="big.bin", channel=DM))
    no_length = await refused(client.api_call("files.getUploadURLExternal", params={"filename": "a"}))
    zero = await refused(
        client.api_call("files.getUploadURLExternal", params={"filename": "a", "length": "0"})
    )
    orphan_thread = await refused(client.files_completeUploadExternal(files=[{"id": "F1"}], thread_ts=ROOT))
    fits = await client.files_upload_v2(content=b"x" * 100, filename="fits.bin", channel=DM)
    fake.scopes.remove("files:write")
    scope = await refused(client.files_upload_v2(content=b"x", filename="a.bin", channel=DM))

    assert too_big["error"] == "file_too_large"
    assert (no_length["error"], zero["error"], orphan_thread["error"]) == ("invalid_arguments",) * 3
    assert (scope["error"], scope["needed"]) == ("missing_scope", "files:write")
    assert fake.ai.uploads[fits["file"]["id"]].data == b"x" * 100


@pytest.mark.anyio
async def test_an_upload_may_also_arrive_as_a_multipart_form(fake: FakeSlack, client: AsyncWebClient) -> None:
    issued = await client.files_getUploadURLExternal(filename="a.csv", length=4)
    form = aiohttp.FormData()
    form.add_field("file", b"a,b\n", filename="a.csv")
    async with aiohttp.ClientSession() as session, session.post(issued["upload_url"], data=form) as response:
        assert response.status == 200
    assert fake.ai.uploads[issued["file_id"]].data == b"a,b\n"


@pytest.mark.anyio
async def test_form_encoded_stream_calls_carry_chunks_as_json(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    ts = await start(client)
    chunk = '[{"type": "task_update", "id": "t", "title": "x", "status": "pending"}]'
    await client.api_call("chat.appendStream", data={"channel": CHANNEL, "ts": ts, "chunks": chunk})
    fake.messages = {}  # a test may replace the store; later messages land in the new one
    await client.chat_startStream(channel=DM, thread_ts=ROOT, markdown_text="new")

    assert fake.ai.streams[ts].tasks()["t"]["status"] == "pending"
    assert [m["text"] for m in fake.messages[DM]] == ["new"]
