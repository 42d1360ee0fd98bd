"""The stage policy model: which stages exist, what each allows, what belongs to which.

Field-level rules live on the models (pydantic v2). Rules that span fields or
sections (unknown stage references, overlapping prefix classes, the retention safety
floor, ...) live in :func:`cross_check`, which returns every problem with the exact
field path, so a policy author sees all of them at once.

Models use ``defer_build`` so that importing this module stays cheap: validators are
built on first use, not in every cold start that never validates a policy.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Mode = Literal["enforce", "dry_run"]
Interactive = Literal["read-write", "read-only", "none"]
DownloadStance = Literal["allowed", "denied"]
Response = Literal["alert", "contain"]
Containment = Literal["session", "role"]
Severity = Literal["low", "medium", "high", "critical"]
ColumnType = Literal["int", "float", "string", "bool", "timestamp", "date"]
DataFormat = Literal["csv", "jsonl", "parquet"]

StageName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
Prefix = Annotated[str, StringConstraints(pattern=r"^[^/].*/$|^$", max_length=1024)]
AccountId = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]

#: The tag that maps a bucket or role to a stage by value.
STAGE_TAG = "stagewarden:stage"
#: Break glass for longer than this is never allowed, whatever a policy says.
BREAK_GLASS_HARD_LIMIT_MINUTES = 12 * 60
#: Absolute lower bound of ``safety.min_retention_days``.
ABSOLUTE_RETENTION_FLOOR_DAYS = 1
#: Daily read budget per session of a ``download: denied`` stage without its own: 10,000 objects or 5 GiB.
DAILY_DEFAULTS = (10_000, 5 * 1024**3)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class PrefixClass(_Model):
    """Objects under ``prefix`` expire after ``days`` (e.g. ``raw/`` 30 days)."""

    prefix: Annotated[str, StringConstraints(pattern=r"^[^/].*/$", max_length=1024)]
    days: int = Field(ge=1)


class Retention(_Model):
    """How long a stage keeps data. ``permanent`` stages never expire anything.

    ``default_days`` covers every key outside a prefix class. S3 applies the shortest
    expiration when lifecycle rules overlap and a filter cannot exclude a prefix, so a
    class may not keep data longer than ``default_days`` (``cross_check`` rejects it).
    ``noncurrent_version_days`` counts from the moment a version was replaced; unset, an
    old version lives as long as its class (it is at least that old by then).
    """

    permanent: bool = False
    immutable: bool = False
    default_days: int | None = Field(default=None, ge=1)
    noncurrent_version_days: int | None = Field(default=None, ge=1)
    prefix_classes: tuple[PrefixClass, ...] = ()
    #: Incomplete multipart uploads are aborted this many days after they start (not data anyone can read).
    abort_multipart_days: int = Field(default=7, ge=1)

    def days_for(self, key: str) -> int | None:
        """Days an object under ``key`` is kept; None means kept forever."""
        if self.permanent:
            return None
        best = self.class_for(key)
        return best.days if best else self.default_days

    def class_for(self, key: str) -> PrefixClass | None:
        """The longest prefix class containing ``key`` (None: the default class)."""
        best: PrefixClass | None = None
        for cls in self.prefix_classes:
            if key.startswith(cls.prefix) and (best is None or len(cls.prefix) > len(best.prefix)):
                best = cls
        return best

    def noncurrent_days_for(self, key: str) -> int | None:
        """Days a replaced version of ``key`` is kept after it was replaced; None means kept forever."""
        days = self.days_for(key)
        if days is None:
            return None
        return min(self.noncurrent_version_days, days) if self.noncurrent_version_days else days


class Exfiltration(_Model):
    """Bulk-download thresholds per session per sliding window, and the daily budget beside it.

    Volume is counted per acting identity (a role session: account + role + session name,
    plus ``sourceIdentity``), as distinct objects (bucket, key, version) and bytes
    transferred out. ``daily_max_objects`` / ``daily_max_bytes`` bound what one session
    may read from the stage in any 24 hours (slow-and-low); unset, a ``download: denied``
    stage uses :data:`DAILY_DEFAULTS` and a ``download: allowed`` stage has no budget.
    """

    max_objects: int = Field(default=1000, ge=1)
    max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    window_minutes: int = Field(default=10, ge=1, le=1440)
    daily_max_objects: int | None = Field(default=None, ge=1)
    daily_max_bytes: int | None = Field(default=None, ge=1)
    exempt_principals: tuple[str, ...] = ()
    response: Response = "alert"
    #: ``session``: deny only the offending session (``aws:userid`` / ``aws:SourceIdentity``);
    #: ``role``: revoke every session of the role issued before now.
    containment: Containment = "session"
    learning_days: int = Field(default=14, ge=0, le=365)

    def is_exempt(self, *arns: str | None) -> bool:
        """Exempt from the volume thresholds only (a session ARN or its role ARN matches a glob)."""
        return any(arn and fnmatchcase(arn, p) for arn in arns for p in self.exempt_principals)

    def daily_limits(self, download: DownloadStance) -> tuple[int, int] | None:
        """(objects, bytes) per session per 24 hours, or None when the stage has no daily budget."""
        if self.daily_max_objects is None and self.daily_max_bytes is None:
            return DAILY_DEFAULTS if download == "denied" else None
        default_objects, default_bytes = DAILY_DEFAULTS if download == "denied" else (1 << 62, 1 << 62)
        return (self.daily_max_objects or default_objects, self.daily_max_bytes or default_bytes)


class BreakGlass(_Model):
    """Time-boxed emergency access into a stage: the stage's roles are its break-glass roles when ``allowed``.

    ``approvers`` are identities (e-mail addresses as IAM Identity Center, a source identity or an IAM
    user name carry them); a grant names one. ``required_approval_tags`` are put on the role while a
    grant is open; keys ending in ``approved-by`` carry the approver, keys ending in ``ticket`` the ticket.
    """

    allowed: bool = True
    max_duration_minutes: int = Field(default=120, ge=1)
    required_approval_tags: tuple[str, ...] = ("stagewarden:approved-by", "stagewarden:ticket")
    approvers: tuple[str, ...] = ()
    post_incident_review: bool = True
    #: Days after a grant closes (expiry or early end) that its post-incident review is due.
    review_due_days: int = Field(default=5, ge=1, le=90)


class Exceptions(_Model):
    """Time-boxed, read-only access of a role to a bucket (raw-bucket access), held in a register and reviewed."""

    approvers: tuple[str, ...] = ()
    max_days: int = Field(default=90, ge=1, le=366)
    #: Bucket name globs an exception may cover; empty: none may be granted.
    buckets: tuple[str, ...] = ()
    review_interval_days: int = Field(default=90, ge=1, le=366)

    def covers(self, bucket: str) -> bool:
        return any(fnmatchcase(bucket, pattern) for pattern in self.buckets)


class PublicAccess(_Model):
    """The four S3 Block Public Access settings a stage bucket must have on (true: required)."""

    block_public_acls: bool = True
    ignore_public_acls: bool = True
    block_public_policy: bool = True
    restrict_public_buckets: bool = True

    def as_config(self) -> dict[str, bool]:
        return {"BlockPublicAcls": self.block_public_acls, "IgnorePublicAcls": self.ignore_public_acls,
                "BlockPublicPolicy": self.block_public_policy, "RestrictPublicBuckets": self.restrict_public_buckets}


class AccessLogging(_Model):
    """Server access logs of the bucket go to ``target_bucket`` under ``target_prefix``."""

    target_bucket: str = Field(min_length=3, max_length=63)
    target_prefix: str = Field(default="", max_length=1024)


class Posture(_Model):
    """The security baseline every bucket of the stage is held to (``keeper.posture``).

    ``encryption``: the weakest default encryption accepted (``aws:kms`` or ``AES256``; ``null``:
    not checked). With ``kms_key`` named, an ``aws:kms`` bucket must use that key. Public access,
    TLS and versioning are only ever tightened, never loosened. ``object_lock``: report a bucket
    without Object Lock (``null``: as ``retention.immutable``, which retention already reports).
    """

    encryption: Literal["aws:kms", "AES256"] | None = "aws:kms"
    kms_key: str | None = Field(default=None, min_length=1, max_length=2048)
    public_access: PublicAccess = Field(default_factory=PublicAccess)
    tls_only: bool = True
    versioning: bool = True
    access_logging: AccessLogging | None = None
    object_lock: bool | None = None


class Stage(_Model):
    """One stage and its controls."""

    description: str = ""
    production_data: bool
    interactive_access: Interactive
    retention: Retention
    download: DownloadStance
    exfiltration: Exfiltration = Field(default_factory=Exfiltration)
    break_glass: BreakGlass | None = None
    mode: Mode | None = None
    #: The bucket security baseline (null: posture is not checked for this stage).
    posture: Posture | None = None


class NamePattern(_Model):
    """A name glob (``fnmatch``) that maps matching resources to a stage."""

    pattern: str = Field(min_length=1, max_length=512)
    stage: StageName


class ResourceMap(_Model):
    """How buckets and roles are assigned to stages: tag first, then name globs in order."""

    tag_key: str = Field(default=STAGE_TAG, min_length=1, max_length=128)
    buckets: tuple[NamePattern, ...] = ()
    roles: tuple[NamePattern, ...] = ()


class Column(_Model):
    name: str = Field(min_length=1, max_length=256)
    type: ColumnType
    required: bool = True
    min: float | str | None = None  # numbers; ISO-8601 text for timestamp and date columns
    max: float | str | None = None
    regex: str | None = None
    enum: tuple[str, ...] | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=1)

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return value


class CsvOptions(_Model):
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote_char: str = Field(default='"', min_length=1, max_length=1)
    header: bool = True
    compression: Literal["auto", "none", "gzip"] = "auto"
    #: Field texts read as a missing value, in every column (strings too). Replaces the default:
    #: keep "" in the list for empty fields to stay nulls. Quoted fields are never nulls.
    null_values: tuple[Annotated[str, StringConstraints(max_length=64)], ...] = Field(default=("",), max_length=32)


class Drift(_Model):
    metric: Literal["psi"] = "psi"
    baseline: str = Field(min_length=1)
    threshold: float = Field(default=0.1, gt=0)
    columns: tuple[str, ...] = Field(min_length=1)
    bins: int = Field(default=10, ge=2, le=100)


class Contract(_Model):
    """A dataset contract: what data landing under ``prefix`` must look like."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]
    version: str = "1"
    stage: StageName
    bucket: str | None = None
    prefix: Prefix
    format: DataFormat
    csv: CsvOptions = Field(default_factory=CsvOptions)
    columns: tuple[Column, ...] = Field(min_length=1)
    exact_columns: bool = True
    unique_key: tuple[str, ...] = ()
    max_null_fraction: float = Field(default=0.01, ge=0, le=1)
    duplicate_rows: Literal["forbid", "allow"] = "forbid"
    drift: Drift | None = None
    validated_prefix: Prefix | None = None
    reports_prefix: Prefix = "_stagewarden/reports/"
    severity: Severity = "high"
    max_object_bytes: int = Field(default=5 * 1024**3, ge=1)
    max_rows: int = Field(default=50_000_000, ge=1)
    #: Fewer data rows than this fails the contract (``min_rows``): empty and header-only files fail.
    min_rows: int = Field(default=1, ge=0)


class ModelRegistry(_Model):
    """A bucket (glob) or prefix that holds model binaries only, never training data (read by the schema gate)."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]
    stage: StageName
    bucket: str | None = None
    prefix: Prefix = ""
    #: NumPy arrays larger than this are data, not weights.
    max_array_bytes: int = Field(default=16 * 1024**2, ge=0)
    #: Key globs that are never judged (model cards, configs), e.g. ``*/README.md``.
    allow: tuple[str, ...] = ()
    severity: Severity = "high"


class Organization(_Model):
    """What is 'inside': the organisation's accounts and id, its networks, its automation.

    ``protected_roles`` are never contained (name or ARN globs), whatever a stage says;
    neither are the stack's own roles, service-linked roles and the break-glass roles
    (roles mapped to a stage whose ``break_glass.allowed`` is true).
    """

    account_ids: tuple[AccountId, ...] = ()
    org_id: Annotated[str, StringConstraints(pattern=r"^o-[a-z0-9]{10,32}$")] | None = None
    vpc_endpoint_ids: tuple[str, ...] = ()
    allowed_cidrs: tuple[str, ...] = ()
    service_principals: tuple[str, ...] = ()
    protected_roles: tuple[str, ...] = ()

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR block") from None
        return value

    def is_protected_role(self, role_name: str, role_arn: str | None = None) -> bool:
        return any(fnmatchcase(role_name, p) or (role_arn is not None and fnmatchcase(role_arn, p))
                   for p in self.protected_roles)


class Alerts(_Model):
    min_severity: Severity = "low"
    dedup_window_minutes: int = Field(default=24 * 60, ge=1, le=30 * 24 * 60)
    slack_webhook_secret: str | None = None
    email: tuple[str, ...] = ()
    security_hub: bool = False


class Safety(_Model):
    min_retention_days: int = Field(default=7, ge=ABSOLUTE_RETENTION_FLOOR_DAYS)
    #: Versions (and delete markers) the retention sweep may delete per run, across every bucket.
    max_deletions_per_run: int = Field(default=1000, ge=0)
    max_revocations_per_run: int = Field(default=20, ge=0)
    #: A lifecycle rule on an audit-log bucket (the trail bucket, the stack's own) that expires
    #: anything sooner than this is tampering (``audit.tamper``).
    audit_log_retention_days: int = Field(default=365, ge=1)


class Defaults(_Model):
    mode: Mode = "dry_run"


class Policy(_Model):
    """A whole policy document, after presets are applied."""

    version: Literal[1] = 1
    framework: Literal["five-stage", "three-stage", "two-stage", "three-workspace", "custom"] = "custom"
    defaults: Defaults = Field(default_factory=Defaults)
    organization: Organization = Field(default_factory=Organization)
    safety: Safety = Field(default_factory=Safety)
    alerts: Alerts = Field(default_factory=Alerts)
    stages: dict[StageName, Stage] = Field(min_length=1)
    resources: ResourceMap = Field(default_factory=ResourceMap)
    contracts: tuple[Contract, ...] = ()
    model_registries: tuple[ModelRegistry, ...] = ()
    exceptions: Exceptions = Field(default_factory=Exceptions)

    def mode_for(self, stage: str) -> Mode:
        """The remediation mode of a stage: its own, else the policy default."""
        return self.stages[stage].mode or self.defaults.mode

    def contract(self, name: str) -> Contract:
        for contract in self.contracts:
            if contract.name == name:
                return contract
        raise KeyError(f"no contract named {name!r} (known: {', '.join(c.name for c in self.contracts) or 'none'})")


def cross_check(policy: Policy) -> list[tuple[str, str]]:
    """Rules that span fields. Returns ``(field path, message)`` pairs; empty means valid."""
    problems: list[tuple[str, str]] = []
    known = set(policy.stages)
    floor = policy.safety.min_retention_days

    for name, stage in policy.stages.items():
        base = f"stages.{name}"
        ret = stage.retention
        if ret.permanent:
            if ret.default_days is not None:
                problems.append((f"{base}.retention.default_days", "a permanent stage cannot expire data"))
            if ret.prefix_classes:
                problems.append((f"{base}.retention.prefix_classes", "expiry classes are not allowed on a permanent stage"))
            if ret.noncurrent_version_days is not None:
                problems.append((f"{base}.retention.noncurrent_version_days", "a permanent stage keeps every version"))
        else:
            if ret.immutable:
                problems.append((f"{base}.retention.immutable", "only a permanent stage can be immutable"))
            if ret.default_days is None:
                problems.append((f"{base}.retention.default_days", "is required unless retention is permanent"))
            elif ret.default_days < floor:
                problems.append((f"{base}.retention.default_days", f"{ret.default_days} is below the safety floor of {floor} days"))
            if ret.noncurrent_version_days is not None and ret.noncurrent_version_days > (ret.default_days or 0) and ret.default_days:
                problems.append((f"{base}.retention.noncurrent_version_days", "must not exceed default_days (old versions would outlive the data)"))
            for i, cls in enumerate(ret.prefix_classes):
                if ret.default_days is not None and cls.days > ret.default_days:
                    problems.append((f"{base}.retention.prefix_classes[{i}].days",
                                     f"{cls.days} is longer than default_days {ret.default_days}: S3 applies the shortest "
                                     f"expiration when lifecycle rules overlap, so the default rule would expire "
                                     f"{cls.prefix!r} after {ret.default_days} days (raise default_days to at least {cls.days})"))
                if ret.noncurrent_version_days is not None and ret.noncurrent_version_days > cls.days:
                    problems.append((f"{base}.retention.noncurrent_version_days",
                                     f"must not exceed prefix_classes[{i}].days {cls.days} (old versions would outlive the data)"))
        for i, cls in enumerate(ret.prefix_classes):
            if cls.days < floor:
                problems.append((f"{base}.retention.prefix_classes[{i}].days", f"{cls.days} is below the safety floor of {floor} days"))
            for j, other in enumerate(ret.prefix_classes[:i]):
                if cls.prefix.startswith(other.prefix) or other.prefix.startswith(cls.prefix):
                    problems.append((f"{base}.retention.prefix_classes[{i}].prefix", f"{cls.prefix!r} overlaps prefix_classes[{j}] {other.prefix!r}"))
        bg = stage.break_glass
        if bg is not None and bg.max_duration_minutes > BREAK_GLASS_HARD_LIMIT_MINUTES:
            problems.append((f"{base}.break_glass.max_duration_minutes", f"{bg.max_duration_minutes} is above the 12 hour limit ({BREAK_GLASS_HARD_LIMIT_MINUTES})"))
        if bg is not None and bg.allowed and not bg.required_approval_tags:
            problems.append((f"{base}.break_glass.required_approval_tags", "break glass needs at least one approval tag"))
        if stage.interactive_access != "none" and ret.immutable:
            problems.append((f"{base}.interactive_access", "an immutable stage cannot allow interactive access"))
        if stage.posture is not None and stage.posture.kms_key and stage.posture.encryption != "aws:kms":
            problems.append((f"{base}.posture.kms_key", "a key needs posture.encryption aws:kms"))

    exc = policy.exceptions
    if exc.review_interval_days > exc.max_days:
        problems.append(("exceptions.review_interval_days",
                         f"{exc.review_interval_days} is above max_days ({exc.max_days}): no exception would ever be reviewed"))
    for i, pattern in enumerate(exc.buckets):
        if not pattern.strip() or pattern.strip("*?") == "":
            problems.append((f"exceptions.buckets[{i}]", f"{pattern!r} would cover every bucket; name the raw buckets"))

    for kind in ("buckets", "roles"):
        for i, rule in enumerate(getattr(policy.resources, kind)):
            if rule.stage not in known:
                problems.append((f"resources.{kind}[{i}].stage", _unknown(rule.stage, known)))

    seen: set[str] = set()
    for i, contract in enumerate(policy.contracts):
        base = f"contracts[{i}]"
        if contract.name in seen:
            problems.append((f"{base}.name", f"duplicate contract name {contract.name!r}"))
        seen.add(contract.name)
        if contract.stage not in known:
            problems.append((f"{base}.stage", _unknown(contract.stage, known)))
        names = [c.name for c in contract.columns]
        for j, col in enumerate(contract.columns):
            if names.index(col.name) != j:
                problems.append((f"{base}.columns[{j}].name", f"duplicate column {col.name!r}"))
            if col.min is not None and col.max is not None and type(col.min) is type(col.max) and col.min > col.max:
                problems.append((f"{base}.columns[{j}].min", f"min {col.min} is greater than max {col.max}"))
            for bound in ("min", "max"):
                value = getattr(col, bound)
                if isinstance(value, str) and col.type not in ("timestamp", "date"):
                    problems.append((f"{base}.columns[{j}].{bound}", f"a text bound needs a timestamp or date column, not {col.type}"))
                elif isinstance(value, str) and not _iso(value):
                    problems.append((f"{base}.columns[{j}].{bound}", f"{value!r} is not an ISO-8601 date or time"))
            if col.min_length is not None and col.max_length is not None and col.min_length > col.max_length:
                problems.append((f"{base}.columns[{j}].min_length", "min_length is greater than max_length"))
            if col.enum is not None and not col.enum:
                problems.append((f"{base}.columns[{j}].enum", "an enum needs at least one value"))
            if col.type not in ("int", "float", "timestamp", "date") and (col.min is not None or col.max is not None):
                problems.append((f"{base}.columns[{j}].min", f"a range needs a numeric or time column, not {col.type}"))
        for k, key in enumerate(contract.unique_key):
            if key not in names:
                problems.append((f"{base}.unique_key[{k}]", f"unknown column {key!r}"))
        if contract.drift is not None:
            for k, col_name in enumerate(contract.drift.columns):
                if col_name not in names:
                    problems.append((f"{base}.drift.columns[{k}]", f"unknown column {col_name!r}"))
        if contract.validated_prefix is not None and (
            contract.validated_prefix.startswith(contract.prefix) or contract.prefix.startswith(contract.validated_prefix)
        ):
            problems.append((f"{base}.validated_prefix", "must not overlap the contract's prefix (promoted copies would be re-validated)"))
        for j, other in enumerate(policy.contracts):  # the gate's reports land in the bucket too: none may be validated as data
            same_buckets = contract.bucket is None or other.bucket is None or contract.bucket == other.bucket
            if other.stage == contract.stage and same_buckets and (
                contract.reports_prefix.startswith(other.prefix) or other.prefix.startswith(contract.reports_prefix)
            ):
                where = "the contract's prefix" if j == i else f"the prefix of contracts[{j}]"
                problems.append((f"{base}.reports_prefix", f"{contract.reports_prefix!r} must not overlap {where} "
                                 f"{other.prefix!r} (each report would be validated, reported and alerted on in turn)"))
    registry_names: set[str] = set()
    for i, registry in enumerate(policy.model_registries):
        base = f"model_registries[{i}]"
        if registry.name in registry_names:
            problems.append((f"{base}.name", f"duplicate model registry name {registry.name!r}"))
        registry_names.add(registry.name)
        if registry.stage not in known:
            problems.append((f"{base}.stage", _unknown(registry.stage, known)))
        for j, contract in enumerate(policy.contracts):
            same_place = contract.stage == registry.stage and (
                contract.bucket is None or registry.bucket is None or fnmatchcase(registry.bucket, contract.bucket)
                or fnmatchcase(contract.bucket, registry.bucket))
            if same_place and (contract.prefix.startswith(registry.prefix) or registry.prefix.startswith(contract.prefix)):
                problems.append((f"{base}.prefix", f"{registry.prefix!r} overlaps contracts[{j}] {contract.name!r} "
                                                   f"({contract.prefix!r}): an object is either data or a model"))
    return problems


def _iso(value: str) -> bool:
    from datetime import datetime

    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _unknown(stage: str, known: set[str]) -> str:
    return f"unknown stage {stage!r} (known: {', '.join(sorted(known))})"
