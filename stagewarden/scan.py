"""`stagewarden scan cloudtrail`: the exfiltration rules over exported CloudTrail logs, state in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from exfil.engine import Decision, Detector, MemoryWindowStore
from exfil.reader import ReadStats, cyclic_gc_paused, iter_batches

from stage_policy.loader import validate_document
from stage_policy.model import Policy
from stage_policy.presets import PRESETS

_SUFFIXES = (".json", ".json.gz", ".gz", ".jsonl", ".jsonl.gz", ".ndjson")


def default_policy() -> Policy:
    """Without --policy: every bucket belongs to a download-denied lab stage (the field's thresholds)."""
    return validate_document({
        "framework": "custom",
        "stages": {"lab": PRESETS["three-stage"]["prod-discovery"]},
        "resources": {"buckets": [{"pattern": "*", "stage": "lab"}]},
    }, "built-in default policy")


def expand(paths: Iterable[str]) -> list[Path]:
    """Files as given; folders searched recursively for log files. Missing paths raise FileNotFoundError."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES))
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"{raw}: no such file or folder")
    return out


def scan(files: list[Path], policy: Policy) -> Iterator[tuple[Path, ReadStats, list[Decision]]]:
    detector = Detector(policy, MemoryWindowStore())
    for path in files:
        stats = ReadStats()
        try:
            with path.open("rb") as fh, cyclic_gc_paused():
                for batch in iter_batches(fh, stats):
                    detector.feed(batch)
        except OSError as exc:
            stats.issue("unreadable", f"cannot read ({exc.strerror or exc})")
        yield path, stats, detector.finish(str(path), stats)


def one_per_incident(decisions: Iterable[Decision]) -> list[Decision]:
    """Repeats of an incident (same dedup key) fold into its first finding: count and last_seen grow."""
    seen: dict[str, Decision] = {}
    for d in decisions:
        first = seen.get(d.finding.dedup_key)
        if first is None:
            seen[d.finding.dedup_key] = d
            continue
        first.finding.count += d.finding.count
        if d.finding.last_seen and first.finding.last_seen and d.finding.last_seen > first.finding.last_seen:
            first.finding.last_seen = d.finding.last_seen
    return list(seen.values())
