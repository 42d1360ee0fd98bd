"""The detection engine: records in, decisions (finding + containment actions) out.

One engine for the Lambda (CloudTrail log files and management events) and the offline
scanner. It keeps no AWS state itself: sliding windows and learned client tools go
through a :class:`WindowStore` (in memory for the scanner, DynamoDB in the Lambda, one
write per (principal, stage) per file), active break-glass grants through a lookup.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Protocol

from exfil.actions import RevokeSessions, from_undo
from exfil.reader import ReadStats
from exfil.records import client_family, event_minute, in_cidrs, is_human, is_public_ip, principal_of
from exfil.rules import SINGLE_EVENT_NAMES, SINGLE_EVENT_RULES, Verdict

from stage_policy.actions import Action, Decision
from stage_policy.findings import Finding
from stage_policy.mapping import stage_for_bucket, stage_for_role
from stage_policy.model import Policy, Stage

SAMPLE = 10
LATENESS_MINUTES = 60
_EMPTY: dict[str, Any] = {}
_MISSING = object()
_DATA_READS = frozenset({"GetObject"})
_REVOKING_RULES = frozenset({"exfil.bulk-download", "exfil.outside-vpce", "exfil.presigned-url", "access.prod-human"})


@dataclass
class WindowState:
    """Per (stage, principal): reads per epoch minute, client families with first-seen minute."""

    minutes: dict[int, list[int]]
    families: dict[str, int]
    first_seen: int
    known_before: frozenset[str] = frozenset()


class WindowStore(Protocol):
    def merge(self, stage: str, principal: str, minutes: dict[int, list[int]], families: dict[str, int],
              keep_after: int) -> WindowState: ...


class MemoryWindowStore:
    """Windows for the offline scanner (and tests): a dict, pruned like the DynamoDB one."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], WindowState] = {}
        self.writes = 0

    def merge(self, stage: str, principal: str, minutes: dict[int, list[int]], families: dict[str, int],
              keep_after: int) -> WindowState:
        self.writes += 1
        old = self.items.get((stage, principal))
        state = merge_state(old, minutes, families, keep_after)
        self.items[(stage, principal)] = state
        return state


def merge_state(old: WindowState | None, minutes: dict[int, list[int]], families: dict[str, int], keep_after: int) -> WindowState:
    merged = {m: list(v) for m, v in (old.minutes.items() if old else ()) if m > keep_after}
    for minute, (count, nbytes) in minutes.items():
        slot = merged.setdefault(minute, [0, 0])
        slot[0] += count
        slot[1] += nbytes
    known = dict(old.families) if old else {}
    before = frozenset(known)
    for fam, first in families.items():
        known[fam] = min(first, known.get(fam, first))
    firsts = ([old.first_seen] if old else []) + list(families.values()) + ([min(minutes)] if minutes else [])
    first_seen = min(firsts) if firsts else 0
    return WindowState(merged, known, first_seen, before)


def worst_window(minutes: dict[int, list[int]], touched: Iterable[int], width: int) -> tuple[int, int, int, int]:
    """The heaviest window of ``width`` minutes ending at a touched minute: (start, end, objects, bytes)."""
    best = (0, 0, 0, 0)
    for end in touched:
        count = nbytes = 0
        for m in range(end - width + 1, end + 1):
            slot = minutes.get(m)
            if slot:
                count += slot[0]
                nbytes += slot[1]
        if (count, nbytes) > (best[2], best[3]):
            best = (end - width + 1, end, count, nbytes)
    return best


class _Agg:
    __slots__ = ("minutes", "keys", "agents", "ips", "sessions", "buckets", "families", "outside", "outside_ips",
                 "presigned", "human", "objects", "bytes", "first", "last", "exempt", "last_ua", "last_ip",
                 "last_bucket", "last_ip_public", "principal")

    def __init__(self, exempt: bool = False) -> None:
        self.exempt = exempt
        self.last_ua = self.last_ip = self.last_bucket = None
        self.last_ip_public: bool | None = None
        self.principal = ""
        self.minutes: dict[int, list[int]] = {}
        self.keys: list[str] = []
        self.agents: set[str] = set()
        self.ips: set[str] = set()
        self.sessions: set[str] = set()
        self.buckets: set[str] = set()
        self.families: dict[str, int] = {}
        self.outside = 0
        self.outside_ips: set[str] = set()
        self.presigned = 0
        self.human = 0
        self.objects = 0
        self.bytes = 0
        self.first = 1 << 62
        self.last = 0


def _iso(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, timezone.utc).strftime("%Y-%m-%dT%H:%M:00Z")


def _dt(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, timezone.utc)


def _parse_time(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(timezone.utc)


class Detector:
    """Feed it one log file (or a batch of management events) at a time; ``finish`` returns decisions."""

    def __init__(self, policy: Policy, windows: WindowStore, grant_active: Callable[[str, str], bool] | None = None,
                 bucket_tags: Callable[[str], dict[str, str]] | None = None):
        self.policy = policy
        self.windows = windows
        self.grant_active = grant_active or (lambda principal, when: False)
        self.bucket_tags = bucket_tags  # None: map buckets by name only (the offline scanner)
        self._bucket_stage: dict[str, str | None] = {}
        self._cidrs = tuple(ipaddress.ip_network(c, strict=False) for c in policy.organization.allowed_cidrs)
        self._vpces = frozenset(policy.organization.vpc_endpoint_ids)
        self._service_globs = policy.organization.service_principals
        self._stage_flags = {name: (st, st.interactive_access == "none", st.download == "denied") for name, st in policy.stages.items()}
        self._reset()

    def _reset(self) -> None:
        self._aggs_by_stage: dict[str, dict[str, _Agg]] = {}
        self._agg_by_arn: dict[str, dict[str, _Agg]] = {name: {} for name in self.policy.stages}
        self._minute_of: dict[Any, int] = {}
        self._singles: list[tuple[Verdict, dict[str, Any]]] = []
        self.records_seen = 0

    def stage_of_bucket(self, bucket: str | None) -> str | None:
        if not bucket:
            return None
        try:
            return self._bucket_stage[bucket]
        except KeyError:
            tags = self.bucket_tags(bucket) if self.bucket_tags else None
            stage = stage_for_bucket(self.policy, bucket, tags).stage
            self._bucket_stage[bucket] = stage
            return stage

    # ------------------------------------------------------------------ the hot loop
    def feed(self, records: list[dict[str, Any]]) -> None:
        """The hot loop (every record of every file): inlined on purpose, a few dict lookups per
        record; anything derived from an identity, a user agent or an address is computed once
        per distinct value and kept on the principal's aggregate."""
        self.records_seen += len(records)
        bucket_stage, stage_flags, agg_by_arn, minute_of = self._bucket_stage, self._stage_flags, self._agg_by_arn, self._minute_of
        for rec in records:
            name = rec.get("eventName")
            if name in SINGLE_EVENT_NAMES:
                rule = SINGLE_EVENT_RULES.get((rec.get("eventSource"), name))
                if rule is not None:
                    verdict = rule(rec, self.policy.organization.account_ids)
                    if verdict is not None:
                        self._singles.append((verdict, rec))
                continue
            if name not in _DATA_READS and rec.get("eventSource") != "s3.amazonaws.com":
                continue
            rp = rec.get("requestParameters")
            if rp.__class__ is not dict:
                continue
            bucket = rp.get("bucketName")
            stage_name = bucket_stage.get(bucket, _MISSING)
            if stage_name is _MISSING:
                stage_name = self.stage_of_bucket(bucket)
            if stage_name is None:
                continue
            stage, locked, denied = stage_flags[stage_name]
            is_read = name in _DATA_READS
            if (not is_read and not locked) or "errorCode" in rec:
                continue
            ui = rec.get("userIdentity")
            arn = ui.get("arn") if ui.__class__ is dict else None
            by_arn = agg_by_arn[stage_name]
            agg = by_arn.get(arn) if arn else None
            if agg is None:
                agg = self._agg_for(rec, stage_name, stage)
                if agg is None:
                    continue
                if arn:
                    by_arn[arn] = agg
            ts = rec.get("eventTime")
            minute = minute_of.get(ts)
            if minute is None:
                minute = minute_of[ts] = event_minute(rec)
            if minute < agg.first:
                agg.first = minute
            if minute > agg.last:
                agg.last = minute
            if bucket != agg.last_bucket:
                agg.last_bucket = bucket
                if len(agg.buckets) < SAMPLE:
                    agg.buckets.add(bucket)
            if locked and is_human(rec, self._service_globs) and not self.grant_active(agg.principal, ts or ""):
                agg.human += 1
            if not is_read or agg.exempt:
                continue
            ad = rec.get("additionalEventData") or _EMPTY
            nbytes = ad.get("bytesTransferredOut") or 0
            if nbytes.__class__ is not int:
                nbytes = int(nbytes)
            slot = agg.minutes.get(minute)
            if slot is None:
                agg.minutes[minute] = [1, nbytes]
            else:
                slot[0] += 1
                slot[1] += nbytes
            agg.objects += 1
            agg.bytes += nbytes
            if len(agg.keys) < SAMPLE:
                agg.keys.append(f"{bucket}/{rp.get('key')}")
            ua = rec.get("userAgent") or ""
            if ua != agg.last_ua:
                agg.last_ua = ua
                if len(agg.agents) < SAMPLE:
                    agg.agents.add(ua)
                fam = client_family(ua)
                if fam not in agg.families:
                    agg.families[fam] = minute
            ip = rec.get("sourceIPAddress") or ""
            if ip != agg.last_ip:
                agg.last_ip = ip
                agg.last_ip_public = None  # worked out only if a read arrives without a VPC endpoint
                if len(agg.ips) < SAMPLE:
                    agg.ips.add(ip)
            if not denied:
                continue
            vpce = rec.get("vpcEndpointId")
            if not vpce:
                if agg.last_ip_public is None:
                    agg.last_ip_public = is_public_ip(ip) and not in_cidrs(ip, self._cidrs)
                outside = agg.last_ip_public
            else:
                outside = bool(self._vpces) and vpce not in self._vpces
            if outside:
                agg.outside += 1
                if len(agg.outside_ips) < SAMPLE:
                    agg.outside_ips.add(ip)
            if ad.get("AuthenticationMethod") == "QueryString":
                agg.presigned += 1

    def _agg_for(self, rec: dict[str, Any], stage_name: str, stage: Stage) -> _Agg | None:
        """The aggregate of the record's principal on a stage (several session ARNs share one)."""
        principal, session = principal_of(rec)
        if principal is None:
            return None
        by_principal = self._aggs_by_stage.setdefault(stage_name, {})
        agg = by_principal.get(principal)
        if agg is None:
            agg = by_principal[principal] = _Agg(stage.exfiltration.is_exempt(principal))
            agg.principal = principal
        if session and len(agg.sessions) < SAMPLE:
            agg.sessions.add(session)
        return agg

    # ------------------------------------------------------------------ results
    def finish(self, source: str, stats: ReadStats | None = None) -> list[Decision]:
        decisions: list[Decision] = []
        for stage_name, by_principal in self._aggs_by_stage.items():
            for principal, agg in by_principal.items():
                decisions += self._window_decisions(principal, stage_name, agg, source)
        for verdict, rec in self._singles:
            decisions.append(self._single_decision(verdict, rec, source))
        if stats is not None and stats.issues:
            decisions.append(self._input_decision(source, stats))
        self._reset()
        return decisions

    def _evidence(self, agg: _Agg, source: str, **extra: Any) -> dict[str, Any]:
        return {
            "buckets": sorted(b for b in agg.buckets if b),
            "window": {"start": _iso(agg.first), "end": _iso(agg.last + 1)},
            "objects": agg.objects,
            "bytes": agg.bytes,
            "user_agents": sorted(agg.agents),
            "source_ips": sorted(agg.ips),
            "sample_keys": agg.keys,
            "session_names": sorted(agg.sessions),
            "log_file": source,
            **extra,
        }

    def _decide(self, finding: Finding, stage_name: str | None, actions: list[Action]) -> Decision:
        stage = self.policy.stages.get(stage_name) if stage_name else None
        response = stage.exfiltration.response if stage else "alert"
        if response != "contain":
            actions = []
        return Decision(finding, actions, stage_name, response)

    def _revoke(self, rule: str, principal: str) -> list[Action]:
        # service-linked roles are AWS's own: never contained
        if rule in _REVOKING_RULES and ":role/" in principal and "/aws-service-role/" not in principal:
            return [RevokeSessions(principal.rsplit("/", 1)[-1], role_arn=principal)]
        return []

    def _window_decisions(self, principal: str, stage_name: str, agg: _Agg, source: str) -> list[Decision]:
        stage = self.policy.stages[stage_name]
        ex = stage.exfiltration
        out: list[Decision] = []

        def emit(rule: str, severity: str, summary: str, **extra: Any) -> None:
            finding = Finding(rule=rule, severity=severity, stage=stage_name, resource=f"arn:aws:s3:::{sorted(agg.buckets)[0]}",
                              principal=principal, summary=summary, evidence=self._evidence(agg, source, **extra),
                              first_seen=_dt(agg.first), last_seen=_dt(agg.last))
            out.append(self._decide(finding, stage_name, self._revoke(rule, principal)))

        if agg.minutes:
            # an hour of lateness (CloudTrail delivers within minutes; files can arrive out of order), then minutes go
            keep_after = max(agg.minutes) - ex.window_minutes - LATENESS_MINUTES
            state = self.windows.merge(stage_name, principal, agg.minutes, agg.families, keep_after)
            start, end, count, nbytes = worst_window(state.minutes, agg.minutes.keys(), ex.window_minutes)
            if count > ex.max_objects or nbytes > ex.max_bytes:
                emit("exfil.bulk-download", "high",
                     f"{principal.rsplit('/', 1)[-1]} read {count} objects ({nbytes / 1048576:.1f} MiB) from {stage_name} "
                     f"in {ex.window_minutes} minutes (limit {ex.max_objects} objects / {ex.max_bytes / 1048576:.0f} MiB).",
                     sliding_window={"start": _iso(start), "end": _iso(end + 1), "objects": count, "bytes": nbytes},
                     thresholds={"max_objects": ex.max_objects, "max_bytes": ex.max_bytes, "window_minutes": ex.window_minutes})
            learned_by = state.first_seen + ex.learning_days * 1440
            new = sorted(f for f, first in agg.families.items() if f not in state.known_before and first >= learned_by
                         and f not in ("aws-service", "aws-internal"))
            if new and state.known_before:
                emit("exfil.new-client-tool", "medium",
                     f"{principal.rsplit('/', 1)[-1]} read {stage_name} data with {', '.join(new)}, a client it has not used there "
                     f"before (known: {', '.join(sorted(state.known_before))}).",
                     new_client_families=new, known_client_families=sorted(state.known_before))
        if agg.outside:
            emit("exfil.outside-vpce", "high",
                 f"{agg.outside} object read(s) from {stage_name} came from outside its VPC endpoints and allowed networks.",
                 outside_reads=agg.outside, outside_ips=sorted(agg.outside_ips))
        if agg.presigned:
            emit("exfil.presigned-url", "medium",
                 f"{agg.presigned} object read(s) from {stage_name} used pre-signed URLs (query-string authentication).",
                 presigned_reads=agg.presigned)
        if agg.human:
            emit("access.prod-human", "high",
                 f"A human principal accessed {stage_name} data {agg.human} time(s) outside an active break-glass grant.",
                 human_events=agg.human)
        return out

    def _single_decision(self, verdict: Verdict, rec: dict[str, Any], source: str) -> Decision:
        principal, session = principal_of(rec)
        failed = rec.get("errorCode")
        if verdict.bucket:
            stage_name = self.stage_of_bucket(verdict.bucket)
        else:
            stage_name = stage_for_role(self.policy, principal or "").stage if principal and ":role/" in principal else None
        severity = verdict.severity
        summary = verdict.summary
        if failed:
            severity = {"critical": "high", "high": "medium"}.get(severity, "low")
            summary = f"Attempt failed ({failed}): {summary}"
        evidence = {
            "buckets": [verdict.bucket] if verdict.bucket else [],
            "window": {"start": rec.get("eventTime"), "end": rec.get("eventTime")},
            "objects": 0, "bytes": 0,
            "user_agents": [rec.get("userAgent")], "source_ips": [rec.get("sourceIPAddress")], "sample_keys": [],
            "session_names": [session] if session else [],
            "event": {"id": rec.get("eventID"), "name": rec.get("eventName"), "time": rec.get("eventTime"),
                      "region": rec.get("awsRegion"), "account": rec.get("recipientAccountId"), "error": failed},
            "log_file": source,
            **verdict.evidence,
        }
        when = _parse_time(rec.get("eventTime"))
        finding = Finding(rule=verdict.rule, severity=severity, stage=stage_name, resource=verdict.resource,
                          principal=principal, summary=summary, evidence=evidence, first_seen=when, last_seen=when)
        actions = [] if failed or verdict.undo is None else [from_undo(verdict.undo)]
        return self._decide(finding, stage_name, actions)

    def _input_decision(self, source: str, stats: ReadStats) -> Decision:
        finding = Finding(
            rule="input.malformed", severity="medium", stage=None, resource=source,
            summary=f"{source}: {len(stats.issues)} problem(s) reading the log file; {stats.records} record(s) were still processed.",
            evidence={"issues": [vars(i) for i in stats.issues[:20]], "records_read": stats.records},
        )
        return Decision(finding, [], None, "alert")
