"""Red-team the break-glass grant exemption of access.prod-human: what an attacker on the shared role can ride.

Register entries and pointers are written to a moto state table in the shape the break-glass function writes them;
what is judged is :class:`exfil.ports.GrantLookup` reading them back."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from exfil.ports import GrantLookup
from exfil.records import Identity
from moto import mock_aws

from stage_policy import keys
from stagewarden.cfn import load_template
from tests.helpers import ROOT

ROLE, ROLE_ID = "BreakGlass", "AROABREAKGLASS"
ONCALL = f"{ROLE_ID}:oncall@example.com"
KEY = "ASIAONCALLSESSION1"
IDENT = Identity(key=f"123456789012/{ROLE}/oncall@example.com", principal="arn:aws:sts::123456789012:assumed-role/BreakGlass/x",
                 kind="AssumedRole", account="123456789012", role_name=ROLE, role_id=ROLE_ID, session="oncall@example.com")


@pytest.fixture
def table():
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="state", BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
        yield ddb


def put_grant(ddb: Any, grant_id: str, opened: str, deadline: str, sessions: list[tuple[str, str, str]],
              status: str = "active", closed_at: str | None = None) -> None:
    doc = {"grant_id": grant_id, "created_at": opened, "deadline": deadline, "opened_at": ""}
    item = {**keys.breakglass_record(grant_id), "doc": {"S": json.dumps(doc)}, "status": {"S": status},
            "sessions": {"L": [{"S": json.dumps({"at": at, "event": "AssumeRole", "session": userid, "access_key": key,
                                                  "session_source_identity": None})} for userid, key, at in sessions]}}
    if closed_at:
        item["closed_at"] = {"S": closed_at}
    ddb.put_item(TableName="state", Item=item)


def put_pointer(ddb: Any, grant_id: str, previous: str | None = None) -> None:
    item = {**keys.breakglass_grant(ROLE), "grant_id": {"S": grant_id}}
    if previous:
        item["previous_grant_id"] = {"S": previous}
    ddb.put_item(TableName="state", Item=item)


def read(principal: str = ONCALL, key: str = KEY, created: str = "2026-11-22T08:05:00Z", **extra: Any) -> dict[str, Any]:
    return {"type": "AssumedRole", "principalId": principal, "accessKeyId": key,
            "sessionContext": {"attributes": {"creationDate": created}}, **extra}


def covered(ddb: Any, ui: dict[str, Any], when: str) -> bool:
    return GrantLookup(ddb, "state").active(IDENT, ui, when)


@pytest.fixture
def one_grant(table):
    put_grant(table, "bg-1", "2026-11-22T08:00:00Z", "2026-11-22T09:30:00Z", [(ONCALL, KEY, "2026-11-22T08:05:00Z")])
    put_pointer(table, "bg-1")
    assert covered(table, read(), "2026-11-22T08:30:00Z")  # the grantee's own read is exempt
    return table


def test_riding_the_grantee_s_session_name_gets_another_key_and_no_exemption(one_grant) -> None:
    """The attacker assumes the role with the grantee's session name: same principalId, another access key."""
    assert not covered(one_grant, read(key="ASIAATTACKERSESSION"), "2026-11-22T08:30:00Z")
    assert not covered(one_grant, read(key=None), "2026-11-22T08:30:00Z")  # a record that hides the key


@pytest.mark.xfail(strict=True, reason=(
    "a grant binds a read to the approved session's credentials (principalId + accessKeyId + creationDate) and records "
    "nothing about where they were used: the grantee's credentials copied and used from another network (another "
    "sourceIPAddress / vpcEndpointId / userAgent in the data event) are exempted like the grantee's own reads; "
    "the data event shows the same principalId and accessKeyId, only sourceIPAddress differs"))
def test_the_grantee_s_credentials_used_from_elsewhere_are_not_exempt(one_grant) -> None:
    stolen = read(sourceIPAddress="203.0.113.66", userAgent="rclone/v1.65")  # what the data event shows
    assert not covered(one_grant, stolen, "2026-11-22T08:30:00Z")


def test_a_read_in_the_window_delivered_after_the_pointer_lapsed_is_judged_normally(table) -> None:
    """CloudTrail stamps eventTime; a file delivered past the pointer's day of grace finds no grant: fail closed."""
    put_grant(table, "bg-1", "2026-11-22T08:00:00Z", "2026-11-22T09:30:00Z", [(ONCALL, KEY, "2026-11-22T08:05:00Z")])
    assert not covered(table, read(), "2026-11-22T08:30:00Z")


def test_two_grants_in_a_row_do_not_lend_the_first_session_to_the_second(table) -> None:
    """Grant 1 ended early at 08:30; grant 2 opened at 08:40. Session 1's credentials (still valid) read at 08:50."""
    put_grant(table, "bg-1", "2026-11-22T08:00:00Z", "2026-11-22T09:30:00Z", [(ONCALL, KEY, "2026-11-22T08:05:00Z")],
              status="ended", closed_at="2026-11-22T08:30:00Z")
    put_grant(table, "bg-2", "2026-11-22T08:40:00Z", "2026-11-22T10:00:00Z",
              [(ONCALL, "ASIAONCALLSESSION2", "2026-11-22T08:41:00Z")])
    put_pointer(table, "bg-2", previous="bg-1")
    assert covered(table, read(), "2026-11-22T08:20:00Z")  # within grant 1: still exempt, judged late
    assert not covered(table, read(), "2026-11-22T08:50:00Z")  # grant 1's key after its close, inside grant 2
    assert covered(table, read(key="ASIAONCALLSESSION2", created="2026-11-22T08:41:00Z"), "2026-11-22T08:50:00Z")
    # grant 2's key stamped before grant 2 opened (in the gap after grant 1's close): not exempt
    assert not covered(table, read(key="ASIAONCALLSESSION2", created="2026-11-22T08:41:00Z"), "2026-11-22T08:35:00Z")


def test_a_grant_ended_early_exempts_nothing_after_its_close(table) -> None:
    put_grant(table, "bg-1", "2026-11-22T08:00:00Z", "2026-11-22T09:30:00Z", [(ONCALL, KEY, "2026-11-22T08:05:00Z")],
              status="ended", closed_at="2026-11-22T08:10:00Z")
    put_pointer(table, "bg-1")
    assert covered(table, read(), "2026-11-22T08:09:59Z")
    assert not covered(table, read(), "2026-11-22T08:10:00Z")


def test_a_pointer_naming_a_grant_whose_entry_is_another_grant_exempts_nothing(table) -> None:
    """A pointer edited to name another grant id (or a register entry copied under another id) covers nothing."""
    put_grant(table, "bg-1", "2026-11-22T08:00:00Z", "2026-11-22T09:30:00Z", [(ONCALL, KEY, "2026-11-22T08:05:00Z")])
    item = table.get_item(TableName="state", Key=keys.breakglass_record("bg-1"))["Item"]
    table.put_item(TableName="state", Item={**item, **keys.breakglass_record("bg-forged")})
    put_pointer(table, "bg-forged")
    assert not covered(table, read(), "2026-11-22T08:30:00Z")


@pytest.mark.xfail(strict=True, reason=(
    "a forged grant (register entry + pointer) written to the state table exempts the forger's reads, and nothing in "
    "template.yaml limits who may write that table: StateTable has no ResourcePolicy denying writes to principals "
    "other than Stagewarden's functions, and every function's State statement allows PutItem/UpdateItem on the whole "
    "table (no dynamodb:LeadingKeys), so any principal with dynamodb:PutItem on * in the account (PowerUserAccess, say) can "
    "grant itself; the operator CLI (`breakglass grant`, `retention restage`) writes the table with the operator's own "
    "credentials, so the fix needs the operators' roles named as a stack parameter before a deny can be added"))
def test_only_stagewarden_s_functions_can_write_the_state_table() -> None:
    props = load_template(ROOT / "template.yaml")["Resources"]["StateTable"]["Properties"]
    statements = (props.get("ResourcePolicy") or {}).get("PolicyDocument", {}).get("Statement", [])
    assert any(s.get("Effect") == "Deny" and any("PutItem" in a or a == "dynamodb:*" for a in
               (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])) for s in statements)
