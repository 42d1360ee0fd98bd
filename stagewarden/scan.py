"""`stagewarden scan cloudtrail`: the exfiltration rules over exported CloudTrail logs, state in memory.

Never a traceback: a file that cannot be read, or whose processing fails for any reason,
becomes an ``input.malformed`` finding about that file, and the scan goes on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from exfil.engine import Decision, Detector, MemoryWindowStore
from exfil.reader import ReadStats, cyclic_gc_paused, iter_batches

from stage_policy.errors import describe
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
    """Files as given; folders searched recursively for log files. Missing paths raise FileNotFoundError.

    A folder that cannot be listed is kept as a path: reading it then fails into a finding.
    """
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found: list[Path] = []
            for folder, _dirs, files in os.walk(path, onerror=lambda exc: found.append(Path(exc.filename or raw))):
                found += [Path(folder) / f for f in files if f.endswith(_SUFFIXES)]
            out += sorted(found)
        elif path.is_file():
            out.append(path)
        elif not path.exists():
            raise FileNotFoundError(f"{raw}: no such file or folder")
        else:
            out.append(path)  # a socket, a fifo, a dangling link: its read fails into a finding
    return out


def scan(files: list[Path], policy: Policy) -> Iterator[tuple[Path, ReadStats, list[Decision]]]:
    detector = Detector(policy, MemoryWindowStore())
    for path in files:
        stats = ReadStats()
        with cyclic_gc_paused():  # records and window states are acyclic: see exfil.reader.cyclic_gc_paused
            try:
                with path.open("rb") as fh:
                    for batch in iter_batches(fh, stats):
                        detector.feed(batch)
            except OSError as exc:
                stats.issue("unreadable", f"cannot read ({exc.strerror or exc})")
            except Exception as exc:  # noqa: BLE001 - never a traceback: the file is reported, the scan goes on
                stats.issue("unreadable", f"processing failed ({describe(exc)})")
            try:
                decisions = detector.finish(str(path), stats)
            except Exception as exc:  # noqa: BLE001 - the memory window store cannot fail; anything else is reported
                stats.issue("unreadable", f"processing failed ({describe(exc)})")
                decisions = Detector(policy, MemoryWindowStore()).finish(str(path), stats)
        yield path, stats, decisions


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
