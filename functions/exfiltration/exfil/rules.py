"""Single-event rules: data-opening changes and audit tampering. Pure: a record in, a verdict out."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_ACCOUNT = re.compile(r"(?<!\d)(\d{12})(?!\d)")
# conditions that pin a "*" principal to the organisation, an account or a network of its own
_SCOPING_KEYS = ("aws:principalorgid", "aws:principalaccount", "aws:sourceaccount", "aws:sourcevpce", "aws:sourcevpc",
                 "aws:principalorgpaths", "aws:sourceorgid")
_PUBLIC_GROUPS = ("/global/AllUsers", "/global/AuthenticatedUsers")


@dataclass
class Verdict:
    """What a single-event rule found. ``undo`` says how to revert it (for containment)."""

    rule: str
    severity: str
    resource: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    undo: dict[str, Any] | None = None
    bucket: str | None = None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def accounts_in(value: Any) -> set[str]:
    return set(_ACCOUNT.findall(value if isinstance(value, str) else json.dumps(value)))


def inside_accounts(record: dict[str, Any], org_accounts: tuple[str, ...]) -> set[str]:
    """The organisation's accounts; without a list, the account the event happened in."""
    if org_accounts:
        return set(org_accounts)
    own = {record.get("recipientAccountId"), (record.get("userIdentity") or {}).get("accountId")}
    return {a for a in own if a}


def _load_policy(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        try:
            doc = json.loads(value)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None
    return None


def external_statements(policy: dict[str, Any], inside: set[str]) -> list[tuple[dict[str, Any], list[str]]]:
    """Allow statements whose principals reach outside ``inside``: (statement, the external principals)."""
    found = []
    for st in _as_list(policy.get("Statement")):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        principal = st.get("Principal")
        candidates: list[str] = []
        if principal == "*":
            candidates = ["*"]
        elif isinstance(principal, dict):
            for kind in ("AWS", "CanonicalUser", "Federated"):
                candidates += [str(p) for p in _as_list(principal.get(kind))]
            # {"Service": "cloudtrail.amazonaws.com"}: an AWS service acting for this account, not external
        external = []
        for p in candidates:
            if p == "*":
                cond = json.dumps(st.get("Condition") or {}).lower()
                if not any(key in cond for key in _SCOPING_KEYS):
                    external.append("*")
            elif p.startswith("arn:aws:iam::") or _ACCOUNT.fullmatch(p):
                if not accounts_in(p) <= inside:
                    external.append(p)
            elif p:  # canonical user IDs, federated providers: another identity store than the organisation's
                external.append(p)
        if external:
            found.append((st, external))
    return found


def bucket_policy(record: dict[str, Any], org_accounts: tuple[str, ...]) -> Verdict | None:
    rp = record.get("requestParameters") or {}
    bucket = rp.get("bucketName") or ""
    policy = _load_policy(rp.get("bucketPolicy") or rp.get("policy"))
    if policy is None:
        return None
    inside = inside_accounts(record, org_accounts)
    hits = external_statements(policy, inside)
    if not hits:
        return None
    principals = sorted({p for _, ps in hits for p in ps})
    public = "*" in principals
    return Verdict(
        rule="exfil.bucket-policy-external",
        severity="critical" if public else "high",
        resource=f"arn:aws:s3:::{bucket}",
        summary=f"Bucket policy on {bucket} grants {'everyone (*)' if public else ', '.join(principals)} access from outside the organisation.",
        evidence={"external_principals": principals, "statements": [st for st, _ in hits]},
        undo={"kind": "revert-bucket-policy", "bucket": bucket, "inside": sorted(inside)},
        bucket=bucket,
    )


def bucket_acl(record: dict[str, Any], org_accounts: tuple[str, ...]) -> Verdict | None:
    rp = record.get("requestParameters") or {}
    bucket = rp.get("bucketName") or ""
    grants: list[str] = []
    canned = str(rp.get("x-amz-acl") or "")
    if canned in ("public-read", "public-read-write", "authenticated-read"):
        grants.append(f"canned ACL {canned}")
    for header in ("x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp", "x-amz-grant-full-control"):
        value = str(rp.get(header) or "")
        if any(g in value for g in _PUBLIC_GROUPS) or "emailAddress" in value:
            grants.append(f"{header}: {value}")
    acp = rp.get("AccessControlPolicy") or {}
    owner = str(((acp.get("Owner") or {}).get("ID")) or "")
    for grant in _as_list((acp.get("AccessControlList") or {}).get("Grant")):
        grantee = (grant or {}).get("Grantee") or {}
        uri = str(grantee.get("URI") or "")
        gid = str(grantee.get("ID") or "")
        email = grantee.get("EmailAddress")
        if any(g in uri for g in _PUBLIC_GROUPS) or email or (gid and owner and gid != owner):
            grants.append(f"{grant.get('Permission')} to {uri or email or gid}")
    if not grants:
        return None
    return Verdict(
        rule="exfil.bucket-policy-external",
        severity="critical",
        resource=f"arn:aws:s3:::{bucket}",
        summary=f"Bucket ACL on {bucket} grants access outside the organisation ({'; '.join(grants)[:200]}).",
        evidence={"external_grants": grants},
        undo={"kind": "revert-bucket-acl", "bucket": bucket},
        bucket=bucket,
    )


def replication(record: dict[str, Any], org_accounts: tuple[str, ...]) -> Verdict | None:
    rp = record.get("requestParameters") or {}
    bucket = rp.get("bucketName") or ""
    config = rp.get("ReplicationConfiguration") or {}
    inside = inside_accounts(record, org_accounts)
    external = []
    for rule in _as_list(config.get("Rule")):
        dest = (rule or {}).get("Destination") or {}
        account = str(dest.get("Account") or "")
        if account and account not in inside:
            external.append({"rule_id": rule.get("ID"), "account": account, "bucket": dest.get("Bucket")})
    if not external:
        return None
    return Verdict(
        rule="exfil.replication-external",
        severity="high",
        resource=f"arn:aws:s3:::{bucket}",
        summary=f"Replication from {bucket} to account(s) {', '.join(sorted({e['account'] for e in external}))} outside the organisation.",
        evidence={"external_destinations": external},
        undo={"kind": "revert-replication", "bucket": bucket, "accounts": sorted({e["account"] for e in external})},
        bucket=bucket,
    )


def snapshot_share(record: dict[str, Any], org_accounts: tuple[str, ...]) -> Verdict | None:
    rp = record.get("requestParameters") or {}
    name = record.get("eventName")
    region, account = record.get("awsRegion", ""), record.get("recipientAccountId", "")
    inside = inside_accounts(record, org_accounts)
    if name == "ModifySnapshotAttribute":
        items = _as_list(((rp.get("createVolumePermission") or {}).get("add") or {}).get("items"))
        added = [str(i.get("userId") or i.get("group")) for i in items if isinstance(i, dict)]
        target, kind = rp.get("snapshotId", ""), "EBS snapshot"
        arn = f"arn:aws:ec2:{region}::snapshot/{target}"
        undo_kind = "unshare-snapshot"
    elif name == "ModifyImageAttribute":
        items = _as_list(((rp.get("launchPermission") or {}).get("add") or {}).get("items"))
        added = [str(i.get("userId") or i.get("group")) for i in items if isinstance(i, dict)]
        target, kind = rp.get("imageId", ""), "AMI"
        arn = f"arn:aws:ec2:{region}::image/{target}"
        undo_kind = "unshare-image"
    else:  # ModifyDBSnapshotAttribute / ModifyDBClusterSnapshotAttribute
        if str(rp.get("attributeName", "")).lower() != "restore":
            return None
        added = [str(v) for v in _as_list(rp.get("valuesToAdd"))]
        target = rp.get("dBSnapshotIdentifier") or rp.get("dBClusterSnapshotIdentifier") or ""
        cluster = name == "ModifyDBClusterSnapshotAttribute"
        kind = "RDS cluster snapshot" if cluster else "RDS snapshot"
        arn = f"arn:aws:rds:{region}:{account}:{'cluster-snapshot' if cluster else 'snapshot'}:{target}"
        undo_kind = "unshare-db-cluster-snapshot" if cluster else "unshare-db-snapshot"
    external = [a for a in added if a.lower() == "all" or a not in inside]
    if not external:
        return None
    public = any(a.lower() == "all" for a in external)
    return Verdict(
        rule="exfil.snapshot-share",
        severity="critical" if public else "high",
        resource=arn,
        summary=f"{kind} {target} shared with {'everyone (all)' if public else 'account(s) ' + ', '.join(external)} outside the organisation.",
        evidence={"shared_with": external, "target": target},
        undo={"kind": undo_kind, "target": target, "accounts": external},
    )


def _keeps_s3_data_events(rp: dict[str, Any]) -> bool:
    for sel in _as_list(rp.get("eventSelectors")):
        if not isinstance(sel, dict) or sel.get("readWriteType", "All") != "All":
            continue
        for res in _as_list(sel.get("dataResources")):
            if isinstance(res, dict) and res.get("type") == "AWS::S3::Object" and _as_list(res.get("values")):
                return True
    for sel in _as_list(rp.get("advancedEventSelectors")):
        fields = {str(f.get("field")): f for f in _as_list((sel or {}).get("fieldSelectors")) if isinstance(f, dict)}
        category = _as_list((fields.get("eventCategory") or {}).get("equals"))
        rtype = _as_list((fields.get("resources.type") or {}).get("equals"))
        readonly = fields.get("readOnly")
        if "Data" in category and "AWS::S3::Object" in rtype and readonly is None:
            return True
    return False


def tamper(record: dict[str, Any], org_accounts: tuple[str, ...]) -> Verdict | None:
    rp = record.get("requestParameters") or {}
    name = record.get("eventName")
    trail = str(rp.get("name") or rp.get("trailName") or "")
    if name == "PutEventSelectors":
        if _keeps_s3_data_events(rp):
            return None
        what = "event selectors that no longer record S3 data events"
        evidence: dict[str, Any] = {"eventSelectors": rp.get("eventSelectors"), "advancedEventSelectors": rp.get("advancedEventSelectors")}
    else:
        what = {"StopLogging": "stopped logging", "DeleteTrail": "deleted the trail"}[name]
        evidence = {}
    arn = trail if trail.startswith("arn:") else f"arn:aws:cloudtrail:{record.get('awsRegion', '')}:{record.get('recipientAccountId', '')}:trail/{trail}"
    return Verdict(
        rule="audit.tamper",
        severity="critical",
        resource=arn,
        summary=f"CloudTrail trail {trail}: {name} ({what}).",
        evidence=evidence,
    )


#: eventSource -> eventName -> rule
SINGLE_EVENT_RULES = {
    ("s3.amazonaws.com", "PutBucketPolicy"): bucket_policy,
    ("s3.amazonaws.com", "PutBucketAcl"): bucket_acl,
    ("s3.amazonaws.com", "PutBucketReplication"): replication,
    ("ec2.amazonaws.com", "ModifySnapshotAttribute"): snapshot_share,
    ("ec2.amazonaws.com", "ModifyImageAttribute"): snapshot_share,
    ("rds.amazonaws.com", "ModifyDBSnapshotAttribute"): snapshot_share,
    ("rds.amazonaws.com", "ModifyDBClusterSnapshotAttribute"): snapshot_share,
    ("cloudtrail.amazonaws.com", "StopLogging"): tamper,
    ("cloudtrail.amazonaws.com", "DeleteTrail"): tamper,
    ("cloudtrail.amazonaws.com", "PutEventSelectors"): tamper,
}
SINGLE_EVENT_NAMES = frozenset(name for _, name in SINGLE_EVENT_RULES)
