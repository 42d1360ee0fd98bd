"""Docker-less SQS event source mapping: feed a function its queue's messages, as Lambda would.

Receives up to the event's BatchSize, invokes the handler in-process with an SQS event,
deletes the messages it handled and leaves the reported failures (ReportBatchItemFailures)
on the queue, visible again at once, so the queue's redrive policy moves poison messages
to the dead-letter queue after maxReceiveCount, as in AWS.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stagewarden.cfn import TemplateError, functions, load_template, no_function
from stagewarden.emulator import LocalState, boto_client
from stagewarden.invoke import function_spec, invoke
from stagewarden.usage import HINT


@dataclass
class PollResult:
    batches: int = 0
    received: int = 0
    failed: int = 0
    results: list[Any] = field(default_factory=list)


def sqs_source(template_path: Path, logical_id: str, state: LocalState) -> tuple[str, str, int]:
    fns = functions(load_template(template_path))
    fn = fns.get(logical_id)
    if fn is None:
        raise no_function(template_path, logical_id, list(fns))
    for event in (fn.get("Properties", {}).get("Events") or {}).values():
        if event.get("Type") == "SQS":
            queue = event["Properties"]["Queue"]
            logical_queue = queue["Fn::GetAtt"][0] if isinstance(queue, dict) else str(queue)
            url = state.attrs[f"{logical_queue}.QueueUrl"]
            return url, state.attrs[f"{logical_queue}.Arn"], int(event["Properties"].get("BatchSize", 10))
    with_sqs = [name for name, f in fns.items()
                if any(e.get("Type") == "SQS" for e in ((f.get("Properties") or {}).get("Events") or {}).values())]
    raise TemplateError(f"{template_path}: function {logical_id!r} has no SQS event source{HINT}"
                        f"poll one that has ({', '.join(sorted(with_sqs)) or 'none'}), or invoke it with `stagewarden invoke`")


def _record(msg: dict[str, Any], arn: str, region: str) -> dict[str, Any]:
    return {
        "messageId": msg["MessageId"], "receiptHandle": msg["ReceiptHandle"], "body": msg["Body"],
        "attributes": msg.get("Attributes", {}), "messageAttributes": msg.get("MessageAttributes", {}),
        "md5OfBody": hashlib.md5(msg["Body"].encode()).hexdigest(),  # noqa: S324 - SQS's own checksum
        "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": region,
    }


def poll(template_path: Path, logical_id: str, state: LocalState, max_batches: int = 100, extra_env: dict[str, str] | None = None) -> PollResult:
    url, arn, batch_size = sqs_source(template_path, logical_id, state)
    sqs = boto_client("sqs", state)
    spec = function_spec(template_path, logical_id, state)
    out = PollResult()
    while out.batches < max_batches:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(batch_size, 10), WaitTimeSeconds=0,
                                   AttributeNames=["All"]).get("Messages", [])
        if not msgs:
            break
        out.batches += 1
        out.received += len(msgs)
        response = invoke(spec, {"Records": [_record(m, arn, state.region) for m in msgs]}, {**state.environ(), **(extra_env or {})})
        out.results.append(response)
        failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        out.failed += len(failed)
        for m in msgs:
            if m["MessageId"] in failed:
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out
