"""Alert delivery: findings from the alerts topic (AlertQueue, raw delivery) to Slack and Security Hub, partial-batch failure."""

from __future__ import annotations

import time
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from courier.actions import ACTIONS, SlackPorts, deadline_from
from courier.pipeline import Run, decide, outcome_change, parse_finding, replay_key
from courier.settings import AlertSettings
from courier.slack import SlackWebhook, WebhookSecret
from courier.state import DeliveryState

from stage_policy.executor import ActionFailed, Executor
from stage_policy.findings import SEVERITY_ORDER, at_least
from stage_policy.loader import PolicyError, loads
from stage_policy.observability import logger, metrics, tracer
from stage_policy.runtime import ReplaySafety, Runtime
from stage_policy.store import PolicyStore

#: Every class whose ``permissions`` this function needs: the template test holds its IAM policy to their union.
USES = (PolicyStore, DeliveryState, *ACTIONS, Executor, ReplaySafety)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


class Courier:
    """The alert function's ports, built lazily once per container (tests set their own)."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.clock = time.time

    @cached_property
    def settings(self) -> AlertSettings:
        return AlertSettings.from_env()

    @cached_property
    def state(self) -> DeliveryState:
        return DeliveryState(self.rt.clients("dynamodb"), self.rt.settings.state_table)

    @cached_property
    def slack(self) -> SlackPorts:
        return SlackPorts(WebhookSecret(self.rt.clients("secretsmanager"), self.settings.emulator), SlackWebhook(), self.state)

    def policy(self) -> Any:
        """The policy; unusable at a cold start, a fail-safe one: every severity, to the deployment's Slack secret only."""
        try:
            return self.rt.policy()
        except PolicyError as exc:
            logger.error("policy unusable: delivering every finding to the deployment's Slack secret only",
                         extra={"problems": exc.lines()[:5]})
            fallback = loads("framework: two-stage\n", "fail-safe")
            alerts = fallback.alerts.model_copy(update={"min_severity": "low", "security_hub": False,
                                                        "slack_webhook_secret": self.settings.slack_webhook_secret or None})
            return fallback.model_copy(update={"alerts": alerts})


rt = Runtime()
courier = Courier(rt)


def record_handler(record: SQSRecord, run: Run, executor: Executor) -> list[str]:
    finding = parse_finding(record.body)  # malformed: this record fails and ends in the DLQ; the rest go on
    if not at_least(finding.severity, run.alerts.min_severity):
        return [f"below alerts.min_severity ({run.alerts.min_severity})"]
    rank, now = SEVERITY_ORDER[finding.severity], int(courier.clock())
    window = run.alerts.dedup_window_minutes * 60
    message = replay_key(record.body)
    rt.once(message, lambda: courier.state.observe(finding.dedup_key, rank, now, window, message).count)
    incident = courier.state.current(finding.dedup_key)  # fresh, also when the count was a replay
    posting = incident
    if changed := outcome_change(finding):
        # the publisher published this repeat because its remediation outcome changed (once per change): Slack
        # hears of it once per outcome and window, on a delivery record of its own, while the count stays the incident's
        key = f"{finding.dedup_key}#outcome-{changed}"
        rt.once(message + "#outcome", lambda: courier.state.observe(key, rank, now, window, message).count)
        posting = courier.state.current(key)
    outcomes = executor.act(decide(finding, incident, run, courier.slack, now, posting=posting))
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise ActionFailed(failed)  # retried by SQS; after maxReceiveCount in the alert DLQ
    metrics.add_metric(name="Deliveries", unit="Count", value=len(outcomes))
    return [o.detail for o in outcomes]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    policy = courier.policy()
    rt.register_context(context)
    arn = getattr(context, "invoked_function_arn", "") or "arn:aws:lambda:::000000000000:function:local"
    run = Run(policy.alerts, courier.settings, arn.split(":")[4], arn.split(":")[1], deadline_from(context))
    handler = partial(record_handler, run=run, executor=rt.executor(policy))
    return rt.process_sqs(event, handler, context)  # partial-batch failure: one bad record fails alone
