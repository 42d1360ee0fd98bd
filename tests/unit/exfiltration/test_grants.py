"""exfil.grants: what a break-glass grant (open or closed) covers, decided from its register entry alone (no AWS)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from exfil.grants import GrantWindow

USERID = "AROABREAKGLASS:oncall@example.com"
KEY = "ASIAONCALLSESSION1"


def record(sessions: list[dict[str, Any]], status: str = "active", opened_at: str = "", grant_id: str = "bg-1",
           closed_at: str | None = None) -> dict[str, Any]:
    """The grant's register entry, in the shape GrantStore writes it (08:00-09:30)."""
    doc = {"grant_id": grant_id, "created_at": "2026-11-22T08:00:00Z", "deadline": "2026-11-22T09:30:00Z", "opened_at": opened_at}
    item = {"doc": {"S": json.dumps(doc)}, "status": {"S": status}, "sessions": {"L": [{"S": json.dumps(s)} for s in sessions]}}
    if closed_at is not None:
        item["closed_at"] = {"S": closed_at}
    return item


def session(**overrides: Any) -> dict[str, Any]:
    return {"at": "2026-11-22T08:05:00Z", "event": "AssumeRole", "session": USERID, "access_key": KEY,
            "session_source_identity": None, **overrides}


def ui(**overrides: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {"attributes": {"creationDate": "2026-11-22T08:05:00Z"}}
    if "source" in overrides:
        ctx["sourceIdentity"] = overrides.pop("source")
    if "created" in overrides:
        ctx["attributes"]["creationDate"] = overrides.pop("created")
    return {"type": "AssumedRole", "principalId": USERID, "accessKeyId": KEY, "sessionContext": ctx, **overrides}


def grant(*sessions: dict[str, Any], **kwargs: Any) -> GrantWindow:
    got = GrantWindow.from_record("bg-1", record(list(sessions) or [session()], **kwargs))
    assert got is not None
    return got


def test_the_approved_session_is_covered_within_the_grant_only() -> None:
    g = grant()
    assert g.covers(ui(), "2026-11-22T08:30:00Z")
    assert not g.covers(ui(), "2026-11-22T09:30:00Z")  # the deadline itself is outside
    assert not g.covers(ui(), "2026-11-22T07:59:59Z")


@pytest.mark.parametrize("event, why", [
    (ui(accessKeyId="ASIAOTHERSESSION22"), "same session name, other credentials"),
    (ui(principalId="AROABREAKGLASS:alice@example.com"), "another session of the role"),
    (ui(principalId="AROAOTHERACCOUNT0:oncall@example.com"), "a same-named role elsewhere"),
    (ui(source="mallory"), "a sourceIdentity the approved session did not have"),
    (ui(created="2026-11-22T07:55:00Z"), "credentials issued before the grant opened"),
    (ui(created="not a time"), "an unreadable creationDate"),
    ({k: v for k, v in ui().items() if k != "accessKeyId"}, "no access key"),
    ("not an object", "a userIdentity that is not an object"),
])
def test_anything_else_is_not_covered(event: Any, why: str) -> None:
    assert not grant().covers(event, "2026-11-22T08:30:00Z"), why


def test_the_recorded_source_identity_must_match() -> None:
    g = grant(session(session_source_identity="oncall@example.com"))
    assert g.covers(ui(source="oncall@example.com"), "2026-11-22T08:30:00Z")
    assert not g.covers(ui(), "2026-11-22T08:30:00Z")
    assert not g.covers(ui(source="alice@example.com"), "2026-11-22T08:30:00Z")


def test_a_second_session_under_the_same_name_is_covered_by_its_own_key() -> None:
    g = grant(session(), session(at="2026-11-22T08:40:00Z", access_key="ASIASECONDSESSION"))
    assert g.covers(ui(accessKeyId="ASIASECONDSESSION", created="2026-11-22T08:40:00Z"), "2026-11-22T08:45:00Z")


@pytest.mark.parametrize("entry, why", [
    (session(at="2026-11-22T07:50:00Z"), "opened before the grant (its AssumeRole processed late)"),
    (session(access_key=None), "no access key (a console sign-in): nothing ties a read to it"),
    (session(at="yesterday"), "an unreadable time"),
    (session(session=None), "no aws:userid"),
])
def test_sessions_that_cannot_be_the_grant_s_cover_nothing(entry: dict[str, Any], why: str) -> None:
    assert not grant(entry).covers(ui(), "2026-11-22T08:30:00Z"), why


def test_a_console_activation_opens_the_grant_at_the_approver_s_change() -> None:
    early = session(at="2026-11-22T07:58:00Z")
    assert grant(early, opened_at="2026-11-22T07:57:00Z").covers(ui(created="2026-11-22T07:58:00Z"), "2026-11-22T08:30:00Z")
    assert not grant(early).covers(ui(created="2026-11-22T07:58:00Z"), "2026-11-22T08:30:00Z")


@pytest.mark.parametrize("status", ["expired", "ended"])
def test_a_closed_grant_still_covers_what_was_made_within_it(status: str) -> None:
    # log files arrive after the close: the event's own time decides, not when it is judged
    g = grant(status=status, closed_at="2026-11-22T09:30:01Z")
    assert g.covers(ui(), "2026-11-22T09:29:59Z")
    assert not g.covers(ui(), "2026-11-22T09:30:00Z")


def test_a_grant_ended_early_covers_nothing_after_its_close() -> None:
    g = grant(status="ended", closed_at="2026-11-22T08:40:00Z")
    assert g.covers(ui(), "2026-11-22T08:39:59Z")
    assert not g.covers(ui(), "2026-11-22T08:40:00Z")
    assert not g.covers(ui(), "2026-11-22T09:00:00Z")  # before the deadline, but after the close
    # a session opened after the close (its AssumeRole processed late) is not the grant's
    assert not grant(session(at="2026-11-22T08:45:00Z"), status="ended", closed_at="2026-11-22T08:40:00Z").covers(
        ui(created="2026-11-22T08:45:00Z"), "2026-11-22T08:46:00Z")


@pytest.mark.parametrize("status, grant_id, closed_at", [
    ("expired", "bg-1", None), ("ended", "bg-1", "not a time"), ("rolled-back", "bg-1", None), ("active", "bg-other", None)])
def test_a_register_entry_that_does_not_say_when_the_grant_covered_is_no_grant(status: str, grant_id: str,
                                                                                 closed_at: str | None) -> None:
    assert GrantWindow.from_record("bg-1", record([session()], status=status, grant_id=grant_id, closed_at=closed_at)) is None


def test_a_pointer_without_a_register_entry_is_no_grant() -> None:
    assert GrantWindow.from_record("bg-1", None) is None
