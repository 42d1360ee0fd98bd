"""PolicyGuard handler (guard.handler), invoked from template.yaml as `stagewarden invoke` runs it, against mock_aws."""

from __future__ import annotations

import json

import boto3
import pytest

from stage_policy import keys
from stage_policy.events import EventError
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
    assert dedup_counts(stack) == ["2"]


def test_scenario_missing_policy_object_is_an_alert_not_a_crash(stack) -> None:
    inbox = subscribe_queue(stack)

    result = run(stack, SCHEDULED)

    assert not result["valid"] and "NoSuchKey" in result["errors"][0]
    assert [m["rule"] for m in drain(inbox)] == ["policy.invalid"]


@pytest.mark.parametrize(
    "event, part, problem",
    [
        ({}, "event.detail-type", "is required (not an EventBridge event)"),
        ({"detail-type": "AWS API Call via CloudTrail"}, "event.detail-type", "unsupported 'AWS API Call via CloudTrail'"),
        ({**SCHEDULED, "id": None}, "event.id", "must be a string"),
        ([SCHEDULED], "event", "not an EventBridge event"),
    ],
)
def test_malformed_events_are_refused_naming_the_part_and_nothing_is_published(stack, example_policy_path, event, part, problem) -> None:
    # Given a valid policy, a subscriber, and an event that is not what the function's rules deliver
    seed_policy_in_process(stack, example_policy_path)
    inbox = subscribe_queue(stack)

    # When the function is invoked with it, it raises (Lambda retries, then the function's DLQ)
    with pytest.raises(EventError) as raised:
        run(stack, event)

    # Then the error names the part, and nothing was published or remembered as processed
    assert raised.value.part == part and problem in raised.value.problem
    assert str(raised.value).startswith(f"{part}: ")
    assert drain(inbox) == []
    assert boto3.client("dynamodb").scan(TableName=stack.refs["StateTable"])["Items"] == []


@pytest.mark.parametrize("event", [SCHEDULED, CHANGED], ids=["scheduled", "policy-changed"])
def test_scenario_valid_policy_publishes_nothing_on_either_trigger(stack, example_policy_path, event) -> None:
    # Given the example policy and a subscriber on the alerts topic
    seed_policy_in_process(stack, example_policy_path)
    inbox = subscribe_queue(stack)

    # When either trigger runs the check
    result = run(stack, event)

    # Then the policy is reported valid, no finding exists, nothing is published and no incident is counted
    assert result["valid"] and result["finding"] is None and result["errors"] == []
    assert result["trigger"] == event["detail-type"] and "published" not in result
    assert drain(inbox) == []
    assert dedup_counts(stack) == []


def test_scenario_the_same_scheduled_event_twice_publishes_one_finding(stack, tmp_path) -> None:
    # Given a broken policy and a subscriber on the alerts topic
    broken = tmp_path / "policy.yaml"
    broken.write_text("stages: 3\n")
    seed_policy_in_process(stack, broken)
    inbox = subscribe_queue(stack)

    # When EventBridge delivers the same scheduled event twice (an async retry, a redrive)
    first = run(stack, SCHEDULED)
    second = run(stack, SCHEDULED)

    # Then one finding reaches the subscriber
    messages = drain(inbox)
    assert [m["rule"] for m in messages] == ["policy.invalid"]
    # and the replay returned the first run's result without checking again:
    # the publisher counted one occurrence, not a suppressed repeat
    assert first["published"] is True and second == first
    assert dedup_counts(stack) == ["1"]


def test_scenario_a_new_event_checks_again(stack, tmp_path) -> None:
    # Given a broken policy that was already reported once
    broken = tmp_path / "policy.yaml"
    broken.write_text("stages: 3\n")
    seed_policy_in_process(stack, broken)
    inbox = subscribe_queue(stack)
    run(stack, SCHEDULED)

    # When the next hourly event (a new id) arrives
    later = run(stack, {**SCHEDULED, "id": "0f6b2c1e-8a1d-4f3e-9c2b-5d4e3f2a1b0c", "time": "2026-11-22T08:00:00Z"})

    # Then it is checked again: the incident is counted, and the dedup window keeps the subscriber at one alert
    assert later["published"] is False
    assert dedup_counts(stack) == ["2"]
    assert len(drain(inbox)) == 1


def test_the_handler_declares_what_it_uses() -> None:
    from guard.handler import USES

    from stage_policy.executor import Executor
    from stage_policy.publish import FindingPublisher
    from stage_policy.runtime import IDEMPOTENCY_PERMISSIONS
    from stage_policy.store import PolicyStore

    # the guard never acts: no executor, so no audit-ledger write permission either
    assert {PolicyStore, FindingPublisher} <= set(USES) and Executor not in USES
    assert all(isinstance(cls, type) and cls.permissions for cls in USES)
    assert set(IDEMPOTENCY_PERMISSIONS) <= {a for cls in USES for a in cls.permissions}


def test_the_template_gives_the_handler_its_resources(stack) -> None:
    spec = function_spec(ROOT / "template.yaml", "PolicyGuardFunction", stack)

    assert spec.environment["STAGEWARDEN_ALERTS_TOPIC_ARN"] == stack.refs["AlertsTopic"]
    assert spec.environment["STAGEWARDEN_POLICY_LOCATION"] == f"s3://{stack.refs['PolicyBucket']}/policy.yaml"
    assert spec.environment["POWERTOOLS_SERVICE_NAME"] == "policy-guard"
    assert spec.layer_dirs == [ROOT / "layers" / "stage_policy/"]
    assert (spec.module, spec.handler) == ("guard.handler", "lambda_handler")


def dedup_counts(stack) -> list[str]:
    """The occurrence counts of the alert incidents in the state table (replay-safety records left out)."""
    items = boto3.client("dynamodb").scan(TableName=stack.refs["StateTable"])["Items"]
    return [i["count"]["N"] for i in items if i["pk"]["S"].startswith(keys.alert_dedup("")["pk"]["S"])]
