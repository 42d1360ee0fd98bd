"""`stagewarden posture plan | apply`: each stage bucket against its stage's security baseline, from a terminal.

Runs against whatever boto3 is pointed at (``AWS_ENDPOINT_URL`` for the local emulator, else AWS
with the caller's credentials). ``plan`` only reads: per bucket the stage, the baseline, the
settings read and what would change. ``apply`` brings each managed bucket to its baseline once,
honouring each stage's mode (``dry_run`` stages are described, not changed) exactly as the
RetentionFunction does on its events and daily run; lifecycle and sweep stay with
``stagewarden retention``. Bad input is one line on stderr and exit 2 (:class:`UsageError`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stagewarden.usage import UsageError

EXIT_OK, EXIT_FAILED = 0, 1


def register(sub: Any) -> None:
    """Add ``posture plan`` and ``posture apply`` to the CLI's sub-commands."""
    posture = sub.add_parser("posture", help="stage bucket security baseline (encryption, public access, TLS, versioning, "
                                             "logging)").add_subparsers(dest="action", required=True)
    for name, func, text in (("plan", cmd_plan, "per bucket: baseline, settings read, what would change (reads only)"),
                             ("apply", cmd_apply, "bring each managed bucket to its baseline once, honouring each "
                                                  "stage's mode (exit 1 if an action failed)")):
        p = posture.add_parser(name, help=text)
        p.add_argument("--policy", required=True, metavar="PATH", help="stage policy (YAML)")
        p.add_argument("--bucket", action="append", metavar="B", help="only this bucket (repeatable; default: every bucket)")
        p.add_argument("--format", choices=["json", "table"], default="table")
        p.set_defaults(func=func)


def _aws(exc: BaseException) -> str:
    from stage_policy.errors import describe

    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    if code in ("404", "NoSuchBucket"):
        return "no such bucket"
    if code in ("403", "AccessDenied"):
        return "access denied"
    return describe(exc)


class _Setup:
    """Policy, clients, the keeper (posture read on) and the buckets to visit; bad input raised as UsageError."""

    def __init__(self, args: argparse.Namespace):
        from datetime import datetime, timezone

        from botocore.exceptions import BotoCoreError, ClientError
        from keeper.ports import BucketReader, LockReader, VersionLister
        from keeper.posture import AccountBlockReader, PostureReader
        from keeper.reconcile import Keeper

        from stage_policy.loader import PolicyError, load

        try:
            self.policy = load(args.policy)
        except PolicyError as exc:
            more = f" (and {len(exc.problems) - 1} more; see `stagewarden policy validate`)" if len(exc.problems) > 1 else ""
            raise UsageError(exc.lines()[0].removeprefix("stagewarden: ") + more) from None
        self._clients: dict[str, Any] = {}
        s3 = self.client("s3")
        try:
            account = self.client("sts").get_caller_identity()["Account"]
            self.buckets = list(dict.fromkeys(args.bucket)) if args.bucket else sorted(BucketReader(s3).names())
            for bucket in args.bucket or []:
                try:
                    s3.head_bucket(Bucket=bucket)
                except ClientError as exc:
                    raise UsageError(f"--bucket {bucket}: {_aws(exc)}") from None
        except (BotoCoreError, ClientError) as exc:
            raise UsageError(f"cannot read the buckets: {_aws(exc)}") from None
        self.keeper = Keeper(self.policy, BucketReader(s3), VersionLister(s3), LockReader(s3), datetime.now(timezone.utc),
                             posture=PostureReader(s3), account=AccountBlockReader(self.client("s3control"), account))

    def client(self, service: str) -> Any:
        import boto3

        from stagewarden.emulator import loopback_s3control

        if service not in self._clients:
            self._clients[service] = boto3.client(service)
            loopback_s3control(self._clients[service].meta.events)  # only rewrites <account>.127.0.0.1 (the emulator)
        return self._clients[service]


def _row(keeper: Any, bucket: str) -> dict[str, Any]:
    from stage_policy.executor import effective_mode

    view = keeper.view(bucket)
    baseline = keeper.policy.stages[view.stage].posture if view.stage and not view.audit else None
    row: dict[str, Any] = {"bucket": bucket, "stage": view.stage, "mapped_by": view.match.detail,
                           "mode": effective_mode(keeper.policy, view.stage, "enforce") if baseline else None,
                           "baseline": baseline.model_dump(mode="json") if baseline else None}
    if view.posture is not None:
        p = view.posture
        row["actual"] = {"encryption": p.encryption, "public_access_block": p.block, "policy": json.loads(p.policy) if p.policy else None,
                         "versioning": p.versioning,
                         "logging": p.logging if p.logging_read else "not read (no access_logging in the baseline)",
                         "object_lock": keeper.lock_state(view.config).lock_enabled}
    row["findings"] = [{"rule": d.finding.rule, "severity": d.finding.severity, "summary": d.finding.summary,
                        "before": d.finding.evidence.get("before"), "after": d.finding.evidence.get("after"),
                        "would": [a.describe() for a in d.actions]}
                       for d in keeper.reconcile_posture(view) if d.finding is not None]
    return row


def _table(row: dict[str, Any]) -> str:
    head = f"{row['bucket']}: "
    if row["stage"] is None:
        return head + f"unmanaged ({row['mapped_by']})"
    if row["baseline"] is None:
        return head + f"stage {row['stage']} has no posture section (not checked)"
    lines = [head + f"stage {row['stage']} ({row['mapped_by']}), mode {row['mode']}: "
             + ("at baseline" if not row["findings"] else f"{len(row['findings'])} drift(s)")]
    for f in row["findings"]:
        lines.append(f"  [{f['severity']}] {f['rule']}: {f['summary']}")
        lines.append(f"    before: {json.dumps(f['before'], default=str)}")
        lines.append(f"    after:  {json.dumps(f['after'], default=str)}")
        lines += [f"    would {w}" for w in f["would"]]
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    setup = _Setup(args)
    for bucket in setup.buckets:
        try:
            row = _row(setup.keeper, bucket)
        except (BotoCoreError, ClientError) as exc:
            raise UsageError(f"cannot read bucket {bucket}: {_aws(exc)}") from None
        print(json.dumps(row, default=str) if args.format == "json" else _table(row))
    for decision in setup.keeper.account_posture():
        f = decision.finding
        print(f.to_json() if args.format == "json" else f"account: [{f.severity}] {f.rule}: {f.summary}")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from stage_policy.executor import ActionFailed, Executor, settle

    setup = _Setup(args)
    keeper = setup.keeper
    executor = Executor(setup.client, setup.policy, "enforce")  # the operator is the deployer: the policy's modes decide
    findings: list[Any] = []
    failed = False

    def decisions() -> Any:
        yield from keeper.account_posture()
        for bucket in setup.buckets:
            yield from keeper.reconcile_posture(keeper.view(bucket))

    try:
        settle(decisions(), executor, findings.append)
    except ActionFailed:
        failed = True
    except (BotoCoreError, ClientError) as exc:
        raise UsageError(f"cannot bring the buckets to baseline: {_aws(exc)}") from None
    for f in findings:
        if args.format == "json":
            print(f.to_json())
        else:
            print(f"{f.severity.upper():<8} {f.rule:<30} {f.resource.split(':::')[-1]}: {f.summary}")
            print(f"{'':<8} action: {f.action}")
    statuses = [o.status for o in executor.outcomes]
    print(f"stagewarden: {len(setup.buckets)} bucket(s), {len(findings)} finding(s), {statuses.count('done')} action(s) done, "
          f"{statuses.count('dry_run')} described (dry run), {statuses.count('failed')} failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK
