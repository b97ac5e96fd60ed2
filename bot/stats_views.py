"""``/mcp stats`` and the App Home's usage section as Block Kit, from ``mcp_core.stats``.

Pure functions, like ``bot.views``: numbers and names in, blocks out. Tool and connection
names are a server's and a person's words, shown inert (no mentions, links or markup). The
reply stays well inside a message's 50 blocks: the busiest tools first, the rest counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot import texts
from bot.question_views import entities as _escape
from bot.views import SECTION_TEXT_LIMIT, clip
from mcp_core.models import UsageChart
from mcp_core.stats import PersonStats, Suggestion, ToolStats

__all__ = [
    "CHART_ACTION",
    "MAX_TOOLS_SHOWN",
    "chart_button",
    "home_stats_blocks",
    "stats_blocks",
    "stats_summary",
]

CHART_ACTION = "mcp_stats_chart"
"""*Send me a chart* (``bot.usage_chart``); its value is the window, ``7d`` or ``30d``."""

MAX_TOOLS_SHOWN = 25
HOME_TOOLS_SHOWN = 5


def stats_summary(stats: PersonStats) -> str:
    """One line: the notification text of the reply, and the Home section's first line."""
    if not stats.calls:
        return f"No tool calls in the last {stats.days} days."
    ok = 1 - stats.errors / stats.calls
    return f"{stats.calls:,} tool calls in the last {stats.days} days · {ok:.0%} succeeded"


def stats_blocks(stats: PersonStats, hints: Sequence[Suggestion], *, priced: bool) -> list[Block]:
    """The ephemeral reply: totals, tools, errors, models and tokens, feedback, suggestions.
    ``priced``: MODEL_PRICES is set (otherwise the reply says how to see costs)."""
    blocks: list[Block] = [
        HeaderBlock(text=f"Your MCP usage, last {stats.days} days"),
        SectionBlock(text=MarkdownTextObject(text=stats_summary(stats))),
    ]
    if stats.calls:
        blocks.append(ActionsBlock(elements=[chart_button(stats.days)]))
    if stats.tools:
        lines = [_tool_line(tool) for tool in stats.tools[:MAX_TOOLS_SHOWN]]
        if len(stats.tools) > MAX_TOOLS_SHOWN:
            lines.append(f"…and {len(stats.tools) - MAX_TOOLS_SHOWN} more tools")
        blocks += [DividerBlock(), *_sections("*Tools* (calls · succeeded · p50 / p95)", lines)]
    if stats.errors_by_class:
        shown = " · ".join(f"{_escape(name)} {count:,}" for name, count in stats.errors_by_class[:10])
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=clip(f"*Errors by kind*\n{shown}", SECTION_TEXT_LIMIT)))
        )
    if stats.models:
        lines = [
            _model_line(m.model, m.turns, m.prompt_tokens, m.completion_tokens, m.cost_usd)
            for m in stats.models
        ]
        blocks += [DividerBlock(), *_sections("*Answers and tokens*", lines[:20])]
        if not priced:
            blocks.append(
                ContextBlock(elements=[MarkdownTextObject(text="Set `MODEL_PRICES` to see estimated costs.")])
            )
    if stats.feedback_up or stats.feedback_down:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"*Feedback on your answers* 👍 {stats.feedback_up} · 👎 {stats.feedback_down}"
                )
            )
        )
    if hints:
        blocks += [DividerBlock(), *_sections("*Suggestions*", [_hint(h) for h in hints[:10]])]
    return blocks


def chart_button(days: int) -> ButtonElement:
    return ButtonElement(text=texts.CHART_BUTTON, action_id=CHART_ACTION, value=f"{days}d")


def home_stats_blocks(stats: PersonStats, chart: UsageChart | None = None) -> list[Block]:
    """The App Home's section: the summary, the busiest few tools, and the newest chart with
    *Send me a chart* (at most 4 blocks)."""
    blocks: list[Block] = [
        HeaderBlock(text=f"Usage, last {stats.days} days"),
        SectionBlock(text=MarkdownTextObject(text=stats_summary(stats))),
    ]
    if stats.tools:
        lines = [_tool_line(tool) for tool in stats.tools[:HOME_TOOLS_SHOWN]]
        more = "\n`/mcp stats 30d` for more" if len(stats.tools) > HOME_TOOLS_SHOWN else ""
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=clip("\n".join(lines) + more, SECTION_TEXT_LIMIT)))
        )
    if chart is not None or stats.calls:
        line = (
            texts.newest_chart(chart.permalink, chart.days, chart.created_at)
            if chart is not None
            else texts.CHART_OFFER
        )
        button = chart_button(stats.days) if stats.calls else None
        blocks.append(SectionBlock(text=MarkdownTextObject(text=line), accessory=button))
    return blocks


def _tool_line(tool: ToolStats) -> str:
    where = _escape(tool.connection_name) if tool.connection_name else "_removed connection_"
    name = _escape(tool.tool).replace("`", "'")[:80]
    return (
        f"• {where} · `{name}` — {tool.calls:,} · {tool.success_rate:.0%} · "
        f"{_ms(tool.p50_ms)} / {_ms(tool.p95_ms)}"
    )


def _model_line(model: str, turns: int, prompt: int, completion: int, cost: float | None) -> str:
    name = _escape(model).replace("`", "")[:80]
    line = f"• `{name}` — {turns:,} answers · {prompt:,} prompt + {completion:,} completion tokens"
    return line + (f" · ≈ ${cost:,.2f}" if cost is not None else "")


def _hint(hint: Suggestion) -> str:
    subject = _escape(hint.subject).replace("`", "'")[:80]
    if hint.kind == "unused":
        return (
            f"• `{subject}` has not been used for 30 days: `/mcp disconnect {subject}` if it is not needed."
        )
    if hint.kind == "failing":
        where = f" on {_escape(hint.detail)}" if hint.detail else ""
        return f"• `{subject}`{where} fails more than 20% of the time: `/mcp test` checks its server."
    if hint.kind == "slow":
        return f"• `{subject}` answers slowly (p95 {hint.detail}): its calls may time out."
    return f"• {hint.detail} of your teammates use the `{subject}` card: `/mcp connect {subject}` to try it."


def _ms(value: float) -> str:
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def _sections(title: str, lines: Sequence[str]) -> list[Block]:
    """``title`` then ``lines`` in as few sections as fit Slack's 3,000 characters each."""
    blocks: list[Block] = []
    text = title
    for line in lines:
        if len(text) + 1 + len(line) > SECTION_TEXT_LIMIT:
            blocks.append(SectionBlock(text=MarkdownTextObject(text=text)))
            text = ""
        text = f"{text}\n{line}" if text else line
    blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_TEXT_LIMIT))))
    return blocks
