"""Cold-start figure (issue: handler import <= `import boto3` + 120 ms, measured in the same run).

Run: make bench  (or: .venv/bin/python bench/coldstart.py)

The functions come from template.yaml (every AWS::Serverless::Function: its CodeUri, its
Handler, the local layers it references), so the figure follows handler moves. For each
function, fresh interpreters run, alternately,

    A: import boto3
    B: import boto3; import <handler module>

with PYTHONPATH = the layers' ContentUri + the function's CodeUri (what the Lambda runtime
puts on sys.path), and the figure is median(B) - median(A) of the parent's wall clock over
BENCH_COLD_RUNS (>= 7) rounds. The children's CPU time (user + sys) is reported beside it:
on a busy machine wall time picks up scheduling noise that CPU time does not.

Beside the timing, one untimed `-X importtime` child per function says where the
milliseconds go (self time summed by top-level package, boto3's own tree excluded) and
which heavy packages the import loaded. Functions that need pyarrow get its import cost
measured on its own, and whether their handler imports it at module import or lazily.
Bytecode caches are warm (one untimed run per command first), as on Lambda's runtime.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUDGET_MS = 120.0
RUNS = max(7, int(os.environ.get("BENCH_COLD_RUNS", "11")))
HEAVY = ("aws_xray_sdk", "pyarrow", "orjson", "ijson", "yaml", "pydantic", "aws_lambda_powertools.utilities.batch",
         "aws_lambda_powertools.utilities.parser", "aws_lambda_powertools.utilities.idempotency")
BOTO3 = "import boto3"
PYARROW = "import pyarrow"
PYARROW_COMPUTE = "import pyarrow, pyarrow.compute"


@dataclass(frozen=True)
class Function:
    name: str
    module: str  # the handler's module, e.g. "app" or "exfiltration.app"
    path: tuple[Path, ...]  # layer ContentUris, then the CodeUri
    needs_pyarrow: bool  # its requirements.txt asks for pyarrow


class _TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form intrinsics (!Ref, !Sub, !GetAtt, ...) as {"Fn": value}."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def functions(root: Path = ROOT) -> list[Function]:
    """The Python functions of ``root``/template.yaml with the import path the Lambda runtime gives each."""
    template_path = root / "template.yaml"
    template = yaml.load(template_path.read_text(), Loader=_TemplateLoader)  # noqa: S506 - SafeLoader subclass
    resources = template.get("Resources", {})
    defaults = template.get("Globals", {}).get("Function", {})
    found = []
    for name, resource_ in resources.items():
        if resource_.get("Type") != "AWS::Serverless::Function":
            continue
        props = {**defaults, **resource_.get("Properties", {})}
        if not str(props.get("Runtime", "python")).startswith("python"):
            continue
        code = root / props["CodeUri"]
        module = props["Handler"].rsplit(".", 1)[0].replace("/", ".")
        layers = []
        for ref in props.get("Layers", []):
            target = resources.get(ref.get("Ref")) if isinstance(ref, dict) else None
            if target and target.get("Type") == "AWS::Serverless::LayerVersion":
                layers.append(root / target["Properties"]["ContentUri"])
            # a layer given by ARN (e.g. a public Powertools layer) is this venv's site-packages here
        requirements = code / "requirements.txt"
        needs_pyarrow = requirements.exists() and re.search(r"^pyarrow\b", requirements.read_text(), re.M) is not None
        found.append(Function(name, module, (*layers, code), needs_pyarrow))
    if not found:
        raise RuntimeError(f"{template_path}: no AWS::Serverless::Function with a python runtime")
    return found


def _env(path: tuple[Path, ...]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "POWERTOOLS_", "STAGEWARDEN_"))}
    env.update(PYTHONPATH=os.pathsep.join(str(p) for p in path), AWS_DEFAULT_REGION="us-east-1")
    return env


def _run(code: str, env: dict[str, str], *flags: str) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU (user + sys) milliseconds of one fresh interpreter running ``code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # -P: the working directory is not put on sys.path (only PYTHONPATH, as on Lambda)
    proc = subprocess.run([sys.executable, "-P", *flags, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"`{code}` failed with PYTHONPATH={env['PYTHONPATH']}:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall * 1000, cpu * 1000, proc


def alternate(cases: list[tuple[str, dict[str, str]]], runs: int = RUNS) -> list[tuple[float, float]]:
    """Median wall and CPU ms per (code, env), the cases run in alternating order, round after round."""
    for code, env in cases:
        _run(code, env)  # warm bytecode and page caches
    samples: list[list[tuple[float, float]]] = [[] for _ in cases]
    order = list(range(len(cases)))
    for i in range(runs):
        for k in order if i % 2 == 0 else order[::-1]:
            wall, cpu, _ = _run(*cases[k])
            samples[k].append((wall, cpu))
    return [(statistics.median(s[0] for s in v), statistics.median(s[1] for s in v)) for v in samples]


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def profile(module: str, env: dict[str, str]) -> tuple[float, list[tuple[str, float]], list[str]]:
    """`-X importtime` of the handler after boto3: its cumulative ms, self ms by top-level package, heavy modules loaded."""
    code = f"import sys, boto3; import {module}; print(' '.join(sorted(sys.modules)))"
    _, _, proc = _run(code, env, "-X", "importtime")
    loaded = set(proc.stdout.split())
    rows = [(int(m.group(1)), int(m.group(2)), len(m.group(3)), m.group(4))
            for m in map(_IMPORTTIME.match, proc.stderr.splitlines()) if m]
    # importtime lists children before their parent; the handler's tree is the block that ends
    # with the top-level line of the handler module, after boto3's block.
    tops = [r[3] for r in rows if r[2] == 1]
    if module not in tops or "boto3" not in tops:
        raise RuntimeError(f"-X importtime of `{code}` lists no top-level import of {module} after boto3")
    end = next(i for i, r in enumerate(rows) if r[2] == 1 and r[3] == module)
    start = next(i for i, r in enumerate(rows) if r[2] == 1 and r[3] == "boto3") + 1
    by_package: dict[str, float] = {}
    for self_us, _, _, name in rows[start:end + 1]:
        package = name.split(".")[0]
        by_package[package] = by_package.get(package, 0.0) + self_us / 1000
    heavy = [name for name in HEAVY if name in loaded]
    cumulative = sum(r[1] for r in rows[start:end + 1] if r[2] == 1) / 1000  # the handler and any parent package
    return cumulative, sorted(by_package.items(), key=lambda kv: -kv[1]), heavy


def measure(fn: Function) -> dict:
    env = _env(fn.path)
    handler = f"{BOTO3}; import {fn.module}"
    codes = [BOTO3, handler] + ([f"{BOTO3}; {PYARROW}", f"{BOTO3}; {PYARROW_COMPUTE}"] if fn.needs_pyarrow else [])
    medians = alternate([(code, env) for code in codes])
    importtime_ms, by_package, heavy = profile(fn.module, env)
    base = medians[0]
    result = {
        "function": fn.name, "module": fn.module, "boto3_wall": base[0], "boto3_cpu": base[1],
        "extra_wall": medians[1][0] - base[0], "extra_cpu": medians[1][1] - base[1],
        "importtime": importtime_ms, "by_package": by_package, "heavy": heavy,
    }
    if fn.needs_pyarrow:
        result["pyarrow"] = (medians[2][0] - base[0], medians[2][1] - base[1])
        result["pyarrow_compute"] = (medians[3][0] - base[0], medians[3][1] - base[1])
        result["pyarrow_at_import"] = "pyarrow" in heavy
    return result


def report(results: list[dict]) -> None:
    print(f"Cold start: handler import above `import boto3`, fresh interpreters, median of {RUNS} alternating runs "
          f"(budget {BUDGET_MS:g} ms)")
    header = (f"{'function':<22} {'handler module':<16} {'boto3':>6} {'+wall':>6} {'+cpu':>6} {'importtime':>10}  "
              f"{'wall verdict':<24} cpu verdict")
    print(header)
    print("-" * len(header))
    for r in results:
        verdicts = [("PASS" if extra <= BUDGET_MS else "FAIL") + f" ({extra / BUDGET_MS:.2f}x budget)"
                    for extra in (r["extra_wall"], r["extra_cpu"])]
        print(f"{r['function']:<22} {r['module']:<16} {r['boto3_wall']:6.0f} {r['extra_wall']:6.0f} {r['extra_cpu']:6.0f} "
              f"{r['importtime']:10.0f}  {verdicts[0]:<24} {verdicts[1]}")
    print("  (ms; boto3 = wall of `import boto3` alone; +wall / +cpu = the handler import on top of it, wall clock / "
          "user+sys CPU; importtime = the handler's cumulative `-X importtime`)")
    busy = max(r["boto3_wall"] / max(r["boto3_cpu"], 1e-9) for r in results)
    if busy > 1.25:
        print(f"  note: the machine is busy (wall {busy:.1f}x CPU for `import boto3`): wall figures carry scheduling "
              "noise, the CPU column is the steadier one")
    for r in results:
        top = ", ".join(f"{name} {ms:.0f}" for name, ms in r["by_package"][:6])
        print(f"  {r['function']}: self ms by package: {top}; heavy modules loaded: {', '.join(r['heavy']) or 'none'}")
        if "pyarrow" in r:
            where = "at module import" if r["pyarrow_at_import"] else "lazily (not loaded by the handler import)"
            (pa_wall, pa_cpu), (pc_wall, pc_cpu) = r["pyarrow"], r["pyarrow_compute"]
            print(f"  {r['function']}: pyarrow on its own above boto3 (wall / cpu): `import pyarrow` {pa_wall:.0f} / "
                  f"{pa_cpu:.0f} ms, with pyarrow.compute {pc_wall:.0f} / {pc_cpu:.0f} ms; the handler imports it {where}")


def main() -> int:
    report([measure(fn) for fn in functions()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
