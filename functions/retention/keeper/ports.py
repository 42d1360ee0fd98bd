"""The AWS reads of the retention function, one small class per concern (boto3 clients injected).

Writes are actions (:mod:`keeper.actions`), carried out by the layer's executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

from keeper.plan import Entry

from stage_policy import keys
from stage_policy.errors import is_code

#: Codes that mean "this bucket has none" rather than "could not read".
NO_LIFECYCLE = ("NoSuchLifecycleConfiguration",)
NO_LOCK = ("ObjectLockConfigurationNotFoundError",)
NO_TAGS = ("NoSuchTagSet",)


@dataclass
class BucketConfig:
    """What the reconcile reads of one bucket: four GETs."""

    name: str
    tags: dict[str, str]
    rules: list[dict[str, Any]]
    #: Other top-level fields of the lifecycle configuration (TransitionDefaultMinimumObjectSize), put back as read.
    lifecycle_extra: dict[str, Any] = field(default_factory=dict)
    versioning: str = "Off"  # Enabled | Suspended | Off (never enabled)
    lock_enabled: bool = False
    default_retention: dict[str, Any] | None = None
    #: False: GetObjectLockConfiguration not called (nothing needed it yet); ``Keeper.lock_state`` reads it on demand
    lock_read: bool = True


class BucketReader:
    """Lists buckets and reads the tags, lifecycle, versioning and Object Lock settings of one."""

    permissions = ("s3:ListAllMyBuckets", "s3:GetBucketTagging", "s3:GetLifecycleConfiguration",
                   "s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration")

    def __init__(self, s3: Any):
        self._s3 = s3

    def names(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self._s3.list_buckets(**kwargs)
            names += [b["Name"] for b in page.get("Buckets", [])]
            token = page.get("ContinuationToken")
            if not token:
                return names
            kwargs["ContinuationToken"] = token

    def read(self, bucket: str, tags: dict[str, str] | None = None, lock: bool = True) -> BucketConfig:
        """The bucket's settings; a missing tag set, lifecycle or lock configuration reads as none, anything else raises.

        ``lock=False``: the Object Lock configuration is left unread (``lock_read`` False), one GET fewer.
        """
        tags = self.tags(bucket) if tags is None else tags
        if not lock:
            return BucketConfig(bucket, tags, *self.lifecycle(bucket), self.versioning(bucket), lock_read=False)
        return BucketConfig(bucket, tags, *self.lifecycle(bucket), self.versioning(bucket), *self.object_lock(bucket))

    def tags(self, bucket: str) -> dict[str, str]:
        # read fresh, not through the layer's 5-minute tag cache: a PutBucketTagging event must see its own change
        try:
            return {t["Key"]: t["Value"] for t in self._s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])}
        except Exception as exc:
            if is_code(exc, *NO_TAGS):
                return {}
            raise

    def lifecycle(self, bucket: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        try:
            response = self._s3.get_bucket_lifecycle_configuration(Bucket=bucket)
        except Exception as exc:
            if is_code(exc, *NO_LIFECYCLE):
                return [], {}
            raise
        extra = {k: v for k, v in response.items() if k not in ("Rules", "ResponseMetadata")}
        return list(response.get("Rules", [])), extra

    def versioning(self, bucket: str) -> str:
        return self._s3.get_bucket_versioning(Bucket=bucket).get("Status") or "Off"

    def object_lock(self, bucket: str) -> tuple[bool, dict[str, Any] | None]:
        try:
            config = self._s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        except Exception as exc:
            if is_code(exc, *NO_LOCK):
                return False, None
            raise
        return config.get("ObjectLockEnabled") == "Enabled", (config.get("Rule") or {}).get("DefaultRetention")


@dataclass
class Page:
    """One ListObjectVersions page: its entries, and where the next page starts (None: the last)."""

    entries: list[Entry]
    next_key: str | None
    next_version: str | None


class VersionLister:
    """ListObjectVersions, one page (up to 1,000 versions and markers) per call."""

    permissions = ("s3:ListBucketVersions",)

    def __init__(self, s3: Any, page_size: int = 1000):
        self._s3 = s3
        self._size = page_size

    def pages(self, bucket: str, after_key: str | None = None) -> Iterator[Page]:
        """Every version and delete marker of keys after ``after_key`` (from the start when None)."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": self._size}
        if after_key:
            kwargs["KeyMarker"] = after_key
        while True:
            page = self._s3.list_object_versions(**kwargs)
            entries = [Entry(v["Key"], v.get("VersionId") or "null", v["LastModified"], bool(v.get("IsLatest")))
                       for v in page.get("Versions", [])]
            entries += [Entry(m["Key"], m.get("VersionId") or "null", m["LastModified"], bool(m.get("IsLatest")), marker=True)
                        for m in page.get("DeleteMarkers", [])]
            truncated = bool(page.get("IsTruncated"))
            next_key = page.get("NextKeyMarker") if truncated else None
            yield Page(entries, next_key, page.get("NextVersionIdMarker") if truncated else None)
            if not truncated:
                return
            kwargs["KeyMarker"] = next_key
            if page.get("NextVersionIdMarker"):
                kwargs["VersionIdMarker"] = page["NextVersionIdMarker"]
            else:
                kwargs.pop("VersionIdMarker", None)


def group_by_key(pages: Iterator[Page]) -> Iterator[list[Entry]]:
    """Every key's entries together, in key order; a key that continues on the next page waits for it."""
    pending: dict[str, list[Entry]] = {}
    for page in pages:
        for entry in page.entries:
            pending.setdefault(entry.key, []).append(entry)
        # keys sort lexicographically across pages; only the page's last key may continue on the next one
        ready = sorted(pending) if page.next_key is None else [k for k in sorted(pending) if k < page.next_key]
        for key in ready:
            yield pending.pop(key)
    for key in sorted(pending):
        yield pending.pop(key)


class LockReader:
    """The Object Lock state of one version: one HeadObject (legal hold, mode and retain-until in its headers).

    S3 omits those headers from HeadObject when the caller lacks s3:GetObjectRetention and
    s3:GetObjectLegalHold, so both are declared; and S3 itself refuses to delete a locked version
    (no bypass header is ever sent), which the delete action reports per key.
    """

    permissions = ("s3:GetObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold")

    def __init__(self, s3: Any):
        self._s3 = s3

    def read(self, bucket: str, entry: Entry) -> Entry:
        head = self._s3.head_object(Bucket=bucket, Key=entry.key, VersionId=entry.version_id)
        until = head.get("ObjectLockRetainUntilDate")
        if isinstance(until, str):
            until = datetime.fromisoformat(until.replace("Z", "+00:00"))
        if isinstance(until, datetime) and until.tzinfo is None:
            until = until.replace(tzinfo=timezone.utc)
        return entry.with_lock(head.get("ObjectLockLegalHoldStatus") == "ON", until)


class SweepMarkers:
    """Where a bucket's sweep stopped (cap or time budget), in the state table, so the next run continues there."""

    permissions = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem")
    TTL_SECONDS = 30 * 24 * 3600

    def __init__(self, ddb: Any, table: str):
        self._ddb, self._table = ddb, table

    def get(self, bucket: str) -> str | None:
        item = self._ddb.get_item(TableName=self._table, Key=keys.retention_sweep(bucket), ConsistentRead=True).get("Item")
        return item["after_key"]["S"] if item else None

    def put(self, bucket: str, after_key: str) -> None:
        expires = int(datetime.now(timezone.utc).timestamp()) + self.TTL_SECONDS
        self._ddb.put_item(TableName=self._table, Item={**keys.retention_sweep(bucket), "after_key": {"S": after_key},
                                                         keys.EXPIRES_AT: {"N": str(expires)}})

    def clear(self, bucket: str) -> None:
        self._ddb.delete_item(TableName=self._table, Key=keys.retention_sweep(bucket))


@dataclass(frozen=True)
class Remembered:
    """A bucket's memory: the stage last in force (a permanent one, or the one an approved restage moved it to)."""

    stage: str
    since: str = ""
    by: str | None = None  # the principal whose change put it there (None: first seen, or unknown)
    #: An operator's approval to move it to ``approved_to`` (``stagewarden retention restage``), valid until ``approved_until``.
    approved_to: str | None = None
    approved_by: str | None = None
    approved_reason: str | None = None
    approved_operator: str | None = None
    approved_until: str | None = None
    approved_at: str | None = None

    def approval(self, now: datetime) -> str | None:
        """The stage the bucket may move to now (None: no approval, or it lapsed)."""
        if not self.approved_to or not self.approved_until:
            return None
        try:
            until = datetime.fromisoformat(self.approved_until)
        except ValueError:
            return None  # an unreadable deadline approves nothing (fail closed)
        return self.approved_to if now < until else None


class StageMemory:
    """Each bucket's last permanent stage, in the state table (``retention#stage#<bucket>``, no TTL).

    A retag is refused when it would move a remembered permanent bucket to a perishable stage (or out of management)
    without an operator's approval; see :meth:`keeper.reconcile.Keeper.view`.
    """

    permissions = ("dynamodb:GetItem", "dynamodb:PutItem")
    FIELDS = ("since", "by", "approved_to", "approved_by", "approved_reason", "approved_operator", "approved_until",
              "approved_at")

    def __init__(self, ddb: Any, table: str):
        self._ddb, self._table = ddb, table

    def get(self, bucket: str) -> Remembered | None:
        item = self._ddb.get_item(TableName=self._table, Key=keys.retention_stage(bucket), ConsistentRead=True).get("Item")
        if not item or "stage" not in item:
            return None
        return Remembered(item["stage"]["S"], **{f: item[f]["S"] for f in self.FIELDS if f in item})

    def put(self, bucket: str, memory: Remembered) -> None:
        """Replace the bucket's memory (an approval not carried in ``memory`` is consumed)."""
        values = {"stage": memory.stage, **{f: getattr(memory, f) for f in self.FIELDS}}
        self._ddb.put_item(TableName=self._table, Item={**keys.retention_stage(bucket),
                                                         **{k: {"S": v} for k, v in values.items() if v is not None}})


class Evaluations:
    """Answers the AWS Config rule: PutEvaluations, 100 per call.

    ``test_mode`` when the invocation's result token is ``TESTMODE`` (the rdk convention for a
    local invocation): Config then checks the call but records nothing, which is also the only
    PutEvaluations moto implements.
    """

    permissions = ("config:PutEvaluations",)

    def __init__(self, config: Any):
        self._config = config

    def put(self, evaluations: list[dict[str, Any]], result_token: str) -> list[dict[str, Any]]:
        failed: list[dict[str, Any]] = []
        for i in range(0, len(evaluations), 100):
            response = self._config.put_evaluations(Evaluations=evaluations[i:i + 100], ResultToken=result_token,
                                                    TestMode=result_token == "TESTMODE")
            failed += response.get("FailedEvaluations", [])
        return failed
