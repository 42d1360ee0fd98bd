"""ExfiltrationFunction from template.yaml under mock_aws: log files and management events in, containment out."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest

from stagewarden.invoke import function_spec, invoke
from stagewarden.trailgen import bulk_download, log_file, log_key, shared_role_day
from tests.helpers import ROOT, drain, seed_policy_in_process, subscribe_queue

EVENTS = ROOT / "events" / "exfiltration"
ROLE = "DataScientistAlice"
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
ALICE_SESSION = f"arn:aws:sts::123456789012:assumed-role/{ROLE}/alice@example.com"


def role_policies(role: str) -> dict[str, dict]:
    iam = boto3.client("iam")
    out = {}
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        out[name] = json.loads(doc) if isinstance(doc, str) else doc
    return out


def sqs_event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.sqs.json").read_text())


def run(stack, event: dict) -> dict:
    return invoke(function_spec(ROOT / "template.yaml", "ExfiltrationFunction", stack), event)


@pytest.fixture
def lab(stack, tmp_path):
    """The example policy (prod-discovery: enforce, contain), deployed with DefaultRemediationMode=enforce,
    alice's role, the lab bucket, a subscriber."""
    stack.parameters["DefaultRemediationMode"] = "enforce"
    seed_policy_in_process(stack, ROOT / "policy.example.yaml")
    boto3.client("iam").create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    boto3.client("s3").create_bucket(Bucket="acme-lab-data")
    stack.inbox = subscribe_queue(stack)
    return stack


def deliver_log_file(stack, objects: int = 1500, **kwargs) -> dict:
    event = sqs_event("log_file_delivered")
    detail = json.loads(event["Records"][0]["body"])["detail"]
    records = bulk_download(role=ROLE, session="alice@example.com", bucket="acme-lab-data", objects=objects,
                            start=__import__("datetime").datetime(2026, 11, 22, 8, 0, tzinfo=__import__("datetime").timezone.utc),
                            seconds=240, nbytes=120_000, **kwargs)
    boto3.client("s3").put_object(Bucket=detail["bucket"]["name"], Key=detail["object"]["key"], Body=log_file(records))
    return event


def write_counter():
    counts = {"n": 0}

    def count(**_):
        counts["n"] += 1

    session = boto3._get_default_session()
    for op in ("PutItem", "UpdateItem", "BatchWriteItem", "DeleteItem"):
        session.events.register(f"before-call.dynamodb.{op}", count)
    return counts


def test_scenario_bulk_download_in_a_log_file_is_detected_and_the_session_denied(lab, iam_denies) -> None:
    # Given alice's `aws s3 cp --recursive` in a delivered CloudTrail log file
    event = deliver_log_file(lab)

    # When the function takes the queued event
    result = run(lab, event)

    # Then the batch succeeds, the alert is on the topic and alice's session (only) is denied
    assert result == {"batchItemFailures": []}
    findings = drain(lab.inbox)
    bulk = next(f for f in findings if f["rule"] == "exfil.bulk-download")
    assert bulk["principal"] == ALICE_SESSION and bulk["stage"] == "prod-discovery"
    assert bulk["evidence"]["role_arn"] == f"arn:aws:iam::123456789012:role/{ROLE}"
    assert bulk["evidence"]["sliding_window"]["objects"] > 1000 and bulk["evidence"]["session_names"] == ["alice@example.com"]
    assert bulk["action"].startswith(f"denied session alice@example.com of role {ROLE}")
    [(name, doc)] = role_policies(ROLE).items()
    assert name.startswith("StagewardenDenySession-")
    userid = bulk["evidence"]["role_id"] + ":alice@example.com"
    assert iam_denies(doc, {"aws:userid": userid}) and not iam_denies(doc, {"aws:userid": bulk["evidence"]["role_id"] + ":bob"})
    # and the audit ledger holds the containment once (a second finding on the same session reuses it)
    audit = boto3.client("dynamodb").scan(TableName=lab.refs["AuditTable"])["Items"]
    assert [(i["action"]["S"], i["status"]["S"]) for i in audit if i["status"]["S"] == "done"] == [("deny-session", "done")]
    assert {i["status"]["S"] for i in audit} <= {"done", "duplicate"} and all(i["mode"]["S"] == "enforce" for i in audit)


def test_scenario_a_bulk_download_on_a_shared_role_is_contained_for_the_downloader_only(lab, iam_denies) -> None:
    # Given six colleagues reading normally through the VPC endpoint on one shared notebook role,
    # and mallory, on the same role, pulling 1,500 objects
    role = "DataScientistShared"
    boto3.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    records = shared_role_day(colleagues=6, role=role, bucket="acme-lab-data", start=T0, reads_each=400, minutes=10)
    records += bulk_download(role=role, session="mallory@example.com", bucket="acme-lab-data", objects=1500, start=T0,
                             seconds=240, nbytes=1000, vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.9.9", prefix="loot/")
    records.sort(key=lambda r: r["eventTime"])

    # When the log file is processed
    result = run(lab, deliver(lab, log_key(T0, "shared"), records))

    # Then one finding, naming only mallory's session
    assert result == {"batchItemFailures": []}
    findings = drain(lab.inbox)
    assert [(f["rule"], f["principal"]) for f in findings] == [
        ("exfil.bulk-download", f"arn:aws:sts::123456789012:assumed-role/{role}/mallory@example.com")]
    # and the deny on the role matches mallory's aws:userid, also after she re-assumes under the same name, never a colleague's
    [doc] = role_policies(role).values()
    role_id = findings[0]["evidence"]["role_id"]
    colleague = next(r for r in records if "colleague" in r["userIdentity"]["arn"])["userIdentity"]["principalId"]
    mallory = next(r for r in records if "mallory" in r["userIdentity"]["arn"])["userIdentity"]["principalId"]
    assert mallory == f"{role_id}:mallory@example.com" and colleague.startswith(role_id + ":colleague")
    assert iam_denies(doc, {"aws:userid": mallory}) and not iam_denies(doc, {"aws:userid": colleague})


def test_whole_role_revocation_where_the_stage_says_so(lab, tmp_path, iam_denies) -> None:
    text = (ROOT / "policy.example.yaml").read_text().replace("      containment: session ", "      containment: role    ", 1)
    assert "containment: role" in text
    (tmp_path / "p.yaml").write_text(text)
    seed_policy_in_process(lab, tmp_path / "p.yaml")

    run(lab, deliver_log_file(lab))

    bulk = next(f for f in drain(lab.inbox) if f["rule"] == "exfil.bulk-download")
    assert bulk["action"].startswith(f"revoked sessions of role {ROLE} issued before ")
    doc = role_policies(ROLE)["StagewardenRevokeOlderSessions"]
    assert iam_denies(doc, {"aws:TokenIssueTime": "2000-01-01T00:00:00Z"})  # every older session, colleagues included


def test_a_protected_role_is_alerted_and_left_alone(lab, tmp_path) -> None:
    text = (ROOT / "policy.example.yaml").read_text().replace(
        'protected_roles: ["OrganizationAccountAccessRole"]', 'protected_roles: ["DataScientistAlice"]', 1)
    assert 'protected_roles: ["DataScientistAlice"]' in text
    (tmp_path / "p.yaml").write_text(text)
    seed_policy_in_process(lab, tmp_path / "p.yaml")

    run(lab, deliver_log_file(lab))

    bulk = next(f for f in drain(lab.inbox) if f["rule"] == "exfil.bulk-download")
    assert "organization.protected_roles" in bulk["action"] and role_policies(ROLE) == {}


def test_a_role_in_another_account_is_alerted_with_its_account_never_contained(lab) -> None:
    records = bulk_download(role=ROLE, session="alice@example.com", bucket="acme-lab-data", objects=1500, start=T0, seconds=240,
                            nbytes=1000, account="210987654321")

    run(lab, deliver(lab, log_key(T0, "member", account="210987654321"), records))

    bulk = next(f for f in drain(lab.inbox) if f["rule"] == "exfil.bulk-download")
    assert bulk["evidence"]["account"] == "210987654321" and "in account 210987654321, not this account" in bulk["action"]
    assert role_policies(ROLE) == {}


def test_scenario_a_redelivered_log_file_is_neither_recounted_nor_realerted(lab) -> None:
    event = deliver_log_file(lab)
    run(lab, event)
    first = drain(lab.inbox)

    again = run(lab, event)

    assert again == {"batchItemFailures": []} and first and drain(lab.inbox) == []


def test_dynamodb_writes_per_log_file_stay_within_pairs_plus_one(lab) -> None:
    # Given a file with one (principal, stage) pair below the thresholds (no incident, so no alert writes)
    event = deliver_log_file(lab, objects=200, vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.4.2")
    counts = write_counter()

    run(lab, event)

    assert drain(lab.inbox) == []
    assert counts["n"] == 1 + 2  # the window item of (alice, prod-discovery); the replay record, put then completed


def test_scenario_a_malformed_message_fails_alone_and_nothing_is_remediated(lab) -> None:
    good = sqs_event("mgmt_delete_trail")["Records"][0]
    bad = {**good, "messageId": "poison-1", "body": "{not json"}

    result = run(lab, {"Records": [bad, good]})

    assert result == {"batchItemFailures": [{"itemIdentifier": "poison-1"}]}
    assert [f["rule"] for f in drain(lab.inbox)] == ["audit.tamper"]


def test_scenario_backdoor_bucket_policy_is_reverted(lab) -> None:
    s3 = boto3.client("s3")
    backdoor = json.loads(sqs_event("mgmt_bucket_policy_external")["Records"][0]["body"])["detail"]["requestParameters"]["bucketPolicy"]
    keep = {"Sid": "OwnAccount", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/etl"},
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::acme-lab-data/*"}
    s3.put_bucket_policy(Bucket="acme-lab-data", Policy=json.dumps({**backdoor, "Statement": backdoor["Statement"] + [keep]}))

    result = run(lab, sqs_event("mgmt_bucket_policy_external"))

    assert result == {"batchItemFailures": []}
    after = json.loads(s3.get_bucket_policy(Bucket="acme-lab-data")["Policy"])
    assert [st["Sid"] for st in after["Statement"]] == ["OwnAccount"]
    finding = drain(lab.inbox)[0]
    assert finding["rule"] == "exfil.bucket-policy-external" and "removed 1 external statement" in finding["action"]


def test_scenario_snapshot_share_is_removed(lab) -> None:
    ec2 = boto3.client("ec2")
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    ec2.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission", OperationType="add", UserIds=["999988887777"])
    event = sqs_event("mgmt_snapshot_share")
    body = json.loads(event["Records"][0]["body"])
    body["detail"]["requestParameters"]["snapshotId"] = snap
    event["Records"][0]["body"] = json.dumps(body)

    run(lab, event)

    perms = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")["CreateVolumePermissions"]
    assert perms == []
    assert drain(lab.inbox)[0]["evidence"]["actions"][0].startswith(f"removed create-volume permission on {snap}")


def test_scenario_db_snapshot_share_is_removed(lab) -> None:
    rds = boto3.client("rds")
    rds.create_db_instance(DBInstanceIdentifier="lab-db", DBInstanceClass="db.t3.micro", Engine="postgres",
                           MasterUsername="admin", MasterUserPassword="not-a-real-secret-1", AllocatedStorage=20)
    rds.create_db_snapshot(DBInstanceIdentifier="lab-db", DBSnapshotIdentifier="lab-db-snapshot")
    rds.modify_db_snapshot_attribute(DBSnapshotIdentifier="lab-db-snapshot", AttributeName="restore", ValuesToAdd=["999988887777"])

    run(lab, sqs_event("mgmt_db_snapshot_share"))

    attrs = rds.describe_db_snapshot_attributes(DBSnapshotIdentifier="lab-db-snapshot")["DBSnapshotAttributesResult"]["DBSnapshotAttributes"]
    assert all("999988887777" not in a["AttributeValues"] for a in attrs)


def test_scenario_external_replication_is_removed(lab) -> None:
    s3 = boto3.client("s3")
    s3.put_bucket_versioning(Bucket="acme-lab-data", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_replication(Bucket="acme-lab-data", ReplicationConfiguration={"Role": "arn:aws:iam::123456789012:role/replication", "Rules": [
        {"ID": "to-partner", "Status": "Enabled", "Priority": 1, "Filter": {"Prefix": ""}, "DeleteMarkerReplication": {"Status": "Disabled"},
         "Destination": {"Bucket": "arn:aws:s3:::partner-drop", "Account": "999988887777"}}]})

    run(lab, sqs_event("mgmt_replication_external"))

    with pytest.raises(Exception) as gone:
        s3.get_bucket_replication(Bucket="acme-lab-data")
    assert "ReplicationConfigurationNotFound" in str(gone.value)


@pytest.mark.parametrize("name", ["stop_logging", "delete_trail", "event_selectors_drop_s3"])
def test_scenario_trail_tampering_raises_a_critical_alert(lab, name) -> None:
    run(lab, sqs_event(f"mgmt_{name}"))

    findings = drain(lab.inbox)
    assert [(f["rule"], f["severity"]) for f in findings] == [("audit.tamper", "critical")]


def test_scenario_dry_run_says_what_it_would_do_and_does_nothing(lab, tmp_path) -> None:
    text = (ROOT / "policy.example.yaml").read_text().replace("    mode: enforce\n", "    mode: dry_run\n", 1)
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    seed_policy_in_process(lab, policy)
    event = deliver_log_file(lab)

    run(lab, event)

    bulk = next(f for f in drain(lab.inbox) if f["rule"] == "exfil.bulk-download")
    assert bulk["action"].startswith(f"dry run: would deny session alice@example.com of role {ROLE}")
    assert boto3.client("iam").list_role_policies(RoleName=ROLE)["PolicyNames"] == []


@pytest.mark.parametrize("path", sorted(p.name for p in EVENTS.glob("mgmt_*.sqs.json")))
def test_every_sample_management_event_yields_its_rule(lab, path) -> None:
    expected = {"bucket_policy_external": "exfil.bucket-policy-external", "bucket_acl_public": "exfil.bucket-policy-external",
                "bucket_policy_other_org": "exfil.bucket-policy-external", "replication_external": "exfil.replication-external",
                "replication_unmapped_bucket": "exfil.replication-external", "snapshot_share": "exfil.snapshot-share",
                "image_share": "exfil.snapshot-share", "db_snapshot_share": "exfil.snapshot-share", "stop_logging": "audit.tamper",
                "delete_trail": "audit.tamper", "event_selectors_drop_s3": "audit.tamper", "update_trail_elsewhere": "audit.tamper",
                "disable_stagewarden_rule": "audit.tamper", "delete_stagewarden_function": "audit.tamper",
                "stagewarden_concurrency_zero": "audit.tamper",
                "trail_bucket_notifications_off": "audit.tamper"}[path[len("mgmt_"):-len(".sqs.json")]]

    # (deployed in dry_run: the sample events name snapshots, images and buckets this account does not have)
    lab.parameters["DefaultRemediationMode"] = "dry_run"

    result = run(lab, json.loads((EVENTS / path).read_text()))

    assert result == {"batchItemFailures": []}
    assert [f["rule"] for f in drain(lab.inbox)] == [expected]


def test_scenario_a_failed_containment_is_reported_and_fails_the_record(lab) -> None:
    # Given an external replication rule reported for a bucket whose replication cannot be read (none configured)
    event = sqs_event("mgmt_replication_external")

    # When the function tries to revert it in enforce
    result = run(lab, event)

    # Then the finding still reaches the topic and names the failure, the record fails (retried, then dead-lettered)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    finding = drain(lab.inbox)[0]
    assert finding["rule"] == "exfil.replication-external" and finding["action"].startswith("FAILED to remove replication rules")
    audit = boto3.client("dynamodb").scan(TableName=lab.refs["AuditTable"])["Items"]
    assert [(i["action"]["S"], i["status"]["S"]) for i in audit] == [("revert-replication", "failed")]


def test_scenario_deploy_time_dry_run_forces_dry_run_over_an_enforcing_policy(lab) -> None:
    # Given the stack deployed with DefaultRemediationMode=dry_run and a policy whose lab stage enforces
    lab.parameters["DefaultRemediationMode"] = "dry_run"
    event = deliver_log_file(lab)

    # When a bulk download arrives
    run(lab, event)

    # Then it is reported as a dry run and the role keeps its sessions
    bulk = next(f for f in drain(lab.inbox) if f["rule"] == "exfil.bulk-download")
    assert bulk["action"].startswith("dry run: would deny session alice@example.com") and bulk["evidence"]["mode"] == "dry_run"
    assert boto3.client("iam").list_role_policies(RoleName=ROLE)["PolicyNames"] == []
    audit = boto3.client("dynamodb").scan(TableName=lab.refs["AuditTable"])["Items"]
    assert {i["status"]["S"] for i in audit} == {"dry_run", "duplicate"} or {i["status"]["S"] for i in audit} == {"dry_run"}


def test_max_revocations_per_run_caps_the_whole_batch_not_each_record(lab, tmp_path) -> None:
    # Given a policy allowing one revocation per run and two bulk downloads by two roles in one SQS batch
    policy = (ROOT / "policy.example.yaml").read_text().replace("max_revocations_per_run: 20", "max_revocations_per_run: 1")
    assert "max_revocations_per_run: 1\n" in policy
    (tmp_path / "p.yaml").write_text(policy)
    seed_policy_in_process(lab, tmp_path / "p.yaml")
    iam, s3 = boto3.client("iam"), boto3.client("s3")
    iam.create_role(RoleName="DataScientistBob", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    from datetime import datetime, timezone
    records = []
    for i, role in enumerate((ROLE, "DataScientistBob")):
        event = sqs_event("log_file_delivered")
        body = json.loads(event["Records"][0]["body"])
        body["detail"]["object"]["key"] = body["detail"]["object"]["key"].replace(".json.gz", f"-{i}.json.gz")
        body["detail"]["object"]["etag"] = f"etag-{i}"
        trail = bulk_download(role=role, session=f"{role}@example.com", bucket="acme-lab-data", objects=1500,
                              start=datetime(2026, 11, 22, 8, tzinfo=timezone.utc), seconds=240, nbytes=10)
        s3.put_object(Bucket=body["detail"]["bucket"]["name"], Key=body["detail"]["object"]["key"], Body=log_file(trail))
        records.append({**event["Records"][0], "messageId": f"m-{i}", "body": json.dumps(body)})

    # When both arrive in one invocation
    result = run(lab, {"Records": records})

    # Then exactly one role gets the revocation; the other finding says the cap is spent
    assert result == {"batchItemFailures": []}
    revoked = [r for r in (ROLE, "DataScientistBob") if iam.list_role_policies(RoleName=r)["PolicyNames"]]
    assert len(revoked) == 1
    actions = [f["action"] for f in drain(lab.inbox) if f["rule"] == "exfil.bulk-download"]
    assert sum("max_revocations_per_run is spent" in a for a in actions) == 1


def test_a_bucket_tagged_with_a_stage_is_watched_whatever_its_name(lab) -> None:
    # Given a bucket no name pattern covers, tagged into the lab stage
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="research-scratch")
    s3.put_bucket_tagging(Bucket="research-scratch", Tagging={"TagSet": [{"Key": "stagewarden:stage", "Value": "prod-discovery"}]})
    event = sqs_event("log_file_delivered")
    detail = json.loads(event["Records"][0]["body"])["detail"]
    from datetime import datetime, timezone
    records = bulk_download(role=ROLE, session="alice@example.com", bucket="research-scratch", objects=1200,
                            start=datetime(2026, 11, 22, 8, tzinfo=timezone.utc), seconds=200, nbytes=10,
                            vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.5")
    s3.put_object(Bucket=detail["bucket"]["name"], Key=detail["object"]["key"], Body=log_file(records))

    run(lab, event)

    bulk = [f for f in drain(lab.inbox) if f["rule"] == "exfil.bulk-download"]
    assert len(bulk) == 1 and bulk[0]["stage"] == "prod-discovery" and bulk[0]["evidence"]["buckets"] == ["research-scratch"]


def deliver(lab, key: str, records: list[dict]) -> dict:
    event = sqs_event("log_file_delivered")
    body = json.loads(event["Records"][0]["body"])
    body["detail"]["object"]["key"] = key
    body["detail"]["object"]["etag"] = key
    event["Records"][0]["body"] = json.dumps(body)
    boto3.client("s3").put_object(Bucket=body["detail"]["bucket"]["name"], Key=key, Body=log_file(records))
    return event


def test_client_tools_are_learned_across_log_files_in_dynamodb(lab) -> None:
    from datetime import datetime, timedelta, timezone

    # Given alice reading the lab with boto3 on a server for longer than the learning period
    t0 = datetime(2026, 11, 1, 8, tzinfo=timezone.utc)
    ua = "[Boto3/1.34.69 md/Botocore#1.34.69 os/linux#5.10]"
    common = dict(role=ROLE, session="alice@example.com", bucket="acme-lab-data", objects=5, seconds=10, nbytes=10,
                  vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.7")
    run(lab, deliver(lab, log_key(t0, "day0"), bulk_download(start=t0, user_agent=ua, **common)))
    run(lab, deliver(lab, log_key(t0, "day15"), bulk_download(start=t0 + timedelta(days=15), user_agent=ua, **common)))
    assert drain(lab.inbox) == []

    # When she later pulls data with rclone
    run(lab, deliver(lab, log_key(t0, "day16"),
                     bulk_download(start=t0 + timedelta(days=16), user_agent="rclone/v1.66.0", **common)))

    # Then the new client tool is flagged, with what was known
    findings = drain(lab.inbox)
    assert [f["rule"] for f in findings] == ["exfil.new-client-tool"]
    assert findings[0]["evidence"]["new_client_families"] == ["rclone"] and findings[0]["evidence"]["known_client_families"] == ["boto3"]


def test_a_human_writing_to_final_prod_is_flagged(lab) -> None:
    import random
    from datetime import datetime, timezone

    from stagewarden.trailgen import data_event

    boto3.client("s3").create_bucket(Bucket="acme-prod-models")
    rng = random.Random(3)
    records = [data_event(role="AWSReservedSSO_PowerUser_1a2b", session="bob@example.com", bucket="acme-prod-models",
                          key=f"models/v{i}.tar.gz", when=datetime(2026, 11, 22, 9, tzinfo=timezone.utc), rng=rng,
                          name="PutObject", vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.9") for i in range(3)]

    run(lab, deliver(lab, log_key(T0, "prod"), records))

    findings = drain(lab.inbox)
    assert [(f["rule"], f["stage"]) for f in findings] == [("access.prod-human", "final-prod")]
    assert findings[0]["evidence"]["human_events"] == 3 and findings[0]["action"].startswith("dry run: would deny session bob@example.com")


# ------------------------------------------------------------------ poison-proof, source-checked
def test_scenario_poison_records_cannot_hide_a_bulk_download(lab, iam_denies) -> None:
    # Given a log file whose first records break assumptions (types, no eventTime, a hostile denied policy call)
    records = bulk_download(role=ROLE, session="alice@example.com", bucket="acme-lab-data", objects=1500, start=T0, seconds=240,
                            nbytes=1000, vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.1")
    records[0]["requestParameters"]["bucketName"] = {"not": "a name"}
    del records[1]["eventTime"]
    records[2]["additionalEventData"] = ["not", "an", "object"]
    from stagewarden.trailgen import management_event
    hostile = management_event("PutBucketPolicy", "s3.amazonaws.com", {"bucketName": "acme-lab-data", "bucketPolicy": {"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{100000000000 + i}:root" for i in range(2000)]}, "Action": "*",
         "Resource": "*"}]}}, error_code="AccessDenied")

    # When the file is processed
    result = run(lab, deliver(lab, log_key(T0, "poison"), [hostile] + records))

    # Then the download is still found and contained, the bad records are listed, the hostile call is a valid finding
    assert result == {"batchItemFailures": []}
    findings = {f["rule"]: f for f in drain(lab.inbox)}
    assert set(findings) == {"exfil.bulk-download", "input.malformed", "exfil.bucket-policy-external"}
    assert findings["input.malformed"]["evidence"]["record_indexes"] == [1, 2, 3]
    assert findings["exfil.bucket-policy-external"]["severity"] == "medium" and len(findings["exfil.bucket-policy-external"]["summary"]) <= 1000
    [doc] = role_policies(ROLE).values()
    assert iam_denies(doc, {"aws:userid": findings["exfil.bulk-download"]["evidence"]["role_id"] + ":alice@example.com"})


@pytest.mark.parametrize("key, problem", [
    ("AWSLogs/999988887777/CloudTrail/us-east-1/2026/11/22/x.json.gz", "account 999988887777"),
    ("uploads/AWSLogs/123456789012/CloudTrail/x.json.gz", "not under AWSLogs/"),
    ("AWSLogs/o-attacker0001/123456789012/CloudTrail/us-east-1/x.json.gz", "organisation o-attacker0001"),
])
def test_objects_outside_cloudtrails_own_keys_are_skipped_with_a_finding(lab, key, problem) -> None:
    records = bulk_download(role=ROLE, session="alice@example.com", bucket="acme-lab-data", objects=1500, start=T0, seconds=240,
                            nbytes=1000)

    result = run(lab, deliver(lab, key, records))

    findings = drain(lab.inbox)
    assert result == {"batchItemFailures": []}
    assert [f["rule"] for f in findings] == ["input.log-source"] and problem in findings[0]["summary"]
    assert role_policies(ROLE) == {}  # nothing in it was believed


def test_an_organisation_trail_key_with_the_configured_org_id_is_read(lab) -> None:
    assert "org_id: o-abc123defg" in (ROOT / "policy.example.yaml").read_text()
    records = bulk_download(role=ROLE, session="alice@example.com", bucket="acme-lab-data", objects=1500, start=T0, seconds=240,
                            nbytes=1000)

    run(lab, deliver(lab, log_key(T0, "org", org_id="o-abc123defg"), records))

    assert "exfil.bulk-download" in {f["rule"] for f in drain(lab.inbox)}


def test_a_log_file_in_another_bucket_is_skipped_with_a_finding(lab) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="not-the-trail-bucket")
    event = sqs_event("log_file_delivered")
    body = json.loads(event["Records"][0]["body"])
    body["detail"]["bucket"]["name"] = "not-the-trail-bucket"
    event["Records"][0]["body"] = json.dumps(body)
    s3.put_object(Bucket="not-the-trail-bucket", Key=body["detail"]["object"]["key"], Body=log_file([]))

    run(lab, event)

    assert [f["rule"] for f in drain(lab.inbox)] == ["input.log-source"]


def test_a_gzip_bomb_neither_exhausts_the_function_nor_hides_what_came_before(lab) -> None:
    import gzip

    # Given a small gzip file that inflates to 48 MiB: ten records, then one endless "record"
    records = bulk_download(role=ROLE, session="alice@example.com", bucket="acme-lab-data", objects=10, start=T0, seconds=10,
                            nbytes=1, vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.1", auth="QueryString")
    bomb = gzip.compress(log_file(records, compress=False)[:-2] + b',{"eventVersion":"' + b" " * (48 << 20) + b'"}]}')
    key = log_key(T0, "bomb")
    event = deliver(lab, key, [])
    boto3.client("s3").put_object(Bucket=lab.refs["CloudTrailLogBucket"], Key=key, Body=bomb)

    result = run(lab, event)

    # Then the ten records are processed (pre-signed reads found) and the oversized record is skipped and reported
    findings = {f["rule"]: f for f in drain(lab.inbox)}
    assert result == {"batchItemFailures": []} and len(bomb) < 200_000
    assert set(findings) == {"exfil.presigned-url", "input.malformed"}
    assert "larger than" in findings["input.malformed"]["evidence"]["issues"][0]["detail"]


# ------------------------------------------------------------------ data-opening changes, reverted in AWS
def test_scenario_a_single_statement_backdoor_policy_is_deleted_not_corrupted(lab) -> None:
    s3 = boto3.client("s3")
    event = sqs_event("mgmt_bucket_policy_other_org")
    backdoor = json.loads(event["Records"][0]["body"])["detail"]["requestParameters"]["bucketPolicy"]
    assert isinstance(backdoor["Statement"], dict)
    s3.put_bucket_policy(Bucket="acme-lab-data", Policy=json.dumps(backdoor))

    result = run(lab, event)

    assert result == {"batchItemFailures": []}
    with pytest.raises(Exception) as gone:
        s3.get_bucket_policy(Bucket="acme-lab-data")
    assert "NoSuchBucketPolicy" in str(gone.value)
    finding = drain(lab.inbox)[0]
    assert finding["severity"] == "critical" and "removed 1 external statement" in finding["action"]


def test_scenario_replication_to_an_unmapped_bucket_is_removed_and_internal_rules_kept(lab) -> None:
    s3 = boto3.client("s3")
    s3.put_bucket_versioning(Bucket="acme-lab-data", VersioningConfiguration={"Status": "Enabled"})

    def rule(rid: str, bucket: str, priority: int) -> dict:
        return {"ID": rid, "Status": "Enabled", "Priority": priority, "Filter": {"Prefix": ""},
                "DeleteMarkerReplication": {"Status": "Disabled"}, "Destination": {"Bucket": f"arn:aws:s3:::{bucket}"}}

    s3.put_bucket_replication(Bucket="acme-lab-data", ReplicationConfiguration={
        "Role": "arn:aws:iam::123456789012:role/replication",
        "Rules": [rule("backup", "innocent-backup-copy", 1), rule("replica", "acme-lab-replica", 2)]})

    result = run(lab, sqs_event("mgmt_replication_unmapped_bucket"))

    assert result == {"batchItemFailures": []}
    rules = s3.get_bucket_replication(Bucket="acme-lab-data")["ReplicationConfiguration"]["Rules"]
    assert [r["ID"] for r in rules] == ["replica"]


def test_stagewarden_tampering_names_the_stack_resource(lab) -> None:
    run(lab, sqs_event("mgmt_disable_stagewarden_rule"))
    run(lab, sqs_event("mgmt_trail_bucket_notifications_off"))

    findings = drain(lab.inbox)
    assert [(f["rule"], f["severity"]) for f in findings] == [("audit.tamper", "critical")] * 2
    assert findings[0]["resource"].endswith(":rule/stagewarden-local-exfillogfilerule")
    assert findings[1]["resource"] == "arn:aws:s3:::stagewarden-local-cloudtraillogbucket"
