"""The two deliveries, as the layer's typed actions: the executor carries them out and ledgers each.

Neither is a remediation (``remediation = False``): alerts go out in ``dry_run`` as in
``enforce``. A failure is recorded and fails the SQS record, which is retried and finally
lands in the alert dead-letter queue: nothing is dropped silently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from courier.incident import Incident
from courier.slack import REDACTOR, DeliveryError, SlackWebhook, WebhookSecret
from courier.state import DeliveryState

from stage_policy.actions import Action, Clients


@dataclass(frozen=True)
class ImportToSecurityHub(Action):
    """Create or update (same ``Id``) one ASFF finding through BatchImportFindings."""

    kind: ClassVar[str] = "security-hub-import"
    permissions: ClassVar[tuple[str, ...]] = ("securityhub:BatchImportFindings",)
    remediation: ClassVar[bool] = False

    asff: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def describe(self) -> str:
        return f"import {self.target} into Security Hub (count {self.asff['ProductFields']['stagewarden/count']}, " \
               f"severity {self.asff['Severity']['Label']})"

    def identity(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.target, self.asff["UpdatedAt"], self.asff["ProductFields"]["stagewarden/count"])

    def apply(self, clients: Clients) -> str:
        result = clients("securityhub").batch_import_findings(Findings=[self.asff])
        if result.get("FailedCount"):
            failed = (result.get("FailedFindings") or [{}])[0]
            raise DeliveryError(f"Security Hub refused {self.target}: {failed.get('ErrorCode')}: {failed.get('ErrorMessage', '')[:200]}")
        return f"imported {self.target} into Security Hub (count {self.asff['ProductFields']['stagewarden/count']}, " \
               f"severity {self.asff['Severity']['Label']})"


@dataclass(frozen=True)
class PostToSlack(Action):
    """Post the incident once per window and severity: claim, post, record; a failed post releases the claim."""

    kind: ClassVar[str] = "slack-post"
    permissions: ClassVar[tuple[str, ...]] = WebhookSecret.permissions + DeliveryState.permissions
    remediation: ClassVar[bool] = False

    rank: int = 0
    severity: str = ""
    secret_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    incident: Incident | None = field(default=None, compare=False, hash=False)
    ports: Any = field(default=None, compare=False, hash=False, repr=False)  # SlackPorts
    now: int = 0
    deadline: float = 0.0
    #: Set when the post cannot be made as configured (a secret this deployment may not read): fails, so it is retried.
    refused: str = ""

    def describe(self) -> str:
        return f"post {self.target} ({self.severity}) to Slack"

    def identity(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.target, self.rank, id(self))

    def apply(self, clients: Clients) -> str:
        if self.refused:
            raise DeliveryError(self.refused)
        ports: SlackPorts = self.ports
        incident = self.incident
        assert incident is not None
        hooks = ports.secret.webhooks(self.secret_id)
        url = hooks.url_for(self.severity)
        if url is None:
            return f"not posted: the Slack webhook secret {self.secret_id!r} has no URL for {self.severity} (nor a default)"
        if not ports.state.claim(incident, self.rank, self.now, ports.lease_seconds):
            return "held back: another delivery holds or has made this post"
        try:
            budget = ports.webhook.post(url, self.payload, self.deadline)
        except DeliveryError:
            ports.state.release(incident, self.rank)
            raise
        except Exception as exc:  # noqa: BLE001 - never let an unexpected error carry the URL out
            ports.state.release(incident, self.rank)
            raise DeliveryError(f"posting to Slack failed: {type(exc).__name__}: {REDACTOR.redact(str(exc))[:200]}") from None
        ports.state.posted(incident, self.rank)
        retried = f" after {budget.attempts} attempts (answers {', '.join(map(str, budget.statuses))})" if budget.attempts > 1 else ""
        return f"posted {self.target} ({self.severity}) to Slack channel {hooks.channel_for(self.severity)}{retried}"


@dataclass
class SlackPorts:
    secret: WebhookSecret
    webhook: SlackWebhook
    state: DeliveryState
    lease_seconds: int = 120


ACTIONS: tuple[type[Action], ...] = (ImportToSecurityHub, PostToSlack)


def deadline_from(context: Any, reserve_seconds: float = 5.0) -> float:
    """The monotonic time by which retries inside this invocation must stop (Lambda's remaining time less a reserve)."""
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None and hasattr(context, "get_remaining_time_in_millis") else 60.0
    return time.monotonic() + max(0.0, remaining - reserve_seconds)
