"""The AWS calls of the schema gate, one small class per concern (boto3 clients injected)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from typing import Any

VALIDATION_TAG = "stagewarden:validation"
QUARANTINE_SID = "StagewardenQuarantineFailedObjects"


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)


class S3RangeReader(io.RawIOBase):
    """A seekable view of one S3 object version, read with ranged GETs (Parquet needs its footer first)."""

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
            kwargs = {"VersionId": self._version} if self._version else {}
            data = self._s3.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-{end}", **kwargs)["Body"].read()
            start = self._pos
            self._cache = (start, data)
        chunk = data[self._pos - start:self._pos - start + len(b)]
        b[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


class ObjectStore:
    permissions = ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging",
                   "s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:PutObject")

    def __init__(self, s3: Any):
        self._s3 = s3

    def _v(self, version: str | None) -> dict[str, str]:
        return {"VersionId": version} if version and version != "null" else {}

    def head(self, bucket: str, key: str, version: str | None) -> dict[str, Any]:
        return self._s3.head_object(Bucket=bucket, Key=key, **self._v(version))

    def open(self, bucket: str, key: str, version: str | None, size: int, seekable: bool) -> Any:
        if seekable:
            return S3RangeReader(self._s3, bucket, key, size, version if version != "null" else None)
        return self._s3.get_object(Bucket=bucket, Key=key, **self._v(version))["Body"]

    def tag(self, bucket: str, key: str, version: str | None, status: str, contract: str) -> None:
        """Set the validation tags, keeping the object's other tags."""
        current = self._s3.get_object_tagging(Bucket=bucket, Key=key, **self._v(version))["TagSet"]
        keep = [t for t in current if not t["Key"].startswith("stagewarden:validation")]
        tags = keep + [{"Key": VALIDATION_TAG, "Value": status}, {"Key": "stagewarden:validation-contract", "Value": contract[:256]}]
        self._s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tags[:10]}, **self._v(version))

    def put_json(self, bucket: str, key: str, body: dict[str, Any]) -> None:
        self._s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body, indent=2, default=str).encode(),
                            ContentType="application/json")

    def copy(self, bucket: str, key: str, version: str | None, dest_key: str) -> None:
        source = {"Bucket": bucket, "Key": key, **self._v(version)}
        self._s3.copy_object(Bucket=bucket, Key=dest_key, CopySource=source, TaggingDirective="COPY")

    def get_json(self, location: str) -> dict[str, Any]:
        bucket, _, key = location[5:].partition("/")
        return json.loads(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())


class Quarantine:
    """Keeps one statement in the bucket policy: reads of objects tagged failed are denied to all but the gate."""

    permissions = ("s3:GetBucketPolicy", "s3:PutBucketPolicy")

    def __init__(self, s3: Any, gate_role_arn: str):
        self._s3, self._gate = s3, gate_role_arn

    def statement(self, bucket: str) -> dict[str, Any]:
        return {
            "Sid": QUARANTINE_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": f"arn:aws:s3:::{bucket}/*",
            "Condition": {
                "StringEquals": {f"s3:ExistingObjectTag/{VALIDATION_TAG}": "failed"},
                "ArnNotEquals": {"aws:PrincipalArn": self._gate},
            },
        }

    def ensure(self, bucket: str) -> str:
        try:
            policy = json.loads(self._s3.get_bucket_policy(Bucket=bucket)["Policy"])
        except Exception as exc:
            if _code(exc) != "NoSuchBucketPolicy":
                raise
            policy = {"Version": "2012-10-17", "Statement": []}
        wanted = self.statement(bucket)
        statements = [s for s in policy.get("Statement", []) if s.get("Sid") != QUARANTINE_SID]
        if any(s.get("Sid") == QUARANTINE_SID and s == wanted for s in policy.get("Statement", [])):
            return f"bucket policy of {bucket} already denies reads of failed objects"
        self._s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({**policy, "Statement": statements + [wanted]}))
        return f"bucket policy of {bucket} now denies reads of objects tagged {VALIDATION_TAG}=failed (except the gate)"


class Ledger:
    """Which object versions are done, so a redelivered event neither re-validates nor re-alerts."""

    permissions = ("dynamodb:GetItem", "dynamodb:PutItem")

    def __init__(self, ddb: Any, table: str, keep_days: int = 30):
        self._ddb, self._table, self._keep = ddb, table, keep_days

    def _key(self, bucket: str, key: str, version: str | None) -> dict[str, Any]:
        return {"pk": {"S": f"gate#{bucket}/{key}"}, "sk": {"S": version or "null"}}

    def done(self, bucket: str, key: str, version: str | None) -> bool:
        return "Item" in self._ddb.get_item(TableName=self._table, Key=self._key(bucket, key, version))

    def mark(self, bucket: str, key: str, version: str | None, passed: bool) -> None:
        now = int(datetime.now(timezone.utc).timestamp())
        self._ddb.put_item(TableName=self._table, Item={**self._key(bucket, key, version), "passed": {"BOOL": passed},
                                                         "expires_at": {"N": str(now + self._keep * 86400)}})
