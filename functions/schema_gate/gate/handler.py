"""SchemaGateFunction: S3 'Object Created' events from SQS, each object version validated once against its contract."""

from __future__ import annotations

from functools import cache, partial
from typing import TYPE_CHECKING, Any, Callable

from aws_lambda_powertools.utilities.typing import LambdaContext
from gate.actions import Promote, Quarantine, TagValidation, WriteReport
from gate.pipeline import ObjectRef, Reads, decide
from gate.ports import Baselines, ObjectStore, ReplaySafety, S3RangeReader

from stage_policy.events import OBJECT_CREATED, parse_eventbridge
from stage_policy.executor import AuditLedger, Executor, settle
from stage_policy.observability import logger, metrics, tracer
from stage_policy.publish import FindingPublisher
from stage_policy.runtime import Runtime
from stage_policy.store import PolicyStore
from stage_policy.tags import BucketTags

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from stage_policy.model import Policy

#: Everything this function calls AWS through; tests/template holds its IAM policy to exactly their permissions.
USES: tuple[type, ...] = (ObjectStore, S3RangeReader, Baselines, WriteReport, TagValidation, Promote, Quarantine,
                          Executor, AuditLedger, FindingPublisher, PolicyStore, BucketTags, ReplaySafety)

rt = Runtime()


@cache
def reads() -> Reads:
    objects = ObjectStore(rt.clients("s3"))
    return Reads(objects, Baselines(objects.get_json), rt.bucket_tags)


def record_handler(record: SQSRecord, policy: Policy, executor: Executor, publish: Callable[..., Any]) -> dict[str, Any]:
    ref = ObjectRef.of(parse_eventbridge(record.body, (OBJECT_CREATED,)))  # malformed: EventError fails this record only
    ran: list[bool] = []

    def work() -> dict[str, Any]:
        ran.append(True)
        verdict = decide(ref, policy, reads(), rt.settings.gate_role_arn, logger)
        start = len(executor.outcomes)
        findings = settle(verdict.decisions, executor, publish)
        return {**verdict.summary, "actions": [o.detail for o in executor.outcomes[start:]], "findings": [f.rule for f in findings]}

    result = rt.once(ref.replay_key(), work)  # a redelivered event returns the first run's result
    name = "ObjectsReplayed" if not ran else "ObjectsValidated" if "passed" in result else "ObjectsSkipped"
    metrics.add_metric(name=name, unit="Count", value=1)
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt.register_context(context)
    policy = rt.policy()  # unusable at a cold start: PolicyError, nothing is acted on (PolicyGuard alerts)
    handler = partial(record_handler, policy=policy, executor=rt.executor(policy), publish=rt.publish(policy))
    return rt.process_sqs(event, handler, context)
