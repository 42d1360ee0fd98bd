"""The detection engine: records in, decisions (finding + containment actions) out.

One engine for the Lambda (CloudTrail log files and management events) and the offline
scanner. It keeps no AWS state itself: read windows and learned client tools go through a
:class:`~exfil.windows.WindowStore` (in memory for the scanner, DynamoDB in the Lambda,
one write per (stage, identity) per file), active break-glass grants through a lookup.

* **Identity is the session** (:func:`exfil.records.identity_of`): counting, learning,
  de-duplication, findings and containment are per account + role + session name (+
  ``sourceIdentity``); a finding names only the session that did what it reports.
* **Every read path counts**: GetObject, SelectObjectContent, GetObjectTorrent, and
  CopyObject / UploadPartCopy out of a stage into a bucket of another (or no) stage.
  Volume is distinct objects and bytes transferred out, per sliding window and per 24 hours.
* **Poison-proof**: each record is processed on its own; a record that breaks an
  assumption is counted (by index) in the file's one ``input.malformed`` finding and
  every other record is still processed.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone
from itertools import islice
from typing import Any, Callable

from exfil.actions import from_undo
from exfil.contain import containment
from exfil.deployment import Deployment
from exfil.reader import ReadStats
from exfil.records import (
    Identity, Malformed, as_bytes, client_family, copy_source, event_minute, event_time, human_by_identity, identity_of,
    in_cidrs, is_public_ip,
)
from exfil.rules import RuleContext, Verdict
from exfil.singles import SINGLE_EVENT_NAMES, SINGLE_EVENT_RULES
from exfil.windows import LATENESS_MINUTES, SEEN_CAP, Delta, MemoryWindowStore, WindowState, WindowStore, learn, prune

from stage_policy.actions import Action, Decision
from stage_policy.findings import Finding
from stage_policy.mapping import stage_for_bucket, stage_for_role
from stage_policy.model import Policy

__all__ = ["Decision", "Detector", "MemoryWindowStore", "WindowState"]

SAMPLE = 10
#: buckets and source addresses of an identity's first events in a file are kept as evidence
SAMPLE_EVENTS = 32
#: record indexes listed in an input.malformed finding (the count is always exact)
MALFORMED_INDEXES = 100
#: With windows in memory (the scanner), prune an identity's window after this many minutes of its reads: memory
#: stays bounded, and ``total`` (which decides whether to look closer) spans at most a day plus this.
PRUNE_MINUTES = 360
#: A file's reads by one identity spanning more than this are peaked over the minutes with reads only (bounded work)
MAX_SPAN_MINUTES = 1440
_EMPTY: dict[str, Any] = {}
_MISSING = object()
READS = frozenset({"GetObject", "SelectObjectContent", "GetObjectTorrent"})
COPIES = frozenset({"CopyObject", "UploadPartCopy"})
#: S3 calls that change data or its settings: on a read-only stage a human making one is flagged (access.prod-human)
WRITE_PREFIXES = ("Put", "Delete", "Copy", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload", "RestoreObject")
_REVOKING_RULES = frozenset({"exfil.bulk-download", "exfil.daily-budget", "exfil.outside-vpce", "exfil.presigned-url",
                             "exfil.copy-out", "access.prod-human", "exfil.instance-credentials"})


class _Agg:
    """What one file shows of one identity on one stage. Cheap to create: most files hold many.

    ``objs`` and ``minutes`` are the file's own (merged into the window store at ``finish``),
    or, with a store that keeps its states in memory (the scanner), the identity's window
    state itself: the hot loop then counts straight into the window and ``finish`` only
    checks it (one merge less per identity and file).
    """

    __slots__ = ("ident", "exempt", "human_base", "state", "objs", "minutes", "new", "reads", "bytes", "first", "last", "events",
                 "ua", "uas", "ip", "ips", "bucket", "buckets", "outside", "outside_ips", "presigned", "human", "copy_out",
                 "copy_dests")

    def __init__(self, ident: Identity, exempt: bool, human_base: bool | None, state: WindowState | None) -> None:
        self.ident = ident
        self.exempt = exempt
        self.human_base = human_base
        self.state = state
        if state is None:
            self.objs: dict[Any, int] = {}
            self.minutes: dict[int, tuple[int, int]] = {}
        else:
            self.objs, self.minutes = state.seen, state.minutes
        self.new = self.reads = self.bytes = self.events = self.outside = self.presigned = self.human = self.copy_out = 0
        self.first = 1 << 62
        self.last = 0
        self.ua = self.ip = self.bucket = _MISSING
        self.uas = self.ips = self.buckets = self.outside_ips = self.copy_dests = None

    def sample_event(self, bucket: Any, ip: Any) -> None:
        if bucket != self.bucket:
            if self.bucket is _MISSING:
                self.bucket = bucket
            else:
                self.more("buckets", bucket)
        if ip != self.ip:
            if self.ip is _MISSING:
                self.ip = ip
            else:
                self.more("ips", ip)

    def more(self, slot: str, value: Any) -> None:
        """A second (third...) distinct user agent, address or bucket: kept as a sample."""
        values = getattr(self, slot)
        if values is None:
            values = set()
            setattr(self, slot, values)
        if len(values) < SAMPLE:
            values.add(value)

    def sample(self, first: Any, more: set[Any] | None) -> list[str]:
        values = ({first} if first is not _MISSING else set()) | (more or set())
        return sorted(str(v) for v in values if v is not None)


def _not_text(ua: Any, ip: Any) -> str:
    field, value = ("userAgent", ua) if ua is not None and ua.__class__ is not str else ("sourceIPAddress", ip)
    return f"{field} is a {type(value).__name__}, not text"


class _InstanceUse:
    """Where an EC2 instance's credentials were used from outside, in one file (samples, bounded)."""

    __slots__ = ("ident", "events", "first", "last", "ips", "endpoints", "calls", "agents", "stage")

    def __init__(self, ident: Identity) -> None:
        self.ident = ident
        self.events, self.first, self.last = 0, 1 << 62, 0
        self.ips: set[str] = set()
        self.endpoints: set[str] = set()
        self.calls: set[str] = set()
        self.agents: set[str] = set()
        self.stage: str | None = None

    def add(self, rec: dict[str, Any], minute: int, vpce: Any) -> None:
        self.events += 1
        self.first, self.last = min(self.first, minute), max(self.last, minute)
        for values, value in ((self.ips, rec.get("sourceIPAddress")), (self.endpoints, vpce),
                              (self.calls, f"{rec.get('eventSource')}:{rec.get('eventName')}"), (self.agents, rec.get("userAgent"))):
            if value and len(values) < SAMPLE:
                values.add(str(value))


#: minutes of 0001-01-01T00:00Z and 9999-12-31T23:59Z: a window ending past them (a record dated 9999-12-31T23:59)
#: is shown at the edge instead of failing the file with "year 10000 is out of range"
_FIRST_MINUTE, _LAST_MINUTE = -62135596800 // 60, 253402300740 // 60


def _iso(minute: int) -> str:
    return _dt(minute).strftime("%Y-%m-%dT%H:%M:00Z")


def _dt(minute: int) -> datetime:
    return datetime.fromtimestamp(min(max(minute, _FIRST_MINUTE), _LAST_MINUTE) * 60, timezone.utc)


class Detector:
    """Feed it one log file (or a batch of management events) at a time; ``finish`` returns decisions."""

    def __init__(self, policy: Policy, windows: WindowStore, grant_active: Callable[[Identity, Any, Any], bool] | None = None,
                 bucket_tags: Callable[[str], dict[str, str]] | None = None, deployment: Deployment | None = None):
        self.policy = policy
        self.windows = windows
        self.grant_active = grant_active or (lambda ident, ui, when: False)  # (identity, userIdentity, eventTime)
        self.bucket_tags = bucket_tags  # None: map buckets by name only (the offline scanner)
        self.deployment = deployment or Deployment()
        org = policy.organization
        self.ctx = RuleContext(org.account_ids, org.org_id, frozenset(org.vpc_endpoint_ids), self.stage_of_bucket, self.deployment)
        self._bucket_stage: dict[Any, str | None] = {}
        self._cidrs = tuple(ipaddress.ip_network(c, strict=False) for c in org.allowed_cidrs)
        self._vpces = frozenset(org.vpc_endpoint_ids)
        # per stage: (no human access at all, downloads denied, humans may read but not write)
        self._stage_flags = {name: (st.interactive_access == "none", st.download == "denied", st.interactive_access == "read-only")
                             for name, st in policy.stages.items()}
        self._limits = {name: (st.exfiltration, st.exfiltration.daily_limits(st.download)) for name, st in policy.stages.items()}
        self._identities: dict[Any, Identity] = {}  # across files: parsing an identity is paid once
        #: per stage: identity key -> (identity, exempt, human, window state if the store keeps states in memory)
        self._known: dict[str, dict[Any, tuple[Identity, bool, bool | None, WindowState | None]]] = {n: {} for n in policy.stages}
        self._direct = bool(getattr(windows, "direct", False))
        self._outside_ip: dict[Any, bool] = {}
        self._foreign_ip: dict[Any, bool] = {}
        self._reset()

    def _reset(self) -> None:
        self._aggs: dict[str, dict[Any, _Agg]] = {name: {} for name in self.policy.stages}
        self._minute_of: dict[Any, int] = {}
        self._singles: list[tuple[Verdict, dict[str, Any]]] = []
        self._instance: dict[str, _InstanceUse] = {}
        self._malformed: list[int] = []
        self._malformed_reasons: dict[str, int] = {}
        self.records_seen = 0

    def stage_of_bucket(self, bucket: Any) -> str | None:
        if not bucket or bucket.__class__ is not str:
            return None
        try:
            return self._bucket_stage[bucket]
        except KeyError:
            tags = self.bucket_tags(bucket) if self.bucket_tags else None
            stage = stage_for_bucket(self.policy, bucket, tags).stage
            self._bucket_stage[bucket] = stage
            return stage

    # ------------------------------------------------------------------ the hot loop
    def feed(self, records: list[Any]) -> None:
        """Process a batch of records, each on its own: a record that raises is counted by index, the rest go on."""
        base, start, n = self.records_seen, 0, len(records)
        self.records_seen += n
        while start < n:
            done = self._feed(records, start, base)
            if done >= n:
                return
            start = done + 1

    def _bad(self, index: int, exc: BaseException) -> None:
        if len(self._malformed) < MALFORMED_INDEXES:
            self._malformed.append(index)
        if isinstance(exc, Malformed):
            reason = str(exc)[:120]
        elif isinstance(exc, KeyError):
            reason = f"the record has no {str(exc)[:60]}"
        else:
            reason = f"{type(exc).__name__} ({str(exc)[:80]})"
        if len(self._malformed_reasons) < 50 or reason in self._malformed_reasons:
            self._malformed_reasons[reason] = self._malformed_reasons.get(reason, 0) + 1
        else:
            self._malformed_reasons["other"] = self._malformed_reasons.get("other", 0) + 1

    def _feed(self, records: list[Any], start: int, base: int) -> int:
        """The hot loop (every record of every file), inlined on purpose: a few dict lookups per
        record; anything derived from an identity, a user agent or an address is computed once
        per distinct value. Returns the index of the record that raised, or ``len(records)``."""
        bucket_stage, stage_flags, minute_of = self._bucket_stage, self._stage_flags, self._minute_of
        outside_ip, vpces, aggs, known = self._outside_ip, self._vpces, self._aggs, self._known
        i = start
        try:
            for i in range(start, len(records)):
                rec = records[i]
                if rec.__class__ is not dict:
                    raise Malformed("the record is not a JSON object")
                # fields every CloudTrail record has are subscripted (faster than .get): missing, the record is malformed
                name = rec["eventName"]
                ui = rec["userIdentity"]
                arn = ui.get("arn") if ui.__class__ is dict else None
                vpce = rec.get("vpcEndpointId")
                if vpce is not None and vpce.__class__ is not str:  # read as "no endpoint", it would be an outside read
                    raise Malformed(f"vpcEndpointId is a {type(vpce).__name__}, not text")
                if arn.__class__ is str and "/i-" in arn:
                    if not vpce or (vpces and vpce not in vpces):  # no endpoint, or someone else's
                        self._instance_check(rec, ui, vpce)  # EC2 instance credentials outside: rare, so a method
                if name in SINGLE_EVENT_NAMES:
                    self._single(rec, name)
                    continue
                if rec["eventSource"] != "s3.amazonaws.com":
                    continue
                rp = rec.get("requestParameters")
                if rp.__class__ is not dict:
                    continue
                bucket = rp.get("bucketName")
                stage_name = bucket_stage.get(bucket, _MISSING)
                if stage_name is _MISSING:
                    stage_name = self.stage_of_bucket(bucket)
                copy_to = _MISSING
                if name in READS:
                    is_read = True
                elif name in COPIES:  # a copy out of a stage is a read of its source
                    if "errorCode" in rec:
                        continue
                    src, key, version = copy_source(rp.get("x-amz-copy-source"))
                    src_stage = self.stage_of_bucket(src)
                    if src_stage is not None and src_stage != stage_name:
                        if stage_name is not None and (stage_flags[stage_name][0] or stage_flags[stage_name][2]):
                            self._write_into(rec, ui, arn, bucket, stage_name)  # the destination side of a copy into final prod
                        copy_to = (stage_name, bucket)
                        rp = {"bucketName": src, "key": key, "versionId": version}
                        bucket, stage_name, is_read = src, src_stage, True
                    else:
                        is_read = False
                else:
                    is_read = False
                if stage_name is None:
                    continue
                locked, denied, read_only = stage_flags[stage_name]
                if read_only and not is_read:
                    locked = name.startswith(WRITE_PREFIXES)  # a write to a read-only stage: the human rule applies
                if (not is_read and not locked) or "errorCode" in rec:
                    continue
                if ui.__class__ is not dict:
                    raise Malformed("userIdentity is missing or not an object")
                ctx = ui.get("sessionContext")
                source = ctx.get("sourceIdentity") if ctx.__class__ is dict else None
                akey = (arn if source is None else (arn, source)) if arn is not None else (None, ui.get("type"), ui.get("principalId"), ui.get("invokedBy"))
                by_key = aggs[stage_name]
                agg = by_key.get(akey)
                if agg is None:
                    who = known[stage_name].get(akey)  # identities are parsed once, not once per file
                    agg = by_key[akey] = _Agg(*(who or self._identify(akey, ui, stage_name)))
                ts = rec["eventTime"]
                minute = minute_of.get(ts)
                if minute is None:
                    minute = minute_of[ts] = event_minute(ts)
                ua, ip = rec.get("userAgent"), rec.get("sourceIPAddress")
                if (ua is not None and ua.__class__ is not str) or (ip is not None and ip.__class__ is not str):
                    raise Malformed(_not_text(ua, ip))  # kept as evidence, hashed at the end: the whole file would fail
                n = agg.events = agg.events + 1
                if n == 1:  # the identity's first event in this file (in a busy file, most are)
                    agg.first = agg.last = minute
                    agg.bucket, agg.ip, agg.ua = bucket, ip, ua
                else:
                    if minute < agg.first:
                        agg.first = minute
                    elif minute > agg.last:
                        agg.last = minute
                    if n <= SAMPLE_EVENTS:  # buckets and addresses are evidence: sampled from the first events
                        agg.sample_event(bucket, ip)
                    if ua != agg.ua:  # every distinct client counts (new-client-tool), not a sample
                        agg.more("uas", ua)
                if locked:
                    human = agg.human_base
                    if human is None:
                        human = client_family(ua) in ("console", "browser")
                    if human and not self.grant_active(agg.ident, ui, ts):
                        agg.human += 1
                if not is_read:
                    continue
                ad = rec.get("additionalEventData") or _EMPTY
                nbytes = ad.get("bytesTransferredOut") or 0
                if nbytes.__class__ is not int or nbytes < 0:
                    nbytes = as_bytes(nbytes)
                agg.reads += 1
                agg.bytes += nbytes
                if copy_to is not _MISSING and copy_to[0] is None:  # copied into a bucket of no stage
                    agg.copy_out += 1
                    agg.more("copy_dests", copy_to[1])
                if not agg.exempt:  # exempt from the volume thresholds only
                    obj = (bucket, rp.get("key"), rp.get("versionId"))
                    objs, minutes = agg.objs, agg.minutes
                    slot = minutes.get(minute)  # (objects, bytes): a tuple, replaced (see exfil.windows)
                    if obj not in objs:  # distinct objects: ranged reads of one object count once
                        objs[obj] = minute
                        agg.new += 1
                        minutes[minute] = (1, nbytes) if slot is None else (slot[0] + 1, slot[1] + nbytes)
                    else:
                        minutes[minute] = (0, nbytes) if slot is None else (slot[0], slot[1] + nbytes)
                if not denied:
                    continue
                if not vpce:
                    ip = rec.get("sourceIPAddress")
                    outside = outside_ip.get(ip)
                    if outside is None:
                        outside = outside_ip[ip] = is_public_ip(ip if ip.__class__ is str else None) and not in_cidrs(ip, self._cidrs)
                        if len(outside_ip) > 100_000:
                            outside_ip.clear()
                else:
                    outside = bool(vpces) and vpce not in vpces
                if outside:
                    agg.outside += 1
                    agg.more("outside_ips", rec.get("sourceIPAddress"))
                if ad.get("AuthenticationMethod") == "QueryString":
                    agg.presigned += 1
        except Exception as exc:  # noqa: BLE001 - one record's problem, counted in input.malformed; the rest go on
            self._bad(base + i, exc)
            return i
        return len(records)

    def _identify(self, akey: Any, ui: dict[str, Any], stage_name: str) -> tuple[Identity, bool, bool | None, WindowState | None]:
        """Who an identity is on a stage (parsed, exempt, human), kept across files; its window state if kept in memory."""
        by_stage = self._known[stage_name]
        ident = identity_of(ui)
        globs = self.policy.organization.service_principals
        service = any(_glob(g, ident.role_arn) or _glob(g, ident.principal) for g in globs)
        exempt = self.policy.stages[stage_name].exfiltration.is_exempt(ident.principal, ident.role_arn)
        state = self.windows.state(stage_name, ident.key) if self._direct and not exempt else None
        known = (ident, exempt, human_by_identity(ident, ui, service), state)
        if len(by_stage) > 200_000:
            by_stage.clear()
        by_stage[akey] = known
        return known

    def _write_into(self, rec: dict[str, Any], ui: Any, arn: Any, bucket: str, stage_name: str) -> None:
        """A copy into a locked stage: the destination side of the human-access rule (a rare path)."""
        if ui.__class__ is not dict:
            raise Malformed("userIdentity is missing or not an object")
        ctx = ui.get("sessionContext")
        source = ctx.get("sourceIdentity") if ctx.__class__ is dict else None
        akey = (arn if source is None else (arn, source)) if arn is not None else (None, ui.get("type"), ui.get("principalId"), ui.get("invokedBy"))
        by_key = self._aggs[stage_name]
        agg = by_key.get(akey)
        if agg is None:
            agg = by_key[akey] = _Agg(*(self._known[stage_name].get(akey) or self._identify(akey, ui, stage_name)))
        minute = event_minute(rec.get("eventTime"))
        ua, ip = rec.get("userAgent"), rec.get("sourceIPAddress")
        if (ua is not None and ua.__class__ is not str) or (ip is not None and ip.__class__ is not str):
            raise Malformed(_not_text(ua, ip))
        agg.first, agg.last = min(agg.first, minute), max(agg.last, minute)
        agg.events += 1
        if agg.events <= SAMPLE_EVENTS:
            agg.sample_event(bucket, ip)
        if ua != agg.ua:
            if agg.ua is _MISSING:
                agg.ua = ua
            else:
                agg.more("uas", ua)
        human = agg.human_base
        if human is None:
            human = client_family(rec.get("userAgent")) in ("console", "browser")
        if human and not self.grant_active(agg.ident, ui, rec.get("eventTime")):
            agg.human += 1

    def _instance_check(self, rec: dict[str, Any], ui: dict[str, Any], vpce: Any) -> None:
        """EC2 instance credentials used outside: through a VPC endpoint not in ``organization.vpc_endpoint_ids``
        (an attacker's own), or without one from an address outside ``allowed_cidrs``.

        Any address counts, private ones too (a laptop behind a VPN, a peered network): only
        the listed networks, the organisation's VPC endpoints and AWS services calling on the
        instance's behalf (``sourceIPAddress`` a service name) are inside.
        """
        ip = rec.get("sourceIPAddress")
        if vpce:
            outside = True  # the caller filtered: an endpoint the organisation does not list
        else:
            outside = self._foreign_ip.get(ip)
            if outside is None:
                outside = self._foreign_ip[ip] = _is_ip(ip) and not in_cidrs(ip, self._cidrs)
                if len(self._foreign_ip) > 100_000:
                    self._foreign_ip.clear()
        if not outside:
            return  # a denied call still proves the credentials left the instance: counted
        ctx = ui.get("sessionContext")
        akey = (ui.get("arn"), ctx.get("sourceIdentity") if ctx.__class__ is dict else None, "instance")
        ident = self._identities.get(akey)
        if ident is None:
            if len(self._identities) > 200_000:
                self._identities.clear()
            ident = self._identities[akey] = identity_of(ui)
        if not ident.instance:
            return
        minute = event_minute(rec.get("eventTime"))
        seen = self._instance.get(ident.key)
        if seen is None:
            seen = self._instance[ident.key] = _InstanceUse(ident)
        seen.add(rec, minute, vpce)
        if seen.stage is None:  # the stage of the data it touched, if any: its containment follows that stage's policy
            rp = rec.get("requestParameters")
            seen.stage = self.stage_of_bucket(rp.get("bucketName")) if rp.__class__ is dict else None

    def _single(self, rec: dict[str, Any], name: str) -> None:
        rules = SINGLE_EVENT_RULES.get((rec.get("eventSource"), name))
        if not rules:
            return
        event_time(rec.get("eventTime"))  # a single event without a time is malformed, not dated 1970
        for rule in rules:
            verdict = rule(rec, self.ctx)
            if verdict is not None:
                self._singles.append((verdict, rec))

    # ------------------------------------------------------------------ results
    def finish(self, source: str, stats: ReadStats | None = None) -> list[Decision]:
        """Decisions for what was fed since the last ``finish``. Only the window store can raise (AWS errors: retry)."""
        decisions: list[Decision] = []
        try:
            for stage_name, by_key in self._aggs.items():
                if by_key:
                    decisions += self._window_decisions(stage_name, by_key, source)
            for use in self._instance.values():
                decisions.append(self._instance_decision(use, source))
            for verdict, rec in self._singles:
                try:
                    decisions.append(self._single_decision(verdict, rec, source))
                except Exception as exc:  # noqa: BLE001 - a verdict from a hostile record: counted, not fatal
                    self._bad(-1, exc)
            if self._malformed or (stats is not None and stats.issues):
                decisions.append(self._input_decision(source, stats))
        finally:
            self._reset()
        return decisions

    def _finding(self, rule: str, severity: str, stage: str | None, resource: str, ident: Identity, summary: str,
                 evidence: dict[str, Any], first: datetime, last: datetime) -> Finding:
        """One finding about one identity; its dedup key is the identity's, not its role's."""
        import hashlib

        raw = "|".join((rule, stage or "", resource, ident.key))
        return Finding(rule=rule, severity=severity, stage=stage, resource=resource, principal=ident.principal, summary=summary,
                       evidence={**ident.evidence(), **evidence}, first_seen=first, last_seen=last,
                       dedup_key=f"{rule}:{hashlib.sha256(raw.encode()).hexdigest()[:20]}")

    def _decide(self, finding: Finding, stage_name: str | None, ident: Identity | None, *, perimeter: bool = False,
                undo: list[Action] | None = None) -> Decision:
        stage = self.policy.stages.get(stage_name) if stage_name else None
        response = stage.exfiltration.response if stage else "alert"
        if response != "contain" or stage_name is None:
            return Decision(finding, [], stage_name, "alert")
        if undo is not None:
            return Decision(finding, undo, stage_name, response)
        if ident is None or finding.rule not in _REVOKING_RULES:
            return Decision(finding, [], stage_name, response)
        actions, note = containment(ident, stage_name, self.policy, self.deployment, perimeter=perimeter)
        if note:
            finding.evidence["containment"] = note
        return Decision(finding, actions, stage_name, response, note=note)

    def _window_decisions(self, stage_name: str, by_key: dict[Any, _Agg], source: str) -> list[Decision]:
        """Merge each identity's reads of the file into its window and decide. Most identities decide nothing:
        that path is one window merge (with an in-memory store, not even that) and a few comparisons
        (no sorting, no sets, no text), which is what keeps files with thousands of sessions cheap."""
        ex, daily = self._limits[stage_name]
        quiet_objects = min(ex.max_objects, daily[0]) if daily else ex.max_objects
        quiet_bytes = min(ex.max_bytes, daily[1]) if daily else ex.max_bytes
        behind = ex.window_minutes + LATENESS_MINUTES
        windows = self.windows
        out: list[Decision] = []
        for agg in by_key.values():
            state = agg.state
            if state is not None:  # counted in place by the hot loop (a store in memory): totals, learning, pruning
                if agg.reads:
                    total = state.total
                    total[0] += agg.new
                    total[1] += agg.bytes
                    first = agg.first
                    if state.first_seen < 0:
                        state.first_seen = state.pruned_at = first
                    uas = agg.uas
                    agents = agg.ua if uas is None else frozenset(uas | {agg.ua})
                    if agents != state.last_agents:
                        learn(state, agents, first)
                    elif state.new_families:
                        state.new_families = ()
                    if first - state.pruned_at >= PRUNE_MINUTES or len(state.seen) > SEEN_CAP:
                        prune(state, first - behind, first)
                    if total[0] <= quiet_objects and total[1] <= quiet_bytes and not state.new_families:
                        state = None  # nothing to look at
                else:
                    state = None
            elif agg.minutes:
                agents = agg.ua if agg.uas is None else frozenset(agg.uas | {agg.ua})
                state = windows.merge(stage_name, agg.ident.key,
                                      Delta(agg.objs, agg.minutes, agents, agg.first, agg.first - behind, source))
                total = state.total
                if total[0] <= quiet_objects and total[1] <= quiet_bytes and not state.new_families:
                    state = None
            if state is not None or agg.copy_out or agg.outside or agg.presigned or agg.human:
                out += self._window_findings(stage_name, agg, source, state)
        return out

    def _window_findings(self, stage_name: str, agg: _Agg, source: str, state: WindowState | None) -> list[Decision]:
        ex, daily = self._limits[stage_name]
        peaks: dict[str, tuple[int, int, int, int]] = {}
        new_tools: list[str] = []
        known_tools: list[str] = []
        if state is not None:
            touched: Any = range(agg.first, agg.last + 1)
            if agg.last - agg.first > MAX_SPAN_MINUTES:
                # a file whose records span more than a day (a hostile or broken log: one record dated 9999) would have
                # every minute between looked at (billions); the heaviest window always ends at a minute with reads
                touched = sorted({m for m in state.minutes if agg.first <= m <= agg.last}
                                 | {h * 60 for h in state.hours if agg.first // 60 <= h <= agg.last // 60})
            peak = state.window_peak(touched, ex.window_minutes)
            if peak[2] > ex.max_objects or peak[3] > ex.max_bytes:
                peaks["window"] = peak
            if daily is not None and (state.total[0] > daily[0] or state.total[1] > daily[1]):
                peak = state.day_peak(touched)
                if peak[2] > daily[0] or peak[3] > daily[1]:
                    peaks["day"] = peak
            if state.new_families:
                learned_by = state.first_seen + ex.learning_days * 1440
                new_tools = sorted(f for f in state.new_families if state.families[f] >= learned_by and f not in ("aws-service", "aws-internal"))
                known_tools = sorted(f for f in state.families if f not in state.new_families)
        ident = agg.ident
        out: list[Decision] = []
        buckets = agg.sample(agg.bucket, agg.buckets)

        def emit(rule: str, severity: str, summary: str, **extra: Any) -> None:
            evidence = {
                "buckets": buckets, "window": {"start": _iso(agg.first), "end": _iso(agg.last + 1)},
                "objects": agg.new, "reads": agg.reads, "bytes": agg.bytes,
                "user_agents": agg.sample(agg.ua, agg.uas), "source_ips": agg.sample(agg.ip, agg.ips),
                "sample_keys": sorted(f"{b}/{k}" for (b, k, _v) in islice(reversed(agg.objs), min(agg.new, SAMPLE))),
                "session_names": [ident.session] if ident.session is not None else [], "log_file": source, **extra,
            }
            finding = self._finding(rule, severity, stage_name, f"arn:aws:s3:::{buckets[0] if buckets else 'unknown'}", ident,
                                    summary, evidence, _dt(agg.first), _dt(agg.last))
            out.append(self._decide(finding, stage_name, ident))

        who = ident.name
        if "window" in peaks:
            start, end, count, nbytes = peaks["window"]
            emit("exfil.bulk-download", "high",
                 f"{who} read {count} distinct objects ({nbytes / 1048576:.1f} MiB) from {stage_name} in "
                 f"{ex.window_minutes} minutes (limit {ex.max_objects} objects / {ex.max_bytes / 1048576:.0f} MiB).",
                 sliding_window={"start": _iso(start), "end": _iso(end + 1), "objects": count, "bytes": nbytes},
                 thresholds={"max_objects": ex.max_objects, "max_bytes": ex.max_bytes, "window_minutes": ex.window_minutes})
        if "day" in peaks and daily is not None:
            first_hour, last_hour, count, nbytes = peaks["day"]
            emit("exfil.daily-budget", "high",
                 f"{who} read {count} distinct objects ({nbytes / 1073741824:.2f} GiB) from {stage_name} in 24 hours "
                 f"(daily budget {daily[0]} objects / {daily[1] / 1073741824:.1f} GiB).",
                 day={"start": _iso(first_hour * 60), "end": _iso((last_hour + 1) * 60), "objects": count, "bytes": nbytes},
                 thresholds={"daily_max_objects": daily[0], "daily_max_bytes": daily[1]})
        if new_tools and known_tools:
            emit("exfil.new-client-tool", "medium",
                 f"{who} read {stage_name} data with {', '.join(new_tools)}, a client it has not used there before "
                 f"(known: {', '.join(known_tools[:5])}).", new_client_families=new_tools, known_client_families=known_tools)
        if agg.copy_out:
            dests = sorted(agg.copy_dests or ())
            emit("exfil.copy-out", "high",
                 f"{who} copied {agg.copy_out} object(s) from {stage_name} into bucket(s) that map to no stage "
                 f"({', '.join(dests[:3])}).", copies_out=agg.copy_out, destination_buckets=dests)
        if agg.outside:
            emit("exfil.outside-vpce", "high",
                 f"{who}: {agg.outside} object read(s) from {stage_name} came from outside its VPC endpoints and allowed networks.",
                 outside_reads=agg.outside, outside_ips=sorted(agg.outside_ips or ()))
        if agg.presigned:
            emit("exfil.presigned-url", "medium",
                 f"{who}: {agg.presigned} object read(s) from {stage_name} used pre-signed URLs (query-string authentication).",
                 presigned_reads=agg.presigned)
        if agg.human:
            verb = "wrote to read-only" if self._stage_flags[stage_name][2] else "accessed"
            emit("access.prod-human", "high",
                 f"A human principal ({who}) {verb} {stage_name} data {agg.human} time(s) outside an active break-glass grant.",
                 human_events=agg.human)
        return out

    def _instance_decision(self, use: _InstanceUse, source: str) -> Decision:
        ident = use.ident
        stage_name = use.stage or stage_for_role(self.policy, ident.role_name or "").stage
        ips = sorted(use.ips)
        finding = self._finding(
            "exfil.instance-credentials", "high", stage_name, ident.role_arn or ident.principal, ident,
            f"Credentials of EC2 instance {ident.session} (role {ident.role_name}) were used {use.events} time(s) from "
            f"{', '.join(ips[:3])}, outside the organisation's networks and VPC endpoints.",
            {"source_ips": ips, "vpc_endpoints": sorted(use.endpoints), "calls": sorted(use.calls), "events": use.events,
             "instance_id": ident.session, "user_agents": sorted(use.agents), "log_file": source,
             "session_names": [ident.session]}, _dt(use.first), _dt(use.last))
        return self._decide(finding, stage_name, ident, perimeter=True)

    def _single_decision(self, verdict: Verdict, rec: dict[str, Any], source: str) -> Decision:
        ident = identity_of(rec.get("userIdentity"))
        failed = rec.get("errorCode")
        if verdict.bucket:
            stage_name = self.stage_of_bucket(verdict.bucket)
        else:
            stage_name = stage_for_role(self.policy, ident.role_name).stage if ident.role_name else None
        severity, summary = verdict.severity, verdict.summary
        if failed:
            severity = {"critical": "high", "high": "medium"}.get(severity, "low")
            summary = f"Attempt failed ({str(failed)[:60]}): {summary}"
        when = event_time(rec.get("eventTime"))
        evidence = {
            "buckets": [verdict.bucket] if verdict.bucket else [],
            "user_agents": [rec.get("userAgent")], "source_ips": [rec.get("sourceIPAddress")],
            "session_names": [ident.session] if ident.session is not None else [],
            "event": {"id": rec.get("eventID"), "name": rec.get("eventName"), "time": rec.get("eventTime"),
                      "region": rec.get("awsRegion"), "account": rec.get("recipientAccountId"), "error": failed},
            "log_file": source,
            **verdict.evidence,
        }
        finding = self._finding(verdict.rule, severity, stage_name, verdict.resource, ident, summary, evidence, when, when)
        undo = [] if failed or verdict.undo is None else [from_undo(verdict.undo, self.ctx)]
        where, home = rec.get("recipientAccountId"), self.deployment.account
        if undo and home and isinstance(where, str) and where != home:  # an organisation trail: another account's resource
            note = f"alert only: the change is in account {where}, not this account ({home}); revert it there"
            finding.evidence["containment"] = note
            decision = self._decide(finding, stage_name, None, undo=[])
            if decision.response == "contain":
                decision.note = note
            return decision
        return self._decide(finding, stage_name, None, undo=undo)

    def _input_decision(self, source: str, stats: ReadStats | None) -> Decision:
        issues = list(stats.issues) if stats is not None else []
        bad = self._malformed_count()
        parts = []
        if issues:
            parts.append(f"{len(issues)} problem(s) reading the file")
        if bad:
            parts.append(f"{bad} record(s) that break an assumption were skipped")
        read = stats.records if stats is not None else self.records_seen
        finding = Finding(
            rule="input.malformed", severity="medium", stage=None, resource=source,
            summary=f"{source}: {'; '.join(parts)}; {read - bad} other record(s) were processed.",
            evidence={"issues": [vars(i) for i in issues[:20]], "records_read": read, "malformed_records": bad,
                      "record_indexes": [i for i in self._malformed if i >= 0], "reasons": dict(self._malformed_reasons)},
        )
        return Decision(finding, [], None, "alert")

    def _malformed_count(self) -> int:
        return sum(self._malformed_reasons.values())


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(value if value.__class__ is str else "")
    except ValueError:
        return False
    return True


def _glob(pattern: str, value: str | None) -> bool:
    from fnmatch import fnmatchcase

    return bool(value) and fnmatchcase(value, pattern)
