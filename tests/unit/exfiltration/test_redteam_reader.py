"""Red-team the 64 KiB batches of the exfiltration reader: records at and across batch edges are read once, in order,
and nothing a record's content can hold makes the reader drop another record."""

from __future__ import annotations

import gzip
import io
from datetime import datetime, timezone

import orjson
from exfil.reader import BATCH, ReadStats, iter_batches

from stagewarden.trailgen import bulk_download, log_file

START = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)


def read(data: bytes) -> tuple[list, ReadStats]:
    stats = ReadStats()
    out = [r for batch in iter_batches(io.BytesIO(data), stats) for r in batch]
    return out, stats


def records(n: int) -> list[dict]:
    return bulk_download(role="R", session="s", bucket="acme-lab-data", objects=n, start=START, seconds=60, nbytes=10)


def canonical(recs: list) -> bytes:
    return b'{"Records":[' + b",".join(orjson.dumps(r) for r in recs) + b"]}"


def test_a_single_record_larger_than_a_batch_is_read_once_with_its_neighbours() -> None:
    recs = records(5)
    recs[2]["userAgent"] = "A" * (3 * BATCH)  # one record spans four batches
    for data in (canonical(recs), gzip.compress(canonical(recs))):
        out, stats = read(data)
        assert out == recs and stats.issues == []


def test_multibyte_utf8_split_at_every_batch_edge_is_read_intact() -> None:
    recs = records(400)
    for i, r in enumerate(recs):
        r["requestParameters"]["key"] = "données/" + "é€😀" * (i % 7) + f"/{i}"
    data = canonical(recs)
    # shift the content by 1..3 bytes so that a batch edge falls inside a 2-, 3- and 4-byte character
    for pad in range(4):
        shifted = [dict(r) for r in recs]
        shifted[0] = {**shifted[0], "userAgent": "x" * pad}
        out, stats = read(canonical(shifted))
        assert out == shifted and stats.issues == []
    assert len(data) > 4 * BATCH


def test_a_bulk_download_straddling_batches_counts_each_record_once() -> None:
    recs = records(2000)  # ~1 MB: dozens of batch edges, each inside some record
    out, stats = read(log_file(recs))
    keys = [r["requestParameters"]["key"] for r in out]
    assert len(keys) == len(set(keys)) == 2000 and stats.records == 2000 and stats.batches > 10 and stats.issues == []


def test_a_malformed_record_at_a_batch_edge_costs_only_itself() -> None:
    recs = records(600)
    body = [orjson.dumps(r) for r in recs]
    # break the record that the first batch edge cuts (a missing closing quote)
    at, pos = 0, len(b'{"Records":[')
    while pos + len(body[at]) + 1 < BATCH:
        pos += len(body[at]) + 1
        at += 1
    body[at] = body[at].replace(b'"eventName":"GetObject"', b'"eventName":"GetObject', 1)
    out, stats = read(b'{"Records":[' + b",".join(body) + b"]}")
    assert len(out) == 599 and [i.kind for i in stats.issues] == ["malformed-record"]
    assert recs[at] not in out and recs[at - 1] in out and recs[at + 1] in out


def test_a_record_holding_the_separator_in_a_nested_array_at_a_batch_edge_costs_no_other_record() -> None:
    """``,{"eventVersion"`` can occur outside strings: an array of objects inside a record (a value the caller chose)."""
    recs = records(300)
    odd = dict(recs[10])
    odd["requestParameters"] = {**odd["requestParameters"], "items": [{"a": 1}, {"eventVersion": "x", "pad": "p" * BATCH}]}
    recs[10] = odd
    out, stats = read(canonical(recs))
    others = [r for i, r in enumerate(recs) if i != 10]
    assert all(r in out for r in others)  # every other read still reaches the detector
    assert odd in out and stats.issues == []  # read whole (it was lost before the carry across the edge)


def test_a_record_with_the_separator_nested_is_read_whole_across_a_batch_edge() -> None:
    """Valid JSON, so it must reach the detector whole. Before the fix it was cut at the nested separator: reported as
    broken and lost, and a nested object whose first key is ``eventVersion`` was passed on as a record of its own
    (a caller-chosen value forging a record at a batch edge)."""
    recs = records(300)
    odd = dict(recs[10])
    odd["requestParameters"] = {**odd["requestParameters"], "items": [{"a": 1}, {"eventVersion": "x", "pad": "p" * BATCH},
                                                                       {"eventVersion": "y"}]}
    recs[10] = odd
    for data in (canonical(recs), gzip.compress(canonical(recs))):
        out, stats = read(data)
        assert out == recs and stats.issues == [] and stats.records == 300


def test_a_record_broken_before_a_batch_edge_does_not_swallow_the_next_one() -> None:
    """A record that ends early (its closing brace missing) is reported alone: the record after it is still read."""
    recs = records(600)
    body = [orjson.dumps(r) for r in recs]
    at, pos = 0, len(b'{"Records":[')
    while pos + len(body[at]) + 1 < BATCH:
        pos += len(body[at]) + 1
        at += 1
    for broken in (at - 1, at, 5):  # the last record before the edge, the one across it, one mid-batch
        damaged = list(body)
        damaged[broken] = damaged[broken][:-1]  # no closing brace
        out, stats = read(b'{"Records":[' + b",".join(damaged) + b"]}")
        assert out == recs[:broken] + recs[broken + 1:], broken
        assert [i.kind for i in stats.issues] == ["malformed-record"]
