"""Shared fixtures: dummy AWS credentials and region, no endpoint override, Powertools quiet and offline."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ProvisionedStack, require_corpus

# Property tests: the default suite (what CI runs) draws the same examples every run, so a red CI is a regression, not
# a new random draw; exploration is the dedicated runs' job (make fuzz, make property set STAGEWARDEN_EXPLORE=1), and
# what they find becomes a regression test. Loaded here, before any test module builds its settings on this default.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

EXPLORE = os.environ.get("STAGEWARDEN_EXPLORE") == "1"
_hypothesis_settings.register_profile("stagewarden", derandomize=not EXPLORE, database=None)
_hypothesis_settings.load_profile("stagewarden")

ROOT = Path(__file__).resolve().parent.parent
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "stagewarden-tests",
    "POWERTOOLS_METRICS_NAMESPACE": "StagewardenTests",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
}


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in DUMMY_AWS.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    # boto3's default session caches the credentials it first found: every test starts without one
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    # Powertools keeps metrics in a process-wide set until a handler flushes them: an earlier test's invocation that
    # raised before its flush must not print its metrics into this test's output
    if "aws_lambda_powertools.metrics" in sys.modules:
        from aws_lambda_powertools import Metrics

        Metrics().clear_metrics()


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def example_policy_path() -> Path:
    return ROOT / "policy.example.yaml"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The invictus-ir CloudTrail corpus: skipped with the reason when absent, failed when CI is set."""
    return require_corpus()


@pytest.fixture(scope="module")
def provisioned_stack() -> Iterator[ProvisionedStack]:
    """template.yaml provisioned in-process under moto's mock_aws (the same provisioner as `local up`), once per module."""
    import boto3
    from moto import mock_aws

    from stagewarden.cfn import load_template, parameter_defaults
    from stagewarden.emulator import LOCAL_PARAMETERS, LocalState, Provisioner

    with pytest.MonkeyPatch.context() as monkeypatch:  # module scope: before any test's own environment
        _offline(monkeypatch)
        with mock_aws():
            template = load_template(ROOT / "template.yaml")
            state = LocalState(endpoint="", pid=None, stack_name="stagewarden-local")  # the names in events/
            state.parameters = parameter_defaults(template, LOCAL_PARAMETERS)
            Provisioner(template, state, boto3.client).run()
            yield ProvisionedStack(state, boto3.client)


@pytest.fixture
def stack(provisioned_stack: ProvisionedStack):
    """The module's stack as provisioned: its own copy of the state, and AWS put back after the test."""
    yield provisioned_stack.fresh_state()
    provisioned_stack.reset()
