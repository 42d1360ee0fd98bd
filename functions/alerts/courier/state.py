"""The delivery state of each incident, in the state table (``keys.alert_delivery``; TTL on ``expires_at``).

Every operation is one conditional DynamoDB write (:meth:`observe`: one transaction of the
count and the message's marker), so concurrent deliveries (SNS redelivers; several functions
publish; Lambda runs batches in parallel) agree on one post per incident per window: :meth:`claim` lets exactly one of them post a given severity, :meth:`posted`
records it, :meth:`release` lets a retry claim again after a failed post.
"""

from __future__ import annotations

from typing import Any

from courier.incident import Incident

from stage_policy import keys
from stage_policy.errors import is_code
from stage_policy.runtime import REPLAY_WINDOW_SECONDS


def _n(item: dict[str, Any], name: str, default: int | None = 0) -> int | None:
    value = item.get(name)
    return int(value["N"]) if value else default


def decode(dedup_key: str, item: dict[str, Any]) -> Incident:
    return Incident(
        dedup_key=dedup_key, count=_n(item, "count") or 0, window_start=_n(item, "window_start") or 0,
        window_end=_n(item, "window_end") or 0, last_seen=_n(item, "last_seen") or 0, top_rank=_n(item, "top_rank") or 0,
        posted_rank=_n(item, "posted_rank", None), posted_count=_n(item, "posted_count") or 0,
        claim_rank=_n(item, "claim_rank", None), claim_until=_n(item, "claim_until") or 0,
        total=_n(item, "total") or 0, since=_n(item, "since") or 0, previous_held=_n(item, "previous_held") or 0,
    )


def _num(value: int) -> dict[str, str]:
    return {"N": str(value)}


class DeliveryState:
    """Takes its boto3 DynamoDB client in the constructor."""

    permissions = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")

    def __init__(self, ddb: Any, table: str):
        self._ddb, self._table = ddb, table

    def observe(self, dedup_key: str, rank: int, now: int, window_seconds: int, message: str) -> Incident:
        """Count one occurrence, once per ``message`` (the delivered message's hash): in the open window, or in a new
        one when the last has closed.

        The count and a ``counted#<message>`` marker beside it are one transaction: a retry of a message already
        counted (its replay record's completion write failed after the count) finds the marker and counts nothing.
        """
        key = keys.alert_delivery(dedup_key)
        marker = self._marker(dedup_key, message, now)
        for _ in range(5):
            update = {
                "TableName": self._table, "Key": key,
                "UpdateExpression": "SET window_start = if_not_exists(window_start, :now), "
                "window_end = if_not_exists(window_end, :end), since = if_not_exists(since, :now), "
                "last_seen = :now, top_rank = if_not_exists(top_rank, :rank), expires_at = if_not_exists(expires_at, :exp) "
                "ADD #count :one, #total :one",
                "ConditionExpression": "attribute_not_exists(window_end) OR window_end > :now",
                "ExpressionAttributeNames": {"#count": "count", "#total": "total"},
                "ExpressionAttributeValues": {":now": _num(now), ":end": _num(now + window_seconds), ":one": _num(1),
                                              ":rank": _num(rank), ":exp": _num(now + 2 * window_seconds)},
            }
            counted = self._with_marker({"Update": update}, marker)
            if counted is None:
                return self.current(dedup_key)  # this message was counted before
            if not counted:  # the window has closed: open a new one (counted in it), unless another delivery did first
                if self._open_window(key, rank, now, window_seconds, marker) is not False:
                    return self.current(dedup_key)
                continue  # another delivery opened the new window first: count in it
            incident = self.current(dedup_key)
            if rank > incident.top_rank:
                self._raise_top(key, rank)
                incident = self.current(dedup_key)
            return incident
        raise RuntimeError(f"delivery state of {dedup_key}: too much contention")

    def _marker(self, dedup_key: str, message: str, now: int) -> dict[str, Any]:
        item = {**keys.alert_counted(dedup_key, message), keys.EXPIRES_AT: _num(now + REPLAY_WINDOW_SECONDS)}
        return {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}

    def _with_marker(self, write: dict[str, Any], marker: dict[str, Any]) -> bool | None:
        """``write`` and the message's marker in one transaction: True if both happened, None if the marker was there
        (the message was counted before: neither happened), False if ``write``'s own condition failed."""
        try:
            self._ddb.transact_write_items(TransactItems=[write, marker])
        except Exception as exc:
            if not is_code(exc, "TransactionCanceledException"):
                raise
            reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
            if len(reasons) == 2 and reasons[1] == "ConditionalCheckFailed":
                return None
            if len(reasons) == 2 and reasons[0] == "ConditionalCheckFailed":
                return False
            raise
        return True

    def _open_window(self, key: dict[str, Any], rank: int, now: int, window_seconds: int,
                     marker: dict[str, Any]) -> bool | None:
        old = self._ddb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item") or {}
        old_end = _n(old, "window_end")
        if old_end and old_end > now:
            return False  # someone else opened it
        held = max(0, (_n(old, "count") or 0) - (_n(old, "posted_count") or 0))
        item = {**key, "window_start": _num(now), "window_end": _num(now + window_seconds), "last_seen": _num(now),
                "top_rank": _num(rank), "count": _num(1), "posted_count": _num(0), "previous_held": _num(held),
                "total": _num((_n(old, "total") or 0) + 1), "since": _num(_n(old, "since") or now),
                "expires_at": _num(now + 2 * window_seconds)}
        return self._with_marker({"Put": {"TableName": self._table, "Item": item,
                                          "ConditionExpression": "attribute_not_exists(window_end) OR window_end = :old",
                                          "ExpressionAttributeValues": {":old": _num(old_end or 0)}}}, marker)

    def _raise_top(self, key: dict[str, Any], rank: int) -> None:
        try:
            self._ddb.update_item(TableName=self._table, Key=key, UpdateExpression="SET top_rank = :rank",
                                  ConditionExpression="top_rank < :rank", ExpressionAttributeValues={":rank": _num(rank)})
        except Exception as exc:
            if not is_code(exc, "ConditionalCheckFailedException"):
                raise

    def current(self, dedup_key: str) -> Incident:
        item = self._ddb.get_item(TableName=self._table, Key=keys.alert_delivery(dedup_key), ConsistentRead=True).get("Item")
        if not item:
            raise RuntimeError(f"delivery state of {dedup_key} is missing (expired by TTL?)")
        return decode(dedup_key, item)

    def claim(self, incident: Incident, rank: int, now: int, lease_seconds: int) -> bool:
        """Exactly one delivery may post ``rank`` for this window; a higher rank may take over a lower one's claim."""
        try:
            self._ddb.update_item(
                TableName=self._table, Key=keys.alert_delivery(incident.dedup_key),
                UpdateExpression="SET claim_rank = :rank, claim_until = :until",
                ConditionExpression="window_end = :end AND (attribute_not_exists(posted_rank) OR posted_rank < :rank) "
                "AND (attribute_not_exists(claim_until) OR claim_until < :now OR claim_rank < :rank)",
                ExpressionAttributeValues={":rank": _num(rank), ":until": _num(now + lease_seconds), ":now": _num(now),
                                           ":end": _num(incident.window_end)},
            )
        except Exception as exc:
            if not is_code(exc, "ConditionalCheckFailedException"):
                raise
            return False
        return True

    def posted(self, incident: Incident, rank: int) -> None:
        try:
            self._ddb.update_item(
                TableName=self._table, Key=keys.alert_delivery(incident.dedup_key),
                UpdateExpression="SET posted_rank = :rank, posted_count = #count REMOVE claim_rank, claim_until",
                ConditionExpression="attribute_not_exists(posted_rank) OR posted_rank < :rank",
                ExpressionAttributeNames={"#count": "count"}, ExpressionAttributeValues={":rank": _num(rank)},
            )
        except Exception as exc:
            if not is_code(exc, "ConditionalCheckFailedException"):
                raise

    def release(self, incident: Incident, rank: int) -> None:
        """Give up a claim after a failed post, so the retry (or another delivery) may post."""
        try:
            self._ddb.update_item(TableName=self._table, Key=keys.alert_delivery(incident.dedup_key),
                                  UpdateExpression="REMOVE claim_rank, claim_until", ConditionExpression="claim_rank = :rank",
                                  ExpressionAttributeValues={":rank": _num(rank)})
        except Exception as exc:
            if not is_code(exc, "ConditionalCheckFailedException"):
                raise
