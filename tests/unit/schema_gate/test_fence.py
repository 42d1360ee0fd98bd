"""The fence's statements and their conditions, request by request; the unversioned-overwrite races under moto."""

from __future__ import annotations

import boto3
import pytest
from gate.actions import Promote, TagValidation, fence

from tests.s3_fence import denied

BUCKET, GATE, SCIENTIST = "acme-lab-data", "arn:aws:iam::123456789012:role/stagewarden-SchemaGateFunctionRole-1", \
    "arn:aws:iam::123456789012:role/lab-data-scientist"
POLICY = {"Version": "2012-10-17",
          "Statement": fence(BUCKET, ("landing/transactions/",), ("validated/transactions/",), GATE)}
LANDED, PROMOTED, ELSEWHERE = (f"arn:aws:s3:::{BUCKET}/{k}" for k in
                               ("landing/transactions/a.csv", "validated/transactions/a.csv", "scratch/a.csv"))
PASSED, FAILED = {"s3:ExistingObjectTag/stagewarden:validation": "passed"}, {"s3:ExistingObjectTag/stagewarden:validation": "failed"}
FORGED = {"s3:RequestObjectTagKeys": ["team", "stagewarden:validation"]}

# (who, action, resource, more context) -> the Sid that refuses it, or None when no statement of the fence does
CASES = [
    ("scientist", "s3:GetObject", LANDED, {}, "StagewardenGateDenyReadsUntilPassed"),  # new upload, no tag yet
    ("scientist", "s3:GetObject", LANDED, FAILED, "StagewardenGateDenyReadsUntilPassed"),
    ("scientist", "s3:GetObjectVersion", LANDED, {"s3:ExistingObjectTag/stagewarden:validation": "pending"},
     "StagewardenGateDenyReadsUntilPassed"),
    ("scientist", "s3:GetObject", LANDED, PASSED, None),
    ("gate", "s3:GetObject", LANDED, {}, None),  # the gate reads what it validates
    ("scientist", "s3:GetObject", ELSEWHERE, {}, None),  # outside the gated prefixes the fence says nothing
    ("scientist", "s3:PutObject", LANDED, {}, None),  # landing data is what the prefix is for
    ("scientist", "s3:PutObject", LANDED, FORGED, "StagewardenGateDenyValidationTagWrites"),
    ("scientist", "s3:PutObject", ELSEWHERE, FORGED, "StagewardenGateDenyValidationTagWrites"),
    ("scientist", "s3:PutObjectTagging", LANDED, {"s3:RequestObjectTagKeys": ["stagewarden:validation-contract"]},
     "StagewardenGateDenyValidationTagWrites"),
    ("scientist", "s3:PutObjectTagging", LANDED, {"s3:RequestObjectTagKeys": ["team"]}, None),  # not yet tagged by the gate
    ("scientist", "s3:PutObjectTagging", LANDED, {**FAILED, "s3:RequestObjectTagKeys": ["team"]},
     "StagewardenGateDenyValidationTagChanges"),  # would drop the verdict
    ("scientist", "s3:DeleteObjectTagging", LANDED, PASSED, "StagewardenGateDenyValidationTagChanges"),
    ("scientist", "s3:DeleteObjectVersionTagging", LANDED, FAILED, "StagewardenGateDenyValidationTagChanges"),
    ("gate", "s3:PutObjectTagging", LANDED, {**FAILED, **FORGED}, None),
    ("scientist", "s3:PutObject", LANDED, {"s3:x-amz-copy-source": "other-bucket/x.csv"}, "StagewardenGateDenyCopiesIntoGatedPrefixes"),
    ("scientist", "s3:PutObject", PROMOTED, {}, "StagewardenGateDenyWritesUnderValidatedPrefixes"),
    ("gate", "s3:PutObject", PROMOTED, {"s3:x-amz-copy-source": f"{BUCKET}/landing/transactions/a.csv"}, None),
    ("scientist", "s3:GetObject", PROMOTED, PASSED, None),
]


@pytest.mark.parametrize(("who", "action", "resource", "context", "sid"), CASES,
                         ids=[f"{c[0]}-{c[1].split(':')[1]}-{c[2].rsplit('/', 2)[-2]}-{c[4] or 'allowed'}" for c in CASES])
def test_each_statement_refuses_exactly_what_it_should(who, action, resource, context, sid) -> None:
    principal = GATE if who == "gate" else SCIENTIST

    refused = denied(POLICY, action, resource, {"aws:PrincipalArn": principal, **context})

    assert refused == ([sid] if sid else [])


def test_the_fence_is_a_few_static_statements_whatever_the_number_of_objects_or_contracts() -> None:
    many = fence(BUCKET, tuple(f"landing/ds{i}/" for i in range(40)), tuple(f"validated/ds{i}/" for i in range(40)), GATE)

    assert len(many) == 5 and len(many[0]["Resource"]) == 40
    assert all(st["Condition"]["ArnNotEquals"] == {"aws:PrincipalArn": GATE} and st["Principal"] == "*" for st in many)


@pytest.fixture
def unversioned():
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="acme-lab-raw")
        yield s3


def test_a_tag_is_not_put_on_bytes_written_after_they_were_validated(unversioned) -> None:
    # Given an unversioned key validated at ETag e1, then overwritten before the gate tags it
    s3, key = unversioned, "landing/transactions/a.csv"
    e1 = s3.put_object(Bucket="acme-lab-raw", Key=key, Body=b"validated")["ETag"].strip('"')
    s3.put_object(Bucket="acme-lab-raw", Key=key, Body=b"written over")

    # When the gate's tag (and promotion) of e1 are carried out
    tagged = TagValidation(f"s3://acme-lab-raw/{key}", "acme-lab-raw", key, None, "passed", "transactions", e1).apply(lambda _: s3)
    promoted = Promote("s3://acme-lab-raw/validated/a.csv", "acme-lab-raw", key, None, "validated/a.csv", e1).apply(lambda _: s3)

    # Then neither vouches for the new bytes: no tag, no copy
    assert tagged.startswith("not tagged: ") and promoted.startswith("not promoted: ")
    assert s3.get_object_tagging(Bucket="acme-lab-raw", Key=key)["TagSet"] == []
    assert "Contents" not in s3.list_objects_v2(Bucket="acme-lab-raw", Prefix="validated/")


def test_a_tag_is_withdrawn_when_the_bytes_change_while_it_is_put(unversioned, monkeypatch) -> None:
    # Given the overwrite lands between the gate's check and its tagging
    s3, key = unversioned, "landing/transactions/a.csv"
    e1 = s3.put_object(Bucket="acme-lab-raw", Key=key, Body=b"validated")["ETag"].strip('"')
    real_put = s3.put_object_tagging

    def racing_put(**kwargs):
        if any(t["Key"] == "stagewarden:validation" for t in kwargs["Tagging"]["TagSet"]):
            s3.put_object(Bucket="acme-lab-raw", Key=key, Body=b"written over")
        return real_put(**kwargs)

    monkeypatch.setattr(s3, "put_object_tagging", racing_put)

    # When the gate tags e1
    result = TagValidation(f"s3://acme-lab-raw/{key}", "acme-lab-raw", key, None, "passed", "transactions", e1).apply(lambda _: s3)

    # Then the verdict it put on the new bytes is taken back: "withdrawn" is not passed, so the fence keeps them unreadable
    assert result.startswith("tag withdrawn: ")
    assert s3.get_object_tagging(Bucket="acme-lab-raw", Key=key)["TagSet"] == [{"Key": "stagewarden:validation", "Value": "withdrawn"}]
