"""`stagewarden scan cloudtrail`: the exfiltration rules over exported CloudTrail logs, state in memory.

Never a traceback: a file that cannot be read, or whose processing fails for any reason,
becomes an ``input.malformed`` finding about that file, and the scan goes on.
"""

from __future__ import annotations

import codecs
import os
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from exfil.engine import Decision, Detector, MemoryWindowStore
from exfil.reader import ReadStats, cyclic_gc_paused, iter_batches

from stage_policy.errors import describe
from stage_policy.loader import validate_document
from stage_policy.model import Policy
from stage_policy.presets import PRESETS
from stagewarden.usage import HINT, UsageError, not_utf8, os_problem

_SUFFIXES = (".json", ".json.gz", ".gz", ".jsonl", ".jsonl.gz", ".ndjson")


def default_policy() -> Policy:
    """Without --policy: every bucket belongs to a download-denied lab stage (the field's thresholds)."""
    return validate_document({
        "framework": "custom",
        "stages": {"lab": PRESETS["three-stage"]["prod-discovery"]},
        "resources": {"buckets": [{"pattern": "*", "stage": "lab"}]},
    }, "built-in default policy")


def expand(paths: Iterable[str]) -> list[Path]:
    """Files as given; folders searched recursively for log files.

    Mistakes raise :class:`UsageError`: a missing path, a file named on the command line
    that is no CloudTrail log at all (see :func:`check_log_file`), nothing to scan. A log
    file that is damaged (truncated, a malformed record) is not a mistake: the scan reports
    it as an ``input.malformed`` finding and reads every other record; so is a file in a
    folder that cannot be read (a sub-folder that cannot be listed is kept as a path).
    """
    paths = list(paths)
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found: list[Path] = []
            for folder, _dirs, files in os.walk(path, onerror=lambda exc: found.append(Path(exc.filename or raw))):
                found += [Path(folder) / f for f in files if f.endswith(_SUFFIXES)]
            out += sorted(found)
        elif path.is_file():
            check_log_file(path)
            out.append(path)
        elif not path.exists():
            raise UsageError(f"{raw}: no such file or folder{HINT}check the path")
        else:
            out.append(path)  # a socket, a fifo: its read fails into a finding
    if not out:
        where = "this folder" if len(paths) == 1 else "these folders"
        raise UsageError(f"{', '.join(paths)}: no CloudTrail log files (*{', *'.join(_SUFFIXES)}) in {where}{HINT}"
                         "point at the folder the logs were exported to")
    return out


_SNIFF = 64 * 1024


def check_log_file(path: Path) -> None:
    """Refuse a file that is no CloudTrail log at all: binary, not UTF-8, or not JSON, judged by its first 64 KiB."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF)
            whole = len(head) < _SNIFF
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({os_problem(exc)}){HINT}check the path and its permissions") from None
    fix = f"{HINT}pass CloudTrail log files (JSON, optionally gzip) or the folder holding them"
    if head[:2] == b"\x1f\x8b":
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            head, whole = inflater.decompress(head, _SNIFF), whole and inflater.eof
        except zlib.error:
            return  # a damaged gzip: the scan reports it as input.malformed
    if not head.strip():
        return  # an empty log has no records, and says so in the summary
    if b"\x00" in head[:8192]:
        raise UsageError(f"{path}: binary file, not a CloudTrail log{fix}")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=whole)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: {not_utf8(head, exc)}, not a CloudTrail log (CloudTrail writes UTF-8 JSON){fix}") from None
    start = head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]
    if start not in (b"{", b"["):
        first = head.lstrip().split(b"\n", 1)[0][:40].decode("utf-8", "replace")
        raise UsageError(f"{path}: not JSON (starts with {first!r}), not a CloudTrail log{fix}")


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
