"""Break glass and time-boxed exceptions, the pure part: approval rules, the documents written into IAM, identities.

No boto3 and no environment: values in, values or refusal reasons out. The engine
(:mod:`warden.engine`) reads AWS through the ports, asks these functions what is allowed
and what each document must say, and hands the resulting actions to the layer's executor.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from typing import Any, Mapping

from stage_policy.mapping import StageMatch, role_name
from stage_policy.model import STAGE_TAG, BreakGlass, Policy

#: Put on the role with the approval tags while a grant is open.
EXPIRES_TAG = "stagewarden:expires-at"
GRANT_TAG = "stagewarden:grant-id"
#: Inline policies Stagewarden owns on a break-glass role.
DEADLINE_POLICY = "StagewardenBreakGlassDeadline"
REVOKE_POLICY = "StagewardenBreakGlassRevokeSessions"
DENY_SESSION_PREFIX = "StagewardenBreakGlassDenySession-"
EXCEPTION_POLICY_PREFIX = "StagewardenException-"
#: Trust statements a grant adds start with this Sid.
SID_PREFIX = "StagewardenBreakGlass"
#: IAM is eventually consistent (seconds): a revocation also covers sessions issued this long after it,
#: so a session squeezed through a trust policy that has not yet propagated is revoked too.
REVOKE_MARGIN = timedelta(seconds=120)
#: How far a session's ``aws:TokenIssueTime`` may lie before the eventTime of the AssumeRole that issued it (clocks,
#: rounding to the second): the lower issue-time bound of a per-session deny sits this far before that event.
ISSUE_MARGIN = timedelta(seconds=60)
#: The longest a role session can live (console federation, DurationSeconds 43200): a per-session deny
#: older than this can no longer match a live session and the sweep removes it.
MAX_SESSION = timedelta(hours=12)
#: Characters IAM accepts in a tag value.
TAG_VALUE = re.compile(r"^[\w\s.:/=+\-@]{1,256}$")
ROLE_OR_USER_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]{1,512}$")
ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
SESSION_EVENTS = ("AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity", "ConsoleLogin")
CHANGE_EVENTS = ("UpdateAssumeRolePolicy", "AttachRolePolicy", "PutRolePolicy", "DeleteRolePolicy", "TagRole")


class Refused(ValueError):
    """A request the approval rules refuse; nothing was changed. The message says why (one line)."""


# ------------------------------------------------------------------ time
def utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def iso(value: datetime) -> str:
    """IAM's date format (``2026-11-22T09:30:00Z``): whole seconds, UTC."""
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """ISO-8601 date or time; a date alone is 00:00 UTC of that day; no offset means UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return utc(value)


def parse_duration(text: str) -> int:
    """``90m``, ``2h``, ``1h30m`` or ``45`` (minutes) to whole minutes."""
    match = re.fullmatch(r"\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m?)?\s*", text or "")
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration (write 90m, 2h or 1h30m)")
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def new_id(prefix: str, now: datetime) -> str:
    """``bg-20261122T080000-3f9a1c``: sortable by time, unique by the random tail."""
    return f"{prefix}-{utc(now):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def schedule_name(grant_id: str) -> str:
    """The one-time expiry schedule of a grant: named after it, so a second create conflicts."""
    return f"stagewarden-{grant_id}"


# ------------------------------------------------------------------ identities
@dataclass(frozen=True)
class Caller:
    """Who made a CloudTrail call.

    ``verified`` is the identity Stagewarden accepts as a person's: the session's source identity
    (set once by the identity provider, kept through role chaining), the session name of an IAM
    Identity Center role (``AWSReservedSSO_*``, set by Identity Center), or an IAM user's name.
    A session name chosen by whoever called AssumeRole is not verified.
    """

    kind: str = ""
    arn: str | None = None
    principal: str | None = None  # the role ARN of a session, the user ARN of a user
    session_id: str | None = None  # aws:userid of a role session (ROLEID:session-name)
    verified: str | None = None
    service: bool = False


def caller_of(user_identity: Mapping[str, Any] | None) -> Caller:
    ui = user_identity or {}
    kind = str(ui.get("type") or "")
    ctx = ui.get("sessionContext") or {}
    issuer = ctx.get("sessionIssuer") or {}
    arn = ui.get("arn")
    principal = issuer.get("arn") or arn
    if kind == "AssumedRole" and arn and not issuer.get("arn"):
        principal = _role_arn_of_session(arn)
    session_id = ui.get("principalId") if kind == "AssumedRole" else None
    verified = ctx.get("sourceIdentity") or ui.get("sourceIdentity")
    if not verified and kind == "AssumedRole" and arn and role_name(arn).startswith("AWSReservedSSO_"):
        verified = arn.rsplit("/", 1)[-1]
    if not verified and kind == "IAMUser":
        verified = ui.get("userName")
    service = kind == "AWSService" or bool(ui.get("invokedBy"))
    return Caller(kind, arn, principal, session_id, verified, service)


def _role_arn_of_session(arn: str) -> str:
    """``arn:aws:sts::1:assumed-role/R/s`` -> ``arn:aws:iam::1:role/R``."""
    head, _, resource = arn.partition(":assumed-role/")
    return head.replace(":sts:", ":iam:") + ":role/" + resource.split("/", 1)[0]


def same_person(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and a.strip().lower() == b.strip().lower()


def is_service_caller(caller: Caller, service_globs: tuple[str, ...]) -> bool:
    """AWS services, and principals the policy lists under ``organization.service_principals``."""
    if caller.service:
        return True
    return any(p and any(fnmatchcase(p, g) for g in service_globs) for p in (caller.principal, caller.arn))


def is_human_caller(caller: Caller, detail: Mapping[str, Any], service_globs: tuple[str, ...]) -> bool:
    """For roles that are not break-glass roles: the exfiltration rules' notion of a human (root, users,
    SSO/SAML/web identity, sessions named like an e-mail, console use). Break-glass roles count every
    caller that is not a service as a human (:func:`is_service_caller`)."""
    if is_service_caller(caller, service_globs):
        return False
    if caller.kind in ("Root", "IAMUser", "SAMLUser", "WebIdentityUser", "IdentityCenterUser"):
        return True
    name = str(detail.get("eventName") or "")
    if name in ("AssumeRoleWithSAML", "AssumeRoleWithWebIdentity", "ConsoleLogin"):
        return True
    session = ((detail.get("requestParameters") or {}).get("roleSessionName") or "")
    return bool(caller.verified) or "@" in session or "@" in (caller.arn or "")


# ------------------------------------------------------------------ roles
@dataclass(frozen=True)
class RoleFacts:
    """What the rules need to know of an IAM role."""

    name: str
    arn: str
    path: str = "/"
    tags: Mapping[str, str] = field(default_factory=dict)


def is_protected(name: str, path: str, stack_name: str) -> str | None:
    """Why Stagewarden must never open, revert or contain this role (None: it may)."""
    if path.startswith("/aws-service-role/") or name.startswith("AWSServiceRoleFor"):
        return f"role {name} is a service-linked role"
    if stack_name and name.startswith(f"{stack_name}-"):
        return f"role {name} belongs to the Stagewarden stack {stack_name}"
    return None


def break_glass_of(policy: Policy, match: StageMatch) -> BreakGlass | None:
    """The stage's break-glass settings when the role is a break-glass role, else None."""
    if match.stage is None:
        return None
    bg = policy.stages[match.stage].break_glass
    return bg if bg is not None and bg.allowed else None


def locked_stage(policy: Policy, match: StageMatch) -> bool:
    """A stage with no interactive human access (final prod, automation-only UAT)."""
    return match.stage is not None and policy.stages[match.stage].interactive_access == "none"


# ------------------------------------------------------------------ grants
@dataclass(frozen=True)
class GrantRequest:
    role: str
    principal: str
    approver: str
    ticket: str | None
    minutes: int
    reason: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)  # values for required approval tags beyond approver/ticket


def approval_tags(bg: BreakGlass, approver: str, ticket: str, extra: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The approval tags a grant puts on the role, and the required ones nobody gave a value for."""
    tags, missing = {}, []
    for key in bg.required_approval_tags:
        if key.endswith("approved-by"):
            tags[key] = approver
        elif key.endswith("ticket"):
            tags[key] = ticket
        elif extra.get(key):
            tags[key] = extra[key]
        else:
            missing.append(key)
    return tags, missing


def grant_refusals(policy: Policy, role: RoleFacts | None, match: StageMatch | None, request: GrantRequest,
                   stack_name: str = "", requested_by: str | None = None) -> list[str]:
    """Every reason the approval rules refuse this grant (empty: allowed). Nothing here touches AWS."""
    reasons: list[str] = []
    if role is None or match is None:
        return [f"role {request.role} does not exist (or cannot be read)"]
    protected = is_protected(role.name, role.path, stack_name)
    if protected:
        return [f"{protected}: it is never opened"]
    bg = break_glass_of(policy, match)
    if match.stage is None:
        return [f"role {role.name} maps to no stage ({match.detail}): it is not a break-glass role"]
    if bg is None:
        return [f"role {role.name} is in stage {match.stage}, whose break_glass.allowed is not true: it is not a break-glass role"]
    where = f"stages.{match.stage}.break_glass"
    if STAGE_TAG not in role.tags:
        reasons.append(f"role {role.name} carries no {STAGE_TAG} tag: the stack may change only tagged roles (template.yaml "
                       f"scopes its IAM to them), so it could not close this grant; tag it {STAGE_TAG}={match.stage}")
    if not (request.ticket or "").strip():
        reasons.append("the ticket is missing: every grant names its incident or change ticket (--ticket)")
    elif not TAG_VALUE.match(request.ticket.strip()):
        reasons.append(f"ticket {request.ticket!r}: only letters, digits, spaces and _ . : / = + - @ fit in an IAM tag")
    if not any(same_person(request.approver, a) for a in bg.approvers):
        allowed = ", ".join(bg.approvers) or "none: nobody may approve"
        reasons.append(f"approver {request.approver!r} is not in {where}.approvers ({allowed})")
    elif not TAG_VALUE.match(request.approver):
        reasons.append(f"approver {request.approver!r} does not fit in an IAM tag")
    if request.minutes < 1:
        reasons.append("the duration must be at least 1 minute")
    elif request.minutes > bg.max_duration_minutes:
        reasons.append(f"duration {request.minutes}m is above {where}.max_duration_minutes ({bg.max_duration_minutes})")
    if not ROLE_OR_USER_ARN.match(request.principal or ""):
        reasons.append(f"principal {request.principal!r} is not an IAM role or user ARN (arn:aws:iam::<account>:role/<name>)")
    elif request.principal == role.arn:
        reasons.append("the principal is the break-glass role itself")
    if requested_by and _same_principal(requested_by, request.principal):
        reasons.append(f"{requested_by} may not grant break glass to itself: another operator runs the grant")
    _, missing = approval_tags(bg, request.approver, request.ticket or "", request.tags)
    for key in missing:
        reasons.append(f"{where}.required_approval_tags needs {key}: give it with --tag {key}=VALUE")
    for key, value in request.tags.items():
        if not TAG_VALUE.match(value):
            reasons.append(f"--tag {key}: {value!r} does not fit in an IAM tag")
    return reasons


def _same_principal(caller_arn: str, principal: str) -> bool:
    if ":assumed-role/" in caller_arn:
        caller_arn = _role_arn_of_session(caller_arn)
    return caller_arn == principal


# ------------------------------------------------------------------ documents
def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def statements(doc: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [s for s in _as_list((doc or {}).get("Statement")) if isinstance(s, dict)]


def _norm(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [_norm(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True)) if len(items) != 1 else items[0]
    return value


def canonical(doc: Mapping[str, Any] | None) -> str:
    """A policy document in one comparable form: order of statements and list items, and one-item
    lists written as strings, do not matter (IAM returns them either way)."""
    body = [_norm(s) for s in statements(doc)]
    body.sort(key=lambda s: json.dumps(s, sort_keys=True))
    return json.dumps({"Version": (doc or {}).get("Version", "2012-10-17"), "Statement": body}, sort_keys=True)


def grant_sid(grant_id: str) -> str:
    return SID_PREFIX + re.sub(r"[^A-Za-z0-9]", "", grant_id)


def grant_statement(grant_id: str, principal: str, deadline: datetime) -> dict[str, Any]:
    """The trust statement a grant adds: AssumeRole for the principal, and only before the deadline."""
    return {"Sid": grant_sid(grant_id), "Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole",
            "Condition": {"DateLessThan": {"aws:CurrentTime": iso(deadline)}}}


def with_statement(baseline: Mapping[str, Any], statement: Mapping[str, Any] | None) -> dict[str, Any]:
    """The baseline trust, plus a grant's statement if one is open."""
    body = [s for s in statements(baseline)]
    if statement is not None:
        body.append(dict(statement))
    return {"Version": baseline.get("Version", "2012-10-17"), "Statement": body}


def aws_principals(doc: Mapping[str, Any] | None) -> set[str]:
    out: set[str] = set()
    for st in statements(doc):
        if st.get("Effect") != "Allow":
            continue
        principal = st.get("Principal")
        if principal == "*":
            out.add("*")
        elif isinstance(principal, dict):
            out.update(str(p) for p in _as_list(principal.get("AWS")))
    return out


def added_principals(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    return sorted(aws_principals(current) - aws_principals(baseline))


def deadline_policy(deadline: datetime) -> dict[str, Any]:
    """The deadline written into IAM: after it every call of the role is denied, whatever else fails."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyEverythingAfterTheDeadline", "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"DateGreaterThan": {"aws:CurrentTime": iso(deadline)}}}]}


def revoke_policy(before: datetime) -> dict[str, Any]:
    """Deny every session of the role issued before ``before`` (AWS's "revoke active sessions")."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "RevokeSessionsIssuedBefore", "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": iso(before)}}}]}


#: A per-session deny that says nothing about ``aws:SourceIdentity`` (the session's is not known for sure).
ANY_SOURCE = object()


def deny_session_name(session_id: str, issued_after: datetime | None = None, source_identity: Any = ANY_SOURCE) -> str:
    """One inline policy per denied session: concurrent denials of different sessions never overwrite each other,
    nor do two unapproved sessions under one session name (another issue time or ``sourceIdentity``)."""
    import hashlib

    parts = [session_id]
    if issued_after is not None:
        parts.append(iso(issued_after))
    if source_identity is not ANY_SOURCE:
        parts.append("source=" + ("-" if source_identity is None else f"={source_identity}"))
    return DENY_SESSION_PREFIX + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def deny_session_policy(session_id: str, before: datetime, issued_after: datetime | None = None,
                        source_identity: Any = ANY_SOURCE) -> dict[str, Any]:
    """Deny one session (``aws:userid``, i.e. ROLEID:session-name) issued before ``before``.

    The issue time is part of the deny, so the same person re-assuming later under an approved grant
    is not locked out; the rest of the role's sessions are untouched. IAM has no condition key for the
    access key, and ``aws:userid`` is only the role and the session name, which the caller chooses: so
    where the session is known to be issued by the event (an AssumeRole), the deny is narrowed to
    sessions issued from ``issued_after`` on, and to the session's own ``aws:SourceIdentity`` (or its
    absence): a grantee's earlier session under the same name, or one with another sourceIdentity,
    stays usable.
    """
    condition: dict[str, Any] = {"StringEquals": {"aws:userid": session_id}, "DateLessThan": {"aws:TokenIssueTime": iso(before)}}
    if issued_after is not None:
        condition["DateGreaterThanEquals"] = {"aws:TokenIssueTime": iso(issued_after)}
    if source_identity is None:
        condition["Null"] = {"aws:SourceIdentity": "true"}
    elif source_identity is not ANY_SOURCE:
        condition["StringEquals"]["aws:SourceIdentity"] = str(source_identity)
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyOneSession", "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": condition}]}


def session_deny_is_stale(document: Mapping[str, Any] | None, now: datetime) -> bool:
    """A per-session deny whose issue-time bound is more than :data:`MAX_SESSION` ago matches no live session."""
    for st in statements(document):
        until = ((st.get("Condition") or {}).get("DateLessThan") or {}).get("aws:TokenIssueTime")
        try:
            if until is None or parse_time(str(until)) > utc(now) - MAX_SESSION:
                return False
        except ValueError:
            return False
    return bool(statements(document))


def exception_policy(bucket: str, until: datetime) -> dict[str, Any]:
    """Read-only access to one bucket, and only before ``until`` (IAM enforces the expiry itself)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "TimeBoxedReadOnlyException", "Effect": "Allow", "Action": ["s3:Get*", "s3:List*"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"DateLessThan": {"aws:CurrentTime": iso(until)}}}]}


# ------------------------------------------------------------------ console activations
@dataclass(frozen=True)
class ConsoleApproval:
    approver: str
    ticket: str
    deadline: datetime
    principal: str
    tags: dict[str, str]


def console_approval(bg: BreakGlass, stage: str, tags: Mapping[str, str], caller: Caller, added: list[str],
                     now: datetime) -> tuple[ConsoleApproval | None, list[str]]:
    """Is a trust change made directly (console, CLI, IaC) an approved break-glass activation?

    Approved only when all hold: the caller is a verified approver of the stage (:class:`Caller`);
    the role carries every required approval tag, its ``approved-by`` tags name that same caller, its
    ticket tag is set; ``stagewarden:expires-at`` is in the future and within the stage's maximum;
    exactly one principal was added, an IAM role or user ARN, not the approver's own. Tagging a role
    "approved" is therefore not approval: the approver's own hand must make the change.
    """
    where = f"stages.{stage}.break_glass"
    reasons: list[str] = []
    approver = caller.verified
    if not approver:
        reasons.append(f"the change was made by {caller.arn or 'an unknown caller'}, whose identity is not verified "
                       "(no source identity, not an IAM Identity Center or IAM user session)")
    elif not any(same_person(approver, a) for a in bg.approvers):
        reasons.append(f"the change was made by {approver}, who is not in {where}.approvers")
    named = {tags.get(k, "") for k in bg.required_approval_tags if k.endswith("approved-by")}
    for key in bg.required_approval_tags:
        if not (tags.get(key) or "").strip():
            reasons.append(f"approval tag {key} is missing")
    if approver and named and not all(same_person(approver, n) for n in named):
        reasons.append(f"the approved-by tag names {', '.join(sorted(named))}, not {approver} who made the change")
    ticket = next((tags[k] for k in bg.required_approval_tags if k.endswith("ticket") and tags.get(k)), "")
    deadline = None
    if not tags.get(EXPIRES_TAG):
        reasons.append(f"tag {EXPIRES_TAG} is missing: no deadline, no access")
    else:
        try:
            deadline = parse_time(tags[EXPIRES_TAG])
        except ValueError:
            reasons.append(f"tag {EXPIRES_TAG} {tags[EXPIRES_TAG]!r} is not an ISO-8601 time")
    if deadline is not None:
        if deadline <= utc(now):
            reasons.append(f"tag {EXPIRES_TAG} {iso(deadline)} is already past")
        elif deadline - utc(now) > timedelta(minutes=bg.max_duration_minutes):
            reasons.append(f"tag {EXPIRES_TAG} {iso(deadline)} is more than {where}.max_duration_minutes "
                           f"({bg.max_duration_minutes}) away")
    if len(added) != 1:
        reasons.append(f"the change adds {len(added)} principals ({', '.join(added) or 'none'}); an activation adds exactly one")
    elif not ROLE_OR_USER_ARN.match(added[0]):
        reasons.append(f"the added principal {added[0]!r} is not an IAM role or user ARN")
    elif caller.principal and added[0] in (caller.principal, caller.arn):
        reasons.append("the approver opened the role to their own principal")
    if reasons or deadline is None or approver is None:
        return None, reasons
    extra = {k: v for k, v in tags.items() if k in bg.required_approval_tags}
    return ConsoleApproval(approver, ticket, deadline, added[0], extra), []


def is_managed(policy_name: str) -> bool:
    """Inline policies Stagewarden writes on break-glass roles (and keeps a copy of, to put back)."""
    return policy_name in (DEADLINE_POLICY, REVOKE_POLICY) or policy_name.startswith(DENY_SESSION_PREFIX)
