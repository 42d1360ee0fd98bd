"""Break glass under moto: template.yaml provisioned in-process, the example policy, a break-glass role and a subscriber.

Tests assert on what is in AWS (the role's trust policy, inline policies and tags, the schedule)
and in DynamoDB (grants, the role lock, the pointer exfiltration reads, reviews, exceptions).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest

from tests.helpers import ROOT, drain, seed_policy_in_process, subscribe_queue

ACCOUNT = "123456789012"
ROLE = "BreakGlassProd"
ONCALL = f"arn:aws:iam::{ACCOUNT}:role/OnCallEngineer"
ALICE = f"arn:aws:iam::{ACCOUNT}:role/DataScientistAlice"
APPROVER = "vp-engineering@example.com"
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
#: The example policy with final-prod in enforce (the example keeps it in dry_run): reverts and denials happen.
ENFORCED = (ROOT / "policy.example.yaml").read_text().replace(
    "  final-prod:                    # locked production: permanent, immutable, service principals only\n",
    "  final-prod:                    # locked production: permanent, immutable, service principals only\n    mode: enforce\n")
assert "    mode: enforce\n" in ENFORCED.split("final-prod:", 1)[1][:200]
BASELINE = {"Version": "2012-10-17", "Statement": [
    {"Sid": "Baseline", "Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def doc(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)


class World:
    """The stack, the policy, the roles; builds engines and reads back what they did."""

    def __init__(self, stack: Any, policy_text: str = ENFORCED):
        from stage_policy.loader import loads

        self.stack = stack
        self.policy = loads(policy_text, "policy.yaml")
        self.iam = boto3.client("iam")
        self.ddb = boto3.client("dynamodb")
        self.table = stack.refs["StateTable"]
        self.audit_table = stack.refs["AuditTable"]
        self.inbox = subscribe_queue(stack)
        self.published: list[Any] = []
        for name, tags in ((ROLE, {"stagewarden:stage": "final-prod"}), ("OnCallEngineer", {}),
                           ("DataScientistAlice", {"stagewarden:stage": "prod-discovery"}),
                           ("DeployFinalProd", {"stagewarden:stage": "final-prod"})):
            self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(BASELINE),
                                 Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def warden(self, mode: str = "enforce", policy: Any = None, clock: Any = None) -> Any:
        from warden.engine import Scheduling, Warden, wall_clock
        from warden.ports import GrantStore, RoleReader, TrailReader

        from stage_policy.executor import AuditLedger, Executor
        from stage_policy.publish import FindingPublisher

        policy = policy or self.policy
        publisher = FindingPublisher(boto3.client("sns"), self.stack.refs["AlertsTopic"], self.ddb, self.table)

        def publish(finding: Any) -> Any:
            self.published.append(finding)
            return publisher.publish(finding, policy.alerts)

        executor = Executor(boto3.client, policy, mode, AuditLedger(self.ddb, self.audit_table, "tests"))
        scheduling = Scheduling(self.stack.refs["BreakGlassScheduleGroup"], self.stack.attrs["BreakGlassFunction.Arn"],
                                self.stack.attrs["BreakGlassFunctionExpiryRole.Arn"], self.stack.attrs["BreakGlassDeadLetterQueue.Arn"])
        return Warden(policy, GrantStore(self.ddb, self.table), RoleReader(self.iam), TrailReader(boto3.client("cloudtrail")),
                      executor, publish, scheduling, self.stack.stack_name, clock or wall_clock)

    def grant(self, minutes: int = 90, now: datetime = T0, principal: str = ONCALL, **kwargs: Any) -> Any:
        from warden.rules import GrantRequest

        request = GrantRequest(ROLE, principal, kwargs.pop("approver", APPROVER), kwargs.pop("ticket", "INC-4711"), minutes,
                               kwargs.pop("reason", "orders table corrupt"))
        return self.warden(**kwargs).grant(request, now, "arn:aws:sts::123456789012:assumed-role/Operator/bob@example.com")

    # ---------------------------------------------------------------- reading back
    def role(self, name: str = ROLE) -> dict[str, Any]:
        role = self.iam.get_role(RoleName=name)["Role"]
        names = self.iam.list_role_policies(RoleName=name)["PolicyNames"]
        return {"trust": doc(role["AssumeRolePolicyDocument"]), "tags": {t["Key"]: t["Value"] for t in role.get("Tags", [])},
                "inline": {n: doc(self.iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"]) for n in names},
                "attached": [p["PolicyArn"] for p in self.iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]]}

    def items(self, pk: str) -> list[dict[str, Any]]:
        return self.ddb.query(TableName=self.table, KeyConditionExpression="pk = :p",
                              ExpressionAttributeValues={":p": {"S": pk}})["Items"]

    def item(self, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.ddb.get_item(TableName=self.table, Key=key).get("Item")

    def all_items(self) -> list[dict[str, Any]]:
        return self.ddb.scan(TableName=self.table)["Items"]

    def findings(self) -> list[dict[str, Any]]:
        return drain(self.inbox)

    def schedules(self) -> list[dict[str, Any]]:
        scheduler = boto3.client("scheduler")
        group = self.stack.refs["BreakGlassScheduleGroup"]
        out = []
        for s in scheduler.list_schedules(GroupName=group)["Schedules"]:
            if s["Name"].startswith("stagewarden-bg-"):
                out.append(scheduler.get_schedule(Name=s["Name"], GroupName=group))
        return out


@pytest.fixture
def world(stack, tmp_path) -> World:
    path = tmp_path / "policy.yaml"
    path.write_text(ENFORCED)
    seed_policy_in_process(stack, path)
    return World(stack)


# ------------------------------------------------------------------ IAM condition evaluation (for the figures)
def _date(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_OPS = {
    "DateGreaterThan": lambda a, b: _date(a) > _date(b), "DateLessThan": lambda a, b: _date(a) < _date(b),
    "DateGreaterThanEquals": lambda a, b: _date(a) >= _date(b), "DateLessThanEquals": lambda a, b: _date(a) <= _date(b),
    "StringEquals": lambda a, b: a == b, "StringLike": lambda a, b: __import__("fnmatch").fnmatchcase(a, b),
}


def condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    """IAM's rules for one Condition block: every operator and key must match (keys ANDed, values ORed);
    a key missing from the request context does not match (no ...IfExists operators are used here)."""
    for op, pairs in condition.items():
        for key, expected in pairs.items():
            actual = context.get(key)
            if op == "Null":  # "true": the key is absent from the request context
                if (actual is None) != (str(expected).lower() == "true"):
                    return False
                continue
            values = expected if isinstance(expected, list) else [expected]
            if actual is None or not any(_OPS[op](actual, v) for v in values):
                return False
    return True


def evaluate(documents: list[dict[str, Any]], action: str, context: dict[str, str]) -> str:
    """``Deny`` (an explicit deny matches), ``Allow`` or ``ImplicitDeny`` for one call, resource ``*``."""
    from fnmatch import fnmatchcase

    effects = set()
    for document in documents:
        statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
        for st in statements:
            actions = st.get("Action", [])
            actions = actions if isinstance(actions, list) else [actions]
            if any(fnmatchcase(action.lower(), a.lower()) for a in actions) and condition_holds(st.get("Condition", {}), context):
                effects.add(st["Effect"])
    return "Deny" if "Deny" in effects else "Allow" if "Allow" in effects else "ImplicitDeny"
