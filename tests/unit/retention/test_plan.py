"""keeper.plan without AWS: the lifecycle the policy requires, the diff, and which versions a sweep deletes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from keeper.plan import (
    DEFAULT_RULE,
    MARKERS_RULE,
    Entry,
    Sweep,
    audit_conflicts,
    batches,
    lifecycle_diff,
    plan_key,
    required_rules,
)
from stage_policy.loader import load
from stage_policy.model import PrefixClass, Retention
from tests.helpers import ROOT

NOW = datetime(2026, 11, 23, 3, 30, tzinfo=timezone.utc)
LAB = Retention(default_days=90, noncurrent_version_days=7,
                prefix_classes=(PrefixClass(prefix="raw/", days=30), PrefixClass(prefix="aggregated/", days=90)))
PROD = Retention(permanent=True, immutable=True)


def v(key: str, age_days: float, latest: bool = False, **kw) -> Entry:
    return Entry(key, f"v{age_days}", NOW - timedelta(days=age_days), latest, **kw)


def m(key: str, age_days: float, latest: bool = False) -> Entry:
    return Entry(key, f"m{age_days}", NOW - timedelta(days=age_days), latest, marker=True)


def ids(entries) -> list[str]:
    return [e.version_id for e in entries]


# ---------------------------------------------------------------- required lifecycle
def test_the_lab_requires_a_default_rule_one_rule_per_class_and_the_delete_marker_rule() -> None:
    rules = {r["ID"]: r for r in required_rules(LAB)}

    assert list(rules) == [DEFAULT_RULE, "stagewarden-class-raw/", "stagewarden-class-aggregated/", MARKERS_RULE]
    assert rules[DEFAULT_RULE] == {
        "ID": DEFAULT_RULE, "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 90},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 7}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}
    assert rules["stagewarden-class-raw/"]["Filter"] == {"Prefix": "raw/"} and rules["stagewarden-class-raw/"]["Expiration"] == {"Days": 30}
    assert rules[MARKERS_RULE]["Expiration"] == {"ExpiredObjectDeleteMarker": True} and "Days" not in rules[MARKERS_RULE]["Expiration"]


def test_a_permanent_stage_requires_no_rule() -> None:
    assert required_rules(PROD) == []


def test_without_noncurrent_days_old_versions_live_as_long_as_their_class() -> None:
    rules = {r["ID"]: r for r in required_rules(Retention(default_days=60, prefix_classes=(PrefixClass(prefix="raw/", days=20),)))}

    assert rules[DEFAULT_RULE]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 60}
    assert rules["stagewarden-class-raw/"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 20}


def test_abort_multipart_days_is_read_from_the_policy() -> None:
    rules = required_rules(Retention(default_days=30, abort_multipart_days=2))
    assert rules[0]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}


# ---------------------------------------------------------------- diff
def test_a_bucket_at_policy_has_no_drift_even_in_legacy_spelling() -> None:
    actual = [dict(r) for r in required_rules(LAB)]
    actual[0] = {k: v for k, v in actual[0].items() if k != "Filter"} | {"Prefix": ""}  # legacy top-level Prefix

    diff = lifecycle_diff(LAB, actual, floor_days=7)

    assert not diff.drifted and diff.summary() == "none"


def test_owner_rules_for_other_purposes_are_kept_exactly() -> None:
    transition = {"ID": "archive", "Status": "Enabled", "Filter": {"Prefix": "archive/"},
                  "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}
    longer = {"ID": "owner-keep-less-long", "Status": "Enabled", "Filter": {"Prefix": "raw/tmp/"}, "Expiration": {"Days": 45}}

    diff = lifecycle_diff(LAB, [transition, longer], floor_days=7)

    assert diff.desired[:2] == [transition, longer] and diff.conflicts == []
    assert diff.missing == [r["ID"] for r in required_rules(LAB)] and diff.severity == "medium"


def test_a_managed_rule_shortened_is_a_high_drift_and_its_fields_are_named() -> None:
    actual = [dict(r) for r in required_rules(LAB)]
    actual[1] = {**actual[1], "Expiration": {"Days": 10}}

    diff = lifecycle_diff(LAB, actual, floor_days=7)

    assert diff.changed == [{"id": "stagewarden-class-raw/", "fields": [{"field": "Expiration.Days", "actual": 10, "required": 30}]}]
    assert diff.severity == "high" and "Expiration.Days 10 -> 30" in diff.summary()
    assert [r for r in diff.desired if r["ID"] == "stagewarden-class-raw/"][0]["Expiration"] == {"Days": 30}


def test_an_owner_rule_expiring_a_managed_prefix_below_the_floor_is_critical_and_loses_only_its_expiration() -> None:
    rule = {"ID": "cleanup", "Status": "Enabled", "Filter": {"And": {"Prefix": "aggregated/", "Tags": [{"Key": "t", "Value": "1"}]}},
            "Expiration": {"Days": 2}, "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}

    diff = lifecycle_diff(LAB, [rule], floor_days=7)

    assert [(c.rule_id, c.action, c.severity) for c in diff.conflicts] == [("cleanup", "Expiration", "critical")]
    kept = next(r for r in diff.desired if r["ID"] == "cleanup")
    assert "Expiration" not in kept and kept["Transitions"] == rule["Transitions"] and kept["Filter"] == rule["Filter"]
    assert diff.stripped == ["cleanup: Expiration"]


def test_an_owner_rule_spanning_classes_conflicts_with_the_longest_one() -> None:
    # 45 days on every key: raw/ keeps 30 (S3 applies the shorter policy rule), aggregated/ and the rest keep 90
    every = {"ID": "all-45", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 45}}
    raw_only = {"ID": "raw-45", "Status": "Enabled", "Filter": {"Prefix": "raw/"}, "Expiration": {"Days": 45}}

    diff = lifecycle_diff(LAB, [every, raw_only], floor_days=7)

    assert [(c.rule_id, c.severity) for c in diff.conflicts] == [("all-45", "high")]
    assert "the policy keeps it 90" in diff.conflicts[0].problem
    noncurrent = {"ID": "nc-3", "Status": "Enabled", "Filter": {"Prefix": "raw/"}, "NoncurrentVersionExpiration": {"NoncurrentDays": 3}}
    diff = lifecycle_diff(LAB, [noncurrent], floor_days=7)
    assert [(c.action, c.severity) for c in diff.conflicts] == [("NoncurrentVersionExpiration", "critical")]
    assert all(r["ID"] != "nc-3" for r in diff.desired)  # nothing else left: the rule goes


def test_a_disabled_owner_rule_is_no_conflict() -> None:
    rule = {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}
    assert lifecycle_diff(LAB, [rule], floor_days=7).conflicts == []


def test_any_expiration_on_a_permanent_stage_is_critical_and_removed() -> None:
    rules = [{"ID": "oops", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 3650}},
             {"ID": "archive", "Status": "Enabled", "Filter": {"Prefix": ""}, "Transitions": [{"Days": 90, "StorageClass": "GLACIER"}],
              "NoncurrentVersionExpiration": {"NoncurrentDays": 400}},
             {"ID": "stagewarden-default", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 90}}]

    diff = lifecycle_diff(PROD, rules, floor_days=7)

    assert {c.severity for c in diff.conflicts} == {"critical"} and diff.extra == ["stagewarden-default"]
    assert diff.desired == [{"ID": "archive", "Status": "Enabled", "Filter": {"Prefix": ""},
                             "Transitions": [{"Days": 90, "StorageClass": "GLACIER"}]}]


def test_an_expiration_date_is_always_a_conflict() -> None:
    rule = {"ID": "d", "Status": "Enabled", "Filter": {"Prefix": "raw/"}, "Expiration": {"Date": "2027-01-01T00:00:00Z"}}
    assert [c.severity for c in lifecycle_diff(LAB, [rule], floor_days=7).conflicts] == ["critical"]


def test_audit_buckets_flag_rules_deleting_logs_sooner_than_the_audit_retention() -> None:
    rules = [{"ID": "a", "Status": "Enabled", "Filter": {"Prefix": "AWSLogs/"}, "Expiration": {"Days": 30}},
             {"ID": "b", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 400}},
             {"ID": "c", "Status": "Enabled", "Filter": {"Prefix": ""}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]

    problems = audit_conflicts(rules, 365)

    assert len(problems) == 2 and "rule a expires prefix 'AWSLogs/' after 30 days" in problems[0] and "rule c" in problems[1]


# ---------------------------------------------------------------- the example policy
def test_the_example_policy_classes_fit_under_the_default() -> None:
    policy = load(ROOT / "policy.example.yaml")
    lab = policy.stages["prod-discovery"].retention
    assert [r["Expiration"] for r in required_rules(lab)][:3] == [{"Days": 90}, {"Days": 30}, {"Days": 90}]


# ---------------------------------------------------------------- sweep: one key
def test_an_expired_current_version_takes_every_version_and_marker_with_it() -> None:
    entries = [v("raw/a", 31, latest=True), m("raw/a", 40), v("raw/a", 50)]

    plan = plan_key(entries, LAB, NOW, lock_enabled=False)

    assert ids(plan.delete) == ["v50", "m40", "v31"] and not plan.hide  # oldest first


def test_a_current_version_inside_retention_stays_and_old_versions_go_by_noncurrent_days() -> None:
    # v5 replaced v20 five days ago (not yet 7); v20 replaced v40 twenty days ago (past 7)
    entries = [v("raw/a", 5, latest=True), v("raw/a", 20), v("raw/a", 40)]

    plan = plan_key(entries, LAB, NOW, lock_enabled=False)

    assert ids(plan.delete) == ["v40"]


def test_noncurrent_age_counts_from_the_replacement_not_from_creation() -> None:
    entries = [v("other/x", 6, latest=True), v("other/x", 80)]  # 80 days old, but noncurrent only for 6
    assert plan_key(entries, LAB, NOW, lock_enabled=False).delete == []


def test_a_delete_marker_with_nothing_behind_it_goes_and_one_hiding_data_stays() -> None:
    lone = plan_key([m("raw/gone", 1, latest=True)], LAB, NOW, lock_enabled=False)
    hiding = plan_key([m("raw/b", 1, latest=True), v("raw/b", 3)], LAB, NOW, lock_enabled=False)
    emptied = plan_key([m("raw/c", 9, latest=True), v("raw/c", 20)], LAB, NOW, lock_enabled=False)

    assert ids(lone.delete) == ["m1"] and hiding.delete == [] and ids(emptied.delete) == ["v20", "m9"]


@pytest.mark.parametrize("lock", [{"legal_hold": True, "lock_read": True},
                                  {"retain_until": NOW + timedelta(days=1), "lock_read": True},
                                  {"lock_read": False}])
def test_held_locked_and_unverified_versions_are_never_deleted(lock) -> None:
    entries = [v("raw/h", 40, latest=True, lock_read=True), v("raw/h", 60, **lock)]

    plan = plan_key(entries, LAB, NOW, lock_enabled=True)

    assert ids(plan.delete) == ["v40"] and plan.hide  # a delete marker goes on top first: the kept version stays hidden
    assert sum(plan.kept.values()) == 1


def test_an_expired_object_lock_retention_no_longer_protects() -> None:
    entries = [v("raw/r", 40, latest=True, retain_until=NOW - timedelta(days=1), lock_read=True)]
    assert ids(plan_key(entries, LAB, NOW, lock_enabled=True).delete) == ["v40"]


def test_nothing_in_a_permanent_stage_is_ever_due() -> None:
    entries = [v("raw/a", 4000, latest=True), m("raw/a", 5000), v("raw/a", 6000)]
    assert plan_key(entries, PROD, NOW, lock_enabled=False).delete == []


# ---------------------------------------------------------------- sweep: the budget
def test_the_cap_stops_part_way_through_a_key_oldest_first_and_keeps_the_current_version() -> None:
    sweep = Sweep(LAB, NOW, cap=2, mode="enforce")
    sweep.feed([v("raw/a", 31, latest=True), v("raw/a", 40), v("raw/a", 50)])

    assert ids(sweep.delete) == ["v50", "v40"] and sweep.tally.capped and sweep.tally.deferred == 1
    assert sweep.last_complete_key is None and sweep.full


def test_dry_run_plans_the_same_deletions_into_the_report_only() -> None:
    sweep = Sweep(LAB, NOW, cap=10, mode="dry_run")
    sweep.feed([v("raw/a", 31, latest=True)])

    assert sweep.delete == [] and ids(sweep.report) == ["v31"]


def test_delete_batches_hold_at_most_1000_keys() -> None:
    entries = [v(f"raw/{i}", 40, latest=True) for i in range(2500)]
    assert [len(b) for b in batches(entries)] == [1000, 1000, 500]


def test_a_key_listed_without_its_current_entry_is_never_planned() -> None:
    assert plan_key([v("raw/a", 400), v("raw/a", 500)], LAB, NOW, lock_enabled=False).delete == []
