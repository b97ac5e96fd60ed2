"""Which of a person's tools one model request offers, when there are too many to offer all.

OpenAI refuses a request with more than 128 tools (HTTP 400), some endpoints declare fewer,
and models choose worse well before that (published measurements put the knee at 30–50). So
above a threshold the agent offers the tools that rank best against the conversation, plus
``find_tools``: the model searches the rest with its own words and the matches are offered
from its next round on, never past the cap. A tool that was not offered but is in the catalog
still runs when the model names it (the agent's business, not this module's).

Ranking is lexical, Okapi BM25 over each tool's words: its name split at ``snake_case``,
``camelCase``, ``kebab-case`` and the ``__`` between connection and tool, its title, its
description and its parameter names. Words are lower-cased, a small stop-word list is dropped
and plural ``s``/``es`` endings are cut, so "issues" finds ``list_issues``.

Why our own ~40 lines of BM25 rather than a library: ``bm25s`` needs numpy and scipy (tens of
MB for a few hundred short documents) and ``rank-bm25`` needs numpy and has had no release
since 2022; neither tokenizes identifiers the way tool names need, which is most of the work
here. A catalog of 200 tools indexes in about a millisecond and a query scores in well under
one; the index is built once per catalog content (``index_for`` keeps the newest few) and
never per turn.
"""

from __future__ import annotations

import math
import re
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_core.models import CatalogEntry

__all__ = [
    "FIND_TOOLS",
    "FIND_TOOLS_RESULTS",
    "Preselection",
    "ToolIndex",
    "conversation_query",
    "find_more",
    "find_tools_spec",
    "found_text",
    "index_for",
    "preselect",
    "words",
]

FIND_TOOLS = "find_tools"
"""The meta tool's name; catalog names always hold ``__``, so it cannot collide with one."""
FIND_TOOLS_RESULTS = 10
"""Tools one ``find_tools`` call adds at most."""
QUERY_USER_MESSAGES = 3
"""Newest messages of the person that make the preselection's query."""
INDEX_CACHE_SIZE = 64
"""Catalogs whose index is kept (one per person active lately)."""
K1 = 1.2
B = 0.75
"""BM25's usual term-frequency saturation and length normalisation."""

_STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be by can could do for from get how i in is it me my of on or our please "
        "show that the this to us want we what which with would you your",
    )
)
_SAME_AS = {
    # Everyday words in Slack against the words tool descriptions use. General vocabulary of
    # software and chat, not tuned to one server: each maps a word to the words it stands for.
    "pr": ("pull", "request"),
    "prs": ("pull", "request"),
    "mr": ("pull", "request"),
    "repo": ("repository",),
    "folder": ("directory",),
    "dir": ("directory",),
    "readme": ("readme", "file", "content"),
    "db": ("database",),
    "remember": ("memory", "entity", "observation"),
    "memorize": ("memory", "entity", "observation"),
    "recall": ("memory", "search"),
    "forget": ("memory", "delete"),
    "note": ("memory", "observation"),
    "say": ("message",),
    "said": ("message",),
    "wrote": ("message",),
    "post": ("post", "message"),
    "whoami": ("authenticated", "user"),
    "logged": ("authenticated", "user"),
    "closed": ("close", "state"),
    "reopen": ("open", "state"),
}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z]{2})")
_WORD = re.compile(r"[A-Za-z0-9]+")


def words(text: str) -> list[str]:
    """Search terms of ``text``: identifiers split into words, lower-cased, stop words out,
    plurals cut (``listPullRequests`` → ``list pull request``)."""
    terms = []
    for token in _WORD.findall(_CAMEL.sub(" ", text).replace("_", " ")):
        term = token.lower()
        if term in _STOP_WORDS:
            continue
        if len(term) > 4 and term.endswith(("ches", "shes", "sses", "xes")):
            term = term[:-2]
        elif len(term) > 3 and term.endswith("s") and not term.endswith(("ss", "us", "is")):
            term = term[:-1]
        terms += _SAME_AS.get(term, (term,))
    return terms


def _document(entry: CatalogEntry) -> list[str]:
    tool = entry.tool
    properties = tool.input_schema.get("properties")
    parameters = " ".join(properties) if isinstance(properties, Mapping) else ""
    name = f"{entry.name} {tool.name}"  # the tool's own words count twice: they are what it does
    return words(f"{name} {tool.title or ''} {tool.description} {parameters}")


class ToolIndex:
    """BM25 over one catalog's tools; ``ranked`` gives catalog positions, best first."""

    def __init__(self, catalog: Sequence[CatalogEntry]) -> None:
        self.entries = tuple(catalog)
        self._counts = [Counter(_document(entry)) for entry in self.entries]
        self._lengths = [sum(counts.values()) for counts in self._counts]
        self._average = sum(self._lengths) / len(self._lengths) if self._lengths else 0.0
        frequency = Counter(term for counts in self._counts for term in counts)
        total = len(self.entries)
        self._idf = {t: math.log(1 + (total - n + 0.5) / (n + 0.5)) for t, n in frequency.items()}

    def scores(self, query: str) -> list[float]:
        """Each tool's BM25 score for ``query``, in catalog order (0 when no word matches)."""
        terms = [t for t in dict.fromkeys(words(query)) if t in self._idf]
        result = [0.0] * len(self.entries)
        for position, (counts, length) in enumerate(zip(self._counts, self._lengths, strict=True)):
            norm = K1 * (1 - B + B * length / self._average)
            for term in terms:
                if count := counts.get(term):
                    result[position] += self._idf[term] * count * (K1 + 1) / (count + norm)
        return result

    def ranked(self, query: str) -> list[int]:
        """Catalog positions, best match first; ties (and tools no word matches) keep catalog order."""
        scores = self.scores(query)
        return sorted(range(len(scores)), key=lambda position: -scores[position])


_indexes: OrderedDict[tuple[Any, ...], ToolIndex] = OrderedDict()


def _fingerprint(catalog: Sequence[CatalogEntry]) -> tuple[Any, ...]:
    def part(entry: CatalogEntry) -> tuple[Any, ...]:
        properties = entry.tool.input_schema.get("properties")
        names = tuple(properties) if isinstance(properties, Mapping) else ()
        return (entry.name, entry.tool.name, entry.tool.title, entry.tool.description, names)

    return tuple(part(entry) for entry in catalog)


def index_for(catalog: Sequence[CatalogEntry]) -> ToolIndex:
    """The index of ``catalog``, built once per catalog content and reused (newest few kept)."""
    key = _fingerprint(catalog)
    index = _indexes.get(key)
    if index is None:
        index = _indexes[key] = ToolIndex(catalog)
        while len(_indexes) > INDEX_CACHE_SIZE:
            _indexes.popitem(last=False)
    else:
        _indexes.move_to_end(key)
    return index


def conversation_query(messages: Sequence[Mapping[str, Any]]) -> str:
    """What the person asked lately: their newest messages' text, the query of the preselection."""
    said = [m.get("content") for m in messages if m.get("role") == "user"]
    return "\n".join(text for text in said[-QUERY_USER_MESSAGES:] if isinstance(text, str))


@dataclass(frozen=True)
class Preselection:
    """The tools a turn starts with; ``searching`` when ``find_tools`` is offered beside them."""

    offered: list[CatalogEntry]
    searching: bool


def preselect(catalog: Sequence[CatalogEntry], query: str, *, max_tools: int, above: int) -> Preselection:
    """All of ``catalog`` when it has at most ``min(above, max_tools)`` tools; else the best
    ``min(above, max_tools) - 1`` for ``query`` (in catalog order, so the tools array stays the
    same while the choice does), one place being ``find_tools``'s."""
    room = min(above, max_tools)
    if len(catalog) <= room:
        return Preselection(list(catalog), searching=False)
    index = index_for(catalog)
    chosen = sorted(index.ranked(query)[: max(room - 1, 0)])
    return Preselection([index.entries[position] for position in chosen], searching=True)


def find_more(
    catalog: Sequence[CatalogEntry], query: str, offered: Sequence[CatalogEntry], *, room: int
) -> list[CatalogEntry]:
    """Up to ``min(FIND_TOOLS_RESULTS, room)`` tools matching ``query`` that are not offered yet,
    best first; tools no word of the query matches are never added."""
    index = index_for(catalog)
    scores = index.scores(query)
    taken = {entry.name for entry in offered}
    found = [
        index.entries[position]
        for position in index.ranked(query)
        if scores[position] > 0 and index.entries[position].name not in taken
    ]
    return found[: max(min(FIND_TOOLS_RESULTS, room), 0)]


def find_tools_spec(catalog_size: int) -> dict[str, Any]:
    """The ``find_tools`` function as OpenAI sees it."""
    description = (
        f"Search the person's other tools ({catalog_size} in all; only some are offered now) by "
        f"keywords, e.g. “merge pull request” or “slack channel history”. Up to "
        f"{FIND_TOOLS_RESULTS} best matches become callable from your next step. Use it when "
        "no offered tool fits the request."
    )
    parameters = {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "What the tool should do, in words"}},
        "required": ["query"],
    }
    function = {"name": FIND_TOOLS, "description": description, "parameters": parameters}
    return {"type": "function", "function": function}


def found_text(query: str, added: Sequence[CatalogEntry], *, full: bool) -> str:
    """``find_tools``'s result for the model: the names it added, one line each."""
    if not added:
        why = "the request already has as many tools as it may" if full else "no other tool matches"
        return f"No tools added for “{query[:200]}”: {why}. Use the tools offered, or other words."
    lines = [f"Added {len(added)} tools, callable from your next step:"]
    for entry in added:
        summary = (entry.tool.description or entry.tool.title or entry.tool.name).strip().splitlines()
        lines.append(f"- {entry.name}: {(summary[0] if summary else '')[:160]}")
    return "\n".join(lines)
