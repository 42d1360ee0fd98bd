"""Red-team findings against the decide-then-act kit: caps under failure, outcomes across retries, odd input."""

from __future__ import annotations

import json

import boto3
import pytest

from stage_policy.actions import Decision
from stage_policy.events import API_CALL, OBJECT_CREATED, EventError, parse_eventbridge
from stage_policy.executor import ActionFailed, settle
from stage_policy.publish import FindingPublisher
from tests.unit.stage_policy.test_kit import TagBucket, aws, executor, finding, tags  # noqa: F401 - the fixture


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000, '{"detail-type": ' + "9" * 5000 + "}"],
                         ids=["nested-100k-deep", "5000-digit-number"])
def test_hostile_json_fails_with_a_typed_error_naming_the_part(body) -> None:
    with pytest.raises(EventError) as caught:
        parse_eventbridge(body, (OBJECT_CREATED, API_CALL))
    assert caught.value.part == "record body"


def test_a_failed_action_does_not_spend_the_cap(aws) -> None:
    # Given a cap of 2 revocations and three decisions: the first fails, the other two can succeed
    ex = executor()
    decisions = [Decision(finding(resource=f"arn:aws:s3:::{b}"), [TagBucket(b)], stage="prod-discovery")
                 for b in ("missing-bucket", "kit-b1", "kit-b2")]

    # When they are acted on in one invocation
    statuses = [ex.act(d)[0].status for d in decisions]

    # Then both containments that could happen happened
    assert statuses == ["failed", "done", "done"]
    assert tags(aws["s3"], "kit-b2")


def test_a_containment_that_succeeds_on_retry_is_reported(aws) -> None:
    # Given a subscriber on the alerts topic and the dedup table
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    publisher = FindingPublisher(sns, topic, aws["ddb"], "state")
    first_seen = finding().first_seen

    def attempt():
        decision = Decision(finding(resource="arn:aws:s3:::late-bucket"), [TagBucket("late-bucket")], stage="prod-discovery")
        decision.finding.first_seen = decision.finding.last_seen = first_seen  # the same event, redelivered
        return settle([decision], executor(), publisher.publish)

    # When the containment fails (the record fails), then succeeds on the retry
    with pytest.raises(ActionFailed):
        attempt()
    aws["s3"].create_bucket(Bucket="late-bucket")
    attempt()

    # Then the subscriber hears of the failure and of the success
    actions = [json.loads(m["Body"])["action"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
    assert len(actions) == 2 and actions[0].startswith("FAILED") and actions[1] == "tagged late-bucket"


def test_a_dry_run_of_an_action_does_not_stand_in_for_enforcing_it_in_another_stage(aws) -> None:
    # Given one invocation where the same containment is decided first in a dry-run stage, then in an enforcing one
    # (one role bulk-downloading from prod-integration, mode dry_run, and from prod-discovery, enforce)
    ex = executor()
    in_dry_run = Decision(finding(stage="prod-integration"), [TagBucket("kit-b1")], stage="prod-integration")
    enforced = Decision(finding(stage="prod-discovery"), [TagBucket("kit-b1")], stage="prod-discovery")

    # When both are acted on
    statuses = [ex.act(in_dry_run)[0].status, ex.act(enforced)[0].status]

    # Then the enforcing stage's containment is carried out, not reported as "already handled" by the dry run
    assert statuses == ["dry_run", "done"]
    assert tags(aws["s3"], "kit-b1") == [{"Key": "contained", "Value": "yes"}]


def test_repeats_with_the_same_outcome_stay_one_alert_and_each_change_is_one_more(aws) -> None:
    # Given a subscriber on the alerts topic and the dedup table
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    publisher = FindingPublisher(sns, topic, aws["ddb"], "state")
    first_seen = finding().first_seen

    def attempt():
        decision = Decision(finding(resource="arn:aws:s3:::flaky-bucket"), [TagBucket("flaky-bucket")], stage="prod-discovery")
        decision.finding.first_seen = decision.finding.last_seen = first_seen
        try:
            settle([decision], executor(), publisher.publish)
        except ActionFailed:
            pass

    # When the containment fails twice, succeeds three times (each a new run), then fails again
    attempt(), attempt()
    aws["s3"].create_bucket(Bucket="flaky-bucket")
    attempt(), attempt(), attempt()
    aws["s3"].delete_bucket(Bucket="flaky-bucket")
    attempt()

    # Then the subscriber hears once per outcome change: failed, done, failed
    messages = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        messages += batch
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    outcomes = [json.loads(m["Body"])["evidence"]["outcome"] for m in messages]
    assert outcomes == ["failed", "done", "failed"]


@pytest.mark.parametrize("name", ["A" * 10_000, "Acme-Lab", "ab", "-lab-", "lab/data"])
def test_an_object_created_event_naming_no_possible_bucket_is_an_event_error_naming_the_part(name) -> None:
    # found by the fuzz run: botocore refused the name with an untyped ParamValidationError before any request
    event = {"version": "0", "id": "e", "detail-type": OBJECT_CREATED, "source": "aws.s3", "account": "123456789012",
             "time": "2026-11-22T09:00:00Z", "region": "us-east-1", "resources": [],
             "detail": {"version": "0", "bucket": {"name": name}, "object": {"key": "k", "size": 1, "etag": "e"},
                        "request-id": "r", "requester": "123456789012", "reason": "PutObject"}}
    with pytest.raises(EventError) as caught:
        parse_eventbridge(json.dumps(event), (OBJECT_CREATED,))
    assert caught.value.part == "record body.detail.bucket.name" and len(str(caught.value)) < 300
