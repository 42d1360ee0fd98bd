"""Bucket posture: each managed bucket held to its stage's security baseline (``stages.<name>.posture``).

Read (:class:`PostureReader`: encryption, public access block, bucket policy, logging; versioning
and Object Lock come from the retention read) -> compare with the baseline (:func:`plan`, pure)
-> typed actions, carried out or, in dry run, described by the layer's executor. Every change
only tightens: public access flags already on stay on, versioning is enabled and never
suspended, the TLS-only statement is merged into the bucket policy without touching any other
statement, and logging is set, never removed. Findings are ``posture.*`` with the before and
after state. The account-level public access block is read and reported
(``posture.account-public-access``), never changed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from stage_policy.actions import Action, Clients, Decision
from stage_policy.errors import is_code
from stage_policy.findings import Finding
from stage_policy.model import Posture, Retention

#: The Sid of the statement Stagewarden merges into a bucket policy.
TLS_SID = "StagewardenDenyInsecureTransport"
#: S3's limit on the size of a bucket policy.
POLICY_LIMIT = 20 * 1024
NO_ENCRYPTION = ("ServerSideEncryptionConfigurationNotFoundError",)
NO_BLOCK = ("NoSuchPublicAccessBlockConfiguration",)
NO_POLICY = ("NoSuchBucketPolicy",)
BLOCK_KEYS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
KMS = ("aws:kms", "aws:kms:dsse")
PUBLIC_GROUPS = ("AllUsers", "AuthenticatedUsers")


@dataclass
class PostureState:
    """What posture reads of one bucket (three GETs, a fourth for logging when the baseline names a target;
    versioning and Object Lock are the retention read's)."""

    encryption: dict[str, Any] | None  # ApplyServerSideEncryptionByDefault of the first rule, None: none
    block: dict[str, bool] | None  # PublicAccessBlockConfiguration, None: none
    policy: str | None  # the bucket policy text, None: none
    logging: dict[str, Any] | None  # LoggingEnabled, None: off (or not read)
    versioning: str = "Off"
    lock_enabled: bool = False
    #: False: the baseline names no access-logging target, so GetBucketLogging was not called (one read fewer)
    logging_read: bool = True
    #: ACL grants to everyone (AllUsers / AuthenticatedUsers), "<group> <permission>"; None: the ACL was not read
    #: (it is read when the block does not ignore public ACLs, or after a PutBucketAcl)
    public_grants: list[str] | None = None


class PostureReader:
    """Reads the encryption, public access block, bucket policy and logging of one bucket."""

    permissions = ("s3:GetEncryptionConfiguration", "s3:GetBucketPublicAccessBlock", "s3:GetBucketPolicy",
                   "s3:GetBucketLogging", "s3:GetBucketAcl")

    def __init__(self, s3: Any):
        self._s3 = s3
        #: The region the buckets are read in (a named KMS alias is written as that region's alias ARN).
        self.region: str | None = getattr(getattr(s3, "meta", None), "region_name", None)

    def read(self, bucket: str, versioning: str = "Off", lock_enabled: bool = False, logging: bool = True) -> PostureState:
        """``logging=False`` when the baseline checks no access logging: GetBucketLogging is skipped."""
        return PostureState(self.encryption(bucket), self.block(bucket), self.policy(bucket),
                            self.logging(bucket) if logging else None, versioning, lock_enabled, logging)

    def encryption(self, bucket: str) -> dict[str, Any] | None:
        try:
            rules = self._s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"].get("Rules", [])
        except Exception as exc:
            if is_code(exc, *NO_ENCRYPTION):
                return None
            raise
        defaults = [dict(r.get("ApplyServerSideEncryptionByDefault") or {}) for r in rules if isinstance(r, dict)]
        return _weakest(defaults)

    def block(self, bucket: str) -> dict[str, bool] | None:
        try:
            config = self._s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        except Exception as exc:
            if is_code(exc, *NO_BLOCK):
                return None
            raise
        return {k: bool(config.get(k)) for k in BLOCK_KEYS}

    def policy(self, bucket: str) -> str | None:
        try:
            return self._s3.get_bucket_policy(Bucket=bucket)["Policy"]
        except Exception as exc:
            if is_code(exc, *NO_POLICY):
                return None
            raise

    def logging(self, bucket: str) -> dict[str, Any] | None:
        enabled = self._s3.get_bucket_logging(Bucket=bucket).get("LoggingEnabled")
        return dict(enabled) if enabled else None

    def public_grants(self, bucket: str) -> list[str]:
        """The ACL's grants to everyone or to every AWS account ("AllUsers READ", ...)."""
        grants = self._s3.get_bucket_acl(Bucket=bucket).get("Grants") or []
        out = []
        for grant in grants:
            grantee = grant.get("Grantee") if isinstance(grant, dict) else None
            uri = grantee.get("URI") if isinstance(grantee, dict) else None
            if isinstance(uri, str) and uri.rstrip("/").rsplit("/", 1)[-1] in PUBLIC_GROUPS:
                out.append(f"{uri.rstrip('/').rsplit('/', 1)[-1]} {grant.get('Permission')}")
        return sorted(set(out))


def _weakest(defaults: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One rule's default encryption. S3 takes one rule; should several come back, they are read as the weakest
    (none < AES256 < KMS), and KMS rules naming different keys as a key no policy names (fail closed)."""
    defaults = [d for d in defaults if d.get("SSEAlgorithm")] if all(d.get("SSEAlgorithm") for d in defaults) else []
    if not defaults:
        return None
    distinct = [d for i, d in enumerate(defaults) if d not in defaults[:i]]
    if len(distinct) == 1:
        return distinct[0]
    plain = [d for d in distinct if d["SSEAlgorithm"] not in KMS]
    if plain:
        return plain[0]
    keys = sorted({str(d.get("KMSMasterKeyID") or "aws/s3") for d in distinct})
    return {"SSEAlgorithm": distinct[0]["SSEAlgorithm"], "KMSMasterKeyID": "several keys: " + ", ".join(keys)[:300]}


class AccountBlockReader:
    """The account-level S3 Block Public Access settings (read and reported, never changed)."""

    permissions = ("s3:GetAccountPublicAccessBlock",)

    def __init__(self, s3control: Any, account_id: str):
        self._s3control, self.account_id = s3control, account_id

    def read(self) -> dict[str, bool] | None:
        try:
            config = self._s3control.get_public_access_block(AccountId=self.account_id)["PublicAccessBlockConfiguration"]
        except Exception as exc:
            if is_code(exc, *NO_BLOCK):
                return None
            raise
        return {k: bool(config.get(k)) for k in BLOCK_KEYS}


# ---------------------------------------------------------------- the bucket policy
def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _covers(pattern: Any, arn: str) -> bool:
    """IAM's resource match: ``*`` any run of characters, ``?`` one character, nothing else special."""
    if not isinstance(pattern, str):
        return False
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, arn, re.DOTALL) is not None


#: Object keys a TLS-only statement must cover (the empty key stands for "every key": ``bucket/*`` covers it,
#: ``bucket/public/*`` or ``bucket/?*`` do not).
_PROBE_KEYS = ("", "a", "raw/2026/12/part-0001.csv")


def _covers_bucket(resources: Any, bucket: str) -> bool:
    """The statement's Resource names the bucket and every object in it (a wildcard covering them counts)."""
    patterns = _as_list(resources)
    return any(_covers(p, f"arn:aws:s3:::{bucket}") for p in patterns) and all(
        any(_covers(p, f"arn:aws:s3:::{bucket}/{key}") for p in patterns) for key in _PROBE_KEYS)


def is_tls_deny(statement: Any, bucket: str | None = None) -> bool:
    """A statement denying every principal every S3 action without TLS (``aws:SecureTransport`` false).

    Nothing may narrow it: no condition beside ``aws:SecureTransport`` (conditions are ANDed, so
    ``StringEquals aws:PrincipalAccount`` would deny only that account's plain-HTTP requests), no
    ``NotResource`` / ``NotAction`` / ``NotPrincipal``, and, with ``bucket`` given, a Resource that
    covers the bucket and every object in it (a statement on the bucket ARN alone leaves every
    GetObject over HTTP allowed; one on another bucket protects nothing here).
    """
    if not isinstance(statement, dict) or statement.get("Effect") != "Deny":
        return False
    if any(k in statement for k in ("NotResource", "NotAction", "NotPrincipal")):
        return False
    principal = statement.get("Principal")
    if not (principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS")))):
        return False
    if not any(a in ("s3:*", "*") for a in _as_list(statement.get("Action", []))):
        return False
    if bucket is not None and not _covers_bucket(statement.get("Resource"), bucket):
        return False
    condition = statement.get("Condition") or {}
    if not isinstance(condition, dict) or len(condition) != 1:
        return False
    [(operator, keys)] = condition.items()
    if operator not in ("Bool", "BoolIfExists") or not isinstance(keys, dict) or list(keys) != ["aws:SecureTransport"]:
        return False
    values = keys["aws:SecureTransport"]
    return any(str(v).lower() == "false" for v in _as_list(values if values is not None else []))


def tls_statement(bucket: str) -> dict[str, Any]:
    return {"Sid": TLS_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def merge_tls(bucket: str, policy: str | None) -> dict[str, Any]:
    """The policy with the TLS-only statement merged in: other statements kept as they are, in order.

    Either Statement shape (one object or a list) is read; the result is a list. A statement
    with Stagewarden's Sid that is no longer a TLS deny is replaced; nothing else is.
    """
    doc = json.loads(policy) if policy else {"Version": "2012-10-17"}
    statements = [s for s in _as_list(doc.get("Statement", [])) if not (isinstance(s, dict) and s.get("Sid") == TLS_SID)]
    return {**doc, "Statement": [*statements, tls_statement(bucket)]}


def _document(policy: str | None) -> dict[str, Any] | None:
    """The bucket policy as a JSON object; None when it is not one (S3 refuses such policies; an emulator may not)."""
    if not policy:
        return None
    try:
        doc = json.loads(policy)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def has_tls(policy: str | None, bucket: str | None = None) -> bool:
    if not policy:
        return False
    try:
        doc = json.loads(policy)
    except (ValueError, RecursionError):
        return False
    if not isinstance(doc, dict):
        return False
    return any(is_tls_deny(s, bucket) for s in _as_list(doc.get("Statement", [])))


# ---------------------------------------------------------------- actions
class PostureChanged(RuntimeError):
    """The setting changed between planning and writing; its own event re-plans it."""


@dataclass(frozen=True)
class StageGuarded(Action):
    """A posture write that first re-reads the bucket's stage tag (one GET, only when something is written).

    ``stage_tag`` is (tag key, the value the plan saw, None: no tag). A bucket untagged or moved to
    another stage since the plan was made is not written: :class:`PostureChanged` fails the action,
    the invocation is retried and re-plans it from its new stage (unmanaged: nothing to do).
    """

    stage_tag: tuple[str, str | None] | None = None

    def _check_stage(self, s3: Any) -> None:
        if self.stage_tag is None:
            return
        key, seen = self.stage_tag
        try:
            tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=self.target).get("TagSet", [])}
        except Exception as exc:
            if not is_code(exc, "NoSuchTagSet"):
                raise
            tags = {}
        if tags.get(key) != seen:
            raise PostureChanged(f"the {key} tag of {self.target} changed since it was read ({seen!r} -> "
                                 f"{tags.get(key)!r}); not written (re-planned on its PutBucketTagging event)")


@dataclass(frozen=True)
class PutEncryption(StageGuarded):
    """Default encryption to the stage's baseline (PutBucketEncryption)."""

    kind: ClassVar[str] = "put-encryption"
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetBucketTagging", "s3:PutEncryptionConfiguration")

    algorithm: str = "aws:kms"
    kms_key: str | None = None

    def _what(self) -> str:
        return f"default encryption {self.algorithm}" + (f" with key {self.kms_key}" if self.kms_key else "")

    def describe(self) -> str:
        return f"set {self._what()} on {self.target}"

    def apply(self, clients: Clients) -> str:
        default: dict[str, Any] = {"SSEAlgorithm": self.algorithm}
        if self.kms_key:
            default["KMSMasterKeyID"] = self.kms_key
        rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": default}
        if self.algorithm in KMS:
            rule["BucketKeyEnabled"] = True
        s3 = clients("s3")
        self._check_stage(s3)
        s3.put_bucket_encryption(Bucket=self.target, ServerSideEncryptionConfiguration={"Rules": [rule]})
        return f"set {self._what()} on {self.target}"


@dataclass(frozen=True)
class PutPublicAccessBlock(StageGuarded):
    """The bucket's public access block with every required flag on (flags already on stay on)."""

    kind: ClassVar[str] = "put-public-access-block"
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetBucketTagging", "s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock")

    block: tuple[tuple[str, bool], ...] = ()

    def describe(self) -> str:
        on = [k for k, v in self.block if v]
        return f"put the public access block on {self.target} ({', '.join(on)} on)"

    def apply(self, clients: Clients) -> str:
        # re-read first: a flag its owner turned on since the plan was made stays on (a stale plan never loosens)
        s3 = clients("s3")
        self._check_stage(s3)
        try:
            now = s3.get_public_access_block(Bucket=self.target)["PublicAccessBlockConfiguration"]
        except Exception as exc:
            if not is_code(exc, *NO_BLOCK):
                raise
            now = {}
        block = {k: bool(v) or bool(now.get(k)) for k, v in self.block}
        s3.put_public_access_block(Bucket=self.target, PublicAccessBlockConfiguration=block)
        return f"put the public access block on {self.target} ({', '.join(k for k, v in block.items() if v)} on)"


@dataclass(frozen=True)
class PutTlsPolicy(StageGuarded):
    """Merge the TLS-only deny statement into the bucket policy, if the policy is still the one planned from."""

    kind: ClassVar[str] = "put-tls-policy"
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetBucketTagging", "s3:GetBucketPolicy", "s3:PutBucketPolicy")

    policy: str = ""
    expected: str | None = None

    def describe(self) -> str:
        return f"merge the TLS-only deny statement ({TLS_SID}) into the bucket policy of {self.target}"

    def apply(self, clients: Clients) -> str:
        s3 = clients("s3")
        self._check_stage(s3)
        try:
            current = s3.get_bucket_policy(Bucket=self.target)["Policy"]
        except Exception as exc:
            if not is_code(exc, *NO_POLICY):
                raise
            current = None
        if _norm(current) != _norm(self.expected):
            raise PostureChanged(f"the bucket policy of {self.target} changed since it was read; not overwritten "
                                 "(re-planned on its event)")
        s3.put_bucket_policy(Bucket=self.target, Policy=self.policy)
        return f"merged the TLS-only deny statement ({TLS_SID}) into the bucket policy of {self.target}"


def _norm(policy: str | None) -> Any:
    if policy is None:
        return None
    try:
        return json.loads(policy)
    except ValueError:
        return policy


@dataclass(frozen=True)
class PutLogging(StageGuarded):
    """Server access logging to the stage's target bucket and prefix."""

    kind: ClassVar[str] = "put-logging"
    permissions: ClassVar[tuple[str, ...]] = ("s3:GetBucketTagging", "s3:PutBucketLogging")

    target_bucket: str = ""
    target_prefix: str = ""

    def describe(self) -> str:
        return f"send the access logs of {self.target} to s3://{self.target_bucket}/{self.target_prefix}"

    def apply(self, clients: Clients) -> str:
        s3 = clients("s3")
        self._check_stage(s3)
        s3.put_bucket_logging(Bucket=self.target, BucketLoggingStatus={
            "LoggingEnabled": {"TargetBucket": self.target_bucket, "TargetPrefix": self.target_prefix}})
        return f"sent the access logs of {self.target} to s3://{self.target_bucket}/{self.target_prefix}"


ACTIONS: tuple[type[Action], ...] = (PutEncryption, PutPublicAccessBlock, PutTlsPolicy, PutLogging)


# ---------------------------------------------------------------- the planner (pure)
@dataclass
class Check:
    """One baseline check that failed: its rule, severity, before and after state, and the action (if any)."""

    rule: str
    severity: str
    summary: str
    before: Any
    after: Any
    actions: list[Action] = field(default_factory=list)


def key_matches(actual: str | None, wanted: str, account: str | None = None) -> bool:
    """The bucket's key is the one named: the same ARN, id or alias, or an ARN ending in the id or alias named.

    An alias is a name any account can take: with ``account`` known (the function's own), an ARN
    naming the alias in another account (``arn:aws:kms:…:999999999999:alias/lab-data``, a key its
    owner can disable or read with) does not match ``alias/lab-data``.
    """
    if not actual:
        return False
    if actual == wanted:
        return True
    if wanted.startswith("arn:") or not actual.endswith(("/" + wanted, ":" + wanted)):
        return False
    parts = actual.split(":")
    return account is None or (len(parts) > 5 and parts[0] == "arn" and parts[4] == account)


def qualified(kms_key: str, account: str | None, region: str | None) -> str:
    """``alias/x`` as ``arn:aws:kms:<region>:<account>:alias/x`` when both are known.

    S3 resolves a bare alias in the *requester's* account, so an object put by another account's
    role would be encrypted under that account's ``alias/x``; the ARN pins it to the bucket owner's.
    """
    if kms_key.startswith("alias/") and account and region:
        return f"arn:aws:kms:{region}:{account}:{kms_key}"
    return kms_key


def plan(bucket: str, posture: Posture, state: PostureState, retention: Retention | None = None,
         account: str | None = None, region: str | None = None,
         stage_tag: tuple[str, str | None] | None = None) -> list[Check]:
    """The checks of ``posture`` that ``state`` fails, each with what brings it to baseline.

    ``account`` / ``region``: where the buckets are, when known (a named KMS alias must be that
    account's, and is written as that account's alias ARN). ``stage_tag``: (tag key, value read), re-checked
    by each write (:class:`StageGuarded`).
    """
    from keeper.actions import EnableVersioning

    checks: list[Check] = []
    enc = state.encryption or {}
    algorithm, key = enc.get("SSEAlgorithm"), enc.get("KMSMasterKeyID")
    if posture.encryption is not None:
        accepted = KMS if posture.encryption == "aws:kms" else ("AES256", *KMS)
        ok = algorithm in accepted and (algorithm not in KMS or not posture.kms_key or key_matches(key, posture.kms_key, account))
        if not ok:
            key_to_write = qualified(posture.kms_key, account, region) if posture.kms_key else None
            wanted = {"SSEAlgorithm": posture.encryption} | ({"KMSMasterKeyID": key_to_write} if key_to_write else {})
            why = ("has no default encryption" if not algorithm else
                   f"is encrypted with {algorithm}" + (f" key {key}" if key else "") + f", not {posture.encryption}"
                   + (f" key {posture.kms_key}" if posture.kms_key else ""))
            checks.append(Check("posture.encryption", "high", f"Bucket {bucket} {why}.", state.encryption, wanted,
                                [PutEncryption(bucket, algorithm=posture.encryption, kms_key=key_to_write, stage_tag=stage_tag)]))
    required = posture.public_access.as_config()
    current = state.block or {k: False for k in BLOCK_KEYS}
    off = [k for k in BLOCK_KEYS if required[k] and not current.get(k)]
    if off:
        desired = {k: bool(current.get(k)) or required[k] for k in BLOCK_KEYS}
        why = "has no public access block" if state.block is None else f"has {', '.join(off)} off"
        checks.append(Check("posture.public-access", "critical" if state.block is None else "high",
                            f"Bucket {bucket} {why}.", state.block, desired,
                            [PutPublicAccessBlock(bucket, block=tuple(desired.items()), stage_tag=stage_tag)]))
    if posture.tls_only and not has_tls(state.policy, bucket):
        doc = _document(state.policy)
        if state.policy and doc is None:  # not a JSON object: nothing can be merged into it without guessing
            checks.append(Check("posture.tls", "critical",
                                f"Bucket {bucket} has a bucket policy that is not a JSON object, so no TLS-only deny "
                                "statement could be found or merged: fix it by hand.",
                                {"policy_bytes": len(state.policy.encode()), "tls_only": False}, {"tls_only": True}))
        else:
            merged = merge_tls(bucket, state.policy)
            text = json.dumps(merged, separators=(",", ":"))
            statements = len(_as_list(doc.get("Statement", []))) if doc else 0
            if len(text.encode()) > POLICY_LIMIT:
                checks.append(Check("posture.tls", "critical",
                                    f"Bucket {bucket} has no TLS-only deny statement, and merging one would take its policy "
                                    f"to {len(text.encode())} bytes, past S3's {POLICY_LIMIT}: add it by hand.",
                                    {"statements": statements, "tls_only": False}, {"tls_only": True, "bytes": len(text.encode())}))
            else:
                checks.append(Check("posture.tls", "high", f"Bucket {bucket} does not deny requests without TLS.",
                                    {"statements": statements, "tls_only": False},
                                    {"statements": len(merged["Statement"]), "tls_only": True, "added": TLS_SID},
                                    [PutTlsPolicy(bucket, policy=text, expected=state.policy, stage_tag=stage_tag)]))
    permanent = retention is not None and retention.permanent  # retention already holds permanent stages to versioning
    if posture.versioning and state.versioning != "Enabled" and not permanent:
        checks.append(Check("posture.versioning", "high", f"Bucket {bucket} has versioning {state.versioning.lower()}.",
                            {"versioning": state.versioning}, {"versioning": "Enabled"}, [EnableVersioning(bucket)]))
    logs = posture.access_logging
    if logs is not None:
        have = state.logging or {}
        if have.get("TargetBucket") != logs.target_bucket or (have.get("TargetPrefix") or "") != logs.target_prefix:
            wanted = {"TargetBucket": logs.target_bucket, "TargetPrefix": logs.target_prefix}
            why = "has access logging off" if not state.logging else \
                f"logs to s3://{have.get('TargetBucket')}/{have.get('TargetPrefix') or ''}"
            checks.append(Check("posture.logging", "medium",
                                f"Bucket {bucket} {why}, not s3://{logs.target_bucket}/{logs.target_prefix}.",
                                state.logging, wanted,
                                [PutLogging(bucket, target_bucket=logs.target_bucket, target_prefix=logs.target_prefix, stage_tag=stage_tag)]))
    if state.public_grants:
        ignored = bool((state.block or {}).get("IgnorePublicAcls"))
        checks.append(Check(
            "posture.public-acl", "high" if ignored else "critical",
            f"Bucket {bucket}'s ACL grants {', '.join(state.public_grants[:4])}"
            + (": ignored while IgnorePublicAcls is on, public again the moment it is lifted; remove the grant "
               "(or set Object Ownership to BucketOwnerEnforced)." if ignored else
               ", and the public access block does not ignore it: the bucket is public. Remove the grant."),
            {"public_grants": state.public_grants[:10], "ignore_public_acls": ignored}, {"public_grants": []}))
    immutable = retention is not None and retention.immutable  # retention reports those (retention.object-lock-missing)
    if posture.object_lock and not immutable and not state.lock_enabled:
        checks.append(Check("posture.object-lock", "medium", f"Bucket {bucket} has no Object Lock configuration.",
                            {"object_lock_enabled": False}, {"object_lock_enabled": True}))
    return checks


def decisions(bucket: str, stage: str, checks: list[Check], base: dict[str, Any], principal: str | None = None,
              trigger: str | None = None) -> list[Decision]:
    """One decision per failed check: its ``posture.*`` finding (before and after) and its actions."""
    out = []
    for c in checks:
        by = f" (after {trigger} by {principal})" if trigger and principal else (f" (after {trigger})" if trigger else "")
        out.append(Decision(Finding(
            rule=c.rule, severity=c.severity, stage=stage, resource=f"arn:aws:s3:::{bucket}", principal=principal,
            summary=c.summary[:900] + by[:90], evidence=base | {"before": c.before, "after": c.after, "trigger": trigger}),
            list(c.actions), stage))
    return out


def account_decision(block: dict[str, bool] | None, account: str) -> Decision | None:
    """``posture.account-public-access`` when the account-level block does not have all four settings on."""
    off = [k for k in BLOCK_KEYS if not (block or {}).get(k)]
    if not off:
        return None
    why = "has no account-level public access block" if block is None else f"has {', '.join(off)} off at account level"
    return Decision(Finding(
        rule="posture.account-public-access", severity="medium", stage=None, resource=f"arn:aws:s3:::account/{account}",
        summary=f"Account {account} {why}: each stage bucket's own block is all that stands in the way.",
        evidence={"account": account, "before": block, "after": {k: True for k in BLOCK_KEYS}}), [], None)
