"""From one S3 'Object Created' event to decisions: validate, then report, tag, promote or quarantine, and alert.

:func:`decide` reads the object (and its contract's drift baseline) through the ports and
returns :class:`~stage_policy.actions.Decision` values; it changes nothing. The handler
hands them to the layer's executor, which carries them out in the stage's mode.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Callable

from gate.actions import Promote, Quarantine, TagValidation, WriteReport, object_uri
from gate.engine import TooLarge
from gate.ports import BaselineUnreadable, Baselines, ObjectStore
from gate.readers import ReadError
from gate.run import validate

from stage_policy.actions import Action, Decision
from stage_policy.findings import Finding
from stage_policy.mapping import stage_for_bucket
from stage_policy.model import Contract, Policy

SCHEMA_CHECKS = {"columns", "type", "required"}
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


def decide(ref: ObjectRef, policy: Policy, reads: Reads, gate_role: str, log: Any) -> Verdict:
    bucket, key = ref.bucket, ref.key
    contract = contract_for(policy, bucket, key, reads.bucket_tags(bucket))
    if contract is None:
        log.debug("no contract covers this object; skipped", extra={"bucket": bucket, "key": key})
        return Verdict(summary={"skipped": "no contract", "key": key})
    head = reads.objects.head(bucket, key, ref.version)
    version = ref.version or head.get("VersionId")  # events of unversioned uploads name none: the current one
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
            source = reads.objects.open(bucket, key, version, size, seekable=contract.format == "parquet")
            report, validator = validate(source, key, contract, baseline)
            samples = validator.samples_with_values()
        except TooLarge as exc:
            problem = ("data.too-large", f"{exc.rows} rows read, above the contract's max_rows ({exc.limit})")
        except ReadError as exc:
            problem = ("data.schema", str(exc))
    if problem is not None:
        report = {"contract": contract.name, "passed": False, "rows": None, "checks": [], "duplicate_rows": 0, "drift": {},
                  "error": problem[1]}
    passed = bool(report["passed"])
    report.update({"contract_version": contract.version, "bucket": bucket, "key": key, "object_version": version,
                   "size_bytes": size, "samples": samples})
    if contract.drift and problem is None:
        report["drift_baseline"] = ({"location": contract.drift.baseline, "status": "read"} if unreadable is None else
                                    {"location": unreadable.location, "status": "unreadable", "error": unreadable.error,
                                     "drift": "not evaluated"})
    report_key = f"{contract.reports_prefix}{key}.{version or 'null'}.json"
    report_uri = f"s3://{bucket}/{report_key}"
    bookkeeping: list[Action] = [
        WriteReport(report_uri, bucket, report_key, json.dumps(report, indent=2, default=str)),
        TagValidation(object_uri(bucket, key, version), bucket, key, version, "passed" if passed else "failed", contract.name),
    ]
    if passed and contract.validated_prefix is not None:
        dest = contract.validated_prefix + key[len(contract.prefix):]
        bookkeeping.append(Promote(f"s3://{bucket}/{dest}", bucket, key, version, dest))
    findings = _findings(report, problem, contract, resource, report_uri)

    def quarantine(reason: str) -> list[Action]:
        return [] if passed else [Quarantine(f"s3://{bucket}", bucket, key, gate_role, reason)]

    decisions = [Decision(None, bookkeeping + (quarantine("failed") if not findings else []), contract.stage)]
    decisions += [Decision(f, quarantine(f.rule), contract.stage) for f in findings]
    if unreadable is not None:
        decisions.append(Decision(_baseline_finding(unreadable, contract, resource, report_uri), [], contract.stage))
    log.info("object validated", extra={"key": key, "passed": passed, "rows": report.get("rows"), "findings": len(findings)})
    return Verdict(decisions, {"key": key, "version": version, "passed": passed, "report": report_uri})


def _findings(report: dict[str, Any], problem: tuple[str, str] | None, contract: Contract, resource: str,
              report_uri: str) -> list[Finding]:
    common = {"severity": contract.severity, "stage": contract.stage, "resource": resource}
    evidence = {"contract": contract.name, "contract_version": contract.version, "object_version": report.get("object_version"),
                "rows": report.get("rows"), "report": report_uri}
    if problem is not None:
        return [Finding(rule=problem[0], summary=f"{resource} was not validated against {contract.name}: {problem[1]}.",
                        evidence={**evidence, "error": problem[1]}, **common)]
    failed = [c for c in report["checks"] if c["failed_rows"]]
    out = []
    for rule, names, what in (("data.schema", SCHEMA_CHECKS, "schema"), ("data.quality", QUALITY_CHECKS, "quality")):
        hits = [c for c in failed if c["check"] in names]
        if hits:
            parts = ", ".join(f"{c['check']}{'(' + c['column'] + ')' if c['column'] else ''} {c['failed_rows']}" for c in hits)
            out.append(Finding(rule=rule, summary=f"{resource} fails the {what} checks of {contract.name}: {parts} failed rows.",
                               evidence={**evidence, "checks": hits}, **common))
    drifted = {k: v for k, v in report.get("drift", {}).items() if v["score"] > v["threshold"]}
    if drifted:
        parts = ", ".join(f"{k} psi {v['score']:.3f}" for k, v in drifted.items())
        out.append(Finding(rule="data.drift", summary=f"{resource} drifted from the {contract.name} baseline: {parts}.",
                           evidence={**evidence, "drift": drifted}, **common))
    return out


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
