"""The rules tried as an attacker would: for each, the evasion and whether it is caught.

``test_evasion_*``: the evasion is caught. ``test_limitation_*``: it is out of reach, and
README.md (Exfiltration detection, "What it does not see") says so; the test pins the
behaviour so the documentation cannot silently drift.

| rule | other API | shared role | slow and low | malformed record | denied call | race |
|---|---|---|---|---|---|---|
| bulk-download | Select, Torrent, copies: caught | caught per session; rotating session names: limitation | daily budget | caught | failed reads move no data | concurrent window writes: caught |
| copy-out | UploadPartCopy, hops via the same stage: caught | per session | - | caught | denied copies move no data | - |
| outside-vpce | someone else's endpoint: caught | per session | every read counts | caught | - | - |
| instance-credentials | any API | - | every call counts | caught | denied calls still count | - |
| bucket-policy-external | list / NotPrincipal / conditions: caught | - | - | bounded | attempt reported | re-put: reverted again |
| replication-external | no Account: caught; look-alike bucket name: limitation | - | - | - | attempt reported | - |
| audit.tamper | decoys, exclusions, Stagewarden's own rules and functions | - | - | - | attempt reported | - |
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from exfil import rules
from exfil.deployment import Deployment
from exfil.engine import Detector, MemoryWindowStore
from exfil.rules import RuleContext
from exfil.windows import DeltaMemoryWindowStore

from stage_policy.loader import loads
from stagewarden.trailgen import bulk_download, copies, data_event, instance_call, management_event, ranged_download, shared_role_day

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
VPCE = "vpce-0a1b2c3d4e5f67890"
POLICY = loads("""
framework: three-stage
organization: {account_ids: ["123456789012"], org_id: o-abc123defg, vpc_endpoint_ids: [vpce-0a1b2c3d4e5f67890],
               allowed_cidrs: [10.0.0.0/8]}
stages:
  prod-discovery:
    mode: enforce
    exfiltration: {max_objects: 100, max_bytes: 10485760, window_minutes: 10, daily_max_objects: 400}
resources:
  buckets:
    - {pattern: "acme-lab-*", stage: prod-discovery}
    - {pattern: "acme-prod-*", stage: final-prod}
""")


def run(records, detector=None, source="attack.json.gz"):
    detector = detector or Detector(POLICY, MemoryWindowStore())
    detector.feed(records)
    return detector.finish(source)


def rules_of(decisions) -> set[str]:
    return {d.finding.rule for d in decisions}


def reads(n, *, session="mallory@example.com", role="NotebookShared", start=T0, seconds=120, **kw):
    kw.setdefault("vpce", VPCE)
    kw.setdefault("ip", "10.0.0.66")
    return bulk_download(role=role, session=session, bucket="acme-lab-data", objects=n, start=start, seconds=seconds,
                         nbytes=1000, **kw)


# ------------------------------------------------------------------ exfil.bulk-download
@pytest.mark.parametrize("name", ["SelectObjectContent", "GetObjectTorrent"])
def test_evasion_reading_through_another_api_is_caught(name) -> None:
    assert "exfil.bulk-download" in rules_of(run(reads(150, name=name)))


@pytest.mark.parametrize("name", ["CopyObject", "UploadPartCopy"])
def test_evasion_server_side_copy_to_an_own_bucket_is_caught(name) -> None:
    records = copies(role="NotebookShared", session="mallory@example.com", source_bucket="acme-lab-data", dest_bucket="mallory-loot",
                     objects=150, start=T0, seconds=60, name=name, vpce=VPCE, ip="10.0.0.66")

    assert rules_of(run(records)) == {"exfil.bulk-download", "exfil.copy-out"}


def test_evasion_hiding_among_colleagues_on_a_shared_role_is_caught_and_names_only_the_attacker() -> None:
    records = shared_role_day(colleagues=10, role="NotebookShared", bucket="acme-lab-data", start=T0, reads_each=80, minutes=10)
    records += reads(150, prefix="loot/")

    decisions = run(records)

    assert [d.finding.principal.rsplit("/", 1)[-1] for d in decisions] == ["mallory@example.com"]


def test_evasion_one_huge_object_in_ranged_parts_is_caught_by_bytes() -> None:
    records = ranged_download(role="NotebookShared", session="mallory@example.com", bucket="acme-lab-data", objects=1, parts=200,
                              start=T0, seconds=120, part_bytes=1 << 20, vpce=VPCE, ip="10.0.0.66")

    decisions = run(records)

    assert rules_of(decisions) == {"exfil.bulk-download"} and decisions[0].finding.evidence["objects"] == 1


def test_evasion_slow_and_low_is_caught_by_the_daily_budget() -> None:
    detector = Detector(POLICY, MemoryWindowStore())
    found = []
    for i in range(10):  # 90 new objects every 30 minutes: never 100 in 10 minutes, 900 in five hours
        found += run(reads(90, start=T0 + timedelta(minutes=30 * i), prefix=f"s{i}/"), detector)

    assert rules_of(found) == {"exfil.daily-budget"}


def test_limitation_rotating_session_names_splits_the_count() -> None:
    # An identity free to choose its RoleSessionName can read 90 objects per session name. Out of reach by design
    # (identity is the session); README: pin session names to the person (SAML/OIDC, sts:RoleSessionName, sourceIdentity).
    records = []
    for i in range(5):
        records += reads(90, session=f"batch-{i}", prefix=f"p{i}/")

    assert run(records) == []


def test_evasion_a_poison_record_in_front_of_the_download_is_caught() -> None:
    records = reads(150)
    records.insert(0, {**records[0], "userIdentity": ["not", "an", "object"]})
    records.insert(1, {**records[1], "eventTime": {"when": "now"}})

    assert rules_of(run(records)) == {"exfil.bulk-download", "input.malformed"}


def test_evasion_a_record_dated_far_in_the_future_does_not_age_out_the_window() -> None:
    detector = Detector(POLICY, DeltaMemoryWindowStore())
    first = reads(60)
    future = dict(first[0], eventTime="2031-01-01T00:00:00Z")
    run(first + [future], detector)

    second = run(reads(60, start=T0 + timedelta(minutes=3), prefix="more/"), detector)

    assert rules_of(second) == {"exfil.bulk-download"}


def test_evasion_denied_reads_move_no_data_and_are_not_volume() -> None:
    assert run(reads(150, error_code="AccessDenied")) == []


def test_evasion_a_race_between_two_log_files_of_one_session_loses_no_count() -> None:
    import boto3
    from moto import mock_aws

    from exfil.ports import DynamoWindowStore

    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(TableName="state", BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
        store, rival = DynamoWindowStore(ddb, "state"), DynamoWindowStore(ddb, "state")
        raced = {"done": False}
        real_get = ddb.get_item

        def get_then_rival_writes(**kwargs):
            item = real_get(**kwargs)
            if not raced["done"]:  # another invocation merges its file between our read and our write
                raced["done"] = True
                run(reads(60, start=T0, prefix="other-file/"), Detector(POLICY, rival), "s3://trail/file-1.json.gz")
            return item

        ddb.get_item = get_then_rival_writes
        decisions = run(reads(60, start=T0 + timedelta(minutes=1)), Detector(POLICY, store), "s3://trail/file-2.json.gz")
        # and the same file retried (its record failed) adds nothing
        again = run(reads(60, start=T0 + timedelta(minutes=1)), Detector(POLICY, store), "s3://trail/file-2.json.gz")

    assert rules_of(decisions) == {"exfil.bulk-download"} and store.writes == 2  # retried after the conditional write failed
    assert rules_of(again) == {"exfil.bulk-download"} and store.writes == 2  # the window still holds 120; nothing written


# ------------------------------------------------------------------ exfil.copy-out
def test_evasion_copying_through_a_scratch_bucket_of_the_same_stage_is_caught_at_the_last_hop() -> None:
    hop1 = copies(role="NotebookShared", session="mallory@example.com", source_bucket="acme-lab-data", dest_bucket="acme-lab-scratch",
                  objects=5, start=T0, seconds=5, vpce=VPCE, ip="10.0.0.66")
    hop2 = copies(role="NotebookShared", session="mallory@example.com", source_bucket="acme-lab-scratch", dest_bucket="mallory-loot",
                  objects=5, start=T0 + timedelta(minutes=1), seconds=5, vpce=VPCE, ip="10.0.0.66")

    assert rules_of(run(hop1)) == set() and rules_of(run(hop2)) == {"exfil.copy-out"}


# ------------------------------------------------------------------ exfil.outside-vpce / presigned
def test_evasion_reading_through_an_own_vpc_endpoint_is_caught() -> None:
    assert rules_of(run(reads(3, vpce="vpce-attacker0000000001"))) == {"exfil.outside-vpce"}


def test_limitation_reads_from_inside_the_allowed_networks_are_normal() -> None:
    # a compromised laptop on the corporate network (allowed_cidrs) reading below the thresholds: out of reach
    assert run(reads(50, vpce=None, ip="10.20.30.40")) == []


# ------------------------------------------------------------------ exfil.instance-credentials
def test_evasion_stolen_instance_credentials_through_an_own_vpc_endpoint_are_caught() -> None:
    call = instance_call(role="etl-instance", instance="i-0123456789abcdef0", when=T0, ip="172.31.5.5", vpce="vpce-attacker0000000001")

    assert rules_of(run([call])) == {"exfil.instance-credentials"}


def test_evasion_stolen_instance_credentials_that_are_denied_are_still_reported() -> None:
    call = instance_call(role="etl-instance", instance="i-0123456789abcdef0", when=T0, ip="198.51.100.9")
    call["errorCode"] = "AccessDenied"

    assert rules_of(run([call])) == {"exfil.instance-credentials"}


def test_evasion_stolen_instance_credentials_from_a_private_address_outside_the_networks_are_caught() -> None:
    call = instance_call(role="etl-instance", instance="i-0123456789abcdef0", when=T0, ip="192.168.10.20")

    assert rules_of(run([call])) == {"exfil.instance-credentials"}


# ------------------------------------------------------------------ data-opening changes
CTX = RuleContext(accounts=("123456789012",), org_id="o-abc123defg", vpc_endpoints=frozenset({VPCE}),
                  stage_of_bucket=lambda b: "prod-discovery" if b.startswith("acme-") else None,
                  deployment=Deployment("123456789012", "stagewarden", "org-trail-logs"))


def put_policy(statement) -> dict:
    return management_event("PutBucketPolicy", "s3.amazonaws.com", {"bucketName": "acme-lab-data",
                                                                    "bucketPolicy": {"Statement": statement}})


ALLOW = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::acme-lab-data/*"}


@pytest.mark.parametrize("statement", [
    {**ALLOW, "Principal": {"AWS": ["*"]}},
    {**ALLOW, "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalAccount": ["123456789012", "999988887777"]}}},
    {**ALLOW, "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-attacker0001"}}},
    {**ALLOW, "Principal": "*", "Condition": {"StringEqualsIfExists": {"aws:PrincipalOrgID": "o-abc123defg"}}},
    {**ALLOW, "NotPrincipal": {"AWS": "arn:aws:iam::123456789012:root"}},
    [{**ALLOW, "Effect": "Deny", "Principal": "*"}, {**ALLOW, "Principal": {"CanonicalUser": "another-canonical-id"}}],
])
def test_evasion_policies_that_look_scoped_are_caught(statement) -> None:
    assert rules.bucket_policy(put_policy(statement), CTX) is not None


def test_evasion_a_replication_rule_without_an_account_is_caught() -> None:
    event = management_event("PutBucketReplication", "s3.amazonaws.com", {"bucketName": "acme-lab-data", "ReplicationConfiguration": {
        "Rule": [{"ID": "ok", "Destination": {"Bucket": "arn:aws:s3:::acme-lab-replica"}},
                 {"ID": "loot", "Destination": {"Bucket": "arn:aws:s3:::loot-bucket"}}]}})

    verdict = rules.replication(event, CTX)

    assert verdict.undo["destinations"] == ["arn:aws:s3:::loot-bucket"]


def test_limitation_a_look_alike_bucket_name_in_another_account_without_account_is_not_seen() -> None:
    # bucket names are global: an attacker's bucket named like a stage bucket maps to that stage by name.
    # README: map stage buckets by tag (GetBucketTagging fails for another account's bucket) or require Destination.Account.
    event = management_event("PutBucketReplication", "s3.amazonaws.com", {"bucketName": "acme-lab-data", "ReplicationConfiguration": {
        "Rule": {"ID": "looks-internal", "Destination": {"Bucket": "arn:aws:s3:::acme-lab-attacker-owned"}}}})

    assert rules.replication(event, CTX) is None


# ------------------------------------------------------------------ audit.tamper
@pytest.mark.parametrize("event", [
    management_event("PutEventSelectors", "cloudtrail.amazonaws.com", {"trailName": "org", "advancedEventSelectors": [{"fieldSelectors": [
        {"field": "eventCategory", "equals": ["Data"]}, {"field": "resources.type", "equals": ["AWS::S3::Object"]},
        {"field": "eventName", "notStartsWith": ["GetO"]}]}]}),
    management_event("PutEventSelectors", "cloudtrail.amazonaws.com", {"trailName": "org", "eventSelectors": [
        {"readWriteType": "All", "dataResources": [{"type": "AWS::S3::Object", "values": ["arn:aws:s3:::decoy/"]}]}]}),
    management_event("UpdateTrail", "cloudtrail.amazonaws.com", {"name": "org", "s3BucketName": "attacker-bucket"}),
    management_event("UpdateFunctionConfiguration20150331v2", "lambda.amazonaws.com",
                     {"functionName": "stagewarden-ExfiltrationFunction-1", "environment": {"variables": {"STAGEWARDEN_DEFAULT_MODE": "dry_run"}}}),
    management_event("RemoveTargets", "events.amazonaws.com", {"rule": "stagewarden-ExfilManagementEventRule-1", "ids": ["ExfilQueue"]}),
    management_event("PutBucketNotificationConfiguration", "s3.amazonaws.com", {"bucketName": "org-trail-logs",
                                                                                 "NotificationConfiguration": {}}),
])
def test_evasion_blinding_the_detector_is_caught(event) -> None:
    detector = Detector(POLICY, MemoryWindowStore(), deployment=CTX.deployment)

    decisions = run([event], detector)

    assert rules_of(decisions) == {"audit.tamper"}


def test_evasion_a_denied_tampering_attempt_is_still_reported_one_level_lower() -> None:
    event = management_event("StopLogging", "cloudtrail.amazonaws.com", {"name": "org"}, error_code="AccessDenied")

    decisions = run([event])

    assert [(d.finding.rule, d.finding.severity) for d in decisions] == [("audit.tamper", "high")]


def test_limitation_deleting_log_objects_or_the_queue_is_not_a_rule_here() -> None:
    # out of reach for this function (README): protect the trail bucket with Object Lock / a deny policy, alarm on the queue
    events = [management_event("DeleteObject", "s3.amazonaws.com", {"bucketName": "org-trail-logs", "key": "AWSLogs/x"}),
              management_event("PutBucketLifecycleConfiguration", "s3.amazonaws.com", {"bucketName": "org-trail-logs"}),
              management_event("DeleteQueue", "sqs.amazonaws.com", {"queueUrl": "https://sqs/stagewarden-ExfilQueue-1"})]

    assert run(events, Detector(POLICY, MemoryWindowStore(), deployment=CTX.deployment)) == []


def test_evasion_a_human_session_named_like_an_instance_is_not_an_instance() -> None:
    rng = random.Random(2)
    rec = data_event(role="NotebookShared", session="i-am-mallory", bucket="acme-lab-data", key="k", when=T0, rng=rng,
                     ip="198.51.100.7")

    assert "exfil.instance-credentials" not in rules_of(run([rec]))
