"""A finding in the AWS Security Finding Format (ASFF), for Security Hub's BatchImportFindings.

Pure. The ``Id`` is stable per incident (the finding's dedup key), so a repeat *updates* the
Security Hub finding (its count, last observed time and severity) instead of adding one.
Severity and types go in ``FindingProviderFields`` too: after a finding exists, that is where
a finding provider updates them (the top-level ones belong to the analysts' workflow).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from stage_policy.findings import Finding

SCHEMA_VERSION = "2018-10-08"
LABEL = {"low": "LOW", "medium": "MEDIUM", "high": "HIGH", "critical": "CRITICAL"}
#: ASFF type taxonomy (namespace/category/classifier) by rule prefix; the classifier is the rule.
_TYPES = (
    (("exfil.bulk-download", "exfil.outside-vpce", "exfil.presigned-url", "exfil.new-client-tool"), "Effects/Data Exfiltration"),
    (("exfil.",), "Effects/Data Exposure"),
    (("audit.",), "TTPs/Defense Evasion"),
    (("access.",), "Unusual Behaviors/User"),
    (("data.", "policy.", "input."), "Software and Configuration Checks/Industry and Regulatory Standards"),
)


def finding_id(finding: Finding) -> str:
    return f"stagewarden/{finding.dedup_key}"[:512]


def product_arn(partition: str, region: str, account: str) -> str:
    """The account's own default product: where a custom integration imports findings (and the IAM resource)."""
    return f"arn:{partition}:securityhub:{region}:{account}:product/{account}/default"


def types_of(rule: str) -> list[str]:
    for prefixes, kind in _TYPES:
        if rule.startswith(prefixes):
            return [f"{kind}/{rule}"]
    return [f"Software and Configuration Checks/AWS Security Best Practices/{rule}"]


def _resource(arn: str, partition: str, region: str) -> dict[str, Any]:
    if arn.startswith("arn:aws:s3:::"):
        kind = "AwsS3Object" if "/" in arn[len("arn:aws:s3:::"):] else "AwsS3Bucket"
    elif ":iam::" in arn and ":role/" in arn:
        kind = "AwsIamRole"
    elif ":rds:" in arn and ":snapshot:" in arn:
        kind = "AwsRdsDbSnapshot"
    elif ":cloudtrail:" in arn and ":trail/" in arn:
        kind = "AwsCloudTrailTrail"
    else:
        kind = "Other"
    return {"Type": kind, "Id": arn[:512], "Partition": partition, "Region": region}


def _iso(when: datetime | int) -> str:
    if isinstance(when, int):
        when = datetime.fromtimestamp(when, timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 14] + " …[truncated]"


def to_asff(finding: Finding, *, account: str, region: str, partition: str = "aws", severity: str | None = None,
            total: int = 1, since: int | None = None, last_seen: int | None = None, now: datetime | None = None,
            source_url: str | None = None) -> dict[str, Any]:
    """One ASFF finding. ``severity`` is the incident's highest so far, ``total`` its count across windows."""
    severity = severity or finding.severity
    now = now or datetime.now(timezone.utc)
    first = since if since is not None else finding.first_seen
    last = last_seen if last_seen is not None else (finding.last_seen or finding.first_seen)
    stage = finding.stage or "unmanaged"
    types = types_of(finding.rule)
    resources = [_resource(finding.resource, partition, region)]
    if finding.principal and finding.principal.startswith("arn:") and finding.principal != finding.resource:
        resources.append(_resource(finding.principal, partition, region))
    product_fields = {
        "stagewarden/rule": finding.rule,
        "stagewarden/stage": stage,
        "stagewarden/dedup_key": finding.dedup_key,
        "stagewarden/count": str(total),
        "stagewarden/action": _bounded(finding.action, 1000),
        "stagewarden/evidence": _bounded(json.dumps(finding.evidence, default=str, separators=(",", ":")), 1000),
    }
    if finding.principal:
        product_fields["stagewarden/principal"] = finding.principal[:1000]
    raw = finding.evidence.get("session_names") or []
    sessions = [str(s) for s in raw] if isinstance(raw, list) else [str(raw)]  # evidence is any JSON a publisher sent
    if sessions:
        product_fields["stagewarden/sessions"] = _bounded(", ".join(map(str, sessions)), 1000)
    out: dict[str, Any] = {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": finding_id(finding),
        "ProductArn": product_arn(partition, region, account),
        "GeneratorId": f"stagewarden/{finding.rule}",
        "AwsAccountId": account,
        "Types": types,
        "CreatedAt": _iso(first),
        "UpdatedAt": _iso(now),
        "FirstObservedAt": _iso(first),
        "LastObservedAt": _iso(last),
        "Severity": {"Label": LABEL[severity], "Original": severity},
        "FindingProviderFields": {"Severity": {"Label": LABEL[severity], "Original": severity}, "Types": types},
        "Title": _bounded(f"{finding.rule} in {stage}", 256),
        "Description": _bounded(finding.summary, 1024),
        "Resources": resources,
        "ProductFields": product_fields,
        "RecordState": "ACTIVE",
        "Region": region,
    }
    if finding.action and finding.action != "none":
        out["Remediation"] = {"Recommendation": {"Text": _bounded(finding.action, 512)}}
    if source_url:
        out["SourceUrl"] = source_url
    return out
