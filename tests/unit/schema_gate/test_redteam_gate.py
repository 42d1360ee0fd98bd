"""Red team: the schema gate with a wide contract and an object whose every column fails."""

from __future__ import annotations

import boto3
import pytest

from tests.helpers import ROOT, drain, seed_policy_in_process, subscribe_queue
from tests.unit.schema_gate.test_app import BUCKET, event, fence_of, run, tags

WIDE = [f"measurement_{i:02d}" for i in range(60)]


def test_an_object_failing_every_column_of_a_wide_contract_is_still_quarantined_and_alerted(stack, tmp_path) -> None:
    from tests.s3_fence import enforce

    gate = stack.attrs["SchemaGateFunctionRole.Arn"]  # the fence's conditions evaluated, the tests' credentials the gate's
    with enforce({"testing": gate, "FOOBARKEY": gate}):
        _wide_contract_scenario(stack, tmp_path)


def _wide_contract_scenario(stack, tmp_path) -> None:
    # Given a 60-column contract (the finding's summary lists every failing check)
    columns = "\n".join(f"      - {{name: {c}, type: int}}" for c in WIDE)
    (tmp_path / "p.yaml").write_text(f"""
framework: three-stage
defaults: {{mode: enforce}}
resources:
  buckets: [{{pattern: "acme-lab-*", stage: prod-discovery}}]
contracts:
  - name: wide
    stage: prod-discovery
    prefix: landing/wide/
    format: csv
    columns:
{columns}
""")
    seed_policy_in_process(stack, tmp_path / "p.yaml")
    stack.parameters["DefaultRemediationMode"] = "enforce"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    inbox = subscribe_queue(stack)
    key = "landing/wide/2026-11-22/all-text.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=(",".join(WIDE) + "\n" + ",".join("n/a" for _ in WIDE) + "\n").encode())

    # When the gate takes the event
    result = run(stack, event("object_created_fail", key=key, **{"version-id": "null"}))

    # Then the object is tagged failed, quarantined and alerted (the long summary is cut, not a failed record)
    assert result == {"batchItemFailures": []}
    assert "StagewardenGateDenyReadsUntilPassed" in fence_of()
    assert tags(key)["stagewarden:validation"] == "failed"
    [finding] = drain(inbox)
    assert finding["rule"] == "data.schema" and len(finding["summary"]) <= 1000 and finding["summary"].endswith("and 50 more.")
    assert len(finding["evidence"]["checks"]) == 20  # lists in findings are capped


def test_without_the_gate_role_the_quarantine_is_not_written(stack, tmp_path) -> None:
    # Given the gate run without STAGEWARDEN_GATE_ROLE_ARN (Settings defaults it to ""), on a failing file in enforce
    seed_policy_in_process(stack, ROOT / "policy.example.yaml")
    stack.parameters["DefaultRemediationMode"] = "enforce"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    key = "landing/transactions/2026-11-22/bad.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"id,user_id\nx,y\n")

    inbox = subscribe_queue(stack, "unconfigured-inbox")

    run(stack, event("object_created_fail", key=key, **{"version-id": "null"}), STAGEWARDEN_GATE_ROLE_ARN="")

    # Then no statement denying every principal (the gate included: ArnNotEquals "") is put on the bucket
    try:
        statements = __import__("json").loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    except s3.exceptions.ClientError:
        statements = []
    assert all(s["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] for s in statements)
    assert statements == []
    # and the object is still marked failed, with a critical finding naming the missing setting
    assert tags(key)["stagewarden:validation"] == "failed"
    rules = {f["rule"]: f for f in drain(inbox)}
    assert rules["data.quarantine-unconfigured"]["severity"] == "critical"
    assert "STAGEWARDEN_GATE_ROLE_ARN" in rules["data.quarantine-unconfigured"]["summary"]


@pytest.mark.parametrize("contract", [
    "{name: all, stage: prod-discovery, prefix: '', format: csv, columns: [{name: id, type: int}]}",
    "{name: nested, stage: prod-discovery, prefix: landing/, reports_prefix: landing/_reports/, format: csv, columns: [{name: id, type: int}]}",
])
def test_a_contract_whose_prefix_covers_its_reports_is_refused(contract: str) -> None:
    # A contract over the whole bucket (prefix '') with the default reports_prefix _stagewarden/reports/: each report the
    # gate writes is an Object Created event under the contract's prefix, validated as CSV, failed, reported, alerted and
    # quarantined, and so on (seen here: 30 levels, 59 alerts for one upload, until the key passes S3's 1,024 bytes)
    from stage_policy.loader import PolicyError, loads

    with pytest.raises(PolicyError) as caught:
        loads(f"framework: three-stage\ncontracts: [{contract}]\n", "p.yaml")
    assert "contracts[0].reports_prefix" in "\n".join(caught.value.lines())
