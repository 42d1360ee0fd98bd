"""Real data with real missing values: the same records as CSV (null markers declared), Parquet and JSON Lines give the same report.

The public dataset is the Palmer penguins' raw table (344 rows, 17 columns: text, integers,
decimals, a Yes/No column, egg-laying dates, and ``NA`` for every missing value), shipped by
the PyPI package ``palmerpenguins`` (MIT; the data CC0, Horst, Hill & Gorman 2020). It is
read from the installed package (``.[test]`` installs it), never committed here. A fixture
built here with R's ``NA`` and SQL dumps' ``NULL`` and ``\\N`` runs whether or not the
package is installed.
"""

from __future__ import annotations

import importlib.util
import io
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from gate.run import validate

from stage_policy.loader import loads

PENGUINS_POLICY = r"""
framework: two-stage
contracts:
  - name: penguins
    stage: prod-discovery
    prefix: landing/penguins/
    format: csv
    csv: {null_values: ["", "NA"]}
    columns:
      - {name: studyName, type: string, enum: [PAL0708, PAL0809, PAL0910]}
      - {name: Sample Number, type: int, min: 1}
      - {name: Species, type: string, regex: '^(Adelie|Chinstrap|Gentoo) '}
      - {name: Region, type: string}
      - {name: Island, type: string, enum: [Biscoe, Dream, Torgersen]}
      - {name: Stage, type: string}
      - {name: Individual ID, type: string, max_length: 6}
      - {name: Clutch Completion, type: bool}
      - {name: Date Egg, type: date, min: "2007-11-01", max: "2009-12-31"}
      - {name: Culmen Length (mm), type: float, required: false, min: 32, max: 60}
      - {name: Culmen Depth (mm), type: float, required: false, min: 13, max: 22}
      - {name: Flipper Length (mm), type: int, required: false, min: 172, max: 231}
      - {name: Body Mass (g), type: int, required: false, min: 2700, max: 6000}
      - {name: Sex, type: string, required: false, enum: [MALE, FEMALE]}
      - {name: Delta 15 N (o/oo), type: float, required: false}
      - {name: Delta 13 C (o/oo), type: float, required: false}
      - {name: Comments, type: string, required: false}
    unique_key: [studyName, Individual ID]
    duplicate_rows: forbid
    max_null_fraction: 0.01
"""
ARROW = {"int": pa.int64(), "float": pa.float64(), "string": pa.string(), "bool": pa.bool_(), "date": pa.date32(),
         "timestamp": pa.timestamp("ms")}


def penguins_csv() -> bytes | None:
    spec = importlib.util.find_spec("palmerpenguins")  # located, not imported (its __init__ loads pandas)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "penguins-raw.csv"
    return path.read_bytes() if path.exists() else None


def as_formats(csv_bytes: bytes, contract) -> dict[str, bytes]:
    """The CSV, and the same records typed by Arrow as Parquet and as JSON Lines (missing values: nulls)."""
    table = pacsv.read_csv(io.BytesIO(csv_bytes), convert_options=pacsv.ConvertOptions(
        column_types={c.name: ARROW[c.type] for c in contract.columns}, null_values=list(contract.csv.null_values),
        strings_can_be_null=True, true_values=["Yes", "true"], false_values=["No", "false"]))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    lines = b"".join(json.dumps(row, default=str).encode() + b"\n" for row in table.to_pylist())
    return {"csv": csv_bytes, "parquet": buf.getvalue(), "jsonl": lines}


def reports(data: dict[str, bytes], contract) -> dict[str, dict]:
    out = {}
    for fmt, body in data.items():
        report, _ = validate(io.BytesIO(body), f"f.{fmt}", contract.model_copy(update={"format": fmt}))
        out[fmt] = report
    return out


@pytest.mark.skipif(penguins_csv() is None, reason="palmerpenguins is not installed (pip install -e '.[test]' installs it)")
def test_the_penguins_give_identical_failure_counts_as_csv_parquet_and_json_lines() -> None:
    contract = loads(PENGUINS_POLICY).contract("penguins")

    got = reports(as_formats(penguins_csv(), contract), contract)

    # Then every check fails the same rows in every format, null counts included
    for fmt in ("parquet", "jsonl"):
        assert got[fmt]["checks"] == got["csv"]["checks"], fmt
        assert got[fmt]["null_counts"] == got["csv"]["null_counts"] and got[fmt]["rows"] == got["csv"]["rows"] == 344
    failing = {(c["check"], c["column"]): c["failed_rows"] for c in got["csv"]["checks"] if not c["passed"]}
    # (the real data's own gaps: isotopes not measured, sex unknown, comments mostly empty; two Gentoos above 6 kg)
    assert failing == {("range", "Body Mass (g)"): 2, ("null_fraction", "Sex"): 11, ("null_fraction", "Delta 15 N (o/oo)"): 14,
                       ("null_fraction", "Delta 13 C (o/oo)"): 13, ("null_fraction", "Comments"): 290}
    assert got["csv"]["null_counts"]["Culmen Length (mm)"] == 2  # 0.6 %: under max_null_fraction

def test_a_sql_and_r_export_with_null_markers_gives_identical_counts_in_every_format() -> None:
    # Given an export whose missing values are written NA (R), NULL and \N (SQL dumps), with defects of every kind
    rng = random.Random(9)
    contract = loads(PENGUINS_POLICY.replace('["", "NA"]', r'["", "NA", "NULL", "\\N"]')).contract("penguins")
    header = ",".join(f'"{c.name}"' if " " in c.name else c.name for c in contract.columns)
    rows = []
    for i in range(1, 401):
        na = lambda value: rng.choice(["NA", "NULL", "\\N"]) if rng.random() < 0.05 else value  # noqa: E731
        rows.append(",".join([
            rng.choice(["PAL0708", "PAL0809", "PAL0910", "PAL1011"]), str(i), "Adelie Penguin", "Anvers",
            rng.choice(["Biscoe", "Dream", "Torgersen"]), '"Adult, 1 Egg Stage"', f"N{i * 3}A{i % 2 + 1}",
            rng.choice(["Yes", "No"]), f"2008-{rng.randint(10, 12)}-{rng.randint(10, 28)}",
            na(f"{rng.uniform(30, 62):.1f}"), na(f"{rng.uniform(13, 22):.1f}"), na(str(rng.randint(170, 235))),
            na(str(rng.randint(2600, 6400))), na(rng.choice(["MALE", "FEMALE", "."])), na(f"{rng.uniform(7, 10):.5f}"),
            na(f"{rng.uniform(-27, -23):.5f}"), na("ok")]))
    rows += rows[:3]  # duplicates
    csv_bytes = (header + "\n" + "\n".join(rows) + "\n").encode()

    got = reports(as_formats(csv_bytes, contract), contract)

    assert got["parquet"]["checks"] == got["csv"]["checks"] == got["jsonl"]["checks"]
    assert got["parquet"]["null_counts"] == got["csv"]["null_counts"] == got["jsonl"]["null_counts"]
    failing = {c["check"] for c in got["csv"]["checks"] if not c["passed"]}
    assert {"enum", "range", "length", "unique", "duplicate_rows", "null_fraction"} == failing
    assert sum(got["csv"]["null_counts"].values()) > 100
