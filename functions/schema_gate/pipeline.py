"""From one S3 'Object Created' event to a recorded decision: validate, report, tag, quarantine or promote."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Callable

from gate.engine import TooLarge
from gate.readers import ReadError
from gate.run import validate

from stage_policy.findings import Finding
from stage_policy.mapping import stage_for_bucket
from stage_policy.model import Contract, Policy

SCHEMA_CHECKS = {"columns", "type", "required"}
QUALITY_CHECKS = {"range", "regex", "enum", "length", "unique", "duplicate_rows", "null_fraction"}


@dataclass
class Ports:
    objects: Any  # ObjectStore
    quarantine: Any  # Quarantine
    ledger: Any  # Ledger
    publish: Callable[[Finding], Any]
    bucket_tags: Callable[[str], dict[str, str]] | None = None  # stage_policy.tags.BucketTags


def contract_for(policy: Policy, bucket: str, key: str, tags: dict[str, str] | None = None) -> Contract | None:
    stage = stage_for_bucket(policy, bucket, tags).stage
    for contract in policy.contracts:
        if contract.stage == stage and key.startswith(contract.prefix) and (contract.bucket is None or fnmatchcase(bucket, contract.bucket)):
            return contract
    return None


def object_ref(event: dict[str, Any]) -> tuple[str, str, str | None]:
    detail = event.get("detail")
    if event.get("detail-type") != "Object Created" or not isinstance(detail, dict):
        raise ValueError(f"record body: detail-type {event.get('detail-type')!r} is not 'Object Created'")
    bucket = (detail.get("bucket") or {}).get("name")
    obj = detail.get("object") or {}
    if not bucket or not obj.get("key"):
        raise ValueError("record body: detail.bucket.name and detail.object.key are required")
    return bucket, obj["key"], obj.get("version-id")


def handle(event: dict[str, Any], policy: Policy, ports: Ports, baselines: Callable[[str], dict[str, Any] | None], log: Any) -> dict[str, Any]:
    bucket, key, version = object_ref(event)
    contract = contract_for(policy, bucket, key, ports.bucket_tags(bucket) if ports.bucket_tags else None)
    if contract is None:
        log.debug("no contract covers this object; skipped", extra={"bucket": bucket, "key": key})
        return {"skipped": "no contract", "key": key}
    head = ports.objects.head(bucket, key, version)
    version = version or head.get("VersionId")  # events of unversioned uploads name none: the current one
    if ports.ledger.done(bucket, key, version):
        log.info("object version already validated; skipped", extra={"key": key, "version": version})
        return {"skipped": "already validated", "key": key}
    size = int(head.get("ContentLength", 0))
    mode = policy.mode_for(contract.stage)
    resource = f"arn:aws:s3:::{bucket}/{key}"
    report: dict[str, Any]
    samples: dict[str, Any] = {}
    problem: tuple[str, str] | None = None
    if size > contract.max_object_bytes:
        problem = ("data.too-large", f"{size} bytes is above the contract's max_object_bytes ({contract.max_object_bytes})")
    else:
        baseline = baselines(contract.drift.baseline) if contract.drift else None
        try:
            source = ports.objects.open(bucket, key, version, size, seekable=contract.format == "parquet")
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
    report_key = f"{contract.reports_prefix}{key}.{version or 'null'}.json"
    ports.objects.put_json(bucket, report_key, report)
    ports.objects.tag(bucket, key, version, "passed" if passed else "failed", contract.name)
    actions = []
    if passed and contract.validated_prefix is not None:
        dest = contract.validated_prefix + key[len(contract.prefix):]
        ports.objects.copy(bucket, key, version, dest)
        actions.append(f"promoted to s3://{bucket}/{dest}")
    elif not passed:
        actions.append(ports.quarantine.ensure(bucket) if mode == "enforce"
                       else f"dry run: would deny reads of s3://{bucket}/{key} (tagged failed) to all but the gate")
    findings = _findings(report, problem, contract, resource, report_key, bucket, actions)
    for finding in findings:
        ports.publish(finding)
    ports.ledger.mark(bucket, key, version, passed)
    log.info("object validated", extra={"key": key, "passed": passed, "rows": report.get("rows"), "findings": len(findings)})
    return {"key": key, "version": version, "passed": passed, "report": f"s3://{bucket}/{report_key}", "actions": actions,
            "findings": [f.rule for f in findings]}


def _findings(report: dict[str, Any], problem: tuple[str, str] | None, contract: Contract, resource: str, report_key: str,
              bucket: str, actions: list[str]) -> list[Finding]:
    common = {"severity": contract.severity, "stage": contract.stage, "resource": resource,
              "action": "; ".join(actions) or "none"}
    evidence = {"contract": contract.name, "contract_version": contract.version, "object_version": report.get("object_version"),
                "rows": report.get("rows"), "report": f"s3://{bucket}/{report_key}"}
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
