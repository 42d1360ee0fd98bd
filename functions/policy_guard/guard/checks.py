"""Policy guard domain: is the deployed policy usable? Pure: text in, decision out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stage_policy.actions import Decision
from stage_policy.findings import Finding
from stage_policy.loader import PolicyError, loads
from stage_policy.model import Policy


@dataclass(frozen=True)
class Assessment:
    source: str
    version: str | None
    valid: bool
    errors: list[str] = field(default_factory=list)
    stages: dict[str, str] = field(default_factory=dict)
    finding: Finding | None = None
    #: The validated policy; None when it is unusable.
    policy: Policy | None = None

    def decision(self) -> Decision:
        """The guard reports and never remediates: at most the finding, never an action."""
        return Decision(self.finding)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "version": self.version,
            "valid": self.valid,
            "errors": self.errors,
            "stages": self.stages,
            "finding": self.finding.model_dump(mode="json") if self.finding else None,
        }


def _summary(policy: Policy) -> dict[str, str]:
    return {name: policy.mode_for(name) for name in policy.stages}


def assess(source: str, version: str | None, text: str | None, fetch_error: PolicyError | None = None) -> Assessment:
    """Validate the policy text; an unusable policy yields one critical ``policy.invalid`` finding."""
    error = fetch_error
    policy = None
    if error is None:
        try:
            policy = loads(text or "", source)
        except PolicyError as exc:
            error = exc
    if policy is not None:
        return Assessment(source, version, True, stages=_summary(policy), policy=policy)
    assert error is not None
    lines = error.lines()
    finding = Finding(
        rule="policy.invalid",
        severity="critical",
        stage=None,
        resource=source,
        summary=f"The Stagewarden policy at {source} is unusable ({len(lines)} problem(s)); running functions keep their last valid policy, cold starts act on nothing.",
        evidence={"errors": lines[:50], "version": version},
        action="none: functions refuse to act on an invalid policy; fix and push it again",
        # one incident per policy version, so a fixed-then-broken policy alerts again
        dedup_key=f"policy.invalid:{source}:{version or 'unversioned'}",
    )
    return Assessment(source, version, False, errors=lines, finding=finding)
