"""A finding as a Slack Block Kit message, and the same message as plain text (the demo and the CLI print it).

Pure: no AWS, no network. Every value that came from an event (bucket keys, user agents,
session names) is escaped for Slack's mrkdwn (``&``, ``<``, ``>``), so a crafted object key
cannot become a link or an ``@channel`` mention, and is bounded to Block Kit's limits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from stage_policy.findings import Finding

EMOJI = {"low": ":large_blue_circle:", "medium": ":large_yellow_circle:", "high": ":large_orange_circle:",
         "critical": ":red_circle:"}
#: Evidence shown first, when present (the rest follow in the finding's own order, up to MAX_EVIDENCE lines).
KEY_EVIDENCE = ("sliding_window", "objects", "bytes", "thresholds", "event", "buckets", "session_names", "source_ips",
                "user_agents", "sample_keys", "outside_reads", "presigned_reads", "human_events", "new_client_families",
                "checks", "drift", "errors", "error", "contract", "report", "accounts", "escalated")
HIDDEN_EVIDENCE = frozenset({"actions", "actions_omitted", "mode", "log_file", "outcome", "outcome_changed"})
MAX_EVIDENCE = 8
HEADER_LIMIT, FIELD_LIMIT, TEXT_LIMIT = 150, 1900, 2900


@dataclass(frozen=True)
class Delivery:
    """Why this post goes out now and what the incident looks like (from the delivery state)."""

    reason: str  # "new incident", "escalated from high to critical", ...
    count: int  # occurrences in the current window, this one included
    held_back: int  # repeats held back since the previous post of this incident
    first_seen: str  # ISO time the window opened
    previous_window_held: int = 0  # repeats the previous window held back (summarised by its first post)


def escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 14] + " …[truncated]"


def _code(text: Any) -> str:
    return "`" + escape(str(text).replace("`", "'")) + "`"


def _link(url: str, label: str) -> str:
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{escape(label)}>"


def console_links(finding: Finding, region: str) -> list[tuple[str, str]]:
    """(label, url) pairs: the resource in the AWS console, and the CloudTrail event or log file behind the finding."""
    links: list[tuple[str, str]] = []
    resource = finding.resource
    if resource.startswith("arn:aws:s3:::"):
        bucket, _, key = resource[len("arn:aws:s3:::"):].partition("/")
        if key:
            links.append(("object in S3", f"https://s3.console.aws.amazon.com/s3/object/{quote(bucket)}?prefix={quote(key)}"))
        else:
            links.append(("bucket in S3", f"https://s3.console.aws.amazon.com/s3/buckets/{quote(bucket)}"))
    elif resource.startswith("s3://"):
        bucket, _, key = resource[5:].partition("/")
        links.append(("object in S3", f"https://s3.console.aws.amazon.com/s3/object/{quote(bucket)}?prefix={quote(key)}"))
    if finding.principal and ":role/" in finding.principal:
        role = finding.principal.rsplit("/", 1)[-1]
        links.append(("principal in IAM", f"https://console.aws.amazon.com/iam/home#/roles/details/{quote(role)}"))
    event = finding.evidence.get("event")
    if isinstance(event, dict) and event.get("id"):
        where = event.get("region") or region
        links.append(("CloudTrail event",
                      f"https://{where}.console.aws.amazon.com/cloudtrailv2/home?region={where}#/events/{quote(str(event['id']))}"))
    log_file = finding.evidence.get("log_file")
    if isinstance(log_file, str) and log_file.startswith("s3://"):
        bucket, _, key = log_file[5:].partition("/")
        links.append(("CloudTrail log file", f"https://s3.console.aws.amazon.com/s3/object/{quote(bucket)}?prefix={quote(key)}"))
    return links


def _texts(value: object) -> list[str]:
    """A list of strings out of evidence, which is any JSON a publisher sent (``true`` where a list was expected)."""
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def principal_line(finding: Finding) -> str:
    if not finding.principal:
        return "-"
    short = finding.principal.rsplit("/", 1)[-1] if "/" in finding.principal else finding.principal
    sessions = _texts(finding.evidence.get("session_names"))
    line = _code(short)
    if sessions:
        shown = ", ".join(escape(s) for s in list(sessions)[:3]) + (f" (+{len(sessions) - 3})" if len(sessions) > 3 else "")
        line += f" (session {shown})"
    return line + f"\n{_code(finding.principal)}"


def _value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        value = json.dumps(value, separators=(", ", ": "), default=str)
    return bounded(str(value), 240)


def key_evidence(evidence: dict[str, Any]) -> list[str]:
    names = [k for k in KEY_EVIDENCE if k in evidence] + [k for k in evidence if k not in KEY_EVIDENCE]
    lines = [f"• {escape(k)}: {_code(_value(evidence[k]))}" for k in names
             if k not in HIDDEN_EVIDENCE and evidence[k] not in (None, "", [], {})]
    shown = lines[:MAX_EVIDENCE]
    if len(lines) > MAX_EVIDENCE:
        shown.append(f"• … {len(lines) - MAX_EVIDENCE} more in the finding")
    return shown


def action_heading(finding: Finding) -> str:
    mode = finding.evidence.get("mode")
    if mode == "dry_run" or finding.action.startswith("dry run"):
        return "Action (dry run: nothing was changed; this is what enforce would do)"
    return "Action taken"


def message(finding: Finding, delivery: Delivery, region: str) -> dict[str, Any]:
    """The incoming-webhook payload: ``text`` (notifications, fallback) and ``blocks``."""
    sev = finding.severity.upper()
    stage = finding.stage or "unmanaged"
    seen = f"{delivery.count} time(s) since {delivery.first_seen}"
    if delivery.held_back:
        seen += f"; {delivery.held_back} repeat(s) held back since the last post"
    if delivery.previous_window_held:
        seen += f"; {delivery.previous_window_held} repeat(s) were held back in the previous window"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": bounded(f"{sev}: {finding.rule} in {stage}", HEADER_LIMIT)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": bounded(f"{EMOJI[finding.severity]} {escape(finding.summary)}", TEXT_LIMIT)}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Severity*\n{sev}"},
            {"type": "mrkdwn", "text": f"*Rule*\n{_code(finding.rule)}"},
            {"type": "mrkdwn", "text": f"*Stage*\n{escape(stage)}"},
            {"type": "mrkdwn", "text": bounded(f"*Resource*\n{_code(finding.resource)}", FIELD_LIMIT)},
            {"type": "mrkdwn", "text": bounded(f"*Principal*\n{principal_line(finding)}", FIELD_LIMIT)},
            {"type": "mrkdwn", "text": bounded(f"*Seen*\n{escape(seen)}", FIELD_LIMIT)},
        ]},
    ]
    evidence = key_evidence(finding.evidence)
    if evidence:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": bounded("*Key evidence*\n" + "\n".join(evidence), TEXT_LIMIT)}})
    blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                               "text": bounded(f"*{action_heading(finding)}*\n{escape(finding.action)}", TEXT_LIMIT)}})
    links = console_links(finding, region)
    if links:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": bounded("*Links* " + " · ".join(_link(u, label) for label, u in links), TEXT_LIMIT)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": bounded(
        f"{escape(delivery.reason)} · dedup key {_code(finding.dedup_key)} · first seen {escape(finding.first_seen.isoformat())}",
        TEXT_LIMIT)}]})
    text = bounded(f"[{sev}] {finding.rule} ({stage}): {finding.summary}", TEXT_LIMIT)
    return {"text": escape(text), "blocks": blocks}


def _plain(mrkdwn: str) -> str:
    import re

    text = re.sub(r"<([^|>]+)\|([^>]+)>", r"\2 (\1)", mrkdwn)
    text = re.sub(r"^\*([^*\n]+)\*", r"\1:", text, flags=re.M)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def as_text(payload: dict[str, Any]) -> str:
    """The blocks of a payload as a reader would see them in Slack, in plain text (links as ``label (url)``)."""
    lines: list[str] = []
    for block in payload.get("blocks", []):
        kind = block.get("type")
        if kind == "header":
            lines.append(f"# {block['text']['text']}")
        elif kind == "section":
            if "text" in block:
                lines.append(_plain(block["text"]["text"]))
            for field in block.get("fields", []):
                name, _, value = field["text"].partition("\n")
                lines.append(f"{name.strip('*')}: {_plain(value)}")
        elif kind == "context":
            lines.append(" ".join(_plain(e.get("text", "")) for e in block.get("elements", [])))
    return "\n".join(lines)
