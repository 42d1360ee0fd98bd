"""The streaming CloudTrail reader: every layout, and broken input reported without losing the rest."""

from __future__ import annotations

import gzip
import io
import json
import random
from datetime import datetime, timezone

import orjson
import pytest
from exfil.reader import ReadStats, iter_batches

from stagewarden.trailgen import bulk_download, log_file

START = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
RECORDS = bulk_download(role="R", session="s", bucket="acme-lab-data", objects=40, start=START, seconds=60, nbytes=10)


def read(data: bytes) -> tuple[list[dict], ReadStats]:
    stats = ReadStats()
    out = [r for batch in iter_batches(io.BytesIO(data), stats) for r in batch]
    return out, stats


@pytest.mark.parametrize(
    "layout, data",
    [
        ("cloudtrail-gzip", log_file(RECORDS)),
        ("cloudtrail-plain", log_file(RECORDS, compress=False)),
        ("pretty-printed", json.dumps({"Records": RECORDS}, indent=2).encode()),
        ("bare-array", json.dumps(RECORDS).encode()),
        ("bare-array-gzip", gzip.compress(json.dumps(RECORDS).encode())),
        ("json-lines", b"\n".join(json.dumps(r).encode() for r in RECORDS) + b"\n"),
        ("json-lines-of-documents", b"\n".join(json.dumps({"Records": RECORDS[i:i + 10]}).encode() for i in range(0, 40, 10))),
        ("multi-member-gzip", gzip.compress(log_file(RECORDS[:20], compress=False)) + gzip.compress(b"")),
    ],
)
def test_every_layout_yields_every_record_in_order(layout: str, data: bytes) -> None:
    records, stats = read(data)

    expected = RECORDS[:20] if layout == "multi-member-gzip" else RECORDS
    assert [r["eventID"] for r in records] == [r["eventID"] for r in expected]
    assert stats.issues == [] and stats.records == len(expected)


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_large_files_are_cut_into_small_batches_not_loaded_whole(compress: bool) -> None:
    from exfil.reader import BATCH

    many = bulk_download(role="R", session="s", bucket="b", objects=3000, start=START, seconds=600, nbytes=10)
    record_size = max(len(orjson.dumps(r)) for r in many) + 1

    stats = ReadStats()
    batches = list(iter_batches(io.BytesIO(log_file(many, compress=compress)), stats))

    # ~4 MB decompressed, in batches of at most BATCH bytes of JSON (parsed, they stay in the CPU cache)
    assert stats.records == 3000 and stats.uncompressed_bytes > 3 * (1 << 20)
    assert len(batches) >= stats.uncompressed_bytes // BATCH
    assert max(len(b) for b in batches) <= BATCH // record_size + 1
    assert [r["eventID"] for b in batches for r in b] == [r["eventID"] for r in many]


def test_a_truncated_gzip_file_yields_what_it_can_and_says_so() -> None:
    data = log_file(RECORDS)

    records, stats = read(data[: len(data) // 2])

    assert 0 < len(records) < len(RECORDS)
    assert {i.kind for i in stats.issues} >= {"truncated"}


def test_a_corrupt_record_is_skipped_and_reported_the_rest_is_read() -> None:
    body = log_file(RECORDS, compress=False)
    marker = json.dumps(RECORDS[10]["eventID"]).encode()
    broken = body.replace(marker, b'"unterminated \\', 1)

    records, stats = read(broken)

    assert len(records) >= len(RECORDS) - 2 and RECORDS[-1]["eventID"] == records[-1]["eventID"]
    assert stats.issues[0].kind == "malformed-record"


def test_a_record_containing_the_separator_pattern_is_not_split() -> None:
    nested = [dict(r) for r in RECORDS[:3]]
    nested[1]["requestParameters"] = {"items": [{"eventVersion": "nested"}]}

    records, stats = read(log_file(nested, compress=False))

    assert records[1]["requestParameters"] == {"items": [{"eventVersion": "nested"}]} and stats.issues == []


def test_a_bad_json_line_is_reported_with_its_number() -> None:
    lines = [json.dumps(r).encode() for r in RECORDS[:3]]
    lines.insert(1, b"{not json")

    records, stats = read(b"\n".join(lines))

    assert len(records) == 3 and stats.issues[0].detail.startswith("line 2 is not valid JSON")


@pytest.mark.parametrize("data, kind", [(b"", "not-cloudtrail"), (b"hello", "not-json"), (b'{"Records":[{"a":1},', "truncated")])
def test_files_that_are_not_cloudtrail_are_reported(data: bytes, kind: str) -> None:
    _, stats = read(data)

    assert stats.issues and stats.issues[0].kind == kind


def test_an_empty_records_array_is_fine() -> None:
    records, stats = read(b'{"Records":[]}')

    assert records == [] and stats.issues == []


def test_random_garbage_never_raises() -> None:
    rng = random.Random(3)
    body = log_file(RECORDS, compress=False)
    for _ in range(200):
        cut = bytearray(body)
        for _ in range(5):
            cut[rng.randrange(len(cut))] = rng.randrange(256)
        records, stats = read(bytes(cut))
        assert len(records) <= len(RECORDS)


@pytest.mark.parametrize("data", [
    b"IBAN DE89370400440532013000, customer jane.doe@bank.example\n",
    b'{"Records": [{"eventName": "GetObject", "note": DE89370400440532013000}]}',
    b'[{"eventName": "GetObject"}, DE89370400440532013000]',
])
def test_input_problems_name_no_bytes_of_the_file(data) -> None:
    # Given a log file that is not CloudTrail JSON, or breaks off at a value that is data
    stats = ReadStats()

    list(iter_batches(io.BytesIO(data), stats))

    # Then the issues (which become the input.malformed finding) say what is wrong, without quoting the file
    assert stats.issues and not any("DE8937" in i.detail or "jane" in i.detail for i in stats.issues)


def test_decompression_is_bounded_and_says_so() -> None:
    # Given a gzip bomb: 64 MiB of zeros after a valid start, a few tens of KB compressed
    bomb = gzip.compress(log_file(RECORDS, compress=False)[:-2] + b"," + b" " * (64 << 20) + b"]}")
    stats = ReadStats()

    records = [r for batch in iter_batches(io.BytesIO(bomb), stats, max_inflated=8 << 20) for r in batch]

    assert stats.uncompressed_bytes == 8 << 20 and any(i.kind == "inflate-limit" for i in stats.issues)
    assert len(records) == len(RECORDS) - 1  # the last record's separator lies beyond the limit: not cut yet
    assert len(bomb) < 200_000


def test_gzip_output_is_produced_a_block_at_a_time() -> None:
    from exfil.reader import BATCH, _inflate

    bomb = gzip.compress(b"\0" * (16 << 20))

    assert max(len(c) for c in _inflate(io.BytesIO(bomb), ReadStats())) <= BATCH


def test_a_record_larger_than_the_record_bound_is_skipped_not_buffered(monkeypatch) -> None:
    from exfil import reader

    monkeypatch.setattr(reader, "MAX_RECORD", 4096)
    monkeypatch.setattr(reader, "CHUNK", 1024)  # the file arrives in small blocks: the big record must be buffered
    huge = dict(RECORDS[1], requestParameters={"blob": "x" * 50_000})
    stats = reader.ReadStats()  # the module patched above (function tests re-import exfil as a cold start would)
    data = log_file([RECORDS[0], huge] + RECORDS[2:], compress=False)
    records = [r for batch in reader.iter_batches(io.BytesIO(data), stats) for r in batch]

    assert [r["eventID"] for r in records] == [RECORDS[0]["eventID"]] + [r["eventID"] for r in RECORDS[2:]]
    assert stats.issues[0].kind == "malformed-record" and "larger than 4096" in stats.issues[0].detail


def test_a_plain_file_is_bounded_too() -> None:
    stats = ReadStats()

    list(iter_batches(io.BytesIO(log_file(RECORDS, compress=False)), stats, max_inflated=1000))

    assert stats.uncompressed_bytes == 1000 and stats.issues[0].kind == "inflate-limit"



def _peak_bytes(data: bytes) -> tuple[int, ReadStats]:
    import tracemalloc

    tracemalloc.start()
    try:
        _, stats = read(data)
        return tracemalloc.get_traced_memory()[1], stats
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("data, problem", [
    (b"[" * 40_000, "nested deeper than 1024 levels"),
    (b'{"Records": [' + b"[" * 40_000, "nested deeper than 1024 levels"),
    (b'{"Records": [' + (b'{"' + b"k" * 8192 + b'": ') * 200, "keys longer than 65536 bytes along one path"),
], ids=["bare-array", "pretty-printed", "long-keys"])
def test_deep_nesting_or_long_key_paths_outside_cloudtrail_s_layout_are_reported_in_bounded_memory(data, problem) -> None:
    # given a file outside CloudTrail's one-line layout (read by ijson) that nests 40,000 levels (a 60-byte gzip; ijson's
    # prefixed events kept a prefix per open level: 2.8 GB for 33,000 levels), or nests keys of 8 KiB 200 deep
    # (8 KiB x 200 x 200 / 2 = 160 MB of prefixes)
    # when it is read
    peak, stats = _peak_bytes(gzip.compress(data))
    # then the problem is reported, and reading it held a few megabytes
    assert [(i.kind, i.detail) for i in stats.issues] == [
        ("malformed-record", f"{problem}; records after this point were not read")], stats.issues
    assert peak < 80 << 20, f"{peak / 2**20:.0f} MiB"


def test_a_record_nested_as_deep_as_orjson_reads_is_read_in_every_layout() -> None:
    nested = '{"a": ' * 1000 + '"x"' + "}" * 1000  # json.dumps stops before 1,000 levels: written as text
    deep = json.dumps(dict(RECORDS[0], requestParameters="@")).replace('"@"', nested)
    assert orjson.loads(deep)["eventID"] == RECORDS[0]["eventID"]
    for data in ('{"Records":[' + deep + "," + json.dumps(RECORDS[1]) + "]}",  # canonical: orjson
                 '{"Records": [\n' + deep + ",\n" + json.dumps(RECORDS[1]) + "]}"):  # pretty-printed: ijson
        got, stats = read(data.encode())
        assert [r["eventID"] for r in got] == [r["eventID"] for r in RECORDS[:2]] and stats.issues == [], stats.issues
