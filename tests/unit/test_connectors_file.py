"""The connectors file refused at start names the file, the path and the line of each problem,
found as the policy file's problems are found."""

from __future__ import annotations

import pytest
import yaml
from leadflow.contracts.connectors import ConnectorsError, load_connectors, parse_connectors
from leadflow.contracts.policy_document import line_of
from leadflow.contracts.yaml_lines import line_at, lines_of_text

CONNECTORS = """\
connectors:
  hubspot:
    outbound:
      enabled: true
      ownerz: {ola@example.com: "41001"}
    inbound:
      enabled: true
      properties:
        hs_lead_status:
          CONNECTED: {kind: status, status: workin}
  salesforce:
    outbound:
      api_version: "62"
  webhooks:
    - name: pipedrive
      signature: {header: X-Sig, secret_env: LEADFLOW_WEBHOOK_PIPEDRIVE_SECRET}
      record_id: data..id
      lead: {by: email, path: current.email}
      mappings:
        - value: current.type
          values: {call: {kind: attempt, channel: call}}
"""


def refusal(tmp_path, text: str) -> ConnectorsError:
    path = tmp_path / "connectors.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConnectorsError) as refused:
        load_connectors(path)
    return refused.value


def test_an_unknown_field_is_refused_naming_the_file_and_its_line(tmp_path):
    refused = refusal(tmp_path, CONNECTORS)
    message = str(refused)
    assert f"connectors file {str(tmp_path / 'connectors.yaml')!r} is invalid" in message
    assert "  line 5: connectors.hubspot.outbound.ownerz: Extra inputs are not permitted" in (
        message
    )


def test_each_bad_value_is_named_at_its_own_line(tmp_path):
    refused = refusal(tmp_path, CONNECTORS)
    lines = dict(zip((path for path, _ in refused.problems), refused.lines, strict=True))
    assert lines == {
        "hubspot.outbound.ownerz": 5,
        "hubspot.inbound.properties.hs_lead_status.CONNECTED.status": 10,
        "salesforce.outbound.api_version": 13,
        "webhooks.0.record_id": 17,
    }


def test_a_file_without_the_connectors_section_is_located_too(tmp_path):
    refused = refusal(tmp_path, "hubspot:\n  outbound:\n    enabled: true\n    lead_stats: X\n")
    assert refused.lines == [4]
    assert "line 4: connectors.hubspot.outbound.lead_stats" in str(refused)


def test_a_missing_field_is_named_where_its_section_starts(tmp_path):
    text = "connectors:\n  salesforce:\n    inbound:\n      enabled: true\n"
    refused = refusal(tmp_path, text)
    assert refused.problems[0][0] == "salesforce.inbound"
    assert refused.lines == [3]


def test_the_line_is_found_as_the_policy_file_finds_it():
    lines = lines_of_text(CONNECTORS)
    for path in (
        ("connectors", "salesforce", "outbound", "api_version"),
        ("connectors", "webhooks", 0),
    ):
        assert line_at(lines, path) == line_of(CONNECTORS, *path)


def test_a_valid_file_loads(tmp_path):
    path = tmp_path / "connectors.yaml"
    path.write_text("connectors:\n  hubspot:\n    outbound: {enabled: true}\n", encoding="utf-8")
    assert load_connectors(path).hubspot.outbound.enabled


def test_a_reason_the_policy_does_not_list_is_named_with_its_line():
    from leadflow.contracts.policy import default_policy
    from leadflow_ingest.domain.sales_reports import unknown_reasons

    text = (
        "connectors:\n"
        "  hubspot:\n"
        "    inbound:\n"
        "      enabled: true\n"
        "      properties:\n"
        "        hs_lead_status:\n"
        "          UNQUALIFIED: {kind: status, status: returned, reason: too_small}\n"
    )
    connectors = parse_connectors(yaml.safe_load(text))
    [problem] = unknown_reasons(connectors, default_policy().reasons, lines_of_text(text))
    assert problem.startswith(
        "line 7: connectors.hubspot.inbound.properties.hs_lead_status.UNQUALIFIED.reason: "
    )
