"""Alert delivery end to end on moto_server: `alerts test` and `local sink` through the real path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from stagewarden import emulator
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stagewarden", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.fixture
def running(tmp_path: Path):
    (tmp_path / "template.yaml").write_bytes((ROOT / "template.yaml").read_bytes())
    for name in ("layers", "functions", "events"):
        (tmp_path / name).symlink_to(ROOT / name)
    project = tmp_path / "template.yaml"
    up = cli("local", "up", "-t", str(project), "--policy", str(ROOT / "policy.example.yaml"))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield project, emulator.read_state(project)
    finally:
        cli("local", "down", "-t", str(project))


def test_alerts_test_sends_each_severity_through_the_real_path(running) -> None:
    project, state = running

    proc = cli("alerts", "test", "-t", str(project), "--policy", str(ROOT / "policy.example.yaml"))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip().startswith(("low ", "medium ", "high ", "critical "))]
    assert [r[:4] for r in rows] == [[s, "yes", "posted", "imported"] for s in ("low", "medium", "high", "critical")]
    assert "# CRITICAL: alerts.test in unmanaged" in proc.stdout and "/services/T0LOCAL/B0LOCAL/<redacted>" in proc.stdout


def test_local_sink_receives_posts_with_faults_and_never_prints_the_url(running) -> None:
    project, state = running
    sink = subprocess.Popen([sys.executable, "-m", "stagewarden", "local", "sink", "-t", str(project), "--fail-500", "0.5",
                             "--retry-after", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=os.environ.copy())
    try:
        secrets = boto3.client("secretsmanager", endpoint_url=state.endpoint, region_name=state.region)
        deadline = time.monotonic() + 30
        url = None
        while time.monotonic() < deadline and url is None:
            try:
                value = secrets.get_secret_value(SecretId="stagewarden/slack-webhook")["SecretString"]
                url = value if value.startswith("http://127.0.0.1") else None
            except Exception:  # noqa: BLE001 - not created yet
                time.sleep(0.2)
        assert url, "the sink did not point the secret at itself"
        findings = json.loads((ROOT / "events" / "alerts" / "finding_high.sqs.json").read_text())["Records"][0]["body"]
        sns = boto3.client("sns", endpoint_url=state.endpoint, region_name=state.region)
        sns.publish(TopicArn=state.refs["AlertsTopic"], Message=findings,
                    MessageAttributes={"severity": {"DataType": "String", "StringValue": "high"},
                                       "schema_version": {"DataType": "String", "StringValue": "1.0"}})

        poll = cli("local", "poll", "AlertFunction", "-t", str(project), env=state.environ())
        assert poll.returncode == 0, poll.stderr
    finally:
        sink.send_signal(signal.SIGINT)
        out, _ = sink.communicate(timeout=20)
    assert "# HIGH: exfil.bulk-download in prod-discovery" in out and "post(s) accepted" in out
    token = url.rsplit("/", 1)[1]
    assert token not in out and token not in poll.stdout + poll.stderr
