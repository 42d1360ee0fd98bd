"""The function's three triggers, each from its typed event to the keeper and back.

* **Bucket events** (CloudTrail management events through EventBridge): PutBucketLifecycle,
  DeleteBucketLifecycle, PutBucketVersioning, PutBucketTagging, DeleteBucketTagging, CreateBucket and the posture events
  (DeletePublicAccessBlock, PutPublicAccessBlock, DeleteBucketEncryption, PutBucketEncryption,
  PutBucketPolicy, DeleteBucketPolicy, PutBucketLogging, PutBucketAcl) re-reconcile that one
  bucket (lifecycle and posture) within seconds. No sweep: listing a bucket on every lifecycle change would be costly.
* **The daily schedule** reconciles and sweeps every bucket the account lists.
* **The AWS Config rule** answers COMPLIANT / NON_COMPLIANT / NOT_APPLICABLE per bucket with an
  annotation. For the lifecycle it reads only (the other two paths act and alert, so one incident is
  one alert); the ``posture.*`` gaps it finds are then brought to baseline and alerted (an exposed
  bucket is fixed by whichever path sees it first; once fixed, the other paths find nothing).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from keeper.ports import Evaluations
from keeper.reconcile import Keeper

from stage_policy.errors import describe
from stage_policy.events import API_CALL, EventError, parse_config_invocation, parse_eventbridge

BUCKET_EVENTS = ("PutBucketLifecycle", "DeleteBucketLifecycle", "PutBucketVersioning", "PutBucketTagging", "DeleteBucketTagging",
                 "CreateBucket")
#: Changes that can weaken a bucket's posture (keeper.posture): the bucket is re-reconciled at once.
POSTURE_EVENTS = ("DeletePublicAccessBlock", "PutPublicAccessBlock", "DeleteBucketEncryption", "PutBucketEncryption",
                  "PutBucketPolicy", "DeleteBucketPolicy", "PutBucketLogging", "PutBucketAcl")
EVENTS = BUCKET_EVENTS + POSTURE_EVENTS
GONE = ("ResourceDeleted", "ResourceDeletedNotRecorded", "ResourceNotRecorded")


def is_config_invocation(event: Any) -> bool:
    return isinstance(event, dict) and "resultToken" in event and "invokingEvent" in event


def parse(event: Any) -> Any:
    """The EventBridge event (API call or schedule); EventError names what is wrong."""
    from stage_policy.events import SCHEDULED

    return parse_eventbridge(event, (API_CALL, SCHEDULED), part="event")


def as_of(event_time: Any) -> datetime:
    """The sweep's "now": the event's time, never later than the clock (a crafted future time deletes nothing extra)."""
    clock = datetime.now(timezone.utc)
    if isinstance(event_time, datetime):
        when = event_time if event_time.tzinfo else event_time.replace(tzinfo=timezone.utc)
        return min(when, clock)
    return clock


def bucket_event(event: Any) -> tuple[str, str, str | None]:
    """(bucket, event name, principal ARN) of a CloudTrail bucket event."""
    detail = event.detail.model_dump()
    name = detail["eventName"]
    if name not in EVENTS:
        raise EventError("event.detail.eventName", f"unsupported {name[:80]!r} (expected one of {', '.join(EVENTS)})")
    params = detail.get("requestParameters")
    bucket = params.get("bucketName") if isinstance(params, dict) else None
    if not isinstance(bucket, str) or not bucket:
        raise EventError("event.detail.requestParameters.bucketName", "is required")
    identity = detail.get("userIdentity")
    principal = identity.get("arn") if isinstance(identity, dict) else None  # odd identity: the bucket is still re-read
    error = detail.get("errorCode")
    if error:
        # S3 refused the call: the bucket is still re-read (cheap, and the refusal may hide an earlier change), but
        # the caller changed nothing, so no finding names them as its cause and no trigger claims the change happened
        return bucket, f"{name} (refused: {str(error)[:60]})", None
    return bucket, name, principal if isinstance(principal, str) else None


def on_bucket_event(event: Any, keeper: Keeper, executor: Any, settle: Callable[[Any], list]) -> dict[str, Any]:
    bucket, name, principal = bucket_event(event)
    findings = settle(keeper.run([bucket], executor, sweep=False, principal=principal, trigger=name))
    return {"trigger": name, "bucket": bucket, "findings": [f.dedup_key for f in findings]}


def on_schedule(keeper: Keeper, executor: Any, settle: Callable[[Any], list], out_of_time: Callable[[], bool]) -> dict[str, Any]:
    buckets = keeper.reader.names()
    findings = settle(keeper.run(buckets, executor, sweep=True, out_of_time=out_of_time))
    return {"trigger": "schedule", "buckets": len(buckets), "as_of": keeper.now.isoformat(),
            "findings": [f.dedup_key for f in findings],
            "outcomes": {s: sum(1 for o in executor.outcomes if o.status == s) for s in sorted({o.status for o in executor.outcomes})}}


def _timestamp(value: Any, part: str) -> str:
    """A time in the invoking event (Config writes ISO 8601) as given, absent: now; anything else is an EventError naming it
    (passed on unchecked, a list or a word failed PutEvaluations' parameter validation after the buckets were read)."""
    if value is None or value == "":
        return datetime.now(timezone.utc).isoformat()
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
    raise EventError(part, f"not an ISO 8601 time ({type(value).__name__})")


def on_config_rule(event: Any, keeper: Keeper, evaluations: Evaluations, log: Any,
                   remediate: Callable[[list[Any]], list] | None = None) -> dict[str, Any]:
    """Evaluations first (PutEvaluations); then, with ``remediate``, the posture decisions are settled."""
    model, invoking = parse_config_invocation(event)
    kind = invoking["messageType"]
    results: list[dict[str, Any]] = []
    posture: list[Any] = []

    def evaluation(bucket: str, compliance: str, annotation: str, when: Any) -> dict[str, Any]:
        return {"ComplianceResourceType": "AWS::S3::Bucket", "ComplianceResourceId": bucket, "ComplianceType": compliance,
                "Annotation": annotation[:256], "OrderingTimestamp": when}

    def judge(bucket: str, when: Any) -> None:
        try:
            compliance, annotation, decisions = keeper.assess(bucket)
        except Exception as exc:  # noqa: BLE001 - unreadable is not compliant (fail closed), and the rest go on
            log.warning("bucket unreadable", extra={"bucket": bucket, "error": describe(exc)})
            compliance, annotation, decisions = "NON_COMPLIANT", f"could not be read: {describe(exc)}", []
        results.append(evaluation(bucket, compliance, annotation, when))
        posture.extend(d for d in decisions if d.finding is not None and d.finding.rule.startswith("posture."))

    if kind == "ScheduledNotification":
        when = _timestamp(invoking.get("notificationCreationTime"), "event.invokingEvent.notificationCreationTime")
        for bucket in keeper.reader.names():
            judge(bucket, when)
    elif kind in ("ConfigurationItemChangeNotification", "OversizedConfigurationItemChangeNotification"):
        item = invoking.get("configurationItem") or invoking.get("configurationItemSummary")
        if not isinstance(item, dict):
            raise EventError("event.invokingEvent.configurationItem", "is required")
        bucket = item.get("resourceName") or item.get("resourceId")
        if not isinstance(bucket, str) or not bucket:
            raise EventError("event.invokingEvent.configurationItem.resourceId", "is required")
        when = _timestamp(item.get("configurationItemCaptureTime"), "event.invokingEvent.configurationItem.configurationItemCaptureTime")
        if item.get("resourceType") != "AWS::S3::Bucket" or model.eventLeftScope or item.get("configurationItemStatus") in GONE:
            results.append(evaluation(bucket, "NOT_APPLICABLE", "not an existing S3 bucket in scope", when))
        else:
            judge(bucket, when)
    else:
        raise EventError("event.invokingEvent.messageType", f"unsupported {kind[:80]!r}")
    failed = evaluations.put(results, model.resultToken)
    remediated = remediate(posture) if remediate is not None and posture else []  # a failed action fails the invocation
    return {"trigger": kind, "evaluations": [{k: r[k] for k in ("ComplianceResourceId", "ComplianceType", "Annotation")}
                                             for r in results], "failed": len(failed), "test_mode": model.resultToken == "TESTMODE",
            "posture_findings": [f.dedup_key for f in remediated]}
