"""The schema gate engine on local files: every format, every check, exact counts and row numbers."""

from __future__ import annotations

import gzip
import io
import json
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from gate.engine import TooLarge, psi
from gate.hashing import TEXT_WORDS_MAX, _repeats, hash_bytes, hash_text_py, repeats, repeats_and_groups, string_hash, text_hash
from gate.readers import ReadError
from gate.run import validate

from stage_policy.loader import load, loads
from stagewarden.datagen import HEADER, write_csv
from tests.helpers import ROOT

CONTRACT = load(ROOT / "bench" / "policy.yaml").contract("bench_events")


def run(data: bytes, name: str = "f.csv", contract=CONTRACT, baseline=None) -> dict:
    report, _ = validate(io.BytesIO(data), name, contract, baseline)
    return report


def failed(report: dict) -> dict:
    return {(c["check"], c["column"]): (c["failed_rows"], c["sample_row_numbers"]) for c in report["checks"] if c["failed_rows"]}


def test_a_clean_file_passes_and_the_report_has_the_contract_shape(tmp_path) -> None:
    path = tmp_path / "clean.csv"
    write_csv(path, 2000, seed=5)

    report = run(path.read_bytes())

    assert report["passed"] and report["rows"] == 2000 and report["duplicate_rows"] == 0
    assert set(report) >= {"contract", "passed", "rows", "checks", "duplicate_rows", "drift"}
    assert all(set(c) == {"check", "column", "passed", "failed_rows", "sample_row_numbers"} for c in report["checks"])


def test_the_report_lists_only_the_checks_the_contract_configures_and_those_that_always_apply(tmp_path) -> None:
    # Given the bench contract: 8 columns, 7 required, ranges on 5, one length, one regex, one enum, a key, no duplicates
    path = tmp_path / "clean.csv"
    write_csv(path, 200, seed=5)

    # When validated (no baseline: drift is not scored)
    report = run(path.read_bytes())

    # Then: min_rows and columns; type for every column; required for the 7 required ones; null_fraction only for
    # the optional one; the configured range, length, regex and enum; unique and duplicate_rows; nothing else
    listed = [(c["check"], c["column"]) for c in report["checks"]]
    required = ["id", "user_id", "amount", "name", "email", "event_ts", "category"]
    assert sorted(listed, key=str) == sorted(
        [("min_rows", None), ("columns", None)]
        + [("type", c) for c in required + ["score"]] + [("required", c) for c in required]
        + [("range", c) for c in ("id", "user_id", "amount", "score", "event_ts")]
        + [("length", "name"), ("regex", "email"), ("enum", "category"), ("unique", "id"), ("duplicate_rows", None),
           ("null_fraction", "score")], key=str)
    assert report["null_counts"]["score"] == sum(1 for line in path.read_text().splitlines()[1:] if line.split(",")[3] == "")


def test_every_planted_defect_is_counted_exactly_with_its_rows(tmp_path) -> None:
    path = tmp_path / "dirty.csv"
    planted = write_csv(path, 20000, seed=6, dirty=True, per_defect=25, duplicates=30)

    got = failed(run(path.read_bytes()))

    expected = {
        ("type", "user_id"): planted.rows["non_numeric_user_id"],
        ("range", "amount"): planted.rows["negative_amount"],
        ("enum", "category"): planted.rows["unknown_category"],
        ("required", "name"): planted.rows["empty_name"],
        ("regex", "email"): planted.rows["bad_email"],
        ("duplicate_rows", None): planted.rows["duplicate_rows"],
        ("unique", "id"): planted.rows["duplicate_rows"],
    }
    assert set(got) == set(expected)
    for key, rows in expected.items():
        assert got[key] == (len(rows), rows[:20]), key


def test_a_row_with_several_defects_counts_once_under_each_check() -> None:
    data = (HEADER + "\n1,abc,-5,0.5,Kalo,bad-email,2022-01-01T00:00:00,Z\n").encode()

    got = failed(run(data))

    assert got[("type", "user_id")] == (1, [1]) and got[("range", "amount")] == (1, [1])
    assert got[("regex", "email")] == (1, [1]) and got[("enum", "category")] == (1, [1])


def test_a_row_present_three_times_counts_two_duplicates() -> None:
    row = "7,1,1.00,0.5,Kalo,kalo.1@example.com,2022-01-01T00:00:00,A"
    data = "\n".join([HEADER, row, row, "8,2,1.00,0.5,Lomi,lomi.2@example.com,2022-01-01T00:00:00,B", row]).encode() + b"\n"

    report = run(data)

    assert report["duplicate_rows"] == 2 and failed(report)[("duplicate_rows", None)] == (2, [2, 4])


def test_timestamps_out_of_range_and_unparseable_are_separate_checks() -> None:
    rows = ["1,1,1.00,0.5,Kalo,k.1@example.com,2020-12-31T23:59:59,A", "2,1,1.00,0.5,Kalo,k.2@example.com,not-a-time,A"]
    got = failed(run("\n".join([HEADER] + rows).encode()))

    assert got[("range", "event_ts")] == (1, [1]) and got[("type", "event_ts")] == (1, [2])


def test_null_fraction_above_the_limit_fails_the_column() -> None:
    rows = [f"{i},1,1.00,{'' if i <= 2 else '0.5'},Kalo,k.{i}@example.com,2022-01-01T00:00:00,A" for i in range(1, 101)]
    got = failed(run("\n".join([HEADER] + rows).encode()))

    assert got[("null_fraction", "score")] == (2, [1, 2])  # 2 % > 1 %


def test_missing_and_extra_columns_fail_the_columns_check() -> None:
    data = b"id,user_id,amount,score,name,email,event_ts,colour\n1,1,1.0,0.5,Kalo,k.1@example.com,2022-01-01T00:00:00,red\n"

    report = run(data)

    assert not report["passed"] and report["column_problems"] == ["missing columns: category", "unexpected columns: colour"]


def test_rows_with_the_wrong_number_of_fields_are_failures_not_crashes() -> None:
    data = (HEADER + "\n1,1,1.00,0.5,Kalo,k.1@example.com,2022-01-01T00:00:00,A\n2,1,oops\n").encode()

    assert failed(run(data))[("columns", None)] == (1, [2])


def test_gzip_csv_is_read_by_name() -> None:
    data = (HEADER + "\n1,1,1.00,0.5,Kalo,k.1@example.com,2022-01-01T00:00:00,A\n").encode()

    assert run(gzip.compress(data), "f.csv.gz")["passed"]


def test_headerless_semicolon_csv_uses_the_contract_column_order() -> None:
    csv_opts = CONTRACT.csv.model_copy(update={"header": False, "delimiter": ";"})
    contract = CONTRACT.model_copy(update={"csv": csv_opts})
    data = b'1;1;1.00;0.5;Kalo;k.1@example.com;2022-01-01T00:00:00;A\n2;1;"2,50";0.5;Lomi;l.1@example.com;2022-01-01T00:00:00;Q\n'

    got = failed(run(data, "f.csv", contract))

    assert got == {("type", "amount"): (1, [2]), ("enum", "category"): (1, [2])}


def test_gzip_json_lines_are_read_by_name() -> None:
    contract = CONTRACT.model_copy(update={"format": "jsonl"})
    line = {"id": 1, "user_id": 5, "amount": 3.5, "score": 0.2, "name": "Kalo", "email": "k.5@example.com",
            "event_ts": "2022-01-01T00:00:00", "category": "A"}

    assert run(gzip.compress(json.dumps(line).encode() + b"\n"), "f.jsonl.gz", contract)["passed"]


def test_json_lines_with_wrong_types_are_row_failures() -> None:
    contract = CONTRACT.model_copy(update={"format": "jsonl"})
    lines = [
        {"id": 1, "user_id": 5, "amount": 3.5, "score": None, "name": "Kalo", "email": "k.5@example.com", "event_ts": "2022-01-01T00:00:00", "category": "A"},
        {"id": 2, "user_id": "five", "amount": 3.5, "score": 0.1, "name": "Kalo", "email": "k.5@example.com", "event_ts": "2022-01-01T00:00:00", "category": "A"},
    ]
    data = b"\n".join(json.dumps(x).encode() for x in lines) + b"\nnot json\n"

    got = failed(run(data, "f.jsonl", contract))

    assert got[("type", "user_id")] == (1, [2]) and got[("columns", None)] == (1, [3])


def test_parquet_timestamps_in_milliseconds_are_normalised() -> None:
    contract = CONTRACT.model_copy(update={"format": "parquet"})
    table = pa.table({
        "id": pa.array([1, 2], pa.int64()), "user_id": pa.array([5, 6], pa.int32()), "amount": [1.5, 2.5], "score": [0.5, None],
        "name": ["Kalo", "Lomi"], "email": ["k.5@example.com", "l.6@example.com"],
        "event_ts": pa.array([datetime(2022, 1, 1), datetime(2030, 1, 1)], pa.timestamp("ms")), "category": ["A", "B"],
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)

    got = failed(run(buf.getvalue(), "f.parquet", contract))

    assert got == {("range", "event_ts"): (1, [2]), ("null_fraction", "score"): (1, [2])}


def test_past_max_rows_the_file_is_too_large(tmp_path) -> None:
    path = tmp_path / "big.csv"
    write_csv(path, 3000, seed=1)

    with pytest.raises(TooLarge):
        run(path.read_bytes(), contract=CONTRACT.model_copy(update={"max_rows": 1000}))


def test_a_file_that_is_not_csv_is_a_read_error_naming_it() -> None:
    with pytest.raises(ReadError, match="f.parquet: cannot be read as parquet"):
        run(b"definitely not parquet", "f.parquet", CONTRACT.model_copy(update={"format": "parquet"}))


def test_drift_psi_against_a_profiled_baseline(tmp_path) -> None:
    from gate.engine import profile
    from gate.readers import batches

    base, same, shifted = tmp_path / "b.csv", tmp_path / "s.csv", tmp_path / "x.csv"
    write_csv(base, 20000, seed=11)
    write_csv(same, 20000, seed=12)
    write_csv(shifted, 20000, seed=13, amount_mu=5.5)
    with base.open("rb") as fh:
        baseline = profile(CONTRACT, batches(fh, "b.csv", CONTRACT, lambda rows: None))

    stable = run(same.read_bytes(), baseline=baseline)
    drifted = run(shifted.read_bytes(), baseline=baseline)

    assert len(baseline["columns"]["amount"]["edges"]) == 9 and set(baseline["columns"]["category"]["fractions"]) == set("ABCDE")
    assert stable["passed"] and stable["drift"]["amount"]["score"] < 0.1
    assert not drifted["passed"] and drifted["drift"]["amount"]["score"] > 0.1 and drifted["drift"]["category"]["score"] < 0.1


def test_psi() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * 0.5878 + 0.4 * 1.6094, rel=1e-3)


def test_string_hash_matches_the_python_reference_and_slices() -> None:
    values = ["", "a", "ab", "ba", "héllo", None, "x" * 300]
    arr = pa.array(values)

    assert string_hash(arr).to_pylist() == [hash_bytes(v) for v in values]
    assert string_hash(arr.slice(2, 3)).to_pylist() == [hash_bytes(v) for v in values[2:5]]


TEXTS = ["", "a", "ab", "ba", "héllo", None, "abcdefgh", "abcdefghi", "\x00", "a\x00", "日本語" * 5, "y" * TEXT_WORDS_MAX,
         "y" * (TEXT_WORDS_MAX + 1), "x" * 300, "2023-01-28T20:36:52", "2023-01-27T20:36:53"]


def test_text_hash_matches_the_python_reference_in_any_batch_width_and_type() -> None:
    # Given the same values alone, in slices, among longer values (wider words) and as binary and large strings
    expected = [hash_text_py(v) for v in TEXTS]

    # Then every value hashes as the reference says, whatever else shares its batch
    assert text_hash(pa.array(TEXTS)).to_pylist() == expected
    assert text_hash(pa.array(TEXTS).slice(2, 5)).to_pylist() == expected[2:7]
    for i, v in enumerate(TEXTS):
        assert text_hash(pa.array([v])).to_pylist() == [expected[i]]
    assert text_hash(pa.array([v if v is None else v.encode() for v in TEXTS], pa.binary())).to_pylist() == expected
    assert text_hash(pa.array(TEXTS, pa.large_string())).to_pylist() == expected
    # longer than the word limit: the polynomial hash; distinct values, distinct hashes
    assert expected[TEXTS.index("x" * 300)] == hash_bytes("x" * 300)
    assert len(set(expected)) == len(TEXTS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=80)), min_size=1, max_size=20))
def test_text_hash_is_the_reference_for_any_text(values) -> None:
    assert text_hash(pa.array(values, pa.string())).to_pylist() == [hash_text_py(v) for v in values]


def test_repeats_and_groups_in_partitions_and_over_the_limit() -> None:
    values = pa.array([5, 1, 5, 2, 1, 5, 9, 2 ** 63 + 5, 2 ** 63 + 5], pa.uint64())

    for partitions in (1, 4):
        later, groups = _repeats(values, partitions, 100)
        assert later.to_pylist() == [2, 4, 5, 8] and groups.to_pylist() == [0, 1, 2, 4, 5, 7, 8]
    later, groups = repeats_and_groups(values, 5)  # 7 rows in repeated groups: more than the limit
    assert later.to_pylist() == [2, 4, 5, 8] and groups is None


@pytest.mark.parametrize("copies", [3, 4000])  # few repeated keys, and more than an eighth of the rows
def test_duplicate_rows_are_the_same_with_or_without_a_unique_key(copies) -> None:
    # Given rows repeated in full and rows that only share their key (and rows with an unparseable key)
    rows = [f"{i},{i},1.00,0.5,Kalo,kalo.{i}@example.com,2022-01-01T00:00:00,A" for i in range(1, 20001)]
    rows += rows[:copies]  # true duplicates
    rows += [f"{i},{i + 1},1.00,0.5,Kalo,kalo.{i}@example.com,2022-01-01T00:00:00,A" for i in range(1, copies + 1)]  # same key
    rows += ["x,1,1.00,0.5,Kalo,k@example.com,2022-01-01T00:00:00,A", "y,1,1.00,0.5,Kalo,k@example.com,2022-01-01T00:00:00,A",
             "x,1,1.00,0.5,Kalo,k@example.com,2022-01-01T00:00:00,A"]
    data = "\n".join([HEADER] + rows).encode() + b"\n"
    no_key = CONTRACT.model_copy(update={"unique_key": []})

    with_key, without = failed(run(data)), failed(run(data, contract=no_key))

    # Then the duplicate rows are counted and located the same either way, and the key repeats too
    assert with_key[("duplicate_rows", None)] == without[("duplicate_rows", None)]
    assert with_key[("duplicate_rows", None)][0] == copies + 1
    assert with_key[("unique", "id")][0] == 2 * copies + 2


def test_repeats_are_later_occurrences_in_file_order() -> None:
    assert repeats(pa.array([5, 1, 5, 2, 1, 5], pa.uint64())).to_pylist() == [2, 4, 5]
    chunked = pa.chunked_array([pa.array([5, 1, 5], pa.uint64()), pa.array([2, 1, 5], pa.uint64())])
    assert repeats(chunked).to_pylist() == [2, 4, 5]


def test_contract_time_bounds_must_be_iso_and_only_on_time_columns() -> None:
    from stage_policy.loader import PolicyError

    base = "framework: two-stage\\ncontracts: [{name: c, stage: prod-discovery, prefix: p/, format: csv, columns: [%s]}]"
    with pytest.raises(PolicyError, match="is not an ISO-8601"):
        loads(base.replace("\\n", "\n") % "{name: t, type: timestamp, min: yesterday}")
    with pytest.raises(PolicyError, match="a text bound needs a timestamp or date column"):
        loads(base.replace("\\n", "\n") % "{name: n, type: int, min: '2021-01-01'}")


def test_row_numbers_stay_exact_after_rows_the_reader_skipped() -> None:
    good = "{i},1,1.00,0.5,Kalo,k.{i}@example.com,2022-01-01T00:00:00,A"
    lines = [good.format(i=i) for i in range(1, 11)]
    lines[2] = "3,1,oops"  # row 3: wrong number of fields
    lines[6] = good.format(i=7).replace(",A", ",Q")  # row 7: unknown category
    lines[8] = "9,1"  # row 9: wrong number of fields
    lines[9] = good.format(i=10).replace("k.10@", "k.10_at_")  # row 10: bad e-mail

    report = run("\n".join([HEADER] + lines).encode() + b"\n")

    got = failed(report)
    assert report["rows"] == 10
    assert got[("columns", None)] == (2, [3, 9])
    assert got[("enum", "category")] == (1, [7]) and got[("regex", "email")] == (1, [10])


def test_parquet_with_an_extra_nested_column_is_hashed_not_a_crash() -> None:
    contract = CONTRACT.model_copy(update={"format": "parquet", "exact_columns": False})
    row = {"id": 1, "user_id": 5, "amount": 1.5, "score": 0.5, "name": "Kalo", "email": "k.5@example.com",
           "event_ts": datetime(2022, 1, 1), "category": "A", "tags": [{"k": "a"}]}
    table = pa.Table.from_pylist([row, {**row, "id": 2, "tags": [{"k": "b"}]}, {**row, "id": 2, "tags": [{"k": "b"}]}])
    buf = io.BytesIO()
    pq.write_table(table, buf)

    got = failed(run(buf.getvalue(), "f.parquet", contract))

    assert got[("duplicate_rows", None)] == (1, [3]) and got[("unique", "id")] == (1, [3])


# ---------------------------------------------------------------- JSON Lines through Arrow's reader
JSONL = CONTRACT.model_copy(update={"format": "jsonl"})


def _line(i: int, **over) -> bytes:
    row = {"id": i, "user_id": 5, "amount": 3.5, "score": 0.2, "name": "Kalo", "email": f"k.{i}@example.com",
           "event_ts": "2022-01-01T00:00:00", "category": "A", **over}
    return json.dumps(row).encode() + b"\n"


def test_json_lines_arrow_cannot_take_are_read_one_by_one_and_keep_their_exact_row_numbers(monkeypatch) -> None:
    # Given 3 blocks of 4,000 records with, scattered, a line that is not JSON, a quoted number, a number in a string
    # column, a key given twice, an array, blank lines, and an unexpected key (exact_columns)
    import gate.readers as readers

    monkeypatch.setattr(readers, "BLOCK", 200_000)
    special = {1500: b"{oops\n", 2500: _line(2500, user_id="17"), 4100: _line(4100, name=12345),
               6000: b'{"id": 6000, "id": 6000}\n', 9000: b"[1, 2]\n", 11000: _line(11000, colour="red")}
    data = b"".join(special.get(i, _line(i)) + (b"\n  \n" if i % 1000 == 0 else b"") for i in range(1, 12_001))
    seen: list[int] = []
    original = readers._line_by_line
    monkeypatch.setattr(readers, "_line_by_line", lambda lines, *a: (seen.append(len(lines)), original(lines, *a))[1])

    report = run(data, "f.jsonl", JSONL)

    # Then only the few lines around each refused one left Arrow's path, and every number is the record's own
    got = failed(report)
    assert got[("columns", None)][1] == [1500, 9000] and report["column_problems"] == ["unexpected columns: colour"]
    assert got[("required", "name")] == (1, [6000])  # the line with a key given twice has no other field
    assert ("required", "id") not in got and ("unique", "id") not in got
    assert ("type", "user_id") not in got and ("type", "name") not in got  # "17" and 12345 are read as text, then typed
    assert report["rows"] == 12_000 and sum(seen) <= 6 * readers._LINE_BY_LINE


def test_the_same_records_as_csv_and_json_lines_give_the_same_report(tmp_path) -> None:
    path = tmp_path / "dirty.csv"
    write_csv(path, 5000, seed=6, dirty=True, per_defect=7, duplicates=5)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    as_json = b""
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        as_json += json.dumps({k: (None if v == "" else v) for k, v in row.items()}).encode() + b"\n"

    csv_report, jsonl_report = run(path.read_bytes()), run(as_json, "f.jsonl", JSONL)

    assert csv_report["checks"] == jsonl_report["checks"] and csv_report["null_counts"] == jsonl_report["null_counts"]


@pytest.mark.parametrize("plain", [True, False])  # read into one reused buffer (readinto), and from a stream without it
def test_json_lines_read_in_many_small_blocks_give_the_csv_report(tmp_path, monkeypatch, plain) -> None:
    import gate.readers as readers

    # Given the same dirty records as CSV and JSON Lines, read in blocks of 4 KiB (a line is never split)
    path = tmp_path / "dirty.csv"
    write_csv(path, 3000, seed=8, dirty=True, per_defect=5, duplicates=4)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    as_json = b"".join(json.dumps({k: (None if v == "" else v) for k, v in zip(header, line.split(","))}).encode() + b"\n"
                       for line in lines[1:])
    monkeypatch.setattr(readers, "BLOCK", 4096)

    class NoReadinto:
        def __init__(self, data: bytes) -> None:
            self._io = io.BytesIO(data)

        def read(self, n: int) -> bytes:
            return self._io.read(n)

    source = io.BytesIO(as_json) if plain else NoReadinto(as_json)
    jsonl_report, _ = validate(source, "f.jsonl", JSONL)
    csv_report = run(path.read_bytes())

    # Then both reports are the same, row numbers and duplicates included
    assert jsonl_report["checks"] == csv_report["checks"] and jsonl_report["null_counts"] == csv_report["null_counts"]
    assert jsonl_report["rows"] == 3004 and jsonl_report["duplicate_rows"] == 4


# ---------------------------------------------------------------- no data in reports or findings
def test_values_shorter_than_8_characters_are_masked_whole() -> None:
    from gate.engine import redact

    assert redact("Z") == "* (1 chars)" and redact("abc1234") == "******* (7 chars)"
    assert redact("kalo_at_example.com") == "k********m (19 chars)" and redact(None) == "<null>"


@pytest.mark.parametrize("message", [
    "CSV parse error: Expected 8 columns, got 3: 2,jane.doe@bank.example,oops",
    "Failed to convert JSON to int64, couldn't parse:123-45-6789",
    "Failed to parse string: 'jane.doe@bank.example' as a scalar of type timestamp[ms]",
    "JSON parse error: Invalid value: jane.doe@bank.example in row 0",
])
def test_reader_messages_lose_the_values_they_quote(message) -> None:
    from gate.readers import safe_reason

    reason = safe_reason(pa.ArrowInvalid(message))

    assert "jane" not in reason and "6789" not in reason and "oops" not in reason and reason


def test_a_file_that_is_not_parquet_is_a_read_error_without_its_bytes() -> None:
    with pytest.raises(ReadError) as info:
        run(b"name,ssn\njane,123-45-6789\n" * 10, "f.parquet", CONTRACT.model_copy(update={"format": "parquet"}))

    assert "6789" not in str(info.value) and "f.parquet: cannot be read as parquet" in str(info.value)
