"""Time-boxed exceptions on the break-glass engine: read-only access of a role to a raw bucket, until a date.

The expiry is written into IAM itself (the inline Allow holds only while ``aws:CurrentTime`` is
before it), so access ends at the date even if the sweep never runs; the sweep removes the
policy, marks the exception expired and raises a review-due finding at each review interval.
The register (owner, approver, reason, expiry, next review) lives in the state table.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from warden.actions import DeleteInlinePolicy, PutInlinePolicy
from warden.records import TimeBoxedException
from warden.rules import (
    EXCEPTION_POLICY_PREFIX, ROLE_ARN, Refused, exception_policy, is_protected, iso, new_id, parse_time, same_person, utc,
)

from stage_policy.executor import ActionFailed
from stage_policy.mapping import role_name, stage_for_bucket
from stage_policy.model import STAGE_TAG

if TYPE_CHECKING:
    from warden.engine import SweepReport, Warden


def grant_exception(w: Warden, bucket: str, principal: str, approver: str, until: datetime, reason: str, owner: str,
                    now: datetime, requested_by: str) -> TimeBoxedException:
    """Put the read-only, self-expiring Allow on the principal's role, or raise :class:`Refused` having changed nothing."""
    rules = w.policy.exceptions
    reasons: list[str] = []
    if not any(same_person(approver, a) for a in rules.approvers):
        reasons.append(f"approver {approver!r} is not in exceptions.approvers ({', '.join(rules.approvers) or 'none: nobody may approve'})")
    if not reason.strip():
        reasons.append("the reason is missing: the register says why each exception exists (--reason)")
    if utc(until) <= utc(now):
        reasons.append(f"--until {iso(until)} is not in the future")
    elif utc(until) - utc(now) > timedelta(days=rules.max_days):
        reasons.append(f"--until {iso(until)} is more than exceptions.max_days ({rules.max_days}) away")
    if not rules.covers(bucket):
        reasons.append(f"bucket {bucket} is not in exceptions.buckets ({', '.join(rules.buckets) or 'none: no bucket may be covered'})")
    got = None
    if not ROLE_ARN.match(principal or ""):
        reasons.append(f"principal {principal!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    else:
        got = w.roles.get(role_name(principal))
        if got is None:
            reasons.append(f"role {role_name(principal)} does not exist")
        else:
            protected = is_protected(got[0].name, got[0].path, w.stack_name)
            if protected:
                reasons.append(f"{protected}: it gets no exceptions")
            elif STAGE_TAG not in got[0].tags:
                reasons.append(f"role {got[0].name} carries no {STAGE_TAG} tag: the stack may change only tagged roles "
                               "(template.yaml scopes its IAM to them), so its sweep could not remove the exception; tag it first")
    for other in w.store.exceptions():
        if other.status == "active" and other.bucket == bucket and other.principal == principal:
            reasons.append(f"{principal} already has exception {other.exception_id} on {bucket} until {other.until}")
    if reasons:
        raise Refused("; ".join(reasons))
    assert got is not None
    role = got[0].name
    eid = new_id("ex", now)
    stage = stage_for_bucket(w.policy, bucket).stage
    record = TimeBoxedException(
        exception_id=eid, bucket=bucket, principal=principal, role=role, stage=stage, owner=owner, approver=approver,
        reason=reason.strip()[:1000], created_at=iso(now), until=iso(until),
        next_review=iso(utc(now) + timedelta(days=rules.review_interval_days)), policy_name=EXCEPTION_POLICY_PREFIX + eid,
        requested_by=requested_by)
    w.store.add_exception(record)
    finding = w._finding(
        "exception.granted", "medium", stage, f"arn:aws:s3:::{bucket}", principal,
        f"Time-boxed read-only exception {eid}: {role} may read {bucket} until {record.until}, approved by {approver} "
        f"(owner {owner}).",
        {"exception_id": eid, "until": record.until, "approver": approver, "owner": owner, "reason": record.reason[:300],
         "next_review": record.next_review, "policy": record.policy_name, "requested_by": requested_by},
        now, dedup=f"exception.granted:{eid}")
    action = PutInlinePolicy(role, name=record.policy_name, document=json.dumps(exception_policy(bucket, until)))
    outcomes = w._act(finding, [action], stage)
    w.publish(finding)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        w.store.close_exception(eid, now)
        raise ActionFailed(failed)
    return record


def sweep_exceptions(w: Warden, now: datetime, report: SweepReport) -> None:
    """Remove expired exceptions (one finding each, however many sweeps race) and raise review-due findings."""
    interval = timedelta(days=w.policy.exceptions.review_interval_days)
    errors: list[str] = []
    for exc in w.store.exceptions():
        if exc.status != "active":
            continue
        try:
            if parse_time(exc.until) <= utc(now):
                _expire(w, exc, now, report)
            elif parse_time(exc.next_review) <= utc(now):
                following = parse_time(exc.next_review) + interval
                while following <= utc(now):
                    following += interval
                if w.store.advance_review(exc, following):
                    _review_due(w, exc, now, following)
                    report.exception_reviews_due.append(exc.exception_id)
        except Exception as error:  # noqa: BLE001 - one exception failing must not stop the others; raised below
            errors.append(f"exception {exc.exception_id}: {type(error).__name__}: {str(error)[:200]}")
    if errors:
        raise RuntimeError("; ".join(errors))


def _expire(w: Warden, exc: TimeBoxedException, now: datetime, report: SweepReport) -> None:
    finding = w._finding(
        "exception.expired", "low", exc.stage, f"arn:aws:s3:::{exc.bucket}", exc.principal,
        f"Exception {exc.exception_id} expired: {exc.role} no longer reads {exc.bucket} (until {exc.until}).",
        {"exception_id": exc.exception_id, "until": exc.until, "approver": exc.approver, "owner": exc.owner,
         "reviews": exc.reviews}, now, dedup=f"exception.expired:{exc.exception_id}")
    outcomes = w._act(finding, [DeleteInlinePolicy(exc.role, name=exc.policy_name)], exc.stage)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        w.publish(finding)
        raise ActionFailed(failed)
    if w.store.close_exception(exc.exception_id, now):
        w.publish(finding)
        report.exceptions_expired.append(exc.exception_id)


def _review_due(w: Warden, exc: TimeBoxedException, now: datetime, following: datetime) -> None:
    finding = w._finding(
        "exception.review-due", "medium", exc.stage, f"arn:aws:s3:::{exc.bucket}", exc.principal,
        f"Exception {exc.exception_id} ({exc.role} reads {exc.bucket} until {exc.until}) is due for its review "
        f"(owner {exc.owner}, approver {exc.approver}).",
        {"exception_id": exc.exception_id, "until": exc.until, "owner": exc.owner, "approver": exc.approver,
         "reason": exc.reason[:300], "review_was_due": exc.next_review, "next_review": iso(following)},
        now, dedup=f"exception.review-due:{exc.exception_id}:{exc.next_review}")
    finding.action = "alert only (the owner and approver review it; the next review is " + iso(following) + ")"
    w.publish(finding)


def register_rows(exceptions: list[TimeBoxedException], now: datetime) -> list[dict[str, Any]]:
    """The register as `stagewarden exception list` shows it."""
    rows = []
    for exc in sorted(exceptions, key=lambda e: e.created_at):
        status = exc.status if exc.status != "active" or parse_time(exc.until) > utc(now) else "active (expiry pending)"
        rows.append({"exception_id": exc.exception_id, "status": status, "bucket": exc.bucket, "principal": exc.principal,
                     "owner": exc.owner, "approver": exc.approver, "reason": exc.reason, "until": exc.until,
                     "next_review": exc.next_review if exc.status == "active" else None, "reviews": exc.reviews,
                     "created_at": exc.created_at, "closed_at": exc.closed_at or None})
    return rows
