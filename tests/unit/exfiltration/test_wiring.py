"""The function's wiring in template.yaml: every call a single-event rule reads reaches it; its environment."""

from __future__ import annotations

from exfil.deployment import Deployment
from exfil.singles import SINGLE_EVENT_RULES

from stagewarden.cfn import load_template
from tests.helpers import ROOT


def _matches(pattern: list, value: str) -> bool:
    for entry in pattern:
        if isinstance(entry, str) and entry == value:
            return True
        if isinstance(entry, dict) and "prefix" in entry and value.startswith(entry["prefix"]):
            return True
    return False


def test_the_management_event_rule_delivers_every_call_a_single_event_rule_reads() -> None:
    pattern = load_template(ROOT / "template.yaml")["Resources"]["ExfilManagementEventRule"]["Properties"]["EventPattern"]

    missing = [(source, name) for source, name in SINGLE_EVENT_RULES
               if not _matches(pattern["detail"]["eventName"], name) or "aws." + source.split(".")[0] not in pattern["source"]]

    assert missing == []


def test_the_function_knows_its_account_stack_and_trail_bucket() -> None:
    env = load_template(ROOT / "template.yaml")["Resources"]["ExfiltrationFunction"]["Properties"]["Environment"]["Variables"]

    assert {"STAGEWARDEN_ACCOUNT_ID", "STAGEWARDEN_STACK_NAME", "STAGEWARDEN_TRAIL_BUCKET"} <= set(env)


def test_the_deployment_is_read_from_the_environment() -> None:
    d = Deployment.from_env({"STAGEWARDEN_ACCOUNT_ID": "123456789012", "STAGEWARDEN_STACK_NAME": "sw",
                             "STAGEWARDEN_TRAIL_BUCKET": "trail-bucket"})

    assert d == Deployment("123456789012", "sw", "trail-bucket")
    assert d.owns("sw-ExfilLogFileRule-1") and d.owns("arn:aws:lambda:us-east-1:1:function:sw-F") and not d.owns("swx-F")
    assert Deployment.from_env({}) == Deployment()


def test_an_invalid_deployment_variable_is_named() -> None:
    import pytest

    from exfil import deployment  # one module object for both (function tests re-import exfil as a cold start would)

    with pytest.raises(deployment.DeploymentError, match="STAGEWARDEN_ACCOUNT_ID"):
        deployment.Deployment.from_env({"STAGEWARDEN_ACCOUNT_ID": "12"})
