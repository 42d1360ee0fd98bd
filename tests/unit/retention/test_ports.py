"""keeper.ports against moto: pagination across pages, lock state, missing configurations, sweep markers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto import mock_aws

from keeper.ports import BucketReader, LockReader, SweepMarkers, VersionLister, group_by_key


@pytest.fixture
def s3():
    with mock_aws():
        yield boto3.client("s3")


def test_a_key_spanning_pages_is_planned_whole(s3) -> None:
    s3.create_bucket(Bucket="acme-lab-pages")
    s3.put_bucket_versioning(Bucket="acme-lab-pages", VersioningConfiguration={"Status": "Enabled"})
    for body in (b"1", b"2", b"3"):
        s3.put_object(Bucket="acme-lab-pages", Key="a", Body=body)
    s3.put_object(Bucket="acme-lab-pages", Key="b", Body=b"1")
    s3.delete_object(Bucket="acme-lab-pages", Key="b")
    calls = []
    s3.meta.events.register("before-call.s3.ListObjectVersions", lambda **kw: calls.append(1))

    groups = list(group_by_key(VersionLister(s3, page_size=2).pages("acme-lab-pages")))

    assert [(g[0].key, len(g), sum(e.is_latest for e in g), sum(e.marker for e in g)) for g in groups] == [("a", 3, 1, 0), ("b", 2, 1, 1)]
    assert len(calls) == 3


def test_lock_state_is_read_from_one_head_object(s3) -> None:
    s3.create_bucket(Bucket="acme-lab-lock", ObjectLockEnabledForBucket=True)
    until = (datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=0)
    locked = s3.put_object(Bucket="acme-lab-lock", Key="k", Body=b"x", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    held = s3.put_object(Bucket="acme-lab-lock", Key="h", Body=b"x")
    s3.put_object_legal_hold(Bucket="acme-lab-lock", Key="h", VersionId=held["VersionId"], LegalHold={"Status": "ON"})
    entries = {e.key: e for page in VersionLister(s3).pages("acme-lab-lock") for e in page.entries}

    k, h = (LockReader(s3).read("acme-lab-lock", entries[name]) for name in ("k", "h"))

    assert k.lock_read and not k.legal_hold and k.retain_until == until
    assert h.lock_read and h.legal_hold and h.retain_until is None
    assert locked["VersionId"] == entries["k"].version_id


def test_missing_tags_lifecycle_and_lock_read_as_none(s3) -> None:
    s3.create_bucket(Bucket="acme-lab-bare")

    config = BucketReader(s3).read("acme-lab-bare")

    assert (config.tags, config.rules, config.versioning, config.lock_enabled, config.default_retention) == ({}, [], "Off", False, None)
    assert "acme-lab-bare" in BucketReader(s3).names()


def test_sweep_markers_round_trip_with_a_ttl(s3) -> None:
    ddb = boto3.client("dynamodb")
    ddb.create_table(TableName="state", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}])
    markers = SweepMarkers(ddb, "state")

    markers.put("acme-lab-data", "raw/2.csv")
    item = ddb.get_item(TableName="state", Key={"pk": {"S": "retention#sweep#acme-lab-data"}, "sk": {"S": "marker"}})["Item"]
    assert markers.get("acme-lab-data") == "raw/2.csv" and int(item["expires_at"]["N"]) > datetime.now(timezone.utc).timestamp()
    markers.clear("acme-lab-data")
    assert markers.get("acme-lab-data") is None
