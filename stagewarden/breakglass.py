"""`stagewarden breakglass ...` and `stagewarden exception ...`: the operator's side, on the function's own engine.

The commands run the same code as BreakGlassFunction (package ``warden``), with the operator's
AWS credentials, against the running local emulator (default) or a deployed stack
(``--stack NAME``: the stack's outputs name the tables, topic, schedule group and roles). A
refused request is one line on stderr and exit 2, and changes nothing. Heavy imports stay inside
the commands (`stagewarden --help` must not pay for boto3 or pydantic).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from stagewarden.usage import HINT, UsageError, parse_overrides

if TYPE_CHECKING:
    from warden.engine import Warden

EXIT_OK = 0

#: stack output -> what it is (all written by template.yaml)
_OUTPUTS = {"StateTableName": "state table", "AuditTableName": "audit table", "AlertsTopicArn": "alerts topic",
            "BreakGlassFunctionArn": "break-glass function", "BreakGlassScheduleGroupName": "schedule group",
            "BreakGlassSchedulerRoleArn": "scheduler role", "BreakGlassDeadLetterQueueArn": "dead-letter queue"}


@dataclass(frozen=True)
class Wiring:
    clients: Callable[[str], Any]
    state_table: str
    audit_table: str
    topic_arn: str
    function_arn: str
    schedule_group: str
    scheduler_role_arn: str
    dead_letter_arn: str
    stack_name: str


def _emulator(template: Path, state: Any = None) -> Wiring:
    """The running emulator's (or, for the demo, the given emulator state's) tables, topic, group and roles."""
    from stagewarden import emulator

    state = state or emulator.read_state(template)
    if state is None or not emulator.is_alive(state.endpoint):
        raise UsageError(f"no emulator is running for {template} and no --stack was given{HINT}start one with "
                         "`stagewarden local up`, or name the deployed stack with --stack NAME")
    try:
        refs, attrs = state.refs, state.attrs
        wiring = (refs["StateTable"], refs["AuditTable"], refs["AlertsTopic"], attrs["BreakGlassFunction.Arn"],
                  refs["BreakGlassScheduleGroup"], attrs["BreakGlassFunctionExpiryRole.Arn"], attrs["BreakGlassDeadLetterQueue.Arn"])
    except KeyError as exc:
        raise UsageError(f"the emulator at {state.endpoint} has no {exc.args[0]} (started from an older template){HINT}"
                         "restart it: `stagewarden local down && stagewarden local up`") from None
    return Wiring(cache(lambda service: emulator.boto_client(service, state)), *wiring, stack_name=state.stack_name)


def _stack(name: str) -> Wiring:
    import boto3

    clients = cache(lambda service: boto3.client(service))
    from botocore.exceptions import ClientError

    try:
        stack = clients("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        raise UsageError(f"--stack {name}: {exc.response.get('Error', {}).get('Message', 'not found')}{HINT}"
                         "name the deployed Stagewarden stack (sam deploy's stack_name)") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = [k for k in _OUTPUTS if k not in outputs]
    if missing:
        raise UsageError(f"--stack {name}: no output {missing[0]} ({_OUTPUTS[missing[0]]}){HINT}"
                         "deploy a template.yaml with BreakGlassFunction")
    return Wiring(clients, outputs["StateTableName"], outputs["AuditTableName"], outputs["AlertsTopicArn"],
                  outputs["BreakGlassFunctionArn"], outputs["BreakGlassScheduleGroupName"], outputs["BreakGlassSchedulerRoleArn"],
                  outputs["BreakGlassDeadLetterQueueArn"], name)


def connect(args: argparse.Namespace) -> tuple[Warden, Wiring]:
    """The engine, wired to the emulator or the deployed stack, with the policy given on the command line."""
    from stage_policy.executor import AuditLedger, Executor
    from stage_policy.publish import FindingPublisher
    from stagewarden.cli import load_policy
    from warden.engine import Scheduling, Warden
    from warden.ports import GrantStore, RoleReader, TrailReader

    policy = load_policy(args.policy)
    wiring = _stack(args.stack) if args.stack else _emulator(Path(args.template), getattr(args, "state", None))
    c = wiring.clients
    ddb = c("dynamodb")
    publisher = FindingPublisher(c("sns"), wiring.topic_arn, ddb, wiring.state_table)
    # the CLI's own actions are grant bookkeeping (every mode); the executor's ceiling is the policy's modes
    executor = Executor(c, policy, "enforce", AuditLedger(ddb, wiring.audit_table, "stagewarden-cli"))
    scheduling = Scheduling(wiring.schedule_group, wiring.function_arn, wiring.scheduler_role_arn, wiring.dead_letter_arn)
    warden = Warden(policy, GrantStore(ddb, wiring.state_table), RoleReader(c("iam")), TrailReader(c("cloudtrail")), executor,
                    lambda finding: publisher.publish(finding, policy.alerts), scheduling, wiring.stack_name)
    return warden, wiring


def caller(wiring: Wiring) -> tuple[str, str | None]:
    """The operator's ARN, and their verified identity (IAM Identity Center session name, IAM user name) if any."""
    arn = wiring.clients("sts").get_caller_identity()["Arn"]
    resource = arn.split(":", 5)[-1]
    if resource.startswith("assumed-role/AWSReservedSSO_"):
        return arn, resource.rsplit("/", 1)[-1]
    if resource.startswith("user/"):
        return arn, resource.rsplit("/", 1)[-1]
    return arn, None


def now_arg(text: str | None, option: str = "--now") -> datetime:
    from warden.rules import parse_time

    if not text:
        return datetime.now(timezone.utc)
    try:
        return parse_time(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: not an ISO-8601 time{HINT}write it as 2026-11-22T09:30:00Z") from None


def _refused(command: str, exc: Exception) -> UsageError:
    return UsageError(f"{command}: refused, nothing changed: {exc}")


def _print(rows: list[dict[str, Any]], fmt: str, columns: list[tuple[str, str]]) -> None:
    if fmt == "json":
        for row in rows:
            print(json.dumps(row, default=str))
        return
    cells = [[str(row.get(k) if row.get(k) is not None else "-") for k, _ in columns] for row in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    print("  ".join(h.ljust(w) for (_, h), w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if not rows:
        print("(none)")


# ------------------------------------------------------------------ breakglass
def cmd_grant(args: argparse.Namespace) -> int:
    from warden.rules import GrantRequest, Refused, parse_duration, same_person

    try:
        minutes = parse_duration(args.duration)
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}{HINT}e.g. --duration 90m") from None
    tags = parse_overrides(args.tag or [], "--tag")
    warden, wiring = connect(args)
    requested_by, verified = caller(wiring)
    request = GrantRequest(args.role, args.principal, args.approver, args.ticket, minutes, args.reason or "", tags)
    try:
        grant = warden.grant(request, datetime.now(timezone.utc), requested_by, approver_verified=same_person(verified, args.approver))
    except Refused as exc:
        raise _refused("breakglass grant", exc) from None
    if args.format == "json":
        print(json.dumps(asdict(grant)))
    else:
        print(f"granted {grant.grant_id}: role {grant.role} opened to {grant.principal} until {grant.deadline} ({grant.minutes} min)")
        print(f"  approved by {grant.approver}, ticket {grant.ticket}; requested by {requested_by}")
        print(f"  IAM deadline: inline policy StagewardenBreakGlassDeadline denies every call after {grant.deadline}")
        print(f"  expiry scheduled: {wiring.schedule_group}/{grant.schedule} at {grant.deadline}; the sweep runs every 5 minutes too")
    return EXIT_OK


def cmd_end(args: argparse.Namespace) -> int:
    from warden.rules import Refused

    warden, wiring = connect(args)
    requested_by, _ = caller(wiring)
    try:
        result = warden.end(args.grant, datetime.now(timezone.utc), f"stagewarden breakglass end ({requested_by})", args.reason or "")
    except Refused as exc:
        raise _refused("breakglass end", exc) from None
    print(json.dumps(result) if args.format == "json" else
          f"{result['grant']}: {result['result']}" + (f"; review due {result['review_due']}" if result.get("review_due") else ""))
    return EXIT_OK


def grant_rows(warden: Warden, now: datetime) -> list[dict[str, Any]]:
    reviews = {r.grant_id: r for r in warden.store.reviews()}
    rows = []
    for g in sorted(warden.store.grants(), key=lambda g: g.created_at):
        status = g.status
        if status == "active" and g.deadline_at <= now:
            status = "active (expiry pending)"
        review = reviews.get(g.grant_id)
        rows.append({"grant_id": g.grant_id, "status": status, "role": g.role, "principal": g.principal, "stage": g.stage,
                     "approver": g.approver, "ticket": g.ticket, "created_at": g.created_at, "deadline": g.deadline,
                     "closed_at": g.closed_at or None, "closed_by": g.closed_by or None, "source": g.source,
                     "requested_by": g.requested_by, "sessions": len(g.sessions),
                     "review": {"due": review.due, "status": review.status} if review else None,
                     "review_due": review.due if review else None, "review_status": review.status if review else None})
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    warden, _ = connect(args)
    rows = grant_rows(warden, datetime.now(timezone.utc))
    if args.format == "json":
        rows = [{k: v for k, v in r.items() if k not in ("review_due", "review_status")} for r in rows]
    _print(rows, args.format, [("grant_id", "GRANT"), ("status", "STATUS"), ("role", "ROLE"), ("principal", "PRINCIPAL"),
                               ("deadline", "DEADLINE"), ("approver", "APPROVER"), ("ticket", "TICKET"),
                               ("review_due", "REVIEW DUE"), ("review_status", "REVIEW")])
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from warden.engine import SweepFailed

    now = now_arg(args.now)
    warden, _ = connect(args)
    try:
        report = warden.sweep(now, via=f"stagewarden breakglass sweep (as of {now:%Y-%m-%dT%H:%M:%SZ})")
    except SweepFailed as exc:
        print(json.dumps(asdict(exc.report)))
        raise UsageError(f"breakglass sweep: {len(exc.report.failed)} step(s) failed, the rest were done: {exc.report.failed[0]}"
                         f"{HINT}fix the cause and run the sweep again (it is safe to repeat)") from None
    if args.format == "json":
        print(json.dumps(asdict(report)))
    else:
        print(f"sweep as of {report.as_of}:")
        for key, value in asdict(report).items():
            if key != "as_of":
                print(f"  {key.replace('_', ' ')}: {', '.join(value) if value else '-'}")
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from warden.rules import Refused

    warden, _ = connect(args)
    try:
        warden.complete_review(args.grant, args.reviewer, args.notes, datetime.now(timezone.utc))
    except Refused as exc:
        raise _refused("breakglass review", exc) from None
    print(f"review of {args.grant} recorded as done by {args.reviewer}")
    return EXIT_OK


def cmd_baseline(args: argparse.Namespace) -> int:
    from warden.rules import Refused

    warden, wiring = connect(args)
    requested_by, _ = caller(wiring)
    try:
        record = warden.accept_baseline(args.role, datetime.now(timezone.utc), f"stagewarden breakglass baseline ({requested_by})")
    except Refused as exc:
        raise _refused("breakglass baseline", exc) from None
    print(f"baseline of {record.role} recorded at {record.recorded_at}: {json.dumps(record.baseline)}")
    return EXIT_OK


# ------------------------------------------------------------------ exceptions
def cmd_exception_grant(args: argparse.Namespace) -> int:
    from warden.rules import Refused
    from warden.timeboxed import grant_exception

    until = now_arg(args.until, "--until")
    warden, wiring = connect(args)
    requested_by, _ = caller(wiring)
    try:
        record = grant_exception(warden, args.bucket, args.principal, args.approver, until, args.reason or "",
                                 args.owner or requested_by, datetime.now(timezone.utc), requested_by)
    except Refused as exc:
        raise _refused("exception grant", exc) from None
    if args.format == "json":
        print(json.dumps(asdict(record)))
    else:
        print(f"granted {record.exception_id}: {record.role} may read s3://{record.bucket} until {record.until} "
              f"(inline policy {record.policy_name}, condition aws:CurrentTime < {record.until})")
        print(f"  owner {record.owner}, approved by {record.approver}; next review {record.next_review}")
    return EXIT_OK


def cmd_exception_list(args: argparse.Namespace) -> int:
    from warden.timeboxed import register_rows

    warden, _ = connect(args)
    rows = register_rows(warden.store.exceptions(), datetime.now(timezone.utc))
    _print(rows, args.format, [("exception_id", "EXCEPTION"), ("status", "STATUS"), ("bucket", "BUCKET"),
                               ("principal", "PRINCIPAL"), ("owner", "OWNER"), ("approver", "APPROVER"), ("until", "EXPIRES"),
                               ("next_review", "NEXT REVIEW"), ("reason", "REASON")])
    return EXIT_OK


def cmd_exception_sweep(args: argparse.Namespace) -> int:
    from warden.engine import SweepReport
    from warden.timeboxed import sweep_exceptions

    now = now_arg(args.now)
    warden, _ = connect(args)
    report = SweepReport(as_of=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    try:
        sweep_exceptions(warden, now, report)
    except RuntimeError as exc:
        raise UsageError(f"exception sweep: {exc}{HINT}fix the cause and run it again (it is safe to repeat)") from None
    result = {"as_of": report.as_of, "expired": report.exceptions_expired, "reviews_due": report.exception_reviews_due}
    print(json.dumps(result) if args.format == "json" else
          f"exception sweep as of {report.as_of}: expired {', '.join(report.exceptions_expired) or '-'}; "
          f"reviews due {', '.join(report.exception_reviews_due) or '-'}")
    return EXIT_OK


# ------------------------------------------------------------------ parser
def register(sub: Any, with_template: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """Add the `breakglass` and `exception` commands to the `stagewarden` parser."""

    def common(p: argparse.ArgumentParser, fmt: bool = True) -> argparse.ArgumentParser:
        with_template(p)
        p.add_argument("--policy", required=True, help="the stage policy (break_glass / exceptions sections)")
        p.add_argument("--stack", help="a deployed stack's name (default: the running local emulator)")
        if fmt:
            p.add_argument("--format", choices=["table", "json"], default="table")
        return p

    bg = sub.add_parser("breakglass", help="time-boxed emergency access: grant, end, list, sweep, review").add_subparsers(
        dest="action", required=True)
    p = common(bg.add_parser("grant", help="open a break-glass role to a principal until an IAM-enforced deadline"))
    p.add_argument("--role", required=True, help="the break-glass role (name)")
    p.add_argument("--principal", required=True, help="the IAM role or user ARN to let in")
    p.add_argument("--ticket", help="the incident or change ticket (required: a grant without one is refused)")
    p.add_argument("--approver", required=True, help="who approved (one of the stage's break_glass.approvers)")
    p.add_argument("--duration", required=True, help="90m, 2h, 1h30m (at most the stage's max_duration_minutes)")
    p.add_argument("--reason", help="why (free text, kept in the grant and its review)")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="a value for another required approval tag")
    p.set_defaults(func=cmd_grant)
    p = common(bg.add_parser("end", help="end a grant before its deadline (restores, revokes, creates the review)"))
    p.add_argument("--grant", required=True, metavar="ID")
    p.add_argument("--reason")
    p.set_defaults(func=cmd_end)
    common(bg.add_parser("list", help="every grant: active, expired, ended, with deadlines and reviews")).set_defaults(func=cmd_list)
    p = common(bg.add_parser("sweep", help="run the sweep once: expire overdue grants, record baselines, reviews due"))
    p.add_argument("--now", metavar="ISO", help="as of this time (default: now)")
    p.set_defaults(func=cmd_sweep)
    p = common(bg.add_parser("review", help="record a grant's post-incident review as done"), fmt=False)
    p.add_argument("--grant", required=True, metavar="ID")
    p.add_argument("--reviewer", required=True)
    p.add_argument("--notes", required=True)
    p.set_defaults(func=cmd_review)
    p = common(bg.add_parser("baseline", help="accept a break-glass role's current trust policy as its baseline"), fmt=False)
    p.add_argument("--role", required=True)
    p.set_defaults(func=cmd_baseline)

    ex = sub.add_parser("exception", help="time-boxed read-only bucket access: grant, list, sweep").add_subparsers(
        dest="action", required=True)
    p = common(ex.add_parser("grant", help="let a role read a bucket until a date (IAM-enforced), with an owner and approver"))
    p.add_argument("--bucket", required=True)
    p.add_argument("--principal", required=True, help="the IAM role ARN")
    p.add_argument("--approver", required=True, help="one of exceptions.approvers")
    p.add_argument("--until", required=True, metavar="DATE", help="ISO date or time (a date alone is 00:00 UTC)")
    p.add_argument("--reason", required=True)
    p.add_argument("--owner", help="who answers for it (default: you)")
    p.set_defaults(func=cmd_exception_grant)
    common(ex.add_parser("list", help="the register: owner, approver, reason, expiry, next review")).set_defaults(
        func=cmd_exception_list)
    p = common(ex.add_parser("sweep", help="remove expired exceptions, raise review-due findings"))
    p.add_argument("--now", metavar="ISO", help="as of this time (default: now)")
    p.set_defaults(func=cmd_exception_sweep)

