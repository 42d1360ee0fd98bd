"""Schema gate figures (issue #3): Stagewarden (pyarrow) against pandas + pandera, same contract, same files.

Run: make bench  (or: .venv/bin/python bench/schema_gate.py)

Data (fixed seeds, cached in bench/out/gate/): 1,000,000 clean rows; a dirty copy with a
known number of planted defects of each kind plus appended duplicates; 5,000,000 clean
rows; a differently seeded 200,000-row file profiled as the drift baseline.
Every engine runs in its own process pinned to one core; the figures are the wall time of
reading + validating the file and the process's peak RSS (VmHWM), the median of 3
alternating runs per engine and file. Imports and one-time initialisation are not
throughput: each process first validates a 1,000-row file (both engines alike); the
handler's import time is reported on its own.
Goals: >= 1.3 x pandera's rows/s at <= 0.5 x its peak RSS on 1 M rows; memory growth from
1 M to 5 M rows <= 25 bytes/row; on the dirty file every planted defect counted exactly.
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
start = time.perf_counter()
with open(sys.argv[1], "rb") as fh:
    report, _ = validate(fh, sys.argv[1], contract, baseline)
seconds = time.perf_counter() - start
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
start = time.perf_counter()
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
seconds = time.perf_counter() - start
report = {"rows": len(df), "failures": failures, "drift": drift}
'''

EPILOGUE = r'''
import re
hwm = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps({"seconds": seconds, "peak_rss_mb": hwm / 1024, "report": report}))
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
    """Wall time of importing the SchemaGate handler in a fresh process, minus a bare interpreter (median of 5)."""
    import statistics
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(PATHS), "POWERTOOLS_SERVICE_NAME": "schema-gate",
           "POWERTOOLS_TRACE_DISABLED": "true"}

    def wall(code: str) -> float:
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT / "functions" / "schema_gate")
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    wall("import gate.handler")
    return (wall("import gate.handler") - wall("pass")) * 1000


def main() -> int:
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

    print(f"schema gate, python {sys.version.split()[0]}, each engine in its own process pinned to one core")
    for name in ("clean", "dirty"):
        for engine in ("stagewarden", "pandera"):
            r = results[engine][name]
            print(f"  {name:<5} {ROWS:>9,} rows  {engine:<12} {rate(r):>12,.0f} rows/s   peak RSS {r['peak_rss_mb']:>7.0f} MB")
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
    print(f"  SchemaGate handler import: {summary['import_ms']:.0f} ms above a bare interpreter")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
