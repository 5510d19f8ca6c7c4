"""Where a YAML document writes each of its keys and items, so that a refused file (the policy,
the connectors file, ingest's HubSpot mapping) names the line of every problem."""

from __future__ import annotations

from typing import Any

import yaml

Lines = dict[tuple[Any, ...], int]


def lines_by_path(node: yaml.Node | None) -> Lines:
    """The 1-based line of every key and item of a composed YAML document, by its path."""
    lines: Lines = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*path, key.value)
                lines[here] = key.start_mark.line + 1
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                here = (*path, index)
                lines[here] = item.start_mark.line + 1
                walk(item, here)

    if node is not None:
        lines[()] = node.start_mark.line + 1
        walk(node, ())
    return lines


def lines_of_text(text: str) -> Lines:
    """`lines_by_path` of a YAML text; empty when the text is not YAML."""
    try:
        return lines_by_path(yaml.compose(text, Loader=yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError):
        return {}


def line_at(lines: Lines, loc: tuple[int | str, ...]) -> int | None:
    """The line of the deepest part of `loc` (a pydantic error's location) the text has: a
    missing field is reported where the section that lacks it starts."""
    path = tuple(str(p) if not isinstance(p, int) else p for p in loc if p != "[key]")
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None
