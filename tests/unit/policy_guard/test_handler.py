"""PolicyGuard handler (guard.handler), invoked from template.yaml as `stagewarden invoke` runs it, against mock_aws."""

from __future__ import annotations

import json

import boto3
import pytest

from stagewarden.invoke import function_spec, invoke
from tests.helpers import ROOT, drain, seed_policy_in_process, subscribe_queue

SCHEDULED = json.loads((ROOT / "events" / "policy_guard_scheduled.json").read_text())
CHANGED = json.loads((ROOT / "events" / "policy_guard_policy_changed.json").read_text())


def run(stack, event):
    return invoke(function_spec(ROOT / "template.yaml", "PolicyGuardFunction", stack), event)


def test_scenario_valid_policy_publishes_nothing(stack, example_policy_path) -> None:
    # Given the example policy in the policy bucket and a subscriber on the alerts topic
    seed_policy_in_process(stack, example_policy_path)
    inbox = subscribe_queue(stack)

    # When the hourly check runs
    result = run(stack, SCHEDULED)

    # Then it reports the stages and nothing reaches the subscriber
    assert result["valid"] and result["stages"]["prod-discovery"] == "enforce"
    assert drain(inbox) == []


def test_scenario_invalid_policy_raises_one_critical_alert_per_version(stack, tmp_path) -> None:
    # Given a broken policy pushed to the policy bucket
    broken = tmp_path / "policy.yaml"
    broken.write_text("framework: two-stage\nstages: {final-prod: {break_glass: {max_duration_minutes: 900}}}\n")
    seed_policy_in_process(stack, broken)
    inbox = subscribe_queue(stack)

    # When the change event and then the hourly check run
    first = run(stack, CHANGED)
    second = run(stack, SCHEDULED)

    # Then exactly one critical policy.invalid finding reaches the subscriber, naming the field
    assert not first["valid"] and first["published"] and second["published"] is False
    messages = drain(inbox)
    assert len(messages) == 1
    assert messages[0]["rule"] == "policy.invalid" and messages[0]["severity"] == "critical"
    assert "stages.final-prod.break_glass.max_duration_minutes: 900 is above the 12 hour limit" in messages[0]["evidence"]["errors"][0]
    # and the occurrence count is in the state table
    table = stack.refs["StateTable"]
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    assert [i["count"]["N"] for i in items] == ["2"]


def test_scenario_missing_policy_object_is_an_alert_not_a_crash(stack) -> None:
    inbox = subscribe_queue(stack)

    result = run(stack, SCHEDULED)

    assert not result["valid"] and "NoSuchKey" in result["errors"][0]
    assert [m["rule"] for m in drain(inbox)] == ["policy.invalid"]


@pytest.mark.parametrize(
    "event, part",
    [({}, "event: not an EventBridge event"), ({"detail-type": "AWS API Call via CloudTrail"}, "event.detail-type: unsupported")],
)
def test_malformed_events_are_refused_naming_the_part_and_nothing_is_published(stack, example_policy_path, event, part) -> None:
    seed_policy_in_process(stack, example_policy_path)
    inbox = subscribe_queue(stack)

    with pytest.raises(ValueError, match=part):
        run(stack, event)

    assert drain(inbox) == []


def test_the_template_gives_the_handler_its_resources(stack) -> None:
    spec = function_spec(ROOT / "template.yaml", "PolicyGuardFunction", stack)

    assert spec.environment["STAGEWARDEN_ALERTS_TOPIC_ARN"] == stack.refs["AlertsTopic"]
    assert spec.environment["STAGEWARDEN_POLICY_LOCATION"] == f"s3://{stack.refs['PolicyBucket']}/policy.yaml"
    assert spec.environment["POWERTOOLS_SERVICE_NAME"] == "policy-guard"
    assert spec.layer_dirs == [ROOT / "layers" / "stage_policy/"]
