"""SchemaGate: validates objects landing in stage buckets against their contract; quarantines or promotes."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pipeline import Ports, handle
from ports import Ledger, ObjectStore, Quarantine

from stage_policy.observability import logger, metrics, tracer
from stage_policy.publish import FindingPublisher
from stage_policy.settings import Settings
from stage_policy.store import PolicyStore
from stage_policy.tags import BucketTags

processor = BatchProcessor(event_type=EventType.SQS)


@cache
def services() -> tuple[Settings, PolicyStore, Ports]:
    settings = Settings.from_env()
    s3, ddb = boto3.client("s3"), boto3.client("dynamodb")
    ports = Ports(
        objects=ObjectStore(s3),
        quarantine=Quarantine(s3, settings.gate_role_arn),
        ledger=Ledger(ddb, settings.state_table),
        publish=FindingPublisher(boto3.client("sns"), settings.alerts_topic_arn, ddb, settings.state_table).publish,
        bucket_tags=BucketTags(s3),
    )
    return settings, PolicyStore(s3), ports


@cache
def baseline(location: str) -> dict[str, Any] | None:
    """Drift baselines change rarely: read once per container; a missing one disables drift (logged)."""
    try:
        return services()[2].objects.get_json(location)
    except Exception as exc:  # noqa: BLE001 - reported, drift is then not evaluated
        logger.warning("drift baseline unreadable; drift not evaluated", extra={"baseline": location, "error": str(exc)})
        return None


def record_handler(record: SQSRecord) -> dict[str, Any]:
    try:
        event = json.loads(record.body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"record body: not JSON ({exc.msg})") from None
    settings, store, ports = services()
    result = handle(event, store.load(settings.policy_location), ports, baseline, logger)
    metrics.add_metric(name="ObjectsValidated" if "passed" in result else "ObjectsSkipped", unit="Count", value=1)
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
