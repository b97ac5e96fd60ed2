"""How well the agent's tool preselection finds the right tool in a large catalog.

Run: ``.venv/bin/python bench/tool_selection.py [--above N] [--max-tools N] [-v]``

The catalog is real servers' published tool lists (``bench/data/catalogs/*.json``: name,
title, description and inputSchema exactly as each server's ``tools/list`` gives them; each
file names its source), put under one person's connections as the registry names them
(``<server>__<tool>``). ``bench/data/tool_requests.tsv`` holds requests as a person would write
them in Slack, each labelled with the tool that answers it.

For each request: the rank of the right tool when the request is the query (as when it is the
newest message of the thread), recall@k for k = 5, 10, 20, whether the preselection offers it
(``AGENT_TOOL_PRESELECT_ABOVE`` tools minus ``find_tools``' place), and whether it is reachable
in the turn: offered, or added by one ``find_tools`` call whose query is the request text.
Targets (issue 13): recall@10 ≥ 0.9, reachable ≥ 0.99.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_core.models import CatalogEntry
from mcp_core.settings import MAX_AGENT_TOOLS, TOOL_PRESELECT_ABOVE
from mcp_core.tool_catalog import function_name, tool_info
from mcp_core.tool_selection import ToolIndex, find_more, preselect

DATA = Path(__file__).resolve().parent / "data"
KS = (5, 10, 20)


def load_catalog() -> list[CatalogEntry]:
    """Every server's tools as one person's catalog, under the registry's function names."""
    import mcp_types as types

    catalog: list[CatalogEntry] = []
    taken: set[str] = set()
    for path in sorted((DATA / "catalogs").glob("*.json")):
        server = json.loads(path.read_text(encoding="utf-8"))
        connection_id = uuid.uuid5(uuid.NAMESPACE_URL, server["server"])
        for raw in server["tools"]:
            info = tool_info(types.Tool.model_validate(raw))
            name = function_name(server["server"], info.name, taken)
            taken.add(name)
            entry = CatalogEntry(
                name=name, connection_id=connection_id, connection_name=server["server"], tool=info
            )
            catalog.append(entry)
    return catalog


def load_requests() -> list[tuple[str, str]]:
    rows = []
    for line in (DATA / "tool_requests.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            request, tool = line.split("\t")
            rows.append((request, tool))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--above", type=int, default=TOOL_PRESELECT_ABOVE, help="AGENT_TOOL_PRESELECT_ABOVE")
    parser.add_argument("--max-tools", type=int, default=MAX_AGENT_TOOLS, help="AGENT_MAX_TOOLS")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every request's rank")
    options = parser.parse_args()

    catalog = load_catalog()
    requests = load_requests()
    names = {entry.name for entry in catalog}
    unknown = [tool for _, tool in requests if tool not in names]
    if unknown:
        raise SystemExit(f"labels not in the catalog: {unknown}")

    started = time.perf_counter()
    index = ToolIndex(catalog)
    build_ms = (time.perf_counter() - started) * 1000

    ranks: list[int] = []
    offered_hits = reachable_hits = 0
    query_ms: list[float] = []
    misses: list[str] = []
    for request, tool in requests:
        started = time.perf_counter()
        order = index.ranked(request)
        query_ms.append((time.perf_counter() - started) * 1000)
        rank = 1 + [index.entries[p].name for p in order].index(tool)
        ranks.append(rank)
        chosen = preselect(catalog, request, max_tools=options.max_tools, above=options.above)
        offered = tool in {entry.name for entry in chosen.offered}
        room = options.max_tools - len(chosen.offered) - 1
        added = find_more(catalog, request, chosen.offered, room=room) if chosen.searching else []
        reachable = offered or tool in {entry.name for entry in added}
        offered_hits += offered
        reachable_hits += reachable
        if options.verbose or rank > 10:
            state = "offered" if offered else "reachable" if reachable else "LOST"
            misses.append(f"  rank {rank:3}  {state:9}  {tool:45} {request}")

    total = len(requests)
    servers = sorted({entry.connection_name for entry in catalog})
    print(f"catalog: {len(catalog)} tools from {len(servers)} servers ({', '.join(servers)})")
    print(f"requests: {total}; above {options.above} tools the preselection offers {options.above - 1}")
    print(f"and find_tools (at most {options.max_tools} tools per request)")
    print()
    print("| Measure | Value |")
    print("|---|---:|")
    for k in KS:
        hits = sum(rank <= k for rank in ranks)
        print(f"| recall@{k} | {hits / total:.3f} ({hits}/{total}) |")
    print(f"| offered by the preselection | {offered_hits / total:.3f} ({offered_hits}/{total}) |")
    print(f"| reachable with one find_tools | {reachable_hits / total:.3f} ({reachable_hits}/{total}) |")
    print(f"| median rank | {statistics.median(ranks):g} |")
    print(f"| index build | {build_ms:.2f} ms |")
    print(f"| query (median) | {statistics.median(query_ms):.3f} ms |")
    if misses:
        print("\nrequests whose tool ranked below 10:" if not options.verbose else "\nevery request:")
        print("\n".join(misses))


if __name__ == "__main__":
    main()
