"""The one way findings leave a function: SNS, with attributes subscriptions can filter on.

Optional de-duplication keeps it to one alert per incident: the first finding with a
``dedup_key`` is published; repeats inside the window only bump ``count`` and
``last_seen`` in the state table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from stage_policy.findings import Finding


@dataclass(frozen=True)
class PublishResult:
    published: bool
    message_id: str | None
    count: int


class FindingPublisher:
    """Publishes findings to the alerts topic. Takes its boto3 clients in the constructor."""

    #: IAM actions this port uses (the template grants exactly these; KMS because the topic is encrypted).
    permissions = ("sns:Publish", "kms:GenerateDataKey", "kms:Decrypt", "dynamodb:UpdateItem")

    def __init__(self, sns_client: Any, topic_arn: str, dynamodb_client: Any = None, state_table: str | None = None,
                 dedup_window: timedelta = timedelta(hours=24)):
        if not topic_arn:
            raise ValueError("alerts topic ARN is empty (set STAGEWARDEN_ALERTS_TOPIC_ARN)")
        self._sns = sns_client
        self._topic_arn = topic_arn
        self._ddb = dynamodb_client
        self._table = state_table
        self._window = dedup_window

    @staticmethod
    def attributes(finding: Finding) -> dict[str, dict[str, str]]:
        attrs = {
            "severity": finding.severity,
            "rule": finding.rule,
            "stage": finding.stage or "unmanaged",
            "schema_version": finding.schema_version,
        }
        return {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}

    def publish(self, finding: Finding) -> PublishResult:
        count = 1
        if self._ddb is not None and self._table:
            count = self._record(finding)
            if count > 1:
                return PublishResult(False, None, count)
        subject = f"[{finding.severity.upper()}] {finding.rule} {finding.stage or ''}".strip()[:100]
        response = self._sns.publish(
            TopicArn=self._topic_arn,
            Message=finding.to_json(),
            Subject=subject,
            MessageAttributes=self.attributes(finding),
        )
        return PublishResult(True, response["MessageId"], count)

    def _record(self, finding: Finding) -> int:
        """Count this occurrence; returns the count within the current window (1 = new incident)."""
        seen = finding.last_seen or finding.first_seen
        now = int(seen.timestamp())
        expires = int((seen + self._window).timestamp())
        key = {"pk": {"S": f"dedup#{finding.dedup_key}"}, "sk": {"S": "alert"}}
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET first_seen = if_not_exists(first_seen, :now), last_seen = :now, "
                "expires_at = if_not_exists(expires_at, :exp), #rule = :rule ADD #count :one",
                ConditionExpression="attribute_not_exists(expires_at) OR expires_at > :now",
                ExpressionAttributeNames={"#count": "count", "#rule": "rule"},
                ExpressionAttributeValues={
                    ":now": {"N": str(now)}, ":exp": {"N": str(expires)}, ":one": {"N": "1"},
                    ":rule": {"S": finding.rule},
                },
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:  # botocore ClientError, matched by code to keep botocore out of the import path
            if getattr(exc, "response", {}).get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            # the previous incident's window is over (TTL deletion lags): this is a new incident
            response = self._ddb.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET first_seen = :now, last_seen = :now, expires_at = :exp, #rule = :rule, #count = :one",
                ExpressionAttributeNames={"#count": "count", "#rule": "rule"},
                ExpressionAttributeValues={
                    ":now": {"N": str(now)}, ":exp": {"N": str(expires)}, ":one": {"N": "1"},
                    ":rule": {"S": finding.rule},
                },
                ReturnValues="ALL_NEW",
            )
        return int(response["Attributes"]["count"]["N"])
