"""Single-event rules: what opens data to the outside, and what does not."""

from __future__ import annotations

import pytest
from exfil import rules
from exfil.actions import RevertBucketPolicy
from exfil.rules import RuleContext

from stagewarden.trailgen import management_event

ORG_ID = "o-abc123defg"
CTX = RuleContext(accounts=("123456789012",), org_id=ORG_ID, vpc_endpoints=frozenset({"vpce-0a1b2c3d4e5f67890"}),
                  stage_of_bucket=lambda b: "prod-discovery" if b.startswith("acme-") else None)


def policy_event(statement: dict | list, as_object: bool = False) -> dict:
    doc = {"Version": "2012-10-17", "Statement": statement if as_object or isinstance(statement, list) else [statement]}
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
        # '*' with a condition that names another organisation, or does not pin anything
        ("*", {"StringEquals": {"aws:PrincipalOrgID": "o-otherorg999"}}, ["*"]),
        ("*", {"StringLike": {"aws:PrincipalOrgID": "o-*"}}, ["*"]),
        ("*", {"StringNotEquals": {"aws:PrincipalOrgID": ORG_ID}}, ["*"]),
        ("*", {"StringEqualsIfExists": {"aws:PrincipalOrgID": ORG_ID}}, ["*"]),
        ("*", {"ForAllValues:StringEquals": {"aws:PrincipalOrgID": [ORG_ID]}}, ["*"]),
        ("*", {"StringEquals": {"aws:PrincipalAccount": "999988887777"}}, ["*"]),
        ("*", {"StringEquals": {"aws:SourceVpce": "vpce-attacker000000001"}}, ["*"]),
        ("*", {"StringEquals": {"aws:SourceVpc": "vpc-0123"}}, ["*"]),
        ("*", {"Bool": {"aws:SecureTransport": "true"}}, ["*"]),
    ],
)
def test_policies_granting_outside_the_organisation_are_external(principal, condition, external) -> None:
    statement = {**ALLOW, "Principal": principal, **({"Condition": condition} if condition else {})}

    verdict = rules.bucket_policy(policy_event(statement), CTX)

    assert verdict is not None and verdict.rule == "exfil.bucket-policy-external"
    assert verdict.evidence["external_principals"] == sorted(external)
    assert verdict.undo == {"kind": "revert-bucket-policy", "bucket": "acme-lab-data", "inside": ["123456789012"]}


@pytest.mark.parametrize(
    "statement",
    [
        {**ALLOW, "Principal": {"Service": "cloudtrail.amazonaws.com"}},
        {**ALLOW, "Principal": {"AWS": "arn:aws:iam::123456789012:role/etl"}},
        {**ALLOW, "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORG_ID}}},
        {**ALLOW, "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgPaths": f"{ORG_ID}/r-ab12/ou-ab12-11111111/"}}},
        {**ALLOW, "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalAccount": ["123456789012"]}}},
        {**ALLOW, "Principal": "*", "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/*"}}},
        {**ALLOW, "Principal": "*", "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-0a1b2c3d4e5f67890"}}},
        {**ALLOW, "Effect": "Deny", "Principal": "*"},
        {**ALLOW, "Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::123456789012:role/etl"}},
    ],
)
def test_service_principals_org_scoped_and_deny_statements_are_not_external(statement) -> None:
    assert rules.bucket_policy(policy_event(statement), CTX) is None


def test_a_principal_org_id_condition_needs_organization_org_id_to_be_trusted() -> None:
    statement = {**ALLOW, "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORG_ID}}}

    verdict = rules.bucket_policy(policy_event(statement), RuleContext(accounts=("123456789012",)))

    assert verdict is not None and verdict.evidence["external_principals"] == ["*"]


def test_an_allow_with_not_principal_is_external_and_critical() -> None:
    statement = {**ALLOW, "NotPrincipal": {"AWS": "arn:aws:iam::123456789012:role/etl"}}

    verdict = rules.bucket_policy(policy_event(statement), CTX)

    assert verdict.severity == "critical" and verdict.evidence["external_principals"][0].startswith("everyone except")


def test_a_single_statement_policy_is_read() -> None:
    statement = {**ALLOW, "Principal": {"AWS": "arn:aws:iam::999988887777:root"}}

    verdict = rules.bucket_policy(policy_event(statement, as_object=True), CTX)

    assert verdict is not None and verdict.evidence["statements"] == [statement]


class _FakeS3:
    def __init__(self, policy: dict):
        self.policy, self.put, self.deleted = policy, None, False

    def get_bucket_policy(self, Bucket):  # noqa: N803 - boto3's names
        import json

        return {"Policy": json.dumps(self.policy)}

    def put_bucket_policy(self, Bucket, Policy):  # noqa: N803
        import json

        self.put = json.loads(Policy)

    def delete_bucket_policy(self, Bucket):  # noqa: N803
        self.deleted = True


def test_reverting_a_single_statement_policy_deletes_it_rather_than_corrupting_it() -> None:
    s3 = _FakeS3({"Version": "2012-10-17", "Statement": {**ALLOW, "Principal": "*"}})

    detail = RevertBucketPolicy("acme-lab-data", inside=("123456789012",), org_id=ORG_ID).apply(lambda service: s3)

    assert s3.deleted and s3.put is None and "removed 1 external statement" in detail


def test_reverting_keeps_the_org_scoped_statement_given_the_org_id() -> None:
    scoped = {**ALLOW, "Sid": "Org", "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORG_ID}}}
    s3 = _FakeS3({"Version": "2012-10-17", "Statement": [scoped, {**ALLOW, "Sid": "Open", "Principal": "*"}]})

    RevertBucketPolicy("acme-lab-data", inside=("123456789012",), org_id=ORG_ID).apply(lambda service: s3)

    assert s3.put["Statement"] == [scoped]


def test_without_an_org_list_the_events_own_account_is_inside() -> None:
    event = policy_event({**ALLOW, "Principal": {"AWS": "arn:aws:iam::123456789012:root"}})

    assert rules.bucket_policy(event, RuleContext()) is None


def test_a_public_acl_is_external() -> None:
    event = management_event("PutBucketAcl", "s3.amazonaws.com", {"bucketName": "b", "x-amz-acl": "public-read"})

    verdict = rules.bucket_acl(event, CTX)

    assert verdict.severity == "critical" and verdict.undo["kind"] == "revert-bucket-acl"


def acl(grants: list[dict], owner: str | None = "ownerid") -> dict:
    policy = {"AccessControlList": {"Grant": grants}}
    if owner:
        policy["Owner"] = {"ID": owner}
    return management_event("PutBucketAcl", "s3.amazonaws.com", {"bucketName": "b", "AccessControlPolicy": policy})


@pytest.mark.parametrize("event", [
    acl([{"Grantee": {"ID": "another-canonical-id"}, "Permission": "READ"}]),
    acl([{"Grantee": {"ID": "another-canonical-id"}, "Permission": "READ"}], owner=None),
    management_event("PutBucketAcl", "s3.amazonaws.com", {"bucketName": "b", "x-amz-grant-read": 'id="another-canonical-id"'}),
])
def test_acl_grants_to_another_canonical_id_are_external(event) -> None:
    assert rules.bucket_acl(event, CTX) is not None


@pytest.mark.parametrize("event", [
    acl([{"Grantee": {"ID": "ownerid"}, "Permission": "FULL_CONTROL"}]),
    acl([{"Grantee": {"URI": "http://acs.amazonaws.com/groups/s3/LogDelivery"}, "Permission": "WRITE"}]),
])
def test_acl_grants_to_the_owner_or_log_delivery_are_not_external(event) -> None:
    assert rules.bucket_acl(event, CTX) is None


def replication_event(dest: dict) -> dict:
    return management_event("PutBucketReplication", "s3.amazonaws.com", {"bucketName": "acme-lab-data", "ReplicationConfiguration": {
        "Role": "arn:aws:iam::123456789012:role/r", "Rule": {"ID": "r1", "Status": "Enabled", "Destination": dest}}})


def test_replication_to_another_account_is_external() -> None:
    verdict = rules.replication(replication_event({"Bucket": "arn:aws:s3:::partner-drop", "Account": "999988887777"}), CTX)

    assert verdict.undo["destinations"] == ["arn:aws:s3:::partner-drop"]


def test_replication_to_a_bucket_of_no_stage_is_external_even_without_an_account() -> None:
    verdict = rules.replication(replication_event({"Bucket": "arn:aws:s3:::innocent-looking-backup"}), CTX)

    assert verdict is not None and "maps to no stage" in verdict.summary


def test_replication_to_a_stage_bucket_inside_is_not_external() -> None:
    assert rules.replication(replication_event({"Bucket": "arn:aws:s3:::acme-lab-replica", "Account": "123456789012"}), CTX) is None
    assert rules.replication(replication_event({"Bucket": "arn:aws:s3:::acme-lab-replica"}), CTX) is None


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
    verdict = rules.snapshot_share(management_event(name, source, params), CTX)

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
    assert rules.snapshot_share(management_event(name, source, params), CTX) is None


@pytest.mark.parametrize("params", [
    {"bucketName": "b", "bucketPolicy": {"Statement": "not a statement"}},
    {"bucketName": ["b"], "bucketPolicy": 7},
    {"bucketName": "b", "AccessControlPolicy": {"AccessControlList": {"Grant": ["x", {"Grantee": 3}]}, "Owner": "x"}},
    {"bucketName": "b", "ReplicationConfiguration": {"Rule": [1, {"Destination": "x"}]}},
])
def test_rules_tolerate_fields_of_unexpected_types(params) -> None:
    for rule in (rules.bucket_policy, rules.bucket_acl, rules.replication):
        rule(management_event("PutBucketPolicy", "s3.amazonaws.com", params), CTX)  # no exception
