"""The AWS calls of the exfiltration function, one small class per concern (boto3 clients injected)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, BinaryIO

from exfil.engine import WindowState, merge_state

from stage_policy import keys
from stage_policy.errors import is_code


class LogFileSource:
    permissions = ("s3:GetObject",)

    def __init__(self, s3: Any):
        self._s3 = s3

    def open(self, bucket: str, key: str) -> BinaryIO:
        """The object's body as a stream: the reader pulls 1 MiB at a time, nothing is loaded whole."""
        return self._s3.get_object(Bucket=bucket, Key=key)["Body"]


class DynamoWindowStore:
    """Sliding windows in the state table: one item and one conditional write per (stage, principal) per file."""

    permissions = ("dynamodb:GetItem", "dynamodb:PutItem")

    def __init__(self, ddb: Any, table: str, retries: int = 5):
        self._ddb, self._table, self._retries = ddb, table, retries
        self.writes = 0

    def merge(self, stage: str, principal: str, minutes: dict[int, list[int]], families: dict[str, int],
              keep_after: int) -> WindowState:
        key = keys.exfil_window(stage, principal)
        for _ in range(self._retries):
            item = self._ddb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
            old, version = _decode(item)
            state = merge_state(old, minutes, families, keep_after)
            newest = max(state.minutes, default=keep_after)
            body = {
                "minutes": {"S": json.dumps({str(m): v for m, v in state.minutes.items()}, separators=(",", ":"))},
                "families": {"S": json.dumps(state.families, separators=(",", ":"))},
                "first_seen": {"N": str(state.first_seen)},
                "version": {"N": str(version + 1)},
                # windows are perishable; learned client families live for a learning period past the last read
                "expires_at": {"N": str((newest + 400 * 1440) * 60)},
            }
            try:
                self.writes += 1
                self._ddb.put_item(
                    TableName=self._table, Item={**key, **body},
                    ConditionExpression="attribute_not_exists(pk) OR version = :v",
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                )
                return state
            except Exception as exc:
                if not is_code(exc, "ConditionalCheckFailedException"):
                    raise
        raise RuntimeError(f"window {stage}/{principal}: too much contention ({self._retries} conflicting writes)")


def _decode(item: dict[str, Any] | None) -> tuple[WindowState | None, int]:
    if not item:
        return None, 0
    minutes = {int(m): v for m, v in json.loads(item["minutes"]["S"]).items()}
    state = WindowState(minutes, json.loads(item["families"]["S"]), int(item["first_seen"]["N"]))
    return state, int(item["version"]["N"])


class GrantLookup:
    """Is there an active break-glass grant for this principal (items written by the break-glass function)?"""

    permissions = ("dynamodb:GetItem",)

    def __init__(self, ddb: Any, table: str):
        self._ddb, self._table = ddb, table
        self._cache: dict[str, int] = {}

    def active(self, principal: str, when: str) -> bool:
        role = principal.rsplit("/", 1)[-1]
        if role not in self._cache:
            item = self._ddb.get_item(TableName=self._table, Key=keys.breakglass_grant(role)).get("Item")
            self._cache[role] = int(item["expires_at"]["N"]) if item else 0
        try:
            at = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return False
        return at < self._cache[role]
