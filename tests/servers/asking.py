"""An MCP server that asks mid-call and reports progress, on both protocol generations.

    python tests/servers/asking.py          # stdio

Tools:
    ask(form)        ask a form (elicitation, form mode) and answer what came back:
                     "accept {json content}", "decline" or "cancel". ``form`` names the schema
                     in FORMS: "trip" (every primitive kind, titles, defaults, limits),
                     "nested" (an object inside: off-spec), "crowded" (120 fields), "loud"
                     (a huge message and titles full of mrkdwn and mentions).
    sign_up()        ask the person to open a link (elicitation, URL mode); answers the action.
    index(steps)     report ``steps`` progress notifications ("1 of N — indexing"), then "indexed".

On a 2025-11-25 session a question is a standalone ``elicitation/create`` request sent in the
middle of the call; on 2026-07-28 the tool returns an ``input_required`` result and reads the
answer from the retried call's ``inputResponses`` (SEP-2322), as the spec has each generation do.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp_types as types
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from mcp_types.version import is_version_at_least

SIGN_UP_URL = "https://accounts.example.com/sign-up?session=abc123&next=%2Fhome"
LOUD = "<!channel> *bold* <https://evil.example|click me> `code` " * 80
QUESTION_KEY = "q"

TRIP: dict[str, Any] = {
    "type": "object",
    "properties": {
        "destination": {
            "type": "string",
            "title": "Destination",
            "description": "Where to?",
            "minLength": 2,
            "maxLength": 40,
            "default": "Lisbon",
        },
        "travellers": {"type": "integer", "title": "Travellers", "minimum": 1, "maximum": 9, "default": 2},
        "budget": {"type": "number", "title": "Budget (EUR)", "minimum": 0},
        "email": {"type": "string", "format": "email", "title": "Email"},
        "website": {"type": "string", "format": "uri", "title": "Hotel website"},
        "start": {"type": "string", "format": "date", "title": "Start date"},
        "insurance": {"type": "boolean", "title": "Travel insurance", "default": True},
        "seat": {"type": "string", "title": "Seat", "enum": ["window", "aisle"], "default": "aisle"},
        "cabin": {
            "type": "string",
            "title": "Cabin",
            "oneOf": [{"const": "eco", "title": "Economy"}, {"const": "biz", "title": "Business"}],
        },
        "meals": {
            "type": "array",
            "title": "Meals",
            "items": {"type": "string", "enum": ["veg", "halal", "kosher"]},
            "maxItems": 2,
        },
    },
    "required": ["destination", "travellers", "email"],
}
FORMS: dict[str, dict[str, Any]] = {
    "trip": TRIP,
    "nested": {
        "type": "object",
        "properties": {"address": {"type": "object", "properties": {"street": {"type": "string"}}}},
    },
    "crowded": {
        "type": "object",
        "properties": {f"field_{n}": {"type": "string"} for n in range(120)},
    },
    "loud": {
        "type": "object",
        "properties": {"name": {"type": "string", "title": LOUD, "description": LOUD}},
    },
}


def build_server() -> MCPServer:
    mcp = MCPServer("asking", version="1.0", log_level="WARNING")

    async def elicit(
        ctx: Context, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.InputRequiredResult:
        """Ask as the session's protocol generation does; the answer, or the question to retry with."""
        version = ctx.request_context.protocol_version or "2025-11-25"
        if not is_version_at_least(version, "2026-07-28"):
            session = ctx.request_context.session
            if isinstance(params, types.ElicitRequestURLParams):
                return await session.elicit_url(
                    params.message,
                    params.url,
                    params.elicitation_id or "e1",
                    related_request_id=ctx.request_id,
                )
            return await session.elicit_form(
                params.message, params.requested_schema, related_request_id=ctx.request_id
            )
        answered = (ctx.input_responses or {}).get(QUESTION_KEY)
        if isinstance(answered, types.ElicitResult):
            return answered
        question = types.ElicitRequest(params=params)
        return types.InputRequiredResult(input_requests={QUESTION_KEY: question}, request_state="asked")

    def told(answer: types.ElicitResult) -> str:
        if answer.action == "accept" and answer.content is not None:
            return f"accept {json.dumps(answer.content, sort_keys=True)}"
        return answer.action

    read_only = ToolAnnotations(read_only_hint=True)  # no Approve/Deny first: the tests are about questions

    @mcp.tool(structured_output=False, annotations=read_only)
    async def ask(form: str, ctx: Context) -> str | types.InputRequiredResult:
        """Ask the person to fill in a form; say what they answered."""
        message = LOUD if form == "loud" else "Planning your trip: a few details, please."
        params = types.ElicitRequestFormParams(message=message, requested_schema=FORMS[form])
        answer = await elicit(ctx, params)
        return answer if isinstance(answer, types.InputRequiredResult) else told(answer)

    @mcp.tool(structured_output=False, annotations=read_only)
    async def sign_up(ctx: Context) -> str | types.InputRequiredResult:
        """Ask the person to open the sign-up page; say what they answered."""
        params = types.ElicitRequestURLParams(
            message="Create your account to continue.", url=SIGN_UP_URL, elicitation_id="sign-up-1"
        )
        answer = await elicit(ctx, params)
        return answer if isinstance(answer, types.InputRequiredResult) else told(answer)

    @mcp.tool(structured_output=False, annotations=read_only)
    async def index(steps: int, ctx: Context) -> str:
        """Report progress ``steps`` times, then answer "indexed"."""
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"indexing <@U0EVIL> part {step}")
            await anyio.sleep(0.3)
        return "indexed"

    return mcp


if __name__ == "__main__":
    build_server().run(transport="stdio")
