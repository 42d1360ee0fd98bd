"""What the break-glass function keeps in DynamoDB: grants, role baselines, reviews and exceptions.

Each record is a small dataclass; the item stores it whole as JSON (``doc``) beside the few
attributes conditions and the exfiltration function read (``status``, ``active_grant``,
``expires_at``...). Keys come from :mod:`stage_policy.keys`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

from warden.rules import parse_time

T = TypeVar("T")

#: Sessions (AssumeRole / ConsoleLogin) kept per grant for its review.
MAX_SESSIONS = 50


@dataclass
class Grant:
    grant_id: str
    role: str
    role_arn: str
    stage: str
    principal: str
    approver: str
    ticket: str
    deadline: str  # ISO, UTC
    created_at: str
    minutes: int
    reason: str = ""
    requested_by: str = ""
    approver_verified: bool = False  # the approver's own identity made the request (console) or ran the CLI
    source: str = "cli"  # cli | console
    schedule: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "active"  # active | expired | ended
    closed_at: str = ""
    closed_by: str = ""
    close_reason: str = ""
    sessions: list[dict[str, Any]] = field(default_factory=list)
    published: bool = True  # False between closing and publishing its finding (the sweep republishes)
    #: When the role was opened to the principal: the grant itself (CLI), or the approver's own trust change (console
    #: activation, recorded when the function processes it). Sessions before it are not the grant's (exfiltration).
    opened_at: str = ""

    @property
    def deadline_at(self) -> datetime:
        return parse_time(self.deadline)


@dataclass
class RoleRecord:
    role: str
    stage: str
    baseline: dict[str, Any]
    recorded_at: str
    recorded_by: str
    active_grant: str | None = None
    #: Stagewarden's inline policies on the role, as last written (name -> JSON text).
    managed: dict[str, str] = field(default_factory=dict)


@dataclass
class Review:
    grant_id: str
    role: str
    stage: str
    principal: str
    approver: str
    ticket: str
    reason: str
    opened_at: str
    closed_at: str
    closed_how: str  # expired | ended
    due: str
    sessions: list[dict[str, Any]] = field(default_factory=list)
    activity: dict[str, Any] = field(default_factory=dict)
    status: str = "open"  # open | done
    reviewed_by: str = ""
    reviewed_at: str = ""
    notes: str = ""


@dataclass
class TimeBoxedException:
    exception_id: str
    bucket: str
    principal: str
    role: str
    stage: str | None
    owner: str
    approver: str
    reason: str
    created_at: str
    until: str
    next_review: str
    policy_name: str
    requested_by: str = ""
    status: str = "active"  # active | expired
    closed_at: str = ""
    reviews: int = 0


def dump(record: Any) -> str:
    return json.dumps(asdict(record), separators=(",", ":"), sort_keys=True)


def load(cls: type[T], text: str) -> T:
    data = json.loads(text)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


def epoch(text: str) -> int:
    return int(parse_time(text).timestamp())
