"""audit.tamper: anything that would blind the detector. Pure: a record and the context in, a verdict out.

* the trail: StopLogging, DeleteTrail; UpdateTrail pointing it at another bucket or key
  prefix, or narrowing it to one region, off global events or off the organisation;
  event selectors (basic or advanced) that stop recording S3 data events of every stage
  bucket: no S3 object selector, reads or writes dropped, only named (decoy) buckets, a
  stage bucket excluded, GetObject excluded, identities excluded;
* Stagewarden itself (names ``<stack>-…``): its EventBridge rules disabled, deleted,
  re-patterned or stripped of targets; its functions deleted or throttled to 0; their
  queue mappings disabled or deleted; their configuration changed outside CloudFormation;
* the trail bucket: its notification configuration (EventBridge delivers the log files)
  or its bucket policy (CloudTrail needs it to write) changed or deleted.
"""

from __future__ import annotations

import re
from typing import Any

from exfil.rules import RuleContext, Verdict, as_list, names

ALL_S3 = frozenset({"arn:aws:s3", "arn:aws:s3:::", "arn:aws:s3:::*", "arn:aws:s3:::*/*"})
_S3_PREFIX = "arn:aws:s3:::"
_KNOWN_FIELDS = frozenset({"eventCategory", "resources.type", "readOnly", "eventName", "resources.ARN"})
_LAMBDA_VERSION = re.compile(r"\d{8}(v\d+)?$")


def _params(record: dict[str, Any]) -> dict[str, Any]:
    rp = record.get("requestParameters")
    return rp if isinstance(rp, dict) else {}


def _bucket_of(value: str) -> tuple[str, bool]:
    """(bucket name, whether the whole name is known) of an S3 ARN or ARN prefix."""
    rest = value[len(_S3_PREFIX):] if value.startswith(_S3_PREFIX) else value
    name, slash, _ = rest.partition("/")
    return name, bool(slash)


def _matches(name: str, ops: dict[str, list[str]]) -> bool:
    """Would an advanced field selector with these operators keep ``name``?"""
    if "equals" in ops and name not in ops["equals"]:
        return False
    if "startsWith" in ops and not any(name.startswith(v) for v in ops["startsWith"]):
        return False
    if "endsWith" in ops and not any(name.endswith(v) for v in ops["endsWith"]):
        return False
    if name in ops.get("notEquals", ()) or any(name.startswith(v) for v in ops.get("notStartsWith", ())):
        return False
    return not any(name.endswith(v) for v in ops.get("notEndsWith", ()))


def selector_gaps(rp: dict[str, Any], ctx: RuleContext) -> tuple[list[str], bool]:
    """What the new selectors no longer record of the stages' S3 data events, and whether a stage bucket is named.

    Empty: reads (GetObject included) and writes of every bucket are still recorded.
    """
    reads = writes = False
    gaps: list[str] = []
    named: set[str] = set()
    for sel in as_list(rp.get("eventSelectors")):
        if not isinstance(sel, dict):
            continue
        rw = str(sel.get("readWriteType") or "All")
        for res in as_list(sel.get("dataResources")):
            if not isinstance(res, dict) or res.get("type") != "AWS::S3::Object":
                continue
            values = [str(v) for v in as_list(res.get("values"))]
            if any(v in ALL_S3 for v in values):
                reads |= rw in ("All", "ReadOnly")
                writes |= rw in ("All", "WriteOnly")
            else:
                named |= {_bucket_of(v)[0] for v in values if v.startswith(_S3_PREFIX)}
    for sel in as_list(rp.get("advancedEventSelectors")):
        fields: dict[str, dict[str, list[str]]] = {}
        for fs in as_list(sel.get("fieldSelectors") if isinstance(sel, dict) else None):
            if isinstance(fs, dict):
                fields[str(fs.get("field") or fs.get("Field"))] = {
                    op: [str(v) for v in as_list(fs.get(op))] for op in
                    ("equals", "startsWith", "endsWith", "notEquals", "notStartsWith", "notEndsWith") if fs.get(op) is not None}
        if not _matches("Data", fields.get("eventCategory", {})) or not _matches("AWS::S3::Object", fields.get("resources.type", {})):
            continue
        if "resources.type" not in fields:
            continue  # data selectors name their resource type; without one this is not an S3 selector
        other = sorted(set(fields) - _KNOWN_FIELDS)
        if other:
            gaps.append(f"an S3 data selector is narrowed by {', '.join(other)} (some identities or requests go unrecorded)")
            continue
        ro = fields.get("readOnly", {})
        sel_reads, sel_writes = _matches("true", ro), _matches("false", ro)
        en = fields.get("eventName")
        if en is not None and sel_reads and not _matches("GetObject", en):
            gaps.append("an S3 data selector excludes GetObject")
            sel_reads = False
        arn = fields.get("resources.ARN")
        if arn is not None:
            positive = arn.get("equals", []) + arn.get("startsWith", [])
            if positive and not any(v in ALL_S3 or v == _S3_PREFIX for v in positive):
                named |= {_bucket_of(v)[0] for v in positive if v.startswith(_S3_PREFIX)}
                continue
            excluded = arn.get("notEquals", []) + arn.get("notStartsWith", []) + arn.get("notEndsWith", [])
            risky = []
            for v in excluded:
                bucket, whole = _bucket_of(v)
                if not whole or not bucket or ctx.stage_of_bucket(bucket) is not None:
                    risky.append(v)
            if risky:
                gaps.append(f"an S3 data selector excludes {names(risky)}")
                continue
        reads |= sel_reads
        writes |= sel_writes
    stage_named = any(ctx.stage_of_bucket(b) is not None for b in named)
    if not reads or not writes:
        what = "reads or writes" if not reads and not writes else ("reads" if not reads else "writes")
        if named:
            gaps.append(f"S3 data events ({what}) are recorded only for {names(sorted(named))}"
                        + ("" if stage_named else " (no stage bucket among them)"))
        elif not gaps:
            gaps.append(f"S3 data events ({what}) of the stage buckets are no longer recorded")
    return gaps, stage_named


def _trail_arn(record: dict[str, Any], trail: str) -> str:
    if trail.startswith("arn:"):
        return trail
    return f"arn:aws:cloudtrail:{record.get('awsRegion', '')}:{record.get('recipientAccountId', '')}:trail/{trail}"


def trail(record: dict[str, Any], ctx: RuleContext) -> Verdict | None:
    rp = _params(record)
    name = record.get("eventName")
    trail_name = str(rp.get("name") or rp.get("trailName") or "")
    severity, evidence = "critical", {}
    if name == "PutEventSelectors":
        gaps, stage_named = selector_gaps(rp, ctx)
        if not gaps:
            return None
        severity = "high" if stage_named and len(gaps) == 1 else "critical"
        what = "; ".join(gaps)
        evidence = {"gaps": gaps, "eventSelectors": rp.get("eventSelectors"), "advancedEventSelectors": rp.get("advancedEventSelectors")}
    elif name == "UpdateTrail":
        problems = []
        bucket = rp.get("s3BucketName")
        if bucket and bucket != ctx.deployment.trail_bucket:
            problems.append(f"delivers log files to bucket {bucket}" + (f", not {ctx.deployment.trail_bucket}" if ctx.deployment.trail_bucket else ""))
        if rp.get("s3KeyPrefix"):
            problems.append(f"moves log files under prefix {rp.get('s3KeyPrefix')!s:.100} (Stagewarden reads AWSLogs/…)")
        for flag, text in (("isMultiRegionTrail", "records one region only"), ("includeGlobalServiceEvents", "drops global service events (IAM, STS)"),
                           ("isOrganizationTrail", "no longer covers the organisation's accounts")):
            if rp.get(flag) is False or str(rp.get(flag)).lower() == "false":
                problems.append(text)
        if not problems:
            return None
        severity = "critical" if ctx.deployment.trail_bucket and bucket and bucket != ctx.deployment.trail_bucket else "high"
        what = "; ".join(problems)
        evidence = {"changes": problems}
    else:
        what = {"StopLogging": "stopped logging", "DeleteTrail": "deleted the trail"}[str(name)]
    return Verdict(rule="audit.tamper", severity=severity, resource=_trail_arn(record, trail_name),
                   summary=f"CloudTrail trail {trail_name}: {name} ({what}).", evidence=evidence)


def eventbridge(record: dict[str, Any], ctx: RuleContext) -> Verdict | None:
    """Stagewarden's own EventBridge rules disabled, deleted, re-patterned or stripped of targets."""
    rp = _params(record)
    name = record.get("eventName")
    rule = str(rp.get("name") or rp.get("rule") or "")
    if not ctx.deployment.owns(rule):
        return None
    if name == "PutRule":
        if str(rp.get("state") or "").upper() != "DISABLED" and _via_cloudformation(record):
            return None  # a stack update re-putting its own rule
        what = "disabled the rule" if str(rp.get("state") or "").upper() == "DISABLED" else "changed the rule's event pattern"
    else:
        what = {"DisableRule": "disabled the rule", "DeleteRule": "deleted the rule",
                "RemoveTargets": "removed the rule's targets (events no longer reach Stagewarden)"}[str(name)]
    bus = str(rp.get("eventBusName") or "default")
    arn = f"arn:aws:events:{record.get('awsRegion', '')}:{record.get('recipientAccountId', '')}:rule/{'' if bus == 'default' else bus + '/'}{rule}"
    return Verdict(rule="audit.tamper", severity="critical", resource=arn,
                   summary=f"Stagewarden's EventBridge rule {rule}: {name} ({what}).", evidence={"target": rule})


def lambda_function(record: dict[str, Any], ctx: RuleContext) -> Verdict | None:
    """Stagewarden's own functions deleted, throttled to zero, or cut from their queues."""
    rp = _params(record)
    name = _LAMBDA_VERSION.sub("", str(record.get("eventName") or ""))
    response = record.get("responseElements")
    response = response if isinstance(response, dict) else {}
    function = str(rp.get("functionName") or response.get("functionArn") or "")
    if not ctx.deployment.owns(function):
        return None
    severity = "critical"
    if name == "PutFunctionConcurrency":
        if str(rp.get("reservedConcurrentExecutions")) != "0":
            return None
        what = "reserved concurrency set to 0 (the function can no longer run)"
    elif name == "UpdateFunctionConfiguration":
        if _via_cloudformation(record):
            return None  # a stack update
        what, severity = "its configuration changed outside CloudFormation (environment, role, layers: e.g. a dry-run mode)", "high"
    elif name == "UpdateEventSourceMapping":
        if rp.get("enabled") is not False and str(rp.get("enabled")).lower() != "false":
            return None
        what = "its queue mapping disabled"
    else:
        what = {"DeleteFunction": "deleted", "DeleteEventSourceMapping": "its queue mapping deleted"}[name]
    short = function.rsplit(":", 1)[-1] if function.startswith("arn:") else function
    arn = function if function.startswith("arn:") else \
        f"arn:aws:lambda:{record.get('awsRegion', '')}:{record.get('recipientAccountId', '')}:function:{function}"
    return Verdict(rule="audit.tamper", severity=severity, resource=arn,
                   summary=f"Stagewarden's function {short}: {what}.", evidence={"target": short})


def trail_bucket(record: dict[str, Any], ctx: RuleContext) -> Verdict | None:
    """The trail bucket's notification configuration or bucket policy changed."""
    rp = _params(record)
    bucket = str(rp.get("bucketName") or "")
    if not ctx.deployment.trail_bucket or bucket != ctx.deployment.trail_bucket:
        return None
    name = str(record.get("eventName"))
    severity = "high"
    if name.startswith("PutBucketNotification"):
        config = rp.get("NotificationConfiguration")
        eventbridge_on = isinstance(config, dict) and "EventBridgeConfiguration" in config
        severity = "high" if eventbridge_on else "critical"
        what = "changed its notification configuration" + ("" if eventbridge_on else ": EventBridge no longer receives new log files")
    elif name == "DeleteBucketPolicy":
        what, severity = "deleted its bucket policy (CloudTrail can no longer write log files)", "critical"
    else:
        what = "changed its bucket policy (CloudTrail needs it to write log files)"
    return Verdict(rule="audit.tamper", severity=severity, resource=f"arn:aws:s3:::{bucket}",
                   summary=f"The CloudTrail bucket {bucket}: {name} ({what}).", evidence={"target": bucket})


def _via_cloudformation(record: dict[str, Any]) -> bool:
    ui = record.get("userIdentity")
    return (isinstance(ui, dict) and ui.get("invokedBy") == "cloudformation.amazonaws.com") or \
        record.get("userAgent") == "cloudformation.amazonaws.com"


LAMBDA_NAMES = tuple(f"{base}{version}" for base in ("DeleteFunction", "PutFunctionConcurrency", "DeleteEventSourceMapping",
                                                     "UpdateEventSourceMapping", "UpdateFunctionConfiguration")
                     for version in ("", "20150331", "20150331v2", "20171031"))
