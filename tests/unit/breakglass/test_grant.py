"""Granting break glass: what lands on the role and in DynamoDB, the refusals that change nothing, the IAM deadline."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from warden.rules import GrantRequest, Refused, canonical

from stage_policy import keys
from tests.unit.breakglass.conftest import (
    ALICE, ENFORCED, APPROVER, BASELINE, ONCALL, ROLE, T0, condition_holds, evaluate,
)


def test_scenario_an_approved_grant_opens_the_role_until_an_iam_enforced_deadline(world) -> None:
    # Given the final-prod break-glass role at its baseline
    # When the VP-approved grant is made for 90 minutes
    grant = world.grant(minutes=90)

    # Then the trust carries the baseline and one statement for the principal, valid only before the deadline
    role = world.role()
    deadline = "2026-11-22T09:30:00Z"
    assert grant.deadline == deadline
    statements = role["trust"]["Statement"]
    assert statements[0] == BASELINE["Statement"][0]
    opened = statements[1]
    assert opened["Principal"] == {"AWS": ONCALL} and opened["Effect"] == "Allow" and opened["Action"] == "sts:AssumeRole"
    assert opened["Condition"] == {"DateLessThan": {"aws:CurrentTime": deadline}}
    # and the deadline is written into IAM: everything is denied after it
    assert role["inline"]["StagewardenBreakGlassDeadline"]["Statement"][0] == {
        "Sid": "DenyEverythingAfterTheDeadline", "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"DateGreaterThan": {"aws:CurrentTime": deadline}}}
    # and the approval tags are on the role
    assert role["tags"] == {"stagewarden:stage": "final-prod", "stagewarden:approved-by": APPROVER, "stagewarden:ticket": "INC-4711",
                            "stagewarden:expires-at": deadline, "stagewarden:grant-id": grant.grant_id}
    # and a one-time schedule named after the grant fires at the deadline
    [schedule] = world.schedules()
    assert schedule["Name"] == f"stagewarden-{grant.grant_id}"
    assert schedule["ScheduleExpression"] == "at(2026-11-22T09:30:00)" and schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"} and schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["Target"]["Arn"] == world.stack.attrs["BreakGlassFunction.Arn"]
    assert json.loads(schedule["Target"]["Input"])["grant_id"] == grant.grant_id
    # and DynamoDB holds the grant, the role's lock and the pointer exfiltration reads
    record = world.item(keys.breakglass_record(grant.grant_id))
    assert record["status"]["S"] == "active" and json.loads(record["doc"]["S"])["approver"] == APPROVER
    assert world.item(keys.breakglass_role(ROLE))["active_grant"]["S"] == grant.grant_id
    pointer = world.item(keys.breakglass_grant(ROLE))
    deadline = int((T0 + timedelta(minutes=90)).timestamp())
    assert int(pointer["deadline"]["N"]) == deadline and int(pointer["expires_at"]["N"]) == deadline + 24 * 3600
    assert pointer["principal"]["S"] == ONCALL and pointer["grant_id"]["S"] == grant.grant_id
    # and one high finding says so
    [finding] = [f for f in world.findings() if f["rule"] == "breakglass.granted"]
    assert finding["severity"] == "high" and finding["principal"] == ONCALL and finding["evidence"]["ticket"] == "INC-4711"


def test_the_baseline_is_recorded_at_the_first_grant(world) -> None:
    world.grant()

    item = world.item(keys.breakglass_role(ROLE))
    assert canonical(json.loads(item["baseline"]["S"])) == canonical(BASELINE)
    assert item["recorded_by"]["S"] == "grant (cli)"


@pytest.mark.parametrize("change, says", [
    (dict(approver="intern@example.com"), "approver 'intern@example.com' is not in stages.final-prod.break_glass.approvers"),
    (dict(ticket=None), "the ticket is missing"),
    (dict(ticket="   "), "the ticket is missing"),
    (dict(minutes=121), "duration 121m is above stages.final-prod.break_glass.max_duration_minutes (120)"),
    (dict(role="DataScientistAlice"), "role DataScientistAlice is in stage prod-discovery, whose break_glass.allowed is not true"),
    (dict(role="OnCallEngineer"), "role OnCallEngineer maps to no stage"),
    (dict(role="NoSuchRole"), "role NoSuchRole does not exist"),
    (dict(role="stagewarden-local-breakglassfunctionexpiryrole"), "belongs to the Stagewarden stack stagewarden-local"),
    (dict(principal="*"), "principal '*' is not an IAM role or user ARN"),
    (dict(principal=f"arn:aws:iam::123456789012:role/{ROLE}"), "the principal is the break-glass role itself"),
    (dict(ticket="INC#12"), "only letters, digits, spaces"),
    (dict(role="BreakGlassUntagged"), "carries no stagewarden:stage tag"),
], ids=["approver", "no-ticket", "blank-ticket", "too-long", "not-break-glass", "unmapped", "missing-role", "own-role",
        "wildcard", "itself", "ticket-chars", "untagged"])
def test_refusals_change_nothing(world, change, says) -> None:
    # Given a request that breaks one approval rule
    request = dict(role=ROLE, principal=ONCALL, approver=APPROVER, ticket="INC-4711", minutes=90)
    request.update(change)
    # a break-glass role by its name (resources.roles: BreakGlass* -> final-prod) that nobody tagged
    world.iam.create_role(RoleName="BreakGlassUntagged", AssumeRolePolicyDocument=json.dumps(BASELINE))
    before = {name: world.role(name) for name in (ROLE, "DataScientistAlice")}

    # When it is asked for
    with pytest.raises(Refused) as refused:
        world.warden().grant(GrantRequest(**request), T0, "arn:aws:sts::123456789012:assumed-role/Operator/bob")

    # Then it is refused with the rule named, and nothing changed: roles, DynamoDB, schedules, alerts
    assert says in str(refused.value)
    assert {name: world.role(name) for name in before} == before
    assert world.all_items() == [] and world.schedules() == [] and world.findings() == []


def test_an_operator_cannot_grant_to_their_own_role(world) -> None:
    with pytest.raises(Refused, match="may not grant break glass to itself"):
        world.warden().grant(GrantRequest(ROLE, ONCALL, APPROVER, "INC-1", 30), T0,
                             "arn:aws:sts::123456789012:assumed-role/OnCallEngineer/oncall@example.com")


def test_overlap_rule_one_grant_at_a_time_per_role(world) -> None:
    # Given an open grant
    first = world.grant(minutes=60)
    world.findings()
    before = world.role()

    # When a second grant is asked for the same role, even for the same principal
    with pytest.raises(Refused) as refused:
        world.grant(minutes=30, now=T0 + timedelta(minutes=5))

    # Then it is refused naming the open grant, and nothing changed
    assert f"already has grant {first.grant_id}" in str(refused.value) and "one grant at a time" in str(refused.value)
    assert world.role() == before and len(world.items(keys.BREAKGLASS_GRANTS)) == 1 and world.findings() == []


def test_overlap_rule_an_overdue_grant_must_be_closed_first(world) -> None:
    first = world.grant(minutes=30)

    with pytest.raises(Refused, match=f"still holds grant {first.grant_id}.*run `stagewarden breakglass sweep`"):
        world.grant(minutes=30, now=T0 + timedelta(minutes=31))


def test_two_racing_grants_exactly_one_wins(world) -> None:
    """The lock is a DynamoDB transaction, not the check before it: a grant whose check passed still loses."""
    from warden.engine import Warden

    warden = world.warden()
    real_active = Warden._active
    Warden._active = lambda self, record: None  # both operators' checks ran before either wrote
    try:
        winner = warden.grant(GrantRequest(ROLE, ONCALL, APPROVER, "INC-1", 30), T0, "arn:aws:sts::1:assumed-role/Op/a")
        with pytest.raises(Refused, match="granted by another operator a moment ago"):
            warden.grant(GrantRequest(ROLE, ALICE, APPROVER, "INC-2", 30), T0, "arn:aws:sts::1:assumed-role/Op/b")
    finally:
        Warden._active = real_active
    grants = world.items(keys.BREAKGLASS_GRANTS)
    assert [g["sk"]["S"] for g in grants] == [winner.grant_id]
    assert ALICE not in json.dumps(world.role()["trust"])


# ------------------------------------------------------------------ figure: the deadline, to the second
def test_figure_the_deadline_condition_denies_every_call_from_one_second_after_the_deadline(world) -> None:
    grant = world.grant(minutes=90)
    role = world.role()
    deadline_doc = role["inline"]["StagewardenBreakGlassDeadline"]
    condition = deadline_doc["Statement"][0]["Condition"]
    deadline = grant.deadline_at

    def at(delta: int) -> dict[str, str]:
        return {"aws:CurrentTime": (deadline + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")}

    # the deny's own condition: false one second before, false at the deadline itself (DateGreaterThan), true one second after
    assert [condition_holds(condition, at(d)) for d in (-1, 0, 1)] == [False, False, True]
    # every action is denied after it, whatever the role's other policies allow
    admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    for action in ("s3:GetObject", "iam:CreateUser", "sts:AssumeRole", "kms:Decrypt"):
        assert evaluate([admin, deadline_doc], action, at(-1)) == "Allow"
        assert evaluate([admin, deadline_doc], action, at(1)) == "Deny"
    # and the trust statement lets the principal in only before the deadline
    trust = role["trust"]["Statement"][1]
    assert condition_holds(trust["Condition"], at(-1)) and not condition_holds(trust["Condition"], at(1))


def test_figure_re_assuming_just_before_the_deadline_buys_nothing(world) -> None:
    """Attack: the grantee re-assumes the role one second before the deadline for a fresh 12-hour session."""
    grant = world.grant(minutes=90)
    deadline_doc = world.role()["inline"]["StagewardenBreakGlassDeadline"]
    issued = (grant.deadline_at - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    for later in (1, 60, 3600, 12 * 3600):
        now = (grant.deadline_at + timedelta(seconds=later)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert evaluate([deadline_doc], "s3:GetObject", {"aws:CurrentTime": now, "aws:TokenIssueTime": issued}) == "Deny"


def test_a_required_approval_tag_beyond_approver_and_ticket_must_be_given(world) -> None:
    # Given a policy whose final-prod break glass also requires a change-advisory-board tag
    from stage_policy.loader import loads

    policy = loads(ENFORCED.replace('required_approval_tags: ["stagewarden:approved-by", "stagewarden:ticket"]',
                                'required_approval_tags: ["stagewarden:approved-by", "stagewarden:ticket", "cab:change"]'))
    warden = world.warden(policy=policy)

    # When a grant leaves it out, it is refused naming the tag; given with --tag, it lands on the role
    with pytest.raises(Refused, match=r"required_approval_tags needs cab:change: give it with --tag cab:change=VALUE"):
        warden.grant(GrantRequest(ROLE, ONCALL, APPROVER, "INC-1", 30), T0, "arn:aws:sts::1:assumed-role/Op/bob")
    warden.grant(GrantRequest(ROLE, ONCALL, APPROVER, "INC-1", 30, tags={"cab:change": "CHG-77"}), T0,
                 "arn:aws:sts::1:assumed-role/Op/bob")
    assert world.role()["tags"]["cab:change"] == "CHG-77"


def test_a_grant_whose_step_fails_is_rolled_back_and_never_opens_the_trust(world) -> None:
    # Given a schedule group that does not exist (scheduling the expiry fails)
    from dataclasses import replace

    from warden.engine import GrantFailed

    warden = world.warden()
    warden.scheduling = replace(warden.scheduling, group="no-such-group")

    # When the grant is made
    with pytest.raises(GrantFailed) as failed:
        warden.grant(GrantRequest(ROLE, ONCALL, APPROVER, "INC-1", 30), T0, "arn:aws:sts::1:assumed-role/Op/bob")

    # Then the trust never opened (it is the last step), what was added is removed, and the grant is ended
    assert "rolled back" in str(failed.value)
    role = world.role()
    assert canonical(role["trust"]) == canonical(BASELINE) and "StagewardenBreakGlassDeadline" not in role["inline"]
    assert role["tags"] == {"stagewarden:stage": "final-prod"}
    [record] = world.items(keys.BREAKGLASS_GRANTS)
    assert record["status"]["S"] == "ended" and "the grant failed" in record["close_reason"]["S"]
    rules = [f["rule"] for f in world.findings()]
    assert rules == ["breakglass.grant-failed", "breakglass.ended"]
    # and the role can be granted again
    world.grant(minutes=30)
