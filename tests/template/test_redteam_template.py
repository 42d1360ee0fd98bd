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
