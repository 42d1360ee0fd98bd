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
CHECKSUM_TAG = "stagewarden:validation-sha256"
#: Every tag key the gate owns starts so (the fence forbids anyone else to set them).
OWN_TAGS = VALIDATION_TAG


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
    #: unversioned objects: the ETag of the bytes that were validated (a tag names no version there)
    etag: str | None = None
    extra: tuple[tuple[str, str], ...] = ()  # more tags of the gate (a model artifact's checksum)

    def describe(self) -> str:
        return f"tag {self.target} {VALIDATION_TAG}={self.status}"

    def apply(self, clients: Clients) -> str:
        s3, v = clients("s3"), version_arg(self.version)
        if self.etag and not v and _etag(s3, self.bucket, self.key) != self.etag:
            return f"not tagged: {self.target} was overwritten after it was validated (the new write is validated on its own event)"
        current = s3.get_object_tagging(Bucket=self.bucket, Key=self.key, **v)["TagSet"]
        keep = [t for t in current if not t["Key"].startswith(OWN_TAGS)]
        ours = [(VALIDATION_TAG, self.status), (CONTRACT_TAG, self.contract[:256]), *self.extra]
        tags = keep[: 10 - len(ours)] + [{"Key": k, "Value": val} for k, val in ours]
        s3.put_object_tagging(Bucket=self.bucket, Key=self.key, Tagging={"TagSet": tags}, **v)
        if self.etag and not v and _etag(s3, self.bucket, self.key) != self.etag:
            # overwritten between the check and the tagging: the tag would vouch for bytes nobody validated
            withdrawn = keep[:9] + [{"Key": VALIDATION_TAG, "Value": "withdrawn"}]  # not passed: the fence keeps it unreadable
            s3.put_object_tagging(Bucket=self.bucket, Key=self.key, Tagging={"TagSet": withdrawn})
            return f"tag withdrawn: {self.target} was overwritten while it was being tagged (the new write is validated on its own event)"
        return f"tagged {self.target} {VALIDATION_TAG}={self.status}"


def _etag(s3: Any, bucket: str, key: str) -> str | None:
    try:
        return str(s3.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')
    except Exception as exc:
        if is_code(exc, "404", "NoSuchKey", "NotFound"):
            return None
        raise


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
    etag: str | None = None  # unversioned objects: copy only the bytes that were validated

    def describe(self) -> str:
        return f"promote to {self.target}"

    def apply(self, clients: Clients) -> str:
        source = {"Bucket": self.bucket, "Key": self.key, **version_arg(self.version)}
        guard = {"CopySourceIfMatch": f'"{self.etag}"'} if self.etag and not version_arg(self.version) else {}
        if guard and _etag(clients("s3"), self.bucket, self.key) != self.etag:  # CopySourceIfMatch is the atomic guard
            return f"not promoted: s3://{self.bucket}/{self.key} was overwritten after it was validated"
        try:
            clients("s3").copy_object(Bucket=self.bucket, Key=self.dest_key, CopySource=source, TaggingDirective="COPY", **guard)
        except Exception as exc:
            if guard and is_code(exc, "PreconditionFailed", "412"):
                return f"not promoted: s3://{self.bucket}/{self.key} was overwritten after it was validated"
            raise
        return f"promoted to {self.target}"


#: S3's limit on a bucket policy (bytes). The gate writes policies compact, without whitespace.
POLICY_LIMIT = 20 * 1024
#: The statements the gate keeps in a bucket policy (the fence), by Sid, in the order written.
FENCE_SIDS = ("StagewardenGateDenyReadsUntilPassed", "StagewardenGateDenyValidationTagWrites",
              "StagewardenGateDenyValidationTagChanges", "StagewardenGateDenyCopiesIntoGatedPrefixes",
              "StagewardenGateDenyWritesUnderValidatedPrefixes")
#: Statements of earlier versions that the fence replaces (the failed-only deny failed open).
LEGACY_SIDS = ("StagewardenQuarantineFailedObjects",)


class PolicyTooLarge(Exception):
    """The bucket policy with the fence would exceed S3's limit; nothing was written."""

    def __init__(self, bucket: str, size: int):
        self.bucket, self.size = bucket, size
        super().__init__(f"the bucket policy of {bucket} would be {size} bytes with the gate's statements, "
                         f"above S3's limit of {POLICY_LIMIT}")


def fence(bucket: str, gated: tuple[str, ...], validated: tuple[str, ...], gate_role: str) -> list[dict[str, Any]]:
    """The few static statements that make a bucket's gated prefixes fail closed, whatever the number of objects.

    * reads under a gated prefix (a contract's, a model registry's) are denied unless the
      object version is tagged ``passed``: a new upload, an overwrite, an object the gate
      never reached or failed on, an object whose tag was removed, all stay unreadable;
    * nobody may set the validation tags (PutObject with a tagging header, PutObjectTagging);
    * nobody may change or remove the tags of an object that bears the validation tag;
    * nobody may server-side copy into a gated prefix (a copy carries its source's tags, and
      a source tagged ``passed`` elsewhere would land readable);
    * nobody may write under a validated prefix (where the gate promotes passed copies).

    The gate's own role is the one exception (``aws:PrincipalArn``, which for a Lambda's
    assumed-role session is the role's ARN).
    """
    arn = f"arn:aws:s3:::{bucket}"
    not_gate = {"ArnNotEquals": {"aws:PrincipalArn": gate_role}}
    under = [f"{arn}/{p}*" for p in sorted(set(gated))]
    statements: list[dict[str, Any]] = [
        {"Sid": FENCE_SIDS[0], "Effect": "Deny", "Principal": "*", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": under,
         "Condition": {"StringNotEquals": {f"s3:ExistingObjectTag/{VALIDATION_TAG}": "passed"}, **not_gate}},
        {"Sid": FENCE_SIDS[1], "Effect": "Deny", "Principal": "*",
         "Action": ["s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"], "Resource": f"{arn}/*",
         "Condition": {"ForAnyValue:StringLike": {"s3:RequestObjectTagKeys": [f"{VALIDATION_TAG}*"]}, **not_gate}},
        {"Sid": FENCE_SIDS[2], "Effect": "Deny", "Principal": "*",
         "Action": ["s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:DeleteObjectTagging",
                    "s3:DeleteObjectVersionTagging"], "Resource": f"{arn}/*",
         "Condition": {"Null": {f"s3:ExistingObjectTag/{VALIDATION_TAG}": "false"}, **not_gate}},
        {"Sid": FENCE_SIDS[3], "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": under,
         "Condition": {"Null": {"s3:x-amz-copy-source": "false"}, **not_gate}},
    ]
    if validated:
        statements.append({"Sid": FENCE_SIDS[4], "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                           "Resource": [f"{arn}/{p}*" for p in sorted(set(validated))], "Condition": not_gate})
    return statements


def merged(policy: dict[str, Any] | None, statements: list[dict[str, Any]]) -> tuple[dict[str, Any], bool, int]:
    """(the policy with the fence in place, whether that changes it, its compact size in bytes).

    Other statements are kept as they are, in their order; a bare Statement object (one
    statement) is read as a list of one. The gate's own statements (and the legacy one) are
    replaced as a whole.
    """
    policy = dict(policy or {"Version": "2012-10-17"})
    current = policy.get("Statement", [])
    current = [current] if isinstance(current, dict) else list(current)
    ours = {s.get("Sid") for s in statements}
    others = [s for s in current if not (isinstance(s, dict) and (s.get("Sid") in FENCE_SIDS or s.get("Sid") in LEGACY_SIDS))]
    mine = [s for s in current if isinstance(s, dict) and s.get("Sid") in ours]
    changed = mine != statements or len(others) + len(mine) != len(current)
    policy["Statement"] = others + statements
    return policy, changed, len(compact(policy).encode())


def compact(policy: dict[str, Any]) -> str:
    return json.dumps(policy, separators=(",", ":"))


@dataclass(frozen=True)
class Quarantine(Action):
    """Keep the fence (:func:`fence`) in the bucket policy: a few static statements per bucket, never one per object.

    ``target`` is the bucket's URI; ``key`` and ``reason`` (the finding's rule, or ``fence``)
    say why, so each finding of a failed object records its own outcome (the second one
    finds the statements in place). The statements are JSON text (frozen actions hold no
    mutable values).
    """

    kind: ClassVar[str] = "quarantine"
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetBucketPolicy", "s3:PutBucketPolicy")

    bucket: str
    key: str
    statements: str
    reason: str

    def identity(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.target, self.key, self.reason)

    def describe(self) -> str:
        return (f"keep s3://{self.bucket}/{self.key} unreadable to all but the gate until it is tagged passed "
                f"(bucket policy statements {', '.join(s['Sid'] for s in json.loads(self.statements))})")

    def apply(self, clients: Clients) -> str:
        s3 = clients("s3")
        try:
            current = json.loads(s3.get_bucket_policy(Bucket=self.bucket)["Policy"])
        except Exception as exc:
            if not is_code(exc, "NoSuchBucketPolicy"):
                raise
            current = None
        policy, changed, size = merged(current, json.loads(self.statements))
        if not changed:
            return f"bucket policy of {self.bucket} already keeps objects under its gated prefixes unreadable until passed"
        if size > POLICY_LIMIT:
            raise PolicyTooLarge(self.bucket, size)
        s3.put_bucket_policy(Bucket=self.bucket, Policy=compact(policy))
        return (f"bucket policy of {self.bucket} now keeps objects under its gated prefixes unreadable to all but the gate "
                f"until tagged {VALIDATION_TAG}=passed ({size} of {POLICY_LIMIT} bytes)")


@dataclass(frozen=True)
class RegisterArtifact(Action):
    """Record a model artifact's checksum the first time its key is written (``target``: the object version's URI).

    A conditional write: only the first registration of a key stands; a racing second one
    fails (its record is retried, and then finds the first).
    """

    kind: ClassVar[str] = "register-artifact"
    permissions: ClassVar[tuple[str, ...]] = ("dynamodb:PutItem",)
    remediation: ClassVar[bool] = False

    table: str
    bucket: str
    key: str
    version: str | None
    sha256: str
    size: int
    what: str
    registry: str

    def describe(self) -> str:
        return f"register {self.target} (sha256 {self.sha256[:12]}…)"

    def apply(self, clients: Clients) -> str:
        from datetime import datetime, timezone

        from stage_policy import keys

        item = {**keys.registry_artifact(self.bucket, self.key), "sha256": {"S": self.sha256}, "size": {"N": str(self.size)},
                "version": {"S": self.version or "null"}, "what": {"S": self.what[:300]}, "registry": {"S": self.registry},
                "registered_at": {"S": datetime.now(timezone.utc).isoformat()}}
        clients("dynamodb").put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        return f"registered {self.target} sha256 {self.sha256}"
