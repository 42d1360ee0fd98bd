"""Shared fixtures: dummy AWS credentials and region, no endpoint override, Powertools quiet and offline."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "stagewarden-tests",
        "POWERTOOLS_METRICS_NAMESPACE": "StagewardenTests",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    # boto3's default session caches the credentials it first found: every test starts without one
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def example_policy_path() -> Path:
    return ROOT / "policy.example.yaml"


@pytest.fixture
def stack():
    """template.yaml provisioned in-process under moto's mock_aws (the same provisioner as `local up`)."""
    import boto3
    from moto import mock_aws

    from stagewarden.cfn import load_template, parameter_defaults
    from stagewarden.emulator import LocalState, Provisioner

    with mock_aws():
        template = load_template(ROOT / "template.yaml")
        state = LocalState(endpoint="", pid=None, stack_name="stagewarden-local")  # the names in events/
        state.parameters = parameter_defaults(template)
        Provisioner(template, state, boto3.client).run()
        yield state
