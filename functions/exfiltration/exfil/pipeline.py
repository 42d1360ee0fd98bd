"""From one typed event to decisions: read the log file (or the management event), detect, decide.

Pure orchestration: AWS is reached only through the ports handed in (reads and state);
what to change is returned as :class:`~stage_policy.actions.Decision` values for the
layer's executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from exfil.engine import Detector, WindowStore
from exfil.ports import GrantLookup, LogFileSource
from exfil.reader import ReadStats, cyclic_gc_paused, iter_batches

from stage_policy.actions import Decision
from stage_policy.events import API_CALL
from stage_policy.model import Policy

LOG_SUFFIXES = (".json.gz", ".json")


@dataclass
class Ports:
    source: LogFileSource
    windows: WindowStore
    grants: GrantLookup
    bucket_tags: Callable[[str], dict[str, str]] | None = None  # stage_policy.tags.BucketTags


def is_log_file(key: str) -> bool:
    return key.endswith(LOG_SUFFIXES) and "/CloudTrail-Digest/" not in key


def replay_key(event: Any) -> str | None:
    """What makes a redelivery the same event; None for objects that are not CloudTrail log files."""
    if event.detail_type == API_CALL:
        return f"api#{event.detail.eventID or event.id}"
    obj = event.detail.object
    if not is_log_file(obj.key):
        return None
    return f"file#{event.detail.bucket.name}/{obj.key}#{obj.etag or obj.sequencer or ''}"


def decide(event: Any, policy: Policy, ports: Ports, log: Any) -> list[Decision]:
    detector = Detector(policy, ports.windows, ports.grants.active, ports.bucket_tags)
    if event.detail_type == API_CALL:
        detector.feed([event.detail.model_dump()])
        return detector.finish(f"eventbridge:{event.id}")
    bucket, key = event.detail.bucket.name, event.detail.object.key
    stats = ReadStats()
    with cyclic_gc_paused():
        for batch in iter_batches(ports.source.open(bucket, key), stats):
            detector.feed(batch)
    decisions = detector.finish(f"s3://{bucket}/{key}", stats)
    log.info("log file read", extra={"key": key, "records": stats.records, "decisions": len(decisions)})
    return decisions
