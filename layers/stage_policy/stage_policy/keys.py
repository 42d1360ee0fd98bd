"""Every key Stagewarden writes to its DynamoDB tables, in one place.

The state table (perishable, TTL on ``expires_at``) and the audit ledger (kept) share
one ``pk``/``sk`` schema. A capability that reads another's items (exfiltration reads
break-glass grants; the alert function reads dedup state) imports the key from here, so
the writer and the reader cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime

Key = dict[str, dict[str, str]]

#: The state-table attribute DynamoDB's TTL deletes on (epoch seconds).
EXPIRES_AT = "expires_at"


def _key(pk: str, sk: str) -> Key:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


#: How long a role's grant pointer outlives the grant's deadline (its TTL): CloudTrail delivers log files
#: 5-15 minutes after the calls, so the grantee's reads are often judged after the grant closed.
BREAKGLASS_POINTER_GRACE_SECONDS = 24 * 3600


def breakglass_grant(role: str) -> Key:
    """The break-glass grants of a role the exfiltration function judges reads against (written by the
    break-glass function when a grant opens; read by exfiltration).

    Attributes: ``grant_id`` (the latest grant, open or closed), ``previous_grant_id`` (the grant before it,
    when the pointer still existed as this one opened), ``deadline`` (N, the latest grant's deadline),
    ``principal``, ``approver``, ``ticket``, ``stage``, and ``expires_at`` (the TTL: the deadline plus
    :data:`BREAKGLASS_POINTER_GRACE_SECONDS`). Closing a grant leaves the pointer: whether a grant is open,
    and until when it covered what, is in its register entry (:func:`breakglass_record`: ``status``,
    ``closed_at``, the sessions). Written in one transaction with :func:`breakglass_role` and
    :func:`breakglass_record`.
    """
    return _key(f"breakglass#grant#{role}", "grant")


#: Partition of every break-glass role's record (query it to list them).
BREAKGLASS_ROLES = "breakglass#roles"
#: Partition of the grant register: every grant ever made, never expired by TTL.
BREAKGLASS_GRANTS = "breakglass#grants"
#: Partition of the post-incident review records.
BREAKGLASS_REVIEWS = "breakglass#reviews"
#: Partition of the time-boxed exception register.
EXCEPTIONS = "exception#register"


def breakglass_role(role: str) -> Key:
    """A break-glass role: its baseline trust policy, the Stagewarden inline policies it should carry,
    and ``active_grant`` (the lock that allows one grant at a time). No TTL."""
    return _key(BREAKGLASS_ROLES, role)


def breakglass_record(grant_id: str) -> Key:
    """One grant in the register: who, for whom, approved by, ticket, deadline, status, sessions seen."""
    return _key(BREAKGLASS_GRANTS, grant_id)


def breakglass_review(grant_id: str) -> Key:
    """The post-incident review of a closed grant (created once, by whichever expiry wins)."""
    return _key(BREAKGLASS_REVIEWS, grant_id)


def exception_record(exception_id: str) -> Key:
    """One time-boxed exception in the register: bucket, principal, owner, approver, reason, expiry, next review."""
    return _key(EXCEPTIONS, exception_id)


def exfil_window(stage: str, principal: str) -> Key:
    """Sliding read windows and learned client tools of one identity in one stage."""
    return _key(f"exfil#window#{stage}#{principal}", "window")


def alert_dedup(dedup_key: str) -> Key:
    """One incident: first/last seen, count and highest severity published inside the dedup window."""
    return _key(f"dedup#{dedup_key}", "alert")


def alert_delivery(dedup_key: str) -> Key:
    """One incident as the alert function delivered it: count, severities seen and posted, the open window."""
    return _key(f"delivery#{dedup_key}", "slack")


def alert_counted(dedup_key: str, message: str) -> Key:
    """The mark that one delivered message (``message``: its hash) was counted in :func:`alert_delivery`; written in one
    transaction with the count, so a retried message is never counted twice. TTL: the replay window."""
    return _key(f"delivery#{dedup_key}", f"counted#{message}")


def outbox(function: str) -> Key:
    """Findings whose actions were carried out but whose publish failed: published by the function's next run (no TTL)."""
    return _key(f"outbox#{function}", "pending")


def registry_artifact(bucket: str, key: str) -> Key:
    """A model artifact registered by the schema gate: its checksum, version and kind (kept; no TTL)."""
    return _key(f"registry#artifact#{bucket}/{key}", "artifact")


def idempotency_pk(function: str) -> str:
    """Partition of a function's replay-safety records (Powertools Idempotency; sk is the event hash)."""
    return f"idempotency#{function}"


def audit(when: datetime, function: str, seq: str) -> Key:
    """One executed (or dry-run) action in the audit ledger: one partition per UTC day."""
    return _key(f"audit#{when:%Y-%m-%d}", f"{when.isoformat()}#{function}#{seq}")


def retention_sweep(bucket: str) -> Key:
    """Where the retention sweep of a bucket stopped (cap or time budget): the next run continues there."""
    return _key(f"retention#sweep#{bucket}", "marker")


def retention_stage(bucket: str) -> Key:
    """The last permanent stage a bucket was seen in, and any operator's approval to move it to another (no TTL).

    Written by the retention function when it first sees a bucket in a permanent stage, read on every reconcile:
    a retag to a perishable stage is refused unless ``stagewarden retention restage`` approved exactly that move.
    """
    return _key(f"retention#stage#{bucket}", "stage")
