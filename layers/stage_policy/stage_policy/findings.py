"""The Finding: one shape for everything Stagewarden reports (DESIGN.md section 4)."""

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

    @field_validator("summary", mode="before")
    @classmethod
    def _bound_summary(cls, value: Any) -> Any:
        # a summary built from event data (principals, accounts, columns) is cut, never rejected:
        # a finding that cannot be built is a finding lost, and the record with it
        if isinstance(value, str) and len(value) > 1000:
            return value[:985] + " …[truncated]"
        return value

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
