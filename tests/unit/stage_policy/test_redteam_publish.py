"""Red-team findings against the publisher: SNS limits, failed publishes, racing repeats."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from stage_policy.model import Alerts
from stage_policy.publish import FindingPublisher
from tests.unit.stage_policy.test_publish import aws, finding, received  # noqa: F401 - the fixture

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)


def test_a_finding_with_huge_evidence_is_still_delivered_within_the_sns_limit(aws) -> None:
    # Given a finding whose evidence alone is above SNS's 256 KB (a long bucket policy, thousands of failed checks...)
    publisher = FindingPublisher(aws["sns"], aws["topic"], aws["ddb"], "state")
    big = finding(evidence={"objects": 1200, "statements": ["x" * 1000] * 400})

    # When it is published
    result = publisher.publish(big)

    # Then it arrives, with what fits (the small evidence kept), rather than failing the record forever
    assert result.published
    [msg] = received(aws)
    body = json.loads(msg["Body"])
    assert body["rule"] == "exfil.bulk-download" and body["evidence"]["objects"] == 1200
    assert len(msg["Body"].encode()) <= 256 * 1024


class FailingOnce:
    """An SNS client whose first Publish fails the way SNS fails (throttling, KMS, a network error)."""

    def __init__(self, sns):
        self._sns, self.calls = sns, 0

    def publish(self, **kwargs):
        self.calls += 1
        if self.calls == 1:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "Publish")
        return self._sns.publish(**kwargs)


def test_a_failed_publish_is_published_when_the_record_is_retried(aws) -> None:
    # Given an SNS publish that fails once (the record fails and SQS delivers it again)
    publisher = FindingPublisher(FailingOnce(aws["sns"]), aws["topic"], aws["ddb"], "state")
    with pytest.raises(Exception, match="Throttling"):
        publisher.publish(finding(first_seen=T0))

    # When the retry publishes the same finding again
    again = publisher.publish(finding(first_seen=T0))

    # Then the alert goes out: the failed attempt did not count as "already alerted"
    assert again.published and len(received(aws)) == 1


class Interleaved:
    """A DynamoDB client that, on the first failed conditional update, lets ``other`` run to the end first."""

    def __init__(self, ddb, other):
        self._ddb, self._other, self._done = ddb, other, False

    def update_item(self, **kwargs):
        try:
            return self._ddb.update_item(**kwargs)
        except self._ddb.exceptions.ConditionalCheckFailedException:
            if not self._done:
                self._done = True
                self._other()
            raise


def test_two_repeats_racing_after_the_window_alert_once(aws) -> None:
    # Given an incident published, then its 30-minute window over
    alerts = Alerts(dedup_window_minutes=30)
    FindingPublisher(aws["sns"], aws["topic"], aws["ddb"], "state").publish(finding(first_seen=T0), alerts)
    received(aws)
    later = T0 + timedelta(minutes=45)

    # When two containers see the same incident again at once (both find the window over)
    other = FindingPublisher(aws["sns"], aws["topic"], aws["ddb"], "state")
    racer = FindingPublisher(aws["sns"], aws["topic"], Interleaved(aws["ddb"], lambda: other.publish(finding(first_seen=later), alerts)),
                             "state")
    racer.publish(finding(first_seen=later), alerts)

    # Then the new incident is alerted once, and its count says two
    msgs = [json.loads(m["Body"]) for m in received(aws)]
    assert len(msgs) == 1
    item = aws["ddb"].get_item(TableName="state", Key={"pk": {"S": f"dedup#{finding().dedup_key}"}, "sk": {"S": "alert"}})["Item"]
    assert item["count"]["N"] == "2"


def test_a_failed_escalation_is_published_when_the_record_is_retried(aws) -> None:
    # Given an incident alerted at medium, then its escalation to critical failing at SNS
    ok = FindingPublisher(aws["sns"], aws["topic"], aws["ddb"], "state")
    ok.publish(finding(severity="medium", first_seen=T0))
    received(aws)
    later = T0 + timedelta(minutes=5)
    with pytest.raises(Exception, match="Throttling"):
        FindingPublisher(FailingOnce(aws["sns"]), aws["topic"], aws["ddb"], "state").publish(finding(severity="critical", first_seen=later))

    # When the retry publishes it again
    again = ok.publish(finding(severity="critical", first_seen=later))

    # Then the escalation goes out
    assert again.published and again.reason == "escalated from medium to critical"
    assert [json.loads(m["Body"])["severity"] for m in received(aws)] == ["critical"]
