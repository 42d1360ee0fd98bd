"""SchemaGateFunction from template.yaml under mock_aws: objects in, tags, reports, quarantine, promotion and alerts out."""

from __future__ import annotations

import importlib
import io
import json
import tempfile
import uuid
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from stagewarden.datagen import write_csv
from stagewarden.invoke import LambdaContext, _lambda_process, function_spec, invoke
from tests.helpers import ROOT, drain, seed_policy_in_process, subscribe_queue

EVENTS = ROOT / "events" / "schema_gate"
BUCKET = "acme-lab-data"
GOOD, BAD = "landing/transactions/2026-11-22/good.csv", "landing/transactions/2026-11-22/bad.csv"
BASELINE_KEY = "_stagewarden/baselines/transactions.json"  # the contract's drift.baseline in policy.example.yaml


def event(name: str, key: str | None = None, bucket: str | None = None, **obj: str) -> dict:
    """A sample event from events/schema_gate/, for another key, bucket or object field (``sequencer=...``)."""
    e = json.loads((EVENTS / f"{name}.sqs.json").read_text())
    if key or bucket or obj:
        body = json.loads(e["Records"][0]["body"])
        body["detail"]["object"].update({"key": key} if key else {}, **obj)
        body["detail"]["bucket"]["name"] = bucket or body["detail"]["bucket"]["name"]
        e["Records"][0]["body"] = json.dumps(body)
    return e


def run(stack, e: dict, **env: str) -> dict:
    return invoke(function_spec(ROOT / "template.yaml", "SchemaGateFunction", stack, env), e)


def lift_quarantine(bucket: str = BUCKET) -> dict:
    """Read and remove the quarantine statement, as a data owner would after review.

    Needed before reading the bucket's objects in tests: moto evaluates a Deny whose
    condition does not match as a Deny (AWS does not), so the statement blocks every read.
    """
    s3 = boto3.client("s3")
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    s3.delete_bucket_policy(Bucket=bucket)
    return next(s for s in policy["Statement"] if s["Sid"] == "StagewardenQuarantineFailedObjects")


def tags(key: str, bucket: str = BUCKET) -> dict:
    return {t["Key"]: t["Value"] for t in boto3.client("s3").get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


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


def upload(lab, key: str, rows: int = 500, bucket: str = BUCKET, **kwargs) -> None:
    path = lab.tmp / key.replace("/", "_")
    write_csv(path, rows, seed=kwargs.pop("seed", 3), **kwargs)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


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


# ---------------------------------------------------------------- on the layer's kit: modes, replay safety, audit, baselines
OTHER = "landing/transactions/2026-11-22/good-2.csv"


@contextmanager
def container(lab, **env: str):
    """One warm Lambda container: the handler imported once, then invoked as often as the test likes."""
    spec = function_spec(ROOT / "template.yaml", "SchemaGateFunction", lab, env)
    with _lambda_process(spec, {}):
        handler = importlib.import_module(spec.module).lambda_handler
        yield lambda e: handler(e, LambdaContext(spec.name, spec.memory, spec.arn, str(uuid.uuid4()), spec.timeout))


def table_items(lab, table: str) -> list[dict]:
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=lab.refs[table])
    return [item for page in pages for item in page["Items"]]


def audit(lab) -> list[tuple[str, str, str, str]]:
    """(action, status, mode, rule or "-") of every item in the audit table, in the order written."""
    items = sorted(table_items(lab, "AuditTable"), key=lambda i: i["sk"]["S"])
    return [(i["action"]["S"], i["status"]["S"], i["mode"]["S"], i.get("rule", {}).get("S", "-")) for i in items]


def report_of(key: str, bucket: str = BUCKET) -> dict:
    s3 = boto3.client("s3")
    [entry] = s3.list_objects_v2(Bucket=bucket, Prefix=f"_stagewarden/reports/{key}.")["Contents"]
    return json.loads(s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read())


def test_the_same_event_twice_is_validated_once_with_one_report_write_and_one_alert(lab) -> None:
    # Given a file whose only defect is one duplicated row (one finding: data.quality)
    upload(lab, BAD, seed=5, dirty=True, duplicates=1)

    # When SQS delivers the same message twice, to two containers
    first = run(lab, event("object_created_fail"))
    second = run(lab, event("object_created_fail"))

    # Then the object was validated once: one replay record, one report write, one alert, one set of actions
    assert first == second == {"batchItemFailures": []}
    replay = [i for i in table_items(lab, "StateTable") if i["pk"]["S"].startswith("idempotency#")]
    assert len(replay) == 1 and replay[0]["status"]["S"] == "COMPLETED"
    assert len(boto3.client("s3").list_object_versions(Bucket=BUCKET, Prefix="_stagewarden/reports/")["Versions"]) == 1
    assert [f["rule"] for f in drain(lab.inbox)] == ["data.quality"]
    assert [a[:2] for a in audit(lab)] == [("write-report", "done"), ("tag-validation", "done"), ("quarantine", "done")]


@pytest.mark.parametrize("ceiling", ["dry_run", "enforce"])
def test_the_deploy_time_mode_is_a_ceiling_over_the_stage_mode(lab, ceiling) -> None:
    # Given the lab stage's policy mode is enforce, and a failing upload
    from stage_policy.loader import load

    assert load(ROOT / "policy.example.yaml").mode_for("prod-discovery") == "enforce"
    upload(lab, BAD, seed=4, dirty=True, per_defect=2, duplicates=1)

    # When the gate runs in a stack deployed with DefaultRemediationMode=<ceiling>
    assert run(lab, event("object_created_fail"), STAGEWARDEN_DEFAULT_MODE=ceiling) == {"batchItemFailures": []}

    # Then only enforce quarantines; dry run says what it would do; the bookkeeping happens in both
    findings = drain(lab.inbox)
    assert sorted(f["rule"] for f in findings) == ["data.quality", "data.schema"]
    assert all(f["evidence"]["mode"] == ceiling for f in findings)
    if ceiling == "dry_run":
        with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
            boto3.client("s3").get_bucket_policy(Bucket=BUCKET)
        assert all(f["action"].startswith(f"dry run: would deny reads of s3://{BUCKET}/{BAD}") for f in findings)
    else:
        assert lift_quarantine()["Effect"] == "Deny"
        assert all(f["action"].startswith(f"bucket policy of {BUCKET}") for f in findings)
    assert tags(BAD)["stagewarden:validation"] == "failed"
    assert report_of(BAD)["passed"] is False
    quarantined = "dry_run" if ceiling == "dry_run" else "done"
    assert audit(lab) == [("write-report", "done", ceiling, "-"), ("tag-validation", "done", ceiling, "-"),
                          ("quarantine", quarantined, ceiling, "data.schema"), ("quarantine", quarantined, ceiling, "data.quality")]


def test_the_audit_ledger_has_one_item_per_action_with_its_target_and_status(lab) -> None:
    # Given a clean upload and a failing one
    upload(lab, GOOD)
    upload(lab, BAD, seed=4, dirty=True, per_defect=2, duplicates=1)

    # When the gate validates both in one batch
    good, bad = event("object_created_pass")["Records"][0], event("object_created_fail")["Records"][0]
    assert run(lab, {"Records": [good, {**bad, "messageId": "bad"}]}) == {"batchItemFailures": []}

    # Then every action is one audit item: what, on what, in which mode, with which outcome
    items = sorted(table_items(lab, "AuditTable"), key=lambda i: i["sk"]["S"])
    versions = {k: boto3.client("s3").head_object(Bucket=BUCKET, Key=k)["VersionId"] for k in (GOOD, BAD)}
    got = [(i["action"]["S"], i["target"]["S"], i["status"]["S"]) for i in items]
    assert got == [
        ("write-report", f"s3://{BUCKET}/_stagewarden/reports/{GOOD}.{versions[GOOD]}.json", "done"),
        ("tag-validation", f"s3://{BUCKET}/{GOOD}?versionId={versions[GOOD]}", "done"),
        ("promote", f"s3://{BUCKET}/validated/transactions/2026-11-22/good.csv", "done"),
        ("write-report", f"s3://{BUCKET}/_stagewarden/reports/{BAD}.{versions[BAD]}.json", "done"),
        ("tag-validation", f"s3://{BUCKET}/{BAD}?versionId={versions[BAD]}", "done"),
        ("quarantine", f"s3://{BUCKET}", "done"),
        ("quarantine", f"s3://{BUCKET}", "done"),
    ]
    assert all(i["function"]["S"] == "stagewarden-local-schemagatefunction" and i["stage"]["S"] == "prod-discovery"
               and i["mode"]["S"] == "enforce" for i in items)
    assert [i["result"]["S"] for i in items[-2:]] == [
        f"bucket policy of {BUCKET} now denies reads of objects tagged stagewarden:validation=failed (except the gate)",
        f"bucket policy of {BUCKET} already denies reads of failed objects"]
    assert [(i["rule"]["S"], i["dedup_key"]["S"][:12]) for i in items[-2:]] == [("data.schema", "data.schema:"),
                                                                                ("data.quality", "data.quality")]


def test_malformed_records_fail_alone_and_the_good_one_is_validated(lab) -> None:
    # Given a batch with a body that is not JSON, an event of another type, and a good one
    upload(lab, GOOD)
    good = event("object_created_pass")["Records"][0]
    not_json = {**good, "messageId": "not-json", "body": "{oops"}
    deleted = {**good, "messageId": "object-deleted", "body": json.dumps({**json.loads(good["body"]), "detail-type": "Object Deleted"})}

    # When the gate takes the batch
    result = run(lab, {"Records": [not_json, good, deleted]})

    # Then exactly the malformed records are reported for retry (and the DLQ), and the good one is validated
    assert result == {"batchItemFailures": [{"itemIdentifier": "not-json"}, {"itemIdentifier": "object-deleted"}]}
    assert tags(GOOD)["stagewarden:validation"] == "passed" and report_of(GOOD)["passed"]
    assert {a[0] for a in audit(lab)} == {"write-report", "tag-validation", "promote"}
    assert drain(lab.inbox) == []


def test_a_failed_baseline_read_is_a_finding_and_is_retried_on_the_next_invocation(lab) -> None:
    # Given the contract's drift baseline cannot be read yet, and two clean uploads
    s3 = boto3.client("s3")
    s3.delete_object(Bucket=BUCKET, Key=BASELINE_KEY)
    upload(lab, GOOD)
    upload(lab, OTHER, seed=5)

    # When one container validates the first, the baseline is then stored, and the container validates the second
    with container(lab) as handler:
        assert handler(event("object_created_pass")) == {"batchItemFailures": []}
        s3.put_object(Bucket=BUCKET, Key=BASELINE_KEY, Body=lab_baseline())
        assert handler(event("object_created_pass", OTHER)) == {"batchItemFailures": []}

    # Then the first was checked without drift, and says so, and a finding names the baseline
    first, second = report_of(GOOD), report_of(OTHER)
    assert first["passed"] and first["drift"] == {}
    assert first["drift_baseline"]["status"] == "unreadable" and first["drift_baseline"]["error"].startswith("NoSuchKey")
    [finding] = drain(lab.inbox)
    assert finding["rule"] == "data.baseline-unreadable" and finding["severity"] == "medium"
    assert finding["resource"] == f"arn:aws:s3:::{BUCKET}/{BASELINE_KEY}" and finding["stage"] == "prod-discovery"
    assert finding["evidence"]["baseline"] == f"s3://{BUCKET}/{BASELINE_KEY}" and "NoSuchKey" in finding["evidence"]["error"]
    # And the failure was not remembered: the same container read the baseline for the second object
    assert second["drift_baseline"] == {"location": f"s3://{BUCKET}/{BASELINE_KEY}", "status": "read"}
    assert set(second["drift"]) == {"amount", "category"} and second["passed"]


def test_a_baseline_that_keeps_failing_is_one_alert_per_incident(lab) -> None:
    # Given the baseline is missing, and two clean uploads
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=BASELINE_KEY)
    upload(lab, GOOD)
    upload(lab, OTHER, seed=5)

    # When both are validated
    run(lab, event("object_created_pass"))
    run(lab, event("object_created_pass", OTHER))

    # Then both reports say drift was not evaluated, and the publisher's dedup window keeps it to one alert (count 2)
    assert report_of(GOOD)["drift_baseline"]["status"] == report_of(OTHER)["drift_baseline"]["status"] == "unreadable"
    [finding] = drain(lab.inbox)
    dedup = next(i for i in table_items(lab, "StateTable") if i["pk"]["S"] == f"dedup#{finding['dedup_key']}")
    assert finding["rule"] == "data.baseline-unreadable" and dedup["count"]["N"] == "2"


def test_an_overwrite_of_an_unversioned_key_is_validated_again(lab) -> None:
    # Given an unversioned lab bucket: S3's events for it name no version, only a sequencer
    raw = "acme-lab-raw"
    boto3.client("s3").create_bucket(Bucket=raw)
    upload(lab, GOOD, bucket=raw)
    run(lab, event("object_created_pass", bucket=raw, sequencer="0062A1F0000000000A"))
    assert tags(GOOD, raw)["stagewarden:validation"] == "passed"

    # When the key is overwritten with bad rows, and that event is delivered twice
    upload(lab, GOOD, bucket=raw, seed=4, dirty=True, per_defect=2)
    run(lab, event("object_created_pass", bucket=raw, sequencer="0062A1F0000000000B"))
    run(lab, event("object_created_pass", bucket=raw, sequencer="0062A1F0000000000B"))

    # Then the overwrite was validated (once) and failed
    lift_quarantine(raw)
    assert tags(GOOD, raw)["stagewarden:validation"] == "failed"
    assert sorted(f["rule"] for f in drain(lab.inbox)) == ["data.quality", "data.schema"]
    assert len([i for i in table_items(lab, "StateTable") if i["pk"]["S"].startswith("idempotency#")]) == 2
