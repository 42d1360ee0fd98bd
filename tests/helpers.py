"""Helpers for tests of template.yaml: its resources under mock_aws, its IAM as deployed, the corpus."""

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


def require_corpus() -> Path:
    """CORPUS, or a skip saying where it was looked for; in CI (CI set) a missing corpus fails instead."""
    import pytest

    if CORPUS.is_dir():
        return CORPUS
    reason = f"CloudTrail corpus not found at {CORPUS} (put ../shared/corpus beside the project or set STAGEWARDEN_CORPUS)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason}; CI={os.environ['CI']}: a missing corpus fails in CI", pytrace=False)
    pytest.skip(reason)


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


# ---------------------------------------------------------------- the stack under mock_aws, once per module
class ProvisionedStack:
    """template.yaml provisioned once (under an active mock_aws); reset() puts AWS back as provisioning left it.

    Provisioning costs about a second; resetting, a few tens of milliseconds. What a test adds
    is removed: buckets, queues, topics, subscriptions, tables, roles and policies beside the
    stack's, schedules beside its own, objects in the stack's buckets, items in its tables, messages in its queues; a
    service the stack does not use (EC2, RDS, STS...) is dropped whole. Anything else a test
    leaves behind fails its teardown by name, so tests stay independent or say why not.
    """

    def __init__(self, state: Any, client: Any):
        from moto.core.base_backend import BackendDict

        self.state = state
        self._client = cache(client)
        self._services = set(map(id, BackendDict._instances))  # moto's per-service stores the stack uses (moto 5 internals)
        self._baseline = self._inventory()
        self._bucket_config = {b: self._bucket_settings(b) for b in self._baseline["buckets"]}
        ddb = self._client("dynamodb")
        self._keys = {t: [k["AttributeName"] for k in ddb.describe_table(TableName=t)["Table"]["KeySchema"]]
                      for t in self._baseline["tables"]}

    def fresh_state(self) -> Any:
        """A copy of the provisioned state for one test (tests hang their own attributes on it)."""
        return copy.deepcopy(self.state)

    def reset(self) -> None:
        self._drop_services_the_stack_does_not_use()
        self._reset_s3()
        self._reset_dynamodb()
        self._reset_sns()
        self._reset_sqs()
        self._reset_iam()
        self._reset_scheduler()
        left = {kind: sorted(set(now) ^ set(self._baseline[kind])) for kind, now in self._inventory().items()}
        left = {kind: names for kind, names in left.items() if names}
        assert not left, f"the test changed what ProvisionedStack.reset() does not undo (tests/helpers.py): {left}"

    # -- what there is
    def _inventory(self) -> dict[str, list[str]]:
        c = self._client
        return {
            "buckets": [b["Name"] for b in c("s3").list_buckets()["Buckets"]],
            "queues": c("sqs").list_queues().get("QueueUrls", []),
            "topics": [t["TopicArn"] for t in c("sns").list_topics()["Topics"]],
            "subscriptions": [s["SubscriptionArn"] for s in c("sns").list_subscriptions()["Subscriptions"]],
            "tables": c("dynamodb").list_tables()["TableNames"],
            "roles": [r["RoleName"] for r in c("iam").list_roles()["Roles"]],
            "policies": [p["Arn"] for p in c("iam").list_policies(Scope="Local")["Policies"]],
            "users": [u["UserName"] for u in c("iam").list_users()["Users"]],
            "keys": [k["KeyId"] for k in c("kms").list_keys()["Keys"]],
            "aliases": [a["AliasName"] for a in c("kms").list_aliases()["Aliases"]],
            "rules": [r["Name"] for r in c("events").list_rules()["Rules"]],
            "log groups": [g["logGroupName"] for g in c("logs").describe_log_groups()["logGroups"]],
            "alarms": [a["AlarmName"] for a in c("cloudwatch").describe_alarms()["MetricAlarms"]],
            "schedules": [f"{s['GroupName']}/{s['Name']}" for s in c("scheduler").list_schedules()["Schedules"]],
        }

    def _bucket_settings(self, bucket: str) -> tuple[str | None, list[dict], list[dict]]:
        s3 = self._client("s3")
        try:
            lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        except s3.exceptions.ClientError:
            lifecycle = []
        try:
            policy = s3.get_bucket_policy(Bucket=bucket)["Policy"]
        except s3.exceptions.ClientError:
            policy = None
        try:
            tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
        except s3.exceptions.ClientError:
            tags = []
        return policy, tags, lifecycle

    # -- putting it back
    def _drop_services_the_stack_does_not_use(self) -> None:
        from moto.core.base_backend import BackendDict, backend_lock

        with backend_lock:
            for backends in [b for b in BackendDict._instances if id(b) not in self._services]:
                for account in backends.values():
                    account.reset()
                backends.clear()
                BackendDict._instances.remove(backends)

    def _reset_s3(self) -> None:
        s3 = self._client("s3")
        for bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            ours = bucket in self._baseline["buckets"]
            if not ours:
                s3.delete_bucket_policy(Bucket=bucket)  # a quarantine Deny must not block the clean-up
                s3.delete_bucket_tagging(Bucket=bucket)  # moto keeps a deleted bucket's tags for the next of its name
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                versions = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                if versions:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": versions, "Quiet": True}, BypassGovernanceRetention=True)
            if not ours:
                try:
                    s3.delete_bucket(Bucket=bucket)
                except Exception:  # noqa: BLE001 - legal holds and compliance locks outlive any API clean-up
                    self._drop_bucket(bucket)
            elif self._bucket_settings(bucket) != self._bucket_config[bucket]:
                policy, tags, lifecycle = self._bucket_config[bucket]
                if lifecycle:
                    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle})
                else:
                    s3.delete_bucket_lifecycle(Bucket=bucket)
                if policy:
                    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
                else:
                    s3.delete_bucket_policy(Bucket=bucket)
                if tags:
                    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
                else:
                    s3.delete_bucket_tagging(Bucket=bucket)

    @staticmethod
    def _drop_bucket(bucket: str) -> None:
        """A test's bucket whose versions are held or locked: forgotten by moto directly (moto 5 internals)."""
        from moto.s3.models import s3_backends

        for account in list(s3_backends):
            s3_backends[account]["global"].buckets.pop(bucket, None)
        s3_backends.bucket_accounts.pop(bucket, None)

    def _reset_dynamodb(self) -> None:
        ddb = self._client("dynamodb")
        for table in ddb.list_tables()["TableNames"]:
            if table not in self._keys:
                ddb.delete_table(TableName=table)
                continue
            keys = self._keys[table]
            items = [{k: item[k] for k in keys} for page in ddb.get_paginator("scan").paginate(
                TableName=table, ProjectionExpression=", ".join(f"#k{i}" for i in range(len(keys))),
                ExpressionAttributeNames={f"#k{i}": k for i, k in enumerate(keys)}) for item in page["Items"]]
            for start in range(0, len(items), 25):
                ddb.batch_write_item(RequestItems={table: [{"DeleteRequest": {"Key": key}} for key in items[start:start + 25]]})

    def _reset_sns(self) -> None:
        sns = self._client("sns")
        for sub in sns.list_subscriptions()["Subscriptions"]:
            if sub["SubscriptionArn"] not in self._baseline["subscriptions"]:
                sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
        for topic in sns.list_topics()["Topics"]:
            if topic["TopicArn"] not in self._baseline["topics"]:
                sns.delete_topic(TopicArn=topic["TopicArn"])

    def _reset_sqs(self) -> None:  # after S3: deleting objects may queue events
        sqs = self._client("sqs")
        for url in sqs.list_queues().get("QueueUrls", []):
            if url in self._baseline["queues"]:  # received and deleted: moto allows one PurgeQueue a minute, as AWS
                counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
                if int(counts["ApproximateNumberOfMessagesNotVisible"]):  # received by the test and not deleted
                    sqs.purge_queue(QueueUrl=url)
                elif int(counts["ApproximateNumberOfMessages"]):
                    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                        sqs.delete_message_batch(QueueUrl=url, Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            else:
                sqs.delete_queue(QueueUrl=url)

    def _reset_iam(self) -> None:
        iam = self._client("iam")
        for role in [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"] not in self._baseline["roles"]]:
            for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
                iam.delete_role_policy(RoleName=role, PolicyName=name)
            for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=role, PolicyArn=attached["PolicyArn"])
            iam.delete_role(RoleName=role)
        for policy in [p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"] if p["Arn"] not in self._baseline["policies"]]:
            for version in iam.list_policy_versions(PolicyArn=policy)["Versions"]:
                if not version["IsDefaultVersion"]:
                    iam.delete_policy_version(PolicyArn=policy, VersionId=version["VersionId"])
            iam.delete_policy(PolicyArn=policy)

    def _reset_scheduler(self) -> None:  # break glass creates a one-time schedule per grant
        scheduler = self._client("scheduler")
        for schedule in scheduler.list_schedules()["Schedules"]:
            if f"{schedule['GroupName']}/{schedule['Name']}" not in self._baseline["schedules"]:
                scheduler.delete_schedule(Name=schedule["Name"], GroupName=schedule["GroupName"])


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
