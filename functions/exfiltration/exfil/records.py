"""What a CloudTrail record says: who (principal, session, human or not), with what tool, from where."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

# (substring of the user agent, family). First match wins; order matters.
_CLIENTS: tuple[tuple[str, str], ...] = (
    ("aws-cli/", "aws-cli"),
    ("databricks-cli", "databricks-cli"),
    ("databricks-sdk", "databricks-sdk"),
    ("rclone", "rclone"),
    ("s3 browser", "s3-browser"),
    ("cyberduck", "cyberduck"),
    ("curl/", "curl"),
    ("wget/", "wget"),
    ("[s3console", "console"),
    ("console.amazonaws.com", "console"),
    ("aws internal", "aws-internal"),
    ("boto3/", "boto3"),
    ("botocore/", "boto3"),
    ("aws-sdk-java", "sdk-java"),
    ("aws-sdk-go", "sdk-go"),
    ("aws-sdk-js", "sdk-js"),
    ("aws-sdk-", "sdk-other"),
    ("hadoop", "hadoop-s3a"),
    ("mozilla/", "browser"),
)
_WORKSTATION_OS = ("darwin", "windows", "macos", "mac os")


@lru_cache(maxsize=4096)
def is_public_ip(value: str | None) -> bool:
    try:
        return ipaddress.ip_address(value or "").is_global
    except ValueError:
        return False  # "AWS Internal", "s3.amazonaws.com": not an address


@lru_cache(maxsize=4096)
def client_family(user_agent: str | None) -> str:
    """aws-cli, boto3, boto3@workstation (boto3 from macOS/Windows), databricks-cli, rclone, curl, ..."""
    if not user_agent:
        return "unknown"
    ua = user_agent.lower()
    if ua.endswith(".amazonaws.com") and " " not in ua:
        return "aws-service"
    for needle, family in _CLIENTS:
        if needle in ua:
            if family == "boto3" and any(os_name in ua for os_name in _WORKSTATION_OS):
                return "boto3@workstation"
            return family
    return "other:" + ua.split("/", 1)[0].split(" ", 1)[0][:40]


def principal_of(record: dict[str, Any]) -> tuple[str | None, str | None]:
    """(principal ARN, session name): the session issuer for assumed roles, else the identity itself."""
    ui = record.get("userIdentity") or {}
    kind = ui.get("type")
    if kind in ("AssumedRole", "FederatedUser"):
        issuer = ((ui.get("sessionContext") or {}).get("sessionIssuer") or {}).get("arn")
        arn = ui.get("arn") or ""
        session = arn.rsplit("/", 1)[-1] if "/" in arn else None
        return issuer or arn or ui.get("principalId"), session
    if kind == "AWSService":
        return ui.get("invokedBy") or "aws-service", None
    return ui.get("arn") or ui.get("principalId") or kind, None


def is_human(record: dict[str, Any], service_globs: tuple[str, ...]) -> bool:
    """Humans: root, IAM users, SSO/SAML/web-identity sessions, console use. Service principals are not."""
    ui = record.get("userIdentity") or {}
    kind = ui.get("type")
    if kind == "AWSService" or ui.get("invokedBy"):
        return False
    principal, session = principal_of(record)
    if principal and any(fnmatchcase(principal, g) for g in service_globs):
        return False
    if kind in ("Root", "IAMUser", "SAMLUser", "WebIdentityUser", "IdentityCenterUser"):
        return True
    if kind in ("AssumedRole", "FederatedUser"):
        role = (principal or "").rsplit("/", 1)[-1]
        if role.startswith("AWSReservedSSO_") or (session and "@" in session):
            return True
        ctx = ui.get("sessionContext") or {}
        if ctx.get("webIdFederationData", {}).get("federatedProvider"):
            return True
        return client_family(record.get("userAgent")) in ("console", "browser")
    return False


def in_cidrs(value: str | None, cidrs: tuple[Any, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(value or "")
    except ValueError:
        return False
    return any(addr in net for net in cidrs)


_EPOCH_CACHE: dict[str, int] = {}


def event_minute(record: dict[str, Any]) -> int:
    """Epoch minute of eventTime (``2026-11-22T08:01:02Z``); cached per distinct second-less prefix."""
    ts = record.get("eventTime") or ""
    key = ts[:16]
    minute = _EPOCH_CACHE.get(key)
    if minute is None:
        try:
            minute = int(datetime.fromisoformat(key + ":00+00:00").timestamp()) // 60
        except ValueError:
            minute = -1
        if len(_EPOCH_CACHE) > 100_000:
            _EPOCH_CACHE.clear()
        _EPOCH_CACHE[key] = minute
    return minute

