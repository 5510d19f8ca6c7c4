"""A policy text is validated with each problem's path and line, and two versions compare by the
values that changed and by their texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from leadflow.contracts.policy import Policy, default_policy
from leadflow.contracts.policy_document import (
    PolicyDocumentError,
    as_document,
    changed_paths,
    line_of,
    parse_policy,
    read_policy_file,
    text_diff,
)
from leadflow_tools.cli import main

SHIPPED = Path(__file__).parents[2] / "shared/leadflow/contracts/policy_default.yaml"
TEXT = SHIPPED.read_text()


def line_with(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def refused(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(PolicyDocumentError) as caught:
        parse_policy(text)
    return [(p.path, p.line, p.message) for p in caught.value.located]


def test_the_shipped_policy_parses_to_the_default_policy_with_its_text_kept():
    parsed = parse_policy(TEXT)
    assert parsed.policy == default_policy()
    assert parsed.text == TEXT


def test_the_document_gives_the_same_policy_back():
    document = as_document(default_policy())
    assert Policy.model_validate(json.loads(json.dumps(document))) == default_policy()


def test_a_wrong_value_is_named_by_its_path_and_line():
    text = TEXT.replace("    fit_min: 70\n", "    fit_min: 170\n", 1)
    [(path, line, message)] = refused(text)
    assert (path, line) == ("scoring.mql.fit_min", line_with(text, "fit_min: 170"))
    assert "less than or equal to 100" in message


def test_every_problem_is_named_not_only_the_first():
    text = TEXT.replace("    fit_min: 70\n", "    fit_min: 170\n", 1).replace(
        "sal_acceptance: {limit: 24h", "sal_acceptance: {limit: 24", 1
    )
    assert [(path, line) for path, line, _ in refused(text)] == [
        ("scoring.mql.fit_min", line_with(text, "fit_min: 170")),
        ("slas.sal_acceptance.limit", line_with(text, "sal_acceptance: {limit: 24,")),
    ]


def test_an_unknown_field_is_named_where_it_is_written():
    text = TEXT.replace("    fit_min: 70\n", "    fit_min: 70\n    fit_minimum: 80\n", 1)
    [(path, line, message)] = refused(text)
    assert (path, line) == ("scoring.mql.fit_minimum", line_with(text, "fit_minimum"))
    assert "not permitted" in message


def test_a_missing_field_is_named_at_the_section_that_lacks_it():
    text = TEXT.replace("    fit_min: 70\n", "", 1)
    [(path, line, message)] = refused(text)
    assert (path, line) == ("scoring.mql.fit_min", line_with(text, "  mql:"))
    assert message == "Field required"


def test_text_that_is_not_yaml_names_the_line_it_breaks_on():
    [(path, line, message)] = refused("version: x\nscoring: [1,\n")
    assert (path, line) == ("(policy)", 3)
    assert message.startswith("not valid YAML")


def test_a_document_that_is_not_a_mapping_is_refused():
    assert refused("- just\n- a list\n") == [
        ("(policy)", 1, "must be a mapping of policy sections")
    ]


def test_a_json_policy_is_kept_as_the_yaml_of_the_same_document():
    parsed = parse_policy(json.dumps(as_document(default_policy())))
    assert parsed.policy == default_policy()
    assert parsed.text.startswith("version: 2026.11-default\nscoring:\n")


def test_line_of_finds_a_key_and_falls_back_to_its_section():
    assert line_of(TEXT, "version") == line_with(TEXT, 'version: "2026.11-default"')
    assert line_of(TEXT, "scoring", "mql", "no_such_field") == line_with(TEXT, "  mql:")


def test_changed_paths_lists_each_value_that_differs_in_path_order():
    before = {"version": "a", "scoring": {"mql": {"fit_min": 70, "roles": ["x"]}, "keep": 1}}
    after = {"version": "b", "scoring": {"mql": {"fit_min": 80, "roles": ["x", "y"]}, "new": 2}}
    assert [(c.path, c.before, c.after) for c in changed_paths(before, after)] == [
        ("scoring.keep", 1, None),
        ("scoring.mql.fit_min", 70, 80),
        ("scoring.mql.roles", ["x"], ["x", "y"]),
        ("scoring.new", None, 2),
        ("version", "a", "b"),
    ]
    assert changed_paths(before, before) == []


def test_text_diff_is_a_unified_diff_of_the_two_texts():
    diff = text_diff("a: 1\nb: 2\n", "a: 1\nb: 3\n", "version 1", "version 2")
    assert diff == "--- version 1\n+++ version 2\n@@ -1,2 +1,2 @@\n a: 1\n-b: 2\n+b: 3\n"


def test_policy_check_names_each_problem_with_its_line(tmp_path, capsys):
    text = TEXT.replace("    fit_min: 70\n", "    fit_min: 170\n", 1)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    assert main(["policy", "check", str(path)]) == 1
    err = capsys.readouterr().err
    line = line_with(text, "fit_min: 170")
    assert "  scoring.mql.fit_min: Input should be less than or equal to 100" in err
    assert f"(line {line})" in err
    assert read_policy_file(SHIPPED).policy == default_policy()
    assert main(["policy", "check", str(SHIPPED)]) == 0
