"""Where a turn that waits for a person stands, so any process can go on with it.

When the agent asks the asker about a call (Approve/Deny), everything the rest of the turn
needs is written down: the conversation as the model has it (the system prompt aside: the
resuming process uses its own), the model's calls of this round with their exact arguments,
the answers of those that ended, which call waits, which tools were offered, and how many
rounds and calls the turn used. A click on any process — or the question's expiry, seen by
a sweeper after the asking process died — continues the turn from here (``Agent.run`` with
``resume``): calls that ended are not run again, the waiting call runs only if approved,
the calls after it run (or ask) as they would have.

The conversation holds people's words and tools' results (the registry scrubbed the asker's
secrets out of those already), so the checkpoint is sealed like a credential before it is
stored: AES-256-GCM under the credential keyring, bound to (team, user, turn) — a row copied
to another turn or person does not open. ``extras`` belongs to the surface (how the turn was
shown, the question's details) and is sealed with the rest.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_core.credentials import Keyring
from mcp_core.credentials._crypto import aad_for, decrypt, encrypt
from mcp_core.errors import CredentialError

__all__ = ["Checkpoint", "CheckpointCall", "EndedCall", "Resume", "seal", "unseal"]

logger = logging.getLogger(__name__)

EndedState = Literal["done", "failed", "denied", "stopped"]


class CheckpointCall(BaseModel):
    """One call of the model's answer, as the model wrote it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    raw_arguments: str


class EndedCall(BaseModel):
    """A call of the turn that ended before the wait, for the answer's summary and counts;
    ``answer``: what the model read of it (for this round's calls)."""

    model_config = ConfigDict(frozen=True)

    id: str = ""
    name: str
    state: EndedState
    answer: str | None = None


class Checkpoint(BaseModel):
    """A waiting turn's state (see the module docstring). Positions index ``calls``."""

    history: list[dict[str, Any]]
    calls: list[CheckpointCall]
    runs: list[int]
    """Positions that are calls of the person's tools (the others are ``find_tools``)."""
    answers: dict[int, str] = Field(default_factory=dict)
    """``find_tools`` positions' answers (the ended runs' are in ``ended``)."""
    waiting: int
    """The position of the call the question is about."""
    offered: list[str]
    searching: bool = False
    steps: int = 0
    asked: int = 0
    ran: int = 0
    ended: list[EndedCall] = Field(default_factory=list)
    """Earlier rounds' calls, then this round's that ended, in order."""
    round_ended: int = 0
    """How many of ``ended``'s last entries are this round's (their answers go back to the model)."""
    extras: dict[str, Any] = Field(default_factory=dict)


class Resume(BaseModel):
    """Go on with ``checkpoint``: ``answer`` is the person's (True: approved) or why the call
    was not run (a deny, an expiry), which the model reads."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    checkpoint: Checkpoint
    answer: bool | str


def seal(
    keyring: Keyring, team_id: str, user_id: str, turn_id: str, checkpoint: Checkpoint
) -> dict[str, Any]:
    """The checkpoint encrypted for the turn's row."""
    plaintext = checkpoint.model_dump_json().encode()
    return encrypt(keyring, plaintext, aad_for(team_id, user_id, f"turn:{turn_id}"))


def unseal(keyring: Keyring, team_id: str, user_id: str, turn_id: str, record: Any) -> Checkpoint | None:
    """The checkpoint of a row, or None when it does not open (another key, another turn's
    row, a byte changed) or is not one — that turn cannot be continued, only closed."""
    try:
        plaintext = decrypt(keyring, record, aad_for(team_id, user_id, f"turn:{turn_id}"))
        return Checkpoint.model_validate(json.loads(plaintext))
    except (CredentialError, ValueError, ValidationError) as exc:
        logger.warning("turn %s: its checkpoint does not open (%s)", turn_id, type(exc).__name__)
        return None
