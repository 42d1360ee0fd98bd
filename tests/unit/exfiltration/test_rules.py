"""Single-event rules: what opens data to another account, and what does not."""

from __future__ import annotations

import pytest
from exfil import rules

from stagewarden.trailgen import management_event

ORG = ("123456789012",)


def policy_event(statement: dict) -> dict:
    doc = {"Version": "2012-10-17", "Statement": [statement]}
    return management_event("PutBucketPolicy", "s3.amazonaws.com", {"bucketName": "acme-lab-data", "bucketPolicy": doc})


ALLOW = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::acme-lab-data/*"}


@pytest.mark.parametrize(
    "principal, condition, external",
    [
        ({"AWS": "arn:aws:iam::999988887777:root"}, None, ["arn:aws:iam::999988887777:root"]),
        ({"AWS": "999988887777"}, None, ["999988887777"]),
        ("*", None, ["*"]),
        ({"AWS": "*"}, None, ["*"]),
        ({"AWS": ["arn:aws:iam::123456789012:role/etl", "arn:aws:iam::999988887777:role/x"]}, None, ["arn:aws:iam::999988887777:role/x"]),
        ({"CanonicalUser": "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"}, None,
         ["79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"]),
    ],
)
def test_policies_granting_outside_the_organisation_are_external(principal, condition, external) -> None:
    verdict = rules.bucket_policy(policy_event({**ALLOW, "Principal": principal}), ORG)

    assert verdict is not None and verdict.rule == "exfil.bucket-policy-external"
    assert verdict.evidence["external_principals"] == sorted(external)
    assert verdict.undo == {"kind": "revert-bucket-policy", "bucket": "acme-lab-data", "inside": ["123456789012"]}


@pytest.mark.parametrize(
    "statement",
    [
        {**ALLOW, "Principal": {"Service": "cloudtrail.amazonaws.com"}},
        {**ALLOW, "Principal": {"AWS": "arn:aws:iam::123456789012:role/etl"}},
        {**ALLOW, "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}},
        {**ALLOW, "Principal": "*", "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-0a1b2c3d4e5f67890"}}},
        {**ALLOW, "Effect": "Deny", "Principal": "*"},
    ],
)
def test_service_principals_org_scoped_and_deny_statements_are_not_external(statement) -> None:
    assert rules.bucket_policy(policy_event(statement), ORG) is None


def test_without_an_org_list_the_events_own_account_is_inside() -> None:
    event = policy_event({**ALLOW, "Principal": {"AWS": "arn:aws:iam::123456789012:root"}})

    assert rules.bucket_policy(event, ()) is None


def test_a_public_acl_is_external() -> None:
    event = management_event("PutBucketAcl", "s3.amazonaws.com", {"bucketName": "b", "x-amz-acl": "public-read"})

    verdict = rules.bucket_acl(event, ORG)

    assert verdict.severity == "critical" and verdict.undo["kind"] == "revert-bucket-acl"


def test_replication_to_another_account_is_external_within_is_not() -> None:
    def event(account: str) -> dict:
        return management_event("PutBucketReplication", "s3.amazonaws.com", {"bucketName": "b", "ReplicationConfiguration": {
            "Role": "arn:aws:iam::123456789012:role/r", "Rule": {"ID": "r1", "Status": "Enabled",
                                                                 "Destination": {"Bucket": "arn:aws:s3:::x", "Account": account}}}})

    assert rules.replication(event("999988887777"), ORG).undo["accounts"] == ["999988887777"]
    assert rules.replication(event("123456789012"), ORG) is None


@pytest.mark.parametrize(
    "name, source, params, target, kind",
    [
        ("ModifySnapshotAttribute", "ec2.amazonaws.com",
         {"snapshotId": "snap-1", "createVolumePermission": {"add": {"items": [{"userId": "999988887777"}]}}}, "snap-1", "unshare-snapshot"),
        ("ModifyImageAttribute", "ec2.amazonaws.com",
         {"imageId": "ami-1", "launchPermission": {"add": {"items": [{"group": "all"}]}}}, "ami-1", "unshare-image"),
        ("ModifyDBSnapshotAttribute", "rds.amazonaws.com",
         {"dBSnapshotIdentifier": "db1", "attributeName": "restore", "valuesToAdd": ["999988887777"]}, "db1", "unshare-db-snapshot"),
    ],
)
def test_snapshot_and_image_shares_outside_are_found(name, source, params, target, kind) -> None:
    verdict = rules.snapshot_share(management_event(name, source, params), ORG)

    assert verdict.rule == "exfil.snapshot-share" and verdict.undo["kind"] == kind and verdict.undo["target"] == target


@pytest.mark.parametrize(
    "name, source, params",
    [
        ("ModifySnapshotAttribute", "ec2.amazonaws.com", {"snapshotId": "s", "createVolumePermission": {"remove": {"items": [{"userId": "999988887777"}]}}}),
        ("ModifyDBSnapshotAttribute", "rds.amazonaws.com", {"dBSnapshotIdentifier": "d", "attributeName": "restore", "valuesToRemove": ["999988887777"]}),
        ("ModifyImageAttribute", "ec2.amazonaws.com", {"imageId": "a", "launchPermission": {"add": {"items": [{"userId": "123456789012"}]}}}),
    ],
)
def test_removing_a_share_or_sharing_inside_is_not_a_finding(name, source, params) -> None:
    assert rules.snapshot_share(management_event(name, source, params), ORG) is None


@pytest.mark.parametrize(
    "selectors, tampered",
    [
        ({"eventSelectors": [{"readWriteType": "All", "includeManagementEvents": True, "dataResources": []}]}, True),
        ({"eventSelectors": [{"readWriteType": "ReadOnly", "dataResources": [{"type": "AWS::S3::Object", "values": ["arn:aws:s3"]}]}]}, True),
        ({"eventSelectors": [{"readWriteType": "All", "dataResources": [{"type": "AWS::S3::Object", "values": ["arn:aws:s3"]}]}]}, False),
        ({"advancedEventSelectors": [{"fieldSelectors": [{"field": "eventCategory", "equals": ["Data"]},
                                                         {"field": "resources.type", "equals": ["AWS::S3::Object"]}]}]}, False),
    ],
)
def test_event_selectors_that_drop_s3_data_events_are_tampering(selectors, tampered) -> None:
    verdict = rules.tamper(management_event("PutEventSelectors", "cloudtrail.amazonaws.com", {"trailName": "org", **selectors}), ORG)

    assert (verdict is not None) is tampered


@pytest.mark.parametrize("name", ["StopLogging", "DeleteTrail"])
def test_stopping_or_deleting_a_trail_is_tampering(name) -> None:
    verdict = rules.tamper(management_event(name, "cloudtrail.amazonaws.com", {"name": "org-trail"}), ORG)

    assert verdict.rule == "audit.tamper" and verdict.severity == "critical" and verdict.resource.endswith(":trail/org-trail")
