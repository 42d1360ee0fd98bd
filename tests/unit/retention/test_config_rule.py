"""The AWS Config path: one evaluation per bucket through PutEvaluations; it reads only.

moto implements PutEvaluations only with TestMode=True and keeps nothing, so the sample invocations
carry the rdk's local result token ``TESTMODE`` (the function then sets TestMode) and these tests read
the evaluations from the request itself, captured on boto3's event hooks.
"""

from __future__ import annotations

import json

import boto3
import pytest

from stagewarden.invoke import function_spec, invoke
from tests.helpers import ROOT, drain
from tests.unit.retention.conftest import LAB, OTHER, PROD, RAW_30_TAMPERED, event, rules


@pytest.fixture
def sent() -> list[dict]:
    calls: list[dict] = []

    def capture(params, **_):
        calls.append(params)

    boto3._get_default_session().events.register("provide-client-params.config-service.PutEvaluations", capture)
    return calls


def run(stack, evt: dict):
    return invoke(function_spec(ROOT / "template.yaml", "RetentionFunction", stack), evt)


def change_event(bucket: str = LAB, **item) -> dict:
    evt = event("config_change.json")
    invoking = json.loads(evt["invokingEvent"])
    invoking["configurationItem"].update({"resourceId": bucket, "resourceName": bucket, **item})
    evt["invokingEvent"] = json.dumps(invoking)
    return evt


def test_scenario_a_drifted_lab_bucket_is_non_compliant_with_the_diff_as_annotation(lab, sent) -> None:
    boto3.client("s3").put_bucket_lifecycle_configuration(Bucket=LAB, LifecycleConfiguration={"Rules": [RAW_30_TAMPERED]})

    result = run(lab, change_event())

    [call] = sent
    assert call["TestMode"] is True and call["ResultToken"] == "TESTMODE"
    [evaluation] = call["Evaluations"]
    assert evaluation["ComplianceResourceType"] == "AWS::S3::Bucket" and evaluation["ComplianceResourceId"] == LAB
    assert evaluation["ComplianceType"] == "NON_COMPLIANT" and evaluation["OrderingTimestamp"] == "2026-11-22T08:40:31.000Z"
    assert evaluation["Annotation"].startswith("retention.drift: Lifecycle of bucket acme-lab-data differs") and len(evaluation["Annotation"]) <= 256
    assert result["evaluations"][0]["ComplianceType"] == "NON_COMPLIANT" and result["test_mode"] is True
    # it only reports: the bucket is unchanged and nothing is published
    assert rules(LAB) == {"stagewarden-class-raw/": RAW_30_TAMPERED} and drain(lab.inbox) == []


def test_scenario_a_bucket_at_policy_is_compliant(lab, sent) -> None:
    run(lab, event("put_bucket_lifecycle.eventbridge.json"))  # the event path brings it to policy first
    drain(lab.inbox)

    run(lab, change_event())

    assert sent[-1]["Evaluations"][0]["ComplianceType"] == "COMPLIANT"


def test_scenario_the_periodic_evaluation_answers_for_every_bucket(lab, sent) -> None:
    boto3.client("s3").put_bucket_lifecycle_configuration(Bucket=lab.refs["CloudTrailLogBucket"], LifecycleConfiguration={"Rules": [
        {"ID": "cheap", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 7}}]})

    result = run(lab, event("config_periodic.json"))

    verdicts = {e["ComplianceResourceId"]: e["ComplianceType"] for call in sent for e in call["Evaluations"]}
    assert verdicts[LAB] == "NON_COMPLIANT"  # no lifecycle yet
    assert verdicts[PROD] == "COMPLIANT"  # versioned, Object Lock with a default retention, no expiry
    assert verdicts[OTHER] == "NOT_APPLICABLE"
    assert verdicts[lab.refs["CloudTrailLogBucket"]] == "NON_COMPLIANT" and verdicts[lab.refs["PolicyBucket"]] == "COMPLIANT"
    assert len(result["evaluations"]) == len(verdicts)


def test_a_deleted_or_out_of_scope_bucket_is_not_applicable(lab, sent) -> None:
    run(lab, change_event(configurationItemStatus="ResourceDeleted"))
    assert sent[-1]["Evaluations"][0]["ComplianceType"] == "NOT_APPLICABLE"


def test_without_test_mode_the_real_token_is_passed_through(lab, sent) -> None:
    evt = change_event()
    evt["resultToken"] = "opaque-token-from-config"

    with pytest.raises(NotImplementedError):  # moto: "PutEvaluations without TestMode is not yet implemented"
        run(lab, evt)
    assert sent[-1]["ResultToken"] == "opaque-token-from-config" and sent[-1]["TestMode"] is False


def test_scenario_done_when_a_drifted_bucket_is_reconciled_reported_and_swept(lab, sent) -> None:
    """The issue's "done when", on one bucket: the event path reconciles, the Config path reports, the schedule sweeps."""
    from tests.unit.retention.conftest import versions, written_days_ago

    s3 = boto3.client("s3")
    s3.put_bucket_lifecycle_configuration(Bucket=LAB, LifecycleConfiguration={"Rules": [RAW_30_TAMPERED]})
    with written_days_ago(45):
        s3.put_object(Bucket=LAB, Key="raw/expired.csv", Body=b"x")
    s3.put_object(Bucket=LAB, Key="raw/fresh.csv", Body=b"x")

    run(lab, change_event())  # Config: drifted
    assert sent[-1]["Evaluations"][0]["ComplianceType"] == "NON_COMPLIANT"
    run(lab, event("put_bucket_lifecycle.eventbridge.json"))  # the change's own event: reconciled
    assert rules(LAB)["stagewarden-class-raw/"]["Expiration"] == {"Days": 30}
    run(lab, change_event())  # Config: at policy now
    assert sent[-1]["Evaluations"][0]["ComplianceType"] == "COMPLIANT"
    schedule = event("schedule.json")
    schedule["time"] = "2099-01-01T00:00:00Z"  # capped at the clock
    run(lab, schedule)  # the daily run: swept

    assert versions(LAB) == [("raw/fresh.csv", False)]
    got = drain(lab.inbox)
    assert [f["rule"] for f in got] == ["retention.drift", "retention.swept"], [(f["rule"], f["summary"]) for f in got]
