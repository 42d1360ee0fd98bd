"""Helpers for tests that run against template.yaml's resources under mock_aws."""

from __future__ import annotations

import copy
import os
import re
from functools import cache
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
#: The real CloudTrail records (MIT) beside the project: ../shared/corpus/... (STAGEWARDEN_CORPUS overrides)
CORPUS = Path(os.environ.get("STAGEWARDEN_CORPUS", ROOT.parent / "shared" / "corpus" / "cloudtrail" / "invictus-ir"))


class _OfflinePolicies:
    """The translator asks IAM for AWS managed policy ARNs; the template names none by short name."""

    def load(self) -> dict[str, str]:
        return {}


@cache
def _translated() -> dict:
    from unittest import mock

    from samtranslator.translator.transform import transform

    from stagewarden.cfn import load_template

    template = load_template(ROOT / "template.yaml")
    # as `sam package` would: local code locations become S3 artifacts
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://stagewarden-artifacts/{props[key].strip('/')}.zip"
    with mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": "us-east-1"}):  # the translator builds regional ARNs
        return transform(template, {"DataBucketNamePrefix": "acme-lab-"}, _OfflinePolicies())


def translated_template() -> dict:
    """template.yaml as aws-sam-translator expands it (offline), a fresh copy per caller."""
    return copy.deepcopy(_translated())


# ---------------------------------------------------------------- IAM as deployed
ACCOUNT_ID, REGION = "123456789012", "us-east-1"
#: CloudFormation's random suffix of generated names (12 or 13 characters)
SUFFIX = "A1B2C3D4E5F6G"


def _physical(logical: str, kind: str, stack: str) -> tuple[str, dict[str, str]]:
    """Ref value and attributes of a resource, named as CloudFormation names unnamed resources."""
    name = f"{stack}-{logical}-{SUFFIX}"
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT_ID}:{{}}"
    return {
        "AWS::S3::Bucket": (name.lower(), {"Arn": f"arn:aws:s3:::{name.lower()}"}),
        "AWS::SQS::Queue": (f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}",
                            {"Arn": arn.format("sqs", name), "QueueName": name}),
        "AWS::DynamoDB::Table": (name, {"Arn": arn.format("dynamodb", f"table/{name}")}),
        "AWS::SNS::Topic": (arn.format("sns", name), {"TopicArn": arn.format("sns", name), "TopicName": name}),
        "AWS::KMS::Key": ("k-" + SUFFIX, {"Arn": arn.format("kms", "key/k-" + SUFFIX)}),
        "AWS::Lambda::Function": (name, {"Arn": arn.format("lambda", f"function:{name}")}),
        "AWS::IAM::Role": (name, {"Arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"}),
        "AWS::IAM::ManagedPolicy": (f"arn:aws:iam::{ACCOUNT_ID}:policy/{name}", {}),
        "AWS::Events::Rule": (name, {"Arn": arn.format("events", f"rule/{name}")}),
    }.get(kind, (name, {}))


def deployed(translated: dict, stack: str = "stagewarden-lab", **parameters: str) -> dict[str, dict]:
    """The translated template's resources as CloudFormation would create them with these parameters:
    conditions applied, intrinsics resolved, unnamed resources named <stack>-<LogicalId>-<suffix>."""
    from stagewarden.cfn import Context, evaluate_conditions, parameter_defaults, resolve

    ctx = Context(REGION, ACCOUNT_ID, stack, parameter_defaults(translated, {"DataBucketNamePrefix": "acme-lab-", **parameters}))
    for logical, resource in translated["Resources"].items():
        ctx.refs[logical], attrs = _physical(logical, resource["Type"], stack)
        ctx.attrs.update({(logical, k): v for k, v in attrs.items()})
    evaluate_conditions(translated, ctx)
    return {logical: {**resource, "Properties": resolve(resource.get("Properties") or {}, ctx)}
            for logical, resource in translated["Resources"].items()
            if ctx.conditions.get(resource.get("Condition"), True)}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def identity_statements(resources: dict[str, dict]) -> Iterator[tuple[str, dict]]:
    """(holder, statement): the inline policies of every role and every managed policy the stack creates."""
    for logical, resource in resources.items():
        props = resource["Properties"]
        documents = {"AWS::IAM::Role": [p["PolicyDocument"] for p in props.get("Policies", [])],
                     "AWS::IAM::ManagedPolicy": [props.get("PolicyDocument")],
                     "AWS::IAM::Policy": [props.get("PolicyDocument")]}.get(resource["Type"], [])
        for document in documents:
            for statement in as_list(document["Statement"]):
                yield logical, statement


def is_write(action: str) -> bool:
    """Anything but reading: IAM's Get/List/Describe/Head verbs (a wildcard verb counts as a write)."""
    return not action.split(":", 1)[1].startswith(("Get", "List", "Describe", "Head"))


def broad(resource: str) -> bool:
    """A resource that covers a whole service or resource type: `*`, every bucket, every role, any account."""
    if resource == "*":
        return True
    parts = resource.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return False
    _, _, service, region, account, rest = parts
    if "*" in region or "*" in account:
        return True
    if service == "s3":  # arn:aws:s3:::bucket/key: no resource type
        bucket = rest.split("/", 1)[0]
        return bucket == "" or bucket[0] in "*?"
    ident = re.split(r"[/:]", rest, maxsplit=1)[-1]  # after the resource type (role/, table/, snapshot:)
    return ident == "" or set(ident) <= {"*", "?"}


def narrowed_by_resource_tag(statement: dict) -> bool:
    """The statement's condition limits it to resources carrying a tag (aws:ResourceTag/..., iam:ResourceTag/...)."""
    return any("ResourceTag/" in key for test in (statement.get("Condition") or {}).values() for key in test)


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
