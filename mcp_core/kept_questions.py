"""A server's form question mid-call, answerable on any process (migration 0014).

The process running the call holds the question in memory (``bot.questions.QuestionDesk``);
behind a load balancer, or over several Socket Mode connections, the person's click on
*Answer*, the modal's Submit or *Decline* may reach another process. So the asking process
also keeps the form here, sealed with AES-256-GCM under the credential keyring and bound to
(team, user, question id) — a server's questions and the person's answers are nobody else's
to read — and looks for an answer every ``POLL_S`` while it waits (a person takes seconds to
answer; a question is rare). Another process reads the form for the asker only, checks the
answer against it as the asking process would, and writes it once: the UPDATE's condition is
``answer IS NULL``, so a second answer (a double submit, two processes) changes nothing. The
asking process deletes the row when its question ends; rows of a process that died are deleted
by the next question kept after they expired (an indexed range, in the same transaction).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_core.credentials import Keyring
from mcp_core.credentials._crypto import aad_for, decrypt, encrypt
from mcp_core.elicitation import Choice, ElicitAnswer, FormField, FormRequest
from mcp_core.errors import CredentialError, McpCoreError
from mcp_core.store._engine import check_engine, transaction, writer
from mcp_core.store._tables import turn_questions

__all__ = ["POLL_S", "KeptQuestions"]

logger = logging.getLogger(__name__)

POLL_S = 0.5
"""How often the asking process looks for an answer given on another process."""
EXPIRED_GRACE = timedelta(minutes=5)
"""How long past its expiry a dead process's question is kept before it is deleted."""
_ACTIONS = ("accept", "decline", "cancel")
Found = FormRequest | Literal["gone"] | str
"""The form for its asker; "gone" (ended, expired, unreadable); or the asker's user id."""


class KeptQuestions:
    """Reads and writes of ``mcp_turn_questions`` (one transaction each).

    Raises (every method but ``wait``'s polling, which logs and tries again):
        StoreError: the database failed.
    """

    def __init__(self, engine: AsyncEngine, keyring: Keyring) -> None:
        check_engine(engine)
        self._engine = engine
        self._writer = writer(engine)
        self._keyring = keyring

    async def keep(
        self, question_id: str, team_id: str, user_id: str, form: FormRequest, expires_at: datetime
    ) -> None:
        """Keep ``form`` until ``expires_at`` (or ``forget``), for a click on any process."""
        sealed = self._seal(team_id, user_id, question_id, "form", asdict(form))
        insert = sa.insert(turn_questions).values(
            question_id=question_id,
            team_id=team_id,
            user_id=user_id,
            form=sealed,
            expires_at=expires_at,
            created_at=_now(),
        )
        expired = sa.delete(turn_questions).where(turn_questions.c.expires_at < _now() - EXPIRED_GRACE)
        async with transaction(self._writer) as conn:
            await conn.execute(expired)  # left by processes that died while asking
            await conn.execute(insert)

    async def find(self, question_id: str, team_id: str, user_id: str) -> Found:
        """The open question's form, for its asker (a question of another team is "gone")."""
        t = turn_questions.c
        query = sa.select(turn_questions).where(
            t.question_id == question_id, t.team_id == team_id, t.answer.is_(None), t.expires_at > _now()
        )
        async with transaction(self._engine) as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            return "gone"
        if row["user_id"] != user_id:
            return str(row["user_id"])
        data = self._unseal(team_id, user_id, question_id, "form", row["form"])
        form = _form(data) if data is not None else None
        return form if form is not None else "gone"

    async def answer(self, question_id: str, team_id: str, user_id: str, answer: ElicitAnswer) -> bool:
        """Write the asker's answer once; False if the question ended, expired, was answered
        already, or is not theirs."""
        sealed = self._seal(
            team_id, user_id, question_id, "answer", {"action": answer.action, "content": answer.content}
        )
        t = turn_questions.c
        update = (
            sa.update(turn_questions)
            .where(
                t.question_id == question_id,
                t.team_id == team_id,
                t.user_id == user_id,
                t.answer.is_(None),
                t.expires_at > _now(),
            )
            .values(answer=sealed)
        )
        async with transaction(self._writer) as conn:
            return (await conn.execute(update)).rowcount == 1

    async def wait(self, question_id: str, team_id: str, user_id: str) -> ElicitAnswer:
        """The answer given on any process, looked for every ``POLL_S`` until there is one
        (the caller bounds the wait and cancels it)."""
        t = turn_questions.c
        query = sa.select(t.answer).where(t.question_id == question_id, t.answer.is_not(None))
        while True:
            await asyncio.sleep(POLL_S)
            try:
                async with transaction(self._engine) as conn:
                    sealed = (await conn.execute(query)).scalar()
            except McpCoreError as exc:
                logger.warning("could not look for an answer given on another process: %s", exc)
                continue
            if sealed is None:
                continue
            data = self._unseal(team_id, user_id, question_id, "answer", sealed)
            action = data.get("action") if isinstance(data, dict) else None
            content = data.get("content") if isinstance(data, dict) else None
            if action not in _ACTIONS:
                return ElicitAnswer("cancel")
            return ElicitAnswer(action, content if isinstance(content, dict) else None)

    async def forget(self, question_id: str) -> None:
        """The question ended on the asking process."""
        delete = sa.delete(turn_questions).where(turn_questions.c.question_id == question_id)
        async with transaction(self._writer) as conn:
            await conn.execute(delete)

    def _seal(self, team_id: str, user_id: str, question_id: str, part: str, data: Any) -> dict[str, Any]:
        plaintext = json.dumps(data, separators=(",", ":")).encode()
        return encrypt(self._keyring, plaintext, aad_for(team_id, user_id, f"question:{question_id}:{part}"))

    def _unseal(self, team_id: str, user_id: str, question_id: str, part: str, record: Any) -> Any:
        try:
            plaintext = decrypt(
                self._keyring, record, aad_for(team_id, user_id, f"question:{question_id}:{part}")
            )
            return json.loads(plaintext)
        except (CredentialError, ValueError) as exc:
            logger.warning("question %s: its %s does not open (%s)", question_id, part, type(exc).__name__)
            return None


def _form(data: Any) -> FormRequest | None:
    """A form as ``keep`` sealed it (our own JSON; anything else is refused as unreadable)."""
    try:
        fields = tuple(
            FormField(**{**f, "choices": tuple(Choice(**c) for c in f.get("choices") or ())})
            for f in data["fields"]
        )
        return FormRequest(str(data["server"]), str(data["message"]), fields)
    except (KeyError, TypeError) as exc:
        logger.warning("a kept question is not readable (%s)", type(exc).__name__)
        return None


def _now() -> datetime:
    return datetime.now(UTC)
