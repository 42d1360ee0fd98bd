"""`stagewarden retention plan | apply | restage`: the retention function's reconcile and sweep from a terminal.

Runs against whatever boto3 is pointed at (``AWS_ENDPOINT_URL`` for the local emulator, else AWS
with the caller's credentials). ``plan`` only reads: per bucket the stage, the rules the policy
requires and the bucket's, the diff and the versions due. ``apply`` reconciles and sweeps once,
honouring each stage's mode and ``safety.max_deletions_per_run``, exactly as the daily run does
(with ``--state-table``, also each bucket's stage memory). ``restage`` is the operator's approved
move of a remembered permanent bucket to another stage: recorded in the state table and the audit
ledger, then the stage tag is set. Everything heavy is imported when a command runs, not when the CLI starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2
#: How long a restage approval waits for the retag (the tag's event consumes it in seconds; the daily run within a day).
APPROVAL_HOURS = 48


def register(sub: Any) -> None:
    """Add ``retention plan`` and ``retention apply`` to the CLI's sub-commands."""
    retention = sub.add_parser("retention", help="stage bucket lifecycles and the expired-version sweep").add_subparsers(
        dest="action", required=True)
    p = retention.add_parser("plan", help="per bucket: stage, required and actual lifecycle rules, the diff, versions due "
                                          "(reads only)")
    _common(p)
    p.set_defaults(func=cmd_plan)
    p = retention.add_parser("apply", help="reconcile and sweep once, honouring each stage's mode and the deletion cap "
                                           "(exit 1 if an action failed)")
    _common(p)
    p.set_defaults(func=cmd_apply)
    p = retention.add_parser("restage", help="approve moving a bucket remembered in a permanent stage to another stage, "
                                             "record it (state table, audit ledger) and retag it")
    p.add_argument("--policy", required=True, metavar="PATH", help="stage policy (YAML)")
    p.add_argument("--bucket", required=True, metavar="B")
    p.add_argument("--to", required=True, metavar="STAGE", help="the stage the bucket moves to (a stage of the policy)")
    p.add_argument("--by", required=True, metavar="NAME", help="who approved the move (kept with it and in the findings)")
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (kept with the approval and in the findings)")
    p.add_argument("--state-table", required=True, metavar="T", help="the stack's StateTable (output StateTableName)")
    p.add_argument("--audit-table", required=True, metavar="T", help="the stack's AuditTable (output AuditTableName)")
    p.add_argument("--format", choices=["json", "table"], default="table")
    p.set_defaults(func=cmd_restage)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", required=True, metavar="PATH", help="stage policy (YAML)")
    p.add_argument("--bucket", action="append", metavar="B", help="only this bucket (repeatable; default: every bucket listed)")
    p.add_argument("--now", metavar="ISO", help="sweep as of this time (ISO 8601; default: the clock)")
    p.add_argument("--audit-bucket", action="append", default=[], metavar="B",
                   help="a bucket holding audit logs: its lifecycle is checked for tampering, never changed (repeatable)")
    p.add_argument("--state-table", metavar="T",
                   help="the stack's StateTable: honour each bucket's stage memory (a remembered permanent bucket retagged "
                        "perishable is held, never swept) and record it, as the function does")
    p.add_argument("--format", choices=["json", "table"], default="table")


def _err(message: str) -> int:
    print(f"stagewarden: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _now(text: str | None) -> datetime:
    if not text:
        return datetime.now(timezone.utc)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--now: {text!r} is not an ISO 8601 date or time (e.g. 2027-03-01 or 2027-03-01T00:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


class _Setup:
    """Policy, clients, keeper and the buckets to visit; every bad input raised as one line."""

    def __init__(self, args: argparse.Namespace):
        from keeper.ports import BucketReader, LockReader, StageMemory, VersionLister
        from keeper.reconcile import Keeper

        from stage_policy.loader import load

        self.policy = load(args.policy)
        self.now = _now(args.now)
        self._clients: dict[str, Any] = {}
        s3 = self.client("s3")
        memory = StageMemory(self.client("dynamodb"), args.state_table) if args.state_table else None
        self.keeper = Keeper(self.policy, BucketReader(s3), VersionLister(s3), LockReader(s3), self.now, tuple(args.audit_bucket),
                             memory=memory)
        if args.bucket:
            for bucket in args.bucket:
                try:
                    s3.head_bucket(Bucket=bucket)
                except Exception as exc:
                    raise LookupError(f"--bucket {bucket}: {_aws(exc)}") from None
            self.buckets = list(dict.fromkeys(args.bucket))
        else:
            self.buckets = sorted(self.keeper.reader.names())

    def client(self, service: str) -> Any:
        import boto3

        if service not in self._clients:
            self._clients[service] = boto3.client(service)
        return self._clients[service]


def _aws(exc: BaseException) -> str:
    from stage_policy.errors import describe

    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    if code in ("404", "NoSuchBucket"):
        return "no such bucket"
    if code in ("403", "AccessDenied"):
        return "access denied"
    return describe(exc)


def _setup(args: argparse.Namespace) -> _Setup | int:
    from botocore.exceptions import BotoCoreError, ClientError

    from stage_policy.loader import PolicyError

    try:
        return _Setup(args)
    except PolicyError as exc:
        more = f" (and {len(exc.problems) - 1} more; see `stagewarden policy validate`)" if len(exc.problems) > 1 else ""
        return _err(exc.lines()[0] + more)
    except (ValueError, LookupError) as exc:
        return _err(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return _err(f"cannot read the buckets: {_aws(exc)}")


# ------------------------------------------------------------------ plan
def cmd_plan(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from stage_policy.executor import effective_mode

    setup = _setup(args)
    if isinstance(setup, int):
        return setup
    keeper, policy = setup.keeper, setup.policy
    cap = policy.safety.max_deletions_per_run
    try:
        for bucket in setup.buckets:
            row = _plan_row(keeper, bucket, cap, effective_mode)
            print(json.dumps(row, default=str) if args.format == "json" else _plan_table(row))
    except (BotoCoreError, ClientError) as exc:
        return _err(f"cannot read bucket {bucket}: {_aws(exc)}")
    return EXIT_OK


def _plan_row(keeper: Any, bucket: str, cap: int, effective_mode: Any) -> dict[str, Any]:
    from keeper.plan import lifecycle_diff

    view = keeper.view(bucket)
    row: dict[str, Any] = {"bucket": bucket, "stage": view.stage, "mapped_by": view.match.detail, "audit_bucket": view.audit,
                           "as_of": keeper.now.isoformat()}
    if view.audit or view.retention is None:
        row["mode"] = None
    else:
        row["mode"] = effective_mode(keeper.policy, view.stage, "enforce")
        diff = lifecycle_diff(view.retention, view.config.rules, keeper.policy.safety.min_retention_days)
        row.update({"required_rules": diff.required, "actual_rules": diff.actual, "drifted": diff.drifted,
                    "diff": diff.as_dict(), "desired_rules": diff.desired if diff.drifted else None,
                    "versioning": view.config.versioning, "object_lock": keeper.lock_state(view.config).lock_enabled})
    row["findings"] = [{"rule": d.finding.rule, "severity": d.finding.severity, "summary": d.finding.summary,
                        "would": [a.describe() for a in d.actions]} for d in keeper.reconcile(view) if d.finding is not None]
    if keeper.sweepable(view):
        sweep, _, _ = keeper.plan_sweep(view, "dry_run", cap=10**12)
        t = sweep.tally
        markers = sum(1 for e in sweep.report if e.marker)
        row["versions"] = {"examined": t.entries_seen, "keys": t.keys_seen, "due": t.due, "due_versions": t.due - markers,
                           "due_delete_markers": markers, "next_run_deletes": min(t.due, cap), "max_deletions_per_run": cap,
                           "kept_past_retention": t.kept, "delete_markers_to_place": t.hidden, "sample_keys": t.sample}
    elif view.stage is not None and view.retention is not None and view.retention.permanent:
        row["versions"] = {"due": 0, "note": "permanent stage: never swept"}
    return row


def _rule_text(rule: dict[str, Any]) -> str:
    from keeper.plan import is_managed, rule_prefix

    parts = [f"{rule.get('ID') or '(no ID)'}", f"prefix {rule_prefix(rule)!r}" if rule_prefix(rule) else "every key"]
    exp, nve = rule.get("Expiration") or {}, rule.get("NoncurrentVersionExpiration") or {}
    if exp.get("Days") is not None:
        parts.append(f"expire after {exp['Days']}d")
    if exp.get("Date") is not None:
        parts.append(f"expire on {exp['Date']}")
    if exp.get("ExpiredObjectDeleteMarker"):
        parts.append("remove expired delete markers")
    if nve.get("NoncurrentDays") is not None:
        parts.append(f"old versions after {nve['NoncurrentDays']}d")
    if rule.get("AbortIncompleteMultipartUpload"):
        parts.append(f"abort uploads after {rule['AbortIncompleteMultipartUpload'].get('DaysAfterInitiation')}d")
    if rule.get("Transitions") or rule.get("NoncurrentVersionTransitions"):
        parts.append("transitions")
    if rule.get("Status") != "Enabled":
        parts.append(f"({str(rule.get('Status')).lower()})")
    return ("" if is_managed(rule) else "[owner] ") + ", ".join(parts)


def _plan_table(row: dict[str, Any]) -> str:
    head = f"{row['bucket']}: "
    if row["audit_bucket"]:
        head += "audit-log bucket (lifecycle watched for tampering, never changed)"
    elif row["stage"] is None:
        return head + f"unmanaged ({row['mapped_by']})"
    else:
        head += f"stage {row['stage']} ({row['mapped_by']}), mode {row['mode']}"
    lines = [head]
    if "required_rules" in row:
        lines.append(f"  lifecycle: {'DRIFTED' if row['drifted'] else 'at policy'}")
        lines += ["    required: " + _rule_text(r) for r in row["required_rules"]] or ["    required: none (permanent)"]
        lines += ["    actual:   " + _rule_text(r) for r in row["actual_rules"]] or ["    actual:   none"]
        diff = row["diff"]
        for label in ("missing", "extra"):
            if diff[label]:
                lines.append(f"    {label}: {', '.join(diff[label])}")
        for change in diff["changed"]:
            fields = "; ".join(f"{f['field']} {f['actual']} -> {f['required']}" for f in change["fields"])
            lines.append(f"    changed: {change['id']}: {fields}")
        for conflict in diff["conflicts"]:
            lines.append(f"    conflict [{conflict['severity']}]: {conflict['rule']} {conflict['problem']}")
    versions = row.get("versions")
    if versions and "examined" in versions:
        kept = ", ".join(f"{n} {why}" for why, n in sorted(versions["kept_past_retention"].items())) or "none"
        lines.append(f"  versions: {versions['due']} due ({versions['due_versions']} versions, {versions['due_delete_markers']} "
                     f"delete markers) of {versions['examined']} examined in {versions['keys']} keys; next run deletes "
                     f"{versions['next_run_deletes']} (cap {versions['max_deletions_per_run']}); kept past retention: {kept}")
    elif versions:
        lines.append(f"  versions: {versions['note']}")
    for f in row["findings"]:
        lines.append(f"  finding [{f['severity']}] {f['rule']}: {f['summary']}")
    return "\n".join(lines)


# ------------------------------------------------------------------ apply
def cmd_apply(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from stage_policy.executor import ActionFailed, Executor, settle

    setup = _setup(args)
    if isinstance(setup, int):
        return setup
    executor = Executor(setup.client, setup.policy, "enforce")  # the operator is the deployer: the policy's modes decide
    findings: list[Any] = []
    failed = False
    if args.now:
        print(f"stagewarden: sweeping as of {setup.now.isoformat()}", file=sys.stderr)
    try:
        settle(setup.keeper.run(setup.buckets, executor, sweep=True), executor, findings.append)
    except ActionFailed:
        failed = True
    except (BotoCoreError, ClientError) as exc:
        return _err(f"cannot reconcile: {_aws(exc)}")
    for f in findings:
        if args.format == "json":
            print(f.to_json())
        else:
            print(f"{f.severity.upper():<8} {f.rule:<30} {f.resource.split(':::')[-1]}: {f.summary}")
            print(f"{'':<8} action: {f.action}")
    done = sum(1 for o in executor.outcomes if o.status == "done")
    spent = setup.policy.safety.max_deletions_per_run - executor.remaining("deletions")
    print(f"stagewarden: {len(setup.buckets)} bucket(s), {len(findings)} finding(s), {done} action(s) done, "
          f"{spent} version(s) and delete marker(s) deleted, {sum(1 for o in executor.outcomes if o.status == 'failed')} "
          "action(s) failed", file=sys.stderr)
    return EXIT_FINDINGS if failed else EXIT_OK


# ------------------------------------------------------------------ restage
def cmd_restage(args: argparse.Namespace) -> int:
    """Approve (state table), record (audit ledger) and carry out (stage tag) one bucket's move to ``--to``.

    The approval names exactly one move (from the remembered stage to ``--to``) and lapses after
    :data:`APPROVAL_HOURS`; the retention function consumes it when it sees the tag (``retention.restaged``).
    """
    from datetime import timedelta

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
    from keeper.actions import ApproveRestage, RetagStage
    from keeper.ports import Remembered, StageMemory
    from keeper.reconcile import kept_forever

    from stage_policy.actions import Decision
    from stage_policy.executor import AuditLedger, Executor
    from stage_policy.loader import PolicyError, load
    from stage_policy.mapping import stage_for_bucket

    try:
        policy = load(args.policy)
    except PolicyError as exc:
        return _err(exc.lines()[0])
    if args.to not in policy.stages:
        return _err(f"--to {args.to!r}: no such stage in the policy (stages: {', '.join(policy.stages)})")
    by, reason = args.by.strip(), " ".join(args.reason.split())
    if not by or not reason:
        return _err("--by and --reason must not be empty: the approval names who and why")
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        return clients.setdefault(service, boto3.client(service))

    now = datetime.now(timezone.utc)
    store = StageMemory(client("dynamodb"), args.state_table)
    try:
        client("s3").head_bucket(Bucket=args.bucket)
        memory = store.get(args.bucket)
        tags = {t["Key"]: t["Value"] for t in _tag_set(client("s3"), args.bucket)}
        operator = client("sts").get_caller_identity()["Arn"]
    except (BotoCoreError, ClientError) as exc:
        return _err(f"--bucket {args.bucket}: {_aws(exc)}")
    current = stage_for_bucket(policy, args.bucket, tags).stage
    origin = memory.stage if memory is not None else current
    held = origin is not None and origin in policy.stages and kept_forever(policy.stages[origin].retention)
    approval = Remembered(origin or args.to, since=memory.since if memory else now.isoformat(), by=memory.by if memory else None,
                          approved_to=args.to, approved_by=by, approved_reason=reason[:1000], approved_operator=operator,
                          approved_at=now.isoformat(), approved_until=(now + timedelta(hours=APPROVAL_HOURS)).isoformat())
    actions: list[Any] = [ApproveRestage(args.bucket, memory=approval, store=store, why="operator's restage")] if held else []
    actions.append(RetagStage(args.bucket, key=policy.resources.tag_key, value=args.to))
    executor = Executor(client, policy, "enforce", AuditLedger(client("dynamodb"), args.audit_table, "stagewarden-cli"))
    outcomes = executor.act(Decision(None, actions, args.to))
    failed = [o for o in outcomes if o.status == "failed"]
    result = {"bucket": args.bucket, "from": origin, "to": args.to, "held": held, "approved_by": by, "reason": reason,
              "operator": operator, "approved_until": approval.approved_until if held else None,
              "outcomes": [{"action": o.kind, "status": o.status, "detail": o.detail} for o in outcomes]}
    if args.format == "json":
        print(json.dumps(result))
    else:
        for o in outcomes:
            print(f"{o.status:<8} {o.detail}")
        if held and not failed:
            print(f"{args.bucket}: the retention function moves it to {args.to} on the tag's event (or the daily run) and "
                  f"reports retention.restaged; the approval lapses at {approval.approved_until}")
        elif not held:
            print(f"{args.bucket}: not remembered in a permanent stage (now {current or 'unmanaged'}): no approval was needed")
    if failed:
        print(f"stagewarden: {len(failed)} action(s) failed; nothing moves until the tag is set (the approval lapses at "
              f"{approval.approved_until})", file=sys.stderr)
        return EXIT_FINDINGS
    return EXIT_OK


def _tag_set(s3: Any, bucket: str) -> list[dict[str, str]]:
    from stage_policy.errors import is_code

    try:
        return s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])
    except Exception as exc:
        if is_code(exc, "NoSuchTagSet"):
            return []
        raise
