"""Least privilege a bank's IAM reviewer can check: boundary, data-bucket prefix, revocation only on stage roles."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase

import pytest

from stage_policy.model import STAGE_TAG
from stagewarden.cfn import check_parameters, load_template
from stagewarden.emulator import EmulatorError, LocalState, Provisioner
from tests.helpers import ACCOUNT_ID, REGION, ROOT, SUFFIX, as_list, deployed, identity_statements, is_write, translated_template

TEMPLATE = load_template(ROOT / "template.yaml")
BOUNDARY = {"Fn::If": ["CreateBoundary", {"Ref": "StagewardenBoundary"}, {"Ref": "PermissionsBoundaryArn"}]}
ORG_BOUNDARY = "arn:aws:iam::123456789012:policy/org/DeveloperBoundary"
DEPLOYMENTS = {
    "defaults": {},
    "own-trail-and-key": {"CloudTrailBucketName": "org-trail", "CloudTrailKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/trail"},
}
XRAY = ("xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries")
#: What each AWS managed policy SAM attaches is needed for, on the function's own resources (the boundary narrows them).
SAM_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": lambda fn, queues: [
        (a, f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/aws/lambda/{fn}:*")
        for a in ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")],
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": lambda fn, queues: [(a, "*") for a in XRAY],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": lambda fn, queues: [
        (a, q) for q in queues for a in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")],
}


@pytest.fixture(scope="module")
def translated() -> dict:
    return translated_template()


def roles(resources: dict) -> dict[str, dict]:
    return {k: r for k, r in resources.items() if r["Type"] == "AWS::IAM::Role"}


def grants(translated: dict, resources: dict, role: str) -> list[tuple[str, str, str, dict | None]]:
    """(effect, action, resource, condition) a role is granted: its inline statements and what SAM's managed policies are for."""
    out = [(s["Effect"], a, r, s.get("Condition")) for holder, s in identity_statements({role: resources[role]})
           for a in as_list(s["Action"]) for r in as_list(s["Resource"])]
    function = next((k for k, r in translated["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
                     and r["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}), None)
    queues = [resources[k]["Properties"]["EventSourceArn"] for k, r in translated["Resources"].items()
              if r["Type"] == "AWS::Lambda::EventSourceMapping" and r["Properties"]["FunctionName"] == {"Ref": function}]
    for arn in resources[role]["Properties"].get("ManagedPolicyArns", []):
        out += [("Allow", a, r, None) for a, r in SAM_MANAGED[arn](f"stagewarden-lab-{function}-{SUFFIX}", queues)]
    return out


def _names(statement: dict, action: str) -> bool:
    """The statement's Action matches the action, or its NotAction does not."""
    if "NotAction" in statement:
        return not any(fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["NotAction"]))
    return any(fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["Action"]))


def covered(boundary: list[dict], effect: str, action: str, resource: str, condition: dict | None) -> bool:
    return any(s["Effect"] == effect and (not s.get("Condition") or s["Condition"] == condition) and _names(s, action)
               and any(fnmatchcase(resource, r) for r in as_list(s["Resource"])) for s in boundary)


def test_every_role_the_stack_creates_carries_the_permissions_boundary(translated) -> None:
    created = roles(translated["Resources"])

    functions = {k for k, v in TEMPLATE["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    # every function's role, and the roles SAM makes for their schedules (<Function><Event>Role): nothing else
    assert {f"{fn}Role" for fn in functions} <= set(created)
    assert all(any(name.startswith(fn) for fn in functions) for name in created), sorted(created)
    assert {k: r["Properties"].get("PermissionsBoundary") for k, r in created.items()} == {k: BOUNDARY for k in created}
    assert TEMPLATE["Parameters"]["PermissionsBoundaryArn"]["Default"] == ""
    assert TEMPLATE["Conditions"]["CreateBoundary"] == {"Fn::Equals": [{"Ref": "PermissionsBoundaryArn"}, ""]}


def test_by_default_the_stack_creates_the_boundary_and_a_deployer_may_name_their_own(translated) -> None:
    own = deployed(translated)
    org = deployed(translated, PermissionsBoundaryArn=ORG_BOUNDARY)

    assert own["StagewardenBoundary"]["Type"] == "AWS::IAM::ManagedPolicy"
    assert {r["Properties"]["PermissionsBoundary"] for r in roles(own).values()} == {
        f"arn:aws:iam::{ACCOUNT_ID}:policy/stagewarden-lab-StagewardenBoundary-{SUFFIX}"}
    assert "StagewardenBoundary" not in org
    assert {r["Properties"]["PermissionsBoundary"] for r in roles(org).values()} == {ORG_BOUNDARY}
    assert check_parameters(TEMPLATE, {"DataBucketNamePrefix": "acme-lab-", "PermissionsBoundaryArn": ORG_BOUNDARY}) == []
    assert check_parameters(TEMPLATE, {"DataBucketNamePrefix": "acme-lab-", "PermissionsBoundaryArn": "DeveloperBoundary"})


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_the_boundary_allows_exactly_what_the_roles_are_granted_on_the_same_resources(translated, deployment: str) -> None:
    resources = deployed(translated, **DEPLOYMENTS[deployment])
    boundary = as_list(resources["StagewardenBoundary"]["Properties"]["PolicyDocument"]["Statement"])
    granted = {role: grants(translated, resources, role) for role in roles(resources)}

    # every grant (and every Deny) of every role is within the boundary, on the same resources, under the same condition
    outside = [f"{role}: {effect} {action} on {resource}" for role, gs in granted.items() for effect, action, resource, condition in gs
               if not covered(boundary, effect, action, resource, condition)]
    assert outside == []
    # and the boundary allows no action that no role is granted
    allowed = {a for s in boundary if s["Effect"] == "Allow" for a in as_list(s["Action"])}
    assert allowed == {action for gs in granted.values() for effect, action, _, _ in gs if effect == "Allow"}


def test_roles_attach_only_the_managed_policies_sam_adds(translated) -> None:
    attached = {a for r in roles(translated["Resources"]).values() for a in r["Properties"].get("ManagedPolicyArns", [])}

    assert attached == set(SAM_MANAGED)


@pytest.mark.parametrize("holder", ["ExfiltrationFunctionRole", "StagewardenBoundary"])
def test_sessions_are_revoked_only_on_stage_tagged_roles_and_never_on_the_stacks_own(translated, holder: str) -> None:
    resources = deployed(translated)
    statements = [s for h, s in identity_statements(resources) if h == holder]
    revoke = {"iam:PutRolePolicy"}  # the inline deny; lifting one (iam:DeleteRolePolicy) is break glass's, not this role's
    allows = [s for s in statements if s["Effect"] == "Allow" and {"iam:PutRolePolicy", "iam:DeleteRolePolicy"} & set(as_list(s["Action"]))]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    # the boundary also holds break glass's role changes, under the same tag condition (test_break_glass_changes_only_...)
    expected = revoke if holder == "ExfiltrationFunctionRole" else revoke | BREAK_GLASS_CHANGES

    # Allowed: the revocation, on any role, but only one that carries the stage tag
    assert [set(as_list(s["Action"])) for s in allows] == [expected]
    assert allows[0]["Resource"] == f"arn:aws:iam::{ACCOUNT_ID}:role/*"
    assert allows[0]["Condition"] == {"Null": {f"aws:ResourceTag/{STAGE_TAG}": "false"}}
    # Denied whatever the tags say: every role this stack creates, by the name CloudFormation gives it
    own_roles = [r["Properties"].get("RoleName") or f"stagewarden-lab-{k}-{SUFFIX}" for k, r in roles(resources).items()]
    for name in own_roles:
        for action in revoke:
            assert covered(denies, "Deny", action, f"arn:aws:iam::{ACCOUNT_ID}:role/{name}", None), (name, action)
    assert not covered(denies, "Deny", "iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT_ID}:role/DataScientistAlice", None)


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_every_s3_write_is_on_the_data_bucket_prefix(translated, deployment: str) -> None:
    resources = deployed(translated, DataBucketNamePrefix="zz-data-", **DEPLOYMENTS[deployment])
    writes = [(h, a, r) for h, s in identity_statements(resources) if s["Effect"] == "Allow"
              for a in as_list(s["Action"]) if a.startswith("s3:") and is_write(a) for r in as_list(s["Resource"])]

    assert {a for _, a, _ in writes} >= {"s3:PutObject", "s3:PutObjectTagging", "s3:PutBucketPolicy", "s3:PutBucketAcl",
                                         "s3:DeleteBucketPolicy", "s3:PutReplicationConfiguration"}
    assert [w for w in writes if w[2] not in ("arn:aws:s3:::zz-data-*", "arn:aws:s3:::zz-data-*/*")] == []


@pytest.mark.parametrize("prefix", ["", "*", "Acme-Lab-", "acme/lab", "-acme"])
def test_an_empty_or_wildcard_data_bucket_prefix_is_refused(prefix: str) -> None:
    assert "Default" not in TEMPLATE["Parameters"]["DataBucketNamePrefix"]
    assert check_parameters(TEMPLATE, {"DataBucketNamePrefix": prefix}) != []
    assert check_parameters(TEMPLATE, {"DataBucketNamePrefix": "acme-lab-"}) == []


def test_the_emulator_refuses_an_empty_prefix_before_creating_anything() -> None:
    def no_client(service: str):
        raise AssertionError(f"created a {service} client")

    state = LocalState(endpoint="", pid=None, parameters={"DataBucketNamePrefix": ""})

    with pytest.raises(EmulatorError, match="Parameters.DataBucketNamePrefix: '' is shorter than 1 character"):
        Provisioner(load_template(ROOT / "template.yaml"), state, no_client).run()


def test_the_boundary_fits_iams_managed_policy_size_with_the_longest_names(translated) -> None:
    resources = deployed(translated, stack="s" * 128, DataBucketNamePrefix="p" * 62, CloudTrailBucketName="t" * 63,
                         CloudTrailKmsKeyArn=f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{'k' * 36}")
    document = resources["StagewardenBoundary"]["Properties"]["PolicyDocument"]

    assert len(json.dumps(document, separators=(",", ":"))) <= 6144  # IAM counts characters without whitespace


BREAK_GLASS_CHANGES = {"iam:UpdateAssumeRolePolicy", "iam:TagRole", "iam:UntagRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy",
                       "iam:DetachRolePolicy"}


@pytest.mark.parametrize("holder", ["BreakGlassFunctionRole", "StagewardenBoundary"])
def test_break_glass_changes_only_stage_tagged_roles_never_the_stacks_own_and_passes_only_its_scheduler_role(
        translated, holder: str) -> None:
    resources = deployed(translated)
    statements = [s for h, s in identity_statements(resources) if h == holder]
    changes = BREAK_GLASS_CHANGES
    mine = [s for s in statements if s["Effect"] == "Allow" and changes & set(as_list(s.get("Action", [])))]

    # every role change break glass makes is on a role that carries the stage tag
    assert [set(as_list(s["Action"])) for s in mine] == [changes]
    assert mine[0]["Resource"] == f"arn:aws:iam::{ACCOUNT_ID}:role/*"
    assert mine[0]["Condition"] == {"Null": {f"aws:ResourceTag/{STAGE_TAG}": "false"}}
    # it may pass one role, its scheduler's, and only to Scheduler
    scheduler_role = f"arn:aws:iam::{ACCOUNT_ID}:role/stagewarden-lab-BreakGlassFunctionExpiryRole-{SUFFIX}"
    [passing] = [s for s in statements if "iam:PassRole" in as_list(s.get("Action", []))]
    assert covered([passing], "Allow", "iam:PassRole", scheduler_role, passing.get("Condition"))
    assert not covered([passing], "Allow", "iam:PassRole", f"arn:aws:iam::{ACCOUNT_ID}:role/DataScientistAlice", passing.get("Condition"))
    if holder == "BreakGlassFunctionRole":  # the boundary leaves the condition to the role (IAM's 6,144 characters)
        assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    # and both deny every change to the stack's own roles (passing the scheduler role is no change)
    denies = [s for s in statements if s["Effect"] == "Deny"]
    own = f"arn:aws:iam::{ACCOUNT_ID}:role/stagewarden-lab-BreakGlassFunctionExpiryRole-{SUFFIX}"
    assert all(covered(denies, "Deny", a, own, None) for a in changes)
    assert not covered(denies, "Deny", "iam:PassRole", own, None)
