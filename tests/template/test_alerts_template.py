"""template.yaml's alert delivery: AlertQueue subscribed raw to the alerts topic, a DLQ alarmed to operations,
least privilege for AlertFunction, the e-mail subscription filtered on severity."""

from __future__ import annotations

import json
import os
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from stagewarden.cfn import load_template, parameter_defaults
from stagewarden.emulator import LOCAL_PARAMETERS, LocalState, Provisioner
from tests.helpers import ROOT

TEMPLATE = ROOT / "template.yaml"


@pytest.fixture(scope="module")
def translated() -> dict:
    from samtranslator.translator.transform import transform

    template = load_template(TEMPLATE)
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://stagewarden-artifacts/{props[key].strip('/')}.zip"

    class _Offline:
        def load(self) -> dict[str, str]:
            return {}

    with mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": "us-east-1"}):
        return transform(template, {"StageGroup": "lab"}, _Offline())


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _statements(translated: dict, role: str) -> list[dict]:
    return [s for p in translated["Resources"][role]["Properties"]["Policies"] for s in _as_list(p["PolicyDocument"]["Statement"])
            if isinstance(s, dict) and s.get("Effect") == "Allow"]


def test_alert_function_is_granted_exactly_what_its_classes_declare(translated) -> None:
    from courier.handler import USES

    granted = {a for s in _statements(translated, "AlertFunctionRole") for a in _as_list(s["Action"])}
    declared = {a for cls in USES for a in cls.permissions}
    assert granted == declared


def test_the_webhook_secret_and_security_hub_are_scoped_to_one_resource_each(translated) -> None:
    by_action = {a: s["Resource"] for s in _statements(translated, "AlertFunctionRole") for a in _as_list(s["Action"])}
    assert by_action["secretsmanager:GetSecretValue"] == {"Fn::Sub": (
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SlackWebhookSecretName}-??????")}
    assert by_action["securityhub:BatchImportFindings"] == {"Fn::Sub": (
        "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/${AWS::AccountId}/default")}


def test_the_alert_queue_has_a_dead_letter_queue_and_partial_batch_failure(translated) -> None:
    resources = translated["Resources"]
    redrive = resources["AlertQueue"]["Properties"]["RedrivePolicy"]
    assert redrive == {"deadLetterTargetArn": {"Fn::GetAtt": ["AlertDeadLetterQueue", "Arn"]}, "maxReceiveCount": 5}
    mapping = next(r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
                   and r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["AlertQueue", "Arn"]})
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    sub = resources["AlertQueueSubscription"]["Properties"]
    assert sub["RawMessageDelivery"] is True and sub["FilterPolicy"] == {"schema_version": [{"exists": True}]}
    assert sub["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["AlertDeadLetterQueue", "Arn"]}}
    # six times the function timeout, as Lambda advises for SQS sources
    assert resources["AlertQueue"]["Properties"]["VisibilityTimeout"] >= 6 * resources["AlertFunction"]["Properties"]["Timeout"]


def test_the_alert_dlq_alarm_goes_to_the_operations_topic_which_mails_alert_email(translated) -> None:
    resources = translated["Resources"]
    alarm = resources["AlertDeadLettersAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["AlertDeadLetterQueue", "QueueName"]}
    assert alarm["AlarmActions"] == [{"Ref": "OperationsTopic"}]
    sub = resources["OperationsEmailSubscription"]
    assert sub["Condition"] == "HasAlertEmail" and sub["Properties"]["Endpoint"] == {"Ref": "AlertEmail"}


@pytest.fixture
def provisioned():
    with mock_aws(), mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": "us-east-1"}):
        def build(**overrides: str) -> LocalState:
            template = load_template(TEMPLATE)
            state = LocalState(endpoint="", pid=None, stack_name=f"t{len(overrides)}")
            state.parameters = parameter_defaults(template, {**LOCAL_PARAMETERS, **overrides})
            return Provisioner(template, state, boto3.client).run()
        yield build


def _inbox(state: LocalState, logical: str) -> str:
    """A queue given the same subscription attributes as the template's ``logical`` e-mail subscription."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    sub = next(s for s in sns.list_subscriptions()["Subscriptions"] if s["SubscriptionArn"] == state.refs[logical])
    attrs = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
    url = sqs.create_queue(QueueName=f"probe-{logical}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=sub["TopicArn"], Protocol="sqs", Endpoint=arn,
                  Attributes={"RawMessageDelivery": "true", "FilterPolicy": attrs["FilterPolicy"]})
    return url


def _received(url: str) -> list[str]:
    msgs = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in msgs]


@pytest.mark.parametrize(("floor", "expected"), [("low", ["low", "medium", "high", "critical"]), ("high", ["high", "critical"]),
                                                 ("critical", ["critical"])])
def test_the_email_subscription_filters_findings_on_alert_email_min_severity(provisioned, floor, expected) -> None:
    from stage_policy.findings import Finding
    from stage_policy.publish import FindingPublisher

    state = provisioned(AlertEmail="secops@example.com", AlertEmailMinSeverity=floor)
    probe = _inbox(state, "AlertEmailSubscription")
    publisher = FindingPublisher(boto3.client("sns"), state.refs["AlertsTopic"])
    for severity in ("low", "medium", "high", "critical"):
        publisher.publish(Finding(rule="exfil.bulk-download", severity=severity, resource="arn:aws:s3:::b", summary=severity))
    boto3.client("sns").publish(TopicArn=state.refs["AlertsTopic"], Message='{"AlarmName": "x"}')  # an alarm: no attributes

    bodies = _received(probe)
    assert sorted(json.loads(b).get("severity", "alarm") for b in bodies) == sorted(expected + ["alarm"])


def test_the_alert_queue_takes_findings_raw_and_nothing_else(provisioned) -> None:
    from stage_policy.findings import Finding
    from stage_policy.publish import FindingPublisher

    state = provisioned()
    FindingPublisher(boto3.client("sns"), state.refs["AlertsTopic"]).publish(
        Finding(rule="audit.tamper", severity="critical", resource="arn:aws:cloudtrail:us-east-1:1:trail/t", summary="s"))
    boto3.client("sns").publish(TopicArn=state.refs["AlertsTopic"], Message='{"AlarmName": "x"}')

    bodies = _received(state.attrs["AlertQueue.QueueUrl"])
    assert [json.loads(b)["rule"] for b in bodies] == ["audit.tamper"]
