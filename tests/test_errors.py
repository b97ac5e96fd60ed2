"""mcp_core.errors: the tree drawn in the module docstring is the tree of classes."""

from __future__ import annotations

import re

from mcp_core import errors


def drawn_tree() -> dict[str, int]:
    """Each class name drawn in the docstring, with its depth in the drawing."""
    drawn = {}
    for line in (errors.__doc__ or "").splitlines():
        if match := re.match(r"^\s*([│ ]*)(├── |└── )?([A-Z]\w+Error)\b", line):
            drawn[match.group(3)] = len(match.group(1)) // 4 + (1 if match.group(2) else 0)
    return drawn


def test_the_docstring_draws_every_exception_the_module_exports() -> None:
    exported = {name for name in errors.__all__ if isinstance(getattr(errors, name), type)}

    assert set(drawn_tree()) == exported


def test_each_class_is_drawn_under_its_base_class() -> None:
    drawn = drawn_tree()
    parents: list[str] = []
    for name, depth in drawn.items():
        del parents[depth:]
        if parents:
            assert getattr(errors, name).__bases__[0] is getattr(errors, parents[-1]), name
        parents.append(name)
