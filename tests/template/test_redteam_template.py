"""Red team: template parameters that reach the functions but not their IAM."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from tests.helpers import as_list, deployed, identity_statements, translated_template

FUNCTION_ROLES = ("PolicyGuardFunctionRole", "ExfiltrationFunctionRole", "SchemaGateFunctionRole")


def test_a_policy_location_outside_the_policy_bucket_is_readable_by_every_function() -> None:
    location = "arn:aws:s3:::acme-config/stagewarden/policy.yaml"
    resources = deployed(translated_template(), PolicyLocation="s3://acme-config/stagewarden/policy.yaml")

    def may_read(holder: str) -> bool:
        return any(s["Effect"] == "Allow" and "s3:GetObject" in as_list(s["Action"])
                   and any(fnmatchcase(location, r) for r in as_list(s["Resource"]))
                   for h, s in identity_statements(resources) if h == holder)

    assert {holder: may_read(holder) for holder in (*FUNCTION_ROLES, "StagewardenBoundary")} == {
        holder: True for holder in (*FUNCTION_ROLES, "StagewardenBoundary")}


def test_the_exfiltration_cap_bounds_revocations_across_concurrent_invocations() -> None:
    # safety.max_revocations_per_run counts per invocation: only a bound on concurrent invocations bounds a burst.
    # Given the template as deployed
    resources = deployed(translated_template())
    function = resources["ExfiltrationFunction"]["Properties"]
    mappings = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
                and "ExfiltrationFunction" in r["Properties"]["FunctionName"]]
    # Then the function has reserved concurrency, its only event source may not invoke more than that, and no
    # other path invokes it (no schedule, rule or permission for another service)
    assert len(mappings) == 1
    reserved = function["ReservedConcurrentExecutions"]
    assert mappings[0]["ScalingConfig"]["MaximumConcurrency"] == reserved
    assert not [k for k, r in resources.items() if r["Type"] == "AWS::Lambda::Permission"
                and "ExfiltrationFunction" in str(r["Properties"]["FunctionName"])]
    # so a burst revokes at most reserved x cap sessions (10 x 20 with the example policy), not 1,250 x cap
    assert 1 <= reserved <= 10


def test_two_stacks_in_one_account_and_region_do_not_collide_on_the_schedule_name() -> None:
    # SAM names a ScheduleV2 schedule after its logical id when the event gives no Name (aws/serverless-application-model
    # #3109): every stack would create 'PolicyGuardFunctionHourly' in the default group, and the second of samconfig.toml's
    # lab/parallel/prod environments (all eu-west-1) would fail to create in the same account
    for logical in ("PolicyGuardFunctionHourly", "RetentionFunctionDaily"):
        names = {stack: deployed(translated_template(), stack=stack)[logical]["Properties"]["Name"]
                 for stack in ("stagewarden-lab", "stagewarden-prod")}
        assert names["stagewarden-lab"] != names["stagewarden-prod"], names
        assert all(len(name) <= 64 for name in names.values())


def test_the_readmes_deployer_permissions_cover_every_service_and_bucket_setting_the_stack_uses() -> None:
    from tests.helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    paragraph = readme.split("**The deployer's IAM permissions.**", 1)[1].split("\n\n", 1)[0]
    types = {r["Type"] for r in translated_template()["Resources"].values()}
    services = {t.split("::")[1].lower() for t in types} - {"serverless"}
    prefixes = {"cloudwatch": "cloudwatch:", "logs": "logs:", "iam": "iam:", "kms": "kms:", "s3": "s3:", "sns": "sns:",
                "sqs": "sqs:", "dynamodb": "dynamodb:", "events": "events:", "lambda": "lambda:", "scheduler": "scheduler:",
                "config": "config:"}
    assert [s for s in sorted(services) if prefixes[s] not in paragraph] == []
    # a bucket's default encryption is s3:PutEncryptionConfiguration, which s3:PutBucket* does not match
    assert "s3:PutEncryptionConfiguration" in paragraph
