"""Which sessions a break-glass grant covers: only the grant's principal's, only within the grant.

A grant opens a break-glass role to one principal. The role itself is shared: anyone its
baseline trust allows, or anyone holding other credentials on it, acts as the same role. So
the exemption from ``access.prod-human`` is not "the role has a grant" but "this read was made
with the credentials of a session the break-glass function approved under the grant":

* the break-glass function records every AssumeRole it approves under a grant (the caller is the
  grant's principal, before the deadline) with the new session's ``aws:userid``
  (``<role id>:<session name>``), the access key issued, and the session's ``sourceIdentity``;
* a data event is covered when its ``principalId`` is one of those sessions **and** its
  ``accessKeyId`` is the key issued to it (a second AssumeRole under the same session name gets
  another key), its ``sourceIdentity`` is the recorded one, the session was opened at or after the
  grant opened (``opened_at``: the grant, or the approver's own trust change for a console activation), and the
  event (and the session's ``creationDate``) falls in the grant's window: ``[opened, end)``, where ``end`` is the
  deadline, or the close if the grant was ended before it.

The window is judged by the event's own time, not by when its log file arrives: CloudTrail
delivers files 5-15 minutes late, so a read made in the grant's last minutes is usually judged
after the grant closed. The register entry of a closed grant still holds its sessions and its
``closed_at``, and the role's pointer names it for a day past its deadline (see
``stage_policy.keys.breakglass_grant``).

Anything else is judged normally. Pure: items in, answers out; no AWS here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: A recorded session that says nothing about its sourceIdentity (written before it was recorded): not checked.
_UNRECORDED = object()


def epoch(value: Any) -> float | None:
    """An ISO-8601 time (``2026-11-22T08:05:00Z``) in epoch seconds; None for anything else."""
    if value.__class__ is not str or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class GrantSession:
    """A session the break-glass function approved under a grant (``add_session``)."""

    userid: str
    access_key: str
    at: float
    source_identity: Any = _UNRECORDED  # str | None once recorded


#: Register statuses: still open (being closed counts as open until the close is written), and closed.
_OPEN = ("active", "closing")
_CLOSED = ("expired", "ended")


@dataclass(frozen=True)
class GrantWindow:
    """A grant (open or closed) as the exfiltration function needs it: its window and its approved sessions."""

    grant_id: str
    opened: float
    end: float  # the deadline; the close, when the grant was ended (or closed) before it
    sessions: dict[str, tuple[GrantSession, ...]] = field(default_factory=dict)  # by aws:userid

    @classmethod
    def from_record(cls, grant_id: str, record: dict[str, Any] | None) -> GrantWindow | None:
        """From the grant's register entry (a DynamoDB item), named by the role's pointer. None when it does not
        describe that grant: nothing is covered then (the reads are judged as everyone's)."""
        if not record:
            return None
        status = record.get("status", {}).get("S")
        try:
            doc = json.loads(record["doc"]["S"])
        except (KeyError, TypeError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("grant_id") != grant_id:
            return None
        # when the role was opened to the principal (a console activation: the approver's change), else when granted
        opened = epoch(doc.get("opened_at") or doc.get("created_at"))
        end = epoch(doc.get("deadline"))
        if opened is None or end is None:
            return None
        if status in _CLOSED:
            closed = epoch(record.get("closed_at", {}).get("S"))
            if closed is None:
                return None  # closed, but when is unknown: cover nothing rather than guess
            end = min(end, closed)
        elif status not in _OPEN:
            return None
        by_userid: dict[str, list[GrantSession]] = {}
        for entry in record.get("sessions", {}).get("L", []):
            session = _session(entry)
            # a session opened before the grant (its AssumeRole processed late) is not the grant's
            if session is not None and opened <= session.at < end:
                by_userid.setdefault(session.userid, []).append(session)
        return cls(grant_id, opened, end, {k: tuple(v) for k, v in by_userid.items()})

    def covers(self, ui: Any, when: Any) -> bool:
        """Was this data event (its ``userIdentity`` and ``eventTime``) made by a session approved under the grant,
        within the grant? Asked the same way before and after the grant closed: the event's own time decides."""
        at = epoch(when)
        if at is None or not self.opened <= at < self.end or ui.__class__ is not dict:
            return False
        candidates = self.sessions.get(ui.get("principalId"))  # type: ignore[arg-type]
        if not candidates:
            return False
        key = ui.get("accessKeyId")
        ctx = ui.get("sessionContext")
        ctx = ctx if ctx.__class__ is dict else {}
        source = ctx.get("sourceIdentity")
        attributes = ctx.get("attributes")
        created = attributes.get("creationDate") if attributes.__class__ is dict else None
        if created is not None:
            start = epoch(created)
            if start is None or not self.opened <= start < self.end:
                return False  # credentials issued before the grant opened (or after it closed)
        for session in candidates:
            if key == session.access_key and (session.source_identity is _UNRECORDED or source == session.source_identity):
                return True
        return False


def _session(entry: Any) -> GrantSession | None:
    """One entry of the grant's ``sessions`` list (JSON text); None for one that cannot bind a read to it."""
    try:
        data = json.loads(entry["S"])
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    userid, key, at = data.get("session"), data.get("access_key"), epoch(data.get("at"))
    if not isinstance(userid, str) or not userid or not isinstance(key, str) or not key or at is None:
        return None  # a console sign-in records no access key: nothing ties a read to it
    source = data["session_source_identity"] if "session_source_identity" in data else _UNRECORDED
    if source is not _UNRECORDED and source is not None and not isinstance(source, str):
        return None
    return GrantSession(userid, key, at, source)
