"""Exfiltration detection: CloudTrail log files and management events, from SQS, with partial-batch failure."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pipeline import Ports, handle, parse_body
from ports import AuditLog, Containment, DynamoWindowStore, FileLedger, GrantLookup, LogFileSource

from stage_policy.observability import logger, metrics, tracer
from stage_policy.publish import FindingPublisher
from stage_policy.settings import Settings
from stage_policy.store import PolicyStore
from stage_policy.tags import BucketTags

processor = BatchProcessor(event_type=EventType.SQS)


@cache
def client(service: str) -> Any:
    """One boto3 client per service per container (creating one costs tens of milliseconds)."""
    return boto3.client(service)


@cache
def services() -> tuple[Settings, PolicyStore, FindingPublisher, BucketTags]:
    settings = Settings.from_env()
    publisher = FindingPublisher(client("sns"), settings.alerts_topic_arn, client("dynamodb"), settings.state_table)
    return settings, PolicyStore(client("s3")), publisher, BucketTags(client("s3"))


def ports_for(settings: Settings, publisher: FindingPublisher, tags: BucketTags, max_revocations: int) -> Ports:
    """Ports for one log file or event: per-run state (revocation cap, grants read) on cached clients."""
    ddb = client("dynamodb")
    return Ports(
        source=LogFileSource(client("s3")),
        windows=DynamoWindowStore(ddb, settings.state_table),
        ledger=FileLedger(ddb, settings.state_table),
        grants=GrantLookup(ddb, settings.state_table),
        containment=Containment(client, max_revocations),
        audit=AuditLog(ddb, settings.audit_table),
        publish=publisher.publish,
        bucket_tags=tags,
    )


def record_handler(record: SQSRecord) -> list[dict[str, Any]]:
    event = parse_body(record.body)  # malformed: this record fails (and reaches the DLQ), the rest go on
    settings, store, publisher, tags = services()
    policy = store.load(settings.policy_location)  # an unusable policy fails the record; PolicyGuard alerts on it
    findings = handle(event, policy, ports_for(settings, publisher, tags, policy.safety.max_revocations_per_run), logger)
    for finding in findings:
        metrics.add_metric(name="Findings", unit="Count", value=1)
    return [f.model_dump(mode="json") for f in findings]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
