"""Retries (429 honouring Retry-After, 5xx with backoff) inside the time budget, the DLQ after SQS's retries,
and the webhook URL nowhere: not in logs, findings, errors, the audit ledger, Security Hub or the DLQ."""

from __future__ import annotations

import json
import logging

import boto3
import pytest

from tests.unit.alerts.conftest import finding_of, hub_findings, record, sqs_event


def test_a_429_is_retried_after_its_retry_after_and_the_post_lands(deployed, sink) -> None:
    # Given a Slack that rate-limits the first post (Retry-After: 2), then accepts
    sink.set_faults(share_429=1.0, retry_after=2)
    original = sink.faults.answer
    answers = iter([429])
    sink.faults.answer = lambda: next(answers, 200)

    result = deployed(sqs_event("finding_high"))

    # Then the one post lands in the same invocation, after waiting what Slack asked
    assert result == {"batchItemFailures": []} and len(sink.payloads()) == 1
    assert sink.answers == {429: 1, 200: 1}
    assert len(deployed.sleeps) == 1 and 2.0 <= deployed.sleeps[0] <= 2.1
    sink.faults.answer = original


def test_5xx_are_retried_with_backoff(deployed, sink) -> None:
    answers = iter([500, 500])
    sink.faults.answer = lambda: next(answers, 200)

    assert deployed(sqs_event("finding_critical")) == {"batchItemFailures": []}

    assert sink.answers == {500: 2, 200: 1} and len(sink.payloads()) == 1
    # exponential backoff (0.5 s, then 1 s) plus slack_sdk's random jitter of up to 1 s
    assert len(deployed.sleeps) == 2 and 0.5 <= deployed.sleeps[0] < 1.5 and 1.0 <= deployed.sleeps[1] < 2.0


def test_a_retry_after_beyond_the_time_budget_is_left_to_sqs(deployed, sink) -> None:
    # Given a Slack asking to come back in 5 minutes, and an invocation with 20 s left
    sink.set_faults(share_429=1.0, retry_after=300)
    message_id = sqs_event("finding_high")["Records"][0]["messageId"]

    result = deployed(sqs_event("finding_high"), timeout=20)

    # Then the function does not sleep past its deadline: the record fails and SQS retries it later
    assert result == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert deployed.sleeps == [] and sink.answers == {429: 1}


def test_a_failed_post_is_posted_by_the_retry_and_counted_once(deployed, sink) -> None:
    sink.set_faults(share_500=1.0)
    event = sqs_event("finding_high")
    assert deployed(event)["batchItemFailures"]

    sink.set_faults()
    assert deployed(event) == {"batchItemFailures": []}

    assert len(sink.payloads()) == 1
    assert hub_findings()[0]["ProductFields"]["stagewarden/count"] == "1"  # the retry did not count the finding again


def _poll_until_empty(deployed, queue_url: str, rounds: int = 20) -> list[dict]:
    """Lambda's SQS event source, in miniature: failed records become visible again at once."""
    sqs, results = boto3.client("sqs"), []
    for _ in range(rounds):
        msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
        if not msgs:
            break
        event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                              "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                              "eventSource": "aws:sqs", "eventSourceARN": "arn", "awsRegion": "us-east-1"} for m in msgs]}
        response = deployed(event)
        results.append(response)
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for m in msgs:
            if m["MessageId"] in failed:
                sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return results


def test_scenario_slack_down_for_every_retry_ends_in_the_dead_letter_queue(deployed, stack, sink) -> None:
    # Given findings published to the alerts topic, and a Slack that answers 500 to everything
    from stage_policy.findings import Finding
    from stage_policy.publish import FindingPublisher

    sink.set_faults(share_500=1.0)
    publisher = FindingPublisher(boto3.client("sns"), stack.refs["AlertsTopic"])
    for name in ("finding_high", "finding_critical"):
        publisher.publish(Finding.model_validate(finding_of(name)))

    # When AlertQueue's messages are polled until none is left
    _poll_until_empty(deployed, stack.attrs["AlertQueue.QueueUrl"])

    # Then after maxReceiveCount (5) both are in the DLQ, nothing was posted, and Security Hub still has them
    dlq = boto3.client("sqs").receive_message(QueueUrl=stack.attrs["AlertDeadLetterQueue.QueueUrl"], MaxNumberOfMessages=10)
    assert sorted(json.loads(m["Body"])["rule"] for m in dlq["Messages"]) == ["audit.tamper", "exfil.bulk-download"]
    assert sink.payloads() == [] and sink.answers[500] >= 2 * 5
    assert len(hub_findings()) == 2


def test_the_webhook_url_appears_nowhere(deployed, stack, sink, caplog, capsys) -> None:
    # Given every logger at DEBUG (botocore prints response bodies, GetSecretValue's too) and failing posts
    caplog.set_level(logging.DEBUG)
    logging.getLogger("courier.handler").setLevel(logging.DEBUG)
    token = sink.token
    sink.set_faults(share_429=0.5, share_500=0.5, retry_after=0)
    records = [record(dict(finding_of("finding_high"), dedup_key=f"k{i}")) for i in range(6)]

    # When the function posts, fails, retries and reports
    results = [deployed({"Records": records}) for _ in range(3)]

    # Then the token is in none of: the log records, stdout/stderr, the failures, the audit ledger, Security Hub, the state
    out = capsys.readouterr()
    texts = [r.getMessage() for r in caplog.records] + [str(r.exc_info) for r in caplog.records if r.exc_info]
    texts += [out.out, out.err, json.dumps(results)]
    ddb = boto3.client("dynamodb")
    texts += [json.dumps(ddb.scan(TableName=stack.refs[t])["Items"]) for t in ("AuditTable", "StateTable")]
    texts.append(json.dumps(hub_findings()))
    assert any("Response body" in t for t in texts), "botocore debug logging was not captured: the test proves nothing"
    assert any("FAILED" in t or "answered 500" in t or "answered 429" in t for t in texts), "no failure was reported"
    leaks = [t[:200] for t in texts if token in t]
    assert leaks == []


def test_slack_sdk_errors_are_rebuilt_without_the_url(deployed, stack, sink) -> None:
    from courier.slack import DeliveryError, SlackWebhook

    url = sink.url
    sink.stop()  # connection refused: slack_sdk's error carries the request
    with pytest.raises(DeliveryError) as err:
        SlackWebhook(sleep=lambda s: None).post(url, {"text": "x"}, deadline=__import__("time").monotonic() + 5)
    assert sink.token not in str(err.value) and err.value.__cause__ is None and err.value.__suppress_context__
    assert "unreachable" in str(err.value)


def test_outside_the_emulator_only_https_webhooks_are_accepted() -> None:
    from courier.slack import DeliveryError, WebhookSecret

    class Secrets:
        def __init__(self, value):
            self.value = value

        def get_secret_value(self, SecretId):  # noqa: N803 - boto3's spelling
            return {"SecretString": self.value}

    token = "http://127.0.0.1:9/services/T0/B0/abcdefabcdefabcdef"
    with pytest.raises(DeliveryError) as err:
        WebhookSecret(Secrets(token), allow_loopback_http=False).webhooks("s")
    assert "accepted only in emulator mode" in str(err.value) and "abcdefabcdef" not in str(err.value)
    with pytest.raises(DeliveryError, match="not an https:// URL"):
        WebhookSecret(Secrets("http://hooks.example.com/services/x"), allow_loopback_http=True).webhooks("s")
    assert WebhookSecret(Secrets(token), allow_loopback_http=True).webhooks("s").url_for("high") == token
    hooks = WebhookSecret(Secrets(json.dumps({"critical": "https://hooks.slack.com/services/T/B/C"}))).webhooks("s")
    assert hooks.url_for("critical") and hooks.url_for("low") is None and "hooks.slack.com" not in repr(hooks)


def test_the_secret_is_read_once_per_five_minutes() -> None:
    from courier.slack import WebhookSecret

    calls = []

    class Secrets:
        def get_secret_value(self, SecretId):  # noqa: N803
            calls.append(SecretId)
            return {"SecretString": "https://hooks.slack.com/services/T/B/secretsecretsecret"}

    now = [0.0]
    secret = WebhookSecret(Secrets(), clock=lambda: now[0])
    for t in (0, 100, 299):
        now[0] = t
        secret.webhooks("s")
    now[0] = 301
    secret.webhooks("s")
    assert calls == ["s", "s"]


def test_after_a_post_fails_every_retry_the_rest_of_the_batch_fails_fast(deployed, sink) -> None:
    # Given a Slack that is down, and a batch of ten incidents
    from courier.slack import SlackWebhook

    deployed.module.courier.slack.webhook = SlackWebhook(sleep=deployed._sleep)  # as deployed: 10 s of fail-fast
    sink.set_faults(share_500=1.0)
    records = [record(dict(finding_of("finding_high"), dedup_key=f"down-{i}"), f"m{i}") for i in range(10)]

    result = deployed({"Records": records})

    # Then every record fails (SQS retries them), but only the first spent its retries on Slack
    assert len(result["batchItemFailures"]) == 10
    assert sink.answers == {500: 5} and len(deployed.sleeps) == 4
