"""What a reconcile reads of a compliant stage bucket (bench/posture.py measures the same on the emulator)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from unittest import mock

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
  buckets:
    - {pattern: "acme-lab-*", stage: prod-discovery}
    - {pattern: "acme-prod-*", stage: final-prod}
"""
LOGS = "stages:\n  prod-discovery:\n    posture: {access_logging: {target_bucket: acme-access-logs, target_prefix: lab/}}\n"
RECONCILE_READS = {"GetBucketTagging", "GetBucketLifecycleConfiguration", "GetBucketVersioning", "GetBucketEncryption",
                   "GetPublicAccessBlock", "GetBucketPolicy"}


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3")
        calls: Counter = Counter()
        client.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))
        client.calls = calls
        yield client


def compliant(s3, policy, stage: str = "prod-discovery", bucket: str = BUCKET) -> None:
    s3.create_bucket(Bucket=bucket, **({"ObjectLockEnabledForBucket": True} if policy.stages[stage].retention.immutable else {}))
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    rules = lifecycle_diff(policy.stages[stage].retention, [], policy.safety.min_retention_days).desired
    if rules:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    if policy.stages[stage].retention.immutable:
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True))
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [tls_statement(bucket)]}))
    s3.calls.clear()


def keeper(s3, policy, now: datetime | None = None) -> Keeper:
    return Keeper(policy, BucketReader(s3), VersionLister(s3), LockReader(s3), now or datetime.now(timezone.utc),
                  posture=PostureReader(s3))


def reconcile(s3, policy, bucket: str = BUCKET) -> list:
    k = keeper(s3, policy)
    return k.reconcile(k.view(bucket))


def test_a_compliant_bucket_costs_six_reads_and_no_write_without_an_access_logging_target(s3) -> None:
    # Given a lab bucket at its lifecycle and posture baseline, and a baseline that names no access-logging target
    policy = loads(POLICY, "p.yaml")
    compliant(s3, policy)

    decisions = reconcile(s3, policy)

    # Then nothing is decided, each reconcile read happens once, nothing is written, and GetBucketLogging and
    # GetObjectLockConfiguration are not called (no access-logging target; a perishable stage with no sweep here)
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


def test_an_immutable_stage_reads_the_object_lock_configuration(s3) -> None:
    # Given a final-prod bucket (immutable) with Object Lock and a default retention, otherwise at baseline
    policy = loads(POLICY, "p.yaml")
    compliant(s3, policy, "final-prod", "acme-prod-out")

    decisions = reconcile(s3, policy, "acme-prod-out")

    # Then its lock is read (retention.object-lock-missing needs it) and it is compliant
    assert decisions == [] and s3.calls["GetObjectLockConfiguration"] == 1


def test_a_sweep_reads_the_lock_only_once_a_version_is_due_and_keeps_a_locked_one(s3) -> None:
    import moto.s3.models as s3_models

    # Given a lab bucket with Object Lock on and, under raw/ (30 days), a version written 40 days ago under a
    # retention that runs a year more, now noncurrent
    policy = loads(POLICY, "p.yaml")
    bucket = "acme-lab-locked"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    then = (datetime.now(timezone.utc) - timedelta(days=40)).replace(tzinfo=None)
    with mock.patch.object(s3_models, "utcnow", lambda: then):
        s3.put_object(Bucket=bucket, Key="raw/a.csv", Body=b"x", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=datetime.now(timezone.utc) + timedelta(days=365))
        s3.put_object(Bucket=bucket, Key="raw/a.csv", Body=b"y")
    s3.calls.clear()
    k = keeper(s3, policy)
    view = k.view(bucket)
    assert s3.calls["GetObjectLockConfiguration"] == 0 and not view.config.lock_read  # the reconcile did not need it

    sweep, _, _ = k.plan_sweep(view, "enforce", cap=100)

    # Then the sweep read the lock configuration once (versions were due) and kept the locked version
    assert s3.calls["GetObjectLockConfiguration"] == 1 and view.config.lock_enabled
    ids = [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]]
    [unlocked] = [i for i in ids if "ObjectLockMode" not in s3.head_object(Bucket=bucket, Key="raw/a.csv", VersionId=i)]
    assert sweep.tally.kept == {"retention": 1}
    assert [e.version_id for e in sweep.delete] == [unlocked]
