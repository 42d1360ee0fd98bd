"""Red team on retention (issue 10): what an attacker or a careless admin would try against the lifecycle and the sweep.

Passing tests are attempts that are caught; a strict xfail is a weakness still open, its reason exact.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from contextlib import contextmanager
from typing import Iterator

import boto3
import pytest

from keeper.plan import Entry, lifecycle_diff, plan_key
from stage_policy.model import Retention
from stagewarden.invoke import function_spec, invoke
from tests.helpers import ROOT, drain, seed_policy_in_process
from tests.unit.retention.conftest import LAB, PROD, PROD_ENFORCE, event, policy_variant, rules, versions, written_days_ago

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
LAB_RETENTION = Retention(default_days=90, noncurrent_version_days=7,
                          prefix_classes=[{"prefix": "raw/", "days": 30}, {"prefix": "aggregated/", "days": 90}])
PERMANENT = Retention(permanent=True, immutable=True)
EXPIRING = ("Expiration", "NoncurrentVersionExpiration")


@contextmanager
def after_call(operation: str, action) -> Iterator[list]:
    """Fault injection over moto: run ``action`` once, right after the function's first ``operation`` call.

    The function's modules are imported fresh on each invoke, so patching its classes would not reach it;
    its boto3 clients come from the default session, whose event hooks they copy when created.
    """
    session = boto3._get_default_session()
    fired: list = []

    def hook(**_):
        if not fired:
            fired.append(operation)
            action()

    session.events.register(f"after-call.s3.{operation}", hook, unique_id=f"redteam-{operation}")
    try:
        yield fired
    finally:
        session.events.unregister(f"after-call.s3.{operation}", unique_id=f"redteam-{operation}")


def run(stack, evt: dict):
    return invoke(function_spec(ROOT / "template.yaml", "RetentionFunction", stack), evt)


def schedule(day: int = 23) -> dict:
    from tests.unit.retention.test_app import schedule as daily

    return daily(day)


def deletes_data(rule: dict) -> bool:
    exp = rule.get("Expiration") or {}
    return bool(exp.get("Days") is not None or exp.get("Date") is not None or rule.get("NoncurrentVersionExpiration"))


# ---------------------------------------------------------------- a lifecycle tampered to expire prod
PROD_TAMPER = {
    "a rule spoofing Stagewarden's own ID": {"ID": "stagewarden-default", "Status": "Enabled", "Filter": {"Prefix": ""},
                                             "Expiration": {"Days": 1}},
    "an upper-case look-alike ID": {"ID": "STAGEWARDEN-default", "Status": "Enabled", "Filter": {"Prefix": ""},
                                    "Expiration": {"Days": 1}},
    "a tag filter": {"ID": "tidy", "Status": "Enabled", "Filter": {"Tag": {"Key": "tmp", "Value": "1"}}, "Expiration": {"Days": 1}},
    "a size filter": {"ID": "tidy", "Status": "Enabled", "Filter": {"ObjectSizeGreaterThan": 0}, "Expiration": {"Days": 1}},
    "an And filter with an empty prefix": {"ID": "tidy", "Status": "Enabled",
                                           "Filter": {"And": {"Prefix": "", "Tags": [{"Key": "a", "Value": "b"}]}},
                                           "Expiration": {"Days": 400}},
    "a legacy top-level prefix": {"ID": "tidy", "Status": "Enabled", "Prefix": "", "Expiration": {"Days": 3650}},
    "an expiry date": {"ID": "tidy", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Date": "2027-01-01T00:00:00Z"}},
    "old versions only, keeping the newest one": {"ID": "tidy", "Status": "Enabled", "Filter": {"Prefix": "published/"},
                                                  "NoncurrentVersionExpiration": {"NoncurrentDays": 1,
                                                                                  "NewerNoncurrentVersions": 1}},
}


@pytest.mark.parametrize("rule", list(PROD_TAMPER.values()), ids=list(PROD_TAMPER))
def test_any_rule_that_deletes_prod_data_is_critical_and_loses_its_expiry(rule) -> None:
    diff = lifecycle_diff(PERMANENT, [rule], floor_days=7)
    assert diff.drifted and any(c.severity == "critical" for c in diff.conflicts)
    assert not any(deletes_data(r) for r in diff.desired)


def test_transitions_on_prod_are_the_owners_and_stay() -> None:
    archive = {"ID": "archive", "Status": "Enabled", "Filter": {"Prefix": ""},
               "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}], "Expiration": {"Days": 1}}
    diff = lifecycle_diff(PERMANENT, [archive], floor_days=7)
    assert diff.desired == [{k: v for k, v in archive.items() if k != "Expiration"}]


@pytest.mark.parametrize("prefix, days, severity", [("raw", 30, "high"), ("raw/", 10, "high"), ("raw/", 3, "critical"),
                                                    ("", 60, "high")])
def test_an_owner_rule_on_a_lab_prefix_expiring_sooner_than_the_policy_is_defused(prefix, days, severity) -> None:
    # "raw" (no slash) also covers rawfoo/, which the default keeps 90 days
    rule = {"ID": "owner", "Status": "Enabled", "Filter": {"Prefix": prefix}, "Expiration": {"Days": days}}
    diff = lifecycle_diff(LAB_RETENTION, [rule], floor_days=7)
    assert diff.severity == severity
    assert not any(r.get("ID") == "owner" for r in diff.desired)


def test_scenario_a_spoofed_stagewarden_rule_expiring_prod_is_removed_by_the_event(lab, tmp_path) -> None:
    seed_policy_in_process(lab, policy_variant(tmp_path, PROD_ENFORCE))
    boto3.client("s3").put_bucket_lifecycle_configuration(Bucket=PROD, LifecycleConfiguration={"Rules": [
        PROD_TAMPER["a rule spoofing Stagewarden's own ID"], PROD_TAMPER["a tag filter"]]})

    run(lab, event("put_bucket_lifecycle.eventbridge.json", bucketName=PROD))

    assert rules(PROD) == {}
    [finding] = [f for f in drain(lab.inbox) if f["rule"] == "retention.permanent-expiry"]
    assert finding["severity"] == "critical" and finding["principal"].endswith("/alice@example.com")


# ---------------------------------------------------------------- the stage a bucket is in
def test_a_refused_delete_of_an_audit_buckets_lifecycle_does_not_claim_it_was_deleted(lab) -> None:
    # Given the trail bucket keeps its lifecycle: mallory's DeleteBucketLifecycle was refused
    trail = lab.refs["CloudTrailLogBucket"]
    evt = event("delete_bucket_lifecycle.eventbridge.json", bucketName=trail)
    evt["detail"].update(errorCode="AccessDenied", errorMessage="Access Denied")

    run(lab, evt)

    # Then the bucket is re-read and found intact: no "lifecycle deleted" alarm
    assert [f for f in drain(lab.inbox) if f["rule"] == "audit.tamper"] == []


def test_retagging_a_tag_only_prod_bucket_as_lab_puts_no_expiry_on_it(lab, tmp_path) -> None:
    seed_policy_in_process(lab, policy_variant(tmp_path, PROD_ENFORCE))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="published-results")  # no name pattern: final-prod by its tag only
    s3.put_bucket_versioning(Bucket="published-results", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_tagging(Bucket="published-results", Tagging={"TagSet": [{"Key": "stagewarden:stage", "Value": "final-prod"}]})
    with written_days_ago(400):
        s3.put_object(Bucket="published-results", Key="raw/paper.csv", Body=b"1")
        s3.put_object(Bucket="published-results", Key="raw/paper.csv", Body=b"2")
    run(lab, event("put_bucket_tagging.eventbridge.json", bucketName="published-results"))
    assert rules("published-results") == {}  # held as final prod
    drain(lab.inbox)

    # When someone retags it as the lab (its own PutBucketTagging event)
    s3.put_bucket_tagging(Bucket="published-results", Tagging={"TagSet": [{"Key": "stagewarden:stage", "Value": "prod-discovery"}]})
    retag = event("put_bucket_tagging.eventbridge.json", bucketName="published-results")
    retag["id"], retag["detail"]["eventID"] = retag["id"][:-4] + "0bad", retag["detail"]["eventID"][:-4] + "0bad"
    run(lab, retag)

    # Then no expiry lands on production data, and the retag is critical, naming who did it
    assert not any(deletes_data(r) for r in rules("published-results").values())
    [finding] = [f for f in drain(lab.inbox) if f["rule"] == "retention.stage-downgrade"]
    assert finding["severity"] == "critical" and finding["principal"].endswith("/alice@example.com")
    assert finding["stage"] == "final-prod" and "stagewarden retention restage --bucket published-results" in finding["summary"]

    # And the daily sweep deletes nothing from it, however old
    run(lab, schedule())
    assert versions("published-results") == [("raw/paper.csv", False), ("raw/paper.csv", False)]
    assert rules("published-results") == {}


def test_a_bucket_retagged_permanent_while_it_is_swept_loses_nothing(lab) -> None:
    s3 = boto3.client("s3")
    with written_days_ago(45):
        s3.put_object(Bucket=LAB, Key="raw/old.csv", Body=b"x")
    admin = boto3.client("s3")

    # When an admin tags the bucket final-prod right after the sweep listed it
    with after_call("ListObjectVersions", lambda: admin.put_bucket_tagging(Bucket=LAB, Tagging={"TagSet": [
            {"Key": "stagewarden:stage", "Value": "final-prod"}]})) as fired:
        run(lab, schedule())
    assert fired

    # Then nothing is deleted from what is now a permanent bucket, and the finding says the deletion was skipped, why
    assert versions(LAB) == [("raw/old.csv", False)]
    [swept] = [f for f in drain(lab.inbox) if f["rule"] == "retention.swept"]
    assert swept["action"].startswith("skipped: would delete 1 version(s)")
    assert "now maps to stage final-prod, not prod-discovery" in swept["action"]


def test_a_retag_between_two_deletion_requests_stops_the_rest_of_the_bucket_sweep(lab, tmp_path) -> None:
    import moto.s3.models as s3_models

    # Given 1,001 expired versions: two DeleteObjects requests (seeded through moto's backend: 1,001 PUTs are slow)
    seed_policy_in_process(lab, policy_variant(tmp_path, ("max_deletions_per_run: 1000", "max_deletions_per_run: 2000")))
    backend = s3_models.s3_backends[lab.account_id]["aws"]
    with written_days_ago(45):
        for i in range(1001):
            backend.put_object(LAB, f"raw/{i:04d}.csv", b"x")
    admin = boto3.client("s3")

    # When the bucket is moved to another stage (integration keeps data longer) right after the first request
    with after_call("DeleteObjects", lambda: admin.put_bucket_tagging(Bucket=LAB, Tagging={"TagSet": [
            {"Key": "stagewarden:stage", "Value": "prod-integration"}]})) as fired:
        run(lab, schedule())
    assert fired

    # Then the first request's 1,000 are gone, the second request was never sent, and the ledger says why
    assert versions(LAB) == [("raw/1000.csv", False)]
    [swept] = [f for f in drain(lab.inbox) if f["rule"] == "retention.swept"]
    assert swept["evidence"]["actions"][0].startswith("deleted 1000 version(s)")
    assert swept["evidence"]["actions"][1].startswith("skipped: would delete 1 version(s)")
    assert "now maps to stage prod-integration" in swept["evidence"]["actions"][1]
    statuses = [(i["action"]["S"], i["status"]["S"]) for i in boto3.client("dynamodb").scan(TableName=lab.refs["AuditTable"])["Items"]]
    assert sorted(s for s in statuses if s[0] == "delete-versions") == [("delete-versions", "done"), ("delete-versions", "skipped")]


def test_a_sweep_stopped_by_a_retag_does_not_move_its_marker(lab, tmp_path) -> None:
    # Given a cap of 2 over 3 expired versions: the sweep would continue after raw/1.csv next run
    seed_policy_in_process(lab, policy_variant(tmp_path, ("max_deletions_per_run: 1000", "max_deletions_per_run: 2")))
    s3 = boto3.client("s3")
    with written_days_ago(45):
        for i in range(3):
            s3.put_object(Bucket=LAB, Key=f"raw/{i}.csv", Body=b"x")

    # When the bucket is tagged final-prod after the listing
    with after_call("ListObjectVersions", lambda: s3.put_bucket_tagging(Bucket=LAB, Tagging={"TagSet": [
            {"Key": "stagewarden:stage", "Value": "final-prod"}]})):
        run(lab, schedule())

    # Then nothing is deleted and no marker claims keys were swept (back in the lab, its next sweep starts at the top)
    assert len(versions(LAB)) == 3
    assert "Item" not in boto3.client("dynamodb").get_item(TableName=lab.refs["StateTable"],
                                                           Key={"pk": {"S": f"retention#sweep#{LAB}"}, "sk": {"S": "marker"}})


def test_a_tag_change_that_keeps_the_stage_does_not_stop_the_sweep(lab) -> None:
    s3 = boto3.client("s3")
    with written_days_ago(45):
        s3.put_object(Bucket=LAB, Key="raw/old.csv", Body=b"x")

    # When the owner tags the lab bucket with the stage its name already gives it, mid-sweep
    with after_call("ListObjectVersions", lambda: s3.put_bucket_tagging(Bucket=LAB, Tagging={"TagSet": [
            {"Key": "stagewarden:stage", "Value": "prod-discovery"}]})) as fired:
        run(lab, schedule())

    # Then the sweep goes on: the re-check is of the stage, not of the tag's text
    assert fired and versions(LAB) == []


# ---------------------------------------------------------------- versions the sweep must keep
def entry(key: str, days_ago: float, latest: bool = False, marker: bool = False, hold: bool = False) -> Entry:
    return Entry(key, f"v{days_ago}{'m' if marker else ''}", NOW - timedelta(days=days_ago), latest, marker, hold, None, True)


def test_a_held_version_behind_an_expired_object_is_kept_and_hidden_behind_a_new_marker() -> None:
    key = [entry("raw/a.csv", 40, latest=True), entry("raw/a.csv", 50, hold=True), entry("raw/a.csv", 60)]
    plan = plan_key(key, LAB_RETENTION, NOW, lock_enabled=True)
    assert [e.version_id for e in plan.delete] == ["v60", "v40"] and plan.hide and plan.kept == {"legal-hold": 1}


def test_a_current_delete_marker_hiding_a_held_version_is_never_removed() -> None:
    # an attacker deletes a held object (a marker) hoping the sweep clears the marker and exposes the held data
    key = [entry("raw/a.csv", 100, latest=True, marker=True), entry("raw/a.csv", 120, hold=True)]
    plan = plan_key(key, LAB_RETENTION, NOW, lock_enabled=True)
    assert plan.delete == [] and plan.kept == {"legal-hold": 1}


def test_a_version_dated_in_the_future_is_not_due() -> None:
    key = [entry("raw/a.csv", -400, latest=True), entry("raw/a.csv", -500)]
    assert plan_key(key, LAB_RETENTION, NOW, lock_enabled=False).delete == []


def test_an_unverified_lock_state_keeps_the_version() -> None:
    unread = Entry("raw/a.csv", "v1", NOW - timedelta(days=45), True)  # lock_read False: HeadObject refused
    plan = plan_key([unread], LAB_RETENTION, NOW, lock_enabled=True)
    assert plan.delete == [] and plan.kept == {"unverified": 1}


def test_nothing_in_prod_is_ever_swept_even_ten_years_on(lab, tmp_path) -> None:
    seed_policy_in_process(lab, policy_variant(tmp_path, PROD_ENFORCE))
    s3 = boto3.client("s3")
    s3.put_bucket_versioning(Bucket=PROD, VersioningConfiguration={"Status": "Enabled"})
    with written_days_ago(3650):
        s3.put_object(Bucket=PROD, Key="published/old.csv", Body=b"1")
        s3.put_object(Bucket=PROD, Key="published/old.csv", Body=b"2")
        s3.delete_object(Bucket=PROD, Key="published/old.csv")

    run(lab, schedule())

    assert versions(PROD) == [("published/old.csv", False), ("published/old.csv", False), ("published/old.csv", True)]
    assert not [f for f in drain(lab.inbox) if f["rule"] == "retention.swept" and PROD in f["resource"]]


# ---------------------------------------------------------------- dry run, the ceiling and the cap
def test_the_deployment_ceiling_dry_run_deletes_nothing_in_an_enforce_stage(lab) -> None:
    lab.parameters["DefaultRemediationMode"] = "dry_run"
    s3 = boto3.client("s3")
    with written_days_ago(45):
        s3.put_object(Bucket=LAB, Key="raw/old.csv", Body=b"x")

    run(lab, schedule())

    assert versions(LAB) == [("raw/old.csv", False)] and rules(LAB) == {}
    swept = next(f for f in drain(lab.inbox) if f["rule"] == "retention.swept")
    assert swept["summary"].startswith("Dry run: would delete 1 version(s)")


def test_a_cap_of_zero_deletes_nothing_and_says_so(lab, tmp_path) -> None:
    seed_policy_in_process(lab, policy_variant(tmp_path, ("max_deletions_per_run: 1000", "max_deletions_per_run: 0")))
    s3 = boto3.client("s3")
    with written_days_ago(45):
        s3.put_object(Bucket=LAB, Key="raw/old.csv", Body=b"x")

    run(lab, schedule())

    assert versions(LAB) == [("raw/old.csv", False)]
    assert any(f["rule"] == "retention.cap-reached" for f in drain(lab.inbox))


def test_the_cap_holds_across_buckets_in_one_run(lab, tmp_path) -> None:
    seed_policy_in_process(lab, policy_variant(tmp_path, ("max_deletions_per_run: 1000", "max_deletions_per_run: 3")))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="acme-lab-more")
    s3.put_bucket_versioning(Bucket="acme-lab-more", VersioningConfiguration={"Status": "Enabled"})
    with written_days_ago(45):
        for bucket in (LAB, "acme-lab-more"):
            for i in range(2):
                s3.put_object(Bucket=bucket, Key=f"raw/{i}.csv", Body=b"x")

    run(lab, schedule())

    left = len(versions(LAB)) + len(versions("acme-lab-more"))
    assert left == 4 - 3


def test_a_replayed_schedule_event_does_not_sweep_again_past_the_cap(lab, tmp_path) -> None:
    seed_policy_in_process(lab, policy_variant(tmp_path, ("max_deletions_per_run: 1000", "max_deletions_per_run: 1")))
    s3 = boto3.client("s3")
    with written_days_ago(45):
        for i in range(3):
            s3.put_object(Bucket=LAB, Key=f"raw/{i}.csv", Body=b"x")
    evt = schedule()

    run(lab, evt)
    run(lab, evt)  # the same delivery again (EventBridge retries at least once)

    assert len(versions(LAB)) == 2
