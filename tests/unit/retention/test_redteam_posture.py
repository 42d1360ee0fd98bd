"""Red team on bucket posture (issue 14): the evasions an attacker or a careless admin would try.

Each test is one attempt. It passes when the attempt is caught (the bucket is brought back, or the
finding says what happened); a weakness still open is a strict xfail whose reason says exactly why.
The README's "Tried as an attacker" list (section "Bucket posture") names each one.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator
from unittest import mock

import boto3
import pytest

from keeper.posture import BLOCK_KEYS, POLICY_LIMIT, TLS_SID, PostureReader, PostureState, is_tls_deny, plan, tls_statement
from stage_policy.model import Posture
from stagewarden.invoke import function_spec, invoke
from tests.helpers import ROOT, drain, seed_policy_in_process
from tests.unit.retention.conftest import LAB, OTHER, PROD, event, policy_variant, postured

ALL_ON = dict.fromkeys(BLOCK_KEYS, True)
GOOD = tls_statement(LAB)
COMPLIANT = PostureState({"SSEAlgorithm": "aws:kms"}, ALL_ON, json.dumps({"Version": "2012-10-17", "Statement": [GOOD]}),
                         None, "Enabled")
LAB2 = "acme-lab-second"


@contextmanager
def after_call(operation: str, action) -> Iterator[list]:
    """Fault injection over moto: run ``action`` once, right after the function's first ``operation`` call.

    The function's modules are imported fresh on each invoke, so patching its classes would not reach it;
    its boto3 clients come from the default session, whose event hooks they copy when created.
    """
    session = boto3._get_default_session()
    fired: list = []

    def hook(**_):
        if not fired:
            fired.append(operation)
            action()

    session.events.register(f"after-call.s3.{operation}", hook, unique_id=f"redteam-{operation}")
    try:
        yield fired
    finally:
        session.events.unregister(f"after-call.s3.{operation}", unique_id=f"redteam-{operation}")


def run(stack, evt: dict):
    return invoke(function_spec(ROOT / "template.yaml", "RetentionFunction", stack), evt)


def with_policy(policy: str | None) -> PostureState:
    return PostureState(COMPLIANT.encryption, COMPLIANT.block, policy, None, "Enabled")


def doc(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def rules_of(findings: list[dict], bucket: str = LAB) -> list[str]:
    return sorted(f["rule"] for f in findings if f["resource"] == f"arn:aws:s3:::{bucket}" and f["rule"].startswith("posture."))


def statements(bucket: str) -> list[dict]:
    got = json.loads(boto3.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    return got if isinstance(got, list) else [got]


def snapshot(bucket: str) -> dict:
    """Every posture setting of a bucket, as S3 (moto) holds it: what a write would change."""
    s3 = boto3.client("s3")

    def read(call, key):
        try:
            return call(Bucket=bucket).get(key)
        except Exception as exc:  # noqa: BLE001 - "none" is a state too
            return type(exc).__name__ + ":" + str(getattr(exc, "response", {}).get("Error", {}).get("Code"))

    return {"encryption": read(s3.get_bucket_encryption, "ServerSideEncryptionConfiguration"),
            "block": read(s3.get_public_access_block, "PublicAccessBlockConfiguration"),
            "policy": read(s3.get_bucket_policy, "Policy"), "versioning": read(s3.get_bucket_versioning, "Status"),
            "logging": read(s3.get_bucket_logging, "LoggingEnabled"), "tags": read(s3.get_bucket_tagging, "TagSet")}


# ---------------------------------------------------------------- a TLS statement that is there but useless
USELESS = {
    "effect Allow": {**GOOD, "Effect": "Allow"},
    "SecureTransport true": {**GOOD, "Condition": {"Bool": {"aws:SecureTransport": "true"}}},
    "misspelt condition key": {**GOOD, "Condition": {"Bool": {"aws:SecureTransports": "false"}}},
    "principal narrowed to one account": {**GOOD, "Principal": {"AWS": "arn:aws:iam::123456789012:root"}},
    "resource the bucket only, not its objects": {**GOOD, "Resource": f"arn:aws:s3:::{LAB}"},
    "resource one prefix of the objects": {**GOOD, "Resource": [f"arn:aws:s3:::{LAB}", f"arn:aws:s3:::{LAB}/public/*"]},
    "resource another bucket": {**GOOD, "Resource": ["arn:aws:s3:::acme-lab-decoy", "arn:aws:s3:::acme-lab-decoy/*"]},
    "NotResource instead of Resource": {**{k: v for k, v in GOOD.items() if k != "Resource"}, "NotResource": GOOD["Resource"]},
    "NotAction instead of Action": {**{k: v for k, v in GOOD.items() if k != "Action"}, "NotAction": "s3:GetObject"},
    "NotPrincipal beside Principal": {**GOOD, "NotPrincipal": {"AWS": "arn:aws:iam::123456789012:role/mallory"}},
    "only s3:Get* denied": {**GOOD, "Action": "s3:Get*"},
    "a second condition operator (ANDed: one account only)": {
        **GOOD, "Condition": {"Bool": {"aws:SecureTransport": "false"}, "StringEquals": {"aws:PrincipalAccount": "999999999999"}}},
    "a second Bool key (ANDed: only without MFA)": {
        **GOOD, "Condition": {"Bool": {"aws:SecureTransport": "false", "aws:MultiFactorAuthPresent": "true"}}},
    "no condition at all on an Allow": {**{k: v for k, v in GOOD.items() if k != "Condition"}, "Effect": "Allow"},
}


@pytest.mark.parametrize("statement", list(USELESS.values()), ids=list(USELESS))
def test_a_present_but_useless_tls_statement_does_not_count_and_ours_is_merged_beside_it(statement) -> None:
    # Given a policy whose only "TLS" statement is defused
    [check] = plan(LAB, Posture(), with_policy(doc({**statement, "Sid": "LooksLikeTls"})))

    # Then posture.tls, and the merge keeps the owner's statement and adds a real one
    assert check.rule == "posture.tls" and not is_tls_deny(statement, LAB)
    merged = json.loads(check.actions[0].policy)["Statement"]
    assert merged[0] == {**statement, "Sid": "LooksLikeTls"} and merged[1] == GOOD and is_tls_deny(merged[1], LAB)


ACCEPTED = {
    "ours": GOOD,
    "principal AWS *": {**GOOD, "Principal": {"AWS": "*"}},
    "action *": {**GOOD, "Action": "*"},
    "BoolIfExists, JSON false": {**GOOD, "Condition": {"BoolIfExists": {"aws:SecureTransport": False}}},
    "resource a glob covering the bucket and its objects": {**GOOD, "Resource": "arn:aws:s3:::acme-lab-*"},
    "resource *": {**GOOD, "Resource": "*"},
}


@pytest.mark.parametrize("statement", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_a_real_tls_statement_in_any_valid_spelling_is_accepted_without_a_write(statement) -> None:
    assert plan(LAB, Posture(), with_policy(doc(statement))) == []
    assert plan(LAB, Posture(), with_policy(json.dumps({"Statement": statement}))) == []  # the one-object shape too


def test_a_tls_statement_with_stagewardens_sid_granting_access_is_replaced_not_kept() -> None:
    # Given an attacker's Allow-everyone statement named like Stagewarden's
    forged = {**GOOD, "Sid": TLS_SID, "Effect": "Allow", "Condition": {}}
    [check] = plan(LAB, Posture(), with_policy(doc(forged)))
    assert json.loads(check.actions[0].policy)["Statement"] == [GOOD]


def test_a_policy_merging_to_exactly_20_kb_is_merged_and_one_byte_more_is_critical_without_a_write() -> None:
    def padded(n: int) -> str:
        return doc({"Sid": "Pad", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket",
                    "Resource": f"arn:aws:s3:::{LAB}", "Condition": {"StringEquals": {"aws:PrincipalTag/x": "p" * n}}})

    probe = plan(LAB, Posture(), with_policy(padded(0)))[0]
    fill = POLICY_LIMIT - len(probe.actions[0].policy.encode())
    [at] = plan(LAB, Posture(), with_policy(padded(fill)))
    [over] = plan(LAB, Posture(), with_policy(padded(fill + 1)))
    assert len(at.actions[0].policy.encode()) == POLICY_LIMIT and at.severity == "high"
    assert (over.severity, over.actions, over.after["bytes"]) == ("critical", [], POLICY_LIMIT + 1)


@pytest.mark.parametrize("hostile", ["not json", "[1, 2]", "\"a string\"", "[" * 5000 + "]" * 5000, "null"],
                         ids=["not-json", "a-list", "a-string", "nested-5000-deep", "null"])
def test_hostile_policy_json_is_a_critical_finding_never_a_crash_or_a_blind_write(hostile) -> None:
    [check] = plan(LAB, Posture(), with_policy(hostile))
    assert (check.rule, check.severity, check.actions) == ("posture.tls", "critical", [])


def test_a_bucket_whose_posture_cannot_be_planned_does_not_stop_the_daily_run_for_the_others(lab) -> None:
    # Given two lab buckets without a public access block, and planning one of them blows up
    from tests.unit.retention.test_app import schedule


    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=LAB2)
    s3.put_bucket_versioning(Bucket=LAB2, VersioningConfiguration={"Status": "Enabled"})
    postured(LAB2)
    for bucket in (LAB, LAB2):
        s3.delete_public_access_block(Bucket=bucket)
    import stage_policy.findings as findings_module

    class Exploding(findings_module.Finding):
        """Planning the lab's posture blows up (the function's modules are imported fresh and pick this up)."""

        def __init__(self, **kwargs):
            if kwargs.get("rule", "").startswith("posture.") and kwargs.get("resource") == f"arn:aws:s3:::{LAB}":
                raise RecursionError("maximum recursion depth exceeded")
            super().__init__(**kwargs)

    # When the daily run reaches them (acme-lab-data sorts first)
    with mock.patch.object(findings_module, "Finding", Exploding):
        run(lab, schedule())

    # Then the second bucket is still brought back, and the first is reported as not reconciled
    assert boto3.client("s3").get_public_access_block(Bucket=LAB2)["PublicAccessBlockConfiguration"] == ALL_ON
    findings = drain(lab.inbox)
    [unreadable] = [f for f in findings if f["rule"] == "retention.unreadable"]
    assert LAB in unreadable["summary"] and "recursion" in unreadable["summary"]


def test_a_hostile_policy_in_the_emulator_is_reported_critical_and_left_as_it_is(lab) -> None:
    # moto stores any text as a bucket policy (S3 would refuse it): the function must not fall over on it
    boto3.client("s3").put_bucket_policy(Bucket=LAB, Policy="[1, 2]")

    run(lab, event("put_bucket_policy.eventbridge.json"))

    assert boto3.client("s3").get_bucket_policy(Bucket=LAB)["Policy"] == "[1, 2]"
    [tls] = [f for f in drain(lab.inbox) if f["rule"] == "posture.tls"]
    assert tls["severity"] == "critical" and "not a JSON object" in tls["summary"]


# ---------------------------------------------------------------- encryption
def test_a_kms_alias_of_the_same_name_in_another_account_is_not_the_named_key() -> None:
    keyed = Posture(kms_key="alias/lab-data")
    own = PostureState({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:aws:kms:us-east-1:123456789012:alias/lab-data"},
                       ALL_ON, COMPLIANT.policy, None, "Enabled")
    foreign = PostureState({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:aws:kms:us-east-1:999999999999:alias/lab-data"},
                           ALL_ON, COMPLIANT.policy, None, "Enabled")
    evil = PostureState({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/lab-data-evil"}, ALL_ON, COMPLIANT.policy, None,
                        "Enabled")
    assert plan(LAB, keyed, own, account="123456789012") == []
    assert [c.rule for c in plan(LAB, keyed, foreign, account="123456789012")] == ["posture.encryption"]
    assert [c.rule for c in plan(LAB, keyed, evil, account="123456789012")] == ["posture.encryption"]


def test_scenario_encryption_moved_to_another_accounts_alias_is_put_back_by_the_event(lab, tmp_path) -> None:
    # Given the lab names its key, and someone points the bucket at a same-named alias in their own account
    seed_policy_in_process(lab, policy_variant(tmp_path, ("    mode: enforce\n  prod-integration:",
                                                          "    mode: enforce\n    posture: { kms_key: alias/lab-data }\n"
                                                          "  prod-integration:")))
    boto3.client("s3").put_bucket_encryption(Bucket=LAB, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                "KMSMasterKeyID": "arn:aws:kms:us-east-1:999999999999:alias/lab-data"}}]})

    run(lab, event("put_bucket_encryption.eventbridge.json"))

    got = boto3.client("s3").get_bucket_encryption(Bucket=LAB)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert got["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == f"arn:aws:kms:us-east-1:{lab.account_id}:alias/lab-data"
    assert rules_of(drain(lab.inbox)) == ["posture.encryption"]


def test_the_named_alias_is_written_qualified_with_the_buckets_account(lab, tmp_path) -> None:
    # a bare alias/lab-data is resolved in the requester's account: another account's writer would use its own key
    seed_policy_in_process(lab, policy_variant(tmp_path, ("    mode: enforce\n  prod-integration:",
                                                          "    mode: enforce\n    posture: { kms_key: alias/lab-data }\n"
                                                          "  prod-integration:")))
    boto3.client("s3").delete_bucket_encryption(Bucket=LAB)

    run(lab, event("delete_bucket_encryption.eventbridge.json"))

    got = boto3.client("s3").get_bucket_encryption(Bucket=LAB)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert got["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == f"arn:aws:kms:us-east-1:{lab.account_id}:alias/lab-data"
    [finding] = [f for f in drain(lab.inbox) if f["rule"] == "posture.encryption"]
    assert finding["evidence"]["after"]["KMSMasterKeyID"] == f"arn:aws:kms:us-east-1:{lab.account_id}:alias/lab-data"

    # and the next event finds the bucket at baseline: the ARN of the named alias in its own account matches
    again = event("put_bucket_encryption.eventbridge.json")
    again["id"], again["detail"]["eventID"] = again["id"][:-4] + "a1a5", again["detail"]["eventID"][:-4] + "a1a5"
    run(lab, again)
    assert rules_of(drain(lab.inbox)) == []


@pytest.mark.parametrize("rules, read", [
    ([{"SSEAlgorithm": "aws:kms"}, {"SSEAlgorithm": "AES256"}], {"SSEAlgorithm": "AES256"}),
    ([{"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/lab-data"}, {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/x"}],
     {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "several keys: alias/lab-data, alias/x"}),
    ([{"SSEAlgorithm": "aws:kms"}, None], None),
], ids=["kms-then-aes", "two-keys", "one-rule-without-default"])
def test_an_encryption_configuration_with_several_rules_is_read_as_its_weakest(rules, read) -> None:
    # S3 takes one rule today; a response with several (an emulator, a future API) must not pass on its first one
    from botocore.stub import Stubber

    s3 = boto3.client("s3")
    response = {"ServerSideEncryptionConfiguration": {"Rules": [
        {"ApplyServerSideEncryptionByDefault": r} if r else {"BucketKeyEnabled": True} for r in rules]}}
    with Stubber(s3) as stub:
        stub.add_response("get_bucket_encryption", response, {"Bucket": LAB})
        got = PostureReader(s3).encryption(LAB)
    assert got == read
    checks = plan(LAB, Posture(kms_key="alias/lab-data"), PostureState(got, ALL_ON, COMPLIANT.policy, None, "Enabled"))
    assert [c.rule for c in checks] == ["posture.encryption"]


# ---------------------------------------------------------------- public access
def test_scenario_a_block_with_three_of_four_flags_is_completed_by_the_event(lab) -> None:
    boto3.client("s3").put_public_access_block(Bucket=LAB, PublicAccessBlockConfiguration={**ALL_ON, "RestrictPublicBuckets": False})

    run(lab, event("put_public_access_block.eventbridge.json"))

    assert boto3.client("s3").get_public_access_block(Bucket=LAB)["PublicAccessBlockConfiguration"] == ALL_ON
    [finding] = [f for f in drain(lab.inbox) if f["rule"] == "posture.public-access"]
    assert finding["severity"] == "high" and "RestrictPublicBuckets off" in finding["summary"]
    assert finding["evidence"]["before"]["RestrictPublicBuckets"] is False


def test_a_flag_turned_on_between_the_read_and_the_write_is_not_turned_off(lab, tmp_path) -> None:
    # Given the lab requires three flags (RestrictPublicBuckets not required) and a bucket has no block
    seed_policy_in_process(lab, policy_variant(tmp_path, ("    mode: enforce\n  prod-integration:",
                                                          "    mode: enforce\n    posture: { public_access: "
                                                          "{ restrict_public_buckets: false } }\n  prod-integration:")))
    s3 = boto3.client("s3")
    s3.delete_public_access_block(Bucket=LAB)
    s3_owner = boto3.client("s3")

    # When the owner turns all four on while the event is being planned (right after posture read the policy)
    with after_call("GetBucketPolicy", lambda: s3_owner.put_public_access_block(
            Bucket=LAB, PublicAccessBlockConfiguration=ALL_ON)) as fired:
        run(lab, event("delete_public_access_block.eventbridge.json"))
    assert fired

    # Then the stale plan (three flags) does not switch RestrictPublicBuckets back off
    assert s3.get_public_access_block(Bucket=LAB)["PublicAccessBlockConfiguration"] == ALL_ON


@pytest.mark.parametrize("how", ["grant-header", "acl-body"])
def test_a_public_acl_behind_a_deleted_block_is_neutralised_when_the_block_comes_back(lab, how) -> None:
    # Given the block deleted, then AllUsers granted READ (either way S3 takes a grant)
    s3 = boto3.client("s3")
    s3.delete_public_access_block(Bucket=LAB)
    put_public_acl(s3, how)

    run(lab, event("delete_public_access_block.eventbridge.json"))

    # Then IgnorePublicAcls is on again: S3 ignores the grant (the grant itself stays, reported as posture.public-acl: below)
    assert s3.get_public_access_block(Bucket=LAB)["PublicAccessBlockConfiguration"]["IgnorePublicAcls"] is True
    # and the grant, public while the block was gone, is reported critical
    acl = {f["rule"]: f for f in drain(lab.inbox)}["posture.public-acl"]
    assert acl["severity"] == "critical" and acl["evidence"]["before"] == {"public_grants": ["AllUsers READ"], "ignore_public_acls": False}


def put_public_acl(s3, how: str) -> None:
    all_users = "http://acs.amazonaws.com/groups/global/AllUsers"
    if how == "grant-header":
        s3.put_bucket_acl(Bucket=LAB, GrantRead=f'uri="{all_users}"')
    else:
        owner = s3.get_bucket_acl(Bucket=LAB)["Owner"]
        s3.put_bucket_acl(Bucket=LAB, AccessControlPolicy={"Owner": owner, "Grants": [
            {"Grantee": {"Type": "Group", "URI": all_users}, "Permission": "READ"}]})


@pytest.mark.parametrize("how", ["grant-header", "acl-body"])
def test_a_public_acl_grant_is_reported_even_while_the_block_neutralises_it(lab, how) -> None:
    put_public_acl(boto3.client("s3"), how)

    run(lab, event("put_bucket_acl.eventbridge.json"))

    findings = {f["rule"]: f for f in drain(lab.inbox)}
    acl = findings["posture.public-acl"]
    assert acl["severity"] == "high" and acl["evidence"]["before"]["public_grants"] == ["AllUsers READ"]
    assert acl["evidence"]["before"]["ignore_public_acls"] is True and acl["principal"]


# ---------------------------------------------------------------- which buckets: mapping, races
def test_a_bucket_named_like_the_lab_but_tagged_for_no_stage_is_untouched_and_the_mismatch_is_reported(lab) -> None:
    # Given acme-lab-thirdparty: its name says lab, its stage tag names a stage the policy does not have
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="acme-lab-thirdparty")
    s3.put_bucket_tagging(Bucket="acme-lab-thirdparty", Tagging={"TagSet": [{"Key": "stagewarden:stage", "Value": "team-x"}]})
    before = snapshot("acme-lab-thirdparty")

    run(lab, event("put_bucket_tagging.eventbridge.json", bucketName="acme-lab-thirdparty"))

    # Then nothing about it changed, and the finding says it left management
    assert snapshot("acme-lab-thirdparty") == before
    [finding] = [f for f in drain(lab.inbox) if f["resource"] == "arn:aws:s3:::acme-lab-thirdparty"]
    assert (finding["rule"], finding["severity"]) == ("retention.stage-conflict", "high") and finding["action"].startswith("alert only")
    assert "team-x" in finding["summary"] and finding["principal"].endswith("/alice@example.com")


def test_a_bucket_with_no_stage_tag_and_no_matching_name_is_never_read_past_its_tags(lab) -> None:
    before = snapshot(OTHER)
    boto3.client("s3").delete_bucket_encryption(Bucket=OTHER)
    before = snapshot(OTHER)

    run(lab, event("delete_bucket_encryption.eventbridge.json", bucketName=OTHER))

    assert snapshot(OTHER) == before and drain(lab.inbox) == []


def test_a_bucket_untagged_between_read_and_write_is_not_written(lab) -> None:
    # Given a bucket managed only through its tag, drifted
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="team-tagged-lab")
    s3.put_bucket_tagging(Bucket="team-tagged-lab", Tagging={"TagSet": [{"Key": "stagewarden:stage", "Value": "prod-discovery"}]})
    owner = boto3.client("s3")

    # When its owner takes it out of the lab right after posture read it
    from stage_policy.executor import ActionFailed

    evt = event("put_bucket_tagging.eventbridge.json", bucketName="team-tagged-lab")
    with after_call("GetBucketPolicy", lambda: owner.delete_bucket_tagging(Bucket="team-tagged-lab")) as fired:
        with pytest.raises(ActionFailed, match="tag of team-tagged-lab changed since it was read"):
            run(lab, evt)
    assert fired
    with pytest.raises(Exception, match="NoSuchTagSet"):
        owner.get_bucket_tagging(Bucket="team-tagged-lab")  # the injection ran: it is unmanaged now

    # Then nothing is written to the bucket that left the lab, and the retry (EventBridge's) re-plans it as unmanaged
    run(lab, evt)
    with pytest.raises(Exception, match="NoSuchPublicAccessBlockConfiguration"):
        owner.get_public_access_block(Bucket="team-tagged-lab")
    with pytest.raises(Exception, match="ServerSideEncryptionConfigurationNotFound"):
        owner.get_bucket_encryption(Bucket="team-tagged-lab")
    with pytest.raises(Exception, match="NoSuchLifecycleConfiguration"):  # nor the lab's expiry (retention's write)
        owner.get_bucket_lifecycle_configuration(Bucket="team-tagged-lab")


# ---------------------------------------------------------------- the events themselves
def test_an_event_from_another_account_and_region_only_makes_the_function_re_read_its_own_bucket(lab) -> None:
    # Given an org-trail event that claims the lab bucket was opened, from another account and region
    evt = event("delete_public_access_block.eventbridge.json")
    evt["account"], evt["region"] = "999999999999", "eu-west-1"
    evt["detail"].update(awsRegion="eu-west-1", recipientAccountId="999999999999")
    evt["detail"]["userIdentity"].update(accountId="999999999999",
                                         arn="arn:aws:sts::999999999999:assumed-role/Admin/mallory")
    before = snapshot(LAB)

    run(lab, evt)

    # Then the function trusts the bucket, not the event: the lab is at baseline, so nothing is written or alerted
    assert snapshot(LAB) == before
    assert rules_of(drain(lab.inbox)) == []


def test_a_refused_call_names_nobody_and_does_not_claim_the_change(lab) -> None:
    # Given the block really is gone (someone else), and CloudTrail reports mallory's *refused* DeletePublicAccessBlock
    boto3.client("s3").delete_public_access_block(Bucket=LAB)
    evt = event("delete_public_access_block.eventbridge.json")
    evt["detail"].update(errorCode="AccessDenied", errorMessage="Access Denied")

    run(lab, evt)

    # Then the bucket is still brought back, but the finding does not pin it on the refused caller
    assert boto3.client("s3").get_public_access_block(Bucket=LAB)["PublicAccessBlockConfiguration"] == ALL_ON
    [finding] = [f for f in drain(lab.inbox) if f["rule"] == "posture.public-access"]
    assert finding["principal"] is None and "refused: AccessDenied" in finding["summary"]


@pytest.mark.parametrize("mutate, part", [
    (lambda d: d.pop("requestParameters"), "requestParameters.bucketName"),
    (lambda d: d.update(requestParameters=None), "requestParameters.bucketName"),
    (lambda d: d.update(requestParameters="acme-lab-data"), "requestParameters.bucketName"),
    (lambda d: d["requestParameters"].update(bucketName=["acme-lab-data"]), "requestParameters.bucketName"),
    (lambda d: d.update(eventName=7), "eventName"),
    (lambda d: d.update(eventName="PutBucketAclX"), "eventName"),
], ids=["no-requestParameters", "null-requestParameters", "string-requestParameters", "bucketName-list",
        "eventName-int", "eventName-unknown"])
def test_a_malformed_cloudtrail_detail_fails_naming_the_part_and_changes_nothing(lab, mutate, part) -> None:
    from stage_policy.events import EventError

    boto3.client("s3").delete_public_access_block(Bucket=LAB)
    evt = event("delete_public_access_block.eventbridge.json")
    mutate(evt["detail"])
    before = snapshot(LAB)

    with pytest.raises(EventError, match=part.replace(".", r"\.")):
        run(lab, evt)

    assert snapshot(LAB) == before and drain(lab.inbox) == []


def test_an_odd_user_identity_still_re_reads_the_bucket(lab) -> None:
    boto3.client("s3").delete_public_access_block(Bucket=LAB)
    evt = event("delete_public_access_block.eventbridge.json")
    evt["detail"]["userIdentity"] = "root"

    run(lab, evt)

    assert boto3.client("s3").get_public_access_block(Bucket=LAB)["PublicAccessBlockConfiguration"] == ALL_ON


def test_a_replayed_event_does_nothing_twice_and_a_new_change_is_still_caught(lab) -> None:
    s3 = boto3.client("s3")
    s3.delete_public_access_block(Bucket=LAB)
    evt = event("delete_public_access_block.eventbridge.json")
    run(lab, evt)
    assert rules_of(drain(lab.inbox)) == ["posture.public-access"]

    # When the same event is delivered again: nothing is done, nothing alerted
    run(lab, evt)
    assert drain(lab.inbox) == []

    # And a second deletion (its own CloudTrail event, a new eventID) is caught as the first was
    s3.delete_public_access_block(Bucket=LAB)
    again = event("delete_public_access_block.eventbridge.json")
    again["id"], again["detail"]["eventID"] = again["id"][:-4] + "beef", again["detail"]["eventID"][:-4] + "beef"
    run(lab, again)
    assert s3.get_public_access_block(Bucket=LAB)["PublicAccessBlockConfiguration"] == ALL_ON


# ---------------------------------------------------------------- dry run and the ceiling
def drift_everything(buckets) -> None:
    s3 = boto3.client("s3")
    for bucket in buckets:
        s3.delete_public_access_block(Bucket=bucket)
        s3.delete_bucket_encryption(Bucket=bucket)
        s3.put_bucket_policy(Bucket=bucket, Policy=doc({**tls_statement(bucket), "Resource": f"arn:aws:s3:::{bucket}"}))
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})


def test_a_dry_run_stage_leaks_no_write_on_any_path(lab) -> None:
    # final-prod is dry run in the example policy
    from tests.unit.retention.test_app import schedule

    drift_everything([PROD])
    before = snapshot(PROD)

    for evt in (event("delete_public_access_block.eventbridge.json", bucketName=PROD),
                event("put_bucket_policy.eventbridge.json", bucketName=PROD), schedule()):
        run(lab, evt)

    assert snapshot(PROD) == before
    findings = [f for f in drain(lab.inbox) if f["resource"] == f"arn:aws:s3:::{PROD}"]
    assert {"posture.public-access", "posture.encryption", "posture.tls"} <= {f["rule"] for f in findings}
    assert all("would" in f["action"] for f in findings)


def test_the_deployment_ceiling_dry_run_holds_an_enforce_stage_too(lab) -> None:
    lab.parameters["DefaultRemediationMode"] = "dry_run"
    drift_everything([LAB])
    before = snapshot(LAB)

    run(lab, event("delete_public_access_block.eventbridge.json"))

    assert snapshot(LAB) == before
    assert {"posture.public-access", "posture.encryption", "posture.tls", "posture.versioning"} <= set(rules_of(drain(lab.inbox)))


def test_cli_plan_writes_nothing_even_for_an_enforce_stage(lab, capsys) -> None:
    from stagewarden.cli import main

    drift_everything([LAB])
    before = snapshot(LAB)

    assert main(["posture", "plan", "--policy", str(ROOT / "policy.example.yaml"), "--format", "json"]) == 0

    assert snapshot(LAB) == before
    rows = {json.loads(line)["bucket"]: json.loads(line) for line in capsys.readouterr().out.splitlines() if '"bucket"' in line}
    assert {f["rule"] for f in rows[LAB]["findings"]} >= {"posture.public-access", "posture.encryption", "posture.tls"}


def test_posture_writes_are_not_held_by_the_deletion_cap_but_never_delete(lab, tmp_path) -> None:
    # Given a cap of one deletion per run, and two drifted lab buckets
    seed_policy_in_process(lab, policy_variant(tmp_path, ("max_deletions_per_run: 1000", "max_deletions_per_run: 1")))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=LAB2)
    postured(LAB2)
    drift_everything([LAB, LAB2])
    from tests.unit.retention.test_app import schedule

    run(lab, schedule())

    # Then both are brought back (posture only tightens: the cap is for destructive actions), no versioning suspended
    for bucket in (LAB, LAB2):
        assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == ALL_ON
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        assert any(is_tls_deny(s, bucket) for s in statements(bucket))
