"""samconfig.toml: one complete environment per stage group (named environments do not inherit default)."""

from __future__ import annotations

import tomllib

import pytest

from stagewarden.cfn import load_template
from tests.helpers import ROOT

CONFIG = tomllib.loads((ROOT / "samconfig.toml").read_text())
REQUIRED_DEPLOY_KEYS = {"stack_name", "resolve_s3", "s3_prefix", "region", "capabilities", "parameter_overrides", "confirm_changeset"}


@pytest.mark.parametrize("env", ["lab", "parallel", "prod"])
def test_each_stage_group_is_a_complete_environment(env: str) -> None:
    deploy = CONFIG[env]["deploy"]["parameters"]

    assert REQUIRED_DEPLOY_KEYS <= set(deploy)
    assert deploy["stack_name"] == f"stagewarden-{env}" and f"StageGroup={env}" in deploy["parameter_overrides"]
    assert CONFIG[env]["build"]["parameters"] and CONFIG[env]["validate"]["parameters"]["lint"] is True


@pytest.mark.parametrize("env", ["default", "lab", "parallel", "prod"])
def test_parameter_overrides_name_only_template_parameters_with_allowed_values(env: str) -> None:
    params = load_template(ROOT / "template.yaml")["Parameters"]
    for pair in CONFIG[env]["deploy"]["parameters"]["parameter_overrides"].split():
        key, value = pair.split("=", 1)
        assert key in params, f"{env}: unknown parameter {key}"
        assert value in params[key].get("AllowedValues", [value]), f"{env}: {key}={value} not allowed"
