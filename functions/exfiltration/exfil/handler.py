"""Exfiltration detection: CloudTrail log files and management events, from SQS, with partial-batch failure."""

from __future__ import annotations

from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from exfil.actions import ACTIONS
from exfil.deployment import Deployment
from exfil.pipeline import Ports, decide, replay_key
from exfil.ports import DynamoWindowStore, GrantLookup, LogFileSource

from stage_policy.events import API_CALL, OBJECT_CREATED, parse_eventbridge
from stage_policy.executor import Executor, settle
from stage_policy.model import Policy
from stage_policy.observability import logger, metrics, tracer
from stage_policy.publish import FindingPublisher
from stage_policy.runtime import ReplaySafety, Runtime
from stage_policy.store import PolicyStore
from stage_policy.tags import BucketTags

#: Every class whose ``permissions`` this function needs: the template test holds its IAM policy to their union.
USES = (LogFileSource, DynamoWindowStore, GrantLookup, *ACTIONS, Executor, FindingPublisher, PolicyStore, BucketTags, ReplaySafety)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


class ExfilRuntime(Runtime):
    @cached_property
    def deployment(self) -> Deployment:
        return Deployment.from_env()  # STAGEWARDEN_ACCOUNT_ID, _STACK_NAME, _TRAIL_BUCKET, read once


rt = ExfilRuntime()


def record_handler(record: SQSRecord, policy: Policy, executor: Executor) -> list[str]:
    event = parse_eventbridge(record.body, (OBJECT_CREATED, API_CALL))  # malformed: this record fails, the rest go on
    key = replay_key(event)
    if key is None:
        return []  # not a CloudTrail log file (digests, other objects)
    ports = Ports(LogFileSource(rt.clients("s3")), DynamoWindowStore(rt.clients("dynamodb"), rt.settings.state_table),
                  GrantLookup(rt.clients("dynamodb"), rt.settings.state_table), rt.bucket_tags, rt.deployment)

    def work() -> list[str]:
        findings = settle(decide(event, policy, ports, logger), executor, rt.publish(policy))
        metrics.add_metric(name="Findings", unit="Count", value=len(findings))
        return [f.dedup_key for f in findings]

    return rt.once(key, work)  # a redelivered event neither re-counts, re-contains nor re-alerts


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    policy = rt.policy()  # unusable at a cold start: the whole batch fails and is retried; PolicyGuard alerts
    rt.register_context(context)
    handler = partial(record_handler, policy=policy, executor=rt.executor(policy))
    return rt.process_sqs(event, handler, context)
