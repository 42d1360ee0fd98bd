"""The `stagewarden` command line. Exit codes: 0 success, 1 findings at/above --fail-on, 2 bad input.

Every mistake a user can make (a missing, binary or non-UTF-8 file, a wrong option, no
AWS credentials or region, ...) ends in one line on stderr that names the file, option or
setting and says what to do, and exit code 2: see :func:`main` and :mod:`stagewarden.usage`.
A traceback means a bug. Imports stay inside the commands: `stagewarden --help` and
`--version` must not pay for pydantic, boto3 or pyarrow.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

from stagewarden import __version__
from stagewarden.usage import (
    HINT, UsageError, cannot_read, check_output, describe, did_you_mean, parse_overrides, positive_int, read_bytes,
)

if TYPE_CHECKING:
    from stage_policy.model import Policy

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2


def load_policy(path: str | Path) -> "Policy":
    """Read and validate a policy file; every problem is a PolicyError naming the file (and the field)."""
    from stage_policy.loader import PolicyError, loads
    from stagewarden.usage import not_utf8, os_problem

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(str(path), [("", f"cannot read file ({os_problem(exc)}){HINT}check the path")]) from None
    if b"\x00" in data[:8192]:
        raise PolicyError(str(path), [("", f"binary file, not a YAML policy{HINT}pass the policy file (see policy.example.yaml)")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError(str(path), [("", f"{not_utf8(data, exc)}{HINT}save it as UTF-8")]) from None
    if not text.strip():
        raise PolicyError(str(path), [("", f"the file is empty{HINT}a policy needs `framework:` and/or `stages:` "
                                           "(see policy.example.yaml)")])
    return loads(text, str(path))


# ------------------------------------------------------------------ policy
def cmd_policy_validate(args: argparse.Namespace) -> int:
    from stage_policy.loader import PolicyError

    failed = False
    for path in args.paths:
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            failed = True
            for line in exc.lines():
                print(line, file=sys.stderr)
            continue
        print(f"{path}: valid ({policy.framework}, {len(policy.stages)} stages: {', '.join(policy.stages)})")
    return EXIT_BAD_INPUT if failed else EXIT_OK


def cmd_policy_explain(args: argparse.Namespace) -> int:
    from stagewarden.explain import rows, table

    policy = load_policy(args.path)
    if args.stage and args.stage not in policy.stages:
        raise UsageError(f"--stage {args.stage!r}: not a stage of {args.path}{did_you_mean(args.stage, policy.stages)}"
                         f"{HINT}use one of {', '.join(policy.stages)}")
    if args.format == "json":
        for row in rows(policy, args.stage):
            print(json.dumps(row))
    else:
        print(table(policy, args.path, args.stage))
    return EXIT_OK


def cmd_policy_fields(args: argparse.Namespace) -> int:
    from stage_policy.fields import markdown

    from stagewarden.explain import fields_table

    print(markdown() if args.format == "markdown" else fields_table())
    return EXIT_OK


def cmd_policy_push(args: argparse.Namespace) -> int:
    from stage_policy.store import parse_s3_uri
    from stagewarden import emulator

    load_policy(args.path)  # never push a policy the functions would refuse
    state = emulator.read_state(Path(args.template))
    if state and not args.to and not emulator.is_alive(state.endpoint):
        state = None
    location = args.to or (emulator.policy_location(state) if state else None)
    if not location:
        raise UsageError(f"--to: required when no local emulator is running{HINT}give --to s3://bucket/key "
                         "(the stack's PolicyLocation output), or start the emulator with `stagewarden local up`")
    try:
        bucket, key = parse_s3_uri(location)
    except ValueError as exc:
        raise UsageError(f"--to: {exc}{HINT}write it as s3://bucket/key") from None
    body = read_bytes(args.path, "the policy")
    if state and not args.to:
        client = emulator.boto_client("s3", state)
    else:
        import boto3

        client = boto3.client("s3")
    from botocore.exceptions import ClientError

    try:
        version = client.put_object(Bucket=bucket, Key=key, Body=body).get("VersionId")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise UsageError(f"--to {location}: {error.get('Code', '?')} ({error.get('Message', '')}){HINT}"
                         "check the bucket name and that your credentials may write to it") from None
    print(f"pushed {args.path} to {location}" + (f" (version {version})" if version else ""))
    return EXIT_OK


# ------------------------------------------------------------------ invoke
def cmd_invoke(args: argparse.Namespace) -> int:
    from stagewarden import emulator
    from stagewarden.invoke import env_overrides, function_spec, invoke, read_event, region_for

    template = Path(args.template)
    event = read_event(args.event)
    overrides = env_overrides(args.env_vars, args.logical_id) if args.env_vars else {}
    state = emulator.read_state(template)
    if state and not emulator.is_alive(state.endpoint):
        print(f"stagewarden: note: the emulator in {emulator.state_path(template)} is not answering; using template defaults",
              file=sys.stderr)
        state = None
    spec = function_spec(template, args.logical_id, state, overrides)
    if state:
        extra_env = state.environ()
    else:  # as Lambda does: both region variables set (boto3 reads only AWS_DEFAULT_REGION)
        region = region_for(spec)
        extra_env = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
        unresolved = sorted(name for name, value in spec.environment.items() if re.search(r"<[A-Za-z0-9.]+>", value))
        if unresolved:  # e.g. s3://<PolicyBucket>/policy.yaml: the stack's resources exist only in the emulator or a stack
            raise UsageError(f"{args.logical_id}: {', '.join(unresolved)} name stack resources that exist only in a "
                             f"running emulator or a deployed stack{HINT}start `stagewarden local up`, or give their values "
                             f"with --env-vars")
    import warnings

    with warnings.catch_warnings():  # Powertools' "No application metrics to publish" is not the user's concern
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        result = invoke(spec, event, extra_env)
    print(json.dumps(result, indent=2, default=str))
    return EXIT_OK


# ------------------------------------------------------------------ local emulator
def cmd_local_up(args: argparse.Namespace) -> int:
    from stagewarden import emulator

    template = Path(args.template)
    overrides = emulator.check_overrides(template, parse_overrides(args.parameter_overrides or []))
    policy = Path(args.policy) if args.policy else None
    if policy is not None:
        load_policy(policy)
    state = emulator.up(template, policy, overrides)
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
    """Not running is an answer, not an error: exit 0 either way."""
    from stagewarden import emulator

    template = Path(args.template)
    state = emulator.read_state(template)
    if state is None:
        print("no emulator is running (start one with `stagewarden local up`)")
        return EXIT_OK
    if not emulator.is_alive(state.endpoint):
        print(f"no emulator is running: the one recorded in {emulator.state_path(template)} at {state.endpoint} "
              "does not answer (`stagewarden local down` clears the record, `stagewarden local up` starts a new one)")
        return EXIT_OK
    print(f"emulator at {state.endpoint} (pid {state.pid})")
    print_resources(state)
    return EXIT_OK


def cmd_local_poll(args: argparse.Namespace) -> int:
    from stagewarden import emulator
    from stagewarden.poll import poll

    template = Path(args.template)
    state = emulator.read_state(template)
    if state is None or not emulator.is_alive(state.endpoint):
        raise UsageError(f"local poll: no emulator is running{HINT}start one with `stagewarden local up`")
    result = poll(template, args.logical_id, state, args.max_batches)
    print(json.dumps({"batches": result.batches, "messages": result.received, "failed": result.failed, "results": result.results},
                     indent=2, default=str))
    return EXIT_OK


# ------------------------------------------------------------------ scan
def cmd_scan_cloudtrail(args: argparse.Namespace) -> int:
    from stage_policy.findings import SEVERITY_ORDER, at_least
    from stagewarden.scan import default_policy, expand, one_per_incident, scan

    policy = load_policy(args.policy) if args.policy else default_policy()
    files = expand(args.paths)
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


# ------------------------------------------------------------------ data
def _contract(args: argparse.Namespace) -> Any:
    from stage_policy.loader import PolicyError

    policy = load_policy(args.policy)
    names = [c.name for c in policy.contracts]
    if args.contract not in names:
        hint = did_you_mean(args.contract, names) or f" (known: {', '.join(names) or 'none'})"
        raise PolicyError(args.policy, [("contracts", f"no contract named {args.contract!r}{hint}{HINT}"
                                                      "check --contract, or add the contract to the policy")])
    return policy.contract(args.contract)


def _check_data_file(path: str, contract: Any) -> None:
    """A text contract (csv, jsonl) refuses a binary file up front: pyarrow's own words for it mislead."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise cannot_read(path, exc, "the data file") from None
    if contract.format != "parquet" and head[:2] != b"\x1f\x8b" and b"\x00" in head:
        raise UsageError(f"{path}: binary file, not {contract.format}{HINT}contract {contract.name} expects "
                         f"{contract.format} (UTF-8 text, optionally gzip); check that you passed the right file")


def _read_error(exc: Exception, contract: Any) -> UsageError:
    return UsageError(f"{exc}{HINT}contract {contract.name} expects {contract.format}"
                      + (" (UTF-8 text)" if contract.format != "parquet" else "") + "; check the file and the contract's format")


def _baseline(path: str, contract: Any) -> dict[str, Any]:
    from stagewarden.usage import read_json

    data = read_json(path, "a drift profile", "--baseline")
    rebuild = f"{HINT}rebuild it with `stagewarden data profile FILE --contract {contract.name} ... --out {path}`"
    if not isinstance(data, dict) or not isinstance(data.get("columns"), dict):
        raise UsageError(f"--baseline {path}: not a drift profile (no `columns` mapping){rebuild}")
    for name in contract.drift.columns:
        spec = data["columns"].get(name)
        if spec is None:
            continue  # a column the profile lacks is not scored
        needed = ("kind", "fractions", "edges") if isinstance(spec, dict) and spec.get("kind") == "numeric" else ("kind", "fractions")
        missing = [k for k in needed if not isinstance(spec, dict) or k not in spec]
        if missing:
            raise UsageError(f"--baseline {path}: columns.{name}: missing {', '.join(missing)}{rebuild}")
    return data


def cmd_data_validate(args: argparse.Namespace) -> int:
    from gate.engine import CHECKS, TooLarge
    from gate.readers import ReadError
    from gate.run import validate

    contract = _contract(args)
    baseline = _baseline(args.baseline, contract) if contract.drift is not None and args.baseline else None
    _check_data_file(args.file, contract)
    try:
        with open(args.file, "rb") as fh:
            report, _ = validate(fh, args.file, contract, baseline)
    except OSError as exc:
        raise cannot_read(args.file, exc, "the data file") from None
    except ReadError as exc:
        raise _read_error(exc, contract) from None
    except TooLarge as exc:
        raise UsageError(f"{args.file}: {exc}{HINT}the gate reports data.too-large for such objects; raise the contract's "
                         "max_rows / max_object_bytes or split the file") from None
    if args.format == "json":
        print(json.dumps(report))
    else:
        print(f"{args.file}: contract {report['contract']}: {'PASSED' if report['passed'] else 'FAILED'} ({report['rows']} rows)")
        for c in report["checks"]:
            if c["passed"]:
                continue
            head = f"  {c['check']:<15} {str(c['column'] or '-'):<16}"
            if c["failed_rows"]:
                rows = ", ".join(map(str, c["sample_row_numbers"][:10]))
                print(f"{head} {c['failed_rows']:>10} failed rows   e.g. rows {rows}")
            if c.get("note"):
                print(f"{head} {c['note']}")
        for col, d in report["drift"].items():
            print(f"  drift {col}: psi {d['score']:.4f} (threshold {d['threshold']})")
        print(f"  checked: {', '.join(sorted({c['check'] for c in report['checks']}, key=CHECKS.index))}")
    return EXIT_OK if report["passed"] else EXIT_FINDINGS


def cmd_data_profile(args: argparse.Namespace) -> int:
    from gate.engine import profile
    from gate.readers import ReadError, batches

    contract = _contract(args)
    if contract.drift is None:
        raise UsageError(f"--contract {contract.name}: declares no drift columns in {args.policy}{HINT}"
                         "add `drift: {baseline: s3://..., columns: [...]}` to the contract")
    check_output(args.out, "--out")
    _check_data_file(args.file, contract)
    try:
        with open(args.file, "rb") as fh:
            result = profile(contract, batches(fh, args.file, contract, lambda rows: None))
    except OSError as exc:
        raise cannot_read(args.file, exc, "the data file") from None
    except ReadError as exc:
        raise _read_error(exc, contract) from None
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}: {result['rows']} rows, columns {', '.join(result['columns'])}")
    return EXIT_OK


def cmd_data_fence(args: argparse.Namespace) -> int:
    """Print the merged bucket policy (for ``aws s3api put-bucket-policy --policy file://...``); exit 1 past S3's 20 KB."""
    from gate.actions import POLICY_LIMIT, compact, fence, merged
    from gate.pipeline import gated_prefixes

    from stage_policy.mapping import stage_for_bucket
    from stagewarden.usage import read_json

    policy = load_policy(args.policy)
    if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", args.gate_role):
        raise UsageError(f"--gate-role {args.gate_role!r}: not an IAM role ARN{HINT}pass the SchemaGateFunction's role ARN")
    stage = stage_for_bucket(policy, args.bucket, None).stage
    gated, validated = gated_prefixes(policy, args.bucket, stage)
    if not gated:
        raise UsageError(f"--bucket {args.bucket}: no contract or model registry of {args.policy} covers it "
                         f"(stage {stage or 'none'}){HINT}check the bucket name and the contracts' stage and bucket")
    current = read_json(args.current, "a bucket policy", "--current") if args.current else None
    if current is not None and not isinstance(current, dict):
        raise UsageError(f"--current {args.current}: not a bucket policy (a JSON object){HINT}pass the Policy text")
    document, _, size = merged(current, fence(args.bucket, gated, validated, args.gate_role))
    print(compact(document))
    if size > POLICY_LIMIT:
        print(f"{args.bucket}: the policy would be {size} bytes, above S3's limit of {POLICY_LIMIT}; shorten the "
              "bucket's other statements first", file=sys.stderr)
        return EXIT_FINDINGS
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from stagewarden.cfn import load_template
    from stagewarden.demo import run

    from stagewarden.report import prepare_dir

    load_policy(args.policy)
    load_template(args.template)
    folder = prepare_dir(args.report)  # before the emulator starts: a bad folder costs nothing
    return run(Path(args.template), Path(args.policy), folder)


# ------------------------------------------------------------------ parser
_INVALID_CHOICE = re.compile(r"invalid choice: '?([^' ]*)'? \(choose from (.*)\)")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the option, with a hint (a UsageError, exit 2)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("stagewarden").strip()
        subparsers = next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)
        if subparsers is not None and message.startswith("the following arguments are required:") and (
                message.endswith(f" {subparsers.dest}")):
            message = f"a command is required (one of: {', '.join(subparsers.choices)})"
        match = _INVALID_CHOICE.search(message)
        if match:
            choices = [c.strip().strip("'") for c in match.group(2).split(",")]
            message = message[:match.end()] + did_you_mean(match.group(1), choices)
        raise UsageError(f"{command + ': ' if command else ''}{message}{HINT}see `{self.prog} --help`")

    def unrecognized(self, extra: list[str]) -> NoReturn:
        options = [s for a in self._actions for s in a.option_strings]
        self.error("unrecognized arguments: " + " ".join(extra) + did_you_mean(extra[0].split("=")[0], options))


def build_parser() -> Parser:
    parser = Parser(prog="stagewarden", description="Guardrails for production-data stages.",
                    epilog="Exit codes: 0 success, 1 findings at or above --fail-on (or a failed data check), "
                           "2 a mistake in the input, named on one line.")
    parser.add_argument("--version", action="version", version=f"stagewarden {__version__}")
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
    p = policy.add_parser("fields", help="every policy field and template parameter: status, what reads it, its effect today")
    p.add_argument("--format", choices=["table", "markdown"], default="table")
    p.set_defaults(func=cmd_policy_fields)
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
    with_template(local.add_parser("status", help="is it running (exit 0 either way), and what does it hold")).set_defaults(
        func=cmd_local_status)
    p = with_template(local.add_parser("poll", help="feed a function its SQS queue's messages (Docker-less event source mapping)"))
    p.add_argument("logical_id", metavar="LogicalId")
    p.add_argument("--max-batches", type=positive_int, default=100)
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
    p = data.add_parser("fence", help="the bucket policy that keeps a bucket's gated prefixes unreadable until passed "
                                      "(apply it before the first upload)")
    p.add_argument("--policy", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--gate-role", required=True, metavar="ARN", help="the SchemaGateFunction's role (stack output or IAM)")
    p.add_argument("--current", metavar="FILE", help="the bucket's current policy (aws s3api get-bucket-policy --query "
                                                     "Policy --output text); its statements are kept")
    p.set_defaults(func=cmd_data_fence)

    from stagewarden.retention import register as register_retention

    register_retention(sub)
    from stagewarden.alerts import add_parsers as add_alerts_parsers

    add_alerts_parsers(sub, local, with_template)  # `alerts test`, `local sink`

    from stagewarden.posture import register as register_posture

    register_posture(sub)

    p = with_template(sub.add_parser("demo", help="every guardrail end to end on a fresh local emulator"))
    p.add_argument("--policy", default="policy.example.yaml")
    p.add_argument("--report", default="demo-report", metavar="DIR",
                   help="folder for report.md, report.html and functions.log (default demo-report, created if missing)")
    p.set_defaults(func=cmd_demo)

    from stagewarden.breakglass import register  # import-light: its commands import what they use

    register(sub, with_template)
    return parser


def _innermost(parser: Parser, args: argparse.Namespace) -> Parser:
    """The sub-command's parser (for `unrecognized arguments`, which argparse reports at the top)."""
    for dest in ("command", "action"):
        subparsers = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, dest, None)
        if subparsers is None or name not in subparsers.choices:
            break
        parser = subparsers.choices[name]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code; a known mistake is one stderr line and 2, never a traceback."""
    try:
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        if extra:
            _innermost(parser, args).unrecognized(extra)
        return int(args.func(args))
    except KeyboardInterrupt:
        print("stagewarden: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `stagewarden scan ... | head`: the reader left, nothing more to say
        import os

        try:  # and Python's final flush must not complain about it either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except Exception as exc:  # noqa: BLE001 - known mistakes become one line; the rest are bugs and re-raise
        lines = describe(exc)
        if lines is None:
            raise
        for line in lines:
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
