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

from stage_policy.errors import describe
from stage_policy.runtime import IDEMPOTENCY_PERMISSIONS


class ReplaySafety:
    """What ``Runtime.once`` does on the state table (Powertools Idempotency), declared like a port."""

    permissions = IDEMPOTENCY_PERMISSIONS


class S3RangeReader(io.RawIOBase):
    """A seekable view of one S3 object version, read with ranged GETs (Parquet needs its footer first)."""

    permissions = ("s3:GetObject", "s3:GetObjectVersion")

    def __init__(self, s3: Any, bucket: str, key: str, size: int, version: str | None, block: int = 8 << 20):
        self._s3, self._bucket, self._key, self._size, self._version, self._block = s3, bucket, key, size, version, block
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
                                       **version_arg(self._version))["Body"].read()
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

    def head(self, bucket: str, key: str, version: str | None) -> dict[str, Any]:
        return self._s3.head_object(Bucket=bucket, Key=key, **version_arg(version))

    def open(self, bucket: str, key: str, version: str | None, size: int, seekable: bool) -> Any:
        if seekable:
            return S3RangeReader(self._s3, bucket, key, size, version)
        return self._s3.get_object(Bucket=bucket, Key=key, **version_arg(version))["Body"]

    def get_json(self, location: str) -> Any:
        bucket, _, key = location.removeprefix("s3://").partition("/")
        return json.loads(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())


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
            raise BaselineUnreadable(location, describe(exc)) from None
        if not isinstance(profile, dict) or not isinstance(profile.get("columns"), dict):
            raise BaselineUnreadable(location, "not a drift profile (no 'columns' object; see `stagewarden data profile`)")
        self._cache[location] = (now, profile)
        return profile
