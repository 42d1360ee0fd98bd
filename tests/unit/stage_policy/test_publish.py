"""Findings reach subscribers through SNS with filterable attributes, one alert per incident."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from stage_policy.findings import FINDING_SCHEMA_VERSION, Finding, at_least
from stage_policy.model import Alerts
from stage_policy.publish import FindingPublisher


@pytest.fixture
def aws():
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
        yield {"sns": sns, "sqs": sqs, "ddb": ddb, "topic": topic, "queue": url}


def finding(**overrides) -> Finding:
    values = dict(rule="exfil.bulk-download", severity="high", stage="prod-discovery", resource="arn:aws:s3:::acme-lab-data",
                  principal="arn:aws:iam::111111111111:role/DataScientistAlice", summary="1,200 objects in 10 minutes",
                  evidence={"objects": 1200})
    values.update(overrides)
    return Finding(**values)


def received(aws) -> list[dict]:
    msgs = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])
    return msgs


def test_a_published_finding_arrives_with_filterable_attributes(aws) -> None:
    # Given a publisher on the alerts topic
    publisher = FindingPublisher(aws["sns"], aws["topic"])

    # When a finding is published
    result = publisher.publish(finding())

    # Then the subscriber's queue holds it, with severity, rule and stage as message attributes
    msgs = received(aws)
    assert result.published and len(msgs) == 1
    body = json.loads(msgs[0]["Body"])
    assert body["rule"] == "exfil.bulk-download" and body["schema_version"] == FINDING_SCHEMA_VERSION
    assert body["evidence"] == {"objects": 1200} and body["count"] == 1
    attrs = {k: v["StringValue"] for k, v in msgs[0]["MessageAttributes"].items()}
    assert attrs == {"severity": "high", "rule": "exfil.bulk-download", "stage": "prod-discovery", "schema_version": "1.0"}


def test_a_subscription_filter_on_severity_drops_low_findings(aws) -> None:
    url = aws["sqs"].create_queue(QueueName="critical-only")["QueueUrl"]
    arn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws["sns"].subscribe(TopicArn=aws["topic"], Protocol="sqs", Endpoint=arn,
                         Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"severity": ["critical"]})})
    publisher = FindingPublisher(aws["sns"], aws["topic"])

    publisher.publish(finding(severity="low", resource="arn:aws:s3:::a"))
    publisher.publish(finding(severity="critical", resource="arn:aws:s3:::b"))

    msgs = aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["resource"] for m in msgs] == ["arn:aws:s3:::b"]


def test_repeats_of_one_incident_alert_once_and_are_counted(aws) -> None:
    publisher = FindingPublisher(aws["sns"], aws["topic"], aws["ddb"], "state")
    t0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)

    results = [publisher.publish(finding(first_seen=t0 + timedelta(minutes=i))) for i in range(3)]

    assert [r.published for r in results] == [True, False, False]
    assert len(received(aws)) == 1
    item = aws["ddb"].get_item(TableName="state", Key={"pk": {"S": f"dedup#{finding().dedup_key}"}, "sk": {"S": "alert"}})["Item"]
    assert item["count"]["N"] == "3"
    assert int(item["expires_at"]["N"]) == int((t0 + timedelta(hours=24)).timestamp())


def test_after_the_window_the_same_incident_alerts_again(aws) -> None:
    # Given alerts.dedup_window_minutes of 30
    publisher = FindingPublisher(aws["sns"], aws["topic"], aws["ddb"], "state")
    alerts = Alerts(dedup_window_minutes=30)
    t0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)

    # When the incident repeats inside the window and again after it
    first = publisher.publish(finding(first_seen=t0), alerts)
    inside = publisher.publish(finding(first_seen=t0 + timedelta(minutes=29)), alerts)
    later = publisher.publish(finding(first_seen=t0 + timedelta(minutes=31)), alerts)

    # Then the repeat inside is held back and the one after alerts again as a new incident
    assert first.published and not inside.published and later.published and later.count == 1
    assert len(received(aws)) == 2
    item = aws["ddb"].get_item(TableName="state", Key={"pk": {"S": f"dedup#{finding().dedup_key}"}, "sk": {"S": "alert"}})["Item"]
    assert int(item["expires_at"]["N"]) == int((t0 + timedelta(minutes=31 + 30)).timestamp())


def test_min_severity_holds_back_findings_below_it(aws) -> None:
    # Given alerts.min_severity high
    publisher = FindingPublisher(aws["sns"], aws["topic"], aws["ddb"], "state")
    alerts = Alerts(min_severity="high")

    # When a medium and a critical finding are published
    low = publisher.publish(finding(severity="medium", resource="arn:aws:s3:::a"), alerts)
    high = publisher.publish(finding(severity="critical", resource="arn:aws:s3:::b"), alerts)

    # Then only the critical one reaches the topic, and the medium one is not even counted
    assert not low.published and "min_severity" in low.reason and high.published
    assert [json.loads(m["Body"])["resource"] for m in received(aws)] == ["arn:aws:s3:::b"]
    assert "Item" not in aws["ddb"].get_item(
        TableName="state", Key={"pk": {"S": f"dedup#{finding(severity='medium', resource='arn:aws:s3:::a').dedup_key}"}, "sk": {"S": "alert"}})


def test_an_escalation_inside_the_window_is_published_at_once_and_only_once(aws) -> None:
    # Given an incident published at medium
    publisher = FindingPublisher(aws["sns"], aws["topic"], aws["ddb"], "state")
    t0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
    publisher.publish(finding(severity="medium", first_seen=t0))

    # When it repeats at medium, then at critical twice, then at high
    results = [publisher.publish(finding(severity=sev, first_seen=t0 + timedelta(minutes=i + 1)))
               for i, sev in enumerate(["medium", "critical", "critical", "high"])]

    # Then only the first critical is published, as an escalation carrying the count so far
    assert [r.published for r in results] == [False, True, False, False]
    msgs = [json.loads(m["Body"]) for m in received(aws)]
    assert [m["severity"] for m in msgs] == ["medium", "critical"]
    assert msgs[1]["count"] == 3 and msgs[1]["evidence"]["escalated"] == "escalated from medium to critical"


def test_distinct_incidents_are_not_merged(aws) -> None:
    publisher = FindingPublisher(aws["sns"], aws["topic"], aws["ddb"], "state")

    publisher.publish(finding(principal="arn:aws:iam::111111111111:role/A"))
    publisher.publish(finding(principal="arn:aws:iam::111111111111:role/B"))

    assert len(received(aws)) == 2


@pytest.mark.parametrize(
    "field, value",
    [("rule", "Bulk Download"), ("severity", "urgent"), ("resource", ""), ("summary", ""), ("count", 0)],
)
def test_malformed_findings_are_refused(field: str, value) -> None:
    with pytest.raises(ValidationError) as caught:
        finding(**{field: value})
    assert caught.value.errors()[0]["loc"] == (field,)


def test_severity_order() -> None:
    assert at_least("critical", "high") and at_least("high", "high") and not at_least("medium", "high")


def test_an_empty_topic_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="STAGEWARDEN_ALERTS_TOPIC_ARN"):
        FindingPublisher(object(), "")
