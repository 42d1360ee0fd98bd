"""PolicyGuard domain: pure decisions, no AWS."""

from __future__ import annotations

from guard.checks import assess

from stage_policy.loader import PolicyError


def test_a_valid_policy_yields_no_finding() -> None:
    outcome = assess("s3://p/policy.yaml", "v1", "framework: two-stage\n")

    assert outcome.valid and outcome.finding is None
    assert outcome.stages == {"prod-discovery": "dry_run", "final-prod": "dry_run"}


def test_an_invalid_policy_yields_one_critical_finding_with_every_error() -> None:
    text = "framework: two-stage\nstages: {prod-discovery: {retention: {default_days: 0}}, final-prod: {mode: x}}\n"

    outcome = assess("s3://p/policy.yaml", "v2", text)

    assert not outcome.valid and len(outcome.errors) == 2
    f = outcome.finding
    assert (f.rule, f.severity, f.resource) == ("policy.invalid", "critical", "s3://p/policy.yaml")
    assert f.evidence["errors"] == outcome.errors and f.evidence["version"] == "v2"
    assert f.dedup_key == "policy.invalid:s3://p/policy.yaml:v2"


def test_each_policy_version_is_its_own_incident() -> None:
    bad = "stages: 3\n"

    assert assess("s3://p/k", "v1", bad).finding.dedup_key != assess("s3://p/k", "v2", bad).finding.dedup_key


def test_an_unreadable_policy_is_reported_as_invalid() -> None:
    outcome = assess("s3://p/k", None, None, fetch_error=PolicyError("s3://p/k", [("", "cannot read the policy object (NoSuchKey)")]))

    assert not outcome.valid and "NoSuchKey" in outcome.errors[0]


def test_the_decision_reports_and_never_acts() -> None:
    valid = assess("s3://p/k", "v1", "framework: two-stage\n")
    invalid = assess("s3://p/k", "v2", "stages: 3\n")

    assert valid.policy is not None and valid.decision().finding is None and valid.decision().actions == []
    assert invalid.policy is None and invalid.decision().finding is invalid.finding and invalid.decision().actions == []
    assert "policy" not in valid.as_dict()
