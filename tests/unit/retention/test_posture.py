"""Bucket posture: each managed bucket held to its stage's baseline (keeper.posture), by event, schedule and Config."""

from __future__ import annotations

import json

import boto3
import pytest

from keeper.posture import POLICY_LIMIT, TLS_SID, PostureState, has_tls, is_tls_deny, merge_tls, plan
from stage_policy.loader import loads
from stage_policy.model import Posture, Retention
from stagewarden.invoke import function_spec, invoke
from tests.helpers import ROOT, drain, seed_policy_in_process
from tests.unit.retention.conftest import LAB, OTHER, PROD, event, policy_variant, postured

OTHERS = {"Sid": "ReadForEtl", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/etl-reader"},
          "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{LAB}/*"}
FULL = Posture()
COMPLIANT = PostureState({"SSEAlgorithm": "aws:kms"}, {k: True for k in ("BlockPublicAcls", "IgnorePublicAcls",
                         "BlockPublicPolicy", "RestrictPublicBuckets")},
                         json.dumps({"Statement": [merge_tls(LAB, None)["Statement"][0]]}), None, "Enabled")


def run(stack, evt: dict):
    return invoke(function_spec(ROOT / "template.yaml", "RetentionFunction", stack), evt)


def posture(inbox: str) -> list[dict]:
    """The posture findings on the alerts topic (the fixture's lab bucket starts without its lifecycle: retention.drift)."""
    return [f for f in drain(inbox) if f["rule"].startswith("posture.")]


def statements(bucket: str) -> list[dict]:
    return json.loads(boto3.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]


def block(bucket: str) -> dict:
    return boto3.client("s3").get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]


def encryption(bucket: str) -> dict:
    rules = boto3.client("s3").get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    return rules[0]["ApplyServerSideEncryptionByDefault"]


# ---------------------------------------------------------------- the policy
def test_presets_give_production_data_stages_the_full_baseline_and_infra_stages_a_lighter_one() -> None:
    policy = loads("framework: five-stage\n", "p.yaml")
    lab, infra = policy.stages["prod-discovery"].posture, policy.stages["infra-dev"].posture
    assert (lab.encryption, lab.tls_only, lab.versioning, lab.public_access.as_config()) == \
        ("aws:kms", True, True, dict.fromkeys(("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True))
    assert (infra.encryption, infra.versioning, infra.tls_only) == ("AES256", False, True)


def test_every_posture_field_can_be_overridden() -> None:
    policy = loads("""framework: two-stage
stages:
  prod-discovery:
    posture:
      kms_key: alias/lab-data
      public_access: {restrict_public_buckets: false}
      tls_only: false
      versioning: false
      access_logging: {target_bucket: acme-access-logs, target_prefix: lab/}
      object_lock: true
""", "p.yaml")
    p = policy.stages["prod-discovery"].posture
    assert (p.encryption, p.kms_key, p.public_access.restrict_public_buckets, p.public_access.block_public_acls) == \
        ("aws:kms", "alias/lab-data", False, True)
    assert (p.tls_only, p.versioning, p.access_logging.target_bucket, p.access_logging.target_prefix, p.object_lock) == \
        (False, False, "acme-access-logs", "lab/", True)


# ---------------------------------------------------------------- the planner (pure)
def test_a_compliant_bucket_needs_nothing() -> None:
    assert plan(LAB, FULL, COMPLIANT) == []


@pytest.mark.parametrize("shape", ["object", "list"])
def test_the_tls_statement_is_merged_into_either_statement_shape_keeping_the_others(shape) -> None:
    policy = json.dumps({"Version": "2012-10-17", "Statement": OTHERS if shape == "object" else [OTHERS, {**OTHERS, "Sid": "Two"}]})
    [check] = plan(LAB, FULL, PostureState(COMPLIANT.encryption, COMPLIANT.block, policy, None, "Enabled"))
    merged = json.loads(check.actions[0].policy)
    kept = [OTHERS] if shape == "object" else [OTHERS, {**OTHERS, "Sid": "Two"}]
    assert check.rule == "posture.tls" and merged["Statement"][:-1] == kept and merged["Statement"][-1]["Sid"] == TLS_SID
    assert is_tls_deny(merged["Statement"][-1]) and has_tls(check.actions[0].policy)


def test_a_policy_that_would_pass_20_kb_is_a_critical_finding_without_a_write() -> None:
    big = json.dumps({"Version": "2012-10-17", "Statement": [{**OTHERS, "Sid": f"S{i}"} for i in range(POLICY_LIMIT // 150)]})
    [check] = plan(LAB, FULL, PostureState(COMPLIANT.encryption, COMPLIANT.block, big, None, "Enabled"))
    assert (check.rule, check.severity, check.actions) == ("posture.tls", "critical", [])


def test_public_access_flags_already_on_stay_on_and_versioning_is_never_suspended() -> None:
    lighter = Posture(public_access={"block_public_acls": False}, versioning=True)
    state = PostureState(COMPLIANT.encryption, {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": True,
                                                "RestrictPublicBuckets": True}, COMPLIANT.policy, None, "Suspended")
    checks = {c.rule: c for c in plan(LAB, lighter, state)}
    assert dict(checks["posture.public-access"].actions[0].block) == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True)
    assert type(checks["posture.versioning"].actions[0]).__name__ == "EnableVersioning"
    assert plan(LAB, Posture(versioning=False), PostureState(COMPLIANT.encryption, COMPLIANT.block, COMPLIANT.policy, None, "Off")) == []


def test_encryption_checks_the_algorithm_and_the_named_key() -> None:
    keyed = Posture(kms_key="alias/lab-data")
    assert plan(LAB, keyed, PostureState({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:aws:kms:us-east-1:123456789012:alias/lab-data"},
                                         COMPLIANT.block, COMPLIANT.policy, None, "Enabled")) == []
    [check] = plan(LAB, keyed, PostureState({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/other"},
                                            COMPLIANT.block, COMPLIANT.policy, None, "Enabled"))
    assert check.rule == "posture.encryption" and check.after == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/lab-data"}
    assert plan(LAB, Posture(encryption="AES256"), PostureState({"SSEAlgorithm": "AES256"}, COMPLIANT.block,
                                                                COMPLIANT.policy, None, "Enabled")) == []


def test_logging_is_set_to_the_named_target_and_object_lock_is_reported() -> None:
    posture = Posture(access_logging={"target_bucket": "acme-access-logs", "target_prefix": "lab/"}, object_lock=True)
    checks = {c.rule: c for c in plan(LAB, posture, COMPLIANT, Retention(default_days=30))}
    assert checks["posture.logging"].after == {"TargetBucket": "acme-access-logs", "TargetPrefix": "lab/"}
    assert checks["posture.object-lock"].actions == []


# ---------------------------------------------------------------- in AWS (moto), through the function
def test_scenario_a_deleted_public_access_block_is_restored_within_one_event(lab) -> None:
    boto3.client("s3").delete_public_access_block(Bucket=LAB)

    run(lab, event("delete_public_access_block.eventbridge.json"))

    assert block(LAB) == dict.fromkeys(("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True)
    [finding] = posture(lab.inbox)
    assert (finding["rule"], finding["severity"]) == ("posture.public-access", "critical")
    assert finding["principal"].endswith("/alice@example.com") and "DeletePublicAccessBlock" in finding["summary"]
    assert finding["evidence"]["before"] is None and finding["evidence"]["after"]["BlockPublicAcls"] is True


def test_scenario_deleted_encryption_is_put_back_as_sse_kms(lab) -> None:
    boto3.client("s3").delete_bucket_encryption(Bucket=LAB)

    run(lab, event("delete_bucket_encryption.eventbridge.json"))

    assert encryption(LAB) == {"SSEAlgorithm": "aws:kms"}
    assert [f["rule"] for f in posture(lab.inbox)] == ["posture.encryption"]


def test_scenario_a_policy_without_tls_gets_the_statement_merged_in_keeping_the_owners(lab) -> None:
    # Given an owner's policy in the one-object Statement shape, without the TLS statement
    boto3.client("s3").put_bucket_policy(Bucket=LAB, Policy=json.dumps({"Version": "2012-10-17", "Statement": OTHERS}))

    run(lab, event("put_bucket_policy.eventbridge.json"))

    got = statements(LAB)
    assert got[0] == OTHERS and len(got) == 2 and got[1]["Sid"] == TLS_SID and is_tls_deny(got[1])
    assert [f["rule"] for f in posture(lab.inbox)] == ["posture.tls"]


def test_scenario_a_deleted_policy_gets_the_tls_statement_back(lab) -> None:
    boto3.client("s3").delete_bucket_policy(Bucket=LAB)

    run(lab, event("delete_bucket_policy.eventbridge.json"))

    assert [s["Sid"] for s in statements(LAB)] == [TLS_SID]


def test_scenario_suspended_versioning_on_the_lab_is_re_enabled(lab) -> None:
    boto3.client("s3").put_bucket_versioning(Bucket=LAB, VersioningConfiguration={"Status": "Suspended"})

    run(lab, event("put_bucket_versioning.eventbridge.json"))

    assert boto3.client("s3").get_bucket_versioning(Bucket=LAB)["Status"] == "Enabled"
    assert [f["rule"] for f in posture(lab.inbox)] == ["posture.versioning"]


def test_scenario_a_dry_run_stage_is_reported_with_the_diff_and_not_changed(lab) -> None:
    # final-prod is dry run in the example policy
    boto3.client("s3").delete_public_access_block(Bucket=PROD)
    boto3.client("s3").delete_bucket_encryption(Bucket=PROD)

    run(lab, event("delete_public_access_block.eventbridge.json", bucketName=PROD))

    with pytest.raises(Exception, match="NoSuchPublicAccessBlockConfiguration"):
        block(PROD)
    findings = {f["rule"]: f for f in drain(lab.inbox)}
    assert set(findings) == {"posture.public-access", "posture.encryption"}
    assert findings["posture.encryption"]["evidence"]["after"] == {"SSEAlgorithm": "aws:kms"}
    assert all("would" in f["action"] for f in findings.values())


def test_scenario_unmanaged_buckets_are_never_touched(lab) -> None:
    run(lab, event("delete_public_access_block.eventbridge.json", bucketName=OTHER))

    with pytest.raises(Exception, match="NoSuchPublicAccessBlockConfiguration"):
        block(OTHER)
    with pytest.raises(Exception, match="NoSuchBucketPolicy"):
        statements(OTHER)
    assert drain(lab.inbox) == []


def test_scenario_the_daily_run_brings_a_drifted_bucket_to_baseline_and_reports_the_account_block(lab) -> None:
    from tests.unit.retention.test_app import schedule

    boto3.client("s3control").delete_public_access_block(AccountId=lab.account_id)
    boto3.client("s3").delete_public_access_block(Bucket=LAB)

    run(lab, schedule())

    assert block(LAB)["RestrictPublicBuckets"] is True
    rules = sorted(f["rule"] for f in posture(lab.inbox))
    assert rules == ["posture.account-public-access", "posture.public-access"]


def test_the_config_rule_answer_includes_posture(lab) -> None:
    run(lab, event("put_bucket_lifecycle.eventbridge.json"))  # the lab's lifecycle to policy first
    drain(lab.inbox)
    result = run(lab, event("config_change.json"))
    assert "posture" in result["evaluations"][0]["Annotation"], result
    boto3.client("s3").delete_bucket_encryption(Bucket=LAB)

    result = run(lab, event("config_change.json"))

    [evaluation] = result["evaluations"]
    assert evaluation["ComplianceType"] == "NON_COMPLIANT" and "posture.encryption" in evaluation["Annotation"]
    # posture gaps are then brought to baseline and alerted (the lifecycle stays reads-only on this path)
    assert encryption(LAB) == {"SSEAlgorithm": "aws:kms"}
    assert [f["rule"] for f in drain(lab.inbox)] == ["posture.encryption"]
    assert run(lab, event("config_change.json"))["evaluations"][0]["ComplianceType"] == "COMPLIANT"


# ---------------------------------------------------------------- the command line
def test_cli_plan_shows_the_before_and_after_and_changes_nothing(lab, capsys) -> None:
    from stagewarden.cli import main

    boto3.client("s3").delete_public_access_block(Bucket=LAB)
    assert main(["posture", "plan", "--policy", str(ROOT / "policy.example.yaml"), "--bucket", LAB, "--format", "json"]) == 0

    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["bucket"], row["stage"], row["mode"]) == (LAB, "prod-discovery", "enforce")
    [finding] = row["findings"]
    assert (finding["rule"], finding["before"], finding["after"]["IgnorePublicAcls"]) == ("posture.public-access", None, True)
    assert finding["would"] == [f"put the public access block on {LAB} (BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, "
                                "RestrictPublicBuckets on)"]
    with pytest.raises(Exception, match="NoSuchPublicAccessBlockConfiguration"):
        block(LAB)


def test_cli_apply_brings_enforce_stages_to_baseline_and_leaves_dry_run_and_unmanaged_alone(lab, capsys) -> None:
    from stagewarden.cli import main

    s3 = boto3.client("s3")
    for bucket in (LAB, PROD, OTHER):
        s3.delete_bucket_encryption(Bucket=bucket) if bucket != OTHER else None
    s3.put_bucket_policy(Bucket=LAB, Policy=json.dumps({"Version": "2012-10-17", "Statement": [OTHERS]}))

    assert main(["posture", "apply", "--policy", str(ROOT / "policy.example.yaml"), "--format", "table"]) == 0

    out = capsys.readouterr().out
    assert encryption(LAB) == {"SSEAlgorithm": "aws:kms"} and statements(LAB)[0] == OTHERS and statements(LAB)[1]["Sid"] == TLS_SID
    with pytest.raises(Exception, match="ServerSideEncryptionConfigurationNotFoundError"):
        encryption(PROD)  # final-prod is dry run in the example policy
    assert "posture.encryption" in out and OTHER not in out


def test_cli_bad_input_is_one_line_and_exit_2(lab, tmp_path, capsys) -> None:
    from stagewarden.cli import main

    assert main(["posture", "plan", "--policy", str(ROOT / "policy.example.yaml"), "--bucket", "no-such-bucket-here"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["stagewarden: --bucket no-such-bucket-here: no such bucket"]
    bad = tmp_path / "p.yaml"
    bad.write_text("framework: two-stage\nstages: {prod-discovery: {posture: {encryption: DES}}}\n")
    assert main(["posture", "apply", "--policy", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stages.prod-discovery.posture.encryption" in err[0]


def test_policy_explain_shows_the_baseline(capsys) -> None:
    from stagewarden.cli import main

    assert main(["policy", "explain", str(ROOT / "policy.example.yaml"), "--stage", "prod-discovery"]) == 0
    assert "bucket posture: encryption aws:kms, public access block all four, TLS only, versioning" in capsys.readouterr().out


# ---------------------------------------------------------------- property: what posture may never write
def test_property_no_write_to_unmanaged_or_dry_run_buckets_no_suspension_no_other_statement_removed() -> None:
    import os
    from datetime import datetime, timezone

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from keeper.ports import BucketConfig
    from keeper.reconcile import Keeper
    from stage_policy.executor import Executor, settle

    policy = loads((ROOT / "policy.example.yaml").read_text(), "policy.example.yaml")  # prod-discovery enforce, final-prod dry run
    flags = st.fixed_dictionaries({k: st.booleans() for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                                              "RestrictPublicBuckets")})
    other = st.builds(lambda i, effect: {**OTHERS, "Sid": f"Owner{i}", "Effect": effect}, st.integers(0, 99), st.sampled_from(["Allow", "Deny"]))
    policies = st.one_of(st.none(), other.map(lambda s: json.dumps({"Version": "2012-10-17", "Statement": s})),
                         st.lists(other, max_size=4).map(lambda ss: json.dumps({"Version": "2012-10-17", "Statement": ss})),
                         st.lists(other, max_size=2).map(lambda ss: json.dumps({"Statement": [*ss, {**merge_tls("x", None)["Statement"][0], "Sid": "Own"}]})))
    states = st.builds(PostureState, st.one_of(st.none(), st.sampled_from([{"SSEAlgorithm": "AES256"}, {"SSEAlgorithm": "aws:kms"},
                                                                           {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/k"}])),
                       st.one_of(st.none(), flags), policies, st.none(), st.sampled_from(["Off", "Enabled", "Suspended"]), st.booleans())

    class Reader:
        def __init__(self, tags, state):
            self._tags, self._state = tags, state

        def tags(self, bucket):
            return self._tags

        def read(self, bucket, tags=None, lock=True):
            return BucketConfig(bucket, self._tags, [], {}, self._state.versioning, self._state.lock_enabled)

    class PostureReads:
        def __init__(self, state):
            self._state = state

        def read(self, bucket, versioning="Off", lock_enabled=False, logging=True):
            return self._state

        def public_grants(self, bucket):  # read when the block does not ignore public ACLs (report only: no write)
            return ["AllUsers READ"]

    class S3:
        def __init__(self, state, tags=None):
            self.writes, self._state, self._tags = [], state, tags or {}

        def __getattr__(self, name):
            if name == "get_bucket_policy":
                def get(**kw):
                    if self._state.policy is None:
                        raise type("NoSuchBucketPolicy", (Exception,), {"response": {"Error": {"Code": "NoSuchBucketPolicy"}}})()
                    return {"Policy": self._state.policy}
                return get
            if name == "get_bucket_tagging":  # each posture write re-reads the stage tag first
                return lambda **kw: {"TagSet": [{"Key": k, "Value": v} for k, v in self._tags.items()]}
            if name == "get_public_access_block":  # PutPublicAccessBlock re-reads the block before writing
                def get_block(**kw):
                    if self._state.block is None:
                        raise type("NoSuchPublicAccessBlockConfiguration", (Exception,), {
                            "response": {"Error": {"Code": "NoSuchPublicAccessBlockConfiguration"}}})()
                    return {"PublicAccessBlockConfiguration": dict(self._state.block)}
                return get_block
            return lambda **kw: self.writes.append((name, kw)) or {}

    seen: dict[str, int] = {}

    @settings(max_examples=int(os.environ.get("STAGEWARDEN_POSTURE_EXAMPLES", "300")), deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(stage=st.sampled_from(["prod-discovery", "final-prod", None]), state=states)
    def check(stage, state):
        tags = {"stagewarden:stage": stage} if stage else {}
        s3 = S3(state, tags)
        keeper = Keeper(policy, Reader(tags, state), None, None, datetime.now(timezone.utc), posture=PostureReads(state))
        executor = Executor(lambda service: s3, policy, "enforce")
        settle(keeper.reconcile_posture(keeper.view("zz-bucket")), executor, lambda f: None)
        if stage != "prod-discovery":  # unmanaged, or a dry run stage
            assert s3.writes == []
        for name, kw in s3.writes:
            seen[name] = seen.get(name, 0) + 1
            assert kw.get("VersioningConfiguration", {}).get("Status") != "Suspended"
            if name == "put_bucket_policy":
                before = json.loads(state.policy)["Statement"] if state.policy else []
                before = before if isinstance(before, list) else [before]
                after = json.loads(kw["Policy"])["Statement"]
                assert all(s in after for s in before)
            if name == "put_public_access_block":
                assert all(v for k, v in kw["PublicAccessBlockConfiguration"].items() if (state.block or {}).get(k))

    check()
    # and the examples did write: every kind of action was carried out somewhere
    assert set(seen) >= {"put_bucket_encryption", "put_public_access_block", "put_bucket_policy", "put_bucket_versioning"}, seen
