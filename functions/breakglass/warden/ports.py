"""The AWS reads and the state of the break-glass function, one small class per concern (clients injected).

Writes to IAM and Scheduler are actions (:mod:`warden.actions`), carried out by the layer's
executor; these ports only read AWS and keep Stagewarden's own records in the state table.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime
from typing import Any, Iterator
from urllib.parse import unquote

from warden.records import MAX_SESSIONS, Grant, Review, RoleRecord, TimeBoxedException, dump, epoch, load
from warden.rules import RoleFacts, iso

from stage_policy import keys
from stage_policy.errors import is_code


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


class Conflict(RuntimeError):
    """A conditional write lost: another grant holds the role, or another run closed the grant first."""


class GrantStore:
    """Grants, role baselines, reviews and exceptions in the state table (no TTL on any of them, except the
    exfiltration-facing grant pointer, which disappears a day after its latest grant's deadline)."""

    permissions = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query")

    def __init__(self, ddb: Any, table: str):
        self._ddb, self._table = ddb, table

    # -------------------------------------------------------------- helpers
    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        return self._ddb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")

    def _query(self, pk: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"TableName": self._table, "KeyConditionExpression": "pk = :pk",
                                  "ExpressionAttributeValues": {":pk": _s(pk)}, "ConsistentRead": True}
        while True:
            page = self._ddb.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _transact(self, items: list[dict[str, Any]]) -> None:
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except Exception as exc:
            if not is_code(exc, "TransactionCanceledException"):
                raise
            reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
            if any(code not in ("ConditionalCheckFailed", "None", None) for code in reasons):
                raise  # throttling, a conflicting transaction in flight: let the caller retry
            raise Conflict(str(reasons)) from None

    # -------------------------------------------------------------- roles
    @staticmethod
    def _role(item: dict[str, Any]) -> RoleRecord:
        return RoleRecord(
            role=item["sk"]["S"], stage=item.get("stage", {}).get("S", ""), baseline=json.loads(item["baseline"]["S"]),
            recorded_at=item.get("recorded_at", {}).get("S", ""), recorded_by=item.get("recorded_by", {}).get("S", ""),
            active_grant=item.get("active_grant", {}).get("S"),
            managed={k: v["S"] for k, v in item.get("managed", {}).get("M", {}).items()},
        )

    def role(self, name: str) -> RoleRecord | None:
        item = self._get(keys.breakglass_role(name))
        return self._role(item) if item else None

    def roles(self) -> list[RoleRecord]:
        return [self._role(i) for i in self._query(keys.BREAKGLASS_ROLES)]

    def record_baseline(self, name: str, stage: str, trust: dict[str, Any], by: str, now: datetime) -> bool:
        """Record a role's trust policy as its baseline, the first time only. Returns whether this call did."""
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item={**keys.breakglass_role(name), "stage": _s(stage), "baseline": _s(json.dumps(trust, sort_keys=True)),
                      "recorded_at": _s(iso(now)), "recorded_by": _s(by), "managed": {"M": {}}},
                ConditionExpression="attribute_not_exists(pk)")
            return True
        except Exception as exc:
            if is_code(exc, "ConditionalCheckFailedException"):
                return False
            raise

    def reset_baseline(self, name: str, stage: str, trust: dict[str, Any], by: str, now: datetime) -> None:
        """Accept the role's current trust as its baseline (an operator's decision); refused while a grant is open."""
        try:
            self._ddb.update_item(
                TableName=self._table, Key=keys.breakglass_role(name),
                UpdateExpression="SET stage = :st, baseline = :b, recorded_at = :at, recorded_by = :by, "
                                 "managed = if_not_exists(managed, :m)",
                ConditionExpression="attribute_not_exists(active_grant)",
                ExpressionAttributeValues={":st": _s(stage), ":b": _s(json.dumps(trust, sort_keys=True)), ":at": _s(iso(now)),
                                           ":by": _s(by), ":m": {"M": {}}})
        except Exception as exc:
            if is_code(exc, "ConditionalCheckFailedException"):
                raise Conflict(f"role {name} has an open grant") from None
            raise

    def set_managed(self, name: str, policy: str, document: dict[str, Any] | None) -> None:
        """Remember (or forget) the inline policy Stagewarden last wrote on the role, to put it back if tampered with.
        A role without a record (not a break-glass role) keeps none."""
        key = keys.breakglass_role(name)
        try:
            if document is None:
                self._ddb.update_item(TableName=self._table, Key=key, UpdateExpression="REMOVE managed.#p",
                                      ConditionExpression="attribute_exists(pk)", ExpressionAttributeNames={"#p": policy})
            else:
                self._ddb.update_item(TableName=self._table, Key=key, UpdateExpression="SET managed.#p = :d",
                                      ConditionExpression="attribute_exists(pk)", ExpressionAttributeNames={"#p": policy},
                                      ExpressionAttributeValues={":d": _s(json.dumps(document, sort_keys=True))})
        except Exception as exc:
            if not is_code(exc, "ConditionalCheckFailedException"):
                raise

    # -------------------------------------------------------------- grants
    @staticmethod
    def _grant(item: dict[str, Any]) -> Grant:
        grant = load(Grant, item["doc"]["S"])
        grant.status = item.get("status", {}).get("S", grant.status)
        grant.published = item.get("published", {}).get("BOOL", True)
        grant.sessions = [json.loads(s["S"]) for s in item.get("sessions", {}).get("L", [])]
        for name in ("closed_at", "closed_by", "close_reason"):
            if name in item:
                setattr(grant, name, item[name]["S"])
        return grant

    def grant(self, grant_id: str) -> Grant | None:
        item = self._get(keys.breakglass_record(grant_id))
        return self._grant(item) if item else None

    def grants(self) -> list[Grant]:
        return [self._grant(i) for i in self._query(keys.BREAKGLASS_GRANTS)]

    def open(self, grant: Grant) -> None:
        """Record a grant: one transaction takes the role's lock (one grant at a time), points the role's grant
        pointer (the exfiltration function reads it) at the grant, and writes the register entry. :class:`Conflict`
        when the role holds a grant."""
        deadline = epoch(grant.deadline)
        self._transact([
            {"Update": {"TableName": self._table, "Key": keys.breakglass_role(grant.role),
                        "UpdateExpression": "SET active_grant = :g",
                        "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(active_grant)",
                        "ExpressionAttributeValues": {":g": _s(grant.grant_id)}}},
            # the pointer names this grant and keeps the one before it (if still there): reads made under that one
            # and delivered late are still judged against it
            {"Update": {"TableName": self._table, "Key": keys.breakglass_grant(grant.role),
                        "UpdateExpression": "SET previous_grant_id = if_not_exists(grant_id, :g), grant_id = :g, principal = :p, "
                                            "approver = :a, ticket = :t, stage = :st, deadline = :d, #exp = :exp",
                        "ExpressionAttributeNames": {"#exp": keys.EXPIRES_AT},
                        "ExpressionAttributeValues": {
                            ":g": _s(grant.grant_id), ":p": _s(grant.principal), ":a": _s(grant.approver),
                            ":t": _s(grant.ticket), ":st": _s(grant.stage), ":d": _n(deadline),
                            ":exp": _n(deadline + keys.BREAKGLASS_POINTER_GRACE_SECONDS)}}},
            {"Put": {"TableName": self._table, "Item": {
                **keys.breakglass_record(grant.grant_id), "doc": _s(dump(replace(grant, sessions=[]))), "status": _s("active"),
                "role": _s(grant.role), "deadline": _n(deadline), "published": {"BOOL": True}, "sessions": {"L": []}},
                "ConditionExpression": "attribute_not_exists(pk)"}},
        ])

    def claim(self, grant_id: str, now: datetime, lease_seconds: int, by: str) -> bool:
        """Take the right to close a grant: exactly one of racing closers (schedule, sweep, `end`) gets it.

        The claim is a lease: a closer that dies holding it is replaced once the lease is over.
        """
        try:
            self._ddb.update_item(
                TableName=self._table, Key=keys.breakglass_record(grant_id),
                UpdateExpression="SET #s = :closing, claim_until = :until, claimed_by = :by",
                ConditionExpression="#s = :active OR (#s = :closing AND claim_until < :now)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":closing": _s("closing"), ":active": _s("active"), ":by": _s(by[:512]),
                                           ":until": _n(int(now.timestamp()) + lease_seconds), ":now": _n(int(now.timestamp()))})
            return True
        except Exception as exc:
            if is_code(exc, "ConditionalCheckFailedException"):
                return False
            raise

    def release(self, grant_id: str) -> None:
        """Give a claim back after a failed close: the grant is active again, the next sweep retries."""
        try:
            self._ddb.update_item(
                TableName=self._table, Key=keys.breakglass_record(grant_id),
                UpdateExpression="SET #s = :active REMOVE claim_until, claimed_by", ConditionExpression="#s = :closing",
                ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":active": _s("active"), ":closing": _s("closing")})
        except Exception as exc:
            if not is_code(exc, "ConditionalCheckFailedException"):
                raise

    def close(self, grant: Grant, status: str, closed_at: datetime, by: str, reason: str, review: Review | None) -> bool:
        """Mark a claimed grant expired or ended, release the role and create the review, all at once.

        The role's grant pointer stays (until its TTL, a day past the deadline): log files arrive late, and the
        exfiltration function judges the grantee's reads made before the close against the closed grant's register
        entry. Only the holder of the claim gets here; the conditions make a second close change nothing.
        """
        gid = _s(grant.grant_id)
        items: list[dict[str, Any]] = [
            {"Update": {"TableName": self._table, "Key": keys.breakglass_record(grant.grant_id),
                        "UpdateExpression": "SET #s = :status, closed_at = :at, closed_by = :by, close_reason = :why, "
                                            "published = :false REMOVE claim_until",
                        "ConditionExpression": "#s = :active", "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":status": _s(status), ":active": _s("closing"), ":at": _s(iso(closed_at)),
                                                      ":by": _s(by[:512]), ":why": _s(reason[:1000] or "-"),
                                                      ":false": {"BOOL": False}}}},
            {"Update": {"TableName": self._table, "Key": keys.breakglass_role(grant.role),
                        "UpdateExpression": "REMOVE active_grant",
                        "ConditionExpression": "attribute_not_exists(active_grant) OR active_grant = :g",
                        "ExpressionAttributeValues": {":g": gid}}},
        ]
        if review is not None:
            items.append({"Put": {"TableName": self._table, "Item": {
                **keys.breakglass_review(grant.grant_id), "doc": _s(dump(review)), "status": _s("open"),
                "due": _n(epoch(review.due))}, "ConditionExpression": "attribute_not_exists(pk)"}})
        try:
            self._transact(items)
        except Conflict:
            return False
        return True

    def add_session(self, grant_id: str, session: dict[str, Any]) -> bool:
        """Remember a session opened under the grant (for its review); at most :data:`MAX_SESSIONS`."""
        try:
            self._ddb.update_item(
                TableName=self._table, Key=keys.breakglass_record(grant_id),
                UpdateExpression="SET sessions = list_append(if_not_exists(sessions, :empty), :s)",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(sessions) OR size(sessions) < :max)",
                ExpressionAttributeValues={":empty": {"L": []}, ":s": {"L": [_s(json.dumps(session, sort_keys=True))]},
                                           ":max": _n(MAX_SESSIONS)})
            return True
        except Exception as exc:
            if is_code(exc, "ConditionalCheckFailedException"):
                return False
            raise

    def mark_published(self, grant_id: str) -> None:
        self._ddb.update_item(TableName=self._table, Key=keys.breakglass_record(grant_id),
                              UpdateExpression="SET published = :t", ExpressionAttributeValues={":t": {"BOOL": True}})

    # -------------------------------------------------------------- reviews
    @staticmethod
    def _review(item: dict[str, Any]) -> Review:
        review = load(Review, item["doc"]["S"])
        review.status = item.get("status", {}).get("S", review.status)
        for name in ("reviewed_by", "reviewed_at", "notes"):
            if name in item:
                setattr(review, name, item[name]["S"])
        return review

    def review(self, grant_id: str) -> Review | None:
        item = self._get(keys.breakglass_review(grant_id))
        return self._review(item) if item else None

    def reviews(self) -> list[Review]:
        return [self._review(i) for i in self._query(keys.BREAKGLASS_REVIEWS)]

    def complete_review(self, grant_id: str, by: str, notes: str, now: datetime) -> None:
        try:
            self._ddb.update_item(
                TableName=self._table, Key=keys.breakglass_review(grant_id),
                UpdateExpression="SET #s = :done, reviewed_by = :by, reviewed_at = :at, notes = :n",
                ConditionExpression="#s = :open", ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":done": _s("done"), ":open": _s("open"), ":by": _s(by[:512]),
                                           ":at": _s(iso(now)), ":n": _s(notes[:4000] or "-")})
        except Exception as exc:
            if is_code(exc, "ConditionalCheckFailedException"):
                raise Conflict(f"no open review for grant {grant_id}") from None
            raise

    # -------------------------------------------------------------- exceptions
    @staticmethod
    def _exception(item: dict[str, Any]) -> TimeBoxedException:
        exc = load(TimeBoxedException, item["doc"]["S"])
        exc.status = item.get("status", {}).get("S", exc.status)
        exc.next_review = item.get("next_review_iso", {}).get("S", exc.next_review)
        exc.reviews = int(item.get("reviews", {}).get("N", exc.reviews))
        if "closed_at" in item:
            exc.closed_at = item["closed_at"]["S"]
        return exc

    def exceptions(self) -> list[TimeBoxedException]:
        return [self._exception(i) for i in self._query(keys.EXCEPTIONS)]

    def exception(self, exception_id: str) -> TimeBoxedException | None:
        item = self._get(keys.exception_record(exception_id))
        return self._exception(item) if item else None

    def add_exception(self, exc: TimeBoxedException) -> None:
        self._ddb.put_item(TableName=self._table, Item={
            **keys.exception_record(exc.exception_id), "doc": _s(dump(exc)), "status": _s("active"),
            "until": _n(epoch(exc.until)), "next_review": _n(epoch(exc.next_review)),
            "next_review_iso": _s(exc.next_review), "reviews": _n(0)},
            ConditionExpression="attribute_not_exists(pk)")

    def close_exception(self, exception_id: str, now: datetime) -> bool:
        try:
            self._ddb.update_item(
                TableName=self._table, Key=keys.exception_record(exception_id),
                UpdateExpression="SET #s = :expired, closed_at = :at", ConditionExpression="#s = :active",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":expired": _s("expired"), ":active": _s("active"), ":at": _s(iso(now))})
            return True
        except Exception as exc:
            if is_code(exc, "ConditionalCheckFailedException"):
                return False
            raise

    def advance_review(self, exc: TimeBoxedException, following: datetime) -> bool:
        """Move the next review on by one interval; exactly one of racing sweeps does (and raises the finding)."""
        try:
            self._ddb.update_item(
                TableName=self._table, Key=keys.exception_record(exc.exception_id),
                UpdateExpression="SET next_review = :new, next_review_iso = :iso ADD reviews :one",
                ConditionExpression="next_review = :old AND #s = :active", ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":new": _n(int(following.timestamp())), ":iso": _s(iso(following)),
                                           ":old": _n(epoch(exc.next_review)), ":one": _n(1), ":active": _s("active")})
            return True
        except Exception as exc2:
            if is_code(exc2, "ConditionalCheckFailedException"):
                return False
            raise


def _document(value: Any) -> dict[str, Any]:
    """IAM returns policy documents URL-encoded; boto3 usually decodes them already."""
    if isinstance(value, dict):
        return value
    return json.loads(unquote(str(value)))


class RoleReader:
    """IAM reads: one role's trust, tags and policies; every role (for the sweep), with tags cached per container."""

    permissions = ("iam:GetRole", "iam:ListRoles", "iam:ListRoleTags", "iam:GetRolePolicy")

    def __init__(self, iam: Any, tag_ttl_seconds: float = 900.0):
        self._iam = iam
        self._ttl = tag_ttl_seconds
        self._tags: dict[str, tuple[float, dict[str, str]]] = {}

    def get(self, name: str) -> tuple[RoleFacts, dict[str, Any]] | None:
        """The role's facts and its trust policy; None if it does not exist."""
        try:
            role = self._iam.get_role(RoleName=name)["Role"]
        except Exception as exc:
            if is_code(exc, "NoSuchEntity"):
                return None
            raise
        tags = {t["Key"]: t["Value"] for t in role.get("Tags", [])}
        self._tags[name] = (time.monotonic(), tags)
        facts = RoleFacts(role["RoleName"], role["Arn"], role.get("Path", "/"), tags)
        return facts, _document(role["AssumeRolePolicyDocument"])

    def inline(self, name: str, policy: str) -> dict[str, Any] | None:
        try:
            return _document(self._iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"])
        except Exception as exc:
            if is_code(exc, "NoSuchEntity"):
                return None
            raise

    def tags(self, name: str) -> dict[str, str]:
        hit = self._tags.get(name)
        if hit and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        tags: dict[str, str] = {}
        for page in self._iam.get_paginator("list_role_tags").paginate(RoleName=name):
            tags.update({t["Key"]: t["Value"] for t in page["Tags"]})
        self._tags[name] = (time.monotonic(), tags)
        return tags

    def every(self) -> Iterator[tuple[str, str, str]]:
        """``(name, arn, path)`` of every role in the account."""
        for page in self._iam.get_paginator("list_roles").paginate():
            for role in page["Roles"]:
                yield role["RoleName"], role["Arn"], role.get("Path", "/")


class TrailReader:
    """What a grant's sessions did, as far as CloudTrail's event history (management events, 90 days) shows."""

    permissions = ("cloudtrail:LookupEvents",)
    MAX_EVENTS = 500

    def __init__(self, cloudtrail: Any):
        self._ct = cloudtrail

    def activity(self, access_keys: list[str], start: datetime, end: datetime) -> dict[str, Any]:
        """Calls per event name, errors, first and last call, for each session's access key (bounded)."""
        out: dict[str, Any] = {"source": "cloudtrail:LookupEvents (management events)", "sessions": {}}
        if not access_keys:
            out["note"] = "no session was seen under this grant (AssumeRole and ConsoleLogin reach Stagewarden through EventBridge)"
            return out
        for key in access_keys[:20]:
            counts: dict[str, int] = {}
            first = last = None
            errors = seen = 0
            try:
                kwargs: dict[str, Any] = {"LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": key}],
                                          "StartTime": start, "EndTime": end, "MaxResults": 50}
                while seen < self.MAX_EVENTS:
                    page = self._ct.lookup_events(**kwargs)
                    for ev in page.get("Events", []):
                        seen += 1
                        counts[ev.get("EventName", "?")] = counts.get(ev.get("EventName", "?"), 0) + 1
                        when = ev.get("EventTime")
                        when = iso(when) if isinstance(when, datetime) else str(when)
                        first = min(first or when, when)
                        last = max(last or when, when)
                        body = ev.get("CloudTrailEvent")
                        if isinstance(body, str) and '"errorCode"' in body:
                            errors += 1
                    if not page.get("NextToken"):
                        break
                    kwargs["NextToken"] = page["NextToken"]
            except Exception as exc:  # noqa: BLE001 - the review says what could not be read, it is still created
                out["sessions"][key] = {"unavailable": f"{type(exc).__name__}: {str(exc)[:200]}"}
                continue
            top = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:25])
            out["sessions"][key] = {"calls": seen, "by_event": top, "errors": errors, "first": first, "last": last,
                                    "truncated": seen >= self.MAX_EVENTS}
        return out
