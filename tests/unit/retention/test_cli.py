"""`stagewarden retention plan | apply` against moto (what AWS_ENDPOINT_URL would point to)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from keeper.plan import DEFAULT_RULE
from stagewarden.cli import main
from tests.helpers import ROOT
from tests.unit.retention.conftest import LAB, OTHER, PROD, RAW_30_TAMPERED, policy_variant, rules, versions, written_days_ago

POLICY = str(ROOT / "policy.example.yaml")


def later(days: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def seeded(lab):
    s3 = boto3.client("s3")
    s3.put_bucket_lifecycle_configuration(Bucket=LAB, LifecycleConfiguration={"Rules": [RAW_30_TAMPERED]})
    for key in ("raw/a.csv", "raw/b.csv", "aggregated/c.csv"):
        s3.put_object(Bucket=LAB, Key=key, Body=b"x")
    with written_days_ago(400):
        s3.put_object(Bucket=PROD, Key="out/report.csv", Body=b"keep")
        s3.put_object(Bucket=OTHER, Key="raw/old.csv", Body=b"theirs")
    return lab


def test_plan_shows_stage_rules_diff_and_versions_due_as_json(seeded, capsys) -> None:
    assert main(["retention", "plan", "--policy", POLICY, "--bucket", LAB, "--now", later(45), "--format", "json"]) == 0

    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["bucket"], row["stage"], row["mode"], row["drifted"]) == (LAB, "prod-discovery", "enforce", True)
    assert [r["ID"] for r in row["actual_rules"]] == ["stagewarden-class-raw/"]
    assert row["required_rules"][0]["ID"] == DEFAULT_RULE
    assert row["diff"]["changed"][0]["id"] == "stagewarden-class-raw/"
    assert row["versions"]["due"] == 2 and row["versions"]["next_run_deletes"] == 2  # raw/ is 30 days; aggregated/ 90
    assert rules(LAB) == {"stagewarden-class-raw/": RAW_30_TAMPERED} and len(versions(LAB)) == 3  # plan changes nothing


def test_plan_table_for_every_bucket(seeded, capsys) -> None:
    assert main(["retention", "plan", "--policy", POLICY]) == 0

    out = capsys.readouterr().out
    assert f"{LAB}: stage prod-discovery (name matches 'acme-lab-*' (rule 0)), mode enforce" in out
    assert "lifecycle: DRIFTED" in out and "changed: stagewarden-class-raw/: " in out and "Expiration.Days 3650 -> 30" in out
    assert "    required: stagewarden-default, every key, expire after 90d, old versions after 7d, abort uploads after 7d" in out
    assert f"{PROD}: stage final-prod" in out and "versions: permanent stage: never swept" in out
    assert f"{OTHER}: unmanaged (no tag and no name pattern matches)" in out


def test_apply_reconciles_and_sweeps_as_of_now_leaving_prod_and_unmanaged_alone(seeded, capsys) -> None:
    code = main(["retention", "apply", "--policy", POLICY, "--now", later(45), "--format", "json"])

    captured = capsys.readouterr()
    findings = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 0
    assert {f["rule"] for f in findings} >= {"retention.drift", "retention.swept"}
    assert versions(LAB) == [("aggregated/c.csv", False)]
    assert versions(PROD) == [("out/report.csv", False)] and versions(OTHER) == [("raw/old.csv", False)]
    assert rules(LAB)["stagewarden-class-raw/"]["Expiration"] == {"Days": 30}
    assert "sweeping as of" in captured.err and "2 version(s) and delete marker(s) deleted" in captured.err


def test_apply_honours_dry_run_and_the_cap(seeded, tmp_path, capsys) -> None:
    dry = policy_variant(tmp_path, ("    mode: enforce\n", "    mode: dry_run\n"))
    assert main(["retention", "apply", "--policy", str(dry), "--now", later(45)]) == 0
    out = capsys.readouterr().out
    assert "dry run: would delete 2 version(s)" in out and len(versions(LAB)) == 3

    capped = policy_variant(tmp_path, ("max_deletions_per_run: 1000", "max_deletions_per_run: 1"))
    assert main(["retention", "apply", "--policy", str(capped), "--now", later(45)]) == 0
    out = capsys.readouterr().out
    assert "retention.cap-reached" in out and len(versions(LAB)) == 2


def test_apply_exits_1_when_s3_refuses_a_deletion(lab, capsys, monkeypatch) -> None:
    from keeper.ports import LockReader

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="acme-lab-locked", ObjectLockEnabledForBucket=True)
    version = s3.put_object(Bucket="acme-lab-locked", Key="raw/held.csv", Body=b"h")["VersionId"]
    s3.put_object_legal_hold(Bucket="acme-lab-locked", Key="raw/held.csv", VersionId=version, LegalHold={"Status": "ON"})
    monkeypatch.setattr(LockReader, "read", lambda self, bucket, entry: entry.with_lock(False, None))  # a hold it cannot see

    assert main(["retention", "apply", "--policy", POLICY, "--bucket", "acme-lab-locked", "--now", later(45)]) == 1
    assert "FAILED to delete" in capsys.readouterr().out and len(versions("acme-lab-locked")) == 1


@pytest.mark.parametrize("args, message", [
    (["--bucket", "no-such-bucket-here"], "stagewarden: --bucket no-such-bucket-here: no such bucket"),
    (["--now", "next tuesday"], "stagewarden: --now: 'next tuesday' is not an ISO 8601 date or time"),
])
def test_bad_input_is_one_line_and_exit_2(lab, capsys, args, message) -> None:
    assert main(["retention", "apply", "--policy", POLICY, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


def test_an_invalid_policy_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("framework: two-stage\nstages: {prod-discovery: {mode: y}, final-prod: {mode: x}}\n")
    longer = tmp_path / "longer.yaml"
    longer.write_text("framework: two-stage\nstages: {prod-discovery: {retention: {default_days: 30, "
                      "prefix_classes: [{prefix: models/, days: 365}]}}}\n")

    assert main(["retention", "plan", "--policy", str(bad)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"stagewarden: {bad}: stages.prod-discovery.mode: must be one of")
    assert line.endswith("(and 1 more; see `stagewarden policy validate`)")
    assert main(["retention", "apply", "--policy", str(longer)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"{longer}: stages.prod-discovery.retention.prefix_classes[0].days: 365 is longer than default_days 30" in line


def test_an_unreachable_endpoint_is_one_line_and_exit_2(monkeypatch, capsys) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    assert main(["retention", "plan", "--policy", POLICY]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("stagewarden: cannot read the buckets: ") and "127.0.0.1:9" in line
