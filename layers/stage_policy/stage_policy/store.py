"""Where the deployed functions read the policy from: ``s3://bucket/key`` or a local file path.

Functions load the policy once per container and refresh it after ``ttl_seconds``, so a
pushed policy takes effect within minutes without a redeploy. A policy that fails
validation raises :class:`~stage_policy.loader.PolicyError`; callers alert on it, they
never fall back to "allow".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from stage_policy.errors import is_transient
from stage_policy.loader import PolicyError, loads
from stage_policy.model import Policy


@dataclass(frozen=True)
class PolicyText:
    text: str
    source: str
    version: str | None


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"s3 URI needs a bucket and a key: {uri!r}")
    return bucket, key


class PolicyStore:
    """Fetches the policy document. Takes a boto3 S3 client (or a factory for one)."""

    permissions = ("s3:GetObject", "s3:GetObjectVersion")

    def __init__(self, s3_client: Any | Callable[[], Any] = None, ttl_seconds: float = 300.0):
        self._s3 = s3_client
        self._ttl = ttl_seconds
        self._cached: tuple[float, str, Policy] | None = None
        self.last_error: PolicyError | None = None

    def _client(self) -> Any:
        if callable(self._s3) and not hasattr(self._s3, "get_object"):
            self._s3 = self._s3()
        return self._s3

    def fetch(self, location: str) -> PolicyText:
        if location.startswith("s3://"):
            bucket, key = parse_s3_uri(location)
            try:
                obj = self._client().get_object(Bucket=bucket, Key=key)
            except Exception as exc:
                if is_transient(exc):
                    raise  # throttling, a 5xx: the invocation is retried; "unusable policy" would be a false alarm
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
                raise PolicyError(location, [("", f"cannot read the policy object ({code})")]) from None
            body = obj["Body"].read()
            version = obj.get("VersionId") or obj.get("ETag")
        else:
            path = Path(location[7:] if location.startswith("file://") else location)
            try:
                body = path.read_bytes()
            except OSError as exc:
                raise PolicyError(location, [("", f"cannot read file ({exc.strerror or exc})")]) from None
            version = None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError(location, [("", "the policy is not UTF-8 text")]) from None
        return PolicyText(text, location, version)

    def load(self, location: str) -> Policy:
        """The validated policy, cached for ``ttl_seconds`` per location.

        When a refresh finds the policy unusable, the last valid one stays in force (the
        policy guard alerts on the bad one) and ``last_error`` says why; with no valid
        policy yet (a cold start) the PolicyError propagates and the function acts on nothing.
        """
        now = time.monotonic()
        cached = self._cached if self._cached and self._cached[1] == location else None
        if cached and now - cached[0] < self._ttl:
            return cached[2]
        try:
            doc = self.fetch(location)
            policy = loads(doc.text, doc.source)
        except PolicyError as exc:
            self.last_error = exc
            if cached is None:
                raise
            self._cached = (now, location, cached[2])
            return cached[2]
        self.last_error = None
        self._cached = (now, location, policy)
        return policy
