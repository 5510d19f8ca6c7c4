"""Field names in problem+json come from the client's own keys: they must stay readable and
storable (an idempotent answer is kept in jsonb, which refuses NUL)."""

from leadflow.errors import field_path, validation_errors


def test_control_characters_in_a_key_are_escaped():
    assert field_path(["body", "items", 0, "a\x00b\n"]) == "items.0.a\\u0000b\\u000a"
    assert "\x00" not in field_path(["body", "\x00"])


def test_plain_keys_and_unicode_letters_are_kept():
    assert field_path(["body", "lead", "e-mail", "Łódź"]) == "lead.e-mail.Łódź"
    assert field_path(["body"]) == "body"


def test_validation_errors_carry_the_escaped_field():
    errors = validation_errors([{"loc": ("body", "x\x00"), "msg": "Extra inputs", "type": "x"}])
    assert errors == [{"field": "x\\u0000", "message": "Extra inputs"}]


def test_a_nul_in_a_nested_key_is_escaped_in_the_message_too():
    from leadflow.text import StorableModel
    from pydantic import ValidationError

    class Probe(StorableModel):
        source: dict

    try:
        Probe.model_validate({"source": {"a\x00b": "x\x00"}})
    except ValidationError as exc:
        errors = validation_errors(exc.errors())
    else:
        raise AssertionError("a NUL was accepted")
    assert errors and all("\x00" not in e["field"] + e["message"] for e in errors)
