"""AlertFunction: findings from AlertQueue to the sink (Slack) and Security Hub, one alert per incident."""

from __future__ import annotations

import json

import boto3

from tests.unit.alerts.conftest import SECRET, example_with, finding_of, hub_findings, put_policy, record, sqs_event


def test_scenario_one_finding_of_each_severity_reaches_slack_and_security_hub(deployed, sink) -> None:
    # Given the four sample events, as the alerts topic delivers them to AlertQueue
    events = [sqs_event(f"finding_{s}") for s in ("low", "medium", "high", "critical")]

    # When the function takes them as one batch
    result = deployed({"Records": [e["Records"][0] for e in events]})

    # Then every one is delivered: four posts, four Security Hub findings
    assert result == {"batchItemFailures": []}
    posts = sink.payloads()
    assert sorted(p["blocks"][0]["text"]["text"].split(":")[0] for p in posts) == ["CRITICAL", "HIGH", "LOW", "MEDIUM"]
    hub = {f["Id"]: f for f in hub_findings()}
    assert set(hub) == {f"stagewarden/{finding_of(f'finding_{s}')['dedup_key']}" for s in ("low", "medium", "high", "critical")}


def test_the_slack_message_carries_what_an_analyst_needs(deployed, sink) -> None:
    deployed(sqs_event("finding_high"))

    (post,) = sink.payloads()
    text = json.dumps(post)
    assert post["text"].startswith("[HIGH] exfil.bulk-download (prod-discovery): DataScientistAlice read 1500 objects")
    for needle in ("*Severity*\\nHIGH", "*Stage*\\nprod-discovery", "arn:aws:s3:::acme-lab-data",
                   "`DataScientistAlice` (session alice@example.com)", "*Key evidence*", "sliding_window",
                   "*Action taken*\\nrevoked sessions of role DataScientistAlice",
                   "https://s3.console.aws.amazon.com/s3/buckets/acme-lab-data", "CloudTrail log file",
                   "https://console.aws.amazon.com/iam/home#/roles/details/DataScientistAlice", "new incident"):
        assert needle in text, needle


def test_a_dry_run_finding_says_what_enforce_would_do(deployed, sink) -> None:
    deployed(sqs_event("finding_medium"))

    text = json.dumps(sink.payloads()[0])
    assert "*Action (dry run: nothing was changed; this is what enforce would do)*\\ndry run: would revoke sessions" in text


def test_the_cloudtrail_event_is_linked_and_becomes_the_hub_source_url(deployed, sink) -> None:
    deployed(sqs_event("finding_critical"))

    url = "https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1#/events/e44debad-90a4-48be-5245-4edc306f0c29"
    assert url in json.dumps(sink.payloads()[0])
    (hub,) = hub_findings()
    assert hub["SourceUrl"] == url and hub["Severity"]["Label"] == "CRITICAL" and hub["Types"] == ["TTPs/Defense Evasion/audit.tamper"]


def test_a_storm_of_repeats_is_one_post_and_one_security_hub_finding_with_the_count(deployed, sink) -> None:
    # Given 50 occurrences of the same incident (distinct messages: each a later last_seen)
    base = finding_of("finding_high")
    records = []
    for i in range(50):
        f = dict(base, last_seen=f"2026-11-22T08:{10 + i // 60:02d}:{i % 60:02d}Z")
        records.append(record(f, f"m{i}"))

    # When they arrive over five batches, a minute apart
    for start in range(0, 50, 10):
        assert deployed({"Records": records[start:start + 10]}) == {"batchItemFailures": []}
        deployed.now += 60

    # Then one post, and one Security Hub finding that counts all 50
    assert len(sink.payloads()) == 1
    (hub,) = hub_findings()
    assert hub["ProductFields"]["stagewarden/count"] == "50" and hub["Severity"]["Label"] == "HIGH"
    assert hub["LastObservedAt"] > hub["FirstObservedAt"]


def test_a_rise_in_severity_is_posted_at_once_and_only_once(deployed, sink) -> None:
    high = finding_of("finding_high")
    critical = dict(high, severity="critical", last_seen="2026-11-22T08:20:00Z")

    deployed({"Records": [record(high)]})
    deployed.now += 30
    deployed({"Records": [record(critical), record(dict(critical, last_seen="2026-11-22T08:21:00Z"))]})
    deployed({"Records": [record(dict(high, last_seen="2026-11-22T08:22:00Z"))]})

    posts = sink.payloads()
    assert [p["blocks"][0]["text"]["text"].split(":")[0] for p in posts] == ["HIGH", "CRITICAL"]
    assert "escalated from high to critical" in json.dumps(posts[1])
    (hub,) = hub_findings()
    assert hub["Severity"]["Label"] == "CRITICAL" and hub["ProductFields"]["stagewarden/count"] == "4"


def test_a_containment_that_worked_on_retry_is_posted_once_after_its_failure(deployed, sink) -> None:
    # Given an incident whose containment failed (posted), then a retry whose containment worked: the publisher
    # publishes that repeat with the outcome change (stage_policy.publish), a later repeat without it
    high = finding_of("finding_high")
    failed = dict(high, action="FAILED to deny alice: Throttling",
                  evidence={**high["evidence"], "outcome": "failed"})
    worked = dict(high, action="denied alice", last_seen="2026-11-22T08:20:00Z",
                  evidence={**high["evidence"], "outcome": "done",
                            "outcome_changed": "remediation succeeded (the published alert said it failed)"})
    later = dict(worked, last_seen="2026-11-22T08:25:00Z", evidence={**high["evidence"], "outcome": "done"})

    # When they arrive in order, the change delivered twice (an SQS redelivery)
    deployed({"Records": [record(failed)]})
    message = record(worked)
    deployed({"Records": [message]})
    deployed({"Records": [message]})
    deployed({"Records": [record(later)]})

    # Then Slack has the failure and the success, once each; Security Hub one finding counting the three occurrences
    posts = [json.dumps(p) for p in sink.payloads()]
    assert len(posts) == 2
    assert "FAILED to deny alice" in posts[0] and "denied alice" in posts[1]
    assert "remediation succeeded (the published alert said it failed)" in posts[1]
    (hub,) = hub_findings()
    assert hub["ProductFields"]["stagewarden/count"] == "3"


def test_after_the_window_the_incident_posts_again_and_says_how_many_were_held(deployed, sink) -> None:
    high = finding_of("finding_high")
    for i in range(5):
        deployed({"Records": [record(dict(high, last_seen=f"2026-11-22T08:1{i}:00Z"))]})

    deployed.now += 24 * 3600 + 1  # the example policy's dedup_window_minutes is 1440
    deployed({"Records": [record(dict(high, last_seen="2026-11-23T09:00:00Z"))]})

    posts = sink.payloads()
    assert len(posts) == 2
    assert "4 repeat(s) were held back in the previous window" in json.dumps(posts[1])
    assert hub_findings()[0]["ProductFields"]["stagewarden/count"] == "6"


def test_the_same_message_delivered_twice_counts_once(deployed, sink) -> None:
    event = sqs_event("finding_high")

    deployed(event)
    again = deployed(event)

    assert again == {"batchItemFailures": []}
    assert len(sink.payloads()) == 1 and hub_findings()[0]["ProductFields"]["stagewarden/count"] == "1"


def test_findings_below_min_severity_are_not_delivered(deployed, stack, sink) -> None:
    put_policy(stack, example_with(min_severity="high"))

    result = deployed({"Records": [sqs_event("finding_low")["Records"][0], sqs_event("finding_high")["Records"][0]]})

    assert result == {"batchItemFailures": []}
    assert [p["blocks"][0]["text"]["text"].split(":")[0] for p in sink.payloads()] == ["HIGH"]
    assert [f["ProductFields"]["stagewarden/rule"] for f in hub_findings()] == ["exfil.bulk-download"]


def test_security_hub_off_in_the_policy_means_slack_only(deployed, stack, sink) -> None:
    put_policy(stack, example_with(security_hub=False))

    deployed(sqs_event("finding_high"))

    assert len(sink.payloads()) == 1 and hub_findings() == []


def test_no_slack_secret_in_the_policy_means_security_hub_only(deployed, stack, sink) -> None:
    put_policy(stack, example_with(slack_webhook_secret=None))

    deployed(sqs_event("finding_high"))

    assert sink.payloads() == [] and len(hub_findings()) == 1


def test_a_secret_the_deployment_may_not_read_fails_the_record_naming_both(deployed, stack, sink) -> None:
    put_policy(stack, example_with(slack_webhook_secret="someone-else/webhook"))

    result = deployed(sqs_event("finding_high"))

    # Then the record fails (retried, then dead-lettered) with a message naming both secrets; Security Hub still got it
    assert result["batchItemFailures"] == [{"itemIdentifier": sqs_event("finding_high")["Records"][0]["messageId"]}]
    assert sink.payloads() == [] and len(hub_findings()) == 1
    audit = boto3.client("dynamodb").scan(TableName=deployed.stack.refs["AuditTable"])["Items"]
    failed = [i["result"]["S"] for i in audit if i["status"]["S"] == "failed"]
    assert failed and "'someone-else/webhook'" in failed[0] and f"may read only {SECRET}" in failed[0]


def test_one_channel_per_severity(deployed, stack, sink) -> None:
    from stagewarden.sink import Sink

    with Sink() as critical_sink:
        boto3.client("secretsmanager").put_secret_value(
            SecretId=SECRET, SecretString=json.dumps({"critical": critical_sink.url, "default": sink.url}))

        deployed({"Records": [sqs_event("finding_high")["Records"][0], sqs_event("finding_critical")["Records"][0]]})

        assert [p["text"][:10] for p in critical_sink.payloads()] == ["[CRITICAL]"]
        assert [p["text"][:6] for p in sink.payloads()] == ["[HIGH]"]


def test_a_malformed_message_fails_alone(deployed, sink) -> None:
    good = sqs_event("finding_high")["Records"][0]
    bad = {**good, "messageId": "poison-1", "body": "{not json"}
    envelope = {**good, "messageId": "envelope-1", "body": json.dumps({"Type": "Notification", "Message": good["body"]})}

    result = deployed({"Records": [bad, envelope, good]})

    assert result == {"batchItemFailures": [{"itemIdentifier": "poison-1"}, {"itemIdentifier": "envelope-1"}]}
    assert len(sink.payloads()) == 1


def test_an_unusable_policy_at_a_cold_start_still_delivers_to_the_deployments_slack(deployed, stack, sink) -> None:
    # Given a broken policy (the policy guard's critical finding must still reach people)
    put_policy(stack, "version: 1\nstages: {}\n")
    guard = dict(finding_of("finding_critical"), rule="policy.invalid", resource="s3://policy/policy.yaml",
                 summary="The Stagewarden policy at s3://policy/policy.yaml is unusable (1 problem(s)).", dedup_key="policy.invalid:x:1")

    result = deployed({"Records": [record(guard)]})

    assert result == {"batchItemFailures": []}
    assert [p["text"][:27] for p in sink.payloads()] == ["[CRITICAL] policy.invalid ("]


def test_a_message_counted_once_is_never_counted_again_even_when_its_replay_record_was_not_completed(deployed, sink) -> None:
    # given an occurrence counted from message m1 whose replay record never completed (Powertools' completion write
    # failed after the count: SQS delivers m1 again and Runtime.once runs the count again)
    state, now = deployed.module.courier.state, deployed.now
    first = state.observe("fuzz:incident", 2, now, 3600, "alert#m1")
    # when m1 is counted again, then another message of the same incident
    again = state.observe("fuzz:incident", 2, now + 60, 3600, "alert#m1")
    other = state.observe("fuzz:incident", 2, now + 60, 3600, "alert#m2")
    # then the retry counted nothing and the other message counted once
    assert (first.count, again.count, other.count) == (1, 1, 2)
    # and once the window has closed, a late m1 neither counts nor opens a window; a new message does
    late = state.observe("fuzz:incident", 2, now + 7200, 3600, "alert#m1")
    assert (late.count, late.total, late.window_start) == (2, 2, now)
    new = state.observe("fuzz:incident", 2, now + 7200, 3600, "alert#m3")
    assert (new.count, new.total, new.window_start, new.previous_held) == (1, 3, now + 7200, 2)
