"""PolicyGuard: validates the deployed policy hourly and whenever it changes; alerts when it is unusable.

Invoked directly by EventBridge (Scheduler and the policy bucket's "Object Created" rule), not
through SQS: a malformed event raises, Lambda retries the async invocation, then the event lands
in the function's dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from guard.checks import Assessment, assess
from stage_policy.events import OBJECT_CREATED, SCHEDULED, parse_eventbridge
from stage_policy.executor import settle
from stage_policy.loader import PolicyError
from stage_policy.model import Alerts
from stage_policy.observability import logger, metrics, tracer
from stage_policy.publish import FindingPublisher, PublishResult
from stage_policy.runtime import ReplaySafety, Runtime
from stage_policy.store import PolicyStore

#: Every class whose IAM ``permissions`` this function needs; the template grants exactly their union.
#: No executor: the guard never acts, it only reports.
USES: tuple[type, ...] = (PolicyStore, FindingPublisher, ReplaySafety)

rt = Runtime()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    parsed = parse_eventbridge(event, (SCHEDULED, OBJECT_CREATED), part="event")  # EventError: retried, then the DLQ
    rt.register_context(context)
    return rt.once(f"policy-guard#{parsed.id}", lambda: check(parsed.detail_type))


def check(trigger: str) -> dict[str, Any]:
    """Assess the policy document as it is now (not the store's cached last valid one) and report."""
    location = rt.settings.policy_location
    try:
        doc = rt.store.fetch(location)
        assessment = assess(doc.source, doc.version, doc.text)
    except PolicyError as exc:
        assessment = assess(location, None, None, fetch_error=exc)
    metrics.add_metric(name="PolicyValid" if assessment.valid else "PolicyInvalid", unit=MetricUnit.Count, value=1)
    result = assessment.as_dict() | {"trigger": trigger}
    sent = report(assessment)
    if assessment.valid:
        logger.info("policy valid", extra={"stages": assessment.stages, "version": assessment.version})
    else:
        logger.error("policy unusable", extra={"errors": assessment.errors, "published": [s.published for s in sent]})
    if sent:
        result["published"] = sent[0].published
    return result


def report(assessment: Assessment) -> list[PublishResult]:
    """Settle the guard's decision (a finding, never an action); returns what publishing did.

    A valid policy's ``alerts`` section governs anything published. An unusable policy is the
    one thing this function must still report, yet there is no policy to read ``alerts`` from:
    its finding is published with the defaults, ``Alerts()`` (every severity, 24-hour dedup).
    """
    sent: list[PublishResult] = []
    alerts = assessment.policy.alerts if assessment.policy is not None else Alerts()
    settle([assessment.decision()], None, lambda finding: sent.append(rt.publisher.publish(finding, alerts)))
    return sent
