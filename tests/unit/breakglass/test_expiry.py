"""Closing grants: expiry through the schedule and the sweep, early end, double fire, replays, reviews."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import boto3
import pytest
from warden.rules import Refused, canonical

from stage_policy import keys
from tests.unit.breakglass.conftest import BASELINE, ENFORCED, ONCALL, ROLE, T0, condition_holds, evaluate


def closed_state(world, grant) -> dict:
    return {
        "records": [(i["sk"]["S"], i["status"]["S"]) for i in world.items(keys.BREAKGLASS_GRANTS)],
        "reviews": [i["sk"]["S"] for i in world.items(keys.BREAKGLASS_REVIEWS)],
        "findings": [f["rule"] for f in world.findings() if f["rule"].startswith("breakglass.expired")],
    }


def test_scenario_expiry_through_the_sweep_restores_revokes_verifies_and_leaves_a_review(world) -> None:
    # Given a 90-minute grant under which the on-call engineer opened a session
    grant = world.grant(minutes=90)
    warden = world.warden()
    warden.on_event({"eventName": "AssumeRole", "eventTime": "2026-11-22T08:10:00Z", "eventID": "e1",
                     "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/OnCallEngineer/oncall",
                                      "sessionContext": {"sessionIssuer": {"arn": ONCALL}}},
                     "requestParameters": {"roleArn": f"arn:aws:iam::123456789012:role/{ROLE}", "roleSessionName": "oncall"},
                     "responseElements": {"assumedRoleUser": {"assumedRoleId": "AROAEXAMPLE:oncall"},
                                          "credentials": {"accessKeyId": "ASIAEXAMPLE"}}}, T0 + timedelta(minutes=10))
    world.findings()

    # When the sweep runs one second before the deadline, then one second after it
    early = world.warden().sweep(grant.deadline_at - timedelta(seconds=1))
    assert early.expired == [] and world.role()["trust"]["Statement"][-1]["Principal"] == {"AWS": ONCALL}
    report = world.warden().sweep(grant.deadline_at + timedelta(seconds=1))

    # Then the grant expired: the baseline trust is back, the deadline policy and the approval tags are gone,
    assert report.expired == [grant.grant_id]
    role = world.role()
    assert canonical(role["trust"]) == canonical(BASELINE)
    assert "StagewardenBreakGlassDeadline" not in role["inline"] and role["tags"] == {"stagewarden:stage": "final-prod"}
    # sessions issued before now (and a little after, for IAM's propagation) are revoked,
    revoke = role["inline"]["StagewardenBreakGlassRevokeSessions"]["Statement"][0]
    assert revoke["Effect"] == "Deny" and revoke["Action"] == "*"
    before = revoke["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
    assert before >= (grant.deadline_at + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert evaluate([role["inline"]["StagewardenBreakGlassRevokeSessions"]], "s3:GetObject",
                    {"aws:TokenIssueTime": "2026-11-22T08:10:00Z"}) == "Deny"
    # the schedule is gone, the grant is marked expired and the role's lock released; the exfiltration pointer stays
    # until a day past the deadline (reads made under the grant are judged after it closed: log files arrive late)
    assert world.schedules() == []
    record = world.item(keys.breakglass_record(grant.grant_id))
    assert record["status"]["S"] == "expired" and record["published"]["BOOL"] is True
    assert record["closed_at"]["S"] == "2026-11-22T09:30:01Z"
    assert "active_grant" not in world.item(keys.breakglass_role(ROLE))
    pointer = world.item(keys.breakglass_grant(ROLE))
    assert pointer["grant_id"]["S"] == grant.grant_id
    assert int(pointer["expires_at"]["N"]) == int(grant.deadline_at.timestamp()) + 24 * 3600
    # the review record names the grant, who, the approver, when, the session, and is due in review_due_days (5)
    review = json.loads(world.item(keys.breakglass_review(grant.grant_id))["doc"]["S"])
    assert review["principal"] == ONCALL and review["approver"] == "vp-engineering@example.com" and review["ticket"] == "INC-4711"
    assert review["opened_at"] == "2026-11-22T08:00:00Z" and review["closed_at"] == "2026-11-22T09:30:01Z"
    assert review["due"] == "2026-11-27T09:30:01Z" and review["status"] == "open"
    assert [s["session"] for s in review["sessions"]] == ["AROAEXAMPLE:oncall"]
    assert review["activity"]["sessions"]["ASIAEXAMPLE"]["unavailable"]  # moto does not implement LookupEvents
    # and one finding, whose action lists every step including the read-back
    [finding] = [f for f in world.findings() if f["rule"] == "breakglass.expired"]
    assert "verified role BreakGlassProd" in finding["action"] and finding["evidence"]["review_due"] == review["due"]


def test_expiry_through_the_schedule_is_the_schedules_own_firing(world) -> None:
    """Scheduler fills <aws.scheduler.scheduled-time> with the deadline: that firing is due, whatever the clock says."""
    grant = world.grant(minutes=90)
    payload = json.loads(world.schedules()[0]["Target"]["Input"])
    assert payload["scheduled_time"] == "<aws.scheduler.scheduled-time>"

    result = world.warden().expire(grant.grant_id, T0 + timedelta(minutes=1), "schedule", scheduled=grant.deadline_at)

    assert result["result"] == "expired" and canonical(world.role()["trust"]) == canonical(BASELINE)


def test_figure_sessions_are_revoked_within_sixty_seconds_through_the_schedule(world) -> None:
    # the one-time schedule fires at the deadline to the second, with no flexible window
    grant = world.grant(minutes=90)
    [schedule] = world.schedules()
    assert schedule["ScheduleExpression"] == f"at({grant.deadline.rstrip('Z')})" and schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    # run as Scheduler runs it, 60 s late: every session issued before the firing is revoked
    fired = grant.deadline_at + timedelta(seconds=60)
    world.warden(clock=lambda: fired).expire(grant.grant_id, fired, "schedule", scheduled=grant.deadline_at)
    revoke = world.role()["inline"]["StagewardenBreakGlassRevokeSessions"]
    issued_at_deadline = {"aws:TokenIssueTime": grant.deadline}
    assert evaluate([revoke], "s3:GetObject", issued_at_deadline) == "Deny"


def test_figure_sessions_are_revoked_within_five_minutes_through_the_sweep(world) -> None:
    from stagewarden.cfn import load_template
    from tests.helpers import ROOT

    sweep = load_template(ROOT / "template.yaml")["Resources"]["BreakGlassSweepSchedule"]["Properties"]
    assert sweep["ScheduleExpression"] == "rate(5 minutes)" and sweep["FlexibleTimeWindow"] == {"Mode": "OFF"}
    grant = world.grant(minutes=30)
    worst = grant.deadline_at + timedelta(minutes=5)  # the schedule lost; the next sweep is at most 5 minutes later

    report = world.warden(clock=lambda: worst).sweep(worst)

    assert report.expired == [grant.grant_id]
    revoke = world.role()["inline"]["StagewardenBreakGlassRevokeSessions"]["Statement"][0]["Condition"]
    assert condition_holds(revoke, {"aws:TokenIssueTime": (worst - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")})


# ------------------------------------------------------------------ figure: double fire
def test_figure_double_fire_expiry_twice_yields_one_record_one_finding_one_review(world) -> None:
    grant = world.grant(minutes=30)
    world.findings()
    after = grant.deadline_at + timedelta(seconds=1)

    first = world.warden().expire(grant.grant_id, after, "schedule", scheduled=grant.deadline_at)
    second = world.warden().expire(grant.grant_id, after, "schedule (redelivered)", scheduled=grant.deadline_at)

    assert first["result"] == "expired" and second["result"] == "already expired"
    assert closed_state(world, grant) == {"records": [(grant.grant_id, "expired")], "reviews": [grant.grant_id],
                                          "findings": ["breakglass.expired"]}


def test_figure_double_fire_schedule_and_sweep_together_yield_one_record_one_finding_one_review(world) -> None:
    grant = world.grant(minutes=30)
    world.findings()
    after = grant.deadline_at + timedelta(seconds=2)

    # When the schedule and the sweep run at the same time, in two threads with their own engines
    with ThreadPoolExecutor(2) as pool:
        schedule = pool.submit(lambda: world.warden().expire(grant.grant_id, after, "schedule", scheduled=grant.deadline_at))
        sweep = pool.submit(lambda: world.warden().sweep(after))
        results = [schedule.result(), sweep.result()]

    # Then exactly one of them closed it
    assert closed_state(world, grant) == {"records": [(grant.grant_id, "expired")], "reviews": [grant.grant_id],
                                          "findings": ["breakglass.expired"]}
    assert sum([results[0]["result"] == "expired", results[1].expired == [grant.grant_id]]) == 1


def test_figure_double_fire_a_closer_that_loses_the_claim_changes_nothing(world) -> None:
    """Interleaved by hand: the sweep arrives while the schedule's run holds the claim mid-close."""
    grant = world.grant(minutes=30)
    world.findings()
    after = grant.deadline_at + timedelta(seconds=1)
    schedule_run = world.warden()
    store = schedule_run.store
    assert store.claim(grant.grant_id, after, 300, "schedule")  # the schedule's run is mid-close
    audit_before = len(world.ddb.scan(TableName=world.audit_table)["Items"])

    result = world.warden().sweep(after)

    assert result.expired == [] and world.items(keys.BREAKGLASS_REVIEWS) == []
    assert len(world.ddb.scan(TableName=world.audit_table)["Items"]) == audit_before  # the loser acted on nothing
    # the schedule's run finishes; one closed record, one finding, one review
    assert schedule_run._close(store.grant(grant.grant_id), after, "schedule", "deadline", "expired")["result"] == "expired"
    assert closed_state(world, grant) == {"records": [(grant.grant_id, "expired")], "reviews": [grant.grant_id],
                                          "findings": ["breakglass.expired"]}


def test_a_dead_closers_claim_runs_out_and_the_sweep_takes_over(world) -> None:
    grant = world.grant(minutes=30)
    after = grant.deadline_at + timedelta(seconds=1)
    assert world.warden().store.claim(grant.grant_id, after, 300, "a run that died")

    assert world.warden().sweep(after + timedelta(minutes=1)).expired == []
    assert world.warden().sweep(after + timedelta(minutes=6)).expired == [grant.grant_id]


# ------------------------------------------------------------------ attacker: replay the schedule
def test_attack_replaying_the_schedule_after_expiry_does_nothing(world) -> None:
    grant = world.grant(minutes=30)
    world.warden().sweep(grant.deadline_at + timedelta(seconds=1))
    world.findings()
    role = world.role()

    replay = world.warden().expire(grant.grant_id, grant.deadline_at + timedelta(hours=1), "replayed", scheduled=grant.deadline_at)

    assert replay["result"] == "already expired" and world.role() == role and world.findings() == []


def test_attack_a_forged_early_firing_is_not_due(world) -> None:
    """A payload whose scheduled time is not the grant's deadline, before the deadline, changes nothing."""
    grant = world.grant(minutes=90)
    before = world.role()

    forged = world.warden().expire(grant.grant_id, T0 + timedelta(minutes=5), "forged", scheduled=T0 + timedelta(minutes=5))
    unsigned = world.warden().expire(grant.grant_id, T0 + timedelta(minutes=5), "by hand")

    assert forged["result"].startswith("not due") and unsigned["result"].startswith("not due") and world.role() == before
    assert world.item(keys.breakglass_record(grant.grant_id))["status"]["S"] == "active"


def test_an_unknown_grant_id_changes_nothing(world) -> None:
    assert world.warden().expire("bg-20261122T080000-ffffff", T0, "schedule")["result"] == "no such grant"


# ------------------------------------------------------------------ early end, reviews
def test_end_closes_a_grant_early_with_a_review(world) -> None:
    grant = world.grant(minutes=90)
    world.findings()

    result = world.warden().end(grant.grant_id, T0 + timedelta(minutes=20), "bob", "fixed")

    assert result["result"] == "ended" and canonical(world.role()["trust"]) == canonical(BASELINE)
    assert world.item(keys.breakglass_record(grant.grant_id))["status"]["S"] == "ended"
    assert json.loads(world.item(keys.breakglass_review(grant.grant_id))["doc"]["S"])["closed_how"] == "ended"
    assert [f["rule"] for f in world.findings()] == ["breakglass.ended"]
    with pytest.raises(Refused, match="already ended"):
        world.warden().end(grant.grant_id, T0 + timedelta(minutes=21), "bob", "again")
    # and the role can be granted again
    world.grant(minutes=30, now=T0 + timedelta(minutes=25))


def test_no_review_record_when_the_stage_asks_for_none(world) -> None:
    from stage_policy.loader import loads

    text = ENFORCED.replace("post_incident_review: true ", "post_incident_review: false ")
    policy = loads(text)
    assert policy.stages["final-prod"].break_glass.post_incident_review is False
    grant = world.grant(minutes=30)

    world.warden(policy=policy).sweep(grant.deadline_at + timedelta(seconds=1))

    assert world.item(keys.breakglass_record(grant.grant_id))["status"]["S"] == "expired"
    assert world.items(keys.BREAKGLASS_REVIEWS) == []


def test_an_open_review_past_its_due_date_raises_review_due_until_done(world) -> None:
    grant = world.grant(minutes=30)
    world.warden().sweep(grant.deadline_at + timedelta(seconds=1))
    world.findings()
    due = grant.deadline_at + timedelta(days=5, seconds=2)

    assert world.warden().sweep(due - timedelta(minutes=1)).reviews_due == []
    assert world.warden().sweep(due).reviews_due == [grant.grant_id]
    assert [f["rule"] for f in world.findings()] == ["breakglass.review-due"]
    world.warden().complete_review(grant.grant_id, "ciso@example.com", "root cause: bad migration", due)
    assert world.warden().sweep(due + timedelta(days=1)).reviews_due == []
    review = world.item(keys.breakglass_review(grant.grant_id))
    assert review["status"]["S"] == "done" and review["reviewed_by"]["S"] == "ciso@example.com"
    with pytest.raises(Refused, match="has no open review"):
        world.warden().complete_review(grant.grant_id, "x", "y", due)


def test_a_closing_whose_finding_did_not_go_out_is_reported_by_the_next_sweep(world) -> None:
    grant = world.grant(minutes=30)
    world.findings()
    warden = world.warden()
    sent = []

    def broken(finding):
        if finding.rule == "breakglass.expired":
            raise RuntimeError("SNS is down")
        sent.append(finding)

    warden.publish = broken
    with pytest.raises(Exception, match="expire .*SNS is down"):
        warden.sweep(grant.deadline_at + timedelta(seconds=1))
    assert world.item(keys.breakglass_record(grant.grant_id))["published"]["BOOL"] is False

    report = world.warden().sweep(grant.deadline_at + timedelta(minutes=5))

    assert report.republished == [grant.grant_id]
    assert [f["rule"] for f in world.findings()] == ["breakglass.expired"]
    assert world.warden().sweep(grant.deadline_at + timedelta(minutes=10)).republished == []


def test_a_failed_close_is_critical_keeps_the_grant_and_is_retried(world) -> None:
    grant = world.grant(minutes=30)
    world.findings()
    after = grant.deadline_at + timedelta(seconds=1)
    broken = world.warden()

    def clients(service: str):
        if service == "iam":
            raise RuntimeError("IAM throttled")
        return boto3.client(service)

    broken.executor._clients = clients

    with pytest.raises(Exception, match="IAM throttled"):
        broken.expire(grant.grant_id, after, "schedule", scheduled=grant.deadline_at)

    assert world.item(keys.breakglass_record(grant.grant_id))["status"]["S"] == "active"  # released for the retry
    assert [f["rule"] for f in world.findings()] == ["breakglass.expiry-failed"]
    assert world.warden().sweep(after + timedelta(minutes=5)).expired == [grant.grant_id]


def test_a_grant_whose_role_was_deleted_still_closes(world) -> None:
    grant = world.grant(minutes=30)
    world.iam.delete_role_policy(RoleName=ROLE, PolicyName="StagewardenBreakGlassDeadline")
    world.iam.delete_role(RoleName=ROLE)

    report = world.warden().sweep(grant.deadline_at + timedelta(seconds=1))

    assert report.expired == [grant.grant_id] and world.schedules() == []
    assert world.item(keys.breakglass_record(grant.grant_id))["status"]["S"] == "expired"
