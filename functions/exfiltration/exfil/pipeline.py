"""From one typed event to decisions: check the log file's source, read it (or the management event), detect, decide.

Pure orchestration: AWS is reached only through the ports handed in (reads and state);
what to change is returned as :class:`~stage_policy.actions.Decision` values for the
layer's executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from exfil.deployment import Deployment, is_digest
from exfil.engine import Detector
from exfil.ports import GrantLookup, LogFileSource
from exfil.reader import ReadStats, cyclic_gc_paused, iter_batches
from exfil.windows import WindowStore

from stage_policy.actions import Decision
from stage_policy.events import API_CALL
from stage_policy.findings import Finding
from stage_policy.model import Policy

LOG_SUFFIXES = (".json.gz", ".json")


@dataclass
class Ports:
    source: LogFileSource
    windows: WindowStore
    grants: GrantLookup
    bucket_tags: Callable[[str], dict[str, str]] | None = None  # stage_policy.tags.BucketTags
    deployment: Deployment = field(default_factory=Deployment)


def is_log_file(key: str) -> bool:
    return key.endswith(LOG_SUFFIXES) and not is_digest(key) and "/CloudTrail-Digest/" not in key


def replay_key(event: Any) -> str | None:
    """What makes a redelivery the same event; None for objects that are not CloudTrail log files."""
    if event.detail_type == API_CALL:
        return f"api#{event.detail.eventID or event.id}"
    obj = event.detail.object
    if not is_log_file(obj.key):
        return None
    return f"file#{event.detail.bucket.name}/{obj.key}#{obj.etag or obj.sequencer or ''}"


def decide(event: Any, policy: Policy, ports: Ports, log: Any) -> list[Decision]:
    detector = Detector(policy, ports.windows, ports.grants.active, ports.bucket_tags, ports.deployment)
    if event.detail_type == API_CALL:
        detector.feed([event.detail.model_dump()])
        return detector.finish(f"eventbridge:{event.id}")
    bucket, key = event.detail.bucket.name, event.detail.object.key
    org = policy.organization
    problem = ports.deployment.log_source_problem(bucket, key, org.account_ids, org.org_id)
    if problem is not None:
        log.warning("object skipped: not a log file Stagewarden reads", extra={"bucket": bucket, "key": key, "problem": problem})
        return [unexpected_source(bucket, key, problem)]
    stats = ReadStats()
    with cyclic_gc_paused():
        for batch in iter_batches(ports.source.open(bucket, key), stats):
            detector.feed(batch)
        decisions = detector.finish(f"s3://{bucket}/{key}", stats)
    log.info("log file read", extra={"key": key, "records": stats.records, "decisions": len(decisions)})
    return decisions


def unexpected_source(bucket: str, key: str, problem: str) -> Decision:
    """An object Stagewarden was asked to read but must not trust as a log file: skipped, reported."""
    finding = Finding(rule="input.log-source", severity="high", resource=f"s3://{bucket}/{key}",
                      summary=f"Skipped s3://{bucket}/{key}: {problem}. Only CloudTrail's own keys in the trail bucket are read.",
                      evidence={"bucket": bucket, "key": key, "problem": problem})
    return Decision(finding, [], None, "alert")
