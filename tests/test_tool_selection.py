"""The preselection's ranking: identifiers split into words, the right tool first, the index
built once per catalog, find_tools adding only what is not offered yet."""

from __future__ import annotations

import uuid

from bench.tool_selection import load_catalog
from mcp_core import tool_selection
from mcp_core.models import CatalogEntry, ToolInfo
from mcp_core.tool_selection import conversation_query, find_more, index_for, preselect, words


def entry(name: str, description: str = "", **properties: dict) -> CatalogEntry:
    schema = {"type": "object", "properties": properties}
    tool = ToolInfo(name=name.split("__")[1], description=description, input_schema=schema)
    return CatalogEntry(name=name, connection_id=uuid.uuid4(), connection_name=name.split("__")[0], tool=tool)


def test_tool_names_split_at_snake_camel_kebab_case_and_the_connection_separator() -> None:
    assert words("gh__listPullRequests") == ["gh", "list", "pull", "request"]
    assert words("get-tiny-image search_issues HTTPServer") == [
        "tiny",
        "image",
        "search",
        "issue",
        "http",
        "server",
    ]


def test_everyday_words_find_the_words_tools_use() -> None:
    assert words("my PRs in the repo folder") == ["pull", "request", "repository", "directory"]


def test_the_tool_whose_name_description_or_parameters_match_ranks_first() -> None:
    catalog = [
        entry("gh__create_issue", "Open a new issue", title={}),
        entry("fs__read_file", "Read a file", path={}),
        entry("slack__post", "Send a message", channel_id={}),
    ]
    index = index_for(catalog)

    assert catalog[index.ranked("open an issue about the crash")[0]].name == "gh__create_issue"
    assert catalog[index.ranked("read notes.md")[0]].name == "fs__read_file"
    assert catalog[index.ranked("which channel_id is #general")[0]].name == "slack__post"


def test_the_index_is_built_once_per_catalog_content() -> None:
    catalog = load_catalog()

    assert index_for(catalog) is index_for(list(catalog))
    assert index_for(catalog[:-1]) is not index_for(catalog)


def test_above_the_threshold_the_best_tools_are_offered_in_catalog_order_with_room_for_find_tools() -> None:
    catalog = load_catalog()
    chosen = preselect(catalog, "merge pull request 12", max_tools=128, above=40)

    assert chosen.searching
    assert len(chosen.offered) == 39
    assert "github__merge_pull_request" in [e.name for e in chosen.offered]
    positions = [catalog.index(e) for e in chosen.offered]
    assert positions == sorted(positions)


def test_the_cap_wins_over_a_higher_threshold_and_a_small_catalog_is_offered_whole() -> None:
    catalog = load_catalog()

    assert len(preselect(catalog, "", max_tools=64, above=500).offered) == 63
    small = preselect(catalog[:30], "", max_tools=128, above=40)
    assert (small.offered, small.searching) == (catalog[:30], False)


def test_find_more_adds_only_matching_tools_not_offered_yet_and_never_past_the_room() -> None:
    catalog = load_catalog()
    offered = [e for e in catalog if e.name == "slack__slack_post_message"]

    found = find_more(catalog, "slack message", offered, room=3)
    assert len(found) == 3
    assert "slack__slack_post_message" not in [e.name for e in found]
    assert all("slack" in e.name or "message" in e.tool.description.lower() for e in found)
    assert find_more(catalog, "zzzz qqqq", offered, room=10) == []
    assert find_more(catalog, "slack", offered, room=0) == []


def test_the_query_is_what_the_person_wrote_lately() -> None:
    messages = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    messages.insert(3, {"role": "assistant", "content": "bot words"})

    assert conversation_query(messages) == "m2\nm3\nm4"


def test_find_tools_lists_the_names_it_added_one_line_each() -> None:
    added = [entry("gh__merge", "Merge a pull request.\nMore text."), entry("gh__close", "")]

    assert tool_selection.found_text("merge", added, full=False).splitlines() == [
        "Added 2 tools, callable from your next step:",
        "- gh__merge: Merge a pull request.",
        "- gh__close: close",
    ]
    assert "as many tools as it may" in tool_selection.found_text("x", [], full=True)
