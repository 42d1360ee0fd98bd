"""audit.tamper: anything that would blind the detector (trail, selectors, Stagewarden itself, the trail bucket)."""

from __future__ import annotations

import pytest
from exfil import tamper
from exfil.deployment import Deployment
from exfil.rules import RuleContext

from stagewarden.trailgen import management_event

DEPLOYMENT = Deployment(account="123456789012", stack_name="stagewarden", trail_bucket="org-trail-logs")
CTX = RuleContext(accounts=("123456789012",), stage_of_bucket=lambda b: "prod-discovery" if b.startswith("acme-") else None,
                  deployment=DEPLOYMENT)
ALL = {"type": "AWS::S3::Object", "values": ["arn:aws:s3"]}


def selectors(**params) -> dict:
    return management_event("PutEventSelectors", "cloudtrail.amazonaws.com", {"trailName": "org", **params})


def advanced(*field_selectors: dict) -> dict:
    base = [{"field": "eventCategory", "equals": ["Data"]}, {"field": "resources.type", "equals": ["AWS::S3::Object"]}]
    return selectors(advancedEventSelectors=[{"fieldSelectors": base + list(field_selectors)}])


@pytest.mark.parametrize("event, gap", [
    (selectors(eventSelectors=[{"readWriteType": "All", "includeManagementEvents": True, "dataResources": []}]), "no longer recorded"),
    (selectors(eventSelectors=[{"readWriteType": "ReadOnly", "dataResources": [ALL]}]), "(writes)"),
    (selectors(eventSelectors=[{"readWriteType": "WriteOnly", "dataResources": [ALL]}]), "(reads)"),
    (selectors(eventSelectors=[{"readWriteType": "All", "dataResources": [{"type": "AWS::S3::Object", "values": []}]}]), "no longer"),
    # a decoy: only a bucket of no stage is recorded
    (selectors(eventSelectors=[{"readWriteType": "All", "dataResources": [{"type": "AWS::S3::Object",
                                                                          "values": ["arn:aws:s3:::decoy-bucket/"]}]}]),
     "only for decoy-bucket (no stage bucket among them)"),
    (advanced({"field": "resources.ARN", "startsWith": ["arn:aws:s3:::decoy-bucket/"]}), "only for decoy-bucket"),
    (advanced({"field": "resources.ARN", "notStartsWith": ["arn:aws:s3:::acme-lab-data/"]}), "excludes arn:aws:s3:::acme-lab-data/"),
    (advanced({"field": "resources.ARN", "notStartsWith": ["arn:aws:s3:::acme"]}), "excludes arn:aws:s3:::acme"),
    (advanced({"field": "eventName", "notEquals": ["GetObject"]}), "excludes GetObject"),
    (advanced({"field": "eventName", "equals": ["PutObject", "DeleteObject"]}), "excludes GetObject"),
    (advanced({"field": "eventName", "startsWith": ["Put"]}), "excludes GetObject"),
    (advanced({"field": "readOnly", "equals": ["false"]}), "(reads)"),
    (advanced({"field": "userIdentity.arn", "notStartsWith": ["arn:aws:sts::123456789012:assumed-role/Mallory"]}),
     "narrowed by userIdentity.arn"),
])
def test_selectors_that_stop_covering_a_stage_buckets_data_events_are_tampering(event, gap) -> None:
    verdict = tamper.trail(event, CTX)

    assert verdict is not None and verdict.rule == "audit.tamper" and any(gap in g for g in verdict.evidence["gaps"]), verdict


@pytest.mark.parametrize("event", [
    selectors(eventSelectors=[{"readWriteType": "All", "dataResources": [ALL]}]),
    selectors(eventSelectors=[{"readWriteType": "ReadOnly", "dataResources": [ALL]},
                              {"readWriteType": "WriteOnly", "dataResources": [{"type": "AWS::S3::Object", "values": ["arn:aws:s3:::"]}]}]),
    advanced(),
    advanced({"field": "resources.ARN", "notStartsWith": ["arn:aws:s3:::access-logs-bucket/"]}),
    advanced({"field": "eventName", "notEquals": ["ListObjects"]}),
    selectors(advancedEventSelectors=[
        {"fieldSelectors": [{"field": "eventCategory", "equals": ["Data"]}, {"field": "resources.type", "equals": ["AWS::S3::Object"]},
                            {"field": "readOnly", "equals": ["true"]}]},
        {"fieldSelectors": [{"field": "eventCategory", "equals": ["Data"]}, {"field": "resources.type", "equals": ["AWS::S3::Object"]},
                            {"field": "readOnly", "equals": ["false"]}]}]),
])
def test_selectors_that_still_record_every_buckets_reads_and_writes_are_fine(event) -> None:
    assert tamper.trail(event, CTX) is None


def test_naming_stage_buckets_only_is_high_not_critical() -> None:
    event = selectors(eventSelectors=[{"readWriteType": "All", "dataResources": [{"type": "AWS::S3::Object",
                                                                                  "values": ["arn:aws:s3:::acme-lab-data/"]}]}])

    assert tamper.trail(event, CTX).severity == "high"


@pytest.mark.parametrize("params, problem", [
    ({"name": "org", "s3BucketName": "somewhere-else"}, "delivers log files to bucket somewhere-else, not org-trail-logs"),
    ({"name": "org", "s3KeyPrefix": "hidden"}, "moves log files under prefix hidden"),
    ({"name": "org", "isMultiRegionTrail": False}, "records one region only"),
    ({"name": "org", "includeGlobalServiceEvents": False}, "drops global service events"),
    ({"name": "org", "isOrganizationTrail": False}, "no longer covers the organisation"),
])
def test_update_trail_pointing_elsewhere_or_narrowing_it_is_tampering(params, problem) -> None:
    verdict = tamper.trail(management_event("UpdateTrail", "cloudtrail.amazonaws.com", params), CTX)

    assert verdict is not None and problem in verdict.summary


def test_update_trail_to_the_same_bucket_is_fine() -> None:
    event = management_event("UpdateTrail", "cloudtrail.amazonaws.com", {"name": "org", "s3BucketName": "org-trail-logs",
                                                                        "isMultiRegionTrail": True})
    assert tamper.trail(event, CTX) is None


@pytest.mark.parametrize("name", ["StopLogging", "DeleteTrail"])
def test_stopping_or_deleting_a_trail_is_tampering(name) -> None:
    verdict = tamper.trail(management_event(name, "cloudtrail.amazonaws.com", {"name": "org-trail"}), CTX)

    assert verdict.rule == "audit.tamper" and verdict.severity == "critical" and verdict.resource.endswith(":trail/org-trail")


@pytest.mark.parametrize("name, params", [
    ("DisableRule", {"name": "stagewarden-ExfilLogFileRule-1A2B3C"}),
    ("DeleteRule", {"name": "stagewarden-ExfilManagementEventRule-1A2B3C"}),
    ("RemoveTargets", {"rule": "stagewarden-ExfilLogFileRule-1A2B3C", "ids": ["ExfilQueue"]}),
    ("PutRule", {"name": "stagewarden-ExfilLogFileRule-1A2B3C", "state": "DISABLED"}),
    ("PutRule", {"name": "stagewarden-ExfilLogFileRule-1A2B3C", "eventPattern": '{"source": ["nothing"]}'}),
])
def test_stagewardens_own_rules_disabled_deleted_or_changed_are_tampering(name, params) -> None:
    verdict = tamper.eventbridge(management_event(name, "events.amazonaws.com", params), CTX)

    assert verdict is not None and verdict.severity == "critical" and "stagewarden-Exfil" in verdict.resource


def test_other_rules_and_cloudformation_updates_are_not_tampering() -> None:
    other = management_event("DisableRule", "events.amazonaws.com", {"name": "team-nightly-rule"})
    cfn = management_event("PutRule", "events.amazonaws.com", {"name": "stagewarden-ExfilLogFileRule-1A2B3C", "state": "ENABLED"})
    cfn["userIdentity"]["invokedBy"] = "cloudformation.amazonaws.com"

    assert tamper.eventbridge(other, CTX) is None and tamper.eventbridge(cfn, CTX) is None


@pytest.mark.parametrize("name, params, response", [
    ("DeleteFunction20150331", {"functionName": "stagewarden-ExfiltrationFunction-AbC123"}, None),
    ("DeleteFunction20150331", {"functionName": "arn:aws:lambda:us-east-1:123456789012:function:stagewarden-ExfiltrationFunction-AbC"}, None),
    ("PutFunctionConcurrency20171031", {"functionName": "stagewarden-ExfiltrationFunction-AbC123", "reservedConcurrentExecutions": 0}, None),
    ("UpdateEventSourceMapping20150331", {"uUID": "u-1", "enabled": False},
     {"functionArn": "arn:aws:lambda:us-east-1:123456789012:function:stagewarden-ExfiltrationFunction-AbC"}),
    ("DeleteEventSourceMapping20150331", {"uUID": "u-1"},
     {"functionArn": "arn:aws:lambda:us-east-1:123456789012:function:stagewarden-ExfiltrationFunction-AbC"}),
])
def test_stagewardens_own_functions_deleted_throttled_or_unplugged_are_tampering(name, params, response) -> None:
    event = management_event(name, "lambda.amazonaws.com", params, response_elements=response)

    verdict = tamper.lambda_function(event, CTX)

    assert verdict is not None and verdict.severity == "critical" and "ExfiltrationFunction" in verdict.summary


@pytest.mark.parametrize("name, params", [
    ("DeleteFunction20150331", {"functionName": "team-function"}),
    ("PutFunctionConcurrency20171031", {"functionName": "stagewarden-ExfiltrationFunction-AbC123", "reservedConcurrentExecutions": 5}),
])
def test_other_functions_and_non_zero_concurrency_are_not_tampering(name, params) -> None:
    assert tamper.lambda_function(management_event(name, "lambda.amazonaws.com", params), CTX) is None


def test_without_a_stack_name_stagewarden_is_not_recognised() -> None:
    event = management_event("DeleteFunction20150331", "lambda.amazonaws.com", {"functionName": "stagewarden-ExfiltrationFunction-AbC"})

    assert tamper.lambda_function(event, RuleContext()) is None


@pytest.mark.parametrize("name, params, severity", [
    ("PutBucketNotificationConfiguration", {"bucketName": "org-trail-logs", "NotificationConfiguration": {}}, "critical"),
    ("PutBucketNotification", {"bucketName": "org-trail-logs", "NotificationConfiguration": {"EventBridgeConfiguration": {}}}, "high"),
    ("PutBucketPolicy", {"bucketName": "org-trail-logs", "bucketPolicy": {"Statement": []}}, "high"),
    ("DeleteBucketPolicy", {"bucketName": "org-trail-logs"}, "critical"),
])
def test_the_trail_buckets_notifications_or_policy_changed_is_tampering(name, params, severity) -> None:
    verdict = tamper.trail_bucket(management_event(name, "s3.amazonaws.com", params), CTX)

    assert verdict is not None and verdict.severity == severity and verdict.resource == "arn:aws:s3:::org-trail-logs"


def test_other_buckets_notifications_are_not_tampering() -> None:
    event = management_event("PutBucketNotificationConfiguration", "s3.amazonaws.com", {"bucketName": "acme-lab-data"})

    assert tamper.trail_bucket(event, CTX) is None
