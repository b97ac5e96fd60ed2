"""A click on a question that another process asked (or a process that has since died): the
question is taken from the database and its turn goes on here.

The click is checked against what the turn sealed when it asked (``mcp_core.turn_checkpoint``),
never against the click's own words: the question must still be open and unexpired, the
clicker must be the asker (the verified team and user of the request), the button's digest
must be the one of the arguments shown, and *Always allow* must have been offered. Then one
conditional UPDATE takes the question (``TurnJournal.take_question``): exactly one process —
this one, the asking one, or a third — goes on with the turn; a second click is told the
question is no longer open. The question's message says who answered what, as on the asking
process, and the turn continues (``bot.chat``'s ``Continued``) with the same progress message,
task cards and Stop button.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_bolt.async_app import AsyncRespond

from bot import texts
from bot.approvals import KeptCallReader, Outcome, Resumer
from bot.replies import Replies, privately
from mcp_core import errors
from mcp_core.agent import ToolCall
from mcp_core.audit import Auditor
from mcp_core.services import Services
from mcp_core.turn_checkpoint import Checkpoint, unseal
from mcp_core.turn_journal import TurnRow

__all__ = ["Continued", "kept_arguments", "resumer"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Continued:
    """A turn that waited for a click and goes on in this process: the row it took from the
    database, where it stood, and the person's answer (True: approved)."""

    row: TurnRow
    checkpoint: Checkpoint
    answer: bool


def resumer(
    services: Services, replies: Replies, go_on: Callable[[Continued], Awaitable[None]]
) -> Resumer | None:
    """What answers other processes' questions here; None when questions are not kept (no
    turn journal, or no keyring to open checkpoints with)."""
    journal, keys = services.turns, services.checkpoint_keys
    if journal is None or keys is None:
        return None

    async def resume(
        value: str, team_id: str, user_id: str, outcome: Outcome, respond: AsyncRespond | None
    ) -> None:
        question = value.partition(".")[0]
        kept = await _open_kept(services, value, team_id, user_id)
        if isinstance(kept, str):
            await privately(respond, kept)
            return
        row, checkpoint = kept
        if outcome == "always" and checkpoint.extras.get("offers_always") is not True:
            await privately(respond, texts.APPROVAL_NOT_OFFERED)
            return
        try:
            taken = await journal.take_question(question)
        except errors.McpCoreError as exc:
            await privately(respond, texts.failed(exc))
            return
        if taken is None:  # another click (here or elsewhere) or the expiry took it first
            await privately(respond, texts.APPROVAL_GONE)
            return
        logger.info("turn %s: its question was answered here; it goes on here", taken.turn_id)
        name = (
            checkpoint.calls[checkpoint.waiting].name
            if 0 <= checkpoint.waiting < len(checkpoint.calls)
            else ""
        )
        catalog = {entry.name: entry for entry in await _catalog(services, team_id, user_id)}
        entry = catalog.get(name)
        if outcome == "always" and entry is not None:
            try:
                await services.registry.set_always_allowed(
                    team_id, user_id, entry.connection_id, entry.tool.name, True
                )
            except errors.McpCoreError as exc:  # approved once all the same: the person said yes
                outcome = "approved"
                await privately(respond, texts.not_remembered(exc))
        if outcome == "always":
            allowed = {str(n) for n in checkpoint.extras.get("allowed_now") or []} | {name}
            checkpoint.extras["allowed_now"] = sorted(allowed)
        thread = replies.thread(row.channel_id, row.thread_ts)
        question_ts = checkpoint.extras.get("question_ts")
        if isinstance(question_ts, str) and question_ts:
            connection = entry.connection_name if entry is not None else ""
            await thread.edit(question_ts, texts.approval_outcome(name, user_id, outcome, connection))
        if entry is not None:
            call = checkpoint.calls[checkpoint.waiting]
            await Auditor(services.store).decision(
                team_id,
                user_id,
                connection=entry.connection_name,
                tool=entry.tool.name,
                decision=outcome,
                arguments=_arguments(call.raw_arguments),
                redact=services.registry.redactor(team_id, user_id),
            )
        await go_on(Continued(taken, checkpoint, outcome in ("approved", "always")))

    return resume


def kept_arguments(services: Services) -> KeptCallReader | None:
    """What shows the complete arguments of a question another process asked (its *Show all
    arguments* button), read from the turn's sealed checkpoint; None when questions are not
    kept."""
    if services.turns is None or services.checkpoint_keys is None:
        return None

    async def read(value: str, team_id: str, user_id: str) -> ToolCall | str:
        kept = await _open_kept(services, value, team_id, user_id)
        if isinstance(kept, str):
            return kept
        checkpoint = kept[1]
        if not 0 <= checkpoint.waiting < len(checkpoint.calls):
            return texts.APPROVAL_GONE
        call = checkpoint.calls[checkpoint.waiting]
        return ToolCall(call.id, call.name, _arguments(call.raw_arguments) or {}, None)

    return read


async def _open_kept(
    services: Services, value: str, team_id: str, user_id: str
) -> tuple[TurnRow, Checkpoint] | str:
    """The open, unexpired question a button's ``value`` names, with its turn's checkpoint,
    when ``team_id``/``user_id`` asked it and the button's digest is the one shown; else what
    to tell the clicker."""
    journal, keys = services.turns, services.checkpoint_keys
    assert journal is not None
    assert keys is not None
    question, _, digest = value.partition(".")
    try:
        row = await journal.find_question(question) if question else None
    except errors.McpCoreError as exc:
        return texts.failed(exc)
    if row is None:
        return texts.APPROVAL_GONE
    if (row.team_id, row.user_id) != (team_id, user_id):
        return texts.APPROVAL_NOT_YOURS
    checkpoint = unseal(keys, row.team_id, row.user_id, row.turn_id, row.checkpoint)
    expires = row.question_expires_at
    if checkpoint is None or checkpoint.extras.get("digest") != digest or expires is None:
        return texts.APPROVAL_GONE
    if expires <= datetime.now(UTC):
        return texts.APPROVAL_GONE
    return row, checkpoint


async def _catalog(services: Services, team_id: str, user_id: str) -> list[Any]:
    """The asker's catalog (to name the waiting call's connection); empty if it cannot be read
    now — the turn reads it again as it goes on and says what failed."""
    try:
        return list(await services.registry.catalog(team_id, user_id))
    except errors.McpCoreError as exc:
        logger.info("could not read the catalog for a continued turn: %s", exc)
        return []


def _arguments(raw: str) -> dict[str, Any] | None:
    """A kept call's arguments as the model wrote them, if they are a JSON object."""
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None
