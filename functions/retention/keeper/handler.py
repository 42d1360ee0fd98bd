"""RetentionFunction: bucket events, the daily schedule and the AWS Config rule, invoked directly (few events)."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from keeper.actions import ACTIONS, StageGuard
from keeper.paths import as_of, bucket_event, is_config_invocation, on_bucket_event, on_config_rule, on_schedule, parse
from keeper.ports import BucketReader, Evaluations, LockReader, StageMemory, SweepMarkers, VersionLister
from keeper.posture import ACTIONS as POSTURE_ACTIONS
from keeper.posture import AccountBlockReader, PostureReader
from keeper.reconcile import Keeper
from keeper.settings import RetentionSettings

from stage_policy.events import API_CALL
from stage_policy.executor import Executor, settle
from stage_policy.observability import logger, metrics, tracer
from stage_policy.publish import FindingPublisher
from stage_policy.runtime import ReplaySafety, Runtime
from stage_policy.store import PolicyStore

#: Every class whose ``permissions`` this function needs: the template test holds its IAM policy to their union.
USES = (BucketReader, VersionLister, LockReader, SweepMarkers, StageMemory, StageGuard, Evaluations, *ACTIONS, PostureReader, AccountBlockReader,
        *POSTURE_ACTIONS, Executor, FindingPublisher, PolicyStore, ReplaySafety)

rt = Runtime()


@cache
def settings() -> RetentionSettings:
    return RetentionSettings.from_env()


def keeper(policy: Any, now: Any, account: str | None = None) -> Keeper:
    """The keeper; with ``account``, the account-level public access block is read on the daily run too."""
    s3, ddb = rt.clients("s3"), rt.clients("dynamodb")
    return Keeper(policy, BucketReader(s3), VersionLister(s3), LockReader(s3), now, settings().audit_buckets,
                  SweepMarkers(ddb, rt.settings.state_table), logger, PostureReader(s3),
                  AccountBlockReader(rt.clients("s3control"), account) if account else None,
                  StageMemory(ddb, rt.settings.state_table))


def account_of(event: Any, context: Any) -> str | None:
    arn = getattr(context, "invoked_function_arn", None)
    if isinstance(arn, str) and arn.count(":") >= 4 and arn.split(":")[4].isdigit():
        return arn.split(":")[4]
    account = getattr(event, "account", None)
    return account if isinstance(account, str) and account.isdigit() else None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    policy = rt.policy()  # unusable at a cold start: the invocation fails and is retried; PolicyGuard alerts
    executor, publish = rt.executor(policy), rt.publish(policy)

    def act(decisions: Any) -> list:
        findings = settle(decisions, executor, publish)
        metrics.add_metric(name="Findings", unit="Count", value=len(findings))
        return findings

    if is_config_invocation(event):  # evaluations; then only the posture gaps are acted on and alerted
        return on_config_rule(event, keeper(policy, as_of(None)), Evaluations(rt.clients("config")), logger, act)
    parsed = parse(event)  # malformed: the invocation fails, is retried, then dead-lettered
    rt.register_context(context)
    work = keeper(policy, as_of(parsed.time), account_of(parsed, context))

    if parsed.detail_type == API_CALL:
        bucket_event(parsed)  # an unsupported or bucketless event: EventError before any write (a replay record included)
        return rt.once(f"api#{parsed.detail.eventID or parsed.id}", lambda: on_bucket_event(parsed, work, executor, act))
    margin_ms = settings().sweep_margin_seconds * 1000
    out_of_time = (lambda: context.get_remaining_time_in_millis() < margin_ms) if context is not None else (lambda: False)
    return rt.once(f"schedule#{parsed.id}", lambda: on_schedule(work, executor, act, out_of_time))
