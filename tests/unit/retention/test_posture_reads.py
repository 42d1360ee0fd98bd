"""What a reconcile reads of a compliant stage bucket (bench/posture.py measures the same on the emulator)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import boto3
import pytest
from moto import mock_aws

from keeper.plan import lifecycle_diff
from keeper.ports import BucketReader, LockReader, VersionLister
from keeper.posture import PostureReader, tls_statement
from keeper.reconcile import Keeper
from stage_policy.loader import loads

BUCKET = "acme-lab-data"
POLICY = """
framework: three-stage
defaults: {mode: enforce}
resources:
  buckets: [{pattern: "acme-lab-*", stage: prod-discovery}]
"""
LOGS = "stages:\n  prod-discovery:\n    posture: {access_logging: {target_bucket: acme-access-logs, target_prefix: lab/}}\n"
RECONCILE_READS = {"GetBucketTagging", "GetBucketLifecycleConfiguration", "GetBucketVersioning", "GetObjectLockConfiguration",
                   "GetBucketEncryption", "GetPublicAccessBlock", "GetBucketPolicy"}


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3")
        calls: Counter = Counter()
        client.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))
        client.calls = calls
        yield client


def compliant(s3, policy) -> None:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    rules = lifecycle_diff(policy.stages["prod-discovery"].retention, [], policy.safety.min_retention_days).desired
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": rules})
    s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
    s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration=dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True))
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [tls_statement(BUCKET)]}))
    s3.calls.clear()


def reconcile(s3, policy) -> list:
    keeper = Keeper(policy, BucketReader(s3), VersionLister(s3), LockReader(s3), datetime.now(timezone.utc),
                    posture=PostureReader(s3))
    return keeper.reconcile(keeper.view(BUCKET))


def test_a_compliant_bucket_costs_seven_reads_and_no_write_without_an_access_logging_target(s3) -> None:
    # Given a lab bucket at its lifecycle and posture baseline, and a baseline that names no access-logging target
    policy = loads(POLICY, "p.yaml")
    compliant(s3, policy)

    decisions = reconcile(s3, policy)

    # Then nothing is decided, each reconcile read happens once, GetBucketLogging not at all, and nothing is written
    assert decisions == []
    assert s3.calls == Counter(dict.fromkeys(RECONCILE_READS, 1))


def test_with_an_access_logging_target_logging_is_read_and_held_to_it(s3) -> None:
    # Given the same bucket, but a baseline that names an access-logging target it does not log to
    policy = loads(POLICY + LOGS, "p.yaml")
    compliant(s3, policy)
    s3.create_bucket(Bucket="acme-access-logs")
    s3.calls.clear()

    decisions = reconcile(s3, policy)

    # Then GetBucketLogging is read once more and the gap is a posture.logging decision setting that target
    assert s3.calls == Counter(dict.fromkeys(RECONCILE_READS | {"GetBucketLogging"}, 1))
    [decision] = decisions
    assert decision.finding.rule == "posture.logging" and decision.finding.evidence["before"] is None
    assert [(a.target_bucket, a.target_prefix) for a in decision.actions] == [("acme-access-logs", "lab/")]
