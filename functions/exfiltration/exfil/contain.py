"""Who may be contained, and how: the session by default, the whole role where a stage says so.

Never contained (alert only, the finding says why): identities that are not role sessions
(IAM users, root: a person must act), roles in another account than the one Stagewarden
runs in (an organisation trail: contain there), service-linked roles, the stack's own
roles, break-glass roles (mapped to a stage whose ``break_glass.allowed`` is true) and
``organization.protected_roles``.
"""

from __future__ import annotations

from exfil.actions import DenySession, RevokeSessions
from exfil.deployment import Deployment
from exfil.records import Identity

from stage_policy.actions import Action
from stage_policy.mapping import stage_for_role
from stage_policy.model import Policy


def protected_reason(ident: Identity, policy: Policy, deployment: Deployment) -> str | None:
    role, arn = ident.role_name or "", ident.role_arn or ""
    if "/aws-service-role/" in arn or role.startswith("AWSServiceRoleFor"):
        return f"role {role} is a service-linked role"
    if deployment.owns(role):
        return f"role {role} is one of Stagewarden's own"
    mapped = stage_for_role(policy, role).stage
    glass = policy.stages[mapped].break_glass if mapped in policy.stages else None
    if glass is not None and glass.allowed:
        return f"role {role} is a break-glass role (mapped to {mapped}, whose break_glass.allowed is true)"
    if policy.organization.is_protected_role(role, arn):
        return f"role {role} is listed in organization.protected_roles"
    return None


def containment(ident: Identity, stage: str, policy: Policy, deployment: Deployment, *,
                perimeter: bool = False) -> tuple[list[Action], str]:
    """The containment actions for ``ident`` on ``stage``, or none and why (the finding's action)."""
    if ident.role_name is None or ident.session is None:
        return [], f"alert only: {ident.kind} {ident.principal} is not a role session (not contained automatically)"
    if deployment.account and ident.account and ident.account != deployment.account:
        return [], (f"alert only: role {ident.role_name} is in account {ident.account}, not this account "
                    f"({deployment.account}); contain it in its own account")
    reason = protected_reason(ident, policy, deployment)
    if reason:
        return [], f"alert only: {reason}; never contained"
    if policy.stages[stage].exfiltration.containment == "role" and not perimeter:
        return [RevokeSessions(ident.role_name, role_arn=ident.role_arn or "")], ""
    if not ident.role_id:
        return [], f"alert only: the session's role id is not in the record (needed for aws:userid); role {ident.role_name}"
    cidrs = policy.organization.allowed_cidrs if perimeter else None
    return [DenySession(ident.role_name, role_id=ident.role_id, session=ident.session,
                        source_identity=ident.source_identity, perimeter=cidrs)], ""
