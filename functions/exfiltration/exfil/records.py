"""What a CloudTrail record says: who acted (the session, not the role), with what tool, from where, when.

Every reader of a record field here checks its type: a record that breaks an assumption
raises :class:`Malformed`, which the detector counts against that record alone.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timezone
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
#: EC2 names an instance profile's sessions after the instance.
_INSTANCE_SESSION = re.compile(r"^i-[0-9a-f]{8,17}$")
_HUMAN_KINDS = frozenset({"Root", "IAMUser", "SAMLUser", "WebIdentityUser", "IdentityCenterUser"})


class Malformed(ValueError):
    """A record that breaks an assumption (a field of an unexpected type, no usable eventTime...)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The acting identity. For assumed roles: account + role + session name (+ sourceIdentity).

    ``key`` is what windows, learning, de-duplication and findings are keyed by;
    ``principal`` is the session ARN for role sessions (the ARN of the user otherwise),
    ``role_arn`` the session's role.
    """

    key: str
    principal: str
    kind: str
    account: str | None = None
    role_arn: str | None = None
    role_name: str | None = None
    role_id: str | None = None
    session: str | None = None
    source_identity: str | None = None

    @property
    def userid(self) -> str | None:
        """What IAM puts in ``aws:userid`` for this session: ``<role id>:<session name>``."""
        return f"{self.role_id}:{self.session}" if self.role_id and self.session is not None else None

    @property
    def instance(self) -> bool:
        """Credentials of an EC2 instance profile (the session is named after the instance)."""
        return self.role_name is not None and bool(self.session) and bool(_INSTANCE_SESSION.match(self.session or ""))

    @property
    def name(self) -> str:
        """Short, for summaries: ``role/session`` or the principal's last part."""
        if self.role_name is not None and self.session is not None:
            return f"{self.role_name}/{self.session}"
        return self.principal.rsplit("/", 1)[-1] if "/" in self.principal else self.principal

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"identity": self.key, "identity_type": self.kind, "account": self.account}
        if self.role_arn is not None:
            out.update(role_arn=self.role_arn, session_name=self.session, role_id=self.role_id)
        if self.source_identity is not None:
            out["source_identity"] = self.source_identity
        return out


def _text(value: Any, field: str) -> str | None:
    if value is None or value.__class__ is str:
        return value
    raise Malformed(f"{field} is a {type(value).__name__}, not text")


def identity_of(ui: Any) -> Identity:
    """The acting identity of a record's ``userIdentity``. Raises :class:`Malformed`."""
    if ui.__class__ is not dict:
        raise Malformed("userIdentity is missing or not an object")
    kind = _text(ui.get("type"), "userIdentity.type") or "Unknown"
    arn = _text(ui.get("arn"), "userIdentity.arn")
    account = _text(ui.get("accountId"), "userIdentity.accountId")
    ctx = ui.get("sessionContext")
    if ctx is not None and ctx.__class__ is not dict:
        raise Malformed("userIdentity.sessionContext is not an object")
    ctx = ctx or {}
    source = _text(ctx.get("sourceIdentity"), "userIdentity.sessionContext.sourceIdentity")
    if kind == "AssumedRole":
        issuer = ctx.get("sessionIssuer") or {}
        if issuer.__class__ is not dict:
            raise Malformed("userIdentity.sessionContext.sessionIssuer is not an object")
        principal_id = _text(ui.get("principalId"), "userIdentity.principalId") or ""
        if not arn or ":assumed-role/" not in arn:
            raise Malformed("an AssumedRole userIdentity without an assumed-role ARN")
        head, _, rest = arn.partition(":assumed-role/")
        role_name, _, session = rest.partition("/")
        account = account or head.rsplit(":", 1)[-1] or None
        role_arn = _text(issuer.get("arn"), "sessionIssuer.arn") or f"arn:aws:iam::{account}:role/{role_name}"
        role_id = _text(issuer.get("principalId"), "sessionIssuer.principalId") or principal_id.partition(":")[0] or None
        key = arn if source is None else f"{arn}|sourceIdentity={source}"
        return Identity(key, arn, kind, account, role_arn, role_name, role_id, session, source)
    if kind == "AWSService":
        by = _text(ui.get("invokedBy"), "userIdentity.invokedBy") or "aws-service"
        return Identity(by, by, kind, account)
    principal = arn or _text(ui.get("principalId"), "userIdentity.principalId") or f"{kind}:{account or 'unknown'}"
    key = principal if source is None else f"{principal}|sourceIdentity={source}"
    return Identity(key, principal, kind, account, source_identity=source)


def human_by_identity(ident: Identity, ui: dict[str, Any], service: bool) -> bool | None:
    """Is the identity a person? None: it depends on the client (console and browsers are people)."""
    if service or ident.kind == "AWSService" or ui.get("invokedBy"):
        return False
    if ident.kind in _HUMAN_KINDS:
        return True
    if ident.kind in ("AssumedRole", "FederatedUser"):
        if (ident.role_name or "").startswith("AWSReservedSSO_") or "@" in (ident.session or ""):
            return True
        web = (ui.get("sessionContext") or {}).get("webIdFederationData")
        if web.__class__ is dict and web.get("federatedProvider"):
            return True
        return None
    return False


@lru_cache(maxsize=4096)
def is_public_ip(value: str | None) -> bool:
    try:
        return ipaddress.ip_address(value or "").is_global
    except ValueError:
        return False  # "AWS Internal", "s3.amazonaws.com": not an address


@lru_cache(maxsize=4096)
def client_family(user_agent: str | None) -> str:
    """aws-cli, boto3, boto3@workstation (boto3 from macOS/Windows), databricks-cli, rclone, curl, ..."""
    if not user_agent or user_agent.__class__ is not str:
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


def in_cidrs(value: str | None, cidrs: tuple[Any, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(value or "")
    except ValueError:
        return False
    return any(addr in net for net in cidrs)


_EPOCH_CACHE: dict[str, int] = {}


def event_minute(ts: Any) -> int:
    """Epoch minute of an eventTime (``2026-11-22T08:01:02Z``); cached per distinct minute prefix.

    A record without a usable eventTime is :class:`Malformed`: never dated 1970.
    """
    if ts.__class__ is not str or len(ts) < 16:
        raise Malformed("eventTime is missing or not a time")
    key = ts[:16]
    minute = _EPOCH_CACHE.get(key)
    if minute is None:
        try:
            minute = int(datetime.fromisoformat(key + ":00+00:00").timestamp()) // 60
        except ValueError:
            raise Malformed(f"eventTime {ts[:40]!r} is not an ISO-8601 time") from None
        if minute <= 0:
            raise Malformed(f"eventTime {ts[:40]!r} is not a plausible time")
        if len(_EPOCH_CACHE) > 100_000:
            _EPOCH_CACHE.clear()
        _EPOCH_CACHE[key] = minute
    return minute


def event_time(ts: Any) -> datetime:
    """The eventTime as a datetime; raises :class:`Malformed` like :func:`event_minute`."""
    event_minute(ts)
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return datetime.fromtimestamp(event_minute(ts) * 60, timezone.utc)


def as_bytes(value: Any) -> int:
    """bytesTransferredOut as a non-negative int (CloudTrail writes a number; some exports a float or text)."""
    if value.__class__ is int and value >= 0:
        return value
    if value is None or value == "":
        return 0
    try:
        n = int(float(value))
    except (TypeError, ValueError, OverflowError):
        raise Malformed(f"bytesTransferredOut {str(value)[:40]!r} is not a number") from None
    if n < 0:
        raise Malformed("bytesTransferredOut is negative")
    return n


def copy_source(value: Any) -> tuple[str, str, str | None]:
    """``x-amz-copy-source`` (``bucket/key?versionId=v``, URL-encoded, maybe with a leading slash)."""
    from urllib.parse import unquote

    if value.__class__ is not str or not value.strip("/"):
        raise Malformed("x-amz-copy-source is missing or not text")
    path, _, query = value.lstrip("/").partition("?")
    bucket, _, key = unquote(path).partition("/")
    version = None
    for part in query.split("&"):
        name, _, val = part.partition("=")
        if name == "versionId" and val:
            version = unquote(val)
    if bucket.startswith("arn:"):  # access point ARNs: arn:aws:s3:region:acct:accesspoint/name/object/key
        bucket, _, key = (bucket + "/" + key).partition("/object/")
    return bucket, key, version
