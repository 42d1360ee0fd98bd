"""Foundation figures: import cost of the stage_policy layer, warm policy load time, handler cold start.

Run: make bench  (or: .venv/bin/python bench/import_and_load.py)

1. Import: wall time of a fresh interpreter that imports everything a handler takes from
   the layer (model, loader, presets, mapping, findings, publish, store, settings), minus
   the wall time of a bare interpreter, median over repeated runs; plus the `-X importtime`
   cumulative figure for the same imports. Pydantic alone is measured too, for reference.
2. Warm load: parse + validate policy.example.yaml in a warm process, median of many runs.
3. Cold start: each function of template.yaml, its handler module imported after boto3 in fresh
   interpreters, above `import boto3` alone (bench/coldstart.py says how; it also runs alone).
Goals (issue #2): import <= 100 ms above a bare interpreter; warm load <= 10 ms. Cold start:
handler import <= `import boto3` + 120 ms; the schema gate's pyarrow cost is reported on its own.
Exits non-zero only when a measurement cannot be made, never because a goal is missed.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import coldstart  # bench/ is sys.path[0] when this script runs

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "stage_policy"
LAYER_IMPORTS = ("stage_policy.model, stage_policy.loader, stage_policy.presets, stage_policy.mapping, "
                 "stage_policy.findings, stage_policy.publish, stage_policy.store, stage_policy.settings")
RUNS = int(os.environ.get("BENCH_RUNS", "30"))


def wall(code: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(LAYER), "PYTHONDONTWRITEBYTECODE": "0"}
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def importtime(module_list: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(LAYER)}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module_list}"], env=env,
                          capture_output=True, text=True, check=True)
    total = 0
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) == 1:  # top-level imports only (one space of indent)
            total += int(m.group(1))
    return total / 1000


def warm_load() -> float:
    sys.path.insert(0, str(LAYER))
    from stage_policy.loader import loads

    text = (ROOT / "policy.example.yaml").read_text()
    for _ in range(5):
        loads(text, "policy.example.yaml")
    samples = []
    for _ in range(200):
        start = time.perf_counter()
        loads(text, "policy.example.yaml")
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> int:
    wall("import stage_policy.model")  # warm the bytecode cache and the page cache
    bare = wall("pass")
    pyd = wall("import pydantic; from pydantic import BaseModel")
    layer = wall(f"import {LAYER_IMPORTS}")
    it_layer = importtime(LAYER_IMPORTS)
    it_pyd = importtime("pydantic.main")
    load_ms = warm_load()
    rows = [
        ("bare interpreter (wall, median of %d)" % RUNS, bare, None),
        ("pydantic BaseModel import above bare (wall)", pyd - bare, None),
        ("stage_policy layer import above bare (wall)", layer - bare, 100.0),
        ("stage_policy layer import (-X importtime, cumulative)", it_layer, 100.0),
        ("  of which pydantic.main (-X importtime)", it_pyd, None),
        ("policy.example.yaml load + validate, warm (median of 200)", load_ms, 10.0),
    ]
    print(f"python {sys.version.split()[0]} on {os.cpu_count()} cores")
    for name, value, goal in rows:
        verdict = "" if goal is None else ("  OK (goal <= %g ms, %.2fx of budget)" % (goal, value / goal) if value <= goal
                                           else "  MISSES goal <= %g ms (%.2fx)" % (goal, value / goal))
        print(f"{name:<60} {value:8.1f} ms{verdict}")
    print()
    coldstart.report([coldstart.measure(fn) for fn in coldstart.functions()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
