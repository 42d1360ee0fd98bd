"""What the gate does about one object version, as typed actions for the layer's executor.

Writing the report, tagging the version and promoting a pass are the gate's bookkeeping:
``remediation = False``, so they happen in every mode (the tag is what the quarantine
statement keys on, and what tells data users the verdict). Only :class:`Quarantine`, a
change to the bucket policy, is remediation: in ``dry_run`` the executor describes it.
Every target is an ``s3://`` URI, so the audit ledger names exactly what was touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from stage_policy.actions import Action, Clients
from stage_policy.errors import is_code

VALIDATION_TAG = "stagewarden:validation"
CONTRACT_TAG = "stagewarden:validation-contract"
QUARANTINE_SID = "StagewardenQuarantineFailedObjects"


def version_arg(version: str | None) -> dict[str, str]:
    """``VersionId=`` for a real version; none for unversioned objects (no id, or S3's ``"null"``)."""
    return {"VersionId": version} if version and version != "null" else {}


def object_uri(bucket: str, key: str, version: str | None = None) -> str:
    return f"s3://{bucket}/{key}" + (f"?versionId={version}" if version_arg(version) else "")


@dataclass(frozen=True)
class WriteReport(Action):
    """Write the JSON validation report (``target`` is its ``s3://`` URI)."""

    kind: ClassVar[str] = "write-report"
    permissions: ClassVar[tuple[str, ...]] = ("s3:PutObject",)
    remediation: ClassVar[bool] = False

    bucket: str
    key: str
    body: str  # JSON text: frozen actions hold no mutable values

    def describe(self) -> str:
        return f"write the validation report to {self.target}"

    def apply(self, clients: Clients) -> str:
        clients("s3").put_object(Bucket=self.bucket, Key=self.key, Body=self.body.encode(), ContentType="application/json")
        return f"wrote the validation report to {self.target}"


@dataclass(frozen=True)
class TagValidation(Action):
    """Tag the object version ``stagewarden:validation=passed|failed`` and the contract, keeping its other tags."""

    kind: ClassVar[str] = "tag-validation"
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetObjectTagging", "s3:GetObjectVersionTagging",
                                              "s3:PutObjectTagging", "s3:PutObjectVersionTagging")
    remediation: ClassVar[bool] = False

    bucket: str
    key: str
    version: str | None
    status: str  # passed | failed
    contract: str

    def describe(self) -> str:
        return f"tag {self.target} {VALIDATION_TAG}={self.status}"

    def apply(self, clients: Clients) -> str:
        s3, v = clients("s3"), version_arg(self.version)
        current = s3.get_object_tagging(Bucket=self.bucket, Key=self.key, **v)["TagSet"]
        keep = [t for t in current if not t["Key"].startswith(VALIDATION_TAG)]
        tags = keep + [{"Key": VALIDATION_TAG, "Value": self.status}, {"Key": CONTRACT_TAG, "Value": self.contract[:256]}]
        s3.put_object_tagging(Bucket=self.bucket, Key=self.key, Tagging={"TagSet": tags[:10]}, **v)
        return f"tagged {self.target} {VALIDATION_TAG}={self.status}"


@dataclass(frozen=True)
class Promote(Action):
    """Copy a passed version, with its tags, to the contract's ``validated_prefix`` (``target``: the copy)."""

    kind: ClassVar[str] = "promote"
    # a server-side copy reads the source version and its tags, and writes the copy and its tags
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging",
                                              "s3:GetObjectVersionTagging", "s3:PutObject", "s3:PutObjectTagging")
    remediation: ClassVar[bool] = False

    bucket: str
    key: str
    version: str | None
    dest_key: str

    def describe(self) -> str:
        return f"promote to {self.target}"

    def apply(self, clients: Clients) -> str:
        source = {"Bucket": self.bucket, "Key": self.key, **version_arg(self.version)}
        clients("s3").copy_object(Bucket=self.bucket, Key=self.dest_key, CopySource=source, TaggingDirective="COPY")
        return f"promoted to {self.target}"


@dataclass(frozen=True)
class Quarantine(Action):
    """Keep one statement in the bucket policy: reads of objects tagged failed are denied to all but the gate.

    One static statement per bucket, whatever the number of failed objects. ``target`` is
    the bucket's URI; ``key`` and ``reason`` (the finding's rule) say why, so each finding
    of a failed object records its own outcome (the second one finds the statement in place).
    """

    kind: ClassVar[str] = "quarantine"
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetBucketPolicy", "s3:PutBucketPolicy")

    bucket: str
    key: str
    gate_role: str
    reason: str

    def identity(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.target, self.key, self.reason)

    def describe(self) -> str:
        return f"deny reads of s3://{self.bucket}/{self.key} (tagged failed) to all but the gate"

    def statement(self) -> dict[str, Any]:
        return {
            "Sid": QUARANTINE_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": f"arn:aws:s3:::{self.bucket}/*",
            "Condition": {
                "StringEquals": {f"s3:ExistingObjectTag/{VALIDATION_TAG}": "failed"},
                "ArnNotEquals": {"aws:PrincipalArn": self.gate_role},
            },
        }

    def apply(self, clients: Clients) -> str:
        s3 = clients("s3")
        try:
            policy = json.loads(s3.get_bucket_policy(Bucket=self.bucket)["Policy"])
        except Exception as exc:
            if not is_code(exc, "NoSuchBucketPolicy"):
                raise
            policy = {"Version": "2012-10-17", "Statement": []}
        wanted = self.statement()
        current = policy.get("Statement", [])
        current = [current] if isinstance(current, dict) else current  # one statement may be written bare
        if any(s.get("Sid") == QUARANTINE_SID and s == wanted for s in current):
            return f"bucket policy of {self.bucket} already denies reads of failed objects"
        others = [s for s in current if s.get("Sid") != QUARANTINE_SID]
        s3.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps({**policy, "Statement": others + [wanted]}))
        return f"bucket policy of {self.bucket} now denies reads of objects tagged {VALIDATION_TAG}=failed (except the gate)"
