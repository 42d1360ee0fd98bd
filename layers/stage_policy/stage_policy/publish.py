"""The one way findings leave a function: SNS, with attributes subscriptions can filter on.

Honours the policy's ``alerts`` section:

* ``min_severity``: findings below it are not published (the caller logs them);
* ``dedup_window_minutes``: one alert per incident (same ``dedup_key``) per window;
  repeats only bump ``count`` and ``last_seen`` in the state table;
* an **escalation** (a repeat at a higher severity than any published for the incident)
  is published at once, and only once per severity level (a conditional write decides
  which of two racing repeats publishes);
* an **outcome change** (a repeat whose remediation succeeded where the published one
  failed, or the reverse) is published too, once per change: a containment that failed
  and then worked on the record's retry is reported as working.

A publish that fails undoes what it counted, so the retry of the record alerts (a
failed alert never counts as sent). A message above SNS's 256 KB limit is sent with its
large evidence values replaced by a note of their size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

from stage_policy import keys
from stage_policy.errors import is_code
from stage_policy.findings import SEVERITY_ORDER, Finding, at_least

if TYPE_CHECKING:
    from stage_policy.model import Alerts

#: SNS takes 256 KiB for the message and its attributes together; the subject and attributes fit in the rest.
MAX_MESSAGE_BYTES = 250 * 1024
#: An evidence value whose JSON is longer than this is the first thing left out of an oversized message.
LARGE_VALUE_BYTES = 4096


@dataclass(frozen=True)
class PublishResult:
    published: bool
    message_id: str | None
    count: int
    reason: str = ""


class FindingPublisher:
    """Publishes findings to the alerts topic. Takes its boto3 clients in the constructor."""

    #: IAM actions this port uses (KMS because the topic is encrypted; GetItem for the :class:`Outbox`).
    permissions = ("sns:Publish", "kms:GenerateDataKey", "kms:Decrypt", "dynamodb:UpdateItem", "dynamodb:GetItem")

    def __init__(self, sns_client: Any, topic_arn: str, dynamodb_client: Any = None, state_table: str | None = None,
                 on_finding: Callable[[Finding], None] | None = None):
        """``on_finding`` sees every finding handed to :meth:`publish`, sent or not (the handlers' metric)."""
        if not topic_arn:
            raise ValueError("alerts topic ARN is empty (set STAGEWARDEN_ALERTS_TOPIC_ARN)")
        self._sns = sns_client
        self._topic_arn = topic_arn
        self._ddb = dynamodb_client
        self._table = state_table
        self._on_finding = on_finding

    @staticmethod
    def attributes(finding: Finding) -> dict[str, dict[str, str]]:
        attrs = {
            "severity": finding.severity,
            "rule": finding.rule,
            "stage": finding.stage or "unmanaged",
            "schema_version": finding.schema_version,
        }
        return {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}

    def publish(self, finding: Finding, alerts: Alerts | None = None) -> PublishResult:
        if self._on_finding is not None:
            self._on_finding(finding)
        min_severity = alerts.min_severity if alerts is not None else "low"
        window = timedelta(minutes=alerts.dedup_window_minutes if alerts is not None else 24 * 60)
        if not at_least(finding.severity, min_severity):
            return PublishResult(False, None, 0, f"below alerts.min_severity ({min_severity})")
        count, reason, undo = 1, "new incident", None
        if self._ddb is not None and self._table:
            count, reason, undo = self._record(finding, window)
            if not reason:
                return PublishResult(False, None, count, "repeat inside alerts.dedup_window_minutes")
        finding.count = count
        if reason.startswith("escalated"):
            finding.evidence["escalated"] = reason
        elif reason.startswith("remediation"):
            finding.evidence["outcome_changed"] = reason
        subject = f"[{finding.severity.upper()}] {finding.rule} {finding.stage or ''}".strip()[:100]
        try:
            response = self._sns.publish(
                TopicArn=self._topic_arn,
                Message=_fitted(finding),
                Subject=subject,
                MessageAttributes=self.attributes(finding),
            )
        except Exception:
            if undo is not None:  # not sent: the retry must find the incident (or the escalation) still to alert
                self._ddb.update_item(TableName=self._table, Key=keys.alert_dedup(finding.dedup_key), **undo)
            raise
        return PublishResult(True, response["MessageId"], count, reason)

    def _record(self, finding: Finding, window: timedelta, again: bool = True) -> tuple[int, str, dict[str, Any] | None]:
        """Count this occurrence. Returns (count in window, why to publish, how to undo the "published" mark);
        an empty reason means suppress."""
        seen = finding.last_seen or finding.first_seen
        now = int(seen.timestamp())
        expires = int((seen + window).timestamp())
        rank = SEVERITY_ORDER[finding.severity]
        key = keys.alert_dedup(finding.dedup_key)
        outcome = finding.evidence.get("outcome") if finding.evidence.get("outcome") in ("failed", "done") else None
        names = {"#count": "count", "#rule": "rule", "#top": "top_severity"}
        values = {":now": {"N": str(now)}, ":exp": {"N": str(expires)}, ":one": {"N": "1"},
                  ":rule": {"S": finding.rule}, ":rank": {"N": str(rank)}}
        set_outcome = ""
        if outcome:
            names["#out"] = "outcome"
            values[":out"] = {"S": outcome}
            set_outcome = ", #out = if_not_exists(#out, :out)"
        try:
            old = self._ddb.update_item(
                TableName=self._table, Key=key,
                UpdateExpression="SET first_seen = if_not_exists(first_seen, :now), last_seen = :now, "
                "expires_at = if_not_exists(expires_at, :exp), #rule = :rule, #top = if_not_exists(#top, :rank)"
                f"{set_outcome} ADD #count :one",
                ConditionExpression="attribute_not_exists(expires_at) OR expires_at > :now",
                ExpressionAttributeNames=names, ExpressionAttributeValues=values, ReturnValues="ALL_OLD",
            ).get("Attributes")
        except Exception as exc:
            if not is_code(exc, "ConditionalCheckFailedException"):
                raise
            # the previous incident's window is over (TTL deletion lags): this is a new incident,
            # unless a racing repeat has just started it (then this one is a repeat of that)
            try:
                self._ddb.update_item(
                    TableName=self._table, Key=key,
                    UpdateExpression="SET first_seen = :now, last_seen = :now, expires_at = :exp, #rule = :rule, "
                    f"#top = :rank, #count = :one{set_outcome.replace('if_not_exists(#out, :out)', ':out')}",
                    ConditionExpression="attribute_not_exists(expires_at) OR expires_at <= :now",
                    ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                )
            except Exception as exc:
                if not again or not is_code(exc, "ConditionalCheckFailedException"):
                    raise
                return self._record(finding, window, again=False)
            return 1, "new incident (previous window over)", _undo_new(now)
        if not old:
            return 1, "new incident", _undo_new(now)
        count = int(old.get("count", {}).get("N", "0")) + 1
        top = int(old.get("top_severity", {}).get("N", str(rank)))
        if rank <= top:
            before = old.get("outcome", {}).get("S")
            if outcome and before and before != outcome:
                return self._outcome_changed(key, count, before, outcome)
            return count, "", None
        try:  # exactly one of racing repeats publishes the escalation
            self._ddb.update_item(
                TableName=self._table, Key=key, UpdateExpression="SET #top = :rank",
                ConditionExpression="#top < :rank", ExpressionAttributeNames={"#top": "top_severity"},
                ExpressionAttributeValues={":rank": {"N": str(rank)}},
            )
        except Exception as exc:
            if not is_code(exc, "ConditionalCheckFailedException"):
                raise
            return count, "", None
        previous = next(name for name, value in SEVERITY_ORDER.items() if value == top)
        undo = {"UpdateExpression": "SET #top = :top", "ConditionExpression": "#top = :rank",
                "ExpressionAttributeNames": {"#top": "top_severity"},
                "ExpressionAttributeValues": {":top": {"N": str(top)}, ":rank": {"N": str(rank)}}}
        return count, f"escalated from {previous} to {finding.severity}", undo


    def _outcome_changed(self, key: dict[str, Any], count: int, before: str, after: str) -> tuple[int, str, dict[str, Any] | None]:
        """A repeat whose remediation outcome differs from the one published: exactly one racing repeat publishes it."""
        names = {"#out": "outcome"}
        try:
            self._ddb.update_item(
                TableName=self._table, Key=key, UpdateExpression="SET #out = :after", ConditionExpression="#out = :before",
                ExpressionAttributeNames=names, ExpressionAttributeValues={":after": {"S": after}, ":before": {"S": before}},
            )
        except Exception as exc:
            if not is_code(exc, "ConditionalCheckFailedException"):
                raise
            return count, "", None
        undo = {"UpdateExpression": "SET #out = :before", "ConditionExpression": "#out = :after",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {":after": {"S": after}, ":before": {"S": before}}}
        word = "succeeded" if after == "done" else "failed"
        return count, f"remediation {word} (the published alert said {'it failed' if before == 'failed' else 'it succeeded'})", undo


def _undo_new(now: int) -> dict[str, Any]:
    """Undoes a new incident's mark: its window ends now, so the next occurrence is a new incident again."""
    return {"UpdateExpression": "SET expires_at = :over", "ExpressionAttributeValues": {":over": {"N": str(now)}}}


def _fitted(finding: Finding) -> str:
    """The finding as JSON within SNS's limit: large evidence values give way to a note of their size."""
    message = finding.to_json()
    size = len(message.encode())
    if size <= MAX_MESSAGE_BYTES:
        return message
    from pydantic_core import to_json

    kept: dict[str, Any] = {}
    for name, value in finding.evidence.items():
        length = len(to_json(value, fallback=str))
        kept[name] = value if length <= LARGE_VALUE_BYTES else f"(left out of the alert: {length} bytes of JSON)"
    kept["truncated"] = f"the finding was {size} bytes, above the SNS limit; large evidence values were left out"
    finding.evidence = kept
    message = finding.to_json()
    if len(message.encode()) > MAX_MESSAGE_BYTES:
        finding.evidence = {"truncated": f"the finding was {size} bytes, above the SNS limit; its evidence was left out"}
        message = finding.to_json()
    return message


class Outbox:
    """Findings whose actions were carried out but whose publish failed, kept in the state table until published.

    Without it such a finding is lost: the record is retried, but the retry finds the drift
    already reverted (the trust policy restored, the lifecycle put back) and decides nothing.
    One item per function holds the pending findings as a string set (``ADD``/``DELETE`` are
    atomic); the function's next run publishes them first (:meth:`flush`).
    """

    permissions = ("dynamodb:GetItem", "dynamodb:UpdateItem")

    def __init__(self, ddb: Any, table: str, function: str):
        self._ddb, self._table, self._key = ddb, table, keys.outbox(function)

    def keep(self, finding: Finding) -> None:
        self._ddb.update_item(TableName=self._table, Key=self._key, UpdateExpression="ADD pending :f",
                              ExpressionAttributeValues={":f": {"SS": [_fitted(finding)]}})

    def flush(self, publish: Any) -> int:
        """Publish every pending finding (each removed once published); raises if one cannot be published."""
        item = self._ddb.get_item(TableName=self._table, Key=self._key, ConsistentRead=True).get("Item") or {}
        pending = (item.get("pending") or {}).get("SS", [])
        for text in pending:
            publish(Finding.model_validate_json(text))
            self._ddb.update_item(TableName=self._table, Key=self._key, UpdateExpression="DELETE pending :f",
                                  ExpressionAttributeValues={":f": {"SS": [text]}})
        return len(pending)


class Publish:
    """``publish(finding)`` under the policy's ``alerts`` section, with :meth:`keep` for a finding that must not be lost."""

    def __init__(self, publisher: FindingPublisher, alerts: Alerts | None, outbox: Outbox | None = None):
        self._publisher, self._alerts, self._outbox = publisher, alerts, outbox

    def __call__(self, finding: Finding) -> PublishResult:
        return self._publisher.publish(finding, self._alerts)

    def keep(self, finding: Finding) -> None:
        if self._outbox is not None:
            self._outbox.keep(finding)


def publish_or_keep(publish: Any, finding: Finding, outcomes: list[Any]) -> Any:
    """Publish; if that fails after an action changed something, keep the finding for the next run, then raise.

    A retry of the record cannot bring the finding back once its action is done (there is
    nothing left to detect), so it goes to the :class:`Outbox`. A finding whose actions did
    nothing is simply decided again by the retry.
    """
    try:
        return publish(finding)
    except Exception:
        keep = getattr(publish, "keep", None)
        if keep is not None and any(getattr(o, "status", None) == "done" for o in outcomes):
            keep(finding)
        raise
