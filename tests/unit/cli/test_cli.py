"""The stagewarden command line: exit codes 0 / 2, messages that name the file and the field."""

from __future__ import annotations

import json

import pytest

from stagewarden.cli import main
from tests.helpers import ROOT


def test_policy_validate_accepts_the_example(capsys, example_policy_path) -> None:
    assert main(["policy", "validate", str(example_policy_path)]) == 0
    assert "valid (three-stage, 3 stages" in capsys.readouterr().out


def test_policy_validate_prints_one_line_per_error_and_exits_2(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("framework: two-stage\nstages: {prod-discovery: {retention: {default_days: 0}}, final-prod: {mode: x}}\n")

    code = main(["policy", "validate", str(bad)])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [
        f"{bad}: stages.prod-discovery.retention.default_days: must be >= 1 (got 0)",
        f"{bad}: stages.final-prod.mode: must be one of 'enforce' or 'dry_run' (got 'x')",
    ]


def test_policy_validate_checks_every_file_given(tmp_path, capsys, example_policy_path) -> None:
    missing = tmp_path / "missing.yaml"

    assert main(["policy", "validate", str(example_policy_path), str(missing)]) == 2
    captured = capsys.readouterr()
    assert "valid" in captured.out and f"{missing}: cannot read file" in captured.err


def test_policy_explain_shows_each_stage_and_its_resources(capsys, example_policy_path) -> None:
    assert main(["policy", "explain", str(example_policy_path)]) == 0
    out = capsys.readouterr().out
    assert "prod-discovery    yes        read-write  denied    90d (raw/ 30d, aggregated/ 90d)" in out
    assert "permanent, immutable" in out and "prod-discovery: tag stagewarden:stage=prod-discovery; bucket acme-lab-*" in out


def test_policy_explain_one_stage_as_json_lines(capsys, example_policy_path) -> None:
    assert main(["policy", "explain", str(example_policy_path), "--stage", "final-prod", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["stage"] == "final-prod" and rows[0]["break_glass"] == "120m max, review"


def test_policy_explain_unknown_stage_exits_2(capsys, example_policy_path) -> None:
    assert main(["policy", "explain", str(example_policy_path), "--stage", "prod"]) == 2
    assert f"--stage 'prod': not a stage of {example_policy_path} \u2014 use one of prod-discovery," in capsys.readouterr().err


def test_invoke_unknown_function_exits_2_listing_the_functions(capsys) -> None:
    from stagewarden.cfn import functions, load_template

    assert main(["invoke", "NoSuchFunction", "-t", str(ROOT / "template.yaml")]) == 2
    every = ", ".join(sorted(functions(load_template(ROOT / "template.yaml"))))  # the template's, whichever it has
    assert "AlertFunction, BreakGlassFunction, ExfiltrationFunction, PolicyGuardFunction, RetentionFunction" in every
    assert f"no function 'NoSuchFunction' (functions: {every})" in capsys.readouterr().err


def test_invoke_with_a_malformed_event_file_exits_2_naming_it(tmp_path, capsys) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"detail-type": ')

    assert main(["invoke", "PolicyGuardFunction", "-t", str(ROOT / "template.yaml"), "-e", str(event)]) == 2
    assert f"{event}: not valid JSON (line 1" in capsys.readouterr().err


def test_policy_push_refuses_an_invalid_policy(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: {}\n")

    assert main(["policy", "push", str(bad), "--to", "s3://b/policy.yaml"]) == 2
    assert f"{bad}: stages: must not be empty" in capsys.readouterr().err


def test_policy_push_uploads_a_valid_policy(example_policy_path, capsys) -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="policies")
        code = main(["policy", "push", str(example_policy_path), "--to", "s3://policies/policy.yaml", "-t", "/nonexistent/template.yaml"])
        body = boto3.client("s3").get_object(Bucket="policies", Key="policy.yaml")["Body"].read()
    assert code == 0 and body == example_policy_path.read_bytes()


def test_the_console_script_is_declared() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'stagewarden = "stagewarden.cli:main"' in pyproject


def test_unknown_subcommand_is_a_usage_error(capsys) -> None:
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("stagewarden: argument command: invalid choice: 'frobnicate'")


# ------------------------------------------------------------------ scan cloudtrail


def test_scan_prints_one_json_finding_per_line(capsys, corpus) -> None:
    assert main(["scan", "cloudtrail", str(corpus)]) == 0
    captured = capsys.readouterr()
    findings = [json.loads(line) for line in captured.out.splitlines()]
    assert len(findings) == 10 and {f["rule"] for f in findings} == {"audit.tamper", "exfil.snapshot-share", "exfil.bucket-policy-external",
                                                                     "exfil.instance-credentials"}
    assert all(f["action"].startswith("none (offline scan)") for f in findings)
    assert "scanned 55 file(s), 2900 record(s): 10 finding(s)" in captured.err


def test_scan_fail_on_exits_1_when_findings_reach_the_severity(capsys, corpus) -> None:
    assert main(["scan", "cloudtrail", str(corpus), "--fail-on", "critical"]) == 1


def test_scan_table_format(capsys, corpus) -> None:
    assert main(["scan", "cloudtrail", str(corpus), "--format", "table"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("CRITICAL audit.tamper")


def test_scan_a_missing_path_exits_2_naming_it(tmp_path, capsys) -> None:
    assert main(["scan", "cloudtrail", str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'}: no such file or folder" in capsys.readouterr().err


def test_scan_with_a_policy_and_a_broken_file_reports_the_file(tmp_path, capsys, example_policy_path) -> None:
    from datetime import datetime, timezone

    from stagewarden.trailgen import bulk_download, log_file

    records = bulk_download(role="DataScientistAlice", session="alice@example.com", bucket="acme-lab-data", objects=1200,
                            start=datetime(2026, 11, 22, 8, tzinfo=timezone.utc), seconds=300, nbytes=100_000)
    good, broken = tmp_path / "a.json.gz", tmp_path / "b.json.gz"
    good.write_bytes(log_file(records))
    broken.write_bytes(log_file(records[:10])[:-30])

    code = main(["scan", "cloudtrail", str(tmp_path), "--policy", str(example_policy_path), "--fail-on", "high"])

    findings = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rules = {f["rule"]: f for f in findings}
    assert code == 1 and {"exfil.bulk-download", "exfil.outside-vpce", "input.malformed"} <= set(rules)
    assert rules["input.malformed"]["resource"] == str(broken)
    assert "would deny session alice@example.com of role DataScientistAlice" in rules["exfil.bulk-download"]["action"]


# ------------------------------------------------------------------ data validate / profile
BENCH_POLICY = str(ROOT / "bench" / "policy.yaml")


def test_data_validate_passes_a_clean_file(tmp_path, capsys) -> None:
    from stagewarden.datagen import write_csv

    path = tmp_path / "ok.csv"
    write_csv(path, 300, seed=2)

    assert main(["data", "validate", str(path), "--contract", "bench_events", "--policy", BENCH_POLICY]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["rows"] == 300 and report["contract"] == "bench_events"


def test_data_validate_exits_1_and_the_table_names_the_failing_checks(tmp_path, capsys) -> None:
    from stagewarden.datagen import write_csv

    path = tmp_path / "bad.csv"
    write_csv(path, 300, seed=2, dirty=True, per_defect=1, duplicates=1)

    assert main(["data", "validate", str(path), "--contract", "bench_events", "--policy", BENCH_POLICY, "--format", "table"]) == 1
    out = capsys.readouterr().out
    assert "FAILED (301 rows)" in out and "regex           email" in out and "duplicate_rows" in out


def test_data_profile_then_validate_with_the_baseline(tmp_path, capsys) -> None:
    from stagewarden.datagen import write_csv

    base, new, profile = tmp_path / "base.csv", tmp_path / "new.csv", tmp_path / "profile.json"
    write_csv(base, 5000, seed=7)
    write_csv(new, 5000, seed=8, amount_mu=6.0)

    assert main(["data", "profile", str(base), "--contract", "bench_events", "--policy", BENCH_POLICY, "--out", str(profile)]) == 0
    assert main(["data", "validate", str(new), "--contract", "bench_events", "--policy", BENCH_POLICY, "--baseline", str(profile)]) == 1
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["drift"]["amount"]["score"] > 0.1 and json.loads(profile.read_text())["columns"]["amount"]["kind"] == "numeric"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--contract", "nope"], "contracts: no contract named 'nope'"),
        (["--contract", "bench_events", "--policy", "/no/such/policy.yaml"], "/no/such/policy.yaml: cannot read file"),
    ],
)
def test_data_validate_bad_input_exits_2(tmp_path, capsys, args, message) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id\n1\n")
    argv = ["data", "validate", str(path), "--policy", BENCH_POLICY, *args]

    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_data_validate_a_missing_file_exits_2_naming_it(tmp_path, capsys) -> None:
    assert main(["data", "validate", str(tmp_path / "x.csv"), "--contract", "bench_events", "--policy", BENCH_POLICY]) == 2
    assert f"{tmp_path / 'x.csv'}: cannot read" in capsys.readouterr().err
