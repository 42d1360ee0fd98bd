"""Retention actions: typed, with the IAM actions each needs; carried out by the layer's executor.

Only :class:`DeleteVersions` deletes data: it spends ``safety.max_deletions_per_run`` (one per
version or marker), never sends the Object Lock bypass header, and reports every key S3
refused. The lifecycle rewrite checks that the configuration is still the one it was planned
from, so a concurrent change by the owner is never overwritten with a stale copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from keeper.plan import Entry, canonical

from stage_policy.actions import Action, Clients, Skipped
from stage_policy.errors import is_code


def _fingerprint(rules: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> list[str]:
    return sorted(json.dumps(canonical(r), sort_keys=True, default=str) for r in rules)


def _tags(s3: Any, bucket: str) -> dict[str, str]:
    try:
        return {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])}
    except Exception as exc:
        if not is_code(exc, "NoSuchTagSet"):
            raise  # unreadable: the deletion fails (fail closed) and the invocation is retried
        return {}


class StageGuard:
    """The sweep's re-check: before each deletion request of one bucket, its tags are read again and mapped to a stage.

    The sweep was planned from one read of the tags, minutes earlier on a large bucket. Once they map the bucket to
    another stage than the one planned (an admin tagged it final-prod, or another stage with longer retention),
    that request and every later one of the bucket's sweep is skipped (:class:`~stage_policy.actions.Skipped`), and
    the sweep marker is left where it was. Cost: one GetBucketTagging per DeleteObjects request (per 1,000
    deletions) and per delete marker placed. Shared by the actions of one bucket's sweep in one invocation only.
    """

    permissions = ("s3:GetBucketTagging",)

    def __init__(self, bucket: str, planned: str | None, stage_of: Callable[[dict[str, str]], str | None]):
        self.bucket, self.planned, self._stage_of = bucket, planned, stage_of
        self.stopped: str | None = None

    def check(self, s3: Any) -> None:
        if self.stopped is None:
            now = self._stage_of(_tags(s3, self.bucket))
            if now == self.planned:
                return
            self.stopped = (f"{self.bucket} now maps to {f'stage {now}' if now else 'no stage'}, not {self.planned} as when "
                            "its sweep was planned: its sweep stopped (the next run re-plans it)")
        raise Skipped(self.stopped)


class LifecycleChanged(RuntimeError):
    """The bucket's lifecycle changed between planning and writing; its own event re-plans it."""


@dataclass(frozen=True)
class PutLifecycle(Action):
    """Bring a bucket's lifecycle to policy with one PutBucketLifecycleConfiguration (or delete it when empty)."""

    kind: ClassVar[str] = "put-lifecycle"
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetBucketTagging", "s3:GetLifecycleConfiguration",
                                              "s3:PutLifecycleConfiguration")

    rules: tuple[dict[str, Any], ...] = ()
    expected: tuple[dict[str, Any], ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()
    summary: str = ""
    #: (tag key, the stage tag's value when planned; None: none): re-read first, so a bucket retagged meanwhile
    #: (untagged, or made final prod) never gets the old stage's expiry. None: not checked.
    stage_tag: tuple[str, str | None] | None = None

    def describe(self) -> str:
        if not self.rules:
            return f"delete the lifecycle configuration of {self.target} ({self.summary})"
        return f"put the policy's lifecycle on {self.target} ({self.summary}; {len(self.rules)} rule(s))"

    def apply(self, clients: Clients) -> str:
        s3 = clients("s3")
        if self.stage_tag is not None:
            key, seen = self.stage_tag
            try:
                tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=self.target).get("TagSet", [])}
            except Exception as exc:
                if not is_code(exc, "NoSuchTagSet"):
                    raise
                tags = {}
            if tags.get(key) != seen:
                raise LifecycleChanged(f"the {key} tag of {self.target} changed since it was read ({seen!r} -> "
                                       f"{tags.get(key)!r}); lifecycle not written (re-planned on its PutBucketTagging event)")
        try:
            current = s3.get_bucket_lifecycle_configuration(Bucket=self.target).get("Rules", [])
        except Exception as exc:
            if not is_code(exc, "NoSuchLifecycleConfiguration"):
                raise
            current = []
        if _fingerprint(current) != _fingerprint(self.expected):
            raise LifecycleChanged(f"the lifecycle of {self.target} changed since it was read; not overwritten (re-planned on its event)")
        if not self.rules:
            s3.delete_bucket_lifecycle(Bucket=self.target)  # IAM action: s3:PutLifecycleConfiguration
            return f"deleted the lifecycle configuration of {self.target} ({self.summary})"
        s3.put_bucket_lifecycle_configuration(Bucket=self.target,
                                              LifecycleConfiguration={"Rules": [dict(r) for r in self.rules]}, **dict(self.extra))
        return f"put the policy's lifecycle on {self.target} ({self.summary}; {len(self.rules)} rule(s))"


@dataclass(frozen=True)
class EnableVersioning(Action):
    kind: ClassVar[str] = "enable-versioning"
    permissions: ClassVar[tuple[str, ...]] = ("s3:PutBucketVersioning",)

    def describe(self) -> str:
        return f"enable versioning on {self.target}"

    def apply(self, clients: Clients) -> str:
        clients("s3").put_bucket_versioning(Bucket=self.target, VersioningConfiguration={"Status": "Enabled"})
        return f"enabled versioning on {self.target}"


@dataclass(frozen=True)
class HideObject(Action):
    """Place a delete marker on a key whose expired current version is about to go while a held version stays."""

    kind: ClassVar[str] = "place-delete-marker"
    permissions: ClassVar[tuple[str, ...]] = ("s3:DeleteObject",)

    key: str = ""
    guard: StageGuard | None = None

    def describe(self) -> str:
        return f"place a delete marker on s3://{self.target}/{self.key} (a held version stays behind it)"

    def apply(self, clients: Clients) -> str:
        if self.guard is not None:
            self.guard.check(clients("s3"))
        clients("s3").delete_object(Bucket=self.target, Key=self.key)
        return f"placed a delete marker on s3://{self.target}/{self.key}"

    def identity(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.target, self.key)


class DeleteFailed(RuntimeError):
    """Some keys of a DeleteObjects batch were refused; the rest were deleted."""


@dataclass(frozen=True)
class DeleteVersions(Action):
    """One DeleteObjects request: up to 1,000 named versions and delete markers of one bucket."""

    kind: ClassVar[str] = "delete-versions"
    permissions: ClassVar[tuple[str, ...]] = ("s3:DeleteObject", "s3:DeleteObjectVersion")
    cap: ClassVar[str] = "deletions"

    entries: tuple[Entry, ...] = ()
    #: Re-reads the bucket's stage before the request (None: not checked).
    guard: StageGuard | None = None

    def weight(self) -> int:
        return len(self.entries)

    def _what(self) -> str:
        markers = sum(1 for e in self.entries if e.marker)
        keys = len({e.key for e in self.entries})
        sample = ", ".join(sorted({e.key for e in self.entries})[:3])
        return (f"{len(self.entries) - markers} version(s) and {markers} delete marker(s) of {keys} key(s) "
                f"in {self.target} (e.g. {sample})")

    def describe(self) -> str:
        return f"delete {self._what()}"

    def apply(self, clients: Clients) -> str:
        if len(self.entries) > 1000:
            raise ValueError("DeleteObjects takes at most 1,000 keys")
        if self.guard is not None:
            self.guard.check(clients("s3"))
        response = clients("s3").delete_objects(Bucket=self.target, Delete={
            "Objects": [{"Key": e.key, "VersionId": e.version_id} for e in self.entries], "Quiet": True})
        errors = response.get("Errors", [])
        if errors:
            shown = "; ".join(f"{e.get('Key')}@{e.get('VersionId', '?')}: {e.get('Code')}" for e in errors[:5])
            more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
            raise DeleteFailed(f"S3 refused {len(errors)} of {len(self.entries)} key(s): {shown}{more}")
        return f"deleted {self._what()}"

    def identity(self) -> tuple[Any, ...]:
        first = self.entries[0] if self.entries else None
        return (type(self).__name__, self.target, first.key if first else "", first.version_id if first else "", len(self.entries))


@dataclass(frozen=True)
class SaveSweepMarker(Action):
    """Bookkeeping: where this bucket's sweep stopped, so the next run continues there (None: it finished)."""

    kind: ClassVar[str] = "sweep-marker"
    permissions: ClassVar[tuple[str, ...]] = ()  # the state table writes are SweepMarkers' (ports)
    remediation: ClassVar[bool] = False

    after_key: str | None = None
    markers: Any = None  # keeper.ports.SweepMarkers
    guard: StageGuard | None = None  # stopped: the marker stays where it was

    def describe(self) -> str:
        return f"continue the sweep of {self.target} after {self.after_key!r} next run" if self.after_key else \
            f"start the next sweep of {self.target} from its first key"

    def apply(self, clients: Clients) -> str:
        if self.guard is not None and self.guard.stopped:
            raise Skipped(self.guard.stopped)
        if self.after_key:
            self.markers.put(self.target, self.after_key)
        else:
            self.markers.clear(self.target)
        return self.describe()


@dataclass(frozen=True)
class RememberStage(Action):
    """Bookkeeping: the bucket's stage memory (its permanent stage, or the stage an approved restage moved it to)."""

    kind: ClassVar[str] = "remember-stage"
    permissions: ClassVar[tuple[str, ...]] = ()  # the state table writes are StageMemory's (ports)
    remediation: ClassVar[bool] = False  # in every mode: a dry-run prod stage is remembered too

    memory: Any = None  # keeper.ports.Remembered
    store: Any = None  # keeper.ports.StageMemory
    why: str = ""

    def describe(self) -> str:
        return f"remember {self.target} in stage {self.memory.stage}" + (f" ({self.why})" if self.why else "")

    def apply(self, clients: Clients) -> str:
        self.store.put(self.target, self.memory)
        return f"remembered {self.target} in stage {self.memory.stage}" + (f" ({self.why})" if self.why else "")

    def identity(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.target, self.memory.stage)


@dataclass(frozen=True)
class ApproveRestage(RememberStage):
    """The operator's approval (``stagewarden retention restage``): the bucket may move to ``memory.approved_to``."""

    kind: ClassVar[str] = "approve-restage"

    def _what(self) -> str:
        m = self.memory
        return (f"moving {self.target} from stage {m.stage} to {m.approved_to} until {m.approved_until} "
                f"(approved by {m.approved_by}: {m.approved_reason})")

    def describe(self) -> str:
        return f"approve {self._what()}"

    def apply(self, clients: Clients) -> str:
        self.store.put(self.target, self.memory)
        return f"approved {self._what()}"


@dataclass(frozen=True)
class RetagStage(Action):
    """The operator's retag (``stagewarden retention restage``): the stage tag set, every other tag kept.

    Not in :data:`ACTIONS`: the function never retags a bucket; only an operator's command does.
    """

    kind: ClassVar[str] = "retag-stage"
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetBucketTagging", "s3:PutBucketTagging")
    remediation: ClassVar[bool] = False  # the operator's explicit command, whatever the stage's mode

    key: str = ""
    value: str = ""

    def describe(self) -> str:
        return f"tag {self.target} {self.key}={self.value}"

    def apply(self, clients: Clients) -> str:
        s3 = clients("s3")
        tags = _tags(s3, self.target) | {self.key: self.value}
        s3.put_bucket_tagging(Bucket=self.target, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
        return f"tagged {self.target} {self.key}={self.value}"


ACTIONS: tuple[type[Action], ...] = (PutLifecycle, EnableVersioning, HideObject, DeleteVersions, SaveSweepMarker, RememberStage)
