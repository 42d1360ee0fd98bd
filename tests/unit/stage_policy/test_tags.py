"""Bucket tags for the resource map, read once per bucket per container."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from stage_policy.tags import BucketTags


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="tagged")
        client.put_bucket_tagging(Bucket="tagged", Tagging={"TagSet": [{"Key": "stagewarden:stage", "Value": "final-prod"}]})
        client.create_bucket(Bucket="untagged")
        yield client


def test_tags_are_read_and_cached(s3) -> None:
    tags = BucketTags(s3)

    first = tags("tagged")
    s3.delete_bucket_tagging(Bucket="tagged")

    assert first == {"stagewarden:stage": "final-prod"} and tags("tagged") == first  # cached


def test_no_tags_or_no_bucket_map_by_name(s3) -> None:
    tags = BucketTags(s3)

    assert tags("untagged") == {} and tags("someone-elses-bucket") == {}


def test_the_cache_expires(s3) -> None:
    tags = BucketTags(s3, ttl_seconds=0)
    tags("tagged")
    s3.delete_bucket_tagging(Bucket="tagged")

    assert tags("tagged") == {}
