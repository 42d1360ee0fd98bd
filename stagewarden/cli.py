"""The `stagewarden` command line. Exit codes: 0 success, 1 findings at/above --fail-on, 2 bad input."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from stage_policy.loader import PolicyError, load

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2


def _err(message: str) -> int:
    print(f"stagewarden: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


# ------------------------------------------------------------------ policy
def cmd_policy_validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.paths:
        try:
            policy = load(path)
        except PolicyError as exc:
            failed = True
            for line in exc.lines():
                print(line, file=sys.stderr)
            continue
        print(f"{path}: valid ({policy.framework}, {len(policy.stages)} stages: {', '.join(policy.stages)})")
    return EXIT_BAD_INPUT if failed else EXIT_OK


def cmd_policy_explain(args: argparse.Namespace) -> int:
    from stagewarden.explain import rows, table

    try:
        policy = load(args.path)
    except PolicyError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.stage and args.stage not in policy.stages:
        return _err(f"{args.path}: --stage {args.stage!r} is not a stage of this policy (stages: {', '.join(policy.stages)})")
    if args.format == "json":
        for row in rows(policy, args.stage):
            print(json.dumps(row))
    else:
        print(table(policy, args.path, args.stage))
    return EXIT_OK


def cmd_policy_push(args: argparse.Namespace) -> int:
    from stage_policy.store import parse_s3_uri
    from stagewarden import emulator

    try:
        load(args.path)  # never push a policy the functions would refuse
    except PolicyError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return EXIT_BAD_INPUT
    state = emulator.read_state(Path(args.template))
    location = args.to or (emulator.policy_location(state) if state else None)
    if not location:
        return _err("--to s3://bucket/key is required (no local emulator is running; see the PolicyLocation stack output)")
    try:
        bucket, key = parse_s3_uri(location)
    except ValueError as exc:
        return _err(f"--to: {exc}")
    if state and not args.to:
        client = emulator.boto_client("s3", state)
    else:
        import boto3

        client = boto3.client("s3")
    version = client.put_object(Bucket=bucket, Key=key, Body=Path(args.path).read_bytes()).get("VersionId")
    print(f"pushed {args.path} to {location}" + (f" (version {version})" if version else ""))
    return EXIT_OK


# ------------------------------------------------------------------ invoke
def cmd_invoke(args: argparse.Namespace) -> int:
    from stagewarden import emulator
    from stagewarden.cfn import TemplateError
    from stagewarden.invoke import function_spec, invoke, read_event

    template = Path(args.template)
    try:
        event = read_event(args.event)
        overrides: dict[str, str] = {}
        if args.env_vars:
            data = json.loads(Path(args.env_vars).read_text())
            overrides = {k: str(v) for k, v in {**data.get("Parameters", {}), **data.get(args.logical_id, {})}.items()}
        state = emulator.read_state(template)
        if state and not emulator.is_alive(state.endpoint):
            print(f"stagewarden: note: the emulator in {emulator.state_path(template)} is not answering; using template defaults",
                  file=sys.stderr)
            state = None
        spec = function_spec(template, args.logical_id, state, overrides)
    except (TemplateError, ValueError, OSError) as exc:
        return _err(str(exc))
    extra_env = state.environ() if state else {}
    result = invoke(spec, event, extra_env)
    print(json.dumps(result, indent=2, default=str))
    return EXIT_OK


# ------------------------------------------------------------------ local emulator
def cmd_local_up(args: argparse.Namespace) -> int:
    from stagewarden import emulator

    overrides = dict(kv.split("=", 1) for kv in args.parameter_overrides or [])
    policy = Path(args.policy) if args.policy else None
    if policy is not None:
        try:
            load(policy)
        except PolicyError as exc:
            print("\n".join(exc.lines()), file=sys.stderr)
            return EXIT_BAD_INPUT
    try:
        state = emulator.up(Path(args.template), policy, overrides)
    except emulator.EmulatorError as exc:
        return _err(str(exc))
    print_resources(state)
    if policy is not None:
        print(f"\npolicy {policy} uploaded to {emulator.policy_location(state)}")
    print("\nThe emulator is up. Point boto3, the AWS CLI and `stagewarden invoke` at it with:\n")
    for key, value in state.environ().items():
        print(f"export {key}={value}")
    return EXIT_OK


def print_resources(state: "object") -> None:
    resources = getattr(state, "resources")
    width = max(len(r["logical_id"]) for r in resources)
    for r in resources:
        print(f"  {r['logical_id'].ljust(width)}  {r['type']:<34} {r['physical_id']}  [{r['note']}]")


def cmd_local_down(args: argparse.Namespace) -> int:
    from stagewarden import emulator

    state = emulator.down(Path(args.template))
    print(f"stopped the emulator at {state.endpoint}" if state else "no emulator was running")
    return EXIT_OK


def cmd_local_status(args: argparse.Namespace) -> int:
    from stagewarden import emulator

    state = emulator.read_state(Path(args.template))
    if state is None or not emulator.is_alive(state.endpoint):
        print("no emulator is running")
        return EXIT_FINDINGS
    print(f"emulator at {state.endpoint} (pid {state.pid})")
    print_resources(state)
    return EXIT_OK


def cmd_scan_cloudtrail(args: argparse.Namespace) -> int:
    from stage_policy.findings import SEVERITY_ORDER, at_least
    from stagewarden.scan import default_policy, expand, one_per_incident, scan

    try:
        policy = load(args.policy) if args.policy else default_policy()
        files = expand(args.paths)
    except PolicyError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return EXIT_BAD_INPUT
    except FileNotFoundError as exc:
        return _err(str(exc))
    decisions, records = [], 0
    for _path, stats, found in scan(files, policy):
        records += stats.records
        decisions += found
    decisions = one_per_incident(decisions)
    decisions.sort(key=lambda d: (-SEVERITY_ORDER[d.finding.severity], str(d.finding.first_seen)))
    for d in decisions:
        f = d.finding
        planned = "; ".join(a.describe() for a in d.actions)
        f.action = f"none (offline scan); response {d.response}" + (f", would {planned}" if planned else "")
        if args.format == "json":
            print(f.to_json())
        else:
            print(f"{f.severity.upper():<8} {f.rule:<30} {str(f.stage or '-'):<16} {str(f.principal or '-')[-48:]:<48} {f.summary}")
    print(f"scanned {len(files)} file(s), {records} record(s): {len(decisions)} finding(s)", file=sys.stderr)
    failing = [d for d in decisions if at_least(d.finding.severity, args.fail_on)] if args.fail_on else []
    return EXIT_FINDINGS if failing else EXIT_OK


def cmd_local_poll(args: argparse.Namespace) -> int:
    from stagewarden import emulator
    from stagewarden.cfn import TemplateError
    from stagewarden.poll import poll

    template = Path(args.template)
    state = emulator.read_state(template)
    if state is None or not emulator.is_alive(state.endpoint):
        return _err("no emulator is running (stagewarden local up)")
    try:
        result = poll(template, args.logical_id, state, args.max_batches)
    except TemplateError as exc:
        return _err(str(exc))
    print(json.dumps({"batches": result.batches, "messages": result.received, "failed": result.failed, "results": result.results},
                     indent=2, default=str))
    return EXIT_OK


def _contract(args: argparse.Namespace):
    policy = load(args.policy)
    try:
        return policy.contract(args.contract)
    except KeyError as exc:
        raise PolicyError(args.policy, [("contracts", str(exc.args[0]))]) from None


def cmd_data_validate(args: argparse.Namespace) -> int:
    from gate.engine import TooLarge
    from gate.readers import ReadError
    from gate.run import validate

    try:
        contract = _contract(args)
        baseline = None
        if contract.drift is not None and args.baseline:
            baseline = json.loads(Path(args.baseline).read_text())
        with open(args.file, "rb") as fh:
            report, _ = validate(fh, args.file, contract, baseline)
    except PolicyError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, ReadError, ValueError) as exc:
        return _err(f"{exc}" if not isinstance(exc, OSError) else f"{args.file}: cannot read ({exc.strerror or exc})")
    except TooLarge as exc:
        return _err(f"{args.file}: {exc}; the gate reports data.too-large for such objects")
    if args.format == "json":
        print(json.dumps(report))
    else:
        print(f"{args.file}: contract {report['contract']}: {'PASSED' if report['passed'] else 'FAILED'} ({report['rows']} rows)")
        for c in report["checks"]:
            if c["failed_rows"]:
                rows = ", ".join(map(str, c["sample_row_numbers"][:10]))
                print(f"  {c['check']:<15} {str(c['column'] or '-'):<16} {c['failed_rows']:>10} failed rows   e.g. rows {rows}")
        for col, d in report["drift"].items():
            print(f"  drift {col}: psi {d['score']:.4f} (threshold {d['threshold']})")
    return EXIT_OK if report["passed"] else EXIT_FINDINGS


def cmd_data_profile(args: argparse.Namespace) -> int:
    from gate.engine import profile
    from gate.readers import ReadError, batches

    try:
        contract = _contract(args)
        with open(args.file, "rb") as fh:
            result = profile(contract, batches(fh, args.file, contract, lambda rows: None))
    except PolicyError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ReadError, ValueError) as exc:
        return _err(str(exc))
    except OSError as exc:
        return _err(f"{args.file}: cannot read ({exc.strerror or exc})")
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}: {result['rows']} rows, columns {', '.join(result['columns'])}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from stagewarden.demo import run

    return run(Path(args.template), Path(args.policy))


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stagewarden", description="Guardrails for production-data stages.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_template(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--template", "-t", default="template.yaml", help="SAM template (default: template.yaml)")
        return p

    policy = sub.add_parser("policy", help="validate, explain and push stage policies").add_subparsers(dest="action", required=True)
    p = policy.add_parser("validate", help="exit 0 if every policy is valid, else 2 with one line per error")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_policy_validate)
    p = policy.add_parser("explain", help="what each stage allows and which resources map to it")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--stage")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_policy_explain)
    p = with_template(policy.add_parser("push", help="validate, then upload to the policy location"))
    p.add_argument("path", metavar="PATH")
    p.add_argument("--to", help="s3://bucket/key (default: the local emulator's policy location)")
    p.set_defaults(func=cmd_policy_push)

    p = with_template(sub.add_parser("invoke", help="run a template function in-process (Docker-less sam local invoke)"))
    p.add_argument("logical_id", metavar="LogicalId")
    p.add_argument("--event", "-e", help="event JSON file, or - for stdin (default: {})")
    p.add_argument("--env-vars", "-n", help="JSON file of environment overrides, as for sam local invoke")
    p.set_defaults(func=cmd_invoke)

    local = sub.add_parser("local", help="the local AWS emulator (moto_server on 127.0.0.1)").add_subparsers(dest="action", required=True)
    p = with_template(local.add_parser("up", help="start moto_server and provision template.yaml's resources"))
    p.add_argument("--policy", default="policy.example.yaml", help="policy to upload to the policy location ('' for none)")
    p.add_argument("--parameter-overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_local_up)
    with_template(local.add_parser("down", help="stop the emulator")).set_defaults(func=cmd_local_down)
    with_template(local.add_parser("status", help="is it running, and what does it hold")).set_defaults(func=cmd_local_status)
    p = with_template(local.add_parser("poll", help="feed a function its SQS queue's messages (Docker-less event source mapping)"))
    p.add_argument("logical_id", metavar="LogicalId")
    p.add_argument("--max-batches", type=int, default=100)
    p.set_defaults(func=cmd_local_poll)

    scan = sub.add_parser("scan", help="offline scanners").add_subparsers(dest="action", required=True)
    p = scan.add_parser("cloudtrail", help="run the exfiltration rules over CloudTrail log files or folders")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--policy", help="stage policy (default: every bucket in a download-denied lab stage)")
    p.add_argument("--format", choices=["json", "table"], default="json")
    p.add_argument("--fail-on", choices=["low", "medium", "high", "critical"], help="exit 1 if a finding is at least this severe")
    p.set_defaults(func=cmd_scan_cloudtrail)

    data = sub.add_parser("data", help="the schema gate on local files").add_subparsers(dest="action", required=True)
    p = data.add_parser("validate", help="check a CSV / JSON Lines / Parquet file against a contract (exit 0 pass, 1 fail, 2 bad input)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--contract", required=True)
    p.add_argument("--policy", required=True)
    p.add_argument("--baseline", help="drift profile from `data profile` (default: none, drift not checked)")
    p.add_argument("--format", choices=["json", "table"], default="json")
    p.set_defaults(func=cmd_data_validate)
    p = data.add_parser("profile", help="build a drift baseline (decile edges, category frequencies)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--contract", required=True)
    p.add_argument("--policy", required=True)
    p.add_argument("--out", required=True, metavar="PROFILE")
    p.set_defaults(func=cmd_data_profile)

    from stagewarden.retention import register as register_retention

    register_retention(sub)

    p = with_template(sub.add_parser("demo", help="every guardrail end to end on a fresh local emulator"))
    p.add_argument("--policy", default="policy.example.yaml")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
