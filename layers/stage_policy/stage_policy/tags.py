"""Bucket tags for the resource map: `stagewarden:stage` on a bucket beats any name pattern.

One GetBucketTagging per bucket, cached per container for ``ttl_seconds``; a bucket whose
tags cannot be read (no tags, another account's bucket, access denied) maps by name.
"""

from __future__ import annotations

import time
from typing import Any


class BucketTags:
    permissions = ("s3:GetBucketTagging",)

    def __init__(self, s3: Any, ttl_seconds: float = 300.0):
        self._s3 = s3
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}

    def __call__(self, bucket: str) -> dict[str, str]:
        now = time.monotonic()
        hit = self._cache.get(bucket)
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        try:
            tags = {t["Key"]: t["Value"] for t in self._s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])}
        except Exception as exc:  # noqa: BLE001 - NoSuchTagSet, AccessDenied, NoSuchBucket: map by name
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code is None:
                raise
            tags = {}
        self._cache[bucket] = (now, tags)
        return tags
