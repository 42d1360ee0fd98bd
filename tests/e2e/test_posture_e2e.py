"""Bucket posture end to end on the emulator (moto_server on 127.0.0.1, `stagewarden local up`).

A stage bucket drifted four ways (public access block deleted, default encryption deleted, the TLS
statement dropped from its policy, versioning suspended) is brought to its baseline by
RetentionFunction, invoked as `stagewarden invoke` runs it (a subprocess, the template's handler and
environment, real boto3 clients against the emulator), on the CloudTrail event (EventBridge shape,
events/retention/), on the AWS Config rule's invocation (NON_COMPLIANT with the posture findings in
its annotation, then the posture gaps acted on) and on the daily schedule. Findings are read from an SQS queue subscribed to the alerts
topic; the bucket's state is read back after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from keeper.plan import lifecycle_diff
from keeper.posture import TLS_SID, is_tls_deny, tls_statement
from stage_policy.loader import load
from stagewarden import emulator
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e

EVENTS = ROOT / "events" / "retention"
BLOCK_KEYS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
ALL_ON = dict.fromkeys(BLOCK_KEYS, True)
OWNER = {"Sid": "ReadForEtl", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/etl-reader"},
         "Action": "s3:GetObject"}
DRIFT = {"posture.public-access", "posture.encryption", "posture.tls", "posture.versioning"}


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stagewarden", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


class Emulator:
    def __init__(self, template: Path, state: emulator.LocalState, inbox: str):
        self.template, self.state, self.inbox = template, state, inbox
        self.policy = load(str(ROOT / "policy.example.yaml"))

    def client(self, service: str):
        return emulator.boto_client(service, self.state)

    def invoke(self, event: dict, tmp: Path) -> dict:
        path = tmp / "event.json"
        path.write_text(json.dumps(event))
        proc = cli("invoke", "RetentionFunction", "-t", str(self.template), "-e", str(path), env=self.state.environ())
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return json.loads(proc.stdout[proc.stdout.index("{\n"):])

    def findings(self, bucket: str | None = None) -> list[dict]:
        """The findings on the subscribed queue (drained), those of ``bucket`` when named."""
        sqs, out = self.client("sqs"), []
        while msgs := sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            for m in msgs:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=self.inbox, ReceiptHandle=m["ReceiptHandle"])
        return [f for f in out if bucket is None or f["resource"] == f"arn:aws:s3:::{bucket}"]

    # ------------------------------------------------------------ bucket state
    def baseline(self, bucket: str, stage: str) -> None:
        """A bucket at its stage's lifecycle and posture baseline, with an owner's statement beside the TLS one."""
        s3 = self.client("s3")
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        rules = lifecycle_diff(self.policy.stages[stage].retention, [], self.policy.safety.min_retention_days).desired
        if rules:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=ALL_ON)
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            self.owner(bucket), tls_statement(bucket)]}))

    @staticmethod
    def owner(bucket: str) -> dict:
        return {**OWNER, "Resource": f"arn:aws:s3:::{bucket}/*"}

    def drift(self, bucket: str) -> None:
        """The four one-call weakenings of issue 14."""
        s3 = self.client("s3")
        s3.delete_public_access_block(Bucket=bucket)
        s3.delete_bucket_encryption(Bucket=bucket)
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": self.owner(bucket)}))
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})

    def state_of(self, bucket: str) -> dict:
        s3 = self.client("s3")

        def get(call, key, missing):
            try:
                return call(Bucket=bucket)[key]
            except s3.exceptions.ClientError as exc:
                if exc.response["Error"]["Code"] in missing:
                    return None
                raise

        enc = get(s3.get_bucket_encryption, "ServerSideEncryptionConfiguration", ("ServerSideEncryptionConfigurationNotFoundError",))
        policy = get(s3.get_bucket_policy, "Policy", ("NoSuchBucketPolicy",))
        return {"block": get(s3.get_public_access_block, "PublicAccessBlockConfiguration", ("NoSuchPublicAccessBlockConfiguration",)),
                "encryption": enc["Rules"][0]["ApplyServerSideEncryptionByDefault"] if enc else None,
                "statements": json.loads(policy)["Statement"] if policy else None,
                "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status")}

    def assert_at_baseline(self, bucket: str) -> None:
        state = self.state_of(bucket)
        assert state["block"] == ALL_ON
        assert state["encryption"] == {"SSEAlgorithm": "aws:kms"}
        owner, tls = state["statements"]  # the owner's statement kept as it was, first; the TLS statement merged in
        assert owner == self.owner(bucket) and tls["Sid"] == TLS_SID and is_tls_deny(tls)
        assert state["versioning"] == "Enabled"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """The template on the emulator, the example policy (prod-discovery enforce; prod-integration dry run by
    defaults.mode), deployed with DefaultRemediationMode=enforce, and an SQS queue subscribed to the alerts topic."""
    project = tmp_path_factory.mktemp("posture-e2e")
    (project / "template.yaml").write_bytes((ROOT / "template.yaml").read_bytes())
    for name in ("layers", "functions", "events"):
        (project / name).symlink_to(ROOT / name)
    template = project / "template.yaml"
    up = cli("local", "up", "-t", str(template), "--policy", str(ROOT / "policy.example.yaml"),
             "--parameter-overrides", "DefaultRemediationMode=enforce")
    assert up.returncode == 0, up.stdout + up.stderr
    state = emulator.read_state(template)
    try:
        sqs, sns = emulator.boto_client("sqs", state), emulator.boto_client("sns", state)
        url = sqs.create_queue(QueueName="posture-inbox")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=state.refs["AlertsTopic"], Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        yield Emulator(template, state, url)
    finally:
        cli("local", "down", "-t", str(template))


def event(name: str, bucket: str) -> dict:
    data = json.loads((EVENTS / name).read_text())
    data["detail"]["requestParameters"]["bucketName"] = bucket
    return data


def config_event(bucket: str) -> dict:
    data = json.loads((EVENTS / "config_change.json").read_text())
    invoking = json.loads(data["invokingEvent"])
    item = invoking["configurationItem"]
    item.update(resourceId=bucket, resourceName=bucket, ARN=f"arn:aws:s3:::{bucket}")
    item["configuration"]["name"] = bucket
    data["invokingEvent"] = json.dumps(invoking)
    return data


def test_scenario_the_cloudtrail_event_brings_a_drifted_bucket_to_baseline(lab: Emulator, tmp_path: Path) -> None:
    # Given a lab bucket (prod-discovery, enforce) at baseline, then drifted four ways by one session
    bucket = "acme-lab-data"
    lab.baseline(bucket, "prod-discovery")
    lab.drift(bucket)

    # When EventBridge delivers one of the CloudTrail events (the public access block's deletion)
    result = lab.invoke(event("delete_public_access_block.eventbridge.json", bucket), tmp_path)

    # Then the bucket is at baseline again, and each posture finding names the session and the event
    lab.assert_at_baseline(bucket)
    assert result["trigger"] == "DeletePublicAccessBlock" and result["bucket"] == bucket
    findings = {f["rule"]: f for f in lab.findings(bucket)}
    assert set(findings) == DRIFT
    for f in findings.values():
        assert f["principal"] == "arn:aws:sts::123456789012:assumed-role/DataScientistAlice/alice@example.com"
        assert "DeletePublicAccessBlock" in f["summary"] and f["stage"] == "prod-discovery"
    assert findings["posture.public-access"]["severity"] == "critical"
    assert findings["posture.public-access"]["evidence"]["before"] is None
    assert findings["posture.public-access"]["evidence"]["after"] == ALL_ON

    # And a listed event that weakens nothing (the owner re-puts the full block) re-reads the bucket: no finding, no write
    before = lab.state_of(bucket)
    lab.invoke(event("put_public_access_block.eventbridge.json", bucket), tmp_path)
    assert lab.findings(bucket) == [] and lab.state_of(bucket) == before


def test_scenario_the_daily_schedule_brings_a_drifted_bucket_to_baseline_and_reports_the_account_block(
        lab: Emulator, tmp_path: Path) -> None:
    # Given a drifted lab bucket and an account without an account-level public access block
    bucket = "acme-lab-daily"
    lab.baseline(bucket, "prod-discovery")
    lab.drift(bucket)

    # When the daily schedule runs
    result = lab.invoke(json.loads((EVENTS / "schedule.json").read_text()), tmp_path)

    # Then the bucket is at baseline, its four findings are on the topic, and the account block is reported
    assert result["trigger"] == "schedule"
    lab.assert_at_baseline(bucket)
    everything = lab.findings()
    assert {f["rule"] for f in everything if f["resource"] == f"arn:aws:s3:::{bucket}"} == DRIFT
    [account] = [f for f in everything if f["rule"] == "posture.account-public-access"]
    assert account["resource"] == f"arn:aws:s3:::account/{lab.state.account_id}" and account["evidence"]["before"] is None


def test_scenario_the_config_rule_brings_a_drifted_bucket_to_baseline(lab: Emulator, tmp_path: Path) -> None:
    # Given a drifted lab bucket
    bucket = "acme-lab-config"
    lab.baseline(bucket, "prod-discovery")
    lab.drift(bucket)

    # When AWS Config invokes the rule for the bucket's configuration change
    result = lab.invoke(config_event(bucket), tmp_path)

    # Then the evaluation is NON_COMPLIANT with the posture findings in its annotation (the state Config recorded),
    # the bucket is brought to baseline, and the four findings are on the topic
    [evaluation] = result["evaluations"]
    assert evaluation["ComplianceResourceId"] == bucket and evaluation["ComplianceType"] == "NON_COMPLIANT"
    assert "posture.public-access" in evaluation["Annotation"] and result["failed"] == 0
    lab.assert_at_baseline(bucket)
    findings = lab.findings(bucket)
    assert {f["rule"] for f in findings} == DRIFT and len(result["posture_findings"]) == 4
    assert all(f["principal"] is None for f in findings)  # Config names no caller

    # And the next evaluation of the same bucket is COMPLIANT, with posture checked, and alerts nothing
    [evaluation] = lab.invoke(config_event(bucket), tmp_path)["evaluations"]
    assert evaluation["ComplianceType"] == "COMPLIANT" and "posture" in evaluation["Annotation"]
    assert lab.findings(bucket) == []


def test_scenario_a_dry_run_stage_gets_the_exact_diff_and_no_write(lab: Emulator, tmp_path: Path) -> None:
    # Given a prod-integration bucket (dry run: defaults.mode) drifted four ways
    bucket = "acme-uat-drift"
    lab.baseline(bucket, "prod-integration")
    lab.drift(bucket)
    before = lab.state_of(bucket)

    # When its CloudTrail event arrives
    lab.invoke(event("put_bucket_policy.eventbridge.json", bucket), tmp_path)

    # Then nothing was written, and each finding says what would change, with the exact before and after
    assert lab.state_of(bucket) == before
    assert before["block"] is None and before["versioning"] == "Suspended" and before["statements"] == lab.owner(bucket)
    findings = {f["rule"]: f for f in lab.findings(bucket)}
    assert set(findings) == DRIFT
    assert all(f["action"].startswith("dry run: would ") for f in findings.values()), [f["action"] for f in findings.values()]
    diff = {rule: (f["evidence"]["before"], f["evidence"]["after"]) for rule, f in findings.items()}
    assert diff == {
        "posture.public-access": (None, ALL_ON),
        "posture.encryption": (before["encryption"], {"SSEAlgorithm": "aws:kms"}),
        "posture.tls": ({"statements": 1, "tls_only": False}, {"statements": 2, "tls_only": True, "added": TLS_SID}),
        "posture.versioning": ({"versioning": "Suspended"}, {"versioning": "Enabled"}),
    }


def test_the_posture_bench_counts_reads_and_no_write_on_a_small_fleet() -> None:
    """bench/posture.py on 10 compliant buckets and 2 unmanaged ones (make bench runs it on 1,000)."""
    env = {"BENCH_POSTURE_BUCKETS": "10", "BENCH_POSTURE_UNMANAGED": "2", "BENCH_POSTURE_REPEATS": "1"}
    proc = subprocess.run([sys.executable, "-W", "ignore", str(ROOT / "bench" / "posture.py")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env}, stdin=subprocess.DEVNULL)

    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert ("FIGURE posture reads per compliant bucket (max): 3 (goal <= 5); retention + posture reconcile reads (max): "
            "prod-discovery 6, prod-integration 6, final-prod 7; writes to compliant buckets: 0 (goal 0); "
            "writes to unmanaged buckets: 0") in proc.stdout
    # tags, and the stage memory (a prod bucket whose stage tag was deleted looks unmanaged: it must still be found)
    assert "unmanaged        (2 buckets): GetBucketTagging 1.00, GetItem 1.00; writes 0" in proc.stdout
