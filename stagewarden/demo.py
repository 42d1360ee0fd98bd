"""The main job: every guardrail end to end on a fresh local emulator, printing what each did.

Each capability adds its step here. It runs on its own moto_server (a free port on
127.0.0.1) and stops it at the end, so it never touches a running `local up`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from stage_policy.loader import PolicyError, loads
from stagewarden import emulator
from stagewarden.cli import print_resources
from stagewarden.explain import table
from stagewarden.invoke import function_spec, invoke

BROKEN_POLICY = """\
version: 1
framework: three-stage
stages:
  prod-discovery:
    retention: {default_days: 0}
    exfiltration: {window_minutes: "ten"}
  final-prod:
    retension: {permanent: false}
    break_glass: {max_duration_minutes: 120, approvers: vp@example.com}
resources:
  buckets: [{pattern: "acme-lab-*"}]
"""


def _step(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 74 - len(title)))


class Demo:
    def __init__(self, template: Path, policy: Path, state: emulator.LocalState):
        self.template, self.policy, self.state = template, policy, state
        self.s3 = emulator.boto_client("s3", state)
        self.sqs = emulator.boto_client("sqs", state)
        self.sns = emulator.boto_client("sns", state)

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        quiet = {"POWERTOOLS_METRICS_DISABLED": "true"}  # EMF lines would drown the demo's own output
        return invoke(function_spec(self.template, logical_id, self.state), event, self.state.environ() | quiet)

    def inbox(self) -> str:
        """An SQS queue subscribed to the alerts topic, filtered to high and critical findings."""
        url = self.sqs.create_queue(QueueName="demo-secops-inbox")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(
            TopicArn=self.state.refs["AlertsTopic"], Protocol="sqs", Endpoint=arn,
            Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"severity": ["high", "critical"]})},
        )
        return url

    def drain(self, url: str) -> list[dict[str, Any]]:
        out = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0)
            msgs = batch.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                attrs = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
                out.append({"finding": json.loads(m["Body"]), "attributes": attrs})
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def policy_changed_event(self) -> dict[str, Any]:
        event = json.loads((self.template.parent / "events" / "policy_guard_policy_changed.json").read_text())
        event["detail"]["bucket"]["name"] = self.state.refs["PolicyBucket"]
        return event

    def run(self) -> list[str]:
        summary = []
        _step("1. Stage policy: what each stage allows")
        print(table(loads(self.policy.read_text(), str(self.policy)), str(self.policy)))

        _step("2. A broken policy is rejected with field paths")
        try:
            loads(BROKEN_POLICY, "broken-policy.yaml")
        except PolicyError as exc:
            print("\n".join(exc.lines()))
            summary.append(f"policy: broken policy rejected with {len(exc.problems)} field-path errors")

        _step("3. Local AWS: template.yaml provisioned on moto_server")
        print(f"endpoint {self.state.endpoint}")
        print_resources(self.state)

        _step("4. Policy guard and the finding path (SNS -> filtered SQS subscriber)")
        inbox = self.inbox()
        scheduled = json.loads((self.template.parent / "events" / "policy_guard_scheduled.json").read_text())
        ok = self.invoke("PolicyGuardFunction", scheduled)
        print(f"hourly check: valid={ok['valid']} stages={ok['stages']}")
        location = emulator.policy_location(self.state)
        bucket, _, key = location[5:].partition("/")
        self.s3.put_object(Bucket=bucket, Key=key, Body=BROKEN_POLICY.encode())
        print(f"pushed a broken policy to {location} (as a careless deploy would)")
        bad = self.invoke("PolicyGuardFunction", self.policy_changed_event())
        print(f"on change: valid={bad['valid']} published={bad.get('published')} ({len(bad['errors'])} errors)")
        again = self.invoke("PolicyGuardFunction", scheduled)
        print(f"next hourly check: valid={again['valid']} published={again.get('published')} (same incident: no second alert)")
        delivered = self.drain(inbox)
        for item in delivered:
            f = item["finding"]
            print(f"delivered to subscriber: [{f['severity']}] {f['rule']} {f['resource']}")
            print(f"  summary: {f['summary']}")
            print(f"  message attributes: {item['attributes']}")
            print(f"  first error: {f['evidence']['errors'][0]}")
        self.s3.put_object(Bucket=bucket, Key=key, Body=self.policy.read_bytes())
        fixed = self.invoke("PolicyGuardFunction", self.policy_changed_event())
        print(f"valid policy restored: valid={fixed['valid']}")
        summary.append(f"policy guard: invalid policy detected, {len(delivered)} alert delivered for 2 checks (deduplicated)")
        if len(delivered) != 1:
            raise RuntimeError(f"expected exactly one delivered alert, got {len(delivered)}")
        return summary


def run(template: Path, policy: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="stagewarden-demo-") as tmp:
        proc, endpoint = emulator.start_server(Path(tmp) / "moto_server.log")
        try:
            state = emulator.LocalState(endpoint=endpoint, pid=proc.pid, stack_name="stagewarden-demo")
            emulator.provision(template, state, {"LogLevel": "WARNING"})
            emulator.seed_policy(state, policy)
            summary = Demo(template, policy, state).run()
        finally:
            emulator.stop_pid(proc.pid)
    _step("Summary")
    for line in summary:
        print(f"  - {line}")
    return 0
