"""End to end on moto_server (127.0.0.1): `local up` provisions template.yaml, a finding flows to a subscriber."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from stage_policy.findings import Finding
from stage_policy.publish import FindingPublisher
from stagewarden import emulator
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stagewarden", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of template.yaml beside links to the code, so the emulator's state file lands in tmp."""
    (tmp_path / "template.yaml").write_bytes((ROOT / "template.yaml").read_bytes())
    for name in ("layers", "functions", "events"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path / "template.yaml"


@pytest.fixture
def running(project: Path):
    # deployed as an operator who has opted in to remediation: the policy's stage modes decide
    up = cli("local", "up", "-t", str(project), "--policy", str(ROOT / "policy.example.yaml"),
             "--parameter-overrides", "DefaultRemediationMode=enforce")
    assert up.returncode == 0, up.stdout + up.stderr
    state = emulator.read_state(project)
    try:
        yield project, state, up.stdout
    finally:
        cli("local", "down", "-t", str(project))


def client(service: str, state: emulator.LocalState):
    return boto3.client(service, endpoint_url=state.endpoint, region_name=state.region)


def test_local_up_provisions_the_template_and_prints_the_endpoint(running) -> None:
    project, state, out = running

    assert f"export AWS_ENDPOINT_URL={state.endpoint}" in out
    assert state.endpoint.startswith("http://127.0.0.1:")
    # the resources exist on the emulator, as the template declares them
    ddb = client("dynamodb", state)
    ttl = ddb.describe_time_to_live(TableName=state.refs["StateTable"])["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    topic = client("sns", state).get_topic_attributes(TopicArn=state.refs["AlertsTopic"])["Attributes"]
    assert topic["KmsMasterKeyId"] == state.refs["AlertsKey"]
    s3 = client("s3", state)
    assert s3.get_bucket_versioning(Bucket=state.refs["PolicyBucket"])["Status"] == "Enabled"
    policy = s3.get_object(Bucket=state.refs["PolicyBucket"], Key="policy.yaml")["Body"].read()
    assert policy == (ROOT / "policy.example.yaml").read_bytes()
    # what it cannot emulate is said, not hidden
    assert "PolicyGuardFunction.Hourly" in out and "event source not emulated" in out


def test_a_published_finding_reaches_an_sqs_subscriber(running) -> None:
    _, state, _ = running
    sqs, sns = client("sqs", state), client("sns", state)
    url = sqs.create_queue(QueueName="e2e-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=state.refs["AlertsTopic"], Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})

    publisher = FindingPublisher(sns, state.refs["AlertsTopic"], client("dynamodb", state), state.refs["StateTable"])
    finding = Finding(rule="exfil.bulk-download", severity="high", stage="prod-discovery", resource="arn:aws:s3:::acme-lab-data",
                      principal="arn:aws:iam::111111111111:role/DataScientistAlice", summary="e2e smoke")
    assert publisher.publish(finding).published

    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=2)["Messages"]
    assert len(msgs) == 1
    assert json.loads(msgs[0]["Body"])["summary"] == "e2e smoke"
    assert msgs[0]["MessageAttributes"]["severity"]["StringValue"] == "high"


def test_invoke_runs_the_handler_against_the_emulator(running) -> None:
    project, state, _ = running

    proc = cli("invoke", "PolicyGuardFunction", "-t", str(project), "-e", str(ROOT / "events" / "policy_guard_scheduled.json"),
               env=state.environ())

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout[proc.stdout.index("{\n"):])
    assert result["valid"] and result["source"] == f"s3://{state.refs['PolicyBucket']}/policy.yaml"


def test_local_down_stops_the_server(project: Path) -> None:
    assert cli("local", "up", "-t", str(project), "--policy", "").returncode == 0
    state = emulator.read_state(project)
    assert emulator.is_alive(state.endpoint)

    down = cli("local", "down", "-t", str(project))

    assert down.returncode == 0 and "stopped the emulator" in down.stdout
    assert not emulator.is_alive(state.endpoint) and emulator.read_state(project) is None


def test_a_second_local_up_is_refused_while_one_runs(running) -> None:
    project, state, _ = running

    again = cli("local", "up", "-t", str(project))

    assert again.returncode == 2 and f"already running at {state.endpoint}" in again.stderr


def test_a_delivered_log_file_flows_through_eventbridge_and_sqs_to_the_function(running) -> None:
    """moto delivers the S3 'Object Created' event to the template's rule and queue; `local poll` feeds the function."""
    from datetime import datetime, timezone

    from stagewarden.trailgen import bulk_download, log_file, log_key

    project, state, _ = running
    client("iam", state).create_role(RoleName="DataScientistAlice", AssumeRolePolicyDocument="{}")
    records = bulk_download(role="DataScientistAlice", session="alice@example.com", bucket="acme-lab-data", objects=1200,
                            start=datetime(2026, 11, 22, 8, tzinfo=timezone.utc), seconds=300, nbytes=100_000)
    client("s3", state).put_object(Bucket=state.refs["CloudTrailLogBucket"], Key=log_key(datetime(2026, 11, 22, 8, 5), "e2e"),
                                   Body=log_file(records))

    proc = cli("local", "poll", "ExfiltrationFunction", "-t", str(project), env=state.environ())

    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout[proc.stdout.index('{\n  "batches"'):])
    assert summary["messages"] == 1 and summary["failed"] == 0
    policies = client("iam", state).list_role_policies(RoleName="DataScientistAlice")["PolicyNames"]
    assert len(policies) == 1 and policies[0].startswith("StagewardenDenySession-")
