"""Containment actions of the exfiltration function: typed, with the IAM actions each needs.

Every action reverts or fences off what an event opened; none deletes data. The detector
decides them, :class:`stage_policy.executor.Executor` carries them out (or, in dry run,
describes them) and records each in the audit ledger.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

from exfil.rules import RuleContext, as_list, external_statements

from stage_policy.actions import Action, Clients
from stage_policy.errors import is_code

REVOKE_POLICY_NAME = "StagewardenRevokeOlderSessions"
DENY_SESSION_PREFIX = "StagewardenDenySession-"


@dataclass(frozen=True)
class DenySession(Action):
    """Deny everything to one session of a shared role; its colleagues keep working.

    An inline policy on the role, one per session (so containing a second session never
    overwrites the first): ``Deny *`` where ``aws:userid`` is ``<role id>:<session name>``
    (what IAM sets for every request of that session, and again for the same session name
    after a re-assume), and a second statement on ``aws:SourceIdentity`` when the session
    carries one (it survives role chaining and a new session name). For EC2 instance
    credentials (``perimeter``) the deny applies only outside the organisation's networks
    and VPC endpoints, so the instance keeps working while its stolen credentials do not.
    """

    kind: ClassVar[str] = "deny-session"
    permissions: ClassVar[tuple[str, ...]] = ("iam:PutRolePolicy",)
    cap: ClassVar[str] = "revocations"

    role_id: str = ""
    session: str = ""
    source_identity: str | None = None
    perimeter: tuple[str, ...] | None = None  # allowed CIDRs: deny only outside them and outside VPC endpoints

    @property
    def userid(self) -> str:
        return f"{self.role_id}:{self.session}"

    @property
    def policy_name(self) -> str:
        digest = hashlib.sha256(f"{self.userid}|{self.source_identity or ''}".encode()).hexdigest()[:16]
        return DENY_SESSION_PREFIX + digest

    def document(self) -> dict[str, Any]:
        condition: dict[str, Any] = {"StringEquals": {"aws:userid": self.userid}}
        if self.perimeter is not None:
            condition["Null"] = {"aws:SourceVpce": "true"}
            condition["Bool"] = {"aws:ViaAWSService": "false"}
            if self.perimeter:
                condition["NotIpAddress"] = {"aws:SourceIp": list(self.perimeter)}
        statements = [{"Sid": "DenySession", "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": condition}]
        if self.source_identity:
            statements.append({"Sid": "DenySourceIdentity", "Effect": "Deny", "Action": "*", "Resource": "*",
                               "Condition": {"StringEquals": {"aws:SourceIdentity": self.source_identity}}})
        return {"Version": "2012-10-17", "Statement": statements}

    def identity(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.target, self.userid, self.source_identity)

    def _what(self) -> str:
        where = " outside the organisation's networks and VPC endpoints" if self.perimeter is not None else ""
        also = f", aws:SourceIdentity = {self.source_identity}" if self.source_identity else ""
        return f"session {self.session} of role {self.target}{where} (inline policy {self.policy_name}: aws:userid = {self.userid}{also})"

    def describe(self) -> str:
        return "deny " + self._what()

    def apply(self, clients: Clients) -> str:
        clients("iam").put_role_policy(RoleName=self.target, PolicyName=self.policy_name, PolicyDocument=json.dumps(self.document()))
        return "denied " + self._what()


@dataclass(frozen=True)
class RevokeSessions(Action):
    """Deny everything to sessions of the role issued before now (the AWS console's "revoke active sessions")."""

    kind: ClassVar[str] = "revoke-sessions"
    permissions: ClassVar[tuple[str, ...]] = ("iam:PutRolePolicy",)
    cap: ClassVar[str] = "revocations"

    role_arn: str = ""

    def describe(self) -> str:
        return f"revoke sessions of role {self.target} issued before now (inline deny on aws:TokenIssueTime)"

    def apply(self, clients: Clients) -> str:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        document = {"Version": "2012-10-17", "Statement": [{
            "Sid": REVOKE_POLICY_NAME, "Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": now}},
        }]}
        clients("iam").put_role_policy(RoleName=self.target, PolicyName=REVOKE_POLICY_NAME, PolicyDocument=json.dumps(document))
        return f"revoked sessions of role {self.target} issued before {now}"


@dataclass(frozen=True)
class RevertBucketPolicy(Action):
    """Remove the statements that grant principals outside the organisation; keep the rest."""

    kind: ClassVar[str] = "revert-bucket-policy"
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy")

    inside: tuple[str, ...] = ()
    org_id: str | None = None
    vpc_endpoints: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"remove the external statements from the bucket policy of {self.target}"

    def apply(self, clients: Clients) -> str:
        s3 = clients("s3")
        try:
            current = json.loads(s3.get_bucket_policy(Bucket=self.target)["Policy"])
        except Exception as exc:
            if is_code(exc, "NoSuchBucketPolicy"):
                return f"bucket policy of {self.target} is already gone"
            raise
        ctx = RuleContext(self.inside, self.org_id, frozenset(self.vpc_endpoints))
        bad = [st for st, _ in external_statements(current, set(self.inside), ctx)]
        if not bad:
            return f"bucket policy of {self.target} no longer grants external access"
        kept = [st for st in as_list(current.get("Statement")) if st not in bad]  # one object or a list
        if kept:
            s3.put_bucket_policy(Bucket=self.target, Policy=json.dumps({**current, "Statement": kept}))
        else:
            s3.delete_bucket_policy(Bucket=self.target)
        return f"removed {len(bad)} external statement(s) from the bucket policy of {self.target} ({len(kept)} kept)"


@dataclass(frozen=True)
class RevertBucketAcl(Action):
    kind: ClassVar[str] = "revert-bucket-acl"
    permissions: ClassVar[tuple[str, ...]] = ("s3:PutBucketAcl",)

    def describe(self) -> str:
        return f"reset the ACL of {self.target} to private (owner only)"

    def apply(self, clients: Clients) -> str:
        clients("s3").put_bucket_acl(Bucket=self.target, ACL="private")
        return f"reset the ACL of {self.target} to private"


@dataclass(frozen=True)
class RevertReplication(Action):
    kind: ClassVar[str] = "revert-replication"
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetReplicationConfiguration", "s3:PutReplicationConfiguration")

    destinations: tuple[str, ...] = ()  # destination bucket ARNs outside the organisation's stages

    def describe(self) -> str:
        return f"remove replication rules of {self.target} to {', '.join(self.destinations)[:300]}"

    def apply(self, clients: Clients) -> str:
        from stage_policy.mapping import bucket_name

        s3 = clients("s3")
        config = s3.get_bucket_replication(Bucket=self.target)["ReplicationConfiguration"]
        outside = {bucket_name(d) for d in self.destinations}
        kept = [r for r in config.get("Rules", []) if bucket_name(str((r.get("Destination") or {}).get("Bucket") or "")) not in outside]
        if kept:
            s3.put_bucket_replication(Bucket=self.target, ReplicationConfiguration={**config, "Rules": kept})
        else:
            s3.delete_bucket_replication(Bucket=self.target)  # IAM action: s3:PutReplicationConfiguration
        return f"removed {len(config.get('Rules', [])) - len(kept)} external replication rule(s) from {self.target}"


@dataclass(frozen=True)
class _Unshare(Action):
    accounts: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.kind.replace('-', ' ')} {self.target} from {', '.join(self.accounts)}"


@dataclass(frozen=True)
class UnshareSnapshot(_Unshare):
    kind: ClassVar[str] = "unshare-snapshot"
    permissions: ClassVar[tuple[str, ...]] = ("ec2:ModifySnapshotAttribute",)

    def apply(self, clients: Clients) -> str:
        users = [a for a in self.accounts if a.lower() != "all"]
        kwargs: dict[str, Any] = {"UserIds": users} if users else {}
        if len(users) != len(self.accounts):
            kwargs["GroupNames"] = ["all"]
        clients("ec2").modify_snapshot_attribute(SnapshotId=self.target, Attribute="createVolumePermission",
                                                 OperationType="remove", **kwargs)
        return f"removed create-volume permission on {self.target} for {', '.join(self.accounts)}"


@dataclass(frozen=True)
class UnshareImage(_Unshare):
    kind: ClassVar[str] = "unshare-image"
    permissions: ClassVar[tuple[str, ...]] = ("ec2:ModifyImageAttribute",)

    def apply(self, clients: Clients) -> str:
        remove = [{"Group": "all"} if a.lower() == "all" else {"UserId": a} for a in self.accounts]
        clients("ec2").modify_image_attribute(ImageId=self.target, LaunchPermission={"Remove": remove})
        return f"removed launch permission on {self.target} for {', '.join(self.accounts)}"


@dataclass(frozen=True)
class UnshareDbSnapshot(_Unshare):
    kind: ClassVar[str] = "unshare-db-snapshot"
    permissions: ClassVar[tuple[str, ...]] = ("rds:ModifyDBSnapshotAttribute",)

    def apply(self, clients: Clients) -> str:
        clients("rds").modify_db_snapshot_attribute(DBSnapshotIdentifier=self.target, AttributeName="restore",
                                                    ValuesToRemove=list(self.accounts))
        return f"removed restore permission on {self.target} for {', '.join(self.accounts)}"


@dataclass(frozen=True)
class UnshareDbClusterSnapshot(_Unshare):
    kind: ClassVar[str] = "unshare-db-cluster-snapshot"
    permissions: ClassVar[tuple[str, ...]] = ("rds:ModifyDBClusterSnapshotAttribute",)

    def apply(self, clients: Clients) -> str:
        clients("rds").modify_db_cluster_snapshot_attribute(DBClusterSnapshotIdentifier=self.target, AttributeName="restore",
                                                            ValuesToRemove=list(self.accounts))
        return f"removed restore permission on {self.target} for {', '.join(self.accounts)}"


ACTIONS: tuple[type[Action], ...] = (DenySession, RevokeSessions, RevertBucketPolicy, RevertBucketAcl, RevertReplication,
                                     UnshareSnapshot, UnshareImage, UnshareDbSnapshot, UnshareDbClusterSnapshot)
_BY_KIND = {cls.kind: cls for cls in ACTIONS}


def from_undo(undo: dict[str, Any], ctx: RuleContext | None = None) -> Action:
    """The action that reverts what a single-event rule found (``Verdict.undo``)."""
    cls = _BY_KIND[undo["kind"]]
    target = undo.get("bucket") or undo["target"]
    if cls is RevertBucketPolicy:
        return RevertBucketPolicy(target, inside=tuple(undo.get("inside", ())), org_id=ctx.org_id if ctx else None,
                                  vpc_endpoints=tuple(sorted(ctx.vpc_endpoints)) if ctx else ())
    if cls is RevertReplication:
        return RevertReplication(target, destinations=tuple(undo.get("destinations", ())))
    if issubclass(cls, _Unshare):
        return cls(target, accounts=tuple(undo.get("accounts", ())))
    return cls(target)
