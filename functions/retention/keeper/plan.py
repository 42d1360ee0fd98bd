"""Pure retention planning: a stage's retention and a bucket's state in; the lifecycle the policy
requires, the diff against the bucket's, and which versions a sweep deletes, out. No boto3.

Lifecycle. Stagewarden owns only rules whose ID starts with ``stagewarden-``: one catch-all
``stagewarden-default`` (current versions after ``default_days``, noncurrent versions after
``noncurrent_version_days``, incomplete multipart uploads after ``abort_multipart_days``), one
``stagewarden-class-<prefix>`` per prefix class, and ``stagewarden-expired-delete-markers`` (S3
refuses ``ExpiredObjectDeleteMarker`` beside ``Days`` in one rule). Where rules overlap S3
applies the shortest expiration, which is why the policy model rejects a class longer than
``default_days``. Every other rule is the owner's and is kept as it is, unless it expires data
on a managed prefix sooner than the policy (or, in a permanent stage, at all): then only its
expiring actions are dropped, its transitions and other actions stay.

Sweep. Lifecycle runs asynchronously, so the sweep applies the policy itself, key by key
(:func:`plan_key`): a current version older than its class's days takes every version and
delete marker of the key with it; a noncurrent version goes ``noncurrent_days`` after the
version that replaced it was written; a delete marker with nothing left behind it goes. A
version under legal hold or an unexpired Object Lock retention is never deleted, nor one whose
lock state could not be read in a bucket with Object Lock on. When a kept version would become
the current one, a delete marker is placed first, so deleting expired data never resurrects a
held version for readers who have ``s3:GetObject`` only. Deletions run oldest first within a key,
so stopping at the cap part-way through a key never exposes an older version either.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Iterable, Literal

from stage_policy.model import Retention

MANAGED = "stagewarden-"
DEFAULT_RULE = "stagewarden-default"
MARKERS_RULE = "stagewarden-expired-delete-markers"
CLASS_RULE = "stagewarden-class-"
#: The ``Expiration``/``NoncurrentVersionExpiration`` parts that delete data.
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
Severity = Literal["low", "medium", "high", "critical"]


# ------------------------------------------------------------------ lifecycle: what the policy requires
def class_rule_id(prefix: str) -> str:
    rule_id = CLASS_RULE + prefix
    if len(rule_id) <= 255:
        return rule_id
    return rule_id[:230] + "-" + hashlib.sha256(prefix.encode()).hexdigest()[:24]


def _expiring_rule(rule_id: str, prefix: str, days: int, noncurrent_days: int, abort_days: int) -> dict[str, Any]:
    return {
        "ID": rule_id, "Status": "Enabled", "Filter": {"Prefix": prefix},
        "Expiration": {"Days": days},
        "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": abort_days},
    }


def required_rules(retention: Retention) -> list[dict[str, Any]]:
    """The ``stagewarden-*`` lifecycle rules a stage requires (none for a permanent stage)."""
    if retention.permanent or retention.default_days is None:
        return []
    rules = [_expiring_rule(DEFAULT_RULE, "", retention.default_days,
                            retention.noncurrent_days_for("") or retention.default_days, retention.abort_multipart_days)]
    for cls in retention.prefix_classes:
        rules.append(_expiring_rule(class_rule_id(cls.prefix), cls.prefix, cls.days,
                                    retention.noncurrent_days_for(cls.prefix) or cls.days, retention.abort_multipart_days))
    rules.append({"ID": MARKERS_RULE, "Status": "Enabled", "Filter": {"Prefix": ""},
                  "Expiration": {"ExpiredObjectDeleteMarker": True}})
    return rules


# ------------------------------------------------------------------ lifecycle: reading rules
def canonical(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as S3 means it: legacy top-level ``Prefix`` and an empty ``Filter`` become ``Filter.Prefix``."""
    out = {k: v for k, v in rule.items() if v is not None}
    exp = out.get("Expiration")
    if isinstance(exp, dict) and exp.get("ExpiredObjectDeleteMarker") is False:
        exp = {k: v for k, v in exp.items() if k != "ExpiredObjectDeleteMarker"}
        if exp:
            out["Expiration"] = exp
        else:
            out.pop("Expiration")
    if "Prefix" in out:
        prefix = out.pop("Prefix") or ""
        out.setdefault("Filter", {"Prefix": prefix})
    flt = out.get("Filter")
    if not flt:
        out["Filter"] = {"Prefix": ""}
    elif set(flt) == {"Prefix"} and flt["Prefix"] is None:
        out["Filter"] = {"Prefix": ""}
    return out


def rule_prefix(rule: dict[str, Any]) -> str:
    """The key prefix a rule covers (tag and size filters narrow it further; the prefix is the outer bound)."""
    flt = canonical(rule)["Filter"]
    if "Prefix" in flt:
        return flt["Prefix"] or ""
    return (flt.get("And") or {}).get("Prefix") or ""


def is_managed(rule: dict[str, Any]) -> bool:
    return str(rule.get("ID") or "").startswith(MANAGED)


def _enabled(rule: dict[str, Any]) -> bool:
    return rule.get("Status") == "Enabled"


def policy_keeps(retention: Retention, prefix: str) -> tuple[int | None, int | None]:
    """The most days the policy keeps current / noncurrent versions of some key under ``prefix``.

    A rule on ``prefix`` that expires sooner deletes such a key before its time. Keys under
    ``prefix`` fall in the class containing it (or the default) or in a class inside it.
    ``(None, None)`` for a permanent stage: nothing may expire.
    """
    days = retention.days_for(prefix)
    if days is None:
        return None, None
    inner = [c for c in retention.prefix_classes if c.prefix.startswith(prefix)]
    current = [days] + [c.days for c in inner]
    noncurrent = [retention.noncurrent_days_for(prefix) or days] + [retention.noncurrent_days_for(c.prefix) or c.days for c in inner]
    return max(current), max(noncurrent)


@dataclass(frozen=True)
class Conflict:
    """One action of one rule that deletes data sooner than the policy (or at all, in a permanent stage)."""

    rule_id: str
    action: str  # "Expiration" | "NoncurrentVersionExpiration"
    problem: str
    severity: Severity
    managed: bool

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule_id, "action": self.action, "problem": self.problem, "severity": self.severity}


def rule_conflicts(rule: dict[str, Any], retention: Retention, floor_days: int) -> list[Conflict]:
    """What in ``rule`` expires data the policy still keeps; empty when nothing (or the rule is disabled)."""
    if not _enabled(rule):
        return []
    rule_id, managed = str(rule.get("ID") or "(no ID)"), is_managed(rule)
    prefix = rule_prefix(rule)
    where = f"prefix {prefix!r}" if prefix else "every key"
    current_floor, noncurrent_floor = policy_keeps(retention, prefix)
    out: list[Conflict] = []
    exp = rule.get("Expiration") or {}
    if exp.get("Date") is not None:
        what = "a permanent stage" if current_floor is None else f"keys the policy keeps {current_floor} days"
        out.append(Conflict(rule_id, "Expiration", f"expires {where} on {exp['Date']} whatever its age ({what})", "critical", managed))
    elif exp.get("Days") is not None:
        days = int(exp["Days"])
        if current_floor is None:
            out.append(Conflict(rule_id, "Expiration", f"expires {where} after {days} days in a permanent stage", "critical", managed))
        elif days < current_floor:
            sev: Severity = "critical" if days < floor_days else "high"
            below = f", below the safety floor of {floor_days}" if days < floor_days else ""
            out.append(Conflict(rule_id, "Expiration", f"expires {where} after {days} days; the policy keeps it {current_floor}{below}", sev, managed))
    nve = rule.get("NoncurrentVersionExpiration") or {}
    if nve.get("NoncurrentDays") is not None:
        days = int(nve["NoncurrentDays"])
        if noncurrent_floor is None:
            out.append(Conflict(rule_id, "NoncurrentVersionExpiration",
                                f"deletes old versions under {where} after {days} days in a permanent stage", "critical", managed))
        elif days < noncurrent_floor:
            sev = "critical" if days < floor_days else "high"
            below = f", below the safety floor of {floor_days}" if days < floor_days else ""
            out.append(Conflict(rule_id, "NoncurrentVersionExpiration",
                                f"deletes old versions under {where} {days} days after replacement; the policy keeps them "
                                f"{noncurrent_floor}{below}", sev, managed))
    return out


_ACTIONS = ("Expiration", "NoncurrentVersionExpiration", "Transitions", "NoncurrentVersionTransitions",
            "AbortIncompleteMultipartUpload")


def without(rule: dict[str, Any], actions: Iterable[str]) -> dict[str, Any] | None:
    """``rule`` without the named actions; None when nothing would be left for it to do."""
    out = {k: v for k, v in canonical(rule).items() if k not in set(actions)}
    return out if any(out.get(a) for a in _ACTIONS) else None


# ------------------------------------------------------------------ lifecycle: the diff
@dataclass
class LifecycleDiff:
    """The bucket's lifecycle against the policy's, and the configuration that would bring it to policy."""

    required: list[dict[str, Any]]
    actual: list[dict[str, Any]]
    desired: list[dict[str, Any]]
    missing: list[str] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    stripped: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return _as_set(self.desired) != _as_set(self.actual)

    @property
    def severity(self) -> Severity:
        worst: Severity = "medium"
        for c in self.conflicts:
            if SEVERITY_RANK[c.severity] > SEVERITY_RANK[worst]:
                worst = c.severity
        return worst

    def summary(self) -> str:
        parts = []
        if self.missing:
            parts.append("missing " + ", ".join(self.missing))
        if self.changed:
            parts.append("changed " + ", ".join(f"{c['id']} ({_changes(c['fields'])})" for c in self.changed))
        if self.extra:
            parts.append("not in the policy " + ", ".join(self.extra))
        foreign = [c for c in self.conflicts if not c.managed]
        if foreign:
            parts.append("owner rules expiring too soon " + ", ".join(sorted({c.rule_id for c in foreign})))
        return "; ".join(parts) or "none"

    def as_dict(self) -> dict[str, Any]:
        return {"missing": self.missing, "changed": self.changed, "extra": self.extra,
                "conflicts": [c.as_dict() for c in self.conflicts], "expiring_actions_removed": self.stripped}


def _changes(fields: list[dict[str, Any]]) -> str:
    return "; ".join(f"{d['field']} {d['actual']} -> {d['required']}" for d in fields)


def _as_set(rules: list[dict[str, Any]]) -> set[str]:
    return {json.dumps(canonical(r), sort_keys=True, default=str) for r in rules}


def _flat(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{path}.{k}" if path else k))
        return out
    return {path: value}


def _field_changes(actual: dict[str, Any], required: dict[str, Any]) -> list[dict[str, Any]]:
    a, r = _flat(canonical(actual)), _flat(canonical(required))
    return [{"field": k, "actual": a.get(k), "required": r.get(k)} for k in sorted(set(a) | set(r)) if a.get(k) != r.get(k)]


def lifecycle_diff(retention: Retention, actual: list[dict[str, Any]], floor_days: int) -> LifecycleDiff:
    """Compare a bucket's rules with the policy's; ``desired`` is the whole configuration to put."""
    required = required_rules(retention)
    by_id = {r["ID"]: r for r in required}
    diff = LifecycleDiff(required, list(actual), [])
    kept: list[dict[str, Any]] = []
    seen: set[str] = set()
    for rule in actual:
        conflicts = rule_conflicts(rule, retention, floor_days)
        diff.conflicts += conflicts
        if is_managed(rule):
            rule_id = str(rule["ID"])
            seen.add(rule_id)
            if rule_id not in by_id:
                diff.extra.append(rule_id)
            elif canonical(rule) != canonical(by_id[rule_id]):
                diff.changed.append({"id": rule_id, "fields": _field_changes(rule, by_id[rule_id])})
            continue
        if conflicts:
            trimmed = without(rule, {c.action for c in conflicts})
            diff.stripped.append(f"{rule.get('ID') or '(no ID)'}: {', '.join(sorted({c.action for c in conflicts}))}"
                                 + ("" if trimmed else " (nothing left: rule removed)"))
            if trimmed is not None:
                kept.append(trimmed)
        else:
            kept.append(canonical(rule))
    diff.missing = [r["ID"] for r in required if r["ID"] not in seen]
    diff.desired = kept + required
    return diff


def audit_conflicts(actual: list[dict[str, Any]], min_days: int) -> list[str]:
    """Rules on an audit-log bucket that delete logs sooner than ``min_days``."""
    out = []
    for rule in actual:
        if not _enabled(rule):
            continue
        rule_id, prefix = rule.get("ID") or "(no ID)", rule_prefix(rule)
        where = f"prefix {prefix!r}" if prefix else "every log"
        exp, nve = rule.get("Expiration") or {}, rule.get("NoncurrentVersionExpiration") or {}
        if exp.get("Date") is not None:
            out.append(f"rule {rule_id} expires {where} on {exp['Date']}")
        elif exp.get("Days") is not None and int(exp["Days"]) < min_days:
            out.append(f"rule {rule_id} expires {where} after {exp['Days']} days (audit logs are kept {min_days})")
        if nve.get("NoncurrentDays") is not None and int(nve["NoncurrentDays"]) < min_days:
            out.append(f"rule {rule_id} deletes old versions of {where} after {nve['NoncurrentDays']} days (kept {min_days})")
    return out


# ------------------------------------------------------------------ sweep
@dataclass(frozen=True)
class Entry:
    """One version or delete marker of one key, as ListObjectVersions reports it.

    ``lock_read`` is True once the version's Object Lock state was read (HeadObject); in a
    bucket with Object Lock on, an unread version counts as locked.
    """

    key: str
    version_id: str
    last_modified: datetime
    is_latest: bool
    marker: bool = False
    legal_hold: bool = False
    retain_until: datetime | None = None
    lock_read: bool = False

    def with_lock(self, legal_hold: bool, retain_until: datetime | None) -> "Entry":
        return replace(self, legal_hold=legal_hold, retain_until=retain_until, lock_read=True)


Protection = Literal["legal-hold", "retention", "unverified"]


def protection(entry: Entry, now: datetime, lock_enabled: bool) -> Protection | None:
    """Why a version must not be deleted, or None. Delete markers hold no data and cannot be locked."""
    if entry.marker:
        return None
    if entry.legal_hold:
        return "legal-hold"
    if entry.retain_until is not None and entry.retain_until > now:
        return "retention"
    if lock_enabled and not entry.lock_read:
        return "unverified"
    return None


def order(entries: Iterable[Entry]) -> list[Entry]:
    """Newest first: the current entry, then the others by LastModified (ListObjectVersions' order)."""
    items = list(entries)
    latest = [e for e in items if e.is_latest][:1]
    rest = sorted((e for e in items if not latest or e is not latest[0]), key=lambda e: e.last_modified, reverse=True)
    return latest + rest


def due_by_age(entries: list[Entry], retention: Retention, now: datetime) -> list[bool]:
    """For entries newest first: is each one past retention by age (rules 1 and 2, not the marker rule)?"""
    if not entries:
        return []
    key = entries[0].key
    days, noncurrent = retention.days_for(key), retention.noncurrent_days_for(key)
    if days is None or noncurrent is None:
        return [False] * len(entries)
    head = entries[0]
    if head.is_latest and not head.marker and now - head.last_modified > timedelta(days=days):
        return [True] * len(entries)  # rule 1: the object itself is expired, every version with it
    due = [False]  # the current entry goes only by rule 1 (a version) or rule 3 (a marker)
    for newer in entries[:-1]:  # rule 2: each older entry has been noncurrent since the one above it was written
        due.append(now - newer.last_modified > timedelta(days=noncurrent))
    return due


@dataclass
class KeyPlan:
    """What the sweep does to one key. ``delete`` is oldest first; ``hide`` places a delete marker first."""

    key: str
    delete: list[Entry] = field(default_factory=list)
    hide: bool = False
    kept: dict[str, int] = field(default_factory=dict)  # protection -> versions due but kept


def plan_key(entries: Iterable[Entry], retention: Retention, now: datetime, lock_enabled: bool) -> KeyPlan:
    """Which entries of one key (all its versions and markers) the policy says are expired."""
    ordered = order(entries)
    if not ordered:
        return KeyPlan("")
    plan = KeyPlan(ordered[0].key)
    if retention.days_for(plan.key) is None or not ordered[0].is_latest:
        return plan  # permanent; or the listing did not return the current entry: never plan on partial data
    due = due_by_age(ordered, retention, now)
    deleted = [False] * len(ordered)
    survivor_behind = False  # walking oldest to newest: does anything older stay?
    for i in range(len(ordered) - 1, -1, -1):
        entry = ordered[i]
        if entry.marker:
            # rule 3: a marker with nothing left behind it; an aged noncurrent marker hides nothing
            deleted[i] = not survivor_behind or (i > 0 and due[i])
        else:
            why = protection(entry, now, lock_enabled)
            if due[i] and why is not None:
                plan.kept[why] = plan.kept.get(why, 0) + 1
            deleted[i] = due[i] and why is None
        if not deleted[i]:
            survivor_behind = True
    head = ordered[0]
    if deleted[0] and not head.marker and any(not d for d in deleted[1:]):
        plan.hide = True  # a kept version would become current: hide it behind a new delete marker first
    plan.delete = [e for e, d in zip(reversed(ordered), reversed(deleted)) if d]
    return plan


@dataclass
class SweepTally:
    """What one bucket's sweep found and chose, for the finding."""

    keys_seen: int = 0
    entries_seen: int = 0
    due: int = 0
    planned: int = 0
    deferred: int = 0
    hidden: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    capped: bool = False
    sample: list[str] = field(default_factory=list)


@dataclass
class Sweep:
    """Plans one bucket's deletions key by key under a budget (``cap``); pure.

    ``mode`` is the stage's effective mode: in ``dry_run`` the plan is made the same way (what an
    enforce run would do) but lands in ``report``, never in ``delete``. Permanent and unmanaged
    buckets never reach a Sweep (``retention is None``), and a permanent retention plans nothing.
    """

    retention: Retention | None
    now: datetime
    cap: int
    mode: Literal["enforce", "dry_run"]
    lock_enabled: bool = False
    delete: list[Entry] = field(default_factory=list)
    report: list[Entry] = field(default_factory=list)
    hide: list[str] = field(default_factory=list)
    tally: SweepTally = field(default_factory=SweepTally)
    last_complete_key: str | None = None

    @property
    def full(self) -> bool:
        return self.tally.planned >= self.cap

    def candidates(self, entries: list[Entry]) -> list[Entry]:
        """The versions of a key due by age: the only ones whose lock state needs reading."""
        if self.retention is None:
            return []
        ordered = order(entries)
        return [e for e, d in zip(ordered, due_by_age(ordered, self.retention, self.now)) if d and not e.marker]

    def feed(self, entries: list[Entry]) -> KeyPlan | None:
        """Plan one key (every entry it has). Returns None once the budget is spent."""
        if self.retention is None or not entries:
            return None
        self.tally.keys_seen += 1
        self.tally.entries_seen += len(entries)
        plan = plan_key(entries, self.retention, self.now, self.lock_enabled)
        for why, n in plan.kept.items():
            self.tally.kept[why] = self.tally.kept.get(why, 0) + n
        self.tally.due += len(plan.delete)
        left = self.cap - self.tally.planned
        take = plan.delete[:max(left, 0)]
        if len(take) < len(plan.delete):
            self.tally.capped = True
            self.tally.deferred += len(plan.delete) - len(take)
        complete = len(take) == len(plan.delete)
        target = self.delete if self.mode == "enforce" else self.report
        target.extend(take)
        self.tally.planned += len(take)
        if plan.hide and complete:
            self.hide.append(plan.key)
            self.tally.hidden += 1
        if take and len(self.tally.sample) < 10:
            self.tally.sample.append(plan.key)
        if complete:
            self.last_complete_key = plan.key
        return plan


def batches(entries: list[Entry], size: int = 1000) -> list[list[Entry]]:
    """DeleteObjects takes at most 1,000 keys per request."""
    return [entries[i:i + size] for i in range(0, len(entries), size)]
