"""BreakGlassFunction from template.yaml under mock_aws: SQS batches of CloudTrail events, Scheduler payloads."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from warden.rules import canonical

from stage_policy import keys
from stagewarden import breakglass_events as ev
from stagewarden.invoke import function_spec, invoke
from tests.helpers import ROOT
from tests.unit.breakglass.conftest import ALICE, BASELINE, ONCALL, ROLE

EVENTS = ROOT / "events" / "breakglass"


def run(stack, event: dict) -> dict:
    return invoke(function_spec(ROOT / "template.yaml", "BreakGlassFunction", stack), event)


def sqs_sample(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.sqs.json").read_text())


def test_scenario_an_unapproved_change_arrives_through_the_queue_and_is_reverted(world) -> None:
    # Given the deployed function (DefaultRemediationMode=enforce) and the role's recorded baseline
    world.stack.parameters["DefaultRemediationMode"] = "enforce"
    run(world.stack, json.loads((EVENTS / "scheduler_sweep.json").read_text()))
    world.iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=json.dumps(ev.opened_trust(ALICE)))

    # When the queued CloudTrail event is handed to it
    result = run(world.stack, sqs_sample("update_assume_role_policy_unapproved"))

    # Then the batch succeeds, the trust is reverted, one critical alert, one audit item per action
    assert result == {"batchItemFailures": []}
    assert canonical(world.role()["trust"]) == canonical(BASELINE)
    assert [(f["rule"], f["severity"]) for f in world.findings()] == [("breakglass.refused", "critical")]
    audit = world.ddb.scan(TableName=world.audit_table)["Items"]
    assert [(i["action"]["S"], i["status"]["S"], i["mode"]["S"]) for i in audit] == [("revert-trust", "done", "enforce")]


def test_the_deploy_time_dry_run_ceiling_holds(world) -> None:
    run(world.stack, json.loads((EVENTS / "scheduler_sweep.json").read_text()))  # DefaultRemediationMode defaults to dry_run
    world.iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=json.dumps(ev.opened_trust(ALICE)))

    run(world.stack, sqs_sample("update_assume_role_policy_unapproved"))

    assert ALICE in json.dumps(world.role()["trust"])
    assert world.findings()[0]["action"].startswith("dry run: would set the trust policy")


def test_grants_close_in_every_mode_even_under_the_dry_run_ceiling(world) -> None:
    """Closing a grant Stagewarden opened is not remediation: dry_run must not leave grants open."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    grant = world.grant(minutes=30, now=now)
    payload = {"stagewarden": "breakglass-expire", "grant_id": grant.grant_id, "scheduled_time": grant.deadline,
               "execution_id": "exec-1"}

    result = run(world.stack, payload)  # the schedule's own firing, as Scheduler fills it in

    assert result["result"] == "expired" and canonical(world.role()["trust"]) == canonical(BASELINE)
    assert world.item(keys.breakglass_record(grant.grant_id))["status"]["S"] == "expired"


def test_a_redelivered_schedule_firing_returns_the_first_result_and_changes_nothing(world) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    grant = world.grant(minutes=30, now=now)
    payload = {"stagewarden": "breakglass-expire", "grant_id": grant.grant_id, "scheduled_time": grant.deadline,
               "execution_id": "exec-1"}
    first = run(world.stack, payload)
    world.findings()

    again = run(world.stack, payload)

    assert again == first and world.findings() == []


def test_the_sweep_payload_expires_overdue_grants(world) -> None:
    past = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    grant = world.grant(minutes=30, now=past)

    report = run(world.stack, json.loads((EVENTS / "scheduler_sweep.json").read_text()))

    assert report["expired"] == [grant.grant_id] and report["failed"] == []


def test_an_approved_session_arrives_through_the_queue_and_is_kept_for_the_review(world) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    grant = world.grant(minutes=60, now=now)
    event = ev.eventbridge(ev.assume_role(f"arn:aws:iam::123456789012:role/{ROLE}", "oncall@example.com",
                                          ev.session_identity("OnCallEngineer", "oncall@example.com"), now + timedelta(minutes=1)))

    result = run(world.stack, ev.sqs(event))

    assert result == {"batchItemFailures": []}
    record = world.item(keys.breakglass_record(grant.grant_id))
    assert len(record["sessions"]["L"]) == 1 and json.loads(record["doc"]["S"])["principal"] == ONCALL


def test_a_malformed_record_fails_alone(world) -> None:
    good = sqs_sample("console_login")["Records"][0]
    bad = {**good, "messageId": "poison-1", "body": "{not json"}

    result = run(world.stack, {"Records": [bad, good]})

    assert result == {"batchItemFailures": [{"itemIdentifier": "poison-1"}]}
    assert [f["rule"] for f in world.findings()] == ["breakglass.unapproved"]


@pytest.mark.parametrize("sample, path, value", [
    # found by the fuzzing property (CI, 2026-12-02): an object serialised into a string crashed caller_of with an
    # AttributeError ("'str' object has no attribute 'get'") instead of a typed rejection naming the field
    ("assume_role_unapproved", ("userIdentity", "sessionContext"), "json"),
    ("assume_role_unapproved", ("responseElements", "assumedRoleUser"), "json"),
    ("assume_role_unapproved", ("requestParameters",), "json"),
    ("tag_role_self_approved", ("requestParameters", "tags"), "json"),
    ("tag_role_self_approved", ("requestParameters", "tags"), ["Approver"]),
    ("console_login", ("sourceIPAddress",), {"S": "198.51.100.23"}),
])
def test_a_record_whose_field_has_another_shape_fails_alone_naming_it(world, sample, path, value) -> None:
    good = sqs_sample("console_login")["Records"][0]
    record = sqs_sample(sample)["Records"][0]
    body = json.loads(record["body"])
    parent = body["detail"]
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = json.dumps(parent[path[-1]]) if value == "json" else value
    bad = {**record, "messageId": "odd-1", "body": json.dumps(body)}

    result = run(world.stack, {"Records": [bad, good]})

    assert result == {"batchItemFailures": [{"itemIdentifier": "odd-1"}]}
    findings = world.findings()  # the good record's only: nothing decided on the odd one
    assert [(f["rule"], f["evidence"]["event_id"]) for f in findings] == [
        ("breakglass.unapproved", json.loads(good["body"])["detail"]["eventID"])]


def test_a_redelivered_event_neither_reacts_nor_realerts(world) -> None:
    run(world.stack, sqs_sample("console_login"))
    first = world.findings()

    run(world.stack, sqs_sample("console_login"))

    assert len(first) == 1 and world.findings() == []


@pytest.mark.parametrize("payload, part", [
    ({"stagewarden": "breakglass-expire"}, "event.grant_id"),
    ({"stagewarden": "breakglass-expire", "grant_id": "../../etc"}, "event.grant_id"),
    ({"stagewarden": "reboot"}, "event.stagewarden"),
    ([], "event"),
])
def test_a_malformed_scheduler_payload_is_refused_naming_the_part(world, payload, part) -> None:
    from stage_policy.events import EventError

    with pytest.raises(EventError) as error:
        run(world.stack, payload)

    assert error.value.part == part and world.all_items() == []


def test_every_sample_event_parses() -> None:
    from stage_policy.events import API_CALL, SIGN_IN, parse_eventbridge
    from warden.inputs import parse_trigger

    for path in sorted(EVENTS.glob("*.eventbridge.json")):
        assert parse_eventbridge(path.read_text(), (API_CALL, SIGN_IN)).detail.eventName
    for name in ("scheduler_expire", "scheduler_sweep"):
        assert parse_trigger(json.loads((EVENTS / f"{name}.json").read_text())).scheduled is not None
