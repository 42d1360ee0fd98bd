"""samconfig.toml: one complete environment per stage group (named environments do not inherit default)."""

from __future__ import annotations

import tomllib

import pytest

from stagewarden.cfn import check_parameters, load_template
from tests.helpers import ROOT, translated_template

CONFIG = tomllib.loads((ROOT / "samconfig.toml").read_text())
TEMPLATE = load_template(ROOT / "template.yaml")
REQUIRED_DEPLOY_KEYS = {"stack_name", "resolve_s3", "s3_prefix", "region", "capabilities", "parameter_overrides", "confirm_changeset"}
#: CloudFormation names unnamed roles and functions <stack>-<LogicalId>-<suffix of up to 13 characters> within 64
#: characters; the boundary and the revocation Deny match them by "<stack>-*", which a truncated name would escape.
NAME_LIMIT, SUFFIX = 64, 13


def overrides(env: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in CONFIG[env]["deploy"]["parameters"]["parameter_overrides"].split())


@pytest.mark.parametrize("env", ["lab", "parallel", "prod"])
def test_each_stage_group_is_a_complete_environment(env: str) -> None:
    deploy = CONFIG[env]["deploy"]["parameters"]

    assert REQUIRED_DEPLOY_KEYS <= set(deploy)
    assert deploy["stack_name"] == f"stagewarden-{env}" and f"stage-group={env}" in deploy["tags"].split()
    assert CONFIG[env]["build"]["parameters"] and CONFIG[env]["validate"]["parameters"]["lint"] is True


@pytest.mark.parametrize("env", ["default", "lab", "parallel", "prod"])
def test_parameter_overrides_name_only_template_parameters_with_allowed_values(env: str) -> None:
    params = TEMPLATE["Parameters"]
    for key, value in overrides(env).items():
        assert key in params, f"{env}: unknown parameter {key}"
        assert value in params[key].get("AllowedValues", [value]), f"{env}: {key}={value} not allowed"


@pytest.mark.parametrize("env", ["default", "lab", "parallel", "prod"])
def test_each_environment_deploys_without_a_prompt_and_passes_cloudformations_parameter_checks(env: str) -> None:
    # Given what `sam deploy --config-env <env>` sends: the overrides, the template's defaults for the rest
    values = {name: spec["Default"] for name, spec in TEMPLATE["Parameters"].items() if "Default" in spec} | overrides(env)

    assert check_parameters(TEMPLATE, values) == []
    assert values["DataBucketNamePrefix"] == {"default": "acme-lab-", "lab": "acme-lab-", "parallel": "acme-uat-", "prod": "acme-prod-"}[env]


@pytest.mark.parametrize("env", ["default", "lab", "parallel", "prod"])
def test_stack_names_leave_generated_role_and_function_names_untruncated(env: str) -> None:
    stack = CONFIG[env]["deploy"]["parameters"]["stack_name"]
    resources = translated_template()["Resources"]
    named = [k for k, r in resources.items() if r["Type"] in ("AWS::IAM::Role", "AWS::Lambda::Function") and
             not {"RoleName", "FunctionName"} & set(r["Properties"])]
    longest = max(named, key=len)

    assert len(f"{stack}-{longest}-") + SUFFIX <= NAME_LIMIT, f"{stack}: {longest} would be truncated"
