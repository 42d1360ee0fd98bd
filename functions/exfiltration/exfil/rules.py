"""Single-event rules that open data to the outside. Pure: a record and the context in, a verdict out.

"Inside" is the organisation: ``organization.account_ids`` (without a list, the event's own
account), ``organization.org_id``, the organisation's VPC endpoints, and buckets that map
to a stage. Anything a rule cannot prove to be inside is outside (fail closed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from exfil.deployment import Deployment

_ACCOUNT = re.compile(r"(?<!\d)(\d{12})(?!\d)")
_PUBLIC_GROUPS = ("/global/AllUsers", "/global/AuthenticatedUsers")
#: condition operators that pin a key to the listed values (negations, IfExists and ForAllValues do not:
#: a request without the key, or with an empty set, passes them)
_PINNING_OPERATORS = frozenset({"stringequals", "stringlike", "stringequalsignorecase", "arnequals", "arnlike",
                                "foranyvalue:stringequals", "foranyvalue:stringlike", "foranyvalue:stringequalsignorecase"})
_ORG_KEYS = frozenset({"aws:principalorgid", "aws:sourceorgid"})
_ACCOUNT_KEYS = frozenset({"aws:principalaccount", "aws:sourceaccount"})
_ARN_KEYS = frozenset({"aws:principalarn", "aws:sourcearn", "aws:sourceowner"})
SUMMARY_NAMES = 3


@dataclass(frozen=True)
class RuleContext:
    """What the rules need to tell inside from outside."""

    accounts: tuple[str, ...] = ()
    org_id: str | None = None
    vpc_endpoints: frozenset[str] = frozenset()
    stage_of_bucket: Callable[[str], str | None] = lambda bucket: None
    deployment: Deployment = field(default_factory=Deployment)


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


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _params(record: dict[str, Any]) -> dict[str, Any]:
    rp = record.get("requestParameters")
    return rp if isinstance(rp, dict) else {}


def names(items: list[str], limit: int = SUMMARY_NAMES) -> str:
    """``a, b, c and 7 more``: lists in summaries stay one sentence."""
    head = ", ".join(str(i)[:100] for i in items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


def accounts_in(value: Any) -> set[str]:
    return set(_ACCOUNT.findall(value if isinstance(value, str) else json.dumps(value)))


def inside_accounts(record: dict[str, Any], ctx: RuleContext) -> set[str]:
    """The organisation's accounts; without a list, the account the event happened in."""
    if ctx.accounts:
        return set(ctx.accounts)
    ui = record.get("userIdentity")
    own = {record.get("recipientAccountId"), ui.get("accountId") if isinstance(ui, dict) else None}
    return {a for a in own if isinstance(a, str) and a}


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


def _pins_inside(condition: Any, inside: set[str], ctx: RuleContext) -> bool:
    """Does the condition restrict requests to the organisation (its id, its accounts, its endpoints)?"""
    if not isinstance(condition, dict):
        return False
    for operator, block in condition.items():
        if str(operator).lower() not in _PINNING_OPERATORS or not isinstance(block, dict):
            continue
        for key, raw in block.items():
            values = [str(v) for v in as_list(raw)]
            k = str(key).lower()
            if not values or any("*" in v or "?" in v for v in values) and k not in _ARN_KEYS:
                continue
            if k in _ORG_KEYS and ctx.org_id and all(v == ctx.org_id for v in values):
                return True
            if k == "aws:principalorgpaths" and ctx.org_id and all(v.startswith(ctx.org_id + "/") for v in values):
                return True
            if k in _ACCOUNT_KEYS and all(v in inside for v in values):
                return True
            if k == "aws:sourcevpce" and ctx.vpc_endpoints and all(v in ctx.vpc_endpoints for v in values):
                return True
            if k in _ARN_KEYS and all(_ACCOUNT.search(v) and accounts_in(v) <= inside for v in values):
                return True
    return False


def external_statements(policy: dict[str, Any], inside: set[str], ctx: RuleContext) -> list[tuple[dict[str, Any], list[str]]]:
    """Allow statements that reach outside the organisation: (statement, the external principals).

    ``Statement`` may be one object or a list. ``Principal: "*"`` is external unless a
    condition pins it to the organisation's id, accounts or VPC endpoints; an Allow with
    ``NotPrincipal`` grants everyone else and is always external.
    """
    found = []
    for st in as_list(policy.get("Statement")):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        if "NotPrincipal" in st:
            found.append((st, [f"everyone except {json.dumps(st.get('NotPrincipal'))[:200]} (NotPrincipal)"]))
            continue
        principal = st.get("Principal")
        candidates: list[str] = []
        if principal == "*":
            candidates = ["*"]
        elif isinstance(principal, dict):
            for kind in ("AWS", "CanonicalUser", "Federated"):
                candidates += [str(p) for p in as_list(principal.get(kind))]
            # {"Service": "cloudtrail.amazonaws.com"}: an AWS service acting for this account, not external
        elif principal is not None:
            candidates = [str(p) for p in as_list(principal)]
        external = []
        for p in candidates:
            if p == "*":
                if not _pins_inside(st.get("Condition"), inside, ctx):
                    external.append("*")
            elif p.startswith("arn:aws:iam::") or _ACCOUNT.fullmatch(p):
                if not accounts_in(p) <= inside:
                    external.append(p)
            elif p:  # canonical user IDs, federated providers: another identity store than the organisation's
                external.append(p)
        if external:
            found.append((st, external))
    return found


def bucket_policy(record: dict[str, Any], ctx: RuleContext) -> Verdict | None:
    rp = _params(record)
    bucket = str(rp.get("bucketName") or "")
    policy = _load_policy(rp.get("bucketPolicy") or rp.get("policy"))
    if policy is None:
        return None
    inside = inside_accounts(record, ctx)
    hits = external_statements(policy, inside, ctx)
    if not hits:
        return None
    principals = sorted({p for _, ps in hits for p in ps})
    public = "*" in principals or any(p.endswith("(NotPrincipal)") for p in principals)
    return Verdict(
        rule="exfil.bucket-policy-external",
        severity="critical" if public else "high",
        resource=f"arn:aws:s3:::{bucket}",
        summary=f"Bucket policy on {bucket} grants {'everyone (*)' if '*' in principals else names(principals)} "
                f"access from outside the organisation.",
        evidence={"external_principals": principals, "statements": [st for st, _ in hits]},
        undo={"kind": "revert-bucket-policy", "bucket": bucket, "inside": sorted(inside)},
        bucket=bucket,
    )


def bucket_acl(record: dict[str, Any], ctx: RuleContext) -> Verdict | None:
    rp = _params(record)
    bucket = str(rp.get("bucketName") or "")
    grants: list[str] = []
    canned = str(rp.get("x-amz-acl") or "")
    if canned in ("public-read", "public-read-write", "authenticated-read"):
        grants.append(f"canned ACL {canned}")
    for header in ("x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp", "x-amz-grant-full-control"):
        value = str(rp.get(header) or "")
        # id="<canonical id>": nothing in the request names the owner, so any canonical id is another one
        if any(g in value for g in _PUBLIC_GROUPS) or "emailaddress" in value.lower() or re.search(r"\bid\s*=", value):
            grants.append(f"{header}: {value}")
    acp = rp.get("AccessControlPolicy")
    acp = acp if isinstance(acp, dict) else {}
    owner = acp.get("Owner")
    owner_id = str(owner.get("ID") or "") if isinstance(owner, dict) else ""
    acl = acp.get("AccessControlList")
    for grant in as_list(acl.get("Grant") if isinstance(acl, dict) else None):
        grantee = grant.get("Grantee") if isinstance(grant, dict) else None
        if not isinstance(grantee, dict):
            continue
        uri = str(grantee.get("URI") or "")
        gid = str(grantee.get("ID") or "")
        email = grantee.get("EmailAddress")
        if any(g in uri for g in _PUBLIC_GROUPS) or email or (gid and gid != owner_id):
            grants.append(f"{grant.get('Permission')} to {uri or email or gid}")
    if not grants:
        return None
    return Verdict(
        rule="exfil.bucket-policy-external",
        severity="critical",
        resource=f"arn:aws:s3:::{bucket}",
        summary=f"Bucket ACL on {bucket} grants access outside the organisation ({names(grants)}).",
        evidence={"external_grants": grants},
        undo={"kind": "revert-bucket-acl", "bucket": bucket},
        bucket=bucket,
    )


def replication(record: dict[str, Any], ctx: RuleContext) -> Verdict | None:
    """Replication to another account, or to a bucket that maps to no stage (``Destination.Account`` or not)."""
    from stage_policy.mapping import bucket_name

    rp = _params(record)
    bucket = str(rp.get("bucketName") or "")
    config = rp.get("ReplicationConfiguration")
    config = config if isinstance(config, dict) else {}
    inside = inside_accounts(record, ctx)
    external = []
    for rule in as_list(config.get("Rule") or config.get("Rules")):
        dest = rule.get("Destination") if isinstance(rule, dict) else None
        if not isinstance(dest, dict):
            continue
        account = str(dest.get("Account") or "")
        target = str(dest.get("Bucket") or "")
        name = bucket_name(target) if target else ""
        reasons = []
        if account and account not in inside:
            reasons.append(f"account {account} is outside the organisation")
        if name and ctx.stage_of_bucket(name) is None:
            reasons.append(f"bucket {name} maps to no stage")
        if reasons:
            external.append({"rule_id": rule.get("ID"), "account": account or None, "bucket": target, "why": "; ".join(reasons)})
    if not external:
        return None
    targets = sorted({e["bucket"] for e in external if e["bucket"]})
    return Verdict(
        rule="exfil.replication-external",
        severity="high",
        resource=f"arn:aws:s3:::{bucket}",
        summary=f"Replication from {bucket} to {names(targets)} outside the organisation's stages ({external[0]['why']}).",
        evidence={"external_destinations": external},
        undo={"kind": "revert-replication", "bucket": bucket, "destinations": targets},
        bucket=bucket,
    )


def snapshot_share(record: dict[str, Any], ctx: RuleContext) -> Verdict | None:
    rp = _params(record)
    name = record.get("eventName")
    region, account = str(record.get("awsRegion") or ""), str(record.get("recipientAccountId") or "")
    inside = inside_accounts(record, ctx)

    def added(block: Any) -> list[str]:
        adds = block.get("add") if isinstance(block, dict) else None
        items = as_list(adds.get("items") if isinstance(adds, dict) else None)
        return [str(i.get("userId") or i.get("group")) for i in items if isinstance(i, dict)]

    if name == "ModifySnapshotAttribute":
        shared = added(rp.get("createVolumePermission"))
        target, kind = str(rp.get("snapshotId") or ""), "EBS snapshot"
        arn = f"arn:aws:ec2:{region}::snapshot/{target}"
        undo_kind = "unshare-snapshot"
    elif name == "ModifyImageAttribute":
        shared = added(rp.get("launchPermission"))
        target, kind = str(rp.get("imageId") or ""), "AMI"
        arn = f"arn:aws:ec2:{region}::image/{target}"
        undo_kind = "unshare-image"
    else:  # ModifyDBSnapshotAttribute / ModifyDBClusterSnapshotAttribute
        if str(rp.get("attributeName", "")).lower() != "restore":
            return None
        shared = [str(v) for v in as_list(rp.get("valuesToAdd"))]
        target = str(rp.get("dBSnapshotIdentifier") or rp.get("dBClusterSnapshotIdentifier") or "")
        cluster = name == "ModifyDBClusterSnapshotAttribute"
        kind = "RDS cluster snapshot" if cluster else "RDS snapshot"
        arn = f"arn:aws:rds:{region}:{account}:{'cluster-snapshot' if cluster else 'snapshot'}:{target}"
        undo_kind = "unshare-db-cluster-snapshot" if cluster else "unshare-db-snapshot"
    external = [a for a in shared if a.lower() == "all" or a not in inside]
    if not external:
        return None
    public = any(a.lower() == "all" for a in external)
    return Verdict(
        rule="exfil.snapshot-share",
        severity="critical" if public else "high",
        resource=arn,
        summary=f"{kind} {target} shared with {'everyone (all)' if public else 'account(s) ' + names(external)} outside the organisation.",
        evidence={"shared_with": external, "target": target},
        undo={"kind": undo_kind, "target": target, "accounts": external},
    )
