"""The usage chart: a person's tool calls and errors per day as a PNG, sent into their DM with
the bot by *Send me a chart* (under ``/mcp stats`` and in the App Home's usage section).

``render_png`` draws ``PersonStats.per_day`` with matplotlib's object-oriented API only — a
``Figure`` on its own Agg canvas, no pyplot — so no global figure registry, no display, and one
render never sees another's figure. matplotlib is imported on the first chart (the import takes
about half a second) and renders run in a worker thread, one at a time, off the event loop.

The button's listener reads the clicker's own usage (the verified team and user; the button's
value only names the window), sends the PNG into their DM (``bot.dm_files``: scopes ``im:write``
and ``files:write``), remembers the file and its link, and republishes the Home tab, whose
usage section then links to the newest chart. A refusal on the way is told to the person in
words, never as a trace.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import anyio.to_thread
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot import texts
from bot._payload import owner
from bot.dm_files import FileNotSent, send_to_dm
from bot.failures import Failures
from bot.home import Home
from bot.replies import Replies
from bot.stats_views import CHART_ACTION
from mcp_core.services import Services
from mcp_core.stats import PersonStats, person_stats, window

logger = logging.getLogger(__name__)

__all__ = [
    "CALLS_COLOR",
    "DPI",
    "ERRORS_COLOR",
    "HEIGHT_PX",
    "WIDTH_PX",
    "chart_filename",
    "register_usage_chart",
    "render_png",
    "render_png_sync",
]

WIDTH_PX, HEIGHT_PX, DPI = 1200, 600, 100
"""The PNG's exact size in pixels, and the resolution it is drawn at."""
CALLS_COLOR = "#1d9bd1"
"""The calls bars (Slack's blue)."""
ERRORS_COLOR = "#e01e5a"
"""The errors bars (Slack's red)."""
_TEXT_COLOR = "#1d1c1d"
_MUTED_COLOR = "#616061"
_GRID_COLOR = "#dddddd"
_BAR_WIDTH = 0.4
_MARGINS = {"left": 0.06, "right": 0.99, "bottom": 0.1, "top": 0.85}
"""The plot's place in the figure: room for the y labels, two-line day labels and the title."""
"""Of one day's slot; the calls bar left of the day's tick, the errors bar right of it."""

_render_lock = threading.Lock()


def chart_filename(days: int) -> str:
    return f"mcp-usage-{days}d.png"


@functools.cache
def _matplotlib() -> ModuleType:
    """matplotlib, imported once. Without ``MPLCONFIGDIR`` its config and font cache go to a
    directory of this user's in the temp dir: a service user's home may be read-only, and
    matplotlib would then build its font cache again in a fresh temp dir on every start."""
    if not os.environ.get("MPLCONFIGDIR"):
        uid = os.getuid() if hasattr(os, "getuid") else 0
        config = Path(tempfile.gettempdir()) / f"slack-mcp-bot-matplotlib-{uid}"
        config.mkdir(mode=0o700, exist_ok=True)
        os.environ["MPLCONFIGDIR"] = str(config)
    import matplotlib

    return matplotlib


def render_png_sync(stats: PersonStats) -> bytes:
    """The chart of ``stats.per_day`` as PNG bytes of exactly ``WIDTH_PX`` × ``HEIGHT_PX``:
    every day of the window on the x axis (days without calls too), calls and errors side by
    side in ``CALLS_COLOR`` and ``ERRORS_COLOR``, integer y ticks. Blocks for 0.1–0.2 s; see
    ``render_png``."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    days = [day for day, _, _ in stats.per_day]
    calls = [c for _, c, _ in stats.per_day]
    errors = [e for _, _, e in stats.per_day]
    slots = range(len(days))
    with _render_lock:
        figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
        FigureCanvasAgg(figure)
        figure.subplots_adjust(**_MARGINS)  # fixed: a layout engine would double the time
        axes = figure.add_subplot()
        called = axes.bar(
            [n - _BAR_WIDTH / 2 for n in slots], calls, _BAR_WIDTH, color=CALLS_COLOR, linewidth=0
        )
        failed = axes.bar(
            [n + _BAR_WIDTH / 2 for n in slots], errors, _BAR_WIDTH, color=ERRORS_COLOR, linewidth=0
        )
        for bars, values in ((called, calls), (failed, errors)):
            labels = [f"{v:,}" if v else "" for v in values]
            axes.bar_label(bars, labels=labels, padding=2, fontsize=8, color=_MUTED_COLOR)
        axes.set_xticks(list(slots), _day_labels(days), fontsize=9, color=_TEXT_COLOR)
        axes.set_xlim(-0.6, len(days) - 0.4)
        axes.set_ylim(0, max(1, *calls) * 1.12)  # room for the labels over the tallest bar
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        axes.tick_params(axis="y", labelsize=9, labelcolor=_MUTED_COLOR, length=0)
        axes.tick_params(axis="x", length=0)
        axes.grid(axis="y", color=_GRID_COLOR, linewidth=0.8)
        axes.set_axisbelow(True)
        for side in ("top", "right", "left"):
            axes.spines[side].set_visible(False)
        axes.spines["bottom"].set_color(_MUTED_COLOR)
        if not any(calls):
            axes.text(
                0.5, 0.5, "No tool calls in these days", transform=axes.transAxes,
                ha="center", va="center", fontsize=14, color=_MUTED_COLOR,
            )  # fmt: skip
        axes.set_title(_title(stats, days), loc="left", fontsize=14, color=_TEXT_COLOR, pad=12)
        figure.legend(
            [called, failed],
            ["Calls", "Errors"],
            loc="upper right",
            ncols=2,
            frameon=False,
            fontsize=11,
            bbox_to_anchor=(0.985, 0.99),
        )
        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return out.getvalue()


async def render_png(stats: PersonStats) -> bytes:
    """``render_png_sync`` in a worker thread: the event loop keeps serving meanwhile."""
    return await anyio.to_thread.run_sync(render_png_sync, stats)


def _title(stats: PersonStats, days: Sequence[date]) -> str:
    head = f"Tool calls and errors per day, last {stats.days} days"
    if not days:
        return head
    span = f"{_short(days[0])} – {_short(days[-1])} (UTC)"
    return f"{head}\n{span} · {stats.calls:,} calls · {stats.errors:,} errors"


def _day_labels(days: Sequence[date]) -> list[str]:
    """A week: weekday and date; longer: the day of the month, with the month at the start
    and where it changes."""
    if len(days) <= 7:
        return [f"{day:%a}\n{_short(day)}" for day in days]
    return [_short(day) if n == 0 or day.day == 1 else str(day.day) for n, day in enumerate(days)]


def _short(day: date) -> str:
    return f"{day:%b} {day.day}"


# -- the button --------------------------------------------------------------------------------


def register_usage_chart(
    app: AsyncApp,
    *,
    services: Services,
    client: AsyncWebClient,
    replies: Replies,
    home: Home,
    failures: Failures,
) -> None:
    """Add *Send me a chart*'s listener: ack at once, then draw, upload and link the chart."""

    @app.action(CHART_ACTION)
    @failures.after_ack
    async def send_chart(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        team_id, user_id = owner(body)
        value = action.get("value")
        days = (window(value) if isinstance(value, str) else None) or 7

        async def tell(text: str) -> None:
            try:
                await replies.tell(body, respond, text)
            except (SlackApiError, SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
                logger.warning("could not tell %s about their chart: %s", user_id, type(exc).__name__)

        stats = await person_stats(services.store, team_id, user_id, days, {})
        if not stats.calls:
            await tell(texts.chart_nothing_yet(days))
            return
        png = await render_png(stats)
        try:
            sent = await send_to_dm(
                client,
                user_id,
                png,
                filename=chart_filename(days),
                title=f"MCP usage, last {days} days",
                comment=texts.chart_comment(days, stats.calls, stats.errors),
                alt_txt=f"Bar chart of your MCP tool calls and errors per day over the last {days} days",
            )
        except FileNotSent as refused:
            await tell(texts.chart_not_sent(refused.error, refused.scope))
            return
        chart = await services.store.save_usage_chart(
            team_id, user_id, file_id=sent.file_id, permalink=sent.permalink, days=days
        )
        if body.get("response_url"):  # clicked under /mcp stats: say where it went
            await tell(texts.chart_sent(chart.permalink, days))
        await home.publish(team_id, user_id)
