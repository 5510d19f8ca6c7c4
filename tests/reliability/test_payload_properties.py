"""Properties of the models every byte from outside goes through, checked by hypothesis: whatever
arrives, parsing either gives a model or raises pydantic's ValidationError (a ValueError), the
one error the consumer loop turns into a dead letter and the HTTP layer into a 422. Any other
exception (TypeError, RecursionError, UnicodeDecodeError...) would be a crash or a 500."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leadflow.contracts.events import PAYLOAD_TYPES, CloudEvent, make_event
from leadflow_ingest.schemas import LeadIn
from pydantic import ValidationError
from support.harness import QUALIFIED_LEAD, sample_mql

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
lead_fields = st.sampled_from(sorted(QUALIFIED_LEAD) + ["phone", "external_id", "consent", "x"])


@PROPERTY
@given(st.binary(max_size=2048))
def test_any_bytes_are_a_cloudevent_or_a_value_error(raw: bytes):
    try:
        event = CloudEvent.from_bytes(raw)
    except ValueError:
        return
    assert event.specversion == "1.0"


@PROPERTY
@given(st.sampled_from(sorted(PAYLOAD_TYPES)), json_values)
def test_any_json_as_data_of_any_event_type_is_a_payload_or_a_validation_error(kind, data):
    envelope = {
        "specversion": "1.0",
        "id": "3f1c4b9e-8d7a-4e2b-9c1d-2a3b4c5d6e7f",
        "source": "fuzz",
        "type": kind,
        "time": "2026-11-30T12:00:00Z",
        "subject": "x",
        "data": data if isinstance(data, dict) else {"value": data},
    }
    event = CloudEvent.from_bytes(json.dumps(envelope).encode())
    try:
        payload = event.payload()
    except ValidationError:
        return
    assert payload.type == kind


@PROPERTY
@given(st.dictionaries(lead_fields, json_values, max_size=8))
def test_any_json_object_is_a_lead_or_a_validation_error(body):
    try:
        lead = LeadIn.model_validate({**QUALIFIED_LEAD, **body})
    except ValidationError as exc:
        for error in exc.errors():  # every error names the field it is about
            named = str(error["msg"]).split()[0].split(".")[0]
            assert error["loc"] or named in {**QUALIFIED_LEAD, **body}, error
        return
    assert lead.email


@PROPERTY
@given(st.text(max_size=200), st.integers(min_value=0, max_value=10_000))
def test_a_valid_payload_survives_the_wire_unchanged(name, n):
    mql = sample_mql(n).model_copy(update={"email": f"p{n}@example.com"})
    mql = mql.model_copy(update={"company": mql.company.model_copy(update={"name": name})})
    again = CloudEvent.from_bytes(make_event(mql, source="fuzz").to_bytes()).payload()
    assert again == mql


@pytest.mark.parametrize("depth", [100, 10_000, 200_000])
def test_deeply_nested_json_is_a_validation_error_not_a_recursion_error(depth: int):
    raw = b'{"data": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(ValueError):
        CloudEvent.from_bytes(raw)
    with pytest.raises(ValueError):
        LeadIn.model_validate_json(b"[" * depth + b"]" * depth)
