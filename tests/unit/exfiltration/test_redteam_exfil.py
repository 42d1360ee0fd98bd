"""Red-team findings against ExfiltrationFunction on the kit: batches, retries and redeliveries."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest

from stagewarden.trailgen import bulk_download, eventbridge_envelope, log_file, management_event
from tests.helpers import ROOT, drain, seed_policy_in_process, subscribe_queue
from tests.unit.exfiltration.test_app import run, sqs_event

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
INSIDE = dict(vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.4.2")  # no outside-VPC-endpoint reads: only the thresholds count


@pytest.fixture
def lab(stack):
    stack.parameters["DefaultRemediationMode"] = "enforce"
    seed_policy_in_process(stack, ROOT / "policy.example.yaml")
    boto3.client("s3").create_bucket(Bucket="acme-lab-data")
    stack.inbox = subscribe_queue(stack)
    return stack


def role(name: str) -> None:
    boto3.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))


def sqs_record(body: dict, message_id: str) -> dict:
    return {**sqs_event("mgmt_delete_trail")["Records"][0], "messageId": message_id, "body": json.dumps(body)}


def test_a_retried_log_file_does_not_count_its_reads_twice(lab) -> None:
    # Given one log file in which Carol reads 600 objects (limit 1000 per 10 minutes: normal) and Mallory
    # bulk-downloads 1500, and Mallory's role cannot be contained (here: it does not exist, so PutRolePolicy fails)
    role("DataScientistCarol")
    records = (bulk_download(role="DataScientistCarol", session="carol@example.com", bucket="acme-lab-data", objects=600,
                             start=T0, seconds=240, nbytes=10, seed=1, **INSIDE)
               + bulk_download(role="DataScientistMallory", session="mallory@example.com", bucket="acme-lab-data",
                               objects=1500, start=T0, seconds=240, nbytes=10, seed=2, **INSIDE))
    event = sqs_event("log_file_delivered")
    detail = json.loads(event["Records"][0]["body"])["detail"]
    boto3.client("s3").put_object(Bucket=detail["bucket"]["name"], Key=detail["object"]["key"], Body=log_file(records))

    # When the record fails on the failed containment and SQS delivers it again (as it does, up to maxReceiveCount)
    first = run(lab, event)
    assert first["batchItemFailures"], "the failed containment fails the record"
    run(lab, event)

    # Then Carol's 600 reads are still 600 (objects and bytes): she is neither flagged nor contained
    carol = [f for f in drain(lab.inbox) if f["principal"].endswith("/DataScientistCarol/carol@example.com")]
    assert carol == []
    assert boto3.client("iam").list_role_policies(RoleName="DataScientistCarol")["PolicyNames"] == []
    items = boto3.client("dynamodb").scan(TableName=lab.refs["StateTable"])["Items"]
    [window] = [i for i in items if i["pk"]["S"].endswith("/DataScientistCarol/carol@example.com")]
    minutes = json.loads(window["minutes"]["S"])
    assert sum(v[0] for v in minutes.values()) == 600 and sum(v[1] for v in minutes.values()) == 6000


def test_two_shares_of_one_snapshot_in_one_batch_are_both_removed(lab) -> None:
    # Given a snapshot shared with two outside accounts by two calls, delivered in one SQS batch
    role("DataScientistAlice")
    ec2 = boto3.client("ec2")
    snap = ec2.create_snapshot(VolumeId=ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"])["SnapshotId"]
    batch = []
    for i, account in enumerate(("999988887777", "888877776666")):
        ec2.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission", OperationType="add", UserIds=[account])
        detail = management_event("ModifySnapshotAttribute", "ec2.amazonaws.com", {
            "snapshotId": snap, "createVolumePermission": {"add": {"items": [{"userId": account}]}},
            "attributeType": "CREATE_VOLUME_PERMISSION"}, seed=20 + i)
        batch.append(sqs_record(eventbridge_envelope(detail), f"m-{i}"))

    # When both arrive in one invocation
    result = run(lab, {"Records": batch})

    # Then neither outside account can still create volumes from it
    assert result == {"batchItemFailures": []}
    perms = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")["CreateVolumePermissions"]
    assert perms == []


def test_a_bucket_policy_naming_many_outside_accounts_is_still_reported_and_reverted(lab) -> None:
    # Given an attacker's bucket policy granting 40 outside accounts (a long principal list is one API call)
    role("DataScientistAlice")
    outsiders = [f"arn:aws:iam::{900000000000 + i}:root" for i in range(40)]
    backdoor = {"Version": "2012-10-17", "Statement": [{
        "Sid": "Backdoor", "Effect": "Allow", "Principal": {"AWS": outsiders}, "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::acme-lab-data/*"}]}
    boto3.client("s3").put_bucket_policy(Bucket="acme-lab-data", Policy=json.dumps(backdoor))
    detail = management_event("PutBucketPolicy", "s3.amazonaws.com", {"bucketName": "acme-lab-data", "bucketPolicy": backdoor})

    # When the management event arrives
    result = run(lab, {"Records": [sqs_record(eventbridge_envelope(detail), "m-0")]})

    # Then it is alerted on and reverted like a one-account backdoor (the summary is bounded, not rejected)
    assert result == {"batchItemFailures": []}
    [finding] = drain(lab.inbox)
    assert finding["rule"] == "exfil.bucket-policy-external" and len(finding["summary"]) <= 1000
    with pytest.raises(Exception, match="NoSuchBucketPolicy"):
        boto3.client("s3").get_bucket_policy(Bucket="acme-lab-data")


def test_a_bulk_download_by_another_accounts_role_does_not_revoke_a_same_named_role_here(lab) -> None:
    # Given this account's DataScientistAlice, and a role of the same name in a partner account reading the lab bucket
    role("DataScientistAlice")
    records = bulk_download(role="DataScientistAlice", session="partner@example.com", bucket="acme-lab-data", objects=1500,
                            start=T0, seconds=240, nbytes=10, account="999999999999", **INSIDE)
    event = sqs_event("log_file_delivered")
    detail = json.loads(event["Records"][0]["body"])["detail"]
    boto3.client("s3").put_object(Bucket=detail["bucket"]["name"], Key=detail["object"]["key"], Body=log_file(records))

    # When the log file is processed in enforce
    run(lab, event)

    # Then the bulk download is reported, naming the other account, and this account's role keeps its sessions
    [bulk] = [f for f in drain(lab.inbox) if f["rule"] == "exfil.bulk-download"]
    assert bulk["principal"] == "arn:aws:sts::999999999999:assumed-role/DataScientistAlice/partner@example.com"
    assert bulk["evidence"]["role_arn"] == "arn:aws:iam::999999999999:role/DataScientistAlice"
    assert "account 999999999999" in bulk["action"]
    assert boto3.client("iam").list_role_policies(RoleName="DataScientistAlice")["PolicyNames"] == []


def test_one_event_twice_in_a_batch_and_again_under_a_new_message_id_alerts_and_acts_once(lab) -> None:
    # Given one external bucket-policy change delivered twice in one batch (EventBridge and SQS are at-least-once)
    role("DataScientistAlice")
    backdoor = {"Version": "2012-10-17", "Statement": [{"Sid": "Backdoor", "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::999988887777:root"}, "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::acme-lab-data/*"}]}
    boto3.client("s3").put_bucket_policy(Bucket="acme-lab-data", Policy=json.dumps(backdoor))
    body = eventbridge_envelope(management_event("PutBucketPolicy", "s3.amazonaws.com",
                                                 {"bucketName": "acme-lab-data", "bucketPolicy": backdoor}))

    first = run(lab, {"Records": [sqs_record(body, "m-1"), sqs_record(body, "m-2")]})
    again = run(lab, {"Records": [sqs_record(body, "m-3")]})  # redelivered later with a new messageId

    # Then one alert and one revert, and the ledger holds the revert once
    assert first == again == {"batchItemFailures": []}
    assert [f["rule"] for f in drain(lab.inbox)] == ["exfil.bucket-policy-external"]
    audit = boto3.client("dynamodb").scan(TableName=lab.refs["AuditTable"])["Items"]
    assert [(i["action"]["S"], i["status"]["S"]) for i in audit] == [("revert-bucket-policy", "done")]


def test_a_bulk_download_from_a_dry_run_stage_and_an_enforcing_one_is_contained(lab) -> None:
    # Given Alice bulk-downloading, in one log file, first from UAT (prod-integration: dry_run) then from the lab (enforce)
    role("DataScientistAlice")
    boto3.client("s3").create_bucket(Bucket="acme-uat-data")
    records = [bulk_download(role="DataScientistAlice", session="alice@example.com", bucket=bucket, objects=1500,
                             start=T0, seconds=240, nbytes=10, seed=i, **INSIDE)
               for i, bucket in enumerate(("acme-uat-data", "acme-lab-data"))]
    event = sqs_event("log_file_delivered")
    detail = json.loads(event["Records"][0]["body"])["detail"]
    boto3.client("s3").put_object(Bucket=detail["bucket"]["name"], Key=detail["object"]["key"], Body=log_file(records[0] + records[1]))

    # When the file is processed
    run(lab, event)

    # Then the lab's containment happens (the UAT dry run does not count as having done it)
    [name] = boto3.client("iam").list_role_policies(RoleName="DataScientistAlice")["PolicyNames"]
    assert name.startswith("StagewardenDenySession-")
    actions = {f["stage"]: f["action"] for f in drain(lab.inbox) if f["rule"] == "exfil.bulk-download"}
    assert actions["prod-integration"].startswith("dry run: would deny session") and actions["prod-discovery"].startswith("denied session")
