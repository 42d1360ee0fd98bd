"""What the break-glass function changes in IAM and Scheduler, as typed actions with the IAM actions each needs.

Two kinds, told apart by ``remediation``:

* **Grant bookkeeping** (``remediation = False``): opening an approved grant and closing it again
  (restore the baseline, remove what the grant added, revoke its sessions, verify). These run in
  every mode: a grant Stagewarden opened must close even where the policy says ``dry_run``.
* **Remediation** (``remediation = True``): reverting an unapproved change, denying an unapproved
  session. Only in ``enforce``; in ``dry_run`` the finding says what would have been done.

Every target is the role name (or the schedule name), so the audit ledger names what was touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from warden.rules import canonical, parse_time, statements

from stage_policy.actions import Action, Clients
from stage_policy.errors import is_code


def _doc(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    from urllib.parse import unquote

    return json.loads(unquote(str(value)))


# ------------------------------------------------------------------ trust
@dataclass(frozen=True)
class SetTrust(Action):
    """Write the role's trust policy (``document`` is JSON text: frozen actions hold no mutable values)."""

    kind: ClassVar[str] = "set-trust"
    permissions: ClassVar[tuple[str, ...]] = ("iam:UpdateAssumeRolePolicy",)
    remediation: ClassVar[bool] = False

    document: str = "{}"
    why: str = "open the grant"

    def describe(self) -> str:
        return f"set the trust policy of role {self.target} ({self.why})"

    def apply(self, clients: Clients) -> str:
        clients("iam").update_assume_role_policy(RoleName=self.target, PolicyDocument=self.document)
        return f"set the trust policy of role {self.target} ({self.why})"


@dataclass(frozen=True)
class RevertTrust(SetTrust):
    """An unapproved trust change, put back to what it should be (baseline, plus an open grant's statement)."""

    kind: ClassVar[str] = "revert-trust"
    remediation: ClassVar[bool] = True


# ------------------------------------------------------------------ tags
@dataclass(frozen=True)
class TagRole(Action):
    kind: ClassVar[str] = "tag-role"
    permissions: ClassVar[tuple[str, ...]] = ("iam:TagRole",)
    remediation: ClassVar[bool] = False

    tags: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        return f"tag role {self.target} " + ", ".join(f"{k}={v}" for k, v in self.tags)

    def apply(self, clients: Clients) -> str:
        clients("iam").tag_role(RoleName=self.target, Tags=[{"Key": k, "Value": v} for k, v in self.tags])
        return f"tagged role {self.target} " + ", ".join(f"{k}={v}" for k, v in self.tags)


@dataclass(frozen=True)
class RetagRole(TagRole):
    """Put back the tags of the open grant that someone overwrote."""

    kind: ClassVar[str] = "retag-role"
    remediation: ClassVar[bool] = True


@dataclass(frozen=True)
class UntagRole(Action):
    kind: ClassVar[str] = "untag-role"
    permissions: ClassVar[tuple[str, ...]] = ("iam:UntagRole",)
    remediation: ClassVar[bool] = False

    keys: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"remove tags {', '.join(self.keys)} from role {self.target}"

    def apply(self, clients: Clients) -> str:
        clients("iam").untag_role(RoleName=self.target, TagKeys=list(self.keys))
        return f"removed tags {', '.join(self.keys)} from role {self.target}"


@dataclass(frozen=True)
class RemoveApprovalTags(UntagRole):
    """Approval tags nobody approved (``tag yourself approved``), removed."""

    kind: ClassVar[str] = "remove-approval-tags"
    remediation: ClassVar[bool] = True


# ------------------------------------------------------------------ inline and managed policies
@dataclass(frozen=True)
class PutInlinePolicy(Action):
    kind: ClassVar[str] = "put-inline-policy"
    permissions: ClassVar[tuple[str, ...]] = ("iam:PutRolePolicy",)
    remediation: ClassVar[bool] = False

    name: str = ""
    document: str = "{}"

    def describe(self) -> str:
        return f"put inline policy {self.name} on role {self.target}"

    def apply(self, clients: Clients) -> str:
        clients("iam").put_role_policy(RoleName=self.target, PolicyName=self.name, PolicyDocument=self.document)
        return f"put inline policy {self.name} on role {self.target}"



@dataclass(frozen=True)
class RestoreInlinePolicy(PutInlinePolicy):
    """Stagewarden's own inline policy (deadline, revocation), put back after someone changed or deleted it."""

    kind: ClassVar[str] = "restore-inline-policy"
    remediation: ClassVar[bool] = True


@dataclass(frozen=True)
class DeleteInlinePolicy(Action):
    kind: ClassVar[str] = "delete-inline-policy"
    permissions: ClassVar[tuple[str, ...]] = ("iam:DeleteRolePolicy",)
    remediation: ClassVar[bool] = False

    name: str = ""

    def describe(self) -> str:
        return f"delete inline policy {self.name} from role {self.target}"

    def apply(self, clients: Clients) -> str:
        try:
            clients("iam").delete_role_policy(RoleName=self.target, PolicyName=self.name)
        except Exception as exc:
            if is_code(exc, "NoSuchEntity"):
                return f"inline policy {self.name} of role {self.target} is already gone"
            raise
        return f"deleted inline policy {self.name} from role {self.target}"



@dataclass(frozen=True)
class RevertInlinePolicy(DeleteInlinePolicy):
    """An inline policy put on a break-glass role without approval, deleted."""

    kind: ClassVar[str] = "revert-inline-policy"
    remediation: ClassVar[bool] = True


@dataclass(frozen=True)
class DetachPolicy(Action):
    """A managed policy attached to a break-glass role without approval, detached."""

    kind: ClassVar[str] = "detach-policy"
    permissions: ClassVar[tuple[str, ...]] = ("iam:DetachRolePolicy",)
    remediation: ClassVar[bool] = True

    policy_arn: str = ""

    def describe(self) -> str:
        return f"detach {self.policy_arn} from role {self.target}"

    def apply(self, clients: Clients) -> str:
        try:
            clients("iam").detach_role_policy(RoleName=self.target, PolicyArn=self.policy_arn)
        except Exception as exc:
            if is_code(exc, "NoSuchEntity"):
                return f"{self.policy_arn} is no longer attached to role {self.target}"
            raise
        return f"detached {self.policy_arn} from role {self.target}"



# ------------------------------------------------------------------ sessions
@dataclass(frozen=True)
class RevokeRoleSessions(PutInlinePolicy):
    """Every session of the role issued before ``name``'s document's time is denied (closing a grant)."""

    kind: ClassVar[str] = "revoke-sessions"

    def describe(self) -> str:
        return f"revoke sessions of role {self.target} issued before {self._before()} (inline deny on aws:TokenIssueTime)"

    def apply(self, clients: Clients) -> str:
        super().apply(clients)
        return f"revoked sessions of role {self.target} issued before {self._before()}"

    def _before(self) -> str:
        st = statements(json.loads(self.document))
        return st[0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"] if st else "?"


@dataclass(frozen=True)
class DenySession(PutInlinePolicy):
    """One unapproved session (``aws:userid``) denied in its own inline policy; the role's other sessions untouched."""

    kind: ClassVar[str] = "deny-session"
    remediation: ClassVar[bool] = True
    cap: ClassVar[str] = "revocations"

    session_id: str = ""

    def describe(self) -> str:
        return f"deny session {self.session_id} of role {self.target} (inline policy {self.name} on aws:userid)"

    def apply(self, clients: Clients) -> str:
        super().apply(clients)
        return f"denied session {self.session_id} of role {self.target} (inline policy {self.name})"


# ------------------------------------------------------------------ schedules
@dataclass(frozen=True)
class ScheduleExpiry(Action):
    """A one-time EventBridge Scheduler schedule at the deadline, named after the grant: a second create
    conflicts (``ConflictException``) instead of scheduling a second expiry."""

    kind: ClassVar[str] = "schedule-expiry"
    permissions: ClassVar[tuple[str, ...]] = ("scheduler:CreateSchedule", "iam:PassRole")
    remediation: ClassVar[bool] = False

    group: str = "default"
    at: str = ""  # ISO
    function_arn: str = ""
    role_arn: str = ""
    payload: str = "{}"
    dead_letter_arn: str = ""

    def describe(self) -> str:
        return f"schedule the expiry {self.group}/{self.target} at {self.at}"

    def apply(self, clients: Clients) -> str:
        target: dict[str, Any] = {"Arn": self.function_arn, "RoleArn": self.role_arn, "Input": self.payload,
                                  "RetryPolicy": {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 20}}
        if self.dead_letter_arn:
            target["DeadLetterConfig"] = {"Arn": self.dead_letter_arn}
        try:
            clients("scheduler").create_schedule(
                Name=self.target, GroupName=self.group, ScheduleExpression=f"at({self.at.rstrip('Z')})",
                ScheduleExpressionTimezone="UTC", FlexibleTimeWindow={"Mode": "OFF"}, Target=target,
                ActionAfterCompletion="DELETE", Description=f"Stagewarden: expire break-glass grant at {self.at}")
        except Exception as exc:
            if is_code(exc, "ConflictException"):
                return f"expiry {self.group}/{self.target} was already scheduled (not scheduled twice)"
            raise
        return f"scheduled the expiry {self.group}/{self.target} at {self.at}"


@dataclass(frozen=True)
class DeleteSchedule(Action):
    kind: ClassVar[str] = "delete-schedule"
    permissions: ClassVar[tuple[str, ...]] = ("scheduler:DeleteSchedule",)
    remediation: ClassVar[bool] = False

    group: str = "default"

    def describe(self) -> str:
        return f"delete the expiry schedule {self.group}/{self.target}"

    def apply(self, clients: Clients) -> str:
        try:
            clients("scheduler").delete_schedule(Name=self.target, GroupName=self.group)
        except Exception as exc:
            if is_code(exc, "ResourceNotFoundException"):
                return f"expiry schedule {self.group}/{self.target} is gone (fired and deleted itself, or never made)"
            raise
        return f"deleted the expiry schedule {self.group}/{self.target}"


# ------------------------------------------------------------------ verification
@dataclass(frozen=True)
class VerifyClosed(Action):
    """Read the role back: baseline trust, none of the grant's policies or tags, sessions revoked. Raises if not."""

    kind: ClassVar[str] = "verify-closed"
    permissions: ClassVar[tuple[str, ...]] = ("iam:GetRole", "iam:GetRolePolicy")
    remediation: ClassVar[bool] = False

    baseline: str = "{}"
    removed_policies: tuple[str, ...] = ()
    removed_tags: tuple[tuple[str, str], ...] = ()
    revoke_policy: str = ""
    revoked_before: str = ""

    def describe(self) -> str:
        return f"verify that role {self.target} is back to its baseline with its sessions revoked"

    def apply(self, clients: Clients) -> str:
        iam = clients("iam")
        role = iam.get_role(RoleName=self.target)["Role"]
        problems = []
        if canonical(_doc(role["AssumeRolePolicyDocument"])) != canonical(json.loads(self.baseline)):
            problems.append("the trust policy is not the baseline")
        tags = {t["Key"]: t["Value"] for t in role.get("Tags", [])}
        left = [k for k, v in self.removed_tags if tags.get(k) == v]
        if left:
            problems.append(f"tags still set: {', '.join(left)}")
        for name in self.removed_policies:
            try:
                iam.get_role_policy(RoleName=self.target, PolicyName=name)
                problems.append(f"inline policy {name} is still there")
            except Exception as exc:
                if not is_code(exc, "NoSuchEntity"):
                    raise
        try:
            revoke = _doc(iam.get_role_policy(RoleName=self.target, PolicyName=self.revoke_policy)["PolicyDocument"])
            before = statements(revoke)[0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
            if parse_time(before) < parse_time(self.revoked_before):
                problems.append(f"sessions are revoked only before {before}")
        except Exception as exc:
            if not is_code(exc, "NoSuchEntity"):
                raise
            problems.append(f"inline policy {self.revoke_policy} is missing")
        if problems:
            raise RuntimeError(f"role {self.target} read back wrong: " + "; ".join(problems))
        return f"verified role {self.target}: baseline trust, grant removed, sessions before {self.revoked_before} revoked"


ACTIONS: tuple[type[Action], ...] = (
    SetTrust, RevertTrust, TagRole, RetagRole, UntagRole, RemoveApprovalTags, PutInlinePolicy, RestoreInlinePolicy,
    DeleteInlinePolicy, RevertInlinePolicy, DetachPolicy, RevokeRoleSessions, DenySession, ScheduleExpiry, DeleteSchedule,
    VerifyClosed,
)

