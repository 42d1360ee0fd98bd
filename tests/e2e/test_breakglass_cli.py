"""Break glass end to end on moto_server: the operator's CLI, CloudTrail events through EventBridge and the queue, the sweep.

Asserted on the role (trust, inline policies, tags) and in DynamoDB, as the issue's "done when" lists:
grant, the refusals, the deadline policy, expiry through the sweep, session revocation, baseline
restore, the review record, revert of an unapproved activation, and the exception lifecycle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from stage_policy import keys
from stagewarden import breakglass_events as ev
from stagewarden import emulator
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e

ROLE = "BreakGlassProd"
ONCALL = "arn:aws:iam::123456789012:role/OnCallEngineer"
ALICE = "arn:aws:iam::123456789012:role/DataScientistAlice"
BASELINE = {"Version": "2012-10-17", "Statement": [
    {"Sid": "Baseline", "Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def cli(*args: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    return subprocess.run([sys.executable, "-m", "stagewarden", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bg")
    (tmp / "template.yaml").write_bytes((ROOT / "template.yaml").read_bytes())
    for name in ("layers", "functions", "events"):
        (tmp / name).symlink_to(ROOT / name)
    policy = tmp / "policy.yaml"
    policy.write_text((ROOT / "policy.example.yaml").read_text().replace(
        "  final-prod:                    # locked production: permanent, immutable, service principals only\n",
        "  final-prod:                    # locked production: permanent, immutable, service principals only\n    mode: enforce\n"))
    project = tmp / "template.yaml"
    up = cli("local", "up", "-t", str(project), "--policy", str(policy), "--parameter-overrides", "DefaultRemediationMode=enforce")
    assert up.returncode == 0, up.stdout + up.stderr
    state = emulator.read_state(project)
    iam = emulator.boto_client("iam", state)
    for name, tags in ((ROLE, {"stagewarden:stage": "final-prod"}), ("OnCallEngineer", {}),
                       ("DataScientistAlice", {"stagewarden:stage": "prod-discovery"})):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(BASELINE), Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    try:
        yield project, policy, state
    finally:
        cli("local", "down", "-t", str(project))


def role(state, name: str = ROLE) -> dict:
    iam = emulator.boto_client("iam", state)
    r = iam.get_role(RoleName=name)["Role"]
    names = iam.list_role_policies(RoleName=name)["PolicyNames"]
    return {"trust": r["AssumeRolePolicyDocument"], "tags": {t["Key"]: t["Value"] for t in r.get("Tags", [])},
            "inline": {n: iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"] for n in names}}


def items(state, pk: str) -> list[dict]:
    return emulator.boto_client("dynamodb", state).query(
        TableName=state.refs["StateTable"], KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": pk}})["Items"]


def deliver(state, detail: dict) -> None:
    """What CloudTrail does for the call: its event on the default bus (moto routes it through the template's rules)."""
    event = ev.eventbridge(detail)
    emulator.boto_client("events", state).put_events(Entries=[
        {"Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(detail)}])


def test_the_break_glass_lifecycle_on_the_emulator(site) -> None:
    project, policy, state = site
    base = ["-t", str(project), "--policy", str(policy)]

    # the first sweep records the role's baseline
    swept = cli("breakglass", "sweep", *base, "--format", "json")
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["baselines_recorded"] == [ROLE]

    # refusals: exit 2, one line, nothing changed
    before, grants_before = role(state), items(state, keys.BREAKGLASS_GRANTS)
    for extra, says in (
        (["--approver", "intern@example.com", "--ticket", "INC-1", "--duration", "90m"], "approver 'intern@example.com' is not in"),
        (["--approver", "vp-engineering@example.com", "--duration", "90m"], "the ticket is missing"),
        (["--approver", "vp-engineering@example.com", "--ticket", "INC-1", "--duration", "3h"], "duration 180m is above"),
    ):
        refused = cli("breakglass", "grant", *base, "--role", ROLE, "--principal", ONCALL, *extra)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and says in refused.stderr, refused.stderr
        assert "refused, nothing changed" in refused.stderr
    not_bg = cli("breakglass", "grant", *base, "--role", "DataScientistAlice", "--principal", ONCALL,
                 "--approver", "vp-engineering@example.com", "--ticket", "INC-1", "--duration", "30m")
    assert not_bg.returncode == 2 and "is not a break-glass role" in not_bg.stderr
    assert role(state) == before and items(state, keys.BREAKGLASS_GRANTS) == grants_before == []

    # the grant: trust opened until the deadline, the deadline in IAM, the approval tags, the schedule, DynamoDB
    granted = cli("breakglass", "grant", *base, "--role", ROLE, "--principal", ONCALL, "--approver", "vp-engineering@example.com",
                  "--ticket", "INC-4711", "--duration", "90m", "--reason", "orders table corrupt", "--format", "json")
    assert granted.returncode == 0, granted.stderr
    grant = json.loads(granted.stdout)
    opened = role(state)
    assert opened["trust"]["Statement"][-1]["Principal"] == {"AWS": ONCALL}
    assert opened["trust"]["Statement"][-1]["Condition"] == {"DateLessThan": {"aws:CurrentTime": grant["deadline"]}}
    assert opened["inline"]["StagewardenBreakGlassDeadline"]["Statement"][0]["Condition"] == {
        "DateGreaterThan": {"aws:CurrentTime": grant["deadline"]}}
    assert opened["tags"]["stagewarden:approved-by"] == "vp-engineering@example.com" and opened["tags"]["stagewarden:ticket"] == "INC-4711"
    scheduler = emulator.boto_client("scheduler", state)
    schedule = scheduler.get_schedule(Name=grant["schedule"], GroupName=state.refs["BreakGlassScheduleGroup"])
    assert schedule["ScheduleExpression"] == f"at({grant['deadline'].rstrip('Z')})"
    [record] = items(state, keys.BREAKGLASS_GRANTS)
    assert record["status"]["S"] == "active"
    again = cli("breakglass", "grant", *base, "--role", ROLE, "--principal", ALICE, "--approver", "ciso@example.com",
                "--ticket", "INC-2", "--duration", "30m")
    assert again.returncode == 2 and "one grant at a time" in again.stderr

    # the grantee's session, through CloudTrail -> EventBridge -> the queue -> the function
    now = datetime.now(timezone.utc).replace(microsecond=0)
    deliver(state, ev.assume_role(f"arn:aws:iam::123456789012:role/{ROLE}", "oncall@example.com",
                                  ev.session_identity("OnCallEngineer", "oncall@example.com"), now))
    polled = cli("local", "poll", "BreakGlassFunction", "-t", str(project))
    assert polled.returncode == 0 and json.loads(polled.stdout)["failed"] == 0, polled.stdout + polled.stderr
    assert len(items(state, keys.BREAKGLASS_GRANTS)[0]["sessions"]["L"]) == 1

    listed = cli("breakglass", "list", *base, "--format", "json")
    assert [json.loads(line)["status"] for line in listed.stdout.splitlines()] == ["active"]

    # expiry through the sweep, as of one second after the deadline
    after = (datetime.fromisoformat(grant["deadline"].replace("Z", "+00:00")) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    expired = cli("breakglass", "sweep", *base, "--now", after, "--format", "json")
    assert expired.returncode == 0, expired.stderr
    assert json.loads(expired.stdout)["expired"] == [grant["grant_id"]]
    closed = role(state)
    assert closed["trust"]["Statement"] == BASELINE["Statement"]  # baseline restored
    assert set(closed["inline"]) == {"StagewardenBreakGlassRevokeSessions"}  # deadline removed, sessions revoked
    revoked_before = closed["inline"]["StagewardenBreakGlassRevokeSessions"]["Statement"][0]["Condition"]["DateLessThan"][
        "aws:TokenIssueTime"]
    assert revoked_before >= after
    assert closed["tags"] == {"stagewarden:stage": "final-prod"}
    assert items(state, keys.BREAKGLASS_GRANTS)[0]["status"]["S"] == "expired"
    [review] = items(state, keys.BREAKGLASS_REVIEWS)
    body = json.loads(review["doc"]["S"])
    assert body["principal"] == ONCALL and body["approver"] == "vp-engineering@example.com" and len(body["sessions"]) == 1
    assert review["status"]["S"] == "open" and body["due"]
    twice = cli("breakglass", "sweep", *base, "--now", after, "--format", "json")
    assert json.loads(twice.stdout)["expired"] == [] and len(items(state, keys.BREAKGLASS_REVIEWS)) == 1
    listed = [json.loads(line) for line in cli("breakglass", "list", *base, "--format", "json").stdout.splitlines()]
    assert listed[0]["status"] == "expired" and listed[0]["review"] == {"due": body["due"], "status": "open"}

    # an unapproved activation (alice tags the role approved and opens it to herself) is reverted at once
    alice = ev.session_identity("DataScientistAlice", "alice@example.com")
    iam = emulator.boto_client("iam", state)
    iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=json.dumps(ev.opened_trust(ALICE)))
    deliver(state, ev.update_trust(ROLE, ev.opened_trust(ALICE), alice, now))
    polled = cli("local", "poll", "BreakGlassFunction", "-t", str(project))
    assert json.loads(polled.stdout)["failed"] == 0, polled.stdout + polled.stderr
    assert role(state)["trust"]["Statement"] == BASELINE["Statement"]

    # the review is completed by the reviewer
    done = cli("breakglass", "review", *base, "--grant", grant["grant_id"], "--reviewer", "ciso@example.com", "--notes", "ok")
    assert done.returncode == 0 and items(state, keys.BREAKGLASS_REVIEWS)[0]["status"]["S"] == "done"


def test_the_exception_lifecycle_on_the_emulator(site) -> None:
    project, policy, state = site
    base = ["-t", str(project), "--policy", str(policy)]
    until = (datetime.now(timezone.utc) + timedelta(days=60)).strftime("%Y-%m-%d")

    refused = cli("exception", "grant", *base, "--bucket", "acme-lab-data", "--principal", ALICE, "--approver", "cto@example.com",
                  "--until", until, "--reason", "x")
    assert refused.returncode == 2 and "is not in exceptions.buckets" in refused.stderr
    assert items(state, keys.EXCEPTIONS) == []

    granted = cli("exception", "grant", *base, "--bucket", "acme-prod-raw-clicks", "--principal", ALICE,
                  "--approver", "cto@example.com", "--until", until, "--reason", "fraud model needs raw clicks", "--format", "json")
    assert granted.returncode == 0, granted.stderr
    exc = json.loads(granted.stdout)
    allow = role(state, "DataScientistAlice")["inline"][exc["policy_name"]]["Statement"][0]
    assert allow["Action"] == ["s3:Get*", "s3:List*"] and allow["Condition"]["DateLessThan"]["aws:CurrentTime"] == f"{until}T00:00:00Z"

    [row] = [json.loads(line) for line in cli("exception", "list", *base, "--format", "json").stdout.splitlines()]
    assert row["owner"] == "arn:aws:sts::123456789012:user/moto" and row["approver"] == "cto@example.com"
    assert row["reason"] == "fraud model needs raw clicks" and row["until"] == f"{until}T00:00:00Z" and row["next_review"]

    review = (datetime.now(timezone.utc) + timedelta(days=30, minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert json.loads(cli("exception", "sweep", *base, "--now", review, "--format", "json").stdout)["reviews_due"] == [exc["exception_id"]]
    later = (datetime.now(timezone.utc) + timedelta(days=61)).strftime("%Y-%m-%dT%H:%M:%SZ")
    swept = json.loads(cli("exception", "sweep", *base, "--now", later, "--format", "json").stdout)
    assert swept["expired"] == [exc["exception_id"]]
    assert exc["policy_name"] not in role(state, "DataScientistAlice")["inline"]
    assert items(state, keys.EXCEPTIONS)[0]["status"]["S"] == "expired"


def test_without_an_emulator_or_a_stack_the_cli_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_bytes((ROOT / "template.yaml").read_bytes())
    out = cli("breakglass", "list", "-t", str(tmp_path / "template.yaml"), "--policy", str(ROOT / "policy.example.yaml"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "no emulator is running" in out.stderr and "--stack NAME" in out.stderr
