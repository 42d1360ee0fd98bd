"""Findings by rule and severity: the metric the operations dashboard plots (FindingsByRule, EMF)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from stage_policy.findings import Finding
from stage_policy.model import Alerts
from stage_policy.runtime import Runtime


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        sns, sqs, ddb = boto3.client("sns"), boto3.client("sqs"), boto3.client("dynamodb")
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        ddb.create_table(
            TableName="state", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        )
        for name, value in {"POLICY_LOCATION": "s3://policy/policy.yaml", "ALERTS_TOPIC_ARN": topic,
                            "STATE_TABLE": "state", "AUDIT_TABLE": "audit"}.items():
            monkeypatch.setenv("STAGEWARDEN_" + name, value)
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "exfiltration")
        yield {"sqs": sqs, "queue": url}


def finding(**overrides) -> Finding:
    values = dict(rule="exfil.bulk-download", severity="high", stage="prod", resource="arn:aws:s3:::acme-prod-data",
                  principal="arn:aws:iam::111111111111:role/Notebook", summary="1,200 objects in 10 minutes")
    values.update(overrides)
    return Finding(**values)


#: stage_policy.observability is imported inside the tests, as the handlers do: its Metrics singleton reads
#: POWERTOOLS_METRICS_NAMESPACE when it is built, which the conftest sets per test, not at collection
FINDINGS_METRIC = "FindingsByRule"


def emf_lines(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"_aws"' in line]
    return [line for line in lines if any(m["Name"] == FINDINGS_METRIC for d in line["_aws"]["CloudWatchMetrics"]
                                          for m in d["Metrics"])]


def test_every_finding_a_runtime_publishes_is_one_data_point_by_rule_and_severity(aws, capsys) -> None:
    from stage_policy.observability import FINDINGS_METRIC as name

    assert name == FINDINGS_METRIC
    # Given a function's runtime (its publisher, as every handler builds it) and alerts from high up
    publish = Runtime().publish(policy=type("P", (), {"alerts": Alerts(min_severity="high")})())

    # When it publishes a high bulk download, a repeat of it (deduplicated) and a medium copy-out (below min_severity)
    publish(finding())
    publish(finding())
    publish(finding(rule="exfil.copy-out", severity="medium", resource="arn:aws:s3:::acme-prod-other"))

    # Then one message reached the topic's subscriber...
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["rule"] for m in messages] == ["exfil.bulk-download"]
    # ...and each of the three decided findings is one EMF data point with its rule, severity and service
    points = emf_lines(capsys.readouterr().out)
    assert [(p["rule"], p["severity"], p["service"], p[FINDINGS_METRIC]) for p in points] == [
        ("exfil.bulk-download", "high", "exfiltration", [1.0]),
        ("exfil.bulk-download", "high", "exfiltration", [1.0]),
        ("exfil.copy-out", "medium", "exfiltration", [1.0]),
    ]
    for point in points:
        directive = point["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "StagewardenTests"  # POWERTOOLS_METRICS_NAMESPACE (the template: Stagewarden)
        assert sorted(directive["Dimensions"][0]) == ["rule", "service", "severity"]
        assert directive["Metrics"] == [{"Name": FINDINGS_METRIC, "Unit": "Count"}]


def test_no_data_point_is_printed_where_powertools_metrics_are_off(aws, capsys, monkeypatch) -> None:
    # Given metrics turned off, as `stagewarden local poll`, the demo and the alert CLI run functions
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    publish = Runtime().publish(policy=type("P", (), {"alerts": Alerts()})())

    # When a finding is published
    publish(finding())

    # Then it reaches the topic's subscriber and nothing is printed (the CLI's standard output stays its own)
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["rule"] for m in messages] == ["exfil.bulk-download"]
    assert capsys.readouterr().out == ""


def test_a_handler_counts_its_finding_and_stagewarden_invoke_keeps_it_off_standard_output(stack, tmp_path, capsys) -> None:
    from stagewarden.invoke import function_spec, invoke
    from tests.helpers import ROOT, drain, seed_policy_in_process, subscribe_queue

    # Given a broken policy in the policy bucket and a subscriber on the alerts topic
    broken = tmp_path / "policy.yaml"
    broken.write_text("framework: two-stage\nstages: {final-prod: {break_glass: {max_duration_minutes: 900}}}\n")
    seed_policy_in_process(stack, broken)
    inbox = subscribe_queue(stack)

    # When PolicyGuardFunction runs from template.yaml as `stagewarden invoke` runs it
    event = json.loads((ROOT / "events" / "policy_guard_scheduled.json").read_text())
    result = invoke(function_spec(ROOT / "template.yaml", "PolicyGuardFunction", stack), event)

    # Then the finding reaches the subscriber, and its data point (in the template's namespace, one per stack)
    # is printed with the function's other output on standard error, as `sam local invoke` does; stdout stays empty
    assert not result["valid"] and [m["rule"] for m in drain(inbox)] == ["policy.invalid"]
    captured = capsys.readouterr()
    assert captured.out == ""
    points = emf_lines(captured.err)
    assert [(p["rule"], p["severity"], p["service"]) for p in points] == [("policy.invalid", "critical", "policy-guard")]
    assert points[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Stagewarden/" + stack.stack_name
