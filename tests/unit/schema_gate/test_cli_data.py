"""`stagewarden data`: validate exits 1 on an empty file, the table names only failing checks, fence prints the bucket policy."""

from __future__ import annotations

import json

from gate.actions import fence

from stagewarden.cli import main
from tests.helpers import ROOT

GATE = "arn:aws:iam::123456789012:role/stagewarden-SchemaGateFunctionRole-ABC"
POLICY = str(ROOT / "policy.example.yaml")


def test_validate_exits_1_on_a_header_only_file_and_says_why(tmp_path, capsys) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("id,user_id,amount,email,name,category,score,event_ts\n")

    code = main(["data", "validate", str(path), "--contract", "transactions", "--policy", POLICY, "--format", "table"])

    out = capsys.readouterr().out
    assert code == 1 and "FAILED (0 rows)" in out
    assert "min_rows        -                0 rows; the contract needs at least 1" in out and "e.g. rows" not in out


def test_validate_table_lists_failing_checks_with_rows_and_the_checks_run(tmp_path, capsys) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id,user_id,amount,email,name,category,score,event_ts\n"
                    "1,5,1.5,k@example.com,Kalo,A,0.5,2024-01-01T00:00:00\n1,5,1.5,k@example.com,Kalo,Z,NA,2024-01-01T00:00:00\n")

    code = main(["data", "validate", str(path), "--contract", "transactions", "--policy", POLICY, "--format", "table"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert any(line.split()[:2] == ["enum", "category"] and line.endswith("e.g. rows 2") for line in lines)
    assert not any(" type " in f" {line} " and "score" in line for line in lines)  # NA is declared a null marker
    assert lines[-1].startswith("  checked: min_rows, columns, type, required, range, regex, enum, length, unique")


def test_fence_prints_the_policy_the_gate_keeps_and_keeps_the_current_statements(tmp_path, capsys) -> None:
    current = tmp_path / "current.json"
    mine = {"Sid": "Mine", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::acme-lab-data"}
    current.write_text(json.dumps({"Version": "2012-10-17", "Statement": mine}))

    code = main(["data", "fence", "--policy", POLICY, "--bucket", "acme-lab-data", "--gate-role", GATE, "--current", str(current)])

    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["Statement"][0] == mine
    assert printed["Statement"][1:] == fence("acme-lab-data", ("landing/transactions/",), ("validated/transactions/",), GATE)


def test_fence_exits_1_when_the_policy_would_pass_20_kb(tmp_path, capsys) -> None:
    current = tmp_path / "current.json"
    current.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": f"S{i}", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::acme-lab-data/p/{i:05d}/*"} for i in range(250)]}))

    code = main(["data", "fence", "--policy", POLICY, "--bucket", "acme-lab-data", "--gate-role", GATE, "--current", str(current)])

    assert code == 1 and "above S3's limit of 20480" in capsys.readouterr().err
