"""CloudTrail records of the calls break glass watches, in CloudTrail's shape, for the demo, the tests and events/.

moto writes no CloudTrail: these are the records CloudTrail would write for IAM role changes,
STS AssumeRole and console sign-in, wrapped as EventBridge delivers them (and as SQS delivers
EventBridge's events to the function). ``python -m stagewarden.breakglass_events events/breakglass``
rewrites the sample files.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
WHEN = datetime(2026, 11, 22, 8, 5, tzinfo=timezone.utc)
ROLE = "BreakGlassProd"
APPROVER = "vp-engineering@example.com"
CLI_UA = "aws-cli/2.15.30 Python/3.11.8 Darwin/23.4.0 exe/x86_64 prompt/off command/iam.update-assume-role-policy"
CONSOLE_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"


def _id(seed: str, prefix: str = "AROA", n: int = 17) -> str:
    digest = hashlib.sha256(seed.encode()).hexdigest().upper()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return prefix + "".join(alphabet[int(digest[i : i + 2], 16) % 32] for i in range(0, 2 * n, 2))


def _t(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def session_identity(role: str, session: str, account: str = ACCOUNT, source_identity: str | None = None) -> dict[str, Any]:
    """A role session as CloudTrail's userIdentity names it (``AWSReservedSSO_*`` roles are IAM Identity Center's)."""
    role_id = _id(f"role:{role}")
    ctx: dict[str, Any] = {
        "sessionIssuer": {"type": "Role", "principalId": role_id, "arn": f"arn:aws:iam::{account}:role/{role}",
                          "accountId": account, "userName": role},
        "attributes": {"creationDate": "2026-11-22T07:55:12Z", "mfaAuthenticated": "true"},
    }
    if source_identity:
        ctx["sourceIdentity"] = source_identity
    return {"type": "AssumedRole", "principalId": f"{role_id}:{session}", "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
            "accountId": account, "accessKeyId": _id(f"key:{role}:{session}", "ASIA", 16), "sessionContext": ctx}


def approver_identity(email: str = APPROVER) -> dict[str, Any]:
    """An approver signed in through IAM Identity Center: the session name is their e-mail, set by Identity Center."""
    return session_identity("AWSReservedSSO_SecurityAdmin_0a1b2c3d4e5f6789", email)


def record(name: str, source: str, identity: dict[str, Any], request: dict[str, Any] | None, when: datetime = WHEN,
           response: Any = None, error: str | None = None, agent: str = CLI_UA, ip: str = "198.51.100.23",
           read_only: bool = False, event_type: str = "AwsApiCall") -> dict[str, Any]:
    rec: dict[str, Any] = {
        "eventVersion": "1.09", "userIdentity": identity, "eventTime": _t(when), "eventSource": source, "eventName": name,
        "awsRegion": "us-east-1", "sourceIPAddress": ip, "userAgent": agent, "requestParameters": request,
        "responseElements": response, "requestID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"req:{name}:{when}:{request}")),
        "eventID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"evt:{name}:{when}:{json.dumps(request, sort_keys=True)}:{identity.get('arn')}")),
        "readOnly": read_only, "eventType": event_type, "managementEvent": True, "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }
    if error:
        rec["errorCode"], rec["errorMessage"] = error, f"{error}: denied"
    return rec


def update_trust(role: str, document: dict[str, Any], identity: dict[str, Any], when: datetime = WHEN) -> dict[str, Any]:
    return record("UpdateAssumeRolePolicy", "iam.amazonaws.com", identity,
                  {"roleName": role, "policyDocument": json.dumps(document)}, when)


def attach_policy(role: str, policy_arn: str, identity: dict[str, Any], when: datetime = WHEN) -> dict[str, Any]:
    return record("AttachRolePolicy", "iam.amazonaws.com", identity, {"roleName": role, "policyArn": policy_arn}, when)


def put_policy(role: str, name: str, document: dict[str, Any], identity: dict[str, Any], when: datetime = WHEN) -> dict[str, Any]:
    return record("PutRolePolicy", "iam.amazonaws.com", identity,
                  {"roleName": role, "policyName": name, "policyDocument": json.dumps(document)}, when)


def delete_policy(role: str, name: str, identity: dict[str, Any], when: datetime = WHEN) -> dict[str, Any]:
    return record("DeleteRolePolicy", "iam.amazonaws.com", identity, {"roleName": role, "policyName": name}, when)


def tag_role(role: str, tags: dict[str, str], identity: dict[str, Any], when: datetime = WHEN) -> dict[str, Any]:
    return record("TagRole", "iam.amazonaws.com", identity,
                  {"roleName": role, "tags": [{"key": k, "value": v} for k, v in tags.items()]}, when)


def assume_role(role_arn: str, session: str, identity: dict[str, Any], when: datetime = WHEN, role_id: str | None = None,
                error: str | None = None, source_identity: str | None = None) -> dict[str, Any]:
    """AssumeRole as CloudTrail records it; ``responseElements.assumedRoleUser.assumedRoleId`` is the new session's aws:userid."""
    role_name = role_arn.rsplit("/", 1)[-1]
    role_id = role_id or _id(f"role:{role_name}")
    request: dict[str, Any] = {"roleArn": role_arn, "roleSessionName": session, "durationSeconds": 3600}
    if source_identity:
        request["sourceIdentity"] = source_identity
    response = None if error else {
        "credentials": {"accessKeyId": _id(f"key:{role_arn}:{session}:{when}", "ASIA", 16), "sessionToken": "redacted",
                        "expiration": "Nov 22, 2026, 10:05:00 AM"},
        "assumedRoleUser": {"assumedRoleId": f"{role_id}:{session}",
                            "arn": role_arn.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + f"/{session}"},
    }
    return record("AssumeRole", "sts.amazonaws.com", identity, request, when, response, error, read_only=False)


def console_login(role: str, session: str, when: datetime = WHEN, failed: bool = False, account: str = ACCOUNT) -> dict[str, Any]:
    """A federated console sign-in into a role (ConsoleLogin, signin.amazonaws.com)."""
    identity = session_identity(role, session, account)
    identity.pop("accessKeyId", None)
    return record("ConsoleLogin", "signin.amazonaws.com", identity, None, when,
                  {"ConsoleLogin": "Failure" if failed else "Success"}, agent=CONSOLE_UA, event_type="AwsConsoleSignIn")


def eventbridge(detail: dict[str, Any]) -> dict[str, Any]:
    """The event EventBridge delivers for a CloudTrail record."""
    source = {"iam.amazonaws.com": "aws.iam", "sts.amazonaws.com": "aws.sts", "signin.amazonaws.com": "aws.signin"}[detail["eventSource"]]
    kind = "AWS Console Sign In via CloudTrail" if detail["eventName"] == "ConsoleLogin" else "AWS API Call via CloudTrail"
    return {"version": "0", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "eb:" + detail["eventID"])), "detail-type": kind,
            "source": source, "account": ACCOUNT, "time": detail["eventTime"], "region": "us-east-1", "resources": [],
            "detail": detail}


def sqs(*events: dict[str, Any], queue: str = "stagewarden-local-breakglassqueue") -> dict[str, Any]:
    """The SQS batch the function's event source mapping hands it."""
    records = []
    for event in events:
        body = json.dumps(event)
        records.append({
            "messageId": str(uuid.uuid5(uuid.NAMESPACE_URL, "msg:" + event["id"])), "receiptHandle": "AQEBxxxxxxxxxxxxxxxx",
            "body": body, "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795334700000",
                                         "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1795334700001"},
            "messageAttributes": {}, "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's own checksum
            "eventSource": "aws:sqs", "eventSourceARN": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{queue}", "awsRegion": "us-east-1"})
    return {"Records": records}


def opened_trust(principal: str) -> dict[str, Any]:
    """A trust policy opened by hand: the baseline's statement plus an unconditioned Allow for ``principal``."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "Baseline", "Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]}


def samples() -> dict[str, dict[str, Any]]:
    """The sample events in events/breakglass/ (EventBridge shape; the SQS-wrapped twins are derived)."""
    alice = session_identity("DataScientistAlice", "alice@example.com")
    alice_role = f"arn:aws:iam::{ACCOUNT}:role/DataScientistAlice"
    oncall = f"arn:aws:iam::{ACCOUNT}:role/OnCallEngineer"
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
    approver = approver_identity()
    return {
        "update_assume_role_policy_unapproved": eventbridge(update_trust(ROLE, opened_trust(alice_role), alice)),
        "update_assume_role_policy_by_approver": eventbridge(update_trust(ROLE, opened_trust(oncall), approver)),
        "tag_role_self_approved": eventbridge(tag_role(ROLE, {"stagewarden:approved-by": APPROVER, "stagewarden:ticket": "INC-0000",
                                                              "stagewarden:expires-at": "2026-11-22T09:35:00Z"}, alice)),
        "tag_role_by_approver": eventbridge(tag_role(ROLE, {"stagewarden:approved-by": APPROVER, "stagewarden:ticket": "INC-4711",
                                                            "stagewarden:expires-at": "2026-11-22T09:35:00Z"}, approver)),
        "attach_role_policy_admin": eventbridge(attach_policy(ROLE, "arn:aws:iam::aws:policy/AdministratorAccess", alice)),
        "delete_role_policy_deadline": eventbridge(delete_policy(ROLE, "StagewardenBreakGlassDeadline", alice)),
        "assume_role": eventbridge(assume_role(role_arn, "oncall@example.com", session_identity("OnCallEngineer", "oncall@example.com"))),
        "assume_role_unapproved": eventbridge(assume_role(role_arn, "alice@example.com", alice)),
        "console_login": eventbridge(console_login(ROLE, "alice@example.com")),
    }


SCHEDULER = {
    # what a grant's one-time schedule sends (Scheduler fills in the context attributes; this is a filled-in copy)
    "scheduler_expire": {"stagewarden": "breakglass-expire", "grant_id": "bg-20261122T080500-0a1b2c",
                         "scheduled_time": "2026-11-22T09:35:00Z", "execution_id": "d32c5kddcf5bb8c3"},
    # what BreakGlassSweepSchedule sends every 5 minutes
    "scheduler_sweep": {"stagewarden": "breakglass-sweep", "scheduled_time": "2026-11-22T09:40:00Z",
                        "execution_id": "e41d6leedg6cc9d4"},
}


def write_samples(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, event in samples().items():
        for suffix, body in (("eventbridge", event), ("sqs", sqs(event))):
            path = folder / f"{name}.{suffix}.json"
            path.write_text(json.dumps(body, indent=2) + "\n")
            written.append(path)
    for name, payload in SCHEDULER.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(payload, indent=2) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_samples(Path(sys.argv[1] if len(sys.argv) > 1 else "events/breakglass")):
        print(p)
