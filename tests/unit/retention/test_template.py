"""RetentionFunction in template.yaml: exactly the IAM its classes declare, its triggers, its dead-letter queue."""

from __future__ import annotations

import json

import pytest

from tests.helpers import ROOT

EVENTS = ROOT / "events" / "retention"


class _OfflinePolicies:
    """The translator asks IAM for AWS managed policy ARNs; the template names none by short name."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def translated() -> dict:
    """template.yaml as aws-sam-translator expands it (code locations as `sam package` would rewrite them)."""
    import os
    from unittest import mock

    from samtranslator.translator.transform import transform

    from stagewarden.cfn import load_template

    template = load_template(ROOT / "template.yaml")
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://stagewarden-artifacts/{props[key].strip('/')}.zip"
    parameters = {name: spec["AllowedValues"][0] for name, spec in template.get("Parameters", {}).items()
                  if "Default" not in spec and spec.get("AllowedValues")}
    with mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": "us-east-1"}):
        return transform(template, parameters, _OfflinePolicies())


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _granted(template: dict, role: str) -> dict[str, set[str]]:
    """action -> the resources it is granted on (as JSON text, intrinsics included)."""
    out: dict[str, set[str]] = {}
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        for st in _as_list(policy["PolicyDocument"]["Statement"]):
            if isinstance(st, dict) and st.get("Effect") == "Allow":
                for action in _as_list(st["Action"]):
                    out.setdefault(action, set()).update(json.dumps(r, sort_keys=True) for r in _as_list(st["Resource"]))
    return out


def test_retention_is_granted_exactly_what_its_classes_declare(translated) -> None:
    from keeper.handler import USES

    granted = set(_granted(translated, "RetentionFunctionRole"))
    granted.discard("sqs:SendMessage")  # added by SAM for the function's DeadLetterQueue
    declared = {a for cls in USES for a in cls.permissions}
    assert granted == declared


def test_retention_writes_only_on_data_buckets(translated) -> None:
    granted = _granted(translated, "RetentionFunctionRole")
    for action in ("s3:PutLifecycleConfiguration", "s3:PutBucketVersioning", "s3:DeleteObject", "s3:DeleteObjectVersion"):
        assert all("DataBucketNamePrefix" in r for r in granted[action]), (action, granted[action])
    assert "s3:BypassGovernanceRetention" not in granted  # locked versions are never deletable by Stagewarden


def test_retention_has_a_dead_letter_queue_with_an_alarm(translated) -> None:
    resources = translated["Resources"]
    fn = resources["RetentionFunction"]["Properties"]
    assert fn["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": ["RetentionDeadLetterQueue", "Arn"]}}
    alarm = resources["RetentionDeadLettersAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["RetentionDeadLetterQueue", "QueueName"]}


def test_the_config_rule_is_change_triggered_and_periodic_on_buckets(translated) -> None:
    rule = translated["Resources"]["RetentionConfigRule"]["Properties"]
    assert rule["Scope"] == {"ComplianceResourceTypes": ["AWS::S3::Bucket"]}
    assert rule["Source"]["SourceIdentifier"] == {"Fn::GetAtt": ["RetentionFunction", "Arn"]}
    kinds = {d["MessageType"]: d.get("MaximumExecutionFrequency") for d in rule["Source"]["SourceDetails"]}
    assert kinds == {"ConfigurationItemChangeNotification": None, "OversizedConfigurationItemChangeNotification": None,
                     "ScheduledNotification": "TwentyFour_Hours"}
    permission = translated["Resources"]["RetentionConfigPermission"]["Properties"]
    assert permission["Principal"] == "config.amazonaws.com"


def test_the_daily_schedule_sends_an_eventbridge_shaped_event(translated) -> None:
    schedule = next(r for k, r in translated["Resources"].items()
                    if r["Type"] == "AWS::Scheduler::Schedule" and k.startswith("RetentionFunctionDaily"))
    target = schedule["Properties"]["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["RetentionFunction", "Arn"]}
    text = target["Input"]["Fn::Sub"]
    sample = json.loads((EVENTS / "schedule.json").read_text())
    rendered = json.loads(text.replace("${AWS::AccountId}", "123456789012").replace("${AWS::Region}", "us-east-1"))
    assert set(rendered) == set(sample) and rendered["detail-type"] == sample["detail-type"] == "Scheduled Event"


@pytest.mark.parametrize("name", ["put_bucket_lifecycle", "delete_bucket_lifecycle", "put_bucket_versioning",
                                  "put_bucket_tagging", "delete_bucket_tagging", "create_bucket", "delete_public_access_block",
                                  "put_public_access_block", "delete_bucket_encryption", "put_bucket_encryption",
                                  "put_bucket_policy", "delete_bucket_policy", "put_bucket_logging", "put_bucket_acl"])
def test_every_sample_bucket_event_matches_the_deployed_rule(translated, name) -> None:
    from moto.events.models import EventPattern  # moto's rule matcher (its TestEventPattern API is not implemented)

    rule = next(r for k, r in translated["Resources"].items()
                if r["Type"] == "AWS::Events::Rule" and k.startswith("RetentionFunctionBucketChanged"))
    pattern = EventPattern.load(json.dumps(rule["Properties"]["EventPattern"]))
    event = json.loads((EVENTS / f"{name}.eventbridge.json").read_text())
    assert pattern.matches_event(event)
    assert not pattern.matches_event({**event, "detail": {**event["detail"], "eventName": "GetBucketLifecycle"}})
