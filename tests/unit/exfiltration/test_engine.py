"""The detection engine over records: windowed rules, decisions per stage, and the invictus-ir corpus."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from exfil.engine import Detector, MemoryWindowStore, worst_window
from exfil.reader import ReadStats, iter_batches

from stage_policy.executor import effective_mode
from stage_policy.loader import loads
from stagewarden.scan import default_policy, expand, one_per_incident, scan
from stagewarden.trailgen import CLI_UA, bulk_download, data_event, log_file, workload
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
POLICY = loads("""
framework: three-stage
organization: {account_ids: ["123456789012"], vpc_endpoint_ids: [vpce-0a1b2c3d4e5f67890], allowed_cidrs: [10.0.0.0/8]}
stages:
  prod-discovery:
    mode: enforce
    exfiltration: {max_objects: 100, max_bytes: 10485760, window_minutes: 10, learning_days: 1,
                   exempt_principals: ["arn:aws:iam::123456789012:role/sagemaker-training-*"]}
  prod-integration: {mode: dry_run}
  final-prod: {mode: enforce}
resources:
  buckets:
    - {pattern: "acme-lab-*", stage: prod-discovery}
    - {pattern: "acme-uat-*", stage: prod-integration}
    - {pattern: "acme-prod-*", stage: final-prod}
""")


def run(records: list[dict], detector: Detector | None = None, source: str = "test.json.gz"):
    detector = detector or Detector(POLICY, MemoryWindowStore())
    detector.feed(records)
    return detector.finish(source)


def rules_of(decisions) -> list[str]:
    return sorted(d.finding.rule for d in decisions)


def download(objects: int, *, role="DataScientistAlice", bucket="acme-lab-data", start=T0, seconds=120, nbytes=1000, **kw):
    return bulk_download(role=role, session="alice@example.com", bucket=bucket, objects=objects, start=start,
                         seconds=seconds, nbytes=nbytes, vpce="vpce-0a1b2c3d4e5f67890", ip="10.1.2.3", **kw)


def test_below_the_thresholds_nothing_fires() -> None:
    assert run(download(100)) == []


def test_above_the_object_threshold_a_contained_bulk_download_fires_with_its_evidence() -> None:
    decisions = run(download(150))

    assert rules_of(decisions) == ["exfil.bulk-download"]
    d = decisions[0]
    ev = d.finding.evidence
    assert d.finding.principal == "arn:aws:iam::123456789012:role/DataScientistAlice"
    assert ev["session_names"] == ["alice@example.com"] and ev["buckets"] == ["acme-lab-data"]
    assert ev["sliding_window"]["objects"] == 150 and ev["objects"] == 150 and ev["bytes"] == 150_000
    assert ev["user_agents"] == [CLI_UA] and len(ev["sample_keys"]) == 10
    assert (d.response, effective_mode(POLICY, d.stage, "enforce")) == ("contain", "enforce")
    assert [(a.kind, a.target) for a in d.actions] == [("revoke-sessions", "DataScientistAlice")]


def test_the_byte_threshold_fires_on_few_large_objects() -> None:
    decisions = run(download(20, nbytes=1 << 20))  # 20 MiB > 10 MiB

    assert rules_of(decisions) == ["exfil.bulk-download"]


def test_the_window_slides_across_log_files() -> None:
    detector = Detector(POLICY, MemoryWindowStore())

    first = run(download(60, start=T0), detector, "file1")
    second = run(download(60, start=T0 + timedelta(minutes=3)), detector, "file2")

    assert first == [] and rules_of(second) == ["exfil.bulk-download"]


def test_reads_further_apart_than_the_window_do_not_add_up() -> None:
    detector = Detector(POLICY, MemoryWindowStore())

    run(download(90, start=T0), detector)
    later = run(download(90, start=T0 + timedelta(minutes=30)), detector)

    assert later == []


def test_exempt_service_principals_are_not_counted() -> None:
    assert run(download(500, role="sagemaker-training-42")) == []


def test_failed_reads_transfer_nothing_and_are_not_counted() -> None:
    records = download(150)
    for r in records:
        r["errorCode"] = "AccessDenied"

    assert run(records) == []


def test_in_a_dry_run_stage_the_decision_keeps_the_planned_action_for_the_finding() -> None:
    decisions = run(download(150, bucket="acme-uat-features"))

    assert effective_mode(POLICY, decisions[0].stage, "enforce") == "dry_run" and decisions[0].actions[0].kind == "revoke-sessions"


def test_reads_from_a_public_address_without_the_endpoint_are_outside_vpce() -> None:
    records = bulk_download(role="DataScientistAlice", session="alice@example.com", bucket="acme-lab-data", objects=5,
                            start=T0, seconds=10, nbytes=10, ip="81.2.69.142")

    decisions = run(records)

    assert rules_of(decisions) == ["exfil.outside-vpce"]
    assert decisions[0].finding.evidence["outside_ips"] == ["81.2.69.142"]


def test_private_addresses_and_allowed_networks_are_normal() -> None:
    records = bulk_download(role="R", session="s", bucket="acme-lab-data", objects=5, start=T0, seconds=10, nbytes=10, ip="10.9.8.7")

    assert run(records) == []


def test_presigned_url_reads_on_a_download_denied_stage_are_found() -> None:
    decisions = run(download(3, auth="QueryString"))

    assert rules_of(decisions) == ["exfil.presigned-url"]


def test_a_new_client_tool_after_the_learning_period_is_found() -> None:
    detector = Detector(POLICY, MemoryWindowStore())
    spark = "[Hadoop 3.3.6, aws-sdk-java/1.12.599 Linux/5.10.213]"
    run(download(5, user_agent=spark, start=T0), detector)  # learning starts

    during = run(download(5, start=T0 + timedelta(hours=2)), detector)  # aws-cli within the learning day: learned
    after = run(download(5, user_agent="rclone/v1.66.0", start=T0 + timedelta(days=2)), detector)

    assert during == []
    assert rules_of(after) == ["exfil.new-client-tool"]
    assert after[0].finding.evidence["new_client_families"] == ["rclone"]
    assert after[0].finding.evidence["known_client_families"] == ["aws-cli", "sdk-java"]


def test_humans_reading_final_prod_are_flagged_unless_a_break_glass_grant_is_active() -> None:
    reads = bulk_download(role="AWSReservedSSO_Admin_0123", session="bob@example.com", bucket="acme-prod-models", objects=3,
                          start=T0, seconds=5, nbytes=10, vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.1")

    without = run(reads)
    with_grant = run(reads, Detector(POLICY, MemoryWindowStore(), grant_active=lambda principal, when: principal.endswith("0123")))

    assert rules_of(without) == ["access.prod-human"] and without[0].finding.evidence["human_events"] == 3
    assert with_grant == []


def test_service_roles_writing_to_final_prod_are_normal() -> None:
    rng = __import__("random").Random(1)
    writes = [data_event(role="etl-publisher", session="job-7", bucket="acme-prod-models", key=f"m/{i}", when=T0, rng=rng,
                         name="PutObject", vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.9") for i in range(5)]

    assert run(writes) == []


def test_a_broken_file_gives_a_finding_about_the_file_and_keeps_what_it_read() -> None:
    detector = Detector(POLICY, MemoryWindowStore())
    data = log_file(download(150))
    stats = ReadStats()
    for batch in iter_batches(io.BytesIO(data[: int(len(data) * 0.8)]), stats):
        detector.feed(batch)

    decisions = detector.finish("s3://trail/broken.json.gz", stats)

    assert "input.malformed" in rules_of(decisions)
    malformed = next(d for d in decisions if d.finding.rule == "input.malformed")
    assert malformed.finding.resource == "s3://trail/broken.json.gz" and malformed.actions == []


def test_one_window_write_per_principal_and_stage_per_file() -> None:
    store = MemoryWindowStore()
    records = workload(5000, seed=1)
    pairs = {(r["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"], "prod-discovery") for r in records
             if r["eventName"] == "GetObject" and not r["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"].startswith("sagemaker-training")}

    decisions = run(records, Detector(POLICY, store))

    assert decisions == [] and store.writes == len(pairs)


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


def test_corpus_has_no_bulk_download_and_nothing_unexpected(corpus_findings) -> None:
    assert {d.finding.rule for d in corpus_findings} == {"exfil.bucket-policy-external", "exfil.snapshot-share", "audit.tamper"}


def test_corpus_files_are_used_as_they_are(corpus) -> None:
    files = expand([str(corpus)])
    assert len(files) == 55 and all(p.read_bytes()[:12] == b'{"Records":[' for p in files)
