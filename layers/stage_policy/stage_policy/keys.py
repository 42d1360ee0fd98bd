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


def breakglass_grant(role: str) -> Key:
    """The active break-glass grant of a role (written by the break-glass function, read by exfiltration)."""
    return _key(f"breakglass#grant#{role}", "grant")


def exfil_window(stage: str, principal: str) -> Key:
    """Sliding read windows and learned client tools of one identity in one stage."""
    return _key(f"exfil#window#{stage}#{principal}", "window")


def alert_dedup(dedup_key: str) -> Key:
    """One incident: first/last seen, count and highest severity published inside the dedup window."""
    return _key(f"dedup#{dedup_key}", "alert")


def idempotency_pk(function: str) -> str:
    """Partition of a function's replay-safety records (Powertools Idempotency; sk is the event hash)."""
    return f"idempotency#{function}"


def audit(when: datetime, function: str, seq: str) -> Key:
    """One executed (or dry-run) action in the audit ledger: one partition per UTC day."""
    return _key(f"audit#{when:%Y-%m-%d}", f"{when.isoformat()}#{function}#{seq}")


def retention_sweep(bucket: str) -> Key:
    """Where the retention sweep of a bucket stopped (cap or time budget): the next run continues there."""
    return _key(f"retention#sweep#{bucket}", "marker")
