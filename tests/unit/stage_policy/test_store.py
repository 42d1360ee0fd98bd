"""Functions read the policy from S3 (or a file), cache it, and keep the last valid one."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from stage_policy.loader import PolicyError
from stage_policy.store import PolicyStore, parse_s3_uri

VALID = "framework: two-stage\n"
INVALID = "framework: two-stage\nstages: {prod-discovery: {retention: {default_days: 0}}}\n"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="policies")
        client.put_bucket_versioning(Bucket="policies", VersioningConfiguration={"Status": "Enabled"})
        yield client


def test_loads_and_validates_the_policy_object(s3) -> None:
    s3.put_object(Bucket="policies", Key="policy.yaml", Body=VALID.encode())

    policy = PolicyStore(s3).load("s3://policies/policy.yaml")

    assert list(policy.stages) == ["prod-discovery", "final-prod"]


def test_fetch_reports_the_object_version(s3) -> None:
    version = s3.put_object(Bucket="policies", Key="policy.yaml", Body=VALID.encode())["VersionId"]

    assert PolicyStore(s3).fetch("s3://policies/policy.yaml").version == version


def test_a_missing_policy_object_is_a_policy_error_naming_it(s3) -> None:
    with pytest.raises(PolicyError, match=r"s3://policies/missing.yaml: cannot read the policy object \(NoSuchKey\)"):
        PolicyStore(s3).load("s3://policies/missing.yaml")


def test_an_invalid_policy_on_a_cold_start_raises(s3) -> None:
    s3.put_object(Bucket="policies", Key="policy.yaml", Body=INVALID.encode())

    with pytest.raises(PolicyError, match="default_days: must be >= 1"):
        PolicyStore(s3).load("s3://policies/policy.yaml")


def test_a_broken_update_keeps_the_last_valid_policy_and_says_why(s3) -> None:
    store = PolicyStore(s3, ttl_seconds=0)
    s3.put_object(Bucket="policies", Key="policy.yaml", Body=VALID.encode())
    first = store.load("s3://policies/policy.yaml")

    s3.put_object(Bucket="policies", Key="policy.yaml", Body=INVALID.encode())
    second = store.load("s3://policies/policy.yaml")

    assert second is first
    assert store.last_error is not None and "default_days" in str(store.last_error)


def test_the_cache_serves_within_its_ttl(s3) -> None:
    store = PolicyStore(s3, ttl_seconds=300)
    s3.put_object(Bucket="policies", Key="policy.yaml", Body=VALID.encode())
    first = store.load("s3://policies/policy.yaml")
    s3.delete_object(Bucket="policies", Key="policy.yaml")

    assert store.load("s3://policies/policy.yaml") is first


def test_local_files_are_read_too(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(VALID)

    assert "final-prod" in PolicyStore(None).load(f"file://{path}").stages


@pytest.mark.parametrize("uri", ["policies/policy.yaml", "s3://policies", "s3:///key"])
def test_bad_s3_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        parse_s3_uri(uri)
