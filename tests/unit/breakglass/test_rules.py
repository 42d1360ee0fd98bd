"""The pure rules: durations, identities, trust documents, console approval. No AWS."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from warden.rules import (
    ConsoleApproval, added_principals, caller_of, canonical, console_approval, deny_session_policy, grant_statement,
    is_protected, parse_duration, parse_time, session_deny_is_stale, with_statement,
)

from stage_policy.model import BreakGlass
from stagewarden import breakglass_events as ev

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
BG = BreakGlass(max_duration_minutes=120, approvers=("vp-engineering@example.com",))
TAGS = {"stagewarden:approved-by": "vp-engineering@example.com", "stagewarden:ticket": "INC-1",
        "stagewarden:expires-at": "2026-11-22T09:00:00Z"}
ONCALL = "arn:aws:iam::123456789012:role/OnCallEngineer"


@pytest.mark.parametrize("text, minutes", [("90m", 90), ("2h", 120), ("1h30m", 90), ("45", 45), (" 2h 5m ", 125)])
def test_durations(text, minutes) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize("text", ["", "soon", "1d", "-5m", "h"])
def test_durations_that_are_not(text) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_times_are_utc_and_a_date_is_midnight() -> None:
    assert parse_time("2027-02-20") == datetime(2027, 2, 20, tzinfo=timezone.utc)
    assert parse_time("2026-11-22T10:00:00+02:00") == datetime(2026, 11, 22, 8, tzinfo=timezone.utc)


def test_verified_identities_are_source_identity_identity_center_and_iam_users_only() -> None:
    sso = caller_of(ev.approver_identity())
    chosen = caller_of(ev.session_identity("Developers", "vp-engineering@example.com"))
    sourced = caller_of(ev.session_identity("Developers", "anything", source_identity="ciso@example.com"))
    user = caller_of({"type": "IAMUser", "userName": "ciso@example.com", "arn": "arn:aws:iam::123456789012:user/ciso@example.com"})
    service = caller_of({"type": "AWSService", "invokedBy": "cloudformation.amazonaws.com"})

    assert sso.verified == "vp-engineering@example.com" and sso.principal.endswith(":role/AWSReservedSSO_SecurityAdmin_0a1b2c3d4e5f6789")
    assert chosen.verified is None  # a session name anyone assuming the role can choose proves nothing
    assert sourced.verified == "ciso@example.com" and user.verified == "ciso@example.com"
    assert service.service and not sso.service


def test_trust_documents_compare_whatever_order_and_list_shape_iam_returns() -> None:
    a = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": ["b", "a"]}, "Action": "sts:AssumeRole"},
                                                {"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": ["sts:AssumeRole"]}]}
    b = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": ["ssm.amazonaws.com"]}, "Action": "sts:AssumeRole"},
                                                {"Action": "sts:AssumeRole", "Principal": {"AWS": ["a", "b"]}, "Effect": "Allow"}]}
    assert canonical(a) == canonical(b)
    assert canonical(a) != canonical({**a, "Statement": a["Statement"][:1]})


def test_a_grant_adds_one_statement_and_only_its_principal() -> None:
    baseline = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"},
                                                        "Action": "sts:AssumeRole"}]}
    opened = with_statement(baseline, grant_statement("bg-20261122T080000-abcdef", ONCALL, NOW + timedelta(minutes=90)))
    assert opened["Statement"][1]["Sid"] == "StagewardenBreakGlassbg20261122T080000abcdef"
    assert added_principals(baseline, opened) == [ONCALL]
    assert with_statement(baseline, None) == baseline


def approval(tags=TAGS, caller=None, added=(ONCALL,), now=NOW):
    return console_approval(BG, "final-prod", tags, caller or caller_of(ev.approver_identity()), list(added), now)


def test_a_console_activation_by_the_approver_with_every_tag_is_approved() -> None:
    ok, reasons = approval()
    assert reasons == [] and ok == ConsoleApproval("vp-engineering@example.com", "INC-1",
                                                   datetime(2026, 11, 22, 9, tzinfo=timezone.utc), ONCALL, {
                                                       "stagewarden:approved-by": "vp-engineering@example.com",
                                                       "stagewarden:ticket": "INC-1"})


@pytest.mark.parametrize("change, says", [
    (dict(caller=caller_of(ev.session_identity("DataScientistAlice", "alice@example.com"))), "whose identity is not verified"),
    (dict(caller=caller_of(ev.approver_identity("intern@example.com"))), "who is not in stages.final-prod.break_glass.approvers"),
    (dict(tags={**TAGS, "stagewarden:approved-by": "ciso@example.com"}), "the approved-by tag names ciso@example.com"),
    (dict(tags={k: v for k, v in TAGS.items() if k != "stagewarden:ticket"}), "approval tag stagewarden:ticket is missing"),
    (dict(tags={k: v for k, v in TAGS.items() if k != "stagewarden:expires-at"}), "no deadline, no access"),
    (dict(tags={**TAGS, "stagewarden:expires-at": "tomorrow"}), "is not an ISO-8601 time"),
    (dict(tags={**TAGS, "stagewarden:expires-at": "2026-11-22T10:01:00Z"}), "more than stages.final-prod.break_glass.max_duration_minutes"),
    (dict(tags={**TAGS, "stagewarden:expires-at": "2026-11-22T07:00:00Z"}), "is already past"),
    (dict(added=()), "adds 0 principals"),
    (dict(added=(ONCALL, "arn:aws:iam::123456789012:role/Other")), "adds 2 principals"),
    (dict(added=("*",)), "is not an IAM role or user ARN"),
])
def test_a_console_activation_is_refused_for_each_broken_rule(change, says) -> None:
    ok, reasons = approval(**change)
    assert ok is None and any(says in r for r in reasons), reasons


def test_per_session_denies_go_stale_after_the_longest_session() -> None:
    doc = deny_session_policy("AROAX:alice", NOW)
    assert not session_deny_is_stale(doc, NOW + timedelta(hours=11, minutes=59))
    assert session_deny_is_stale(doc, NOW + timedelta(hours=12, minutes=1))


@pytest.mark.parametrize("name, path, stack, protected", [
    ("AWSServiceRoleForECS", "/aws-service-role/ecs.amazonaws.com/", "sw", True),
    ("sw-BreakGlassFunctionRole-1A2B", "/", "sw", True),
    ("BreakGlassProd", "/", "sw", False),
    ("swish", "/", "sw", False),
])
def test_service_linked_and_stagewarden_s_own_roles_are_protected(name, path, stack, protected) -> None:
    assert bool(is_protected(name, path, stack)) is protected
