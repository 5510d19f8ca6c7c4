"""JSON written into and read from json/jsonb columns: the same values the standard library
would write and read."""

from __future__ import annotations

import json

import pytest
from leadflow.db import dump_json, load_json

VALUES = [
    {"fit": 95, "reasons": ["title: vp", "size: 200-999"], "weights": {"a": 0.25}},
    {"nested": {"list": [1, None, True, "é", "\u2028"]}},
    {1: "an integer key becomes a string, as json.dumps writes it"},
    {"beyond 64 bits": 2**70, "negative": -(2**70)},
    [],
]


@pytest.mark.parametrize("value", VALUES)
def test_json_columns_get_what_the_standard_library_would_write(value: object):
    assert json.loads(dump_json(value)) == json.loads(json.dumps(value))


def test_what_json_cannot_hold_is_still_refused():
    with pytest.raises(TypeError):
        dump_json({"x": object()})


@pytest.mark.parametrize(
    "text",
    [
        *(json.dumps(value) for value in VALUES),
        '{"id": 9223372036854775807, "beyond": 9223372036854775808, "far": -18446744073709551617}',
        '{"digits in a string": "12345678901234567890", "float": 1.5e300}',
        '{"ż": 123456789012345678901, "źdźbło": [-98765432109876543210, "ą1"]}',
        '{"eighteen digits": 123456789012345678, "next to letters": "a1234567890123456789b"}',
    ],
)
def test_json_columns_read_what_the_standard_library_would_read(text: str):
    assert load_json(text) == json.loads(text)
    assert [type(v) for v in _leaves(load_json(text))] == [
        type(v) for v in _leaves(json.loads(text))
    ]


def _leaves(value: object) -> list:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]
