"""The stage memory: a bucket once in a permanent stage stays there until an operator approves the move.

Red team on the retag (issue 10's open weakness): retag to a lab stage, to a stage the policy does not
have, delete the tag, retag twice before either event is handled, retag through another API whose
event never reaches the function, upgrade then downgrade. Then the operator's way out: `stagewarden
retention restage`, recorded in the state table and the audit ledger, consumed by the tag's event.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from stage_policy import keys
from stagewarden.cli import main
from tests.helpers import drain, seed_policy_in_process
from tests.unit.retention.conftest import LAB, PROD_ENFORCE, event, policy_variant, rules, versions, written_days_ago
from tests.unit.retention.test_redteam_retention import deletes_data, run, schedule

TAG = "stagewarden:stage"
PUBLISHED = "published-results"  # no name pattern maps it: final-prod by its tag alone


def tag(bucket: str, value: str | None) -> None:
    s3 = boto3.client("s3")
    if value is None:
        s3.delete_bucket_tagging(Bucket=bucket)
    else:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": TAG, "Value": value}, {"Key": "team", "Value": "ml"}]})


def tag_event(bucket: str, n: int, name: str = "put_bucket_tagging") -> dict:
    """The sample tag event for ``bucket``, with its own ids (each change is a new CloudTrail event)."""
    evt = event(f"{name}.eventbridge.json", bucketName=bucket)
    evt["id"], evt["detail"]["eventID"] = evt["id"][:-4] + f"{n:04d}", evt["detail"]["eventID"][:-4] + f"{n:04d}"
    return evt


def memory(lab, bucket: str) -> dict:
    item = boto3.client("dynamodb").get_item(TableName=lab.refs["StateTable"], Key=keys.retention_stage(bucket)).get("Item", {})
    return {k: v["S"] for k, v in item.items() if "S" in v and k not in ("pk", "sk")}


def ledger(lab) -> list[dict]:
    items = boto3.client("dynamodb").scan(TableName=lab.refs["AuditTable"])["Items"]
    return sorted(({k: v.get("S") for k, v in i.items()} for i in items), key=lambda i: i["sk"])


@pytest.fixture
def published(lab, tmp_path):
    """final-prod in enforce; a versioned bucket tagged final-prod, old data in it, remembered by its tag's event."""
    seed_policy_in_process(lab, policy_variant(tmp_path, PROD_ENFORCE))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=PUBLISHED)
    s3.put_bucket_versioning(Bucket=PUBLISHED, VersioningConfiguration={"Status": "Enabled"})
    tag(PUBLISHED, "final-prod")
    with written_days_ago(400):
        s3.put_object(Bucket=PUBLISHED, Key="raw/paper.csv", Body=b"1")
        s3.put_object(Bucket=PUBLISHED, Key="raw/paper.csv", Body=b"2")
    run(lab, tag_event(PUBLISHED, 1))
    assert memory(lab, PUBLISHED)["stage"] == "final-prod"
    drain(lab.inbox)
    return lab


def held(lab, bucket: str = PUBLISHED) -> dict:
    """Asserts the bucket is held permanent in AWS (no expiring rule, old versions there after a daily run); its finding."""
    assert not any(deletes_data(r) for r in rules(bucket).values())
    [finding] = [f for f in drain(lab.inbox) if f["rule"] == "retention.stage-downgrade"]
    assert finding["severity"] == "critical" and finding["stage"] == "final-prod"
    run(lab, schedule())
    assert [v for v in versions(bucket) if not v[1]] == [("raw/paper.csv", False), ("raw/paper.csv", False)]
    assert not any(deletes_data(r) for r in rules(bucket).values())
    assert memory(lab, bucket)["stage"] == "final-prod"
    return finding


# ---------------------------------------------------------------- the attacker's variants
def test_scenario_the_tag_deleted_takes_no_prod_bucket_out_of_control(published) -> None:
    # Given the bucket is final-prod by its tag alone; When mallory deletes the tag (unmanaged by tag and by name)
    tag(PUBLISHED, None)
    run(published, tag_event(PUBLISHED, 2, "delete_bucket_tagging"))

    # Then it is held, and the finding names mallory and what she did
    finding = held(published)
    assert finding["principal"].endswith("/mallory@example.com") and "its stagewarden:stage tag removed" in finding["summary"]


def test_an_expiring_lifecycle_put_on_an_untagged_prod_bucket_is_removed(published) -> None:
    # Given mallory deleted the tag first (so that the bucket looks unmanaged), then added her own expiry
    tag(PUBLISHED, None)
    boto3.client("s3").put_bucket_lifecycle_configuration(Bucket=PUBLISHED, LifecycleConfiguration={"Rules": [
        {"ID": "tidy", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]})

    # When the lifecycle's event arrives
    run(published, event("put_bucket_lifecycle.eventbridge.json", bucketName=PUBLISHED))

    # Then the expiry is gone: the bucket is still final prod; the lifecycle's caller is named for the expiry only
    assert rules(PUBLISHED) == {}
    found = {f["rule"]: f for f in drain(published.inbox)}
    assert found["retention.permanent-expiry"]["principal"].endswith("/alice@example.com")
    assert found["retention.stage-downgrade"]["principal"] is None
    assert "by an unknown principal (found on PutBucketLifecycle" in found["retention.stage-downgrade"]["summary"]


def test_a_tag_naming_no_stage_is_held_too(published) -> None:
    tag(PUBLISHED, "retired")
    run(published, tag_event(PUBLISHED, 2))
    assert "'retired' names no stage" in held(published)["summary"]


def test_two_retags_before_either_event_is_handled_are_both_held(published) -> None:
    # When the bucket is retagged lab, then integration, and the events arrive late and out of order
    tag(PUBLISHED, "prod-discovery")
    tag(PUBLISHED, "prod-integration")
    run(published, tag_event(PUBLISHED, 3))
    run(published, tag_event(PUBLISHED, 2))

    # Then each finds it held at final-prod (the memory was never moved by a downgrade)
    findings = [f for f in drain(published.inbox) if f["rule"] == "retention.stage-downgrade"]
    assert len(findings) == 1  # one incident: the second is deduplicated
    assert not any(deletes_data(r) for r in rules(PUBLISHED).values()) and memory(published, PUBLISHED)["stage"] == "final-prod"


def test_a_retag_through_the_tagging_api_with_no_event_is_caught_by_the_daily_run(published) -> None:
    # Given a retag through the Resource Groups Tagging API (or IaC, or an event lost): the function hears nothing
    failed = boto3.client("resourcegroupstaggingapi").tag_resources(ResourceARNList=[f"arn:aws:s3:::{PUBLISHED}"],
                                                                   Tags={TAG: "prod-discovery"})["FailedResourcesMap"]
    assert failed == {}
    assert {t["Key"]: t["Value"] for t in boto3.client("s3").get_bucket_tagging(Bucket=PUBLISHED)["TagSet"]}[TAG] == "prod-discovery"

    # When the daily run reconciles and sweeps
    run(published, schedule())

    # Then nothing is deleted, no expiry is put, and the finding says who is not known
    assert [v for v in versions(PUBLISHED) if not v[1]] == [("raw/paper.csv", False), ("raw/paper.csv", False)]
    assert not any(deletes_data(r) for r in rules(PUBLISHED).values())
    [finding] = [f for f in drain(published.inbox) if f["rule"] == "retention.stage-downgrade"]
    assert finding["principal"] is None and "by an unknown principal" in finding["summary"]


def test_a_lab_bucket_promoted_to_prod_cannot_be_demoted_by_dropping_the_tag(lab, tmp_path) -> None:
    # Given the lab bucket (lab by its name) was promoted: tagged final-prod, seen by its event
    seed_policy_in_process(lab, policy_variant(tmp_path, PROD_ENFORCE))
    s3 = boto3.client("s3")
    with written_days_ago(45):
        s3.put_object(Bucket=LAB, Key="raw/old.csv", Body=b"x")
    tag(LAB, "final-prod")
    run(lab, tag_event(LAB, 1))
    assert memory(lab, LAB)["stage"] == "final-prod"

    # When the tag is deleted (its name maps it to the lab again)
    tag(LAB, None)
    run(lab, tag_event(LAB, 2, "delete_bucket_tagging"))
    run(lab, schedule())

    # Then it keeps its data and gets no expiry
    assert versions(LAB) == [("raw/old.csv", False)] and not any(deletes_data(r) for r in rules(LAB).values())
    finding, *_ = [f for f in drain(lab.inbox) if f["rule"] == "retention.stage-downgrade"]  # the event's, then the run's
    assert "now maps to stage prod-discovery (name matches 'acme-lab-*'" in finding["summary"]
    assert finding["principal"].endswith("/mallory@example.com")


def test_a_dry_run_prod_stage_is_remembered_and_held_too(lab) -> None:
    # Given the example policy: final-prod in dry_run
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=PUBLISHED)
    tag(PUBLISHED, "final-prod")
    run(lab, tag_event(PUBLISHED, 1))
    assert memory(lab, PUBLISHED)["stage"] == "final-prod"  # bookkeeping happens in every mode

    tag(PUBLISHED, "prod-discovery")
    run(lab, tag_event(PUBLISHED, 2))

    assert rules(PUBLISHED) == {}
    assert any(f["rule"] == "retention.stage-downgrade" for f in drain(lab.inbox))


def test_a_held_bucket_is_non_compliant_for_the_config_rule(published) -> None:
    tag(PUBLISHED, "prod-discovery")
    evt = event("config_change.json")
    invoking = json.loads(evt["invokingEvent"])
    invoking["configurationItem"].update(resourceName=PUBLISHED, resourceId=PUBLISHED)
    evt["invokingEvent"] = json.dumps(invoking)

    result = run(published, evt)

    [evaluation] = result["evaluations"]
    assert evaluation["ComplianceType"] == "NON_COMPLIANT" and "retention.stage-downgrade" in evaluation["Annotation"]


# ---------------------------------------------------------------- the operator's way: restage
def restage(lab, *extra: str, to: str = "prod-discovery", bucket: str = PUBLISHED) -> int:
    from tests.helpers import ROOT

    return main(["retention", "restage", "--policy", str(ROOT / "policy.example.yaml"), "--bucket", bucket, "--to", to,
                 "--by", "carol (data platform lead)", "--reason", "CHG-1234: results superseded, back to the lab",
                 "--state-table", lab.refs["StateTable"], "--audit-table", lab.refs["AuditTable"], *extra])


def test_scenario_an_approved_restage_moves_the_bucket_and_says_who_approved(published, capsys) -> None:
    # When the operator restages the bucket to the lab
    assert restage(published, "--format", "json") == 0

    # Then the approval is recorded (state table, audit ledger) and the tag is set, other tags kept
    out = json.loads(capsys.readouterr().out)
    assert (out["from"], out["to"], out["held"]) == ("final-prod", "prod-discovery", True)
    m = memory(published, PUBLISHED)
    assert (m["stage"], m["approved_to"], m["approved_by"]) == ("final-prod", "prod-discovery", "carol (data platform lead)")
    assert [(i["action"], i["status"]) for i in ledger(published) if i["function"] == "stagewarden-cli"] == [
        ("approve-restage", "done"), ("retag-stage", "done")]
    assert {t["Key"]: t["Value"] for t in boto3.client("s3").get_bucket_tagging(Bucket=PUBLISHED)["TagSet"]} == {
        TAG: "prod-discovery", "team": "ml"}

    # When the tag's event arrives
    run(published, tag_event(PUBLISHED, 5))

    # Then the lab's lifecycle is on it, the move is reported with its approver, and the approval is consumed
    assert any(deletes_data(r) for r in rules(PUBLISHED).values())
    findings = drain(published.inbox)
    assert not [f for f in findings if f["rule"] == "retention.stage-downgrade"]
    [moved] = [f for f in findings if f["rule"] == "retention.restaged"]
    assert moved["severity"] == "medium" and "approved by carol (data platform lead): CHG-1234" in moved["summary"]
    assert moved["principal"].endswith("/alice@example.com")
    m = memory(published, PUBLISHED)
    assert m["stage"] == "prod-discovery" and "approved_to" not in m and "carol" in m["by"]

    # And the daily run sweeps it as the lab it now is
    run(published, schedule())
    assert versions(PUBLISHED) == []


def test_an_approval_for_one_stage_does_not_open_another(published) -> None:
    # Given an approval to move to integration, but without its retag taking place (the approval alone is written)
    from keeper.ports import Remembered, StageMemory

    until = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    StageMemory(boto3.client("dynamodb"), published.refs["StateTable"]).put(PUBLISHED, Remembered(
        "final-prod", approved_to="prod-integration", approved_by="carol", approved_reason="CHG-1", approved_until=until))

    # When mallory retags it to the lab instead
    tag(PUBLISHED, "prod-discovery")
    run(published, tag_event(PUBLISHED, 2))

    # Then it is held, and the finding says what was approved
    assert "pending approval is for stage prod-integration, not prod-discovery" in held(published)["summary"]


def test_a_lapsed_approval_approves_nothing(published) -> None:
    from keeper.ports import Remembered, StageMemory

    lapsed = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    StageMemory(boto3.client("dynamodb"), published.refs["StateTable"]).put(PUBLISHED, Remembered(
        "final-prod", approved_to="prod-discovery", approved_by="carol", approved_reason="CHG-1", approved_until=lapsed))

    tag(PUBLISHED, "prod-discovery")
    run(published, tag_event(PUBLISHED, 2))

    assert "approval for stage prod-discovery lapsed" in held(published)["summary"]


@pytest.mark.parametrize("args, message", [
    (("--to", "nowhere"), "--to 'nowhere': no such stage in the policy"),
    (("--bucket", "no-such-bucket"), "--bucket no-such-bucket: no such bucket"),
    (("--by", " "), "--by and --reason must not be empty"),
    (("--reason", ""), "--by and --reason must not be empty"),
])
def test_a_restage_with_bad_input_changes_nothing(published, capsys, args, message) -> None:
    from tests.helpers import ROOT

    base = {"--policy": str(ROOT / "policy.example.yaml"), "--bucket": PUBLISHED, "--to": "prod-discovery", "--by": "carol",
            "--reason": "CHG-1", "--state-table": published.refs["StateTable"], "--audit-table": published.refs["AuditTable"]}
    base.update(dict(zip(args[::2], args[1::2])))

    assert main(["retention", "restage", *[x for kv in base.items() for x in kv]]) == 2

    assert message in capsys.readouterr().err
    assert "approved_to" not in memory(published, PUBLISHED)
    assert boto3.client("s3").get_bucket_tagging(Bucket=PUBLISHED)["TagSet"][0] == {"Key": TAG, "Value": "final-prod"}


def test_cli_apply_with_the_state_table_holds_a_retagged_bucket(published, capsys) -> None:
    from tests.helpers import ROOT

    tag(PUBLISHED, "prod-discovery")

    code = main(["retention", "apply", "--policy", str(ROOT / "policy.example.yaml"), "--bucket", PUBLISHED,
                 "--state-table", published.refs["StateTable"], "--format", "json"])

    assert code == 0
    assert [v for v in versions(PUBLISHED) if not v[1]] == [("raw/paper.csv", False), ("raw/paper.csv", False)]
    assert not any(deletes_data(r) for r in rules(PUBLISHED).values())
    assert '"rule":"retention.stage-downgrade"' in capsys.readouterr().out
    assert memory(published, PUBLISHED)["stage"] == "final-prod"
