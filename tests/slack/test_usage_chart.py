"""*Send me a chart*: the usage chart drawn with matplotlib, uploaded into the clicker's DM and
linked from the App Home. Clicks are signed block_actions over the wire; the PNG is read back
from the fake Slack's upload with Pillow, and its bars are measured against the recorded calls."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from PIL import Image

from bot import texts
from bot.stats_views import CHART_ACTION
from bot.usage_chart import CALLS_COLOR, ERRORS_COLOR, HEIGHT_PX, WIDTH_PX, chart_filename, render_png_sync
from mcp_core.models import UsageRecord
from mcp_core.stats import PersonStats, ToolStats
from tests.slack.conftest import TEAM, USER, USER_B, SlackDriver, listeners_done, message_text
from tests.support.fake_slack import FakeSlack
from tests.support.fake_slack_ai import Upload

pytestmark = pytest.mark.anyio

# (days ago, calls, errors): four days of the week with calls, one of them all errors
ALICE_DAYS = [(6, 4, 1), (3, 8, 0), (1, 2, 2), (0, 6, 3)]


# -- reading the PNG back ---------------------------------------------------------------------


def rgb(hex_color: str) -> tuple[int, int, int]:
    value = hex_color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def read_png(data: bytes) -> Image.Image:
    """The chart as an RGB image, after checking it is a whole PNG of the promised size."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size == (WIDTH_PX, HEIGHT_PX)
    image.load()  # decodes every row: a truncated file fails here
    return image.convert("RGB")


def bars(image: Image.Image, hex_color: str) -> list[tuple[float, int]]:
    """(x centre, height in px) of each bar of ``hex_color``, left to right.

    Bars stand on the x axis, below everything else of that colour (the legend's key is at the
    top), so they are the runs of that colour along the lowest row that has it; a bar's height
    is its run of that colour upwards from there. No bars when that row is the legend's."""
    color, (width, height) = rgb(hex_color), image.size
    pixels = image.load()
    rows = [y for y in range(height) if any(pixels[x, y] == color for x in range(0, width))]
    if not rows or max(rows) < height // 10:
        return []
    base = max(rows)
    runs: list[list[int]] = []
    for x in range(width):
        if pixels[x, base] == color:
            if runs and runs[-1][-1] == x - 1:
                runs[-1].append(x)
            else:
                runs.append([x])
    found = []
    for run in runs:
        centre = run[len(run) // 2]
        y = base
        while y >= 0 and pixels[centre, y] == color:
            y -= 1
        found.append(((run[0] + run[-1]) / 2, base - y))
    return found


def assert_series(found: list[tuple[float, int]], series: list[int]) -> None:
    """The bars are the non-zero values of ``series`` (one per day, oldest first): as many,
    in their days' places, with heights in proportion."""
    days = [n for n, value in enumerate(series) if value]
    assert len(found) == len(days), (found, series)
    if len(days) > 1:
        (x0, _), (x1, _) = found[0], found[-1]
        for (x, _), day in zip(found, days, strict=True):
            expected = (day - days[0]) / (days[-1] - days[0])
            assert abs((x - x0) / (x1 - x0) - expected) < 0.01, (found, series)
    top_height, top_value = max(h for _, h in found), max(series)
    for (_, h), day in zip(found, days, strict=True):
        assert abs(h - top_height * series[day] / top_value) <= 2, (found, series)


# -- recording usage ---------------------------------------------------------------------------


async def record(slack: SlackDriver, user: str, days: list[tuple[int, int, int]]) -> None:
    now = datetime.now(UTC)
    for ago, calls, errors in days:
        for n in range(calls):
            slack.services.usage.record(
                UsageRecord(
                    team_id=TEAM,
                    user_id=user,
                    connection_id=None,
                    tool_name="echo",
                    latency_ms=12,
                    success=n >= errors,
                    error_class="ToolReportedError" if n < errors else None,
                    created_at=now - timedelta(days=ago),
                )
            )
    await slack.services.usage.flush()


def week(days: list[tuple[int, int, int]]) -> tuple[list[int], list[int]]:
    """Calls and errors of each of the last 7 days, oldest first."""
    by_ago = {ago: (calls, errors) for ago, calls, errors in days}
    rows = [by_ago.get(ago, (0, 0)) for ago in range(6, -1, -1)]
    return [c for c, _ in rows], [e for _, e in rows]


def only_upload(fake: FakeSlack) -> Upload:
    [upload] = fake.ai.uploads.values()
    assert upload.completed
    assert upload.data is not None
    return upload


async def chart_button_of(slack: SlackDriver, text: str) -> dict[str, Any] | None:
    [body] = await slack.replies(await slack.command(text))
    for block in body.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == CHART_ACTION:
                return element
    return None


def chart_buttons(published: dict[str, Any]) -> list[str]:
    """The values of the *Send me a chart* buttons on a published Home tab."""
    return [
        block["accessory"]["value"]
        for block in published["body"]["view"]["blocks"]
        if (block.get("accessory") or {}).get("action_id") == CHART_ACTION
    ]


# -- the tests ---------------------------------------------------------------------------------


async def test_stats_offer_the_chart_of_their_window_only_when_there_are_calls(slack: SlackDriver) -> None:
    nothing = await chart_button_of(slack, "stats")
    await record(slack, USER, [(2, 3, 0)])

    week_button = await chart_button_of(slack, "stats")
    month_button = await chart_button_of(slack, "stats 30d")

    assert nothing is None
    assert week_button is not None
    assert (week_button["text"]["text"], week_button["value"]) == ("Send me a chart", "7d")
    assert month_button is not None
    assert month_button["value"] == "30d"


async def test_the_chart_lands_in_the_clickers_dm_as_a_png_of_their_calls_and_errors_per_day(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    await record(slack, USER, ALICE_DAYS)

    reply = await slack.click(CHART_ACTION, "7d")
    await listeners_done()

    upload = only_upload(fake)
    dm = FakeSlack.dm_channel(USER)
    assert fake.opened[dm] == (USER,)
    assert (upload.channel_id, upload.filename) == (dm, chart_filename(7))
    assert upload.initial_comment == (
        "📈 Your MCP tool calls and errors per day, last 7 days: 20 calls, 6 errors."
    )
    [message] = fake.messages[dm]
    assert [f["id"] for f in message["files"]] == [upload.file_id]
    image = read_png(upload.data or b"")
    calls, errors = week(ALICE_DAYS)
    assert_series(bars(image, CALLS_COLOR), calls)
    assert_series(bars(image, ERRORS_COLOR), errors)
    [said] = await slack.replies(reply)
    assert said["text"] == f"📈 Sent your chart of the last 7 days <{upload.permalink}|in our DM>."
    assert said["response_type"] == "ephemeral"
    assert said.get("replace_original") is not True  # the stats stay where they were


async def test_the_home_tab_links_the_newest_chart_and_offers_another(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    await record(slack, USER, ALICE_DAYS)
    await slack.event({"type": "app_home_opened", "user": USER, "tab": "home"})
    [before] = await fake.await_for("views.publish")
    assert texts.CHART_OFFER in message_text(before["body"])
    assert chart_buttons(before) == ["7d"]

    await slack.click(CHART_ACTION, "30d", in_home=True)
    await listeners_done()
    first = only_upload(fake)
    await slack.click(CHART_ACTION, "7d", in_home=True)
    await listeners_done()

    newest = fake.ai.uploads[max(fake.ai.uploads)]
    assert newest.file_id != first.file_id
    [*_, home] = fake.calls("views.publish")
    assert home["body"]["user_id"] == USER
    shown = message_text(home["body"])
    assert f"Newest chart: <{newest.permalink}|Usage, last 7 days> (sent <!date^" in shown
    assert first.permalink not in shown
    assert texts.CHART_OFFER not in shown
    assert chart_buttons(home) == ["7d"]
    assert not fake.calls("chat.postMessage")  # the Home tab itself is the answer to a click there
    stored = await slack.services.store.usage_chart(TEAM, USER)
    assert stored is not None
    assert (stored.file_id, stored.permalink, stored.days) == (newest.file_id, newest.permalink, 7)


async def test_a_month_chart_has_every_day_of_the_window_on_its_axis(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    month = [(29, 5, 0), (15, 10, 5), (0, 1, 0)]
    await record(slack, USER, month)

    await slack.click(CHART_ACTION, "30d")
    await listeners_done()

    image = read_png(only_upload(fake).data or b"")
    by_ago = {ago: (calls, errors) for ago, calls, errors in month}
    rows = [by_ago.get(ago, (0, 0)) for ago in range(29, -1, -1)]
    assert_series(bars(image, CALLS_COLOR), [c for c, _ in rows])
    assert_series(bars(image, ERRORS_COLOR), [e for _, e in rows])


async def test_someone_elses_click_charts_their_own_usage_never_the_first_persons(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    await record(slack, USER, ALICE_DAYS)
    await record(slack, USER_B, [(2, 3, 1)])

    reply = await slack.click(CHART_ACTION, "7d", user=USER_B)
    await listeners_done()

    upload = only_upload(fake)
    assert upload.channel_id == FakeSlack.dm_channel(USER_B)
    assert FakeSlack.dm_channel(USER) not in fake.opened
    assert upload.initial_comment is not None
    assert "3 calls, 1 errors" in upload.initial_comment
    image = read_png(upload.data or b"")
    calls, errors = week([(2, 3, 1)])
    assert_series(bars(image, CALLS_COLOR), calls)
    assert_series(bars(image, ERRORS_COLOR), errors)
    assert {call["body"]["user_id"] for call in fake.calls("views.publish")} == {USER_B}
    assert await slack.services.store.usage_chart(TEAM, USER) is None
    [said] = await slack.replies(reply)
    assert upload.permalink in said["text"]


async def test_a_person_without_calls_hears_there_is_nothing_to_chart(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    await record(slack, USER, ALICE_DAYS)

    said = await slack.reply_text(await slack.click(CHART_ACTION, "7d", user=USER_B))

    assert said == "📈 No tool calls in the last 7 days, so there is nothing to chart yet."
    assert not fake.ai.uploads
    assert not fake.opened


@pytest.mark.parametrize("scope", ["files:write", "im:write"], ids=["upload refused", "dm refused"])
async def test_a_refused_upload_or_dm_is_told_in_words(
    slack: SlackDriver, fake: FakeSlack, scope: str
) -> None:
    await record(slack, USER, ALICE_DAYS)
    fake.scopes.remove(scope)
    published = len(fake.calls("views.publish"))

    said = await slack.reply_text(await slack.click(CHART_ACTION, "7d"))

    assert said == (
        f"⚠️ Your usage chart could not be sent: the app lacks Slack's `{scope}` scope (reinstall it "
        "from the current manifest.yml). `/mcp stats` shows the same numbers as text."
    )
    assert not [u for u in fake.ai.uploads.values() if u.completed]
    assert await slack.services.store.usage_chart(TEAM, USER) is None
    assert len(fake.calls("views.publish")) == published


async def test_a_refusal_after_a_click_on_the_home_tab_comes_by_dm(
    slack: SlackDriver, fake: FakeSlack
) -> None:
    await record(slack, USER, ALICE_DAYS)
    fake.overrides["files.completeUploadExternal"] = lambda body: (
        200,
        {},
        {"ok": False, "error": "restricted_action"},
    )

    await slack.click(CHART_ACTION, "7d", in_home=True)
    await listeners_done()

    [post] = fake.calls("chat.postMessage")
    assert post["body"]["channel"] == USER
    assert post["body"]["text"] == (
        "⚠️ Your usage chart could not be sent: Slack said `restricted_action`. "
        "`/mcp stats` shows the same numbers as text."
    )


async def test_a_crafted_window_falls_back_to_the_week(slack: SlackDriver, fake: FakeSlack) -> None:
    await record(slack, USER, [(20, 5, 0), (1, 2, 0)])

    await slack.click(CHART_ACTION, "9999d")
    await listeners_done()

    upload = only_upload(fake)
    assert upload.filename == chart_filename(7)
    assert_series(bars(read_png(upload.data or b""), CALLS_COLOR), week([(1, 2, 0)])[0])


# -- the renderer alone ------------------------------------------------------------------------


def stats_of(per_day: list[tuple[date, int, int]]) -> PersonStats:
    calls, errors = sum(c for _, c, _ in per_day), sum(e for _, _, e in per_day)
    tools = [ToolStats(None, "toy", "echo", calls, errors, 1.0, 1.0, 1.0, {})] if calls else []
    return PersonStats(len(per_day), per_day[0][0], tools, [], [], 0, 0, per_day)


def test_a_window_without_calls_renders_a_readable_empty_chart() -> None:
    start = date(2026, 3, 4)
    empty = stats_of([(start + timedelta(days=n), 0, 0) for n in range(7)])

    image = read_png(render_png_sync(empty))

    assert bars(image, CALLS_COLOR) == []
    assert bars(image, ERRORS_COLOR) == []
    legend = rgb(CALLS_COLOR)
    assert any(legend == image.getpixel((x, y)) for x in range(WIDTH_PX) for y in range(HEIGHT_PX // 10))


def test_one_day_with_one_call_renders_one_bar() -> None:
    image = read_png(render_png_sync(stats_of([(date(2026, 3, 10), 1, 0)])))

    [(_, height)] = bars(image, CALLS_COLOR)
    assert height > HEIGHT_PX // 3
    assert bars(image, ERRORS_COLOR) == []
