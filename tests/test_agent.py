"""The agent loop against a scripted OpenAI-compatible server and the real registry + toy server.

The ``openai`` client is the real one, talking HTTP to ``tests.support.fake_openai``; tools run
in a real stdio MCP server through the real registry, as the asking user.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import openai
import pytest
import sqlalchemy as sa
from openai import AsyncOpenAI

from bench.tool_selection import load_catalog as load_bench_catalog
from mcp_core import errors
from mcp_core.agent import Agent, ToolCall, ToolProgress, needs_approval
from mcp_core.models import CatalogEntry, ToolInfo, ToolResult
from mcp_core.services import Services
from mcp_core.store._tables import tool_usage
from tests.support.agents import AgentFactory, as_user
from tests.support.fake_openai import FakeOpenAI, fake_openai
from tests.support.registry import CREDENTIAL_REF, TEAM, USER, add, make_settings, open_services, toy
from tests.support.secrets import DictSecrets

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-agent-value-9e1f"
QUESTION = [{"role": "user", "content": "Please use my tools."}]


@pytest.fixture
async def catalog(services: Services, secrets: DictSecrets) -> list[CatalogEntry]:
    """The user's catalog: the toy server, with a secret in its environment."""
    secrets.put(TEAM, USER, CREDENTIAL_REF, {"env:TOY_SECRET": SECRET})
    outcome = await add(services, toy("toy").model_copy(update={"credential_ref": CREDENTIAL_REF}))
    assert outcome.error is None
    return await services.registry.catalog(TEAM, USER)


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def approve(call: ToolCall) -> bool:
    return True


async def test_a_read_only_tool_runs_without_approval_and_the_model_gets_its_result(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(("toy__echo", {"text": "hello"}))
    llm.reply("The server said hello.")
    seen: list[ToolProgress] = []

    async def on_progress(progress: ToolProgress) -> None:
        seen.append(progress)

    reply = await agent_for(llm).run(QUESTION, catalog, as_user(services), on_progress=on_progress)

    assert reply.text == "The server said hello."
    assert reply.steps == 2
    assert [(p.call.name, p.state) for p in seen] == [
        ("toy__echo", "pending"),
        ("toy__echo", "running"),
        ("toy__echo", "done"),
    ]
    first, second = llm.requests
    assert first["messages"][0]["role"] == "system"
    assert first["messages"][1:] == QUESTION
    echo = next(t for t in first["tools"] if t["function"]["name"] == "toy__echo")
    assert echo["function"]["description"] == "Return the text unchanged."  # the name says "toy"
    assert echo["function"]["parameters"]["properties"]["text"]["type"] == "string"
    assert tool_messages(second) == ["hello"]


async def test_several_calls_per_answer_and_several_rounds_run_in_order(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(("toy__echo", {"text": "one"}), ("toy__add", {"a": 2, "b": 3}))
    llm.call_tools(("toy__echo", {"text": "two"}))
    llm.reply("All done.")

    reply = await agent_for(llm).run(QUESTION, catalog, as_user(services), ask_approval=approve)

    assert reply.text == "All done."
    assert [(p.call.name, p.state) for p in reply.calls] == [
        ("toy__echo", "done"),
        ("toy__add", "done"),
        ("toy__echo", "done"),
    ]
    assert tool_messages(llm.requests[1]) == ["one", "5"]
    assert tool_messages(llm.requests[2])[-1] == "two"


async def test_a_call_that_may_write_waits_for_approval_and_a_denial_reaches_the_model_not_the_server(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    asked: list[ToolCall] = []

    async def deny(call: ToolCall) -> bool:
        asked.append(call)
        return False

    llm.call_tools(("toy__pid", {}))
    llm.reply("You denied it.")
    reply = await agent_for(llm).run(QUESTION, catalog, as_user(services), ask_approval=deny)
    await services.usage.flush()

    assert [(c.name, c.arguments) for c in asked] == [("toy__pid", {})]
    assert [p.state for p in reply.calls] == ["denied"]
    assert tool_messages(llm.requests[1]) == ["Error: The person denied this call; it was not run."]
    async with services.store.engine.connect() as conn:  # never sent to the server
        assert (await conn.execute(sa.select(sa.func.count()).select_from(tool_usage))).scalar_one() == 0


async def test_the_approval_question_shows_the_arguments_without_the_nulls_the_model_sent(
    llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    schema = {"type": "object", "properties": {"text": {"type": "string"}, "note": {"type": "string"}}}
    tool = ToolInfo(name="t", input_schema=schema, read_only=False)
    catalog = [CatalogEntry(name="c__t", connection_id=uuid.uuid4(), connection_name="c", tool=tool)]
    asked: list[ToolCall] = []

    async def deny(call: ToolCall) -> bool:
        asked.append(call)
        return False

    async def never_called(call: ToolCall) -> ToolResult:
        raise AssertionError("a denied call ran")

    llm.call_tools(("c__t", {"text": "hi", "note": None}))
    llm.reply("Denied.")
    await agent_for(llm).run(QUESTION, catalog, never_called, ask_approval=deny)

    assert [c.arguments for c in asked] == [{"text": "hi"}]


async def test_with_no_way_to_ask_a_call_that_may_write_is_refused(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(("toy__pid", {}))
    llm.reply("I could not.")

    reply = await agent_for(llm).run(QUESTION, catalog, as_user(services))

    assert [p.state for p in reply.calls] == ["denied"]


async def test_tool_failures_unknown_tools_and_bad_arguments_come_back_to_the_model_as_results(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(
        ("toy__fail", {}),
        ("nobody__nothing", {}),
        ("toy__echo", "{not json"),
        ("toy__add", {"a": "two", "b": 3}),
    )
    llm.reply("Some of that failed.")

    reply = await agent_for(llm).run(QUESTION, catalog, as_user(services), ask_approval=approve)

    assert reply.text == "Some of that failed."
    assert [p.state for p in reply.calls] == ["failed"] * 4
    failed, unknown, not_json, bad_args = tool_messages(llm.requests[1])
    assert failed.startswith("Error: ")
    assert "toy tool failed on purpose" in failed
    assert unknown == "Error: There is no tool named “nobody__nothing”."
    assert not_json == "Error: The arguments were not a JSON object; nothing was run."
    assert bad_args.startswith("Error: Arguments for toy__add do not match its schema")


async def test_every_call_ends_in_on_progress_whether_it_ran_was_denied_or_could_not_run(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(
        ("toy__echo", {"text": "hi"}), ("toy__pid", {}), ("nobody__nothing", {}), ("toy__echo", "{x")
    )
    llm.reply("Done what I could.")
    seen: list[ToolProgress] = []

    async def on_progress(progress: ToolProgress) -> None:
        seen.append(progress)

    async def deny(call: ToolCall) -> bool:
        return False

    reply = await agent_for(llm).run(
        QUESTION, catalog, as_user(services), on_progress=on_progress, ask_approval=deny
    )

    ended = [(p.call.name, p.state) for p in seen if p.state not in ("pending", "running")]
    assert ended == [(p.call.name, p.state) for p in reply.calls]
    assert ended == [
        ("toy__echo", "done"),
        ("toy__pid", "denied"),
        ("nobody__nothing", "failed"),
        ("toy__echo", "failed"),
    ]
    assert [p.call.name for p in seen if p.state == "running"] == ["toy__echo"]  # only what ran


async def test_the_policy_a_catalog_entry_carries_decides_without_any_other_lookup(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    asked: list[str] = []

    async def ask(call: ToolCall) -> bool:
        asked.append(call.name)
        return True

    never = [e.model_copy(update={"approval": "never"}) for e in catalog]
    llm.call_tools(("toy__pid", {}))
    llm.reply("Ran it.")
    await agent_for(llm).run(QUESTION, never, as_user(services), ask_approval=ask)
    always = [e.model_copy(update={"approval": "always"}) for e in catalog]
    llm.call_tools(("toy__echo", {"text": "hi"}))
    llm.reply("Asked first.")
    await agent_for(llm).run(QUESTION, always, as_user(services), ask_approval=ask)

    assert asked == ["toy__echo"]  # pid may write but "never" asks; echo is read-only but "always" does


async def test_catalog_entries_carry_their_run_cards_approval_policy_and_writes_without_one(
    services: Services,
) -> None:
    services.registry.use_card_approvals({"postgres": "never", "custom": "always"})
    for name, card in (("pg", "postgres"), ("mine", "custom"), ("gone", "removed-card"), ("bare", None)):
        assert (await add(services, toy(name).model_copy(update={"card_id": card}))).error is None

    policies = {e.connection_name: e.approval for e in await services.registry.catalog(TEAM, USER)}

    assert policies == {"pg": "never", "mine": "always", "gone": "writes", "bare": "writes"}


async def test_after_max_steps_the_model_must_answer_without_tools(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(("toy__echo", {"text": "a"}))
    llm.call_tools(("toy__echo", {"text": "b"}))
    llm.reply("Here is what I found so far.")

    reply = await agent_for(llm, max_steps=2).run(QUESTION, catalog, as_user(services))

    assert reply.text == "Here is what I found so far."
    assert [r["tool_choice"] for r in llm.requests] == ["auto", "auto", "none"]


async def test_a_secret_in_a_tool_result_never_reaches_the_model(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(("toy__env", {"name": "TOY_SECRET"}))
    llm.reply("It is set.")

    await agent_for(llm).run(QUESTION, catalog, as_user(services), ask_approval=approve)

    assert tool_messages(llm.requests[1]) == ["[redacted]"]
    assert SECRET not in json.dumps(llm.requests)


async def test_without_tools_the_model_is_asked_plainly(llm: FakeOpenAI, agent_for: AgentFactory) -> None:
    llm.reply("Hi! Connect a server with /mcp connect to give me tools.")

    async def no_tools(call: ToolCall) -> ToolResult:
        raise AssertionError("no tool should run")

    reply = await agent_for(llm).run(QUESTION, [], no_tools)

    assert reply.text.startswith("Hi!")
    assert "tools" not in llm.requests[0]


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ("wrong_key", "OPENAI_API_KEY"),
        ("fail_500", "HTTP 500"),
        ("fail_429", "rate-limiting"),
        ("stall", "took too long"),
    ],
)
async def test_a_failing_model_raises_llm_error_saying_what_to_do_without_the_key(
    llm: FakeOpenAI, agent_for: AgentFactory, script: str, says: str
) -> None:
    key = "sk-wrong-key-7a7a" if script == "wrong_key" else None
    if script.startswith("fail_"):
        llm.fail(int(script.removeprefix("fail_")), f"upstream said no to {llm.api_key}")
    elif script == "stall":
        llm.stall()

    async def no_tools(call: ToolCall) -> ToolResult:
        raise AssertionError("no tool should run")

    with pytest.raises(errors.LlmError) as caught:
        await agent_for(llm, api_key=key, timeout_s=0.5).run(QUESTION, [], no_tools)

    assert says in str(caught.value)
    assert "sk-" not in str(caught.value)


async def test_an_unreachable_model_says_to_check_the_base_url() -> None:
    async with fake_openai() as gone:
        base_url = gone.base_url

    async def no_tools(call: ToolCall) -> ToolResult:
        raise AssertionError("no tool should run")

    async with AsyncOpenAI(api_key="sk-x", base_url=base_url, max_retries=0, timeout=2.0) as client:
        with pytest.raises(errors.LlmError, match="OPENAI_BASE_URL"):
            await Agent(client, "fake-model").run(QUESTION, [], no_tools)


def entry(read_only: bool | None) -> CatalogEntry:
    tool = ToolInfo(name="t", read_only=read_only)
    return CatalogEntry(name="c__t", connection_id=uuid.uuid4(), connection_name="c", tool=tool)


@pytest.mark.parametrize(
    ("read_only", "policy", "asks"),
    [
        (True, "writes", False),
        (False, "writes", True),
        (None, "writes", True),  # a server that says nothing might write
        (True, "always", True),
        (None, "never", False),
    ],
)
def test_which_calls_need_approval(read_only: bool | None, policy: Any, asks: bool) -> None:
    assert needs_approval(entry(read_only), policy) is asks


@pytest.mark.parametrize(
    ("tool", "policy", "asks"),
    [
        (ToolInfo(name="t"), "writes", False),
        (ToolInfo(name="t"), "always", False),
        (ToolInfo(name="t", destructive=False), "writes", False),
        (ToolInfo(name="t", destructive=True), "writes", True),  # the server says so: asked every time
        (ToolInfo(name="t", destructive=True), "always", True),
        (ToolInfo(name="t", destructive=True, read_only=True), "writes", False),  # read-only wins
    ],
)
def test_always_allowed_tools_need_no_approval_unless_their_server_says_destructive(
    tool: ToolInfo, policy: Any, asks: bool
) -> None:
    always = CatalogEntry(
        name="c__t", connection_id=uuid.uuid4(), connection_name="c", tool=tool, always_allowed=True
    )

    assert needs_approval(always, policy) is asks


async def test_services_build_the_agent_from_the_openai_settings_only_when_a_key_is_set(
    tmp_path, llm: FakeOpenAI
) -> None:
    async with open_services(make_settings(tmp_path)) as services:
        assert services.agent is None

    settings = make_settings(tmp_path, openai_api_key=llm.api_key, openai_base_url=llm.base_url)
    async with open_services(settings) as services:
        assert services.agent is not None
        llm.reply("Configured.")
        reply = await services.agent.run(QUESTION, [], as_user(services))

    assert reply.text == "Configured."
    assert llm.requests[0]["model"] == settings.openai_model


# --- Many tools (issue 13): the cap, the preselection, find_tools -----------------------------------


def big_catalog(catalog: list[CatalogEntry], size: int = 163) -> list[CatalogEntry]:
    """The toy server's tools among real servers' published tools (bench/data/catalogs)."""
    return load_bench_catalog()[: size - len(catalog)] + catalog


def offered(request: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in request.get("tools", [])]


async def test_the_fake_openai_refuses_more_than_128_tools_with_http_400_like_the_real_api(
    llm: FakeOpenAI,
) -> None:
    tools = [{"type": "function", "function": {"name": f"t{i}", "parameters": {}}} for i in range(129)]
    async with AsyncOpenAI(api_key=llm.api_key, base_url=llm.base_url, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="m", messages=QUESTION, tools=tools)  # type: ignore[arg-type]
        llm.reply("fine")
        await client.chat.completions.create(model="m", messages=QUESTION, tools=tools[:128])  # type: ignore[arg-type]

    assert refused.value.status_code == 400
    assert refused.value.code == "array_above_max_length"


async def test_a_163_tool_catalog_sends_at_most_128_tools_whatever_the_threshold(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.reply("Hello.")
    llm.reply("Hello again.")
    tools = big_catalog(catalog)
    assert len(tools) == 163

    await agent_for(llm).run(QUESTION, tools, as_user(services))
    await agent_for(llm, preselect_above=500).run(QUESTION, tools, as_user(services))

    assert [len(offered(r)) for r in llm.requests] == [40, 128]
    assert all("find_tools" in offered(r) for r in llm.requests)


async def test_a_catalog_under_the_threshold_is_offered_whole_without_find_tools(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.reply("Hello.")
    await agent_for(llm).run(QUESTION, big_catalog(catalog, 40), as_user(services))

    assert len(offered(llm.requests[0])) == 40
    assert "find_tools" not in offered(llm.requests[0])


async def test_above_the_threshold_the_tool_the_person_asks_about_is_offered(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.reply("Done.")
    question = [{"role": "user", "content": "post 'deploy done' in the #releases channel"}]
    await agent_for(llm).run(question, big_catalog(catalog), as_user(services))

    assert "slack__slack_post_message" in offered(llm.requests[0])
    assert "github__get_gist" not in offered(llm.requests[0])


async def test_find_tools_brings_a_tool_into_the_next_round_and_says_which(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    question = [{"role": "user", "content": "post 'deploy done' in the #releases channel"}]
    llm.call_tools(("find_tools", {"query": "echo text back unchanged"}))
    llm.call_tools(("toy__echo", {"text": "deploy done"}))
    llm.reply("Echoed.")

    reply = await agent_for(llm).run(question, big_catalog(catalog), as_user(services))

    first, second, third = llm.requests
    assert "toy__echo" not in offered(first)
    assert offered(second)[: len(offered(first))] == offered(first)  # appended: the start stays cached
    assert "toy__echo" in offered(second)
    assert len(offered(second)) <= 128
    found = tool_messages(second)[0]
    assert found.startswith("Added ")
    assert "- toy__echo: Return the text unchanged." in found.splitlines()
    assert offered(third) == offered(second)
    assert [(p.call.name, p.state) for p in reply.calls] == [("toy__echo", "done")]  # find_tools is ours


async def test_a_tool_in_the_catalog_but_not_offered_runs_through_the_same_checks(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    question = [{"role": "user", "content": "list my github pull requests"}]
    asked: list[str] = []

    async def deny(call: ToolCall) -> bool:
        asked.append(call.name)
        return False

    llm.call_tools(("toy__echo", {"text": "hi"}), ("toy__echo", {"text": 5}), ("toy__pid", {}))
    llm.reply("Done.")
    reply = await agent_for(llm).run(question, big_catalog(catalog), as_user(services), ask_approval=deny)

    assert not {"toy__echo", "toy__pid"} & set(offered(llm.requests[0]))
    assert [p.state for p in reply.calls] == ["done", "failed", "denied"]
    assert asked == ["toy__pid"]  # the approval rule, as for an offered tool
    results = tool_messages(llm.requests[1])
    assert results[0] == "hi"
    assert "text" in results[1]  # argument validation, as for an offered tool


async def test_a_name_not_in_the_catalog_still_fails_when_tools_are_preselected(
    services: Services, catalog: list[CatalogEntry], llm: FakeOpenAI, agent_for: AgentFactory
) -> None:
    llm.call_tools(("nope__missing", {}))
    llm.reply("Sorry.")
    reply = await agent_for(llm).run(QUESTION, big_catalog(catalog), as_user(services))

    assert [p.state for p in reply.calls] == ["failed"]
    assert tool_messages(llm.requests[1]) == ["Error: There is no tool named “nope__missing”."]
