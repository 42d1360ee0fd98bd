"""Retention fixtures: template.yaml provisioned under mock_aws, stage buckets, and versions written in the past."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator
from unittest import mock

import boto3
import pytest

from tests.helpers import ROOT, seed_policy_in_process, subscribe_queue

EVENTS = ROOT / "events" / "retention"
LAB, PROD, OTHER = "acme-lab-data", "acme-prod-out", "team-scratch"
RAW_30_TAMPERED = {"ID": "stagewarden-class-raw/", "Status": "Enabled", "Filter": {"Prefix": "raw/"}, "Expiration": {"Days": 3650}}
OWNER_ARCHIVE = {"ID": "owner-archive", "Status": "Enabled", "Filter": {"Prefix": "archive/"},
                 "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}


@contextmanager
def written_days_ago(days: float) -> Iterator[None]:
    """Objects (and delete markers) written inside this block get LastModified ``days`` ago (moto's clock, patched)."""
    import moto.s3.models as s3_models

    when = (datetime.now(timezone.utc) - timedelta(days=days)).replace(tzinfo=None)
    with mock.patch.object(s3_models, "utcnow", lambda: when):
        yield


def event(name: str, **detail_params) -> dict:
    data = json.loads((EVENTS / name).read_text())
    if detail_params:
        data["detail"]["requestParameters"].update(detail_params)
    return data


def policy_variant(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = (ROOT / "policy.example.yaml").read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


#: final-prod in enforce too (the example leaves it to defaults.mode, dry_run)
PROD_ENFORCE = ("    retention: { permanent: true, immutable: true }\n", "    retention: { permanent: true, immutable: true }\n    mode: enforce\n")


def versions(bucket: str) -> list[tuple[str, bool]]:
    """(key, is delete marker) of every version left, sorted."""
    page = boto3.client("s3").list_object_versions(Bucket=bucket)
    return sorted([(v["Key"], False) for v in page.get("Versions", [])] + [(m["Key"], True) for m in page.get("DeleteMarkers", [])])


def rules(bucket: str) -> dict[str, dict]:
    try:
        return {r["ID"]: r for r in boto3.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    except Exception as exc:  # noqa: BLE001
        if "NoSuchLifecycleConfiguration" in str(exc):
            return {}
        raise


@pytest.fixture(autouse=True)
def _https_requests_pass_tls_only_statements():
    """moto evaluates a bucket policy's Deny statements without their conditions, so a TLS-only deny would refuse
    every request; these requests are HTTPS, so such a statement never applies to them: moto is told so."""
    import moto.s3.models as s3_models

    original = s3_models.FakeBucket.get_permission

    def get_permission(self, action, resource):
        if self.policy is None:
            return original(self, action, resource)
        doc = json.loads(self.policy.decode())
        statements = doc.get("Statement", [])
        statements = statements if isinstance(statements, list) else [statements]
        kept = [s for s in statements if "aws:SecureTransport" not in json.dumps(s.get("Condition", {}))]
        if len(kept) == len(statements):
            return original(self, action, resource)
        if not kept:
            from moto.iam.access_control import PermissionResult

            return PermissionResult.NEUTRAL
        saved, self.policy = self.policy, json.dumps({**doc, "Statement": kept}).encode()
        try:
            return original(self, action, resource)
        finally:
            self.policy = saved

    with mock.patch.object(s3_models.FakeBucket, "get_permission", get_permission):
        yield


def postured(bucket: str) -> None:
    """Bring a bucket to the full posture baseline (SSE-KMS, the four blocks, the TLS-only statement)."""
    s3 = boto3.client("s3")
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "OwnersTls", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}))


@pytest.fixture
def lab(stack):
    """Deployed with DefaultRemediationMode=enforce and the example policy (prod-discovery enforce, final-prod dry run);
    a versioned lab bucket, a versioned prod bucket with Object Lock, an unmanaged bucket, and a subscriber."""
    stack.parameters["DefaultRemediationMode"] = "enforce"
    seed_policy_in_process(stack, ROOT / "policy.example.yaml")
    s3 = boto3.client("s3")
    for bucket in (LAB, OTHER):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.create_bucket(Bucket=PROD, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=PROD, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    for bucket in (LAB, PROD):  # at the posture baseline: these tests are about retention (test_posture.py drifts them)
        postured(bucket)
    boto3.client("s3control").put_public_access_block(AccountId=stack.account_id, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    stack.inbox = subscribe_queue(stack)
    return stack
