"""Every column type with every check, in every format: no crash, the same counts whichever format carries the data.

Issue #9: a ``date`` column crashed the duplicate-row hash (date32 has no cast to int64), the
object got no tag and its message went to the dead-letter queue. Here each documented type
runs through every check it can take (type, required, range, regex, enum, length, unique,
duplicate rows, null fraction), as CSV, JSON Lines and Parquet, with native Arrow types
(zone-aware timestamps, dates, booleans, dictionary-encoded strings) on the Parquet side.
"""

from __future__ import annotations

import io
import json
from datetime import date, datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gate.run import validate

from stage_policy.loader import loads

# type -> (five values: four valid and distinct, the fifth out of range or not in the enum; the Arrow type for
# Parquet; the column's checks)
VALUES = {
    "int": ([1, 2, 3, 4, 99], pa.int64(), {"min": 1, "max": 10, "enum": ["1", "2", "3", "4"]}),
    "float": ([1.5, 2.5, 3.5, 4.5, 99.5], pa.float64(), {"min": 0, "max": 10}),
    "string": (["alpha", "beta", "gamma", "delta", "zeta"], pa.string(), {"enum": ["alpha", "beta", "gamma", "delta"]}),
    "date": ([date(2024, 1, d) for d in (1, 2, 3, 4)] + [date(2030, 1, 1)], pa.date32(),
             {"min": "2023-01-01", "max": "2025-12-31", "enum": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]}),
    "timestamp": ([datetime(2024, 1, 1, h, tzinfo=timezone.utc) for h in (1, 2, 3, 4)] + [datetime(2030, 1, 1, tzinfo=timezone.utc)],
                  pa.timestamp("us", tz="Europe/Paris"), {"min": "2023-01-01T00:00:00", "max": "2025-12-31T00:00:00"}),
    "bool": ([True, False], pa.bool_(), {"enum": ["true"]}),
}


def contract(kind: str, fmt: str):
    values, _, checks = VALUES[kind]
    col = {"name": "k", "type": kind, "required": True, "regex": ".", "min_length": 1, "max_length": 64, **checks}
    policy = {"framework": "two-stage", "contracts": [{
        "name": "matrix", "stage": "prod-discovery", "prefix": "landing/", "format": fmt,
        "columns": [col, {"name": "tag", "type": "string", "required": False}],
        "unique_key": ["k"], "duplicate_rows": "forbid", "max_null_fraction": 0.0}]}
    return loads(json.dumps(policy)).contract("matrix")


def rows(kind: str) -> list:
    """The rows' values of ``k``: the valid ones, the fifth (range/enum), the first again (a duplicate), a null."""
    values = VALUES[kind][0]
    return values + [values[0], None]


def text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(timezone(__import__("datetime").timedelta(hours=1))).isoformat()  # +01:00, as Paris writes
    return "" if value is None else str(value)


def encode(kind: str, fmt: str) -> bytes:
    ks = rows(kind)
    tags = ["x"] * len(ks)
    if fmt == "csv":
        return ("k,tag\n" + "".join(f"{text(k)},{t}\n" for k, t in zip(ks, tags))).encode()
    if fmt == "jsonl":
        native = (int, float, bool)
        return b"".join(json.dumps({"k": k if k is None or isinstance(k, native) else text(k), "tag": t}).encode() + b"\n"
                        for k, t in zip(ks, tags))
    arrow_type = VALUES[kind][1]
    column = pa.array(ks, arrow_type)
    if kind == "string":
        column = column.dictionary_encode()  # what Parquet writers produce for categorical text
    buf = io.BytesIO()
    pq.write_table(pa.table({"k": column, "tag": pa.array(tags)}), buf)
    return buf.getvalue()


def expected(kind: str) -> dict:
    n = len(rows(kind))
    dup, null = n - 1, n  # row numbers of the repeated first value and of the null
    out = {("required", "k"): (1, [null]), ("unique", "k"): (1, [dup]), ("duplicate_rows", None): (1, [dup])}
    if kind == "bool":  # [True, False, True, None]: False is not in the enum
        return {**out, ("enum", "k"): (1, [2])}
    fifth = 5
    if "min" in VALUES[kind][2]:
        out[("range", "k")] = (1, [fifth])
    if "enum" in VALUES[kind][2]:
        out[("enum", "k")] = (1, [fifth])
    return out


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("kind", list(VALUES))
def test_every_type_works_with_every_check_in_every_format(kind, fmt) -> None:
    # Given a column of this type with every check it can take, a key on it and duplicate rows forbidden
    c = contract(kind, fmt)

    # When a file with one defect per check is validated
    report, _ = validate(io.BytesIO(encode(kind, fmt)), f"f.{fmt}", c)

    # Then nothing crashes and each check counts its one row, whatever the format
    got = {(x["check"], x["column"]): (x["failed_rows"], x["sample_row_numbers"]) for x in report["checks"] if not x["passed"]}
    assert got == expected(kind)
    assert report["rows"] == len(rows(kind)) and report["null_counts"]["k"] == 1


@pytest.mark.parametrize("kind", ["int", "float", "date", "timestamp", "bool"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_value_that_is_not_of_the_type_is_a_type_failure_in_text_formats(kind, fmt) -> None:
    c = contract(kind, fmt)
    good = text(VALUES[kind][0][0])
    data = (f"k,tag\n{good},x\nnot-a-value,x\n" if fmt == "csv" else
            json.dumps({"k": good, "tag": "x"}) + "\n" + json.dumps({"k": "not-a-value", "tag": "x"}) + "\n").encode()

    report, _ = validate(io.BytesIO(data), f"f.{fmt}", c)

    got = {(x["check"], x["column"]): (x["failed_rows"], x["sample_row_numbers"]) for x in report["checks"] if not x["passed"]}
    assert got[("type", "k")] == (1, [2])


def test_zone_aware_timestamps_are_the_same_instant_in_every_format() -> None:
    # Given the same instants written as UTC ("Z"), as +01:00, and as a Parquet timestamp with a zone
    c = contract("timestamp", "csv")
    z = "k,tag\n2024-01-01T10:00:00Z,x\n2024-01-01T11:00:00+01:00,x\n"  # the same instant twice

    report, _ = validate(io.BytesIO(z.encode()), "f.csv", c)

    # Then they are one key, repeated
    got = {(x["check"], x["column"]): x["sample_row_numbers"] for x in report["checks"] if not x["passed"]}
    assert got == {("unique", "k"): [2], ("duplicate_rows", None): [2]}


# ---------------------------------------------------------------- empty files, min_rows
EMPTY = {
    "csv": {"blank (0 bytes)": b"", "blank lines": b"\n\n", "header only": b"k,tag\n"},
    "jsonl": {"blank (0 bytes)": b"", "blank lines": b"\n  \n"},
    "parquet": {"no rows": None},
}


def _empty_parquet() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"k": pa.array([], pa.int64()), "tag": pa.array([], pa.string())}), buf)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "what"), [(f, w) for f, cases in EMPTY.items() for w in cases])
def test_empty_and_header_only_files_fail_min_rows(fmt, what) -> None:
    data = EMPTY[fmt][what] if fmt != "parquet" else _empty_parquet()

    report, _ = validate(io.BytesIO(data), f"f.{fmt}", contract("int", fmt))

    failing = {x["check"]: x for x in report["checks"] if not x["passed"]}
    assert not report["passed"] and report["rows"] == 0
    assert failing["min_rows"]["note"] == "0 rows; the contract needs at least 1" and failing["min_rows"]["failed_rows"] == 0
    if fmt == "csv" and what != "header only":  # JSON Lines have no header: min_rows alone says it
        assert failing["columns"]["note"] == "no columns: the file is empty (no header row)"
    else:
        assert "columns" not in failing  # the header (Parquet schema) names the contract's columns


def test_min_rows_zero_lets_an_empty_file_with_its_header_pass_and_a_higher_minimum_fails_a_short_one() -> None:
    header_only = b"k,tag\n"
    three = b"k,tag\n1,x\n2,x\n3,x\n"

    empty_ok, _ = validate(io.BytesIO(header_only), "f.csv", contract("int", "csv").model_copy(update={"min_rows": 0}))
    short, _ = validate(io.BytesIO(three), "f.csv", contract("int", "csv").model_copy(update={"min_rows": 4}))

    assert empty_ok["passed"]
    [check] = [x for x in short["checks"] if not x["passed"]]
    assert check["check"] == "min_rows" and check["note"] == "3 rows; the contract needs at least 4"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_header_naming_a_column_twice_is_a_read_error_naming_it_never_a_key_error(fmt) -> None:
    from gate.readers import ReadError

    if fmt == "csv":
        data = b"k,tag,k\n1,x,2\n"
    else:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_arrays([pa.array([1]), pa.array(["x"]), pa.array([2])], names=["k", "tag", "k"]), buf)
        data = buf.getvalue()

    with pytest.raises(ReadError) as caught:
        validate(io.BytesIO(data), f"f.{fmt}", contract("int", fmt))

    assert str(caught.value) == f"f.{fmt}: cannot be read as {fmt} (the header names 'k' more than once)"


# ---------------------------------------------------------------- missing-value markers (csv.null_values)
@pytest.mark.parametrize("kind", list(VALUES))
def test_declared_null_markers_are_nulls_in_every_column_type_strings_included(kind) -> None:
    # Given an R / SQL export: NA, NULL and \N for missing values, in a column of this type and in a string column
    good = text(VALUES[kind][0][0])
    data = f"k,tag\n{good},x\nNA,NA\nNULL,x\n\\N,\\N\n".encode()
    c = contract(kind, "csv")
    declared = c.model_copy(update={"csv": c.csv.model_copy(update={"null_values": ("", "NA", "NULL", "\\N")})})

    # When validated with the markers declared, and without
    report, _ = validate(io.BytesIO(data), "f.csv", declared)
    plain, _ = validate(io.BytesIO(data), "f.csv", c)

    # Then declared markers are nulls (required and null counts, strings too), never type failures
    failing = {(x["check"], x["column"]): x["sample_row_numbers"] for x in report["checks"] if not x["passed"]}
    assert failing[("required", "k")] == [2, 3, 4] and ("type", "k") not in failing
    assert report["null_counts"] == {"k": 3, "tag": 2}
    # And undeclared, the same markers are values: type failures in typed columns, text in string columns
    plain_failing = {(x["check"], x["column"]) for x in plain["checks"] if not x["passed"]}
    assert (("type", "k") in plain_failing) == (kind != "string") and plain["null_counts"] == {"k": 0, "tag": 0}


def test_a_quoted_marker_is_a_value_not_a_null() -> None:
    c = contract("string", "csv")
    c = c.model_copy(update={"csv": c.csv.model_copy(update={"null_values": ("", "NA")})})

    report, _ = validate(io.BytesIO(b'k,tag\n"NA",x\nalpha,x\n'), "f.csv", c)

    assert report["null_counts"]["k"] == 0
