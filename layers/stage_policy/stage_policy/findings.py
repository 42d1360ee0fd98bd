"""The Finding: one shape for everything Stagewarden reports (DESIGN.md section 4).

Everything placed into a finding is bounded here, once, whatever the caller passes:
text is truncated with a marker, lists are capped (in a mapping, ``<key>_omitted`` says
how many were left out), mappings and nesting are limited, and values JSON cannot hold
become text. No input can make a finding invalid or oversized (an SNS message is at most
256 KB), so one hostile record cannot stop a file's other findings.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stage_policy.model import Severity

#: Bumped when the JSON shape of a finding changes incompatibly.
FINDING_SCHEMA_VERSION = "1.0"
SEVERITY_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def at_least(severity: str, floor: str) -> bool:
    return SEVERITY_ORDER[severity] >= SEVERITY_ORDER[floor]


#: Bounds of what a finding carries.
MAX_SUMMARY, MAX_TEXT, MAX_ID, MAX_LIST, MAX_KEYS, MAX_DEPTH = 1000, 1000, 2048, 100, 100, 6
TRUNCATED = " …[truncated]"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, the cut marked."""
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def bounded(value: Any, depth: int = 0, counted: bool = False) -> Any:
    """A JSON-safe copy of ``value`` within the bounds above (``counted``: the caller reports a cut list)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if depth >= MAX_DEPTH:
        return clip(repr(value), 200)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        items = list(value.items())
        for key, item in items[:MAX_KEYS]:
            key = clip(str(key), 200)
            if isinstance(item, (list, tuple, set, frozenset)) and len(item) > MAX_LIST:
                out[f"{key}_omitted"] = len(item) - MAX_LIST
            out[key] = bounded(item, depth + 1, counted=True)
        if len(items) > MAX_KEYS:
            out["keys_omitted"] = len(items) - MAX_KEYS
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value) if not isinstance(value, (set, frozenset)) else sorted(value, key=repr)
        kept = [bounded(v, depth + 1) for v in items[:MAX_LIST]]
        if len(items) > MAX_LIST and not counted:
            kept.append(f"…[{len(items) - MAX_LIST} more]")
        return kept
    return clip(repr(value), 200)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Finding(BaseModel):
    """What happened, where, who did it, and what was (or in dry run would be) done."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    schema_version: Literal["1.0"] = FINDING_SCHEMA_VERSION
    rule: str = Field(pattern=r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$")
    severity: Severity
    stage: str | None = None
    resource: str = Field(min_length=1)
    principal: str | None = None
    summary: str = Field(min_length=1, max_length=1000)
    evidence: dict[str, Any] = Field(default_factory=dict)
    action: str = "none"
    dedup_key: str = ""
    first_seen: datetime = Field(default_factory=_now)
    last_seen: datetime | None = None
    count: int = Field(default=1, ge=1)

    @field_validator("summary", "action", mode="before")
    @classmethod
    def _bound_text(cls, value: Any) -> Any:
        # a summary built from event data (principals, accounts, columns) is cut, never rejected:
        # a finding that cannot be built is a finding lost, and the record with it
        return clip(value, MAX_SUMMARY) if isinstance(value, str) else value

    @field_validator("resource", "principal", "stage", "dedup_key", mode="before")
    @classmethod
    def _bound_id(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = clip(value, MAX_ID)
        return value

    @field_validator("evidence", mode="before")
    @classmethod
    def _bound_evidence(cls, value: Any) -> Any:
        return bounded(value) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _fill(self) -> "Finding":
        if not self.dedup_key:
            raw = "|".join((self.rule, self.stage or "", self.resource, self.principal or ""))
            self.dedup_key = f"{self.rule}:{hashlib.sha256(raw.encode()).hexdigest()[:20]}"
        if self.last_seen is None:
            self.last_seen = self.first_seen
        return self

    def to_json(self) -> str:
        return self.model_dump_json(fallback=str)  # an evidence value JSON cannot hold is sent as its text
