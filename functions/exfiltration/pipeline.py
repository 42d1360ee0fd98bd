"""From one queued event to published findings: read, detect, contain (or say what would be), publish."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from exfil.engine import Decision, Detector
from exfil.reader import ReadStats, cyclic_gc_paused, iter_batches

from stage_policy.findings import Finding
from stage_policy.model import Policy

LOG_SUFFIXES = (".json.gz", ".json")


@dataclass
class Ports:
    source: Any  # LogFileSource
    windows: Any  # DynamoWindowStore
    ledger: Any  # FileLedger
    grants: Any  # GrantLookup
    containment: Any  # Containment
    audit: Any  # AuditLog
    publish: Callable[[Finding], Any]
    bucket_tags: Callable[[str], dict[str, str]] | None = None  # stage_policy.tags.BucketTags
    done: dict[tuple[str, str], str] = field(default_factory=dict)  # actions carried out in this run


def parse_body(body: str) -> dict[str, Any]:
    """The EventBridge event inside an SQS message, or ValueError naming the part that is wrong."""
    try:
        event = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"record body: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(event, dict) or not isinstance(event.get("detail"), dict) or "detail-type" not in event:
        raise ValueError("record body: not an EventBridge event (needs 'detail-type' and a 'detail' object)")
    return event


def respond(decision: Decision, ports: Ports) -> Finding:
    """Carry out (enforce) or describe (dry run) the decision's containment, recording every step."""
    finding = decision.finding
    results = []
    for action in decision.actions:
        if decision.mode == "enforce" and (action.kind, action.target) in ports.done:
            result = f"already done for another finding of this log file: {ports.done[(action.kind, action.target)]}"
        elif decision.mode == "enforce":
            result = ports.containment.carry_out(action)
            ports.done[(action.kind, action.target)] = result
            ports.audit.record(finding.rule, finding.dedup_key, action.kind, result)
        else:
            result = f"dry run: would {action.describe()}"
        results.append(result)
    if results:
        finding.action = "; ".join(results)
        finding.evidence["actions"] = results
    else:
        finding.action = "alert only" if decision.response == "alert" else "alert only (this rule has no automatic containment)"
    return finding


def handle(event: dict[str, Any], policy: Policy, ports: Ports, log: Any) -> list[Finding]:
    detail_type = event["detail-type"]
    detector = Detector(policy, ports.windows, ports.grants.active, ports.bucket_tags)
    if detail_type == "Object Created":
        bucket = (event["detail"].get("bucket") or {}).get("name")
        obj = event["detail"].get("object") or {}
        key, etag = obj.get("key"), str(obj.get("etag") or obj.get("eTag") or obj.get("version-id") or "")
        if not bucket or not key:
            raise ValueError("record body: detail.bucket.name and detail.object.key are required")
        if not key.endswith(LOG_SUFFIXES) or "/CloudTrail-Digest/" in key:
            log.debug("not a CloudTrail log file, skipped", extra={"key": key})
            return []
        if ports.ledger.done(bucket, key, etag):
            log.info("log file already processed, skipped", extra={"key": key})
            return []
        stats = ReadStats()
        with cyclic_gc_paused():
            for batch in iter_batches(ports.source.open(bucket, key), stats):
                detector.feed(batch)
        decisions = detector.finish(f"s3://{bucket}/{key}", stats)
        findings = [respond(d, ports) for d in decisions]
        for finding in findings:
            ports.publish(finding)
        ports.ledger.mark(bucket, key, etag, stats.records)
        log.info("log file processed", extra={"key": key, "records": stats.records, "findings": len(findings)})
        return findings
    if detail_type == "AWS API Call via CloudTrail":
        detector.feed([event["detail"]])
        findings = [respond(d, ports) for d in detector.finish(f"eventbridge:{event.get('id', '?')}")]
        for finding in findings:
            ports.publish(finding)
        return findings
    raise ValueError(f"record body: detail-type {detail_type!r} is neither 'Object Created' nor 'AWS API Call via CloudTrail'")
