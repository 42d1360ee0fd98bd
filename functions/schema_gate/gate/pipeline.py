"""From one S3 'Object Created' event to decisions: validate, then report, tag, promote or quarantine, and alert.

:func:`decide` reads the object (and its contract's drift baseline) through the ports and
returns :class:`~stage_policy.actions.Decision` values; it changes nothing. The handler
hands them to the layer's executor, which carries them out in the stage's mode.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Callable
from urllib.parse import unquote_plus

from gate.actions import (
    CHECKSUM_TAG, POLICY_LIMIT, Promote, Quarantine, RegisterArtifact, TagValidation, WriteReport, fence, merged, object_uri,
    version_arg,
)
from gate.ports import ArtifactRegister, BaselineUnreadable, Baselines, BucketPolicies, ObjectStore

from stage_policy.actions import Action, Decision
from stage_policy.findings import Finding
from stage_policy.mapping import stage_for_bucket
from stage_policy.model import Contract, ModelRegistry, Policy

SCHEMA_CHECKS = {"min_rows", "columns", "type", "required"}
QUALITY_CHECKS = {"range", "regex", "enum", "length", "unique", "duplicate_rows", "null_fraction"}
BASELINE_RULE = "data.baseline-unreadable"


@dataclass(frozen=True)
class ObjectRef:
    """The object version an event names."""

    bucket: str
    key: str
    version: str | None = None
    sequencer: str | None = None
    event_id: str = ""

    @classmethod
    def of(cls, event: Any) -> "ObjectRef":
        """From a parsed ``S3EventNotificationEventBridgeModel``."""
        obj = event.detail.object
        return cls(event.detail.bucket.name, obj.key, obj.version_id, obj.sequencer, event.id)

    def replay_key(self) -> str:
        """What makes a redelivery the same event: the version; for unversioned objects, S3's sequencer.

        An overwrite of an unversioned key has a new sequencer, so it is validated again.
        """
        if self.version:
            return f"{self.bucket}/{self.key}#version={self.version}"
        if self.sequencer:
            return f"{self.bucket}/{self.key}#sequencer={self.sequencer}"
        return f"{self.bucket}/{self.key}#event={self.event_id}"


@dataclass(frozen=True)
class Reads:
    """What :func:`decide` reads through."""

    objects: ObjectStore
    baselines: Baselines
    bucket_tags: Callable[[str], dict[str, str]]
    policies: BucketPolicies | None = None  # None: the fence is written without knowing the current policy
    register: ArtifactRegister | None = None  # model registries: what was registered before
    table: str = ""  # where artifacts are registered (the state table)


@dataclass
class Verdict:
    decisions: list[Decision] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def contract_for(policy: Policy, bucket: str, key: str, tags: dict[str, str] | None = None) -> Contract | None:
    stage = stage_for_bucket(policy, bucket, tags).stage
    for contract in policy.contracts:
        if contract.stage == stage and key.startswith(contract.prefix) and (contract.bucket is None or fnmatchcase(bucket, contract.bucket)):
            return contract
    return None


def registry_for(policy: Policy, bucket: str, key: str, stage: str | None) -> ModelRegistry | None:
    for registry in policy.model_registries:
        if registry.stage == stage and key.startswith(registry.prefix) and (registry.bucket is None or fnmatchcase(bucket, registry.bucket)):
            return registry
    return None


def gated_prefixes(policy: Policy, bucket: str, stage: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(prefixes whose objects stay unreadable until passed: contracts' and model registries', prefixes only the gate writes)."""
    contracts = [c for c in policy.contracts if c.stage == stage and (c.bucket is None or fnmatchcase(bucket, c.bucket))]
    registries = [r for r in policy.model_registries if r.stage == stage and (r.bucket is None or fnmatchcase(bucket, r.bucket))]
    return (tuple(c.prefix for c in contracts) + tuple(r.prefix for r in registries),
            tuple(c.validated_prefix for c in contracts if c.validated_prefix is not None))


def candidate_keys(key: str) -> list[str]:
    """The key as the event gives it, then URL-decoded (S3 notifications encode keys: ``+`` for a space, ``%20``)."""
    decoded = unquote_plus(key)
    return [key] if decoded == key else [key, decoded]


def decide(ref: ObjectRef, policy: Policy, reads: Reads, gate_role: str, log: Any) -> Verdict:
    bucket = ref.bucket
    tags = reads.bucket_tags(bucket)
    stage = stage_for_bucket(policy, bucket, tags).stage
    for key in candidate_keys(ref.key):
        registry = registry_for(policy, bucket, key, stage)
        if registry is not None:
            head = reads.objects.head(bucket, key, ref.version)
            if head is not None:
                return _decide_artifact(ref, key, head, registry, policy, reads, stage, gate_role, log)
    found: tuple[str, Contract, dict[str, Any]] | None = None
    for key in candidate_keys(ref.key):
        contract = contract_for(policy, bucket, key, tags)
        if contract is None:
            continue
        head = reads.objects.head(bucket, key, ref.version)
        if head is not None:
            found = (key, contract, head)
            break
    if found is None:
        log.debug("no contract covers this object, or it no longer exists; skipped", extra={"bucket": bucket, "key": ref.key})
        return Verdict(summary={"skipped": "no contract" if not any(contract_for(policy, bucket, k, tags)
                                                                     for k in candidate_keys(ref.key)) else "no such object",
                                "key": ref.key})
    key, contract, head = found
    # the engine (pyarrow) is imported with the first object a contract covers, not with the handler
    from gate.engine import TooLarge
    from gate.readers import ReadError
    from gate.run import validate

    version = ref.version or head.get("VersionId")  # events of unversioned uploads name none: the current one
    etag = None if version_arg(version) else str(head.get("ETag", "")).strip('"') or None
    size = int(head.get("ContentLength", 0))
    resource = f"arn:aws:s3:::{bucket}/{key}"
    report: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    problem: tuple[str, str] | None = None
    unreadable: BaselineUnreadable | None = None
    if size > contract.max_object_bytes:
        problem = ("data.too-large", f"{size} bytes is above the contract's max_object_bytes ({contract.max_object_bytes})")
    else:
        baseline = None
        if contract.drift:
            try:
                baseline = reads.baselines.get(contract.drift.baseline)
            except BaselineUnreadable as exc:
                unreadable = exc
                log.warning("drift baseline unreadable; drift not evaluated", extra={"baseline": exc.location, "error": exc.error})
        try:
            source = reads.objects.open(bucket, key, version, size, seekable=contract.format == "parquet", if_match=etag)
            report, validator = validate(source, key, contract, baseline)
            samples = validator.samples_with_values()
        except TooLarge as exc:
            problem = ("data.too-large", f"{exc.rows} rows read, above the contract's max_rows ({exc.limit})")
        except Exception as exc:
            if etag is not None and _current_etag(reads, bucket, key) != etag:
                # overwritten while it was read: the newer write has its own event and is validated then
                log.info("object overwritten while it was validated; left to the newer write's event", extra={"key": key})
                return Verdict(summary={"superseded": "overwritten while it was validated", "key": key})
            if not isinstance(exc, ReadError):
                raise
            problem = ("data.schema", str(exc))
    if problem is not None:
        report = {"contract": contract.name, "passed": False, "rows": None, "checks": [], "duplicate_rows": 0, "drift": {},
                  "error": problem[1]}
    passed = bool(report["passed"])
    report.update({"contract_version": contract.version, "bucket": bucket, "key": key, "object_version": version,
                   "etag": etag, "size_bytes": size, "samples": samples})
    if contract.drift and problem is None:
        report["drift_baseline"] = ({"location": contract.drift.baseline, "status": "read"} if unreadable is None else
                                    {"location": unreadable.location, "status": "unreadable", "error": unreadable.error,
                                     "drift": "not evaluated"})
    report_key = f"{contract.reports_prefix}{key}.{_report_id(version, ref.sequencer, etag)}.json"
    report_uri = f"s3://{bucket}/{report_key}"
    bookkeeping: list[Action] = [
        WriteReport(report_uri, bucket, report_key, json.dumps(report, indent=2, default=str)),
        TagValidation(object_uri(bucket, key, version), bucket, key, version, "passed" if passed else "failed", contract.name, etag),
    ]
    if passed and contract.validated_prefix is not None:
        dest = contract.validated_prefix + key[len(contract.prefix):]
        bookkeeping.append(Promote(f"s3://{bucket}/{dest}", bucket, key, version, dest, etag))
    findings = _findings(report, problem, contract, resource, report_uri)
    fenced = _fence(policy, reads, bucket, key, stage, gate_role)
    decisions = fenced.settle(bookkeeping, findings, passed, contract.stage)
    if unreadable is not None:
        decisions.append(Decision(_baseline_finding(unreadable, contract, resource, report_uri), [], contract.stage))
    log.info("object validated", extra={"key": key, "passed": passed, "rows": report.get("rows"), "findings": len(findings)})
    return Verdict(decisions, {"key": key, "version": version, "passed": passed, "report": report_uri})


def _decide_artifact(ref: ObjectRef, key: str, head: dict[str, Any], registry: ModelRegistry, policy: Policy, reads: Reads,
                     stage: str | None, gate_role: str, log: Any) -> Verdict:
    """A model registry holds models only: a dataset is quarantined; a registered key is never overwritten."""
    from gate.artifacts import HEAD, Judgement, allowed

    bucket = ref.bucket
    version = ref.version or head.get("VersionId")
    etag = None if version_arg(version) else str(head.get("ETag", "")).strip('"') or None
    size = int(head.get("ContentLength", 0))
    uri = object_uri(bucket, key, version)
    resource = f"arn:aws:s3:::{bucket}/{key}"
    if allowed(key, registry.allow):
        judged = Judgement("other", "allowed by the registry's allow list (not judged)")
    else:
        judged = _judge(reads.objects, bucket, key, version, size, registry.max_array_bytes, HEAD)
    digest = _sha256(reads.objects.open(bucket, key, version, size, seekable=False, if_match=etag))
    before = reads.register.get(bucket, key) if reads.register is not None else None
    common = {"stage": stage, "resource": resource}
    evidence = {"registry": registry.name, "object_version": version, "size_bytes": size, "sha256": digest, "judged": judged.what}
    findings: list[Finding] = []
    if judged.kind == "dataset":
        findings.append(Finding(rule="data.in-model-registry", severity=registry.severity,
                                summary=f"{resource} in model registry {registry.name} looks like a dataset ({judged.what}); "
                                        f"a model registry holds model binaries only.", evidence=evidence, **common))
    overwrite = before is not None and before.get("sha256") != digest
    if overwrite:
        findings.append(Finding(
            rule="registry.overwrite", severity=registry.severity,
            summary=f"{resource} overwrites a registered model artifact of registry {registry.name} (registered sha256 "
                    f"{str(before.get('sha256'))[:12]}…, new {digest[:12]}…); models are immutable.",
            evidence={**evidence, "registered": {k: before.get(k) for k in ("sha256", "version", "registered_at", "what")}},
            **common))
    passed = not findings
    actions: list[Action] = [TagValidation(uri, bucket, key, version, "passed" if passed else "failed", registry.name, etag,
                                           ((CHECKSUM_TAG, digest),))]
    if passed and before is None and reads.register is not None:
        actions.append(RegisterArtifact(uri, reads.table, bucket, key, version, digest, size, judged.what, registry.name))
    fenced = _fence(policy, reads, bucket, key, stage, gate_role)
    decisions = fenced.settle(actions, findings, passed, stage or registry.stage)
    log.info("model registry object judged", extra={"key": key, "kind": judged.kind, "passed": passed, "findings": len(findings)})
    return Verdict(decisions, {"key": key, "version": version, "passed": passed, "registry": registry.name, "kind": judged.kind,
                               "sha256": digest})


def _judge(objects: ObjectStore, bucket: str, key: str, version: str | None, size: int, max_array_bytes: int,
           head_bytes: int) -> Any:
    """Sniff the first bytes; list a zip's members (central directory, ranged reads) or a tar's (streamed headers)."""
    from gate.artifacts import judge_archive, sniff

    head = objects.read_range(bucket, key, version, 0, min(size, head_bytes))
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return judge_archive("zip", _zip_members(objects, bucket, key, version, size), max_array_bytes)
    if len(head) > 262 and head[257:262] == b"ustar":
        members, complete = _tar_members(objects.open(bucket, key, version, size, seekable=False), "r|")
        return judge_archive("tar", members, max_array_bytes, complete)
    if head[:2] == b"\x1f\x8b":
        judged = sniff(head, size, key, max_array_bytes)
        if judged.what.startswith("gzip tar archive"):
            members, complete = _tar_members(objects.open(bucket, key, version, size, seekable=False), "r|gz")
            return judge_archive("tar.gz", members, max_array_bytes, complete)
        return judged
    return sniff(head, size, key, max_array_bytes)


_MAX_MEMBERS = 2000
_MEMBER_HEAD = 4096
_TAR_SCAN = 512 << 20  # bytes of a tar stream read for its member list at most


def _zip_members(objects: ObjectStore, bucket: str, key: str, version: str | None, size: int) -> list[Any]:
    import zipfile

    from gate.artifacts import Member

    with zipfile.ZipFile(io.BufferedReader(objects.open(bucket, key, version, size, seekable=True), 1 << 16)) as archive:
        infos = archive.infolist()[:_MAX_MEMBERS]
        out = []
        for n, info in enumerate(infos):
            head = b""
            if n < 64 and not info.is_dir() and info.file_size:
                with archive.open(info) as member:
                    head = member.read(_MEMBER_HEAD)
            out.append(Member(info.filename, info.file_size, head))
        return out


def _tar_members(stream: Any, mode: str) -> tuple[list[Any], bool]:
    import tarfile

    from gate.artifacts import Member

    out: list[Member] = []
    read = 0
    with tarfile.open(fileobj=stream, mode=mode) as archive:
        for info in archive:
            head = b""
            if info.isfile() and len(out) < 64:
                member = archive.extractfile(info)
                head = member.read(_MEMBER_HEAD) if member is not None else b""
            out.append(Member(info.name, info.size, head))
            read += info.size
            if len(out) >= _MAX_MEMBERS or read > _TAR_SCAN:
                return out, False
    return out, True


def _sha256(body: Any) -> str:
    digest = hashlib.sha256()
    while chunk := body.read(8 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _report_id(version: str | None, sequencer: str | None, etag: str | None) -> str:
    """Reports of an unversioned key's successive writes must not overwrite each other."""
    if version_arg(version):
        return str(version)
    return f"seq-{sequencer}" if sequencer else f"etag-{etag or 'none'}"


def _current_etag(reads: Reads, bucket: str, key: str) -> str | None:
    head = reads.objects.head(bucket, key, None)
    return None if head is None else str(head.get("ETag", "")).strip('"')


@dataclass
class _Fence:
    """The fence a bucket needs (:func:`gate.actions.fence`), and whether it is in place and fits."""

    bucket: str
    key: str
    statements: str  # JSON
    changed: bool
    size: int
    stage: str | None
    prefixes: tuple[str, ...]
    gate_role: str = ""

    @property
    def too_large(self) -> bool:
        return self.changed and self.size > POLICY_LIMIT

    @property
    def unconfigured(self) -> bool:
        """Without the gate's own role ARN the fence would deny everyone, the gate included: it is not written."""
        return self.changed and not self.gate_role

    def action(self, reason: str) -> list[Action]:
        if self.too_large or self.unconfigured:
            return []
        return [Quarantine(f"s3://{self.bucket}", self.bucket, self.key, self.statements, reason)]

    def settle(self, bookkeeping: list[Action], findings: list[Finding], passed: bool, stage: str) -> list[Decision]:
        """Bookkeeping (and the fence, if it is not in place yet); each finding with the fence that contains it."""
        own = self.action("fence") if self.changed and (passed or not findings) else []
        decisions = [Decision(None, bookkeeping + own, stage)]
        decisions += [Decision(f, [] if passed else self.action(f.rule), stage) for f in findings]
        if self.unconfigured:
            decisions.append(Decision(self.unconfigured_finding(), [], stage))
        elif self.too_large:
            decisions.append(Decision(self.finding(), [], stage))
        return decisions

    def unconfigured_finding(self) -> Finding:
        rule = "data.quarantine-unconfigured"
        return Finding(
            rule=rule, severity="critical", stage=self.stage, resource=f"arn:aws:s3:::{self.bucket}",
            summary=f"The schema gate does not know its own role (STAGEWARDEN_GATE_ROLE_ARN is empty), so it did not write "
                    f"the quarantine statements on {self.bucket}: they would deny every principal, the gate included. "
                    f"Objects under its gated prefixes are readable before they are validated until it is set.",
            evidence={"bucket": self.bucket, "setting": "STAGEWARDEN_GATE_ROLE_ARN", "gated_prefixes": list(self.prefixes[:20]),
                      "object": f"s3://{self.bucket}/{self.key}"},
            dedup_key=f"{rule}:{hashlib.sha256(self.bucket.encode()).hexdigest()[:20]}",
        )

    def finding(self) -> Finding:
        rule = "data.quarantine-too-large"
        return Finding(
            rule=rule, severity="critical", stage=self.stage, resource=f"arn:aws:s3:::{self.bucket}",
            summary=f"The bucket policy of {self.bucket} would be {self.size} bytes with the schema gate's statements, above "
                    f"S3's limit of {POLICY_LIMIT}: objects under its gated prefixes are readable before they are "
                    f"validated until the policy is shortened.",
            evidence={"bucket": self.bucket, "policy_bytes": self.size, "limit_bytes": POLICY_LIMIT,
                      "gated_prefixes": list(self.prefixes[:20]), "statements": [s["Sid"] for s in json.loads(self.statements)],
                      "object": f"s3://{self.bucket}/{self.key}"},
            dedup_key=f"{rule}:{hashlib.sha256(self.bucket.encode()).hexdigest()[:20]}",
        )


def _fence(policy: Policy, reads: Reads, bucket: str, key: str, stage: str | None, gate_role: str) -> _Fence:
    gated, validated = gated_prefixes(policy, bucket, stage)
    statements = fence(bucket, gated, validated, gate_role)
    current = reads.policies.get(bucket) if reads.policies is not None else None
    _, changed, size = merged(current, statements)
    if reads.policies is None:
        changed = True  # unknown: let the action find out
    return _Fence(bucket, key, json.dumps(statements), changed, size, stage, gated, gate_role)


def _findings(report: dict[str, Any], problem: tuple[str, str] | None, contract: Contract, resource: str,
              report_uri: str) -> list[Finding]:
    common = {"severity": contract.severity, "stage": contract.stage, "resource": resource}
    evidence = {"contract": contract.name, "contract_version": contract.version, "object_version": report.get("object_version"),
                "rows": report.get("rows"), "report": report_uri}
    if problem is not None:
        return [Finding(rule=problem[0], summary=f"{resource} was not validated against {contract.name}: {problem[1]}.",
                        evidence={**evidence, "error": problem[1]}, **common)]
    failed = [c for c in report["checks"] if not c["passed"]]
    out = []
    for rule, names, what in (("data.schema", SCHEMA_CHECKS, "schema"), ("data.quality", QUALITY_CHECKS, "quality")):
        hits = [c for c in failed if c["check"] in names]
        if hits:
            parts = "; ".join(_part(c) for c in hits[:10]) + (f"; and {len(hits) - 10} more" if len(hits) > 10 else "")
            out.append(Finding(rule=rule, summary=_bounded(f"{resource} fails the {what} checks of {contract.name}: {parts}.", 1000),
                               evidence={**evidence, "checks": hits[:20], **({"checks_omitted": len(hits) - 20} if len(hits) > 20 else {})},
                               **common))
    drifted = {k: v for k, v in report.get("drift", {}).items() if v["score"] > v["threshold"]}
    if drifted:
        parts = ", ".join(f"{k} psi {v['score']:.3f}" for k, v in drifted.items())
        out.append(Finding(rule="data.drift", summary=f"{resource} drifted from the {contract.name} baseline: {parts}.",
                           evidence={**evidence, "drift": drifted}, **common))
    return out


def _part(check: dict[str, Any]) -> str:
    """``type(user_id) 3 failed rows`` or, when it is not only row-level, the check's note (column names, counts: no values)."""
    name = check["check"] + (f"({check['column']})" if check["column"] else "")
    rows = f"{check['failed_rows']} failed rows" if check["failed_rows"] else ""
    note = check.get("note") or ""
    return f"{name} " + ", ".join(p for p in (_bounded(note, 200), rows) if p)


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " …[truncated]"


def _baseline_finding(exc: BaselineUnreadable, contract: Contract, resource: str, report_uri: str) -> Finding:
    """One incident per baseline location: the publisher's dedup window turns repeats into a count."""
    bucket, _, key = exc.location.removeprefix("s3://").partition("/")
    return Finding(
        rule=BASELINE_RULE, severity="medium", stage=contract.stage, resource=f"arn:aws:s3:::{bucket}/{key}",
        summary=f"The drift baseline {exc.location} of contract {contract.name} could not be read ({exc.error}); "
                f"drift is not evaluated until it can be.",
        evidence={"contract": contract.name, "baseline": exc.location, "error": exc.error, "object": resource,
                  "report": report_uri},
        dedup_key=f"{BASELINE_RULE}:{hashlib.sha256(exc.location.encode()).hexdigest()[:20]}",
    )
