"""Alert delivery figures, on the local emulator (moto_server on 127.0.0.1) and the local Slack sink.

Run: make bench  (or: .venv/bin/python bench/alerts.py [--quick])

AlertFunction runs as a warm Lambda container would: its handler imported once, fed by a
poller that long-polls AlertQueue like Lambda's SQS event source (batches of 10; failed
records visible again after 12 s instead of the queue's 360 s visibility timeout, so retries
and the dead-letter queue are reached in seconds).

1. Latency, finding published (FindingPublisher -> SNS -> AlertQueue) to payload received
   by the sink, one finding at a time. Goal: median <= 2 s.
2. A storm: 1,000 findings over 10 dedup keys in one window, published straight to the
   topic (as SNS redelivery and several publishers would: the publisher's own dedup is not
   in the way), 2 of the keys rising to critical halfway. Goal: posts <= 10 + escalations.
3. Faults: the sink answers 429 (Retry-After 0) to 20 % and 500 to 20 % of posts, then for a
   while 500 to every post. Goal: 0 findings lost, each delivered or in the alert DLQ.
"""

from __future__ import annotations

import argparse
import os
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path[:0] = [str(ROOT / "layers" / "stage_policy"), str(ROOT / "functions" / "alerts"), str(ROOT)]

from stage_policy.findings import Finding  # noqa: E402
from stage_policy.publish import FindingPublisher  # noqa: E402
from stagewarden import emulator  # noqa: E402
from stagewarden.invoke import LambdaContext, _lambda_process, function_spec  # noqa: E402
from stagewarden.sink import Sink, point_secret  # noqa: E402

TEMPLATE = ROOT / "template.yaml"
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # EMF lines would drown the figures


class WarmPoller(threading.Thread):
    """Lambda's SQS event source for one warm AlertFunction container."""

    def __init__(self, state: emulator.LocalState):
        super().__init__(daemon=True)
        self.state = state
        self.sqs = emulator.boto_client("sqs", state)
        self.url = state.attrs["AlertQueue.QueueUrl"]
        self.stop = threading.Event()
        self.invocations = self.failures = 0
        self.ready = threading.Event()

    def run(self) -> None:
        spec = function_spec(TEMPLATE, "AlertFunction", self.state)
        env = {**self.state.environ(), "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR"}
        with _lambda_process(spec, env):
            import importlib

            module = importlib.import_module("courier.handler")
            handler = module.lambda_handler
            self.ready.set()
            while not self.stop.is_set():
                msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                                AttributeNames=["All"]).get("Messages", [])
                if not msgs:
                    continue
                event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                                      "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                                      "eventSource": "aws:sqs", "eventSourceARN": "arn", "awsRegion": "us-east-1"} for m in msgs]}
                context = LambdaContext(spec.name, 256, spec.arn, str(uuid.uuid4()), 60)
                response = handler(event, context)
                module.metrics.clear_metrics()  # metrics are off here; Powertools would still print them every 100 values
                failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
                self.invocations += 1
                self.failures += len(failed)
                for m in msgs:
                    if m["MessageId"] in failed:
                        self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=12)
                    else:
                        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])


def dedup_key_of(payload: dict) -> str:
    context = payload["blocks"][-1]["elements"][0]["text"]
    return context.split("dedup key `", 1)[1].split("`", 1)[0]


def finding(key: str, severity: str = "high", i: int = 0) -> Finding:
    return Finding(rule="exfil.bulk-download", severity=severity, stage="prod-discovery", resource="arn:aws:s3:::acme-lab-data",
                   principal="arn:aws:iam::123456789012:role/DataScientistAlice", dedup_key=key,
                   summary=f"bench occurrence {i} of {key}", evidence={"session_names": ["alice@example.com"], "i": i})


def queue_empty(sqs, url: str) -> bool:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                  "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0


def drain_wait(sqs, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        quiet = quiet + 1 if queue_empty(sqs, url) else 0
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (for a smoke test)")
    args = parser.parse_args()
    latency_n, storm_n, fault_n = (10, 200, 40) if args.quick else (30, 1000, 200)
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="stagewarden-bench-alerts-") as tmp:
        proc, endpoint = emulator.start_server(Path(tmp) / "moto_server.log")
        try:
            state = emulator.LocalState(endpoint=endpoint, pid=proc.pid, stack_name="bench")
            emulator.provision(TEMPLATE, state, {"LogLevel": "ERROR"})
            emulator.seed_policy(state, ROOT / "policy.example.yaml")
            sns, sqs = emulator.boto_client("sns", state), emulator.boto_client("sqs", state)
            topic = state.refs["AlertsTopic"]
            received: dict[str, list[float]] = {}
            lock = threading.Lock()

            def on_post(post) -> None:
                with lock:
                    received.setdefault(dedup_key_of(post.payload), []).append(post.at)

            with Sink(on_post=on_post) as sink:
                point_secret(emulator.boto_client("secretsmanager", state), "stagewarden/slack-webhook", sink.url)
                poller = WarmPoller(state)
                poller.start()
                poller.ready.wait(60)

                # 1. latency
                publisher = FindingPublisher(sns, topic, emulator.boto_client("dynamodb", state), state.refs["StateTable"])
                latencies = []
                for i in range(latency_n):
                    key = f"latency-{i}"
                    sent = time.time()
                    publisher.publish(finding(key, i=i))
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline and key not in received:
                        time.sleep(0.005)
                    latencies.append(received[key][0] - sent if key in received else float("inf"))
                figures["latency_s"] = {"n": latency_n, "median": round(statistics.median(latencies), 3),
                                        "p90": round(sorted(latencies)[int(0.9 * (latency_n - 1))], 3), "max": round(max(latencies), 3)}
                print(f"1. published -> sink: median {figures['latency_s']['median']:.3f} s, p90 {figures['latency_s']['p90']:.3f} s "
                      f"over {latency_n} findings (goal: median <= 2 s)", flush=True)

                # 2. storm
                posts_before = sum(len(v) for v in received.values())
                t0 = time.monotonic()
                escalating = {"storm-0", "storm-1"}
                for i in range(storm_n):
                    key = f"storm-{i % 10}"
                    severity = "critical" if key in escalating and i >= storm_n // 2 else "high"
                    f = finding(key, severity, i)
                    sns.publish(TopicArn=topic, Message=f.to_json(), MessageAttributes=FindingPublisher.attributes(f))
                drain_wait(sqs, state.attrs["AlertQueue.QueueUrl"], timeout=600)
                storm_posts = sum(len(v) for k, v in received.items() if k.startswith("storm-"))
                hub = emulator.boto_client("securityhub", state).get_findings(MaxResults=100)["Findings"]
                counts = {f["ProductFields"]["stagewarden/dedup_key"]: int(f["ProductFields"]["stagewarden/count"])
                          for f in hub if f["ProductFields"]["stagewarden/dedup_key"].startswith("storm-")}
                figures["storm"] = {"findings": storm_n, "keys": 10, "escalations": len(escalating), "posts": storm_posts,
                                    "security_hub_findings": len(counts), "security_hub_count_total": sum(counts.values()),
                                    "seconds": round(time.monotonic() - t0, 1)}
                print(f"2. storm: {storm_n} findings over 10 keys -> {storm_posts} posts (goal <= 10 + {len(escalating)} escalations); "
                      f"Security Hub: {len(counts)} findings counting {sum(counts.values())} occurrences; "
                      f"{figures['storm']['seconds']} s", flush=True)
                assert posts_before == latency_n

                # 3. faults
                sink.set_faults(share_429=0.2, share_500=0.2, retry_after=0)
                keys = [f"fault-{i}" for i in range(fault_n)]
                for i, key in enumerate(keys):
                    if i == fault_n // 2:
                        drain_wait(sqs, state.attrs["AlertQueue.QueueUrl"], timeout=300)
                        sink.set_faults(share_500=1.0)  # Slack down for a while: these exhaust their retries
                    if i == fault_n // 2 + fault_n // 10:
                        drain_wait(sqs, state.attrs["AlertQueue.QueueUrl"], timeout=300)
                        sink.set_faults(share_429=0.2, share_500=0.2, retry_after=0)
                    f = finding(key, "high", i)
                    sns.publish(TopicArn=topic, Message=f.to_json(), MessageAttributes=FindingPublisher.attributes(f))
                drain_wait(sqs, state.attrs["AlertQueue.QueueUrl"], timeout=600)
                poller.stop.set()
                poller.join(10)
                delivered = {k for k in keys if k in received}
                dead: set[str] = set()
                dlq = state.attrs["AlertDeadLetterQueue.QueueUrl"]
                while msgs := sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", []):
                    for m in msgs:
                        dead.add(json.loads(m["Body"])["dedup_key"])
                        sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
                lost = set(keys) - delivered - dead
                figures["faults"] = {"findings": fault_n, "delivered": len(delivered), "dead_lettered": len(dead & set(keys)),
                                     "both": len(delivered & dead), "lost": len(lost), "answers": dict(sink.answers)}
                print(f"3. faults: {fault_n} findings, sink answers {dict(sink.answers)} -> {len(delivered)} delivered, "
                      f"{len(dead)} in the DLQ, {len(lost)} lost (goal: 0 lost)", flush=True)
                leaked = sink.token in (Path(tmp) / "moto_server.log").read_text(errors="replace")
                figures["token_in_emulator_log"] = leaked
        finally:
            emulator.stop_pid(proc.pid)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "alerts.json").write_text(json.dumps(figures, indent=2))
    ok = (figures["latency_s"]["median"] <= 2.0 and figures["storm"]["posts"] <= 10 + figures["storm"]["escalations"]
          and figures["faults"]["lost"] == 0)
    print(f"written {OUT / 'alerts.json'}; goals {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
