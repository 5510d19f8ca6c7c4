"""A policy as a document: its YAML text validated with each problem's path and line, the JSON
form a published version travels in, and what changed between two versions."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from leadflow.contracts.policy import Policy, PolicyError, _dotted, _reason
from leadflow.contracts.yaml_lines import line_at as _line_of
from leadflow.contracts.yaml_lines import lines_by_path as _lines

ROOT = "(policy)"  # the path of a problem with the document as a whole


@dataclass(frozen=True)
class PolicyProblem:
    """One reason a policy is refused: where (a dotted path and a 1-based line, when known)
    and why."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        at = f" (line {self.line})" if self.line is not None else ""
        return f"{self.path}: {self.message}{at}"


class PolicyDocumentError(PolicyError):
    """A policy text refused; `located` lists every problem with its line (`problems`, as
    `PolicyError` has them, lists the same as (path, reason))."""

    def __init__(self, source: str, located: list[PolicyProblem]) -> None:
        listing = "\n".join(f"  {problem}" for problem in located)
        super().__init__(f"{source} is invalid:\n{listing}", [(p.path, p.message) for p in located])
        self.located = located


@dataclass(frozen=True)
class PolicyDocument:
    """A valid policy with the text it was written in (YAML, comments kept) and its JSON form."""

    policy: Policy
    text: str
    document: dict[str, Any]


def as_document(policy: Policy) -> dict[str, Any]:
    """The policy as JSON values, the form stored and published; `Policy.model_validate` of it
    gives the same policy back."""
    return policy.model_dump(mode="json")


def parse_policy(text: str, source: str = "policy") -> PolicyDocument:
    """Validate a policy written as YAML (JSON is YAML too); raises PolicyDocumentError naming
    each problem's path and line. A JSON text is kept as the YAML of the same document, so that
    every stored version reads, and diffs, alike."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        problem = PolicyProblem(ROOT, f"not valid YAML: {reason}", line)
        raise PolicyDocumentError(source, [problem]) from None
    except RecursionError:
        problem = PolicyProblem(ROOT, "not a policy: nested too deeply", 1)
        raise PolicyDocumentError(source, [problem]) from None
    if not isinstance(data, dict):
        raise PolicyDocumentError(
            source, [PolicyProblem(ROOT, "must be a mapping of policy sections", 1)]
        )
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        lines = _lines(node)
        located = [
            PolicyProblem(_dotted(e["loc"]), _reason(e), _line_of(lines, e["loc"]))
            for e in exc.errors()
        ]
        raise PolicyDocumentError(source, located) from None
    if text.lstrip().startswith("{"):
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return PolicyDocument(policy, text, as_document(policy))


def read_policy_file(path: str | Path) -> PolicyDocument:
    """A policy file read and validated as `parse_policy` does; raises PolicyError."""
    source = f"policy file {str(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{source} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{source} cannot be read: {exc}") from None
    return parse_policy(text, source)


def line_of(text: str, *path: str | int) -> int | None:
    """The 1-based line where `path` (or the deepest part of it the text has) is written."""
    try:
        return _line_of(_lines(yaml.compose(text, Loader=yaml.SafeLoader)), path)
    except (yaml.YAMLError, RecursionError):
        return None


# --- what changed between two versions ---------------------------------------------------------


@dataclass(frozen=True)
class PathChange:
    """One value that differs between two policies: added (before None), removed (after None)
    or changed, at its dotted path."""

    path: str
    before: Any
    after: Any


def changed_paths(before: dict[str, Any], after: dict[str, Any]) -> list[PathChange]:
    """Every leaf value that differs between two policy documents, in path order; a list is a
    value of its own (a changed list of industries is one change)."""
    changes: list[PathChange] = []

    def compare(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(a.keys() | b.keys(), key=str):
                here = f"{path}.{key}" if path else str(key)
                compare(a.get(key), b.get(key), here)
        elif a != b:
            changes.append(PathChange(path or ROOT, a, b))

    compare(before, after, "")
    return changes


def text_diff(before: str, after: str, before_name: str, after_name: str) -> str:
    """A unified diff of two policy texts, as `diff -u` prints it."""
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=before_name,
            tofile=after_name,
        )
    )
