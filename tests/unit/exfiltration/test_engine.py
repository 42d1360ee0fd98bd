"""The detection engine over records: windowed rules per session, every read path, decisions per stage, the corpus."""

from __future__ import annotations

import io
import random
from datetime import datetime, timedelta, timezone

import pytest
from exfil.deployment import Deployment
from exfil.engine import Detector, MemoryWindowStore
from exfil.reader import ReadStats, iter_batches
from exfil.windows import DeltaMemoryWindowStore, worst_window

from stage_policy.executor import effective_mode
from stage_policy.loader import loads
from stagewarden.scan import default_policy, expand, one_per_incident, scan
from stagewarden.trailgen import (
    CLI_UA, bulk_download, copies, data_event, high_cardinality, instance_call, log_file, ranged_download, role_id, shared_role_day,
    workload,
)

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
VPCE = "vpce-0a1b2c3d4e5f67890"
POLICY_TEXT = """
framework: three-stage
organization: {account_ids: ["123456789012"], vpc_endpoint_ids: [vpce-0a1b2c3d4e5f67890], allowed_cidrs: [10.0.0.0/8]}
stages:
  prod-discovery:
    mode: enforce
    exfiltration: {max_objects: 100, max_bytes: 10485760, window_minutes: 10, learning_days: 1,
                   daily_max_objects: 500, daily_max_bytes: 104857600,
                   exempt_principals: ["arn:aws:iam::123456789012:role/sagemaker-training-*"]}
  prod-integration: {mode: dry_run}
  final-prod: {mode: enforce}
resources:
  buckets:
    - {pattern: "acme-lab-*", stage: prod-discovery}
    - {pattern: "acme-uat-*", stage: prod-integration}
    - {pattern: "acme-prod-*", stage: final-prod}
  roles:
    - {pattern: "BreakGlass*", stage: final-prod}
"""
POLICY = loads(POLICY_TEXT)
ALICE = "arn:aws:sts::123456789012:assumed-role/DataScientistAlice/alice@example.com"
_STORES = {"direct": MemoryWindowStore, "delta": DeltaMemoryWindowStore}
_store = [MemoryWindowStore]


@pytest.fixture(autouse=True, params=sorted(_STORES))
def store_kind(request):
    """Every test twice: windows counted in place (the scanner) and merged file by file (as the DynamoDB store does)."""
    _store[0] = _STORES[request.param]
    return request.param


def new_store() -> MemoryWindowStore:
    return _store[0]()


def run(records: list[dict], detector: Detector | None = None, source: str = "test.json.gz"):
    detector = detector or Detector(POLICY, new_store())
    detector.feed(records)
    return detector.finish(source)


def rules_of(decisions) -> list[str]:
    return sorted(d.finding.rule for d in decisions)


def download(objects: int, *, role="DataScientistAlice", session="alice@example.com", bucket="acme-lab-data", start=T0,
             seconds=120, nbytes=1000, **kw):
    kw.setdefault("vpce", VPCE)
    kw.setdefault("ip", "10.1.2.3")
    return bulk_download(role=role, session=session, bucket=bucket, objects=objects, start=start, seconds=seconds,
                         nbytes=nbytes, **kw)


def test_below_the_thresholds_nothing_fires() -> None:
    assert run(download(100)) == []


def test_above_the_object_threshold_a_contained_bulk_download_fires_with_its_evidence() -> None:
    decisions = run(download(150))

    assert rules_of(decisions) == ["exfil.bulk-download"]
    d = decisions[0]
    ev = d.finding.evidence
    # the finding names the session; its role stays in the evidence
    assert d.finding.principal == ALICE and ev["role_arn"] == "arn:aws:iam::123456789012:role/DataScientistAlice"
    assert ev["session_names"] == ["alice@example.com"] and ev["buckets"] == ["acme-lab-data"] and ev["account"] == "123456789012"
    assert ev["sliding_window"]["objects"] == 150 and ev["objects"] == 150 and ev["bytes"] == 150_000
    assert ev["user_agents"] == [CLI_UA] and len(ev["sample_keys"]) == 10
    assert (d.response, effective_mode(POLICY, d.stage, "enforce")) == ("contain", "enforce")
    assert [(a.kind, a.target, a.userid) for a in d.actions] == [
        ("deny-session", "DataScientistAlice", f"{role_id('DataScientistAlice')}:alice@example.com")]


def test_the_byte_threshold_fires_on_few_large_objects() -> None:
    decisions = run(download(20, nbytes=1 << 20))  # 20 MiB > 10 MiB

    assert rules_of(decisions) == ["exfil.bulk-download"]


def test_the_window_slides_across_log_files() -> None:
    detector = Detector(POLICY, new_store())

    first = run(download(60, start=T0), detector, "file1")
    second = run(download(60, start=T0 + timedelta(minutes=3), prefix="other/"), detector, "file2")

    assert first == [] and rules_of(second) == ["exfil.bulk-download"]


def test_reading_the_same_objects_again_in_the_next_file_is_not_new_volume() -> None:
    detector = Detector(POLICY, new_store())

    run(download(60, start=T0), detector, "file1")
    again = run(download(60, start=T0 + timedelta(minutes=3)), detector, "file2")  # the same 60 keys

    assert again == []


def test_reads_further_apart_than_the_window_do_not_add_up() -> None:
    detector = Detector(POLICY, new_store())

    run(download(90, start=T0), detector)
    later = run(download(90, start=T0 + timedelta(minutes=30), prefix="later/"), detector)

    assert later == []


# ------------------------------------------------------------------ identity is the session
def test_colleagues_on_a_shared_role_are_counted_apart_and_never_named() -> None:
    # Given eight colleagues reading 90 objects each on one role (720 in all, above the 100 limit together)
    records = shared_role_day(colleagues=8, role="NotebookShared", bucket="acme-lab-data", start=T0, reads_each=90, minutes=8)
    # and one more session on the same role downloading 150 objects
    records += download(150, role="NotebookShared", session="mallory@example.com", prefix="loot/")

    decisions = run(records)

    # Then one finding, naming only the downloader, and its containment targets only that session
    assert [(d.finding.rule, d.finding.principal) for d in decisions] == [
        ("exfil.bulk-download", "arn:aws:sts::123456789012:assumed-role/NotebookShared/mallory@example.com")]
    assert decisions[0].finding.evidence["session_names"] == ["mallory@example.com"]
    assert [a.session for a in decisions[0].actions] == ["mallory@example.com"]


def test_among_thousands_of_sessions_per_file_the_thresholds_fire_exactly() -> None:
    # Given three consecutive 5-minute files of 1,000 reads by ~2,000 sessions on 20 shared roles (an organisation trail)
    detector = Detector(POLICY, new_store())
    files = [high_cardinality(1000, seed=40 + i, start=T0 + timedelta(minutes=5 * i), sessions=2000, roles=20) for i in range(3)]
    who = {s: f"arn:aws:sts::123456789012:assumed-role/NotebookRole1/{s}@example.com" for s in ("edge", "over", "gap")}

    def reads(session: str, objects: int, prefix: str, minute: int) -> list[dict]:
        return download(objects, role="NotebookRole1", session=f"{session}@example.com", prefix=prefix,
                        start=T0 + timedelta(minutes=minute), seconds=50)

    # "edge" reads exactly the limit (100 distinct objects in 10 minutes) over two files, re-reading its first 60 in the second;
    # "over" does the same with one object more; "gap" reads 60, nothing in the next file, then 50 more within the window
    files[0] += reads("edge", 60, "e/", 3) + reads("over", 60, "o/", 3) + reads("gap", 60, "g/", 3)
    files[1] += reads("edge", 40, "e2/", 5) + reads("edge", 60, "e/", 6) + reads("over", 41, "o2/", 5) + reads("over", 60, "o/", 6)
    files[2] += reads("gap", 50, "g2/", 10)

    first, second, third = (run(records, detector, f"file{i}") for i, records in enumerate(files))

    # Then nothing fires at the limit, one object over it fires, and each finding counts the file's own reads
    assert first == []
    assert [(d.finding.rule, d.finding.principal) for d in second] == [("exfil.bulk-download", who["over"])]
    ev = second[0].finding.evidence
    assert (ev["sliding_window"]["objects"], ev["reads"]) == (101, 101)
    assert [(d.finding.rule, d.finding.principal) for d in third] == [("exfil.bulk-download", who["gap"])]
    ev = third[0].finding.evidence
    assert (ev["sliding_window"]["objects"], ev["objects"], ev["reads"]) == (110, 50, 50)  # the file's own counters, not the window's
    assert ev["window"] == {"start": "2026-11-22T08:10:00Z", "end": "2026-11-22T08:11:00Z"}


def test_window_slots_leave_the_cyclic_gc_after_one_young_collection() -> None:
    """Thousands of sessions x a day of minutes and hours are hundreds of thousands of slots: as tuples of numbers
    they are untracked by the cyclic GC after one collection instead of traversed by every older one."""
    import gc

    # Given two files of many sessions' reads, windows kept as the scanner (in place) or the function (merged) keeps them
    store = new_store()
    detector = Detector(POLICY, store)
    for i in range(2):
        run(high_cardinality(1000, seed=60 + i, start=T0 + timedelta(minutes=5 * i), sessions=500, roles=5), detector, f"f{i}")

    # When a young collection has run
    gc.collect(0)

    # Then every minute and hour slot counts (objects, bytes) and none is tracked by the cyclic GC any more
    slots = [slot for state in store.items.values() for slot in (*state.minutes.values(), *state.hours.values())]
    assert len(slots) > 500 and sum(s[0] for s in slots) == sum(state.total[0] for state in store.items.values())
    assert not any(gc.is_tracked(slot) for slot in slots)


def test_the_dedup_key_is_the_sessions_so_a_second_session_is_a_new_incident() -> None:
    first = run(download(150, role="NotebookShared", session="a@example.com"))
    second = run(download(150, role="NotebookShared", session="b@example.com"))

    assert first[0].finding.dedup_key != second[0].finding.dedup_key


def test_the_same_session_name_with_another_source_identity_is_another_identity() -> None:
    detector = Detector(POLICY, new_store())
    records = download(80, session="shared", source_identity="alice") + download(80, session="shared", source_identity="bob",
                                                                                  prefix="b/")

    decisions = run(records, detector)

    assert decisions == []  # 80 + 80: neither identity is above 100
    assert {k[1] for k in detector.windows.items} == {
        "arn:aws:sts::123456789012:assumed-role/DataScientistAlice/shared|sourceIdentity=alice",
        "arn:aws:sts::123456789012:assumed-role/DataScientistAlice/shared|sourceIdentity=bob"}


def test_a_source_identity_is_denied_too() -> None:
    decisions = run(download(150, session="shared", source_identity="mallory"))

    action = decisions[0].actions[0]
    assert action.source_identity == "mallory"
    assert [st["Condition"] for st in action.document()["Statement"]] == [
        {"StringEquals": {"aws:userid": f"{role_id('DataScientistAlice')}:shared"}},
        {"StringEquals": {"aws:SourceIdentity": "mallory"}}]


def test_in_an_organisation_trail_a_role_in_another_account_is_alerted_never_contained() -> None:
    detector = Detector(POLICY, new_store(), deployment=Deployment(account="123456789012"))
    records = download(150, account="210987654321")

    decisions = run(records, detector)

    d = decisions[0]
    assert d.finding.principal == "arn:aws:sts::210987654321:assumed-role/DataScientistAlice/alice@example.com"
    assert d.actions == [] and "account 210987654321" in d.note and d.finding.evidence["account"] == "210987654321"


def test_the_same_role_name_in_two_accounts_is_two_identities() -> None:
    records = download(80) + download(80, account="210987654321", prefix="b/")

    assert run(records) == []


def test_whole_role_revocation_is_a_per_stage_option() -> None:
    policy = loads(POLICY_TEXT.replace("learning_days: 1,", "learning_days: 1, containment: role,"))

    decisions = run(download(150), Detector(policy, new_store()))

    assert [(a.kind, a.target) for a in decisions[0].actions] == [("revoke-sessions", "DataScientistAlice")]


@pytest.mark.parametrize("role, deployment, reason", [
    ("AWSServiceRoleForSageMaker", Deployment(), "service-linked"),
    ("stagewarden-ExfiltrationFunctionRole-1A2B", Deployment(stack_name="stagewarden"), "Stagewarden's own"),
    ("BreakGlassProd", Deployment(), "break-glass role"),
    ("Protected-etl", Deployment(), "organization.protected_roles"),
])
def test_protected_roles_are_never_contained(role, deployment, reason) -> None:
    policy = loads(POLICY_TEXT.replace('allowed_cidrs: [10.0.0.0/8]}', 'allowed_cidrs: [10.0.0.0/8], protected_roles: ["Protected-*"]}'))
    detector = Detector(policy, new_store(), deployment=deployment)

    decisions = run(download(150, role=role), detector)

    assert decisions[0].actions == [] and reason in decisions[0].note and "never contained" in decisions[0].finding.evidence["containment"]


def test_protected_roles_is_read_from_the_policy() -> None:
    assert run(download(150, role="Protected-etl"))[0].actions != []  # without the setting: contained


def test_iam_users_are_alerted_not_contained() -> None:
    records = download(150)
    for r in records:
        r["userIdentity"] = {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::123456789012:user/bob",
                             "accountId": "123456789012", "userName": "bob"}

    decisions = run(records)

    assert decisions[0].finding.principal == "arn:aws:iam::123456789012:user/bob" and decisions[0].actions == []
    assert "not a role session" in decisions[0].note


# ------------------------------------------------------------------ every read path
@pytest.mark.parametrize("name", ["SelectObjectContent", "GetObjectTorrent"])
def test_other_read_apis_count_as_reads(name) -> None:
    assert rules_of(run(download(150, name=name))) == ["exfil.bulk-download"]


def test_writes_and_listings_are_not_reads() -> None:
    assert run(download(150, name="PutObject")) == [] and run(download(150, name="HeadObject")) == []


@pytest.mark.parametrize("name", ["CopyObject", "UploadPartCopy"])
def test_copies_out_of_a_stage_into_an_unmapped_bucket_are_reads_and_copy_out(name) -> None:
    records = copies(role="DataScientistAlice", session="alice@example.com", source_bucket="acme-lab-data",
                     dest_bucket="mallory-drop", objects=150, start=T0, seconds=60, name=name, vpce=VPCE, ip="10.0.0.4")

    decisions = run(records)

    assert rules_of(decisions) == ["exfil.bulk-download", "exfil.copy-out"]
    copy_out = next(d for d in decisions if d.finding.rule == "exfil.copy-out")
    assert copy_out.finding.evidence["destination_buckets"] == ["mallory-drop"] and copy_out.finding.evidence["copies_out"] == 150
    assert copy_out.finding.stage == "prod-discovery" and copy_out.actions[0].kind == "deny-session"


def test_one_copy_out_is_enough_for_copy_out() -> None:
    records = copies(role="DataScientistAlice", session="alice@example.com", source_bucket="acme-lab-data",
                     dest_bucket="mallory-drop", objects=1, start=T0, seconds=1, vpce=VPCE, ip="10.0.0.4")

    assert rules_of(run(records)) == ["exfil.copy-out"]


def test_copies_within_a_stage_are_not_reads() -> None:
    records = copies(role="DataScientistAlice", session="alice@example.com", source_bucket="acme-lab-data",
                     dest_bucket="acme-lab-scratch", objects=150, start=T0, seconds=60, vpce=VPCE, ip="10.0.0.4")

    assert run(records) == []


def test_copies_into_another_stage_are_reads_of_the_source_not_copy_out() -> None:
    records = copies(role="DataScientistAlice", session="alice@example.com", source_bucket="acme-lab-data",
                     dest_bucket="acme-uat-features", objects=150, start=T0, seconds=60, vpce=VPCE, ip="10.0.0.4")

    decisions = run(records)

    # a read of the lab; and, UAT having no interactive access, a person writing into it
    assert [(d.finding.rule, d.stage) for d in sorted(decisions, key=lambda d: d.finding.rule)] == [
        ("access.prod-human", "prod-integration"), ("exfil.bulk-download", "prod-discovery")]


def test_a_denied_copy_is_not_a_read() -> None:
    records = copies(role="DataScientistAlice", session="alice@example.com", source_bucket="acme-lab-data",
                     dest_bucket="mallory-drop", objects=150, start=T0, seconds=60, vpce=VPCE, ip="10.0.0.4",
                     error_code="AccessDenied")

    assert run(records) == []


def test_ranged_gets_of_one_object_count_once() -> None:
    # 12 files fetched in 1,200 ranged requests (100 parts each, 8 KiB a part: 9.4 MiB, under the byte limit)
    records = ranged_download(role="DataScientistAlice", session="alice@example.com", bucket="acme-lab-data", objects=12,
                              parts=100, start=T0, seconds=300, part_bytes=8192, vpce=VPCE, ip="10.0.0.5")

    detector = Detector(POLICY, new_store())
    assert run(records, detector) == []
    state = next(iter(detector.windows.items.values()))
    assert state.total == [12, 1200 * 8192]


def test_ranged_gets_still_count_their_bytes() -> None:
    records = ranged_download(role="DataScientistAlice", session="alice@example.com", bucket="acme-lab-data", objects=12,
                              parts=100, start=T0, seconds=300, part_bytes=16384, vpce=VPCE, ip="10.0.0.5")

    decisions = run(records)  # 18.8 MiB > 10 MiB

    assert rules_of(decisions) == ["exfil.bulk-download"] and decisions[0].finding.evidence["objects"] == 12


def test_versions_of_one_key_are_distinct_objects() -> None:
    rng = random.Random(1)
    records = [data_event(role="DataScientistAlice", session="alice@example.com", bucket="acme-lab-data", key="k",
                          version=f"v{i}", when=T0 + timedelta(seconds=i), rng=rng, vpce=VPCE, ip="10.0.0.5") for i in range(150)]

    assert rules_of(run(records)) == ["exfil.bulk-download"]


# ------------------------------------------------------------------ slow and low: the daily budget
def test_reading_just_under_the_window_all_day_exceeds_the_daily_budget() -> None:
    # Given 90 new objects every 20 minutes (never 100 in 10 minutes) for five hours: 1,350 objects
    detector = Detector(POLICY, new_store())
    found = []
    for i in range(15):
        found += run(download(90, start=T0 + timedelta(minutes=20 * i), seconds=60, prefix=f"slice{i}/"), detector, f"f{i}")

    # Then no bulk download, but the daily budget (500) fires, once the day's total passes it
    assert {d.finding.rule for d in found} == {"exfil.daily-budget"}
    first = found[0].finding
    assert first.evidence["day"]["objects"] > 500 and first.evidence["thresholds"]["daily_max_objects"] == 500
    assert found[0].actions[0].kind == "deny-session"


def test_the_daily_budget_counts_bytes_too() -> None:
    detector = Detector(POLICY, new_store())
    found = []
    for i in range(12):  # 9.5 MiB per 20 minutes, 114 MiB in four hours > 100 MiB
        found += run(download(5, start=T0 + timedelta(minutes=20 * i), nbytes=2_000_000, prefix=f"s{i}/"), detector)

    assert {d.finding.rule for d in found} == {"exfil.daily-budget"}


def test_below_the_daily_budget_nothing_fires() -> None:
    detector = Detector(POLICY, new_store())
    found = []
    for i in range(5):
        found += run(download(90, start=T0 + timedelta(minutes=20 * i), prefix=f"s{i}/"), detector)

    assert found == []


def test_a_download_denied_stage_has_a_daily_budget_by_default_an_allowed_one_none() -> None:
    lab = default_policy().stages["lab"]
    infra = loads("framework: five-stage").stages["infra-dev"]

    assert lab.exfiltration.daily_limits(lab.download) == (10_000, 5 * 1024**3)
    assert infra.exfiltration.daily_limits(infra.download) is None


def test_re_reading_the_same_objects_all_day_is_not_slow_exfiltration() -> None:
    detector = Detector(POLICY, new_store())
    found = []
    for i in range(15):  # a dashboard re-reading the same 90 objects every 20 minutes
        found += run(download(90, start=T0 + timedelta(minutes=20 * i)), detector)

    assert found == []


# ------------------------------------------------------------------ exemptions
def test_exempt_principals_are_not_counted() -> None:
    assert run(download(500, role="sagemaker-training-42")) == []


def test_exempt_principals_still_alert_on_presigned_and_outside_reads() -> None:
    presigned = run(download(3, role="sagemaker-training-42", auth="QueryString"))
    outside = run(download(3, role="sagemaker-training-42", vpce=None, ip="81.2.69.142"))

    assert rules_of(presigned) == ["exfil.presigned-url"] and rules_of(outside) == ["exfil.outside-vpce"]


def test_failed_reads_transfer_nothing_and_are_not_counted() -> None:
    assert run(download(150, error_code="AccessDenied")) == []


def test_in_a_dry_run_stage_the_decision_keeps_the_planned_action_for_the_finding() -> None:
    decisions = run(download(150, bucket="acme-uat-features"))

    assert effective_mode(POLICY, decisions[0].stage, "enforce") == "dry_run" and decisions[0].actions[0].kind == "deny-session"


def test_reads_from_a_public_address_without_the_endpoint_are_outside_vpce() -> None:
    decisions = run(download(5, vpce=None, ip="81.2.69.142"))

    assert rules_of(decisions) == ["exfil.outside-vpce"]
    assert decisions[0].finding.evidence["outside_ips"] == ["81.2.69.142"]


def test_private_addresses_and_allowed_networks_are_normal() -> None:
    assert run(download(5, vpce=None, ip="10.9.8.7")) == []


def test_presigned_url_reads_on_a_download_denied_stage_are_found() -> None:
    assert rules_of(run(download(3, auth="QueryString"))) == ["exfil.presigned-url"]


def test_a_new_client_tool_after_the_learning_period_is_found() -> None:
    detector = Detector(POLICY, new_store())
    spark = "[Hadoop 3.3.6, aws-sdk-java/1.12.599 Linux/5.10.213]"
    run(download(5, user_agent=spark, start=T0), detector)  # learning starts

    during = run(download(5, start=T0 + timedelta(hours=2)), detector)  # aws-cli within the learning day: learned
    after = run(download(5, user_agent="rclone/v1.66.0", start=T0 + timedelta(days=2)), detector)

    assert during == []
    assert rules_of(after) == ["exfil.new-client-tool"]
    assert after[0].finding.evidence["new_client_families"] == ["rclone"]
    assert after[0].finding.evidence["known_client_families"] == ["aws-cli", "sdk-java"]


def test_client_tools_are_learned_per_session() -> None:
    detector = Detector(POLICY, new_store())
    run(download(5, start=T0, session="a@example.com"), detector)

    other = run(download(5, start=T0 + timedelta(days=2), session="b@example.com", user_agent="rclone/v1.66.0"), detector)

    assert other == []  # b's first read: its learning period starts (documented limitation)


# ------------------------------------------------------------------ humans in locked stages
def test_humans_reading_final_prod_are_flagged_unless_a_break_glass_grant_is_active() -> None:
    reads = download(3, role="AWSReservedSSO_Admin_0123", session="bob@example.com", bucket="acme-prod-models")

    without = run(reads)
    with_grant = run(reads, Detector(POLICY, new_store(), grant_active=lambda ident, ui, when: (ident.role_name or "").endswith("0123")))

    assert rules_of(without) == ["access.prod-human"] and without[0].finding.evidence["human_events"] == 3
    assert with_grant == []


def test_service_roles_writing_to_final_prod_are_normal() -> None:
    rng = random.Random(1)
    writes = [data_event(role="etl-publisher", session="job-7", bucket="acme-prod-models", key=f"m/{i}", when=T0, rng=rng,
                         name="PutObject", vpce=VPCE, ip="10.0.0.9") for i in range(5)]

    assert run(writes) == []


def test_a_human_copying_into_final_prod_is_flagged() -> None:
    records = copies(role="AWSReservedSSO_Admin_0123", session="bob@example.com", source_bucket="acme-lab-data",
                     dest_bucket="acme-prod-models", objects=3, start=T0, seconds=3, vpce=VPCE, ip="10.0.0.4")

    decisions = run(records)

    assert [(d.finding.rule, d.stage) for d in decisions] == [("access.prod-human", "final-prod")]


# ------------------------------------------------------------------ EC2 instance credentials
def test_instance_credentials_used_from_outside_are_found_and_fenced_to_the_perimeter() -> None:
    records = [instance_call(role="etl-instance", instance="i-0123456789abcdef0", when=T0, ip="198.51.100.7")]

    decisions = run(records)

    assert rules_of(decisions) == ["exfil.instance-credentials"]
    d = decisions[0]
    assert d.finding.evidence["instance_id"] == "i-0123456789abcdef0" and d.finding.evidence["source_ips"] == ["198.51.100.7"]


def test_instance_credentials_are_contained_on_a_stage_by_a_perimeter_deny() -> None:
    rng = random.Random(5)
    records = [data_event(role="etl-instance", session="i-0123456789abcdef0", bucket="acme-lab-data", key="k", when=T0, rng=rng,
                          ip="198.51.100.7")]

    decisions = run(records)

    inst = next(d for d in decisions if d.finding.rule == "exfil.instance-credentials")
    statement = inst.actions[0].document()["Statement"][0]
    assert statement["Condition"] == {"StringEquals": {"aws:userid": f"{role_id('etl-instance')}:i-0123456789abcdef0"},
                                      "Null": {"aws:SourceVpce": "true"}, "Bool": {"aws:ViaAWSService": "false"},
                                      "NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8"]}}


@pytest.mark.parametrize("ip, vpce", [("10.2.3.4", None), ("198.51.100.7", VPCE), ("ec2.amazonaws.com", None)])
def test_instance_credentials_inside_the_networks_or_endpoints_or_via_a_service_are_normal(ip, vpce) -> None:
    assert run([instance_call(role="etl-instance", instance="i-0123456789abcdef0", when=T0, ip=ip, vpce=vpce)]) == []


def test_a_session_named_like_an_instance_on_a_human_role_is_still_instance_named_only_when_it_matches() -> None:
    assert run([instance_call(role="etl-instance", instance="i-am-not-an-instance", when=T0, ip="198.51.100.7")]) == []


# ------------------------------------------------------------------ poison-proof
def test_a_record_of_an_unexpected_type_is_counted_and_the_rest_are_processed() -> None:
    records = download(150)
    records[3]["requestParameters"]["bucketName"] = ["not", "a", "name"]  # unhashable
    records[7]["additionalEventData"] = "text"
    records[9]["additionalEventData"]["bytesTransferredOut"] = "lots"
    records[11] = "not an object"
    records[13]["userIdentity"] = 42

    decisions = run(records)

    assert rules_of(decisions) == ["exfil.bulk-download", "input.malformed"]
    bad = next(d for d in decisions if d.finding.rule == "input.malformed").finding
    assert bad.evidence["record_indexes"] == [3, 7, 9, 11, 13] and bad.evidence["malformed_records"] == 5
    assert next(d for d in decisions if d.finding.rule == "exfil.bulk-download").finding.evidence["objects"] == 145


@pytest.mark.parametrize("vpce", [True, 0, ["vpce-1"], {"id": "vpce-1"}])
def test_an_endpoint_of_the_wrong_type_is_malformed_not_a_read_from_outside(vpce) -> None:
    # given quiet reads through the stage's endpoint, one of them with a vpcEndpointId that is not text
    # (found by make fuzz: `true` was read as "no endpoint", an outside read, and the session was contained)
    records = download(10)
    records[4]["vpcEndpointId"] = vpce
    # when the file is read
    decisions = run(records)
    # then that record alone is reported, and nobody is named for reading from outside
    assert rules_of(decisions) == ["input.malformed"]
    bad = decisions[0].finding.evidence
    assert bad["record_indexes"] == [4] and "vpcEndpointId is a" in next(iter(bad["reasons"])), bad


@pytest.mark.parametrize("field", ["userAgent", "sourceIPAddress"])
@pytest.mark.parametrize("at", [0, 5])
def test_a_user_agent_or_address_that_is_not_text_is_malformed_and_the_file_is_still_read(field, at) -> None:
    # given a bulk download where one record's userAgent or sourceIPAddress is a list (found by make fuzz: kept as
    # evidence, it was hashed only at the end of the file, and the TypeError failed the whole file)
    records = download(150)
    records[at][field] = [["x"]]
    # when the file is read
    decisions = run(records)
    # then that record alone is skipped and reported, and the download is still found
    assert rules_of(decisions) == ["exfil.bulk-download", "input.malformed"]
    bad = next(d for d in decisions if d.finding.rule == "input.malformed").finding.evidence
    assert bad["record_indexes"] == [at] and bad["reasons"] == {f"{field} is a list, not text": 1}, bad


def test_a_record_without_an_event_time_is_malformed_never_dated_1970() -> None:
    records = download(150)
    del records[0]["eventTime"]
    records[1]["eventTime"] = "yesterday"

    decisions = run(records)

    assert rules_of(decisions) == ["exfil.bulk-download", "input.malformed"]
    bulk = next(d for d in decisions if d.finding.rule == "exfil.bulk-download").finding
    assert bulk.first_seen.year == 2026 and bulk.evidence["window"]["start"].startswith("2026")


def test_a_management_event_without_a_time_is_malformed() -> None:
    from stagewarden.trailgen import management_event

    rec = management_event("DeleteTrail", "cloudtrail.amazonaws.com", {"name": "t"})
    del rec["eventTime"]

    assert rules_of(run([rec])) == ["input.malformed"]


def test_an_access_denied_policy_with_a_huge_principal_list_still_gives_a_valid_finding_and_hides_nothing() -> None:
    from stagewarden.trailgen import management_event

    principals = [f"arn:aws:iam::{100000000000 + i}:root" for i in range(400)]
    bad = management_event("PutBucketPolicy", "s3.amazonaws.com", {"bucketName": "acme-lab-data", "bucketPolicy": {
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": principals}, "Action": "s3:*", "Resource": "*"}]}},
        error_code="AccessDenied")

    decisions = run([bad] + download(150))

    assert rules_of(decisions) == ["exfil.bucket-policy-external", "exfil.bulk-download"]
    finding = next(d for d in decisions if d.finding.rule == "exfil.bucket-policy-external").finding
    assert len(finding.summary) <= 1000 and "and 397 more" in finding.summary and finding.severity == "medium"
    assert len(finding.evidence["external_principals"]) == 100 and finding.evidence["external_principals_omitted"] == 300
    assert len(finding.to_json()) < 64_000


def test_a_broken_file_gives_a_finding_about_the_file_and_keeps_what_it_read() -> None:
    detector = Detector(POLICY, new_store())
    data = log_file(download(150))
    stats = ReadStats()
    for batch in iter_batches(io.BytesIO(data[: int(len(data) * 0.8)]), stats):
        detector.feed(batch)

    decisions = detector.finish("s3://trail/broken.json.gz", stats)

    assert "input.malformed" in rules_of(decisions)
    malformed = next(d for d in decisions if d.finding.rule == "input.malformed")
    assert malformed.finding.resource == "s3://trail/broken.json.gz" and malformed.actions == []


def test_one_window_write_per_identity_and_stage_per_file(store_kind) -> None:
    store = new_store()
    records = workload(5000, seed=1)
    identities = {(r["userIdentity"]["arn"], "prod-discovery") for r in records
                  if r["eventName"] == "GetObject" and not r["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"].startswith("sagemaker-training")}

    decisions = run(records, Detector(POLICY, store))

    assert decisions == [] and len(store.items) == len(identities)
    assert store.writes == (len(identities) if store_kind == "delta" else 0)  # in memory: counted in place, nothing written


def test_worst_window() -> None:
    minutes = {0: [5, 50], 1: [5, 50], 20: [1, 1]}

    assert worst_window(minutes, [1, 20], 10) == (-8, 1, 10, 100)


# ------------------------------------------------------------------ the corpus
@pytest.fixture(scope="module")
def corpus_findings(corpus):
    return one_per_incident(d for _, _, ds in scan(expand([str(corpus)]), default_policy()) for d in ds)


def test_corpus_external_bucket_policy_found_cloudtrail_service_policies_not(corpus_findings) -> None:
    policies = [d.finding for d in corpus_findings if d.finding.rule == "exfil.bucket-policy-external"]

    assert [f.resource for f in policies] == ["arn:aws:s3:::stratus-red-team-bdbp-lhfzvgcamn"]
    assert policies[0].evidence["external_principals"] == ["arn:aws:iam::193672423079:root"]


def test_corpus_snapshot_ami_and_rds_shares_found(corpus_findings) -> None:
    shares = sorted(d.finding.evidence["target"] for d in corpus_findings if d.finding.rule == "exfil.snapshot-share")

    assert shares == ["ami-0aa1d83d0b0985c86", "exfiltration", "snap-083d3b857c13988bc"]


def test_corpus_trail_tampering_found(corpus_findings) -> None:
    names = {d.finding.evidence["event"]["name"] for d in corpus_findings if d.finding.rule == "audit.tamper"}

    assert names == {"DeleteTrail", "StopLogging", "PutEventSelectors"}


def test_corpus_stolen_instance_credentials_found(corpus_findings) -> None:
    # Stratus' ec2-steal-instance-credentials: the instance's credentials used from 192.168.10.20 (not an allowed
    # network, no VPC endpoint). Without --policy no network is allowed, so the instances' own SSM agents calling
    # from their public addresses are reported too (list those addresses in organization.allowed_cidrs).
    found = {d.finding.evidence["instance_id"]: d.finding for d in corpus_findings if d.finding.rule == "exfil.instance-credentials"}

    assert set(found) == {"i-0dbc91f429e48eeed", "i-05c30218156bcc246"}
    assert "192.168.10.20" in found["i-0dbc91f429e48eeed"].evidence["source_ips"]


def test_corpus_with_the_instances_networks_allowed_only_the_theft_remains(corpus) -> None:
    policy = loads("""
framework: custom
organization: {allowed_cidrs: [3.225.16.109/32, 52.45.102.28/32]}
stages: {lab: {production_data: true, interactive_access: read-write, retention: {default_days: 30}, download: denied}}
resources: {buckets: [{pattern: "*", stage: lab}]}
""")
    found = one_per_incident(d for _, _, ds in scan(expand([str(corpus)]), policy) for d in ds)

    inst = [d.finding for d in found if d.finding.rule == "exfil.instance-credentials"]
    assert [(f.evidence["instance_id"], f.evidence["source_ips"]) for f in inst] == [("i-0dbc91f429e48eeed", ["192.168.10.20"])]


def test_corpus_has_no_bulk_download_and_nothing_unexpected(corpus_findings) -> None:
    assert {d.finding.rule for d in corpus_findings} == {"exfil.bucket-policy-external", "exfil.snapshot-share", "audit.tamper",
                                                         "exfil.instance-credentials"}


def test_corpus_files_are_used_as_they_are(corpus) -> None:
    files = expand([str(corpus)])
    assert len(files) == 55 and all(p.read_bytes()[:12] == b'{"Records":[' for p in files)


def test_in_an_organisation_trail_another_accounts_bucket_policy_is_alerted_not_reverted() -> None:
    from stagewarden.trailgen import management_event

    event = management_event("PutBucketPolicy", "s3.amazonaws.com", {"bucketName": "acme-lab-data", "bucketPolicy": {"Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}]}}, account="210987654321")
    home = Detector(POLICY, new_store(), deployment=Deployment(account="123456789012"))
    same = Detector(POLICY, new_store(), deployment=Deployment(account="210987654321"))

    [elsewhere] = run([event], home)
    [here] = run([event], same)

    assert elsewhere.actions == [] and "in account 210987654321, not this account" in elsewhere.note
    assert [a.kind for a in here.actions] == ["revert-bucket-policy"]


@pytest.mark.parametrize("when", ["9999-12-31T23:59:00Z", "1000-01-01T00:00:00Z"])
def test_one_record_dated_centuries_away_neither_hides_a_download_nor_makes_the_file_unbounded_work(when, monkeypatch) -> None:
    # Given a bulk download and, in the same file, one more read by the same session dated centuries away
    # (a broken or hostile log): the window peak used to look at every minute between (billions), the day peak
    # built a set of every hour between (the 24 GB the fuzz run hit)
    from exfil import windows

    looked_at: list[int] = []
    original = windows.worst_window

    def counting(slots, touched, width):
        touched = list(touched)
        looked_at.append(len(touched))
        return original(slots, touched, width)

    monkeypatch.setattr(windows, "worst_window", counting)
    records = download(1500)
    odd = dict(records[-1], eventTime=when, requestParameters={**records[-1]["requestParameters"], "key": "odd/one"})

    decisions = run(records + [odd])

    # Then the download is found as without it, and the peaks looked at the minutes with reads only
    assert "exfil.bulk-download" in [d.finding.rule for d in decisions]
    assert looked_at and max(looked_at) <= 10
