"""JSON written into json/jsonb columns: the same values the standard library would write."""

from __future__ import annotations

import json

import pytest
from leadflow.db import dump_json


@pytest.mark.parametrize(
    "value",
    [
        {"fit": 95, "reasons": ["title: vp", "size: 200-999"], "weights": {"a": 0.25}},
        {"nested": {"list": [1, None, True, "é", "\u2028"]}},
        {1: "an integer key becomes a string, as json.dumps writes it"},
        {"beyond 64 bits": 2**70, "negative": -(2**70)},
        [],
    ],
)
def test_json_columns_get_what_the_standard_library_would_write(value: object):
    assert json.loads(dump_json(value)) == json.loads(json.dumps(value))


def test_what_json_cannot_hold_is_still_refused():
    with pytest.raises(TypeError):
        dump_json({"x": object()})
