"""What the gate reads from S3: object heads and bodies, and drift baselines (boto3 client injected).

Writes (report, tags, promotion, quarantine) are actions (:mod:`gate.actions`), carried out
by the layer's executor.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any, Callable

from gate.actions import version_arg

from stage_policy.errors import describe, is_code, is_transient
from stage_policy.runtime import IDEMPOTENCY_PERMISSIONS


class ReplaySafety:
    """What ``Runtime.once`` does on the state table (Powertools Idempotency), declared like a port."""

    permissions = IDEMPOTENCY_PERMISSIONS


class S3RangeReader(io.RawIOBase):
    """A seekable view of one S3 object version, read with ranged GETs (Parquet needs its footer first)."""

    permissions = ("s3:GetObject", "s3:GetObjectVersion")

    def __init__(self, s3: Any, bucket: str, key: str, size: int, version: str | None, block: int = 8 << 20,
                 if_match: str | None = None):
        self._s3, self._bucket, self._key, self._size, self._version, self._block = s3, bucket, key, size, version, block
        self._guard = {"IfMatch": f'"{if_match}"'} if if_match else {}
        self._pos = 0
        self._cache: tuple[int, bytes] = (-1, b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = {0: offset, 1: self._pos + offset, 2: self._size + offset}[whence]
        return self._pos

    def readinto(self, b: Any) -> int:
        if self._pos >= self._size:
            return 0
        start, data = self._cache
        if not (start <= self._pos < start + len(data)):
            end = min(self._size, self._pos + max(self._block, len(b))) - 1
            data = self._s3.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-{end}",
                                       **version_arg(self._version), **self._guard)["Body"].read()
            start = self._pos
            self._cache = (start, data)
        chunk = data[self._pos - start:self._pos - start + len(b)]
        b[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


class ObjectStore:
    """Reads of the objects the gate validates (HeadObject is authorised by s3:GetObject)."""

    permissions = ("s3:GetObject", "s3:GetObjectVersion")

    def __init__(self, s3: Any):
        self._s3 = s3

    def head(self, bucket: str, key: str, version: str | None) -> dict[str, Any] | None:
        """The object's head, or None when there is no such object (or version)."""
        try:
            return self._s3.head_object(Bucket=bucket, Key=key, **version_arg(version))
        except Exception as exc:
            if is_code(exc, "404", "NoSuchKey", "NotFound", "NoSuchVersion"):
                return None
            raise

    def open(self, bucket: str, key: str, version: str | None, size: int, seekable: bool, if_match: str | None = None) -> Any:
        """A readable body; ``if_match`` (an unversioned object's ETag) makes a read of overwritten bytes fail."""
        if seekable:
            return S3RangeReader(self._s3, bucket, key, size, version, if_match=if_match)
        guard = {"IfMatch": f'"{if_match}"'} if if_match else {}
        return self._s3.get_object(Bucket=bucket, Key=key, **version_arg(version), **guard)["Body"]

    def read_range(self, bucket: str, key: str, version: str | None, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` (fewer at the end of the object)."""
        if length <= 0:
            return b""
        return self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}",
                                   **version_arg(version))["Body"].read()

    def get_json(self, location: str) -> Any:
        bucket, _, key = location.removeprefix("s3://").partition("/")
        return json.loads(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())


class BucketPolicies:
    """Reads a bucket's policy (the gate decides whether its fence is in place, and whether it fits)."""

    permissions = ("s3:GetBucketPolicy",)

    def __init__(self, s3: Any):
        self._s3 = s3

    def get(self, bucket: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._s3.get_bucket_policy(Bucket=bucket)["Policy"])
        except Exception as exc:
            if is_code(exc, "NoSuchBucketPolicy"):
                return None
            raise



class BaselineUnreadable(Exception):
    """The contract's drift baseline could not be read (or is not a profile); drift is not evaluated."""

    def __init__(self, location: str, error: str):
        self.location, self.error = location, error
        super().__init__(f"{location}: {error}")


class Baselines:
    """Drift baselines by location: a successful read is kept ``ttl_seconds``; a failed one is not kept.

    Baselines change rarely, so one read per container and TTL is enough. A failure (access
    denied, throttled, missing, not a profile) raises :class:`BaselineUnreadable` and is
    retried on the next object, never remembered for the container's life.
    """

    permissions = ObjectStore.permissions

    def __init__(self, read: Callable[[str], Any], ttl_seconds: float = 600.0, clock: Callable[[], float] = time.monotonic):
        self._read, self._ttl, self._clock = read, ttl_seconds, clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, location: str) -> dict[str, Any]:
        now = self._clock()
        hit = self._cache.get(location)
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        try:
            profile = self._read(location)
        except json.JSONDecodeError as exc:
            raise BaselineUnreadable(location, f"not JSON ({exc.msg} at line {exc.lineno})") from None
        except Exception as exc:  # noqa: BLE001 - any failure is reported (a finding), drift is then not evaluated
            if is_transient(exc):
                raise  # throttled or a 5xx: the record is retried; validating without drift would let drifted data pass
            raise BaselineUnreadable(location, describe(exc)) from None
        if not isinstance(profile, dict) or not isinstance(profile.get("columns"), dict):
            raise BaselineUnreadable(location, "not a drift profile (no 'columns' object; see `stagewarden data profile`)")
        self._cache[location] = (now, profile)
        return profile


class ArtifactRegister:
    """Reads what the gate registered for a model artifact (state table; the write is :class:`gate.actions.RegisterArtifact`)."""

    permissions = ("dynamodb:GetItem",)

    def __init__(self, ddb: Any, table: str):
        self._ddb, self._table = ddb, table

    def get(self, bucket: str, key: str) -> dict[str, str] | None:
        from stage_policy import keys

        item = self._ddb.get_item(TableName=self._table, Key=keys.registry_artifact(bucket, key), ConsistentRead=True).get("Item")
        return None if not item else {k: v.get("S", v.get("N", "")) for k, v in item.items()}
