"""The AWS calls of the exfiltration function, one small class per concern (boto3 clients injected)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, BinaryIO

from exfil.engine import Action, WindowState, merge_state
from exfil.rules import external_statements

REVOKE_POLICY_NAME = "StagewardenRevokeOlderSessions"


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)


class LogFileSource:
    permissions = ("s3:GetObject",)

    def __init__(self, s3: Any):
        self._s3 = s3

    def open(self, bucket: str, key: str) -> BinaryIO:
        """The object's body as a stream: the reader pulls 1 MiB at a time, nothing is loaded whole."""
        return self._s3.get_object(Bucket=bucket, Key=key)["Body"]


class DynamoWindowStore:
    """Sliding windows in the state table: one item and one conditional write per (stage, principal) per file."""

    permissions = ("dynamodb:GetItem", "dynamodb:PutItem")

    def __init__(self, ddb: Any, table: str, retries: int = 5):
        self._ddb, self._table, self._retries = ddb, table, retries
        self.writes = 0

    def merge(self, stage: str, principal: str, minutes: dict[int, list[int]], families: dict[str, int],
              keep_after: int) -> WindowState:
        key = {"pk": {"S": f"exfil#window#{stage}#{principal}"}, "sk": {"S": "window"}}
        for _ in range(self._retries):
            item = self._ddb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
            old, version = _decode(item)
            state = merge_state(old, minutes, families, keep_after)
            newest = max(state.minutes, default=keep_after)
            body = {
                "minutes": {"S": json.dumps({str(m): v for m, v in state.minutes.items()}, separators=(",", ":"))},
                "families": {"S": json.dumps(state.families, separators=(",", ":"))},
                "first_seen": {"N": str(state.first_seen)},
                "version": {"N": str(version + 1)},
                # windows are perishable; learned client families live for a learning period past the last read
                "expires_at": {"N": str((newest + 400 * 1440) * 60)},
            }
            try:
                self.writes += 1
                self._ddb.put_item(
                    TableName=self._table, Item={**key, **body},
                    ConditionExpression="attribute_not_exists(pk) OR version = :v",
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                )
                return state
            except Exception as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
        raise RuntimeError(f"window {stage}/{principal}: too much contention ({self._retries} conflicting writes)")


def _decode(item: dict[str, Any] | None) -> tuple[WindowState | None, int]:
    if not item:
        return None, 0
    minutes = {int(m): v for m, v in json.loads(item["minutes"]["S"]).items()}
    state = WindowState(minutes, json.loads(item["families"]["S"]), int(item["first_seen"]["N"]))
    return state, int(item["version"]["N"])


class FileLedger:
    """Which log files are done, so a redelivered event neither re-counts nor re-alerts."""

    permissions = ("dynamodb:GetItem", "dynamodb:PutItem")

    def __init__(self, ddb: Any, table: str, keep_days: int = 14):
        self._ddb, self._table, self._keep = ddb, table, keep_days

    def _key(self, bucket: str, key: str, etag: str) -> dict[str, Any]:
        return {"pk": {"S": f"exfil#file#{bucket}/{key}"}, "sk": {"S": etag or "-"}}

    def done(self, bucket: str, key: str, etag: str) -> bool:
        return "Item" in self._ddb.get_item(TableName=self._table, Key=self._key(bucket, key, etag))

    def mark(self, bucket: str, key: str, etag: str, records: int) -> None:
        now = int(datetime.now(timezone.utc).timestamp())
        self._ddb.put_item(TableName=self._table, Item={
            **self._key(bucket, key, etag), "records": {"N": str(records)}, "expires_at": {"N": str(now + self._keep * 86400)},
        })


class GrantLookup:
    """Is there an active break-glass grant for this principal (items written by the break-glass function)?"""

    permissions = ("dynamodb:GetItem",)

    def __init__(self, ddb: Any, table: str):
        self._ddb, self._table = ddb, table
        self._cache: dict[str, int] = {}

    def active(self, principal: str, when: str) -> bool:
        role = principal.rsplit("/", 1)[-1]
        if role not in self._cache:
            item = self._ddb.get_item(TableName=self._table, Key={"pk": {"S": f"breakglass#grant#{role}"}, "sk": {"S": "grant"}}).get("Item")
            self._cache[role] = int(item["expires_at"]["N"]) if item else 0
        try:
            at = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return False
        return at < self._cache[role]


class AuditLog:
    """Every containment action carried out, in the audit ledger (never expires)."""

    permissions = ("dynamodb:PutItem",)

    def __init__(self, ddb: Any, table: str):
        self._ddb, self._table = ddb, table

    def record(self, rule: str, dedup_key: str, action: str, result: str) -> None:
        now = datetime.now(timezone.utc)
        self._ddb.put_item(TableName=self._table, Item={
            "pk": {"S": f"audit#{now:%Y-%m-%d}"}, "sk": {"S": f"{now.isoformat()}#{dedup_key}"},
            "rule": {"S": rule}, "action": {"S": action}, "result": {"S": result},
        })


class Containment:
    """Carries out containment actions, capped per run. Never deletes data; every change is reversible."""

    permissions = (
        "iam:PutRolePolicy",
        "s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutBucketAcl",
        "s3:GetReplicationConfiguration", "s3:PutReplicationConfiguration",
        "ec2:ModifySnapshotAttribute", "ec2:ModifyImageAttribute",
        "rds:ModifyDBSnapshotAttribute", "rds:ModifyDBClusterSnapshotAttribute",
    )

    def __init__(self, clients: Any, max_revocations: int, protected_roles: tuple[str, ...] = ()):
        self._client = clients  # callable: service name -> boto3 client
        self._left = max_revocations
        self._protected = protected_roles

    def carry_out(self, action: Action) -> str:
        try:
            return getattr(self, "_" + action.kind.replace("-", "_"))(action)
        except Exception as exc:  # a failed containment is reported in the finding, never hidden
            return f"FAILED {action.kind} {action.target}: {_code(exc)}: {exc}"

    def _revoke_sessions(self, action: Action) -> str:
        arn = action.params.get("role_arn", "")
        if "/aws-service-role/" in arn or action.target in self._protected:
            return f"skipped revoking {action.target}: protected role"
        if self._left <= 0:
            return f"skipped revoking {action.target}: max_revocations_per_run reached"
        self._left -= 1
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        document = {"Version": "2012-10-17", "Statement": [{
            "Sid": "StagewardenRevokeOlderSessions", "Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": now}},
        }]}
        self._client("iam").put_role_policy(RoleName=action.target, PolicyName=REVOKE_POLICY_NAME, PolicyDocument=json.dumps(document))
        return f"revoked sessions of role {action.target} issued before {now}"

    def _revert_bucket_policy(self, action: Action) -> str:
        s3 = self._client("s3")
        try:
            current = json.loads(s3.get_bucket_policy(Bucket=action.target)["Policy"])
        except Exception as exc:
            if _code(exc) == "NoSuchBucketPolicy":
                return f"bucket policy of {action.target} is already gone"
            raise
        inside = set(action.params.get("inside", ()))
        bad = [st for st, _ in external_statements(current, inside)]
        if not bad:
            return f"bucket policy of {action.target} no longer grants external access"
        kept = [st for st in current.get("Statement", []) if st not in bad]
        if kept:
            s3.put_bucket_policy(Bucket=action.target, Policy=json.dumps({**current, "Statement": kept}))
        else:
            s3.delete_bucket_policy(Bucket=action.target)
        return f"removed {len(bad)} external statement(s) from the bucket policy of {action.target} ({len(kept)} kept)"

    def _revert_bucket_acl(self, action: Action) -> str:
        self._client("s3").put_bucket_acl(Bucket=action.target, ACL="private")
        return f"reset the ACL of {action.target} to private"

    def _revert_replication(self, action: Action) -> str:
        s3 = self._client("s3")
        config = s3.get_bucket_replication(Bucket=action.target)["ReplicationConfiguration"]
        accounts = set(action.params.get("accounts", ()))
        kept = [r for r in config.get("Rules", []) if (r.get("Destination") or {}).get("Account") not in accounts]
        if kept:
            s3.put_bucket_replication(Bucket=action.target, ReplicationConfiguration={**config, "Rules": kept})
        else:
            s3.delete_bucket_replication(Bucket=action.target)
        return f"removed {len(config.get('Rules', [])) - len(kept)} external replication rule(s) from {action.target}"

    def _unshare_snapshot(self, action: Action) -> str:
        users = [a for a in action.params["accounts"] if a.lower() != "all"]
        kwargs: dict[str, Any] = {"UserIds": users} if users else {}
        if len(users) != len(action.params["accounts"]):
            kwargs["GroupNames"] = ["all"]
        self._client("ec2").modify_snapshot_attribute(SnapshotId=action.target, Attribute="createVolumePermission",
                                                       OperationType="remove", **kwargs)
        return f"removed create-volume permission on {action.target} for {', '.join(action.params['accounts'])}"

    def _unshare_image(self, action: Action) -> str:
        remove = [{"Group": "all"} if a.lower() == "all" else {"UserId": a} for a in action.params["accounts"]]
        self._client("ec2").modify_image_attribute(ImageId=action.target, LaunchPermission={"Remove": remove})
        return f"removed launch permission on {action.target} for {', '.join(action.params['accounts'])}"

    def _unshare_db_snapshot(self, action: Action) -> str:
        self._client("rds").modify_db_snapshot_attribute(DBSnapshotIdentifier=action.target, AttributeName="restore",
                                                         ValuesToRemove=action.params["accounts"])
        return f"removed restore permission on {action.target} for {', '.join(action.params['accounts'])}"

    def _unshare_db_cluster_snapshot(self, action: Action) -> str:
        self._client("rds").modify_db_cluster_snapshot_attribute(DBClusterSnapshotIdentifier=action.target, AttributeName="restore",
                                                                 ValuesToRemove=action.params["accounts"])
        return f"removed restore permission on {action.target} for {', '.join(action.params['accounts'])}"
