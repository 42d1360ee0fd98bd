"""Helpers for tests that run against template.yaml's resources under mock_aws."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The real CloudTrail records (MIT) beside the project: ../shared/corpus/... (STAGEWARDEN_CORPUS overrides)
CORPUS = Path(os.environ.get("STAGEWARDEN_CORPUS", ROOT.parent / "shared" / "corpus" / "cloudtrail" / "invictus-ir"))


def seed_policy_in_process(state, path: Path) -> str:
    import boto3

    from stagewarden.emulator import policy_location

    location = policy_location(state)
    bucket, _, key = location[5:].partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=Path(path).read_bytes())
    return location


def subscribe_queue(state, name: str = "inbox") -> str:
    """An SQS queue subscribed (raw delivery) to the stack's alerts topic; returns its URL."""
    import boto3

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(TopicArn=state.refs["AlertsTopic"], Protocol="sqs", Endpoint=arn,
                                  Attributes={"RawMessageDelivery": "true"})
    return url


def drain(url: str) -> list[dict]:
    import json

    import boto3

    sqs, out = boto3.client("sqs"), []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", []):
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out
