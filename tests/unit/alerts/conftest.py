"""AlertFunction under mock_aws with a local sink: the handler as deployed, its ports pointed at loopback.

Under mock_aws there is no AWS_ENDPOINT_URL (moto intercepts AWS's own host names), so the
emulator-mode switch that lets an http://127.0.0.1 webhook through is set on the function's
settings directly, as `AWS_ENDPOINT_URL=http://127.0.0.1:...` sets it on the emulator.
"""

from __future__ import annotations

import importlib
import json
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import pytest

from stagewarden.invoke import LambdaContext, _lambda_process, function_spec
from stagewarden.sink import Sink, point_secret
from tests.helpers import ROOT, seed_policy_in_process

EVENTS = ROOT / "events" / "alerts"
SECRET = "stagewarden/slack-webhook"


def sqs_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.sqs.json").read_text())


def record(finding: dict[str, Any] | str, message_id: str | None = None) -> dict[str, Any]:
    """One SQS record as AlertQueue delivers a raw SNS message."""
    body = finding if isinstance(finding, str) else json.dumps(finding)
    base = sqs_event("finding_high")["Records"][0]
    return {**base, "messageId": message_id or str(uuid.uuid4()), "body": body}


def finding_of(name: str) -> dict[str, Any]:
    return json.loads(sqs_event(name)["Records"][0]["body"])


class AlertFunction:
    """Calls the deployed handler in-process (environment and import path from template.yaml)."""

    def __init__(self, stack, sink: Sink, policy_text: str | None = None):
        self.stack, self.sink = stack, sink
        self.sleeps: list[float] = []
        self.now = 1_795_334_400  # 2026-11-22T08:00:00Z
        self._exit = ExitStack()
        spec = function_spec(ROOT / "template.yaml", "AlertFunction", stack)
        self.spec = spec
        self._exit.enter_context(_lambda_process(spec, {"POWERTOOLS_METRICS_DISABLED": "true"}))
        self.module = importlib.import_module("courier.handler")
        from courier.settings import AlertSettings
        from courier.slack import SlackWebhook

        courier = self.module.courier
        courier.settings = AlertSettings(slack_webhook_secret=SECRET, region="us-east-1", emulator=True)
        # each call here is a later SQS delivery: no "Slack failed moments ago" carried over (tested on its own)
        courier.slack.webhook = SlackWebhook(sleep=self._sleep, backoff_after_failure=0)
        courier.clock = lambda: self.now

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def __call__(self, event: dict[str, Any], timeout: int = 60) -> dict[str, Any]:
        context = LambdaContext(self.spec.name, 256, self.spec.arn, str(uuid.uuid4()), timeout)
        return self.module.lambda_handler(event, context)

    def close(self) -> None:
        self._exit.close()


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


@pytest.fixture
def deployed(stack, sink):
    """The example policy (alerts to Slack and Security Hub), the webhook secret pointing at the sink."""
    seed_policy_in_process(stack, ROOT / "policy.example.yaml")
    point_secret(boto3.client("secretsmanager"), SECRET, sink.url)
    fn = AlertFunction(stack, sink)
    yield fn
    fn.close()


def hub_findings() -> list[dict[str, Any]]:
    return boto3.client("securityhub").get_findings()["Findings"]


def put_policy(stack, text: str) -> None:
    from stagewarden.emulator import policy_location

    bucket, _, key = policy_location(stack)[5:].partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode())


def example_with(**alerts: Any) -> str:
    import yaml

    doc = yaml.safe_load((ROOT / "policy.example.yaml").read_text())
    doc["alerts"].update(alerts)
    return yaml.safe_dump(doc)


__all__ = ["AlertFunction", "EVENTS", "SECRET", "Path", "example_with", "finding_of", "hub_findings", "put_policy", "record",
           "sqs_event"]
