"""Red team: template parameters that reach the functions but not their IAM."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from tests.helpers import as_list, deployed, identity_statements, translated_template

FUNCTION_ROLES = ("PolicyGuardFunctionRole", "ExfiltrationFunctionRole", "SchemaGateFunctionRole")


@pytest.mark.xfail(strict=True, reason=(
    "PolicyLocation is documented as 'where every function reads the policy' and reaches them as "
    "STAGEWARDEN_POLICY_LOCATION, but every role (and StagewardenBoundary) may read only ${PolicyBucket.Arn}/*: a policy "
    "anywhere else is AccessDenied at every cold start (the functions act on nothing), and PolicyGuard's PolicyChanged "
    "rule watches only PolicyBucket"))
def test_a_policy_location_outside_the_policy_bucket_is_readable_by_every_function() -> None:
    location = "arn:aws:s3:::acme-config/stagewarden/policy.yaml"
    resources = deployed(translated_template(), PolicyLocation="s3://acme-config/stagewarden/policy.yaml")

    def may_read(holder: str) -> bool:
        return any(s["Effect"] == "Allow" and "s3:GetObject" in as_list(s["Action"])
                   and any(fnmatchcase(location, r) for r in as_list(s["Resource"]))
                   for h, s in identity_statements(resources) if h == holder)

    assert {holder: may_read(holder) for holder in (*FUNCTION_ROLES, "StagewardenBoundary")} == {
        holder: True for holder in (*FUNCTION_ROLES, "StagewardenBoundary")}


@pytest.mark.xfail(strict=True, reason=(
    "safety.max_revocations_per_run is counted per invocation, and nothing bounds how many invocations run at once: "
    "ExfiltrationFunction has no ReservedConcurrentExecutions and its SQS event source no ScalingConfig.MaximumConcurrency, "
    "so a burst of queued log files can revoke up to cap x (Lambda's SQS scaling, up to 1,250 concurrent) roles"))
def test_the_exfiltration_cap_bounds_revocations_across_concurrent_invocations() -> None:
    resources = deployed(translated_template())
    function = resources["ExfiltrationFunction"]["Properties"]
    mappings = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
                and "ExfiltrationFunction" in r["Properties"]["FunctionName"]]
    assert len(mappings) == 1
    bounded = "ReservedConcurrentExecutions" in function or any("MaximumConcurrency" in (m.get("ScalingConfig") or {}) for m in mappings)
    assert bounded
