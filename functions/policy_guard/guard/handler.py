"""PolicyGuard: validates the deployed policy hourly and whenever it changes; alerts when it is unusable."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from guard.checks import assess
from stage_policy.loader import PolicyError
from stage_policy.observability import logger, metrics, tracer
from stage_policy.publish import FindingPublisher
from stage_policy.settings import Settings
from stage_policy.store import PolicyStore


@cache
def ports() -> tuple[Settings, PolicyStore, FindingPublisher]:
    settings = Settings.from_env()
    publisher = FindingPublisher(boto3.client("sns"), settings.alerts_topic_arn, boto3.client("dynamodb"), settings.state_table)
    return settings, PolicyStore(boto3.client("s3")), publisher


def trigger_of(event: dict[str, Any]) -> str:
    """The event's kind, or ValueError naming the part that is wrong."""
    if not isinstance(event, dict) or "detail-type" not in event:
        raise ValueError("event: not an EventBridge event (no 'detail-type')")
    detail_type = EventBridgeEvent(event).detail_type
    if detail_type not in ("Scheduled Event", "Object Created"):
        raise ValueError(f"event.detail-type: unsupported {detail_type!r} (expected 'Scheduled Event' or 'Object Created')")
    return detail_type


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    trigger = trigger_of(event)
    settings, store, publisher = ports()
    try:
        doc = store.fetch(settings.policy_location)
        outcome = assess(doc.source, doc.version, doc.text)
    except PolicyError as exc:
        outcome = assess(settings.policy_location, None, None, fetch_error=exc)
    metrics.add_metric(name="PolicyValid" if outcome.valid else "PolicyInvalid", unit=MetricUnit.Count, value=1)
    result = outcome.as_dict() | {"trigger": trigger}
    if outcome.finding is not None:
        sent = publisher.publish(outcome.finding)
        logger.error("policy unusable", extra={"errors": outcome.errors, "published": sent.published})
        result["published"] = sent.published
    else:
        logger.info("policy valid", extra={"stages": outcome.stages, "version": outcome.version})
    return result
