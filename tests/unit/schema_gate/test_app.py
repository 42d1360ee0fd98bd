"""SchemaGateFunction from template.yaml under mock_aws: objects in, tags, reports, quarantine, promotion and alerts out."""

from __future__ import annotations

import io
import json
import tempfile
from functools import cache
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stagewarden.datagen import write_csv
from stagewarden.invoke import function_spec, invoke
from tests.helpers import ROOT, drain, seed_policy_in_process, subscribe_queue

EVENTS = ROOT / "events" / "schema_gate"
BUCKET = "acme-lab-data"
GOOD, BAD = "landing/transactions/2026-11-22/good.csv", "landing/transactions/2026-11-22/bad.csv"
BASELINE_KEY = "_stagewarden/baselines/transactions.json"  # the contract's drift.baseline in policy.example.yaml


def event(name: str, key: str | None = None) -> dict:
    e = json.loads((EVENTS / f"{name}.sqs.json").read_text())
    if key:
        body = json.loads(e["Records"][0]["body"])
        body["detail"]["object"]["key"] = key
        e["Records"][0]["body"] = json.dumps(body)
    return e


def run(stack, e: dict) -> dict:
    return invoke(function_spec(ROOT / "template.yaml", "SchemaGateFunction", stack), e)


def lift_quarantine() -> dict:
    """Read and remove the quarantine statement, as a data owner would after review.

    Needed before reading the bucket's objects in tests: moto evaluates a Deny whose
    condition does not match as a Deny (AWS does not), so the statement blocks every read.
    """
    s3 = boto3.client("s3")
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    s3.delete_bucket_policy(Bucket=BUCKET)
    return next(s for s in policy["Statement"] if s["Sid"] == "StagewardenQuarantineFailedObjects")


def tags(key: str) -> dict:
    return {t["Key"]: t["Value"] for t in boto3.client("s3").get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}


@cache
def lab_baseline() -> bytes:
    """The transactions contract's drift profile, from 20,000 rows of the same generator (computed once)."""
    from gate.engine import profile
    from gate.readers import batches

    from stage_policy.loader import load

    contract = load(ROOT / "policy.example.yaml").contract("transactions")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.csv"
        write_csv(base, 20000, seed=21)
        with base.open("rb") as fh:
            return json.dumps(profile(contract, batches(fh, "base.csv", contract, lambda rows: None))).encode()


@pytest.fixture
def lab(stack, tmp_path):
    """A deployed lab: the example policy, the versioned lab bucket with its contract's drift baseline stored, and a
    stack deployed with DefaultRemediationMode=enforce, so the policy's stage mode (enforce for the lab) decides."""
    seed_policy_in_process(stack, ROOT / "policy.example.yaml")
    stack.parameters["DefaultRemediationMode"] = "enforce"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=BUCKET, Key=BASELINE_KEY, Body=lab_baseline())
    stack.inbox = subscribe_queue(stack)
    stack.tmp = tmp_path
    return stack


def upload(lab, key: str, rows: int = 500, **kwargs) -> None:
    path = lab.tmp / key.replace("/", "_")
    write_csv(path, rows, seed=kwargs.pop("seed", 3), **kwargs)
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())


def test_scenario_a_clean_file_is_tagged_reported_and_promoted(lab) -> None:
    # Given a clean file landing under the contract's prefix
    upload(lab, GOOD)

    # When the gate takes the event
    result = run(lab, event("object_created_pass"))

    # Then it is tagged passed, reported, copied to the validated prefix, and nothing is alerted
    assert result == {"batchItemFailures": []}
    assert tags(GOOD)["stagewarden:validation"] == "passed"
    s3 = boto3.client("s3")
    assert s3.head_object(Bucket=BUCKET, Key="validated/transactions/2026-11-22/good.csv")["ContentLength"] > 0
    reports = s3.list_objects_v2(Bucket=BUCKET, Prefix="_stagewarden/reports/")["Contents"]
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=reports[0]["Key"])["Body"].read())
    assert report["passed"] and report["rows"] == 500 and report["contract_version"] == "3" and report["object_version"]
    assert drain(lab.inbox) == []


def test_scenario_a_failing_file_is_quarantined_and_alerted_with_redacted_samples(lab) -> None:
    upload(lab, BAD, seed=4, dirty=True, per_defect=2, duplicates=1)
    report_prefix = "_stagewarden/reports/" + BAD

    run(lab, event("object_created_fail"))

    statement = lift_quarantine()
    s3 = boto3.client("s3")
    assert tags(BAD)["stagewarden:validation"] == "failed"
    assert statement["Effect"] == "Deny" and statement["Condition"]["StringEquals"] == {"s3:ExistingObjectTag/stagewarden:validation": "failed"}
    assert statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == lab.attrs["SchemaGateFunctionRole.Arn"]
    findings = {f["rule"]: f for f in drain(lab.inbox)}
    assert set(findings) == {"data.schema", "data.quality"}
    assert findings["data.quality"]["severity"] == "high" and findings["data.quality"]["evidence"]["report"].startswith(f"s3://{BUCKET}/{report_prefix}")
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="validated/").get("KeyCount")
    report_key = s3.list_objects_v2(Bucket=BUCKET, Prefix=report_prefix)["Contents"][0]["Key"]
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
    emails = report["samples"]["regex:email"]
    assert len(emails) == 2 and all("*" in s["value"] and "_at_" not in s["value"] for s in emails)


def test_scenario_a_redelivered_event_neither_revalidates_nor_realerts(lab) -> None:
    upload(lab, BAD, seed=4, dirty=True, per_defect=2, duplicates=1)
    run(lab, event("object_created_fail"))
    drain(lab.inbox)

    run(lab, event("object_created_fail"))

    assert drain(lab.inbox) == []
    lift_quarantine()
    assert len(boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="_stagewarden/reports/")["Contents"]) == 1


def test_objects_outside_any_contract_are_skipped_untouched(lab) -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key="scratch/notes.txt", Body=b"hello")

    assert run(lab, event("object_created_pass", "scratch/notes.txt")) == {"batchItemFailures": []}
    assert tags("scratch/notes.txt") == {}


def test_a_malformed_message_fails_alone(lab) -> None:
    upload(lab, GOOD)
    good = event("object_created_pass")["Records"][0]
    bad = {**good, "messageId": "poison", "body": '{"detail-type": "Object Created"}'}

    result = run(lab, {"Records": [bad, good]})

    assert result == {"batchItemFailures": [{"itemIdentifier": "poison"}]}
    assert tags(GOOD)["stagewarden:validation"] == "passed"


def policy_with(lab, replace: dict[str, str]):
    text = (ROOT / "policy.example.yaml").read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = lab.tmp / "policy.yaml"
    path.write_text(text)
    seed_policy_in_process(lab, path)


def test_past_the_size_cap_the_object_is_too_large_and_failed(lab) -> None:
    policy_with(lab, {"max_object_bytes: 5368709120": "max_object_bytes: 1000"})
    upload(lab, GOOD)

    run(lab, event("object_created_pass"))

    lift_quarantine()
    assert tags(GOOD)["stagewarden:validation"] == "failed"
    assert [f["rule"] for f in drain(lab.inbox)] == ["data.too-large"]


def test_in_dry_run_the_failed_object_is_tagged_but_not_quarantined(lab) -> None:
    policy_with(lab, {"    mode: enforce\n": "    mode: dry_run\n"})
    upload(lab, BAD, seed=4, dirty=True, per_defect=2, duplicates=1)

    run(lab, event("object_created_fail"))

    assert tags(BAD)["stagewarden:validation"] == "failed"
    with pytest.raises(Exception, match="NoSuchBucketPolicy"):
        boto3.client("s3").get_bucket_policy(Bucket=BUCKET)
    assert all(f["action"].startswith("dry run: would deny reads") for f in drain(lab.inbox))


def test_drift_against_the_stored_baseline_raises_data_drift(lab) -> None:
    from gate.engine import profile
    from gate.readers import batches

    from stage_policy.loader import load

    contract = load(ROOT / "policy.example.yaml").contract("transactions")
    base = lab.tmp / "base.csv"
    write_csv(base, 20000, seed=21)
    with base.open("rb") as fh:
        baseline = profile(contract, batches(fh, "base.csv", contract, lambda rows: None))
    boto3.client("s3").put_object(Bucket=BUCKET, Key=BASELINE_KEY, Body=json.dumps(baseline).encode())
    upload(lab, GOOD, rows=5000, seed=22, amount_mu=6.0)

    run(lab, event("object_created_pass"))

    findings = drain(lab.inbox)
    assert [f["rule"] for f in findings] == ["data.drift"] and findings[0]["evidence"]["drift"]["amount"]["score"] > 0.1


def test_parquet_is_read_from_s3_with_ranged_reads(lab) -> None:
    policy_with(lab, {"format: csv                           # csv | jsonl | parquet": "format: parquet"})
    table = pa.table({"id": [1, 2], "user_id": [5, 6], "amount": [1.5, 2.5], "email": ["k.5@example.com", "l.6@example.com"],
                      "name": ["Kalo", "Lomi"], "category": ["A", "B"], "score": [0.5, 0.25],
                      "event_ts": pa.array([1_700_000_000_000, 1_700_000_100_000], pa.timestamp("ms"))})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    key = "landing/transactions/2026-11-22/part-0.parquet"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=BASELINE_KEY)  # two rows always drift from a 20,000-row profile

    run(lab, event("object_created_pass", key))

    assert tags(key)["stagewarden:validation"] == "passed"


def test_a_stage_tag_on_the_bucket_beats_its_name(lab) -> None:
    # Given the lab-named bucket tagged into final prod, where the transactions contract does not apply
    boto3.client("s3").put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "stagewarden:stage", "Value": "final-prod"}]})
    upload(lab, GOOD)

    run(lab, event("object_created_pass"))

    assert tags(GOOD) == {}  # skipped: no contract of final-prod covers it
