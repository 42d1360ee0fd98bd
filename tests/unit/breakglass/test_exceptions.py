"""Time-boxed exceptions: a read-only, self-expiring Allow on the principal's role, a register, reviews, expiry."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from warden.engine import SweepReport
from warden.rules import Refused
from warden.timeboxed import grant_exception, register_rows, sweep_exceptions

from stage_policy import keys
from tests.unit.breakglass.conftest import ALICE, T0, condition_holds, evaluate

BUCKET = "acme-prod-raw-events"
CTO = "cto@example.com"


def grant(world, until=None, **kw):
    args = dict(bucket=BUCKET, principal=ALICE, approver=CTO, until=until or T0 + timedelta(days=60),
                reason="fraud model needs raw click data", owner="alice@example.com", now=T0,
                requested_by="arn:aws:sts::123456789012:assumed-role/Operator/bob")
    args.update(kw)
    return grant_exception(world.warden(), **args)


def test_scenario_exception_lifecycle_grant_register_review_expiry(world) -> None:
    # Given the CTO's approval for 60 days of read access to a raw bucket
    exc = grant(world)

    # Then the role carries a read-only Allow on that bucket that IAM ends by itself at the expiry
    inline = world.role("DataScientistAlice")["inline"]
    document = inline[exc.policy_name]
    st = document["Statement"][0]
    assert st["Effect"] == "Allow" and st["Action"] == ["s3:Get*", "s3:List*"]
    assert st["Resource"] == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
    assert st["Condition"] == {"DateLessThan": {"aws:CurrentTime": "2027-01-21T08:00:00Z"}}
    assert evaluate([document], "s3:GetObject", {"aws:CurrentTime": "2027-01-21T07:59:59Z"}) == "Allow"
    assert evaluate([document], "s3:GetObject", {"aws:CurrentTime": "2027-01-21T08:00:01Z"}) == "ImplicitDeny"
    assert evaluate([document], "s3:PutObject", {"aws:CurrentTime": "2027-01-01T00:00:00Z"}) == "ImplicitDeny"
    # and the register holds owner, approver, reason, expiry and next review (30 days in the example policy)
    [row] = register_rows(world.warden().store.exceptions(), T0)
    assert {k: row[k] for k in ("owner", "approver", "reason", "until", "next_review", "status")} == {
        "owner": "alice@example.com", "approver": CTO, "reason": "fraud model needs raw click data",
        "until": "2027-01-21T08:00:00Z", "next_review": "2026-12-22T08:00:00Z", "status": "active"}
    assert [f["rule"] for f in world.findings()] == ["exception.granted"]

    # When the sweep runs at the review date, then after the expiry
    report = SweepReport(as_of="")
    sweep_exceptions(world.warden(), T0 + timedelta(days=30), report)
    assert report.exception_reviews_due == [exc.exception_id]
    assert [f["rule"] for f in world.findings()] == ["exception.review-due"]
    report = SweepReport(as_of="")
    sweep_exceptions(world.warden(), T0 + timedelta(days=60, seconds=1), report)

    # Then the Allow is gone, the register says expired, one finding
    assert report.exceptions_expired == [exc.exception_id]
    assert exc.policy_name not in world.role("DataScientistAlice")["inline"]
    item = world.item(keys.exception_record(exc.exception_id))
    assert item["status"]["S"] == "expired"
    assert [f["rule"] for f in world.findings()] == ["exception.expired"]


def test_a_review_is_due_once_per_interval_however_many_sweeps_run(world) -> None:
    exc = grant(world, until=T0 + timedelta(days=90))
    world.findings()
    warden = world.warden()

    dues = []
    for day in (29, 30, 30, 31, 45, 60, 60, 75, 89):
        report = SweepReport(as_of="")
        sweep_exceptions(warden, T0 + timedelta(days=day, seconds=1), report)
        dues += report.exception_reviews_due

    assert dues == [exc.exception_id, exc.exception_id]  # day 30 and day 60, once each
    assert [f["rule"] for f in world.findings()] == ["exception.review-due"] * 2
    assert json.loads(world.item(keys.exception_record(exc.exception_id))["reviews"]["N"]) == 2


def test_expiring_twice_gives_one_finding(world) -> None:
    exc = grant(world)
    world.findings()
    after = T0 + timedelta(days=61)

    for _ in range(2):
        sweep_exceptions(world.warden(), after, SweepReport(as_of=""))

    assert [f["rule"] for f in world.findings()] == ["exception.expired"]
    assert world.item(keys.exception_record(exc.exception_id))["status"]["S"] == "expired"


@pytest.mark.parametrize("change, says", [
    (dict(approver="vp-engineering@example.com"), "approver 'vp-engineering@example.com' is not in exceptions.approvers"),
    (dict(until=T0 + timedelta(days=91)), "is more than exceptions.max_days (90) away"),
    (dict(until=T0 - timedelta(days=1)), "is not in the future"),
    (dict(bucket="acme-lab-data"), "bucket acme-lab-data is not in exceptions.buckets (acme-prod-raw-*, acme-uat-raw-*)"),
    (dict(principal="arn:aws:iam::123456789012:user/alice"), "is not an IAM role ARN"),
    (dict(principal="arn:aws:iam::123456789012:role/Nobody"), "role Nobody does not exist"),
    (dict(principal="arn:aws:iam::123456789012:role/stagewarden-local-breakglassfunctionexpiryrole"), "Stagewarden stack"),
    (dict(reason="  "), "the reason is missing"),
    (dict(principal="arn:aws:iam::123456789012:role/OnCallEngineer"), "carries no stagewarden:stage tag"),
], ids=["approver", "too-long", "past", "bucket", "user", "missing-role", "own-role", "no-reason", "untagged"])
def test_exception_refusals_change_nothing(world, change, says) -> None:
    before = world.role("DataScientistAlice")

    with pytest.raises(Refused) as refused:
        grant(world, **change)

    assert says in str(refused.value)
    assert world.role("DataScientistAlice") == before and world.all_items() == [] and world.findings() == []


def test_a_second_exception_for_the_same_bucket_and_principal_is_refused(world) -> None:
    first = grant(world)
    with pytest.raises(Refused, match=f"already has exception {first.exception_id}"):
        grant(world)


def test_the_expiry_is_iam_enforced_even_if_no_sweep_ever_runs(world) -> None:
    exc = grant(world, until=T0 + timedelta(days=1))
    st = world.role("DataScientistAlice")["inline"][exc.policy_name]["Statement"][0]
    assert condition_holds(st["Condition"], {"aws:CurrentTime": "2026-11-23T07:59:59Z"})
    assert not condition_holds(st["Condition"], {"aws:CurrentTime": "2026-11-23T08:00:01Z"})
