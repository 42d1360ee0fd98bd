"""BreakGlassFunction: CloudTrail events on break-glass roles (from SQS), grant expiries and the 5-minute sweep (Scheduler)."""

from __future__ import annotations

from dataclasses import asdict
from functools import cache, partial
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from warden.actions import ACTIONS
from warden.engine import Scheduling, Warden, wall_clock
from warden.inputs import EXPIRE, BreakGlassSettings, parse_trigger
from warden.ports import GrantStore, RoleReader, TrailReader

from stage_policy.events import API_CALL, SIGN_IN, parse_eventbridge
from stage_policy.executor import AuditLedger, Executor
from stage_policy.model import Policy
from stage_policy.observability import logger, metrics, tracer
from stage_policy.publish import FindingPublisher
from stage_policy.runtime import ReplaySafety, Runtime
from stage_policy.store import PolicyStore

#: Every class whose IAM ``permissions`` this function needs; tests/template holds its policy to exactly their union.
USES: tuple[type, ...] = (GrantStore, RoleReader, TrailReader, *ACTIONS, Executor, AuditLedger, FindingPublisher, PolicyStore,
                          ReplaySafety)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

rt = Runtime()


@cache
def settings() -> BreakGlassSettings:
    return BreakGlassSettings.from_env()


@cache
def roles() -> RoleReader:
    return RoleReader(rt.clients("iam"))  # tags cached per container


def build(policy: Policy, executor: Executor, context: LambdaContext) -> Warden:
    s = settings()
    scheduling = Scheduling(s.schedule_group, context.invoked_function_arn, s.scheduler_role_arn, s.dead_letter_arn)
    return Warden(policy, GrantStore(rt.clients("dynamodb"), rt.settings.state_table), roles(), TrailReader(rt.clients("cloudtrail")),
                  executor, rt.publish(policy), scheduling, s.stack_name)


def record_handler(record: SQSRecord, warden: Warden) -> dict[str, Any]:
    # malformed, or a field break glass reads of another shape: this record fails (dead-lettered), the rest go on
    event = parse_eventbridge(record.body, (API_CALL, SIGN_IN), cloudtrail_shape=True)
    detail = event.detail.model_dump()
    return rt.once(f"api#{event.detail.eventID or event.id}", lambda: warden.on_event(detail, wall_clock()))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt.register_context(context)
    policy = rt.policy()  # unusable at a cold start: nothing is acted on; the IAM deadlines still hold, PolicyGuard alerts
    warden = build(policy, rt.executor(policy), context)
    if isinstance(event, dict) and "Records" in event:
        return rt.process_sqs(event, partial(record_handler, warden=warden), context)
    trigger = parse_trigger(event)  # EventError: the invocation fails, is retried, then dead-lettered
    if trigger.stagewarden == EXPIRE:
        assert trigger.grant_id is not None
        run = partial(warden.expire, trigger.grant_id, wall_clock(), f"schedule {trigger.execution or '(by hand)'}", trigger.scheduled)
        result = rt.once(f"expire#{trigger.grant_id}#{trigger.execution}", run) if trigger.execution else run()
        metrics.add_metric(name="GrantsExpired", unit="Count", value=int(result.get("result") == "expired"))
        return result
    report = warden.sweep(wall_clock(), via="sweep schedule")  # SweepFailed after every step ran: retried, then dead-lettered
    metrics.add_metric(name="GrantsExpired", unit="Count", value=len(report.expired))
    return asdict(report)
