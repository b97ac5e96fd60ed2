"""How big the agent's model requests are, against the designs before them, in one run.

Run: ``.venv/bin/python bench/request_size.py [--json PATH]``

The catalogs are real servers' published tool lists (``bench/data/catalogs``, as in
``bench/tool_selection.py``). For each scenario the real ``Agent`` runs with the real
``openai`` client, whose HTTP goes to an in-process transport (``httpx2.MockTransport``) that
records each request body exactly as it would be sent and answers with a scripted completion:

* per message: a question answered without a tool (one request);
* per tool turn: a question answered after one tool call (two requests, the second carrying
  the call and a short result).

Designs, all in this run:

* ``before``: the design issue 13 measured — every tool in every request, each with its
  ``[connection]`` description prefix and its raw input schema;
* ``preselect``: the same definitions, with the preselection of large catalogs (``main`` until
  the compact definitions);
* ``now``: preselection and ``mcp_core.tool_specs``' compact definitions.

"Every function still callable" is checked for each scenario's ``now`` request: every offered
tool is declared with every property (recursively), ``required`` list and type of its
server's schema (``tests/test_tool_specs.py`` also checks validation verdicts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import types as pytypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2
from openai import AsyncOpenAI

from bench.tool_selection import load_catalog
from mcp_core import agent as agent_module
from mcp_core import tool_specs
from mcp_core.agent import Agent, ToolCall
from mcp_core.models import CatalogEntry, ToolResult

QUESTION = "Can you check the latest issues in our repo and summarise them?"
RESULT = "3 open issues: #12 login fails on Safari; #15 docs typo; #18 slow search."


def before_specs(entries: Sequence[CatalogEntry]) -> list[dict[str, Any]]:
    """The definitions before issue 13 (``mcp_core.agent.openai_tools`` at 440635f)."""
    tools = []
    for entry in entries:
        description = entry.tool.description or entry.tool.title or entry.tool.name
        function = {
            "name": entry.name,
            "description": f"[{entry.connection_name}] {description}"[:1024],
            "parameters": entry.tool.input_schema or {"type": "object"},
        }
        tools.append({"type": "function", "function": function})
    return tools


DESIGNS = {
    "before": (before_specs, False),
    "preselect": (before_specs, True),
    "now": (tool_specs.function_specs, True),
}


def scenarios() -> dict[str, list[CatalogEntry]]:
    catalog = load_catalog()
    everything = [e for e in catalog if e.connection_name == "everything"]
    five = []
    for n in range(1, 6):
        for entry in everything:
            name = entry.name.replace("everything__", f"everything{n}__")
            five.append(entry.model_copy(update={"name": name, "connection_name": f"everything{n}"}))
    return {
        "server-everything (13 tools)": everything,
        "5 × server-everything (65)": five,
        "github (114)": [e for e in catalog if e.connection_name == "github"],
        "all 7 servers (190)": catalog,
    }


class Recorder:
    """The model endpoint: records request bodies, answers from a script."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.script: list[dict[str, Any]] = []

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.bodies.append(request.content)
        message = self.script.pop(0)
        body = {
            "id": f"chatcmpl-{len(self.bodies)}",
            "object": "chat.completion",
            "created": 0,
            "model": "bench-model",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return httpx2.Response(200, json=body)


async def measure(catalog: list[CatalogEntry], design: str) -> dict[str, Any]:
    specs, preselecting = DESIGNS[design]
    recorder = Recorder()
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(recorder.handle))
    client = AsyncOpenAI(api_key="bench", base_url="http://model.invalid/v1", http_client=http, max_retries=0)
    options = {} if preselecting else {"max_tools": 10_000, "preselect_above": 10_000}
    agent = Agent(client, "bench-model", **options)
    original = agent_module.tool_specs
    agent_module.tool_specs = pytypes.SimpleNamespace(
        function_specs=specs, array_chars=tool_specs.array_chars
    )
    try:

        async def call_tool(call: ToolCall) -> ToolResult:
            return ToolResult(text=RESULT)

        question = [{"role": "user", "content": QUESTION}]
        recorder.script = [{"role": "assistant", "content": "Here is the summary."}]
        await agent.run(question, catalog, call_tool)
        per_message = len(recorder.bodies[0].decode())
        first_tool = json.loads(recorder.bodies[0])["tools"][0]["function"]["name"]
        tool_call = {"id": "call_1", "type": "function", "function": {"name": first_tool, "arguments": "{}"}}
        recorder.script = [
            {"role": "assistant", "content": None, "tool_calls": [tool_call]},
            {"role": "assistant", "content": "Here is the summary."},
        ]
        await agent.run(question, catalog, call_tool, approval=lambda entry: False)
        turn_bodies = recorder.bodies[1:]
        sent = json.loads(recorder.bodies[0])["tools"]
    finally:
        agent_module.tool_specs = original
        await client.close()
    return {
        "per_message": per_message,
        "per_tool_turn": sum(len(b.decode()) for b in turn_bodies),
        "tools_offered": len(sent),
        "same_tools_every_round": len({json.dumps(json.loads(b)["tools"]) for b in turn_bodies}) == 1,
        "callable": design != "now" or _all_callable(catalog, sent),
    }


def _all_callable(catalog: list[CatalogEntry], sent: list[dict[str, Any]]) -> bool:
    by_name = {entry.name: entry for entry in catalog}
    for tool in sent:
        function = tool["function"]
        entry = by_name.get(function["name"])
        if entry is None:  # find_tools
            continue
        declared = function.get("parameters", {"type": "object", "properties": {}})
        if _shape(declared) != _shape(entry.tool.input_schema):
            return False
    return True


def _shape(schema: Any) -> Any:
    """Properties, required lists and types, recursively: what a call needs to be right."""
    if isinstance(schema, dict):
        kept = {k: _shape(v) for k, v in schema.items() if k in ("properties", "items", "required", "$defs")}
        if "properties" in schema:
            kept["properties"] = {k: _shape(v) for k, v in schema["properties"].items()}
        kinds = schema.get("type") or sorted(
            str(b.get("type"))
            for b in schema.get("anyOf") or schema.get("oneOf") or ()
            if isinstance(b, dict)
        )
        kept["type"] = sorted(kinds) if isinstance(kinds, list) else [kinds]
        return kept
    return schema


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    print(
        "| scenario | design | tools sent | per message (chars) | per tool turn (chars) | vs before "
        "| same tools each round | all callable |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|")
    for scenario, catalog in scenarios().items():
        rows = {design: await measure(catalog, design) for design in DESIGNS}
        results[scenario] = rows
        base = rows["before"]
        for design, row in rows.items():
            message = 1 - row["per_message"] / base["per_message"]
            turn = 1 - row["per_tool_turn"] / base["per_tool_turn"]
            ratio = "–" if design == "before" else f"{message:.0%} / {turn:.0%} smaller"
            print(
                f"| {scenario} | {design} | {row['tools_offered']} | {row['per_message']:,} | "
                f"{row['per_tool_turn']:,} | {ratio} | "
                f"{'yes' if row['same_tools_every_round'] else 'no'} | {'yes' if row['callable'] else 'NO'} |"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
