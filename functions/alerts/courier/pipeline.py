"""From one SQS record to the deliveries it calls for: parse the finding, count it, decide, act.

AWS is reached only through the ports handed in. The decision is the layer's
:class:`~stage_policy.actions.Decision` of typed delivery actions, carried out by the one
executor (which ledgers each) like every other function's actions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from courier import asff, render
from courier.actions import ImportToSecurityHub, PostToSlack, SlackPorts
from courier.incident import Incident, held_back, post_reason
from courier.settings import AlertSettings

from stage_policy.actions import Decision
from stage_policy.events import EventError, load_json
from stage_policy.findings import SEVERITY_ORDER, Finding
from stage_policy.model import Alerts


@dataclass(frozen=True)
class Run:
    """What one invocation delivers under: the policy's alerts section and where the function runs."""

    alerts: Alerts
    settings: AlertSettings
    account: str
    partition: str
    deadline: float  # monotonic


def parse_finding(body: Any) -> Finding:
    """The finding in a raw-delivered SNS message (the record body is the finding's JSON)."""
    from pydantic import ValidationError

    data = load_json(body)
    if isinstance(data, dict) and data.get("Type") == "Notification" and "Message" in data:
        raise EventError("record body", "an SNS envelope: the AlertQueue subscription must use raw message delivery")
    if not isinstance(data, dict):
        raise EventError("record body", f"not a finding (a JSON {type(data).__name__}, not an object)")
    try:
        return Finding.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise EventError(f"record body.{where}" if where else "record body", err["msg"]) from None


def replay_key(body: Any) -> str:
    """The same message delivered twice (SNS redelivery, an SQS retry) is counted once."""
    raw = body if isinstance(body, bytes) else str(body).encode()
    return f"alert#{hashlib.sha256(raw).hexdigest()}"


def check_secret(alerts: Alerts, settings: AlertSettings) -> str:
    """Why the policy's Slack secret cannot be used here ('' when it can)."""
    secret = alerts.slack_webhook_secret
    if secret is not None and not settings.secret_allowed(secret):
        granted = settings.slack_webhook_secret or "none (SlackWebhookSecretName is empty)"
        return (f"alerts.slack_webhook_secret names {secret!r}, but this deployment may read only {granted}: "
                "set the template parameter SlackWebhookSecretName to the same secret")
    return ""


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def source_url(finding: Finding, region: str) -> str | None:
    for label, url in render.console_links(finding, region):
        if label.startswith("CloudTrail"):
            return url
    return None


def outcome_change(finding: Finding) -> str | None:
    """The new remediation outcome ("done" or "failed") when the publisher published this repeat for its change."""
    outcome = finding.evidence.get("outcome")
    return outcome if finding.evidence.get("outcome_changed") and outcome in ("done", "failed") else None


def decide(finding: Finding, incident: Incident, run: Run, slack: SlackPorts | None, now: int,
           posting: Incident | None = None) -> Decision:
    """The deliveries this finding calls for: Security Hub (every occurrence updates it), Slack (once per incident).

    ``posting`` is the delivery record the Slack post claims: the incident's own, or, for a repeat published because
    its remediation outcome changed, that outcome's (so the change is posted once although the incident was).
    """
    posting = posting or incident
    rank = SEVERITY_ORDER[finding.severity]
    actions: list[Any] = []
    region = run.settings.region
    if run.alerts.security_hub:
        top = max(rank, incident.top_rank)
        top_name = next(n for n, r in SEVERITY_ORDER.items() if r == top)
        item = asff.to_asff(finding, account=run.account, region=region, partition=run.partition, severity=top_name,
                            total=max(incident.total, 1), since=incident.since or None, last_seen=incident.last_seen or None,
                            source_url=source_url(finding, region))
        actions.append(ImportToSecurityHub(item["Id"], asff=item))
    secret, refused = run.alerts.slack_webhook_secret, check_secret(run.alerts, run.settings)
    reason = post_reason(posting, rank, now)
    if secret is not None and slack is not None and reason is not None:
        if finding.evidence.get("escalated") and reason == "new incident":
            reason = str(finding.evidence["escalated"])
        elif posting is not incident:
            reason = str(finding.evidence["outcome_changed"])
        delivery = render.Delivery(reason=reason, count=incident.count, held_back=held_back(incident),
                                   first_seen=_iso(incident.window_start), previous_window_held=incident.previous_held)
        actions.append(PostToSlack(finding.dedup_key, rank=rank, severity=finding.severity, secret_id=secret,
                                   payload=render.message(finding, delivery, region), incident=posting, ports=slack,
                                   now=now, deadline=run.deadline, refused=refused))
    return Decision(finding.model_copy(deep=True), actions, finding.stage, "alert")
