"""From buckets to decisions: read each bucket through the ports, plan with :mod:`keeper.plan`, decide.

One :class:`Keeper` serves the Lambda's three paths (bucket events, the AWS Config rule, the daily
run) and the command line. Nothing here writes to AWS: every change is an action in a
:class:`~stage_policy.actions.Decision`, carried out (or, in dry run, described) by the executor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Literal

from keeper.actions import DeleteVersions, EnableVersioning, HideObject, PutLifecycle, RememberStage, SaveSweepMarker, StageGuard
from keeper.plan import LifecycleDiff, Sweep, audit_conflicts, batches, lifecycle_diff
from keeper.ports import BucketConfig, BucketReader, LockReader, Remembered, StageMemory, SweepMarkers, VersionLister, group_by_key
from keeper import posture as posture_plan
from keeper.posture import AccountBlockReader, PostureReader, PostureState

from stage_policy.actions import Decision
from stage_policy.errors import describe, is_transient
from stage_policy.findings import Finding
from stage_policy.mapping import StageMatch, stage_for_bucket
from stage_policy.model import Policy, Retention

Mode = Literal["enforce", "dry_run"]


def arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def _cut(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " …[truncated]"


def _bounded(value: Any, limit: int = 4000) -> Any:
    """JSON-able evidence, cut with a marker when its text would pass ``limit`` characters."""
    text = json.dumps(value, default=str, sort_keys=True)
    return value if len(text) <= limit else text[: limit - 15] + " …[truncated]"


def kept_forever(retention: Retention) -> bool:
    """A permanent or immutable stage: nothing in it may ever expire."""
    return retention.permanent or retention.immutable


#: The command an operator runs to move a remembered permanent bucket to a perishable stage (named in findings).
RESTAGE = "stagewarden retention restage --bucket {bucket} --to STAGE --by NAME --reason TEXT"


class BucketsUnreadable(RuntimeError):
    """Reads throttled or failed (5xx) during a run: raised once every other bucket is done, so the run is retried."""


@dataclass
class BucketView:
    """One bucket as the policy sees it."""

    config: BucketConfig
    match: StageMatch
    retention: Retention | None
    audit: bool = False
    #: Why the bucket is held permanent against its tag (the tag names a perishable stage, the name a permanent one).
    conflict: str | None = None
    #: Its posture settings (None: its stage has no posture section, or posture is not read).
    posture: PostureState | None = None
    #: Its stage memory (None: never seen in a permanent stage, or no memory wired).
    memory: Remembered | None = None
    #: Why it is held at its remembered permanent stage against its tag (a downgrade nobody approved).
    downgrade: str | None = None
    #: What its tag (or name) maps it to now, when that differs from the stage held (downgrade) or approved (restage).
    tagged: StageMatch | None = None
    #: The operator's approval this reconcile consumes (the tag now names the approved stage).
    restaged: Remembered | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def stage(self) -> str | None:
        return self.match.stage


@dataclass
class RunState:
    """Per-run bookkeeping across buckets: where the cap or the time budget stopped the sweep."""

    capped_at: list[tuple[str, str | None]] = field(default_factory=list)  # (bucket, continue after key)
    cap_spent_before: list[str] = field(default_factory=list)
    out_of_time: list[str] = field(default_factory=list)


class Keeper:
    """Reconciles and sweeps buckets under one policy, as of ``now``."""

    def __init__(self, policy: Policy, reader: BucketReader, lister: VersionLister, locks: LockReader, now: datetime,
                 audit_buckets: tuple[str, ...] = (), markers: SweepMarkers | None = None, log: Any = None,
                 posture: PostureReader | None = None, account: AccountBlockReader | None = None,
                 memory: StageMemory | None = None):
        self.policy, self.reader, self.lister, self.locks = policy, reader, lister, locks
        self.memory = memory
        self.posture_reader, self.account = posture, account
        self.now = now
        self.audit_buckets = frozenset(b for b in audit_buckets if b)
        self.markers = markers
        self.log = log

    # ---------------------------------------------------------------- reading
    def view(self, bucket: str) -> BucketView:
        tags = self.reader.tags(bucket)
        match = stage_for_bucket(self.policy, bucket, tags)
        audit = bucket in self.audit_buckets
        memory = self.memory.get(bucket) if self.memory is not None and not audit else None
        held, downgrade, tagged, restaged = self._memory(bucket, match, memory)
        if held is not None:
            match = held
        if match.stage is None and not audit:
            return BucketView(BucketConfig(bucket, tags, []), match, None, memory=memory)  # unmanaged: nothing more is read
        config = self.reader.read(bucket, tags, lock=False)  # Object Lock: read below, or by a sweep, when needed
        if audit:
            return BucketView(config, match, None, True)
        retention = self.policy.stages[match.stage].retention
        conflict = None
        by_name = stage_for_bucket(self.policy, bucket, None)
        if match.via == "tag" and by_name.stage and by_name.stage != match.stage:
            named = self.policy.stages[by_name.stage].retention
            if named.permanent and not retention.permanent:
                # a tag must not turn a permanent bucket perishable: hold it to its name's stage and alert
                conflict = (f"tag {self.policy.resources.tag_key}={match.stage} would make it perishable, but its name maps "
                            f"it to permanent stage {by_name.stage}; kept permanent until the two agree")
                retention = named
        state = None
        baseline = self.policy.stages[match.stage].posture
        if retention.immutable or (baseline is not None and baseline.object_lock):
            self.lock_state(config)
        if self.posture_reader is not None and baseline is not None:
            state = self.posture_reader.read(bucket, config.versioning, config.lock_enabled,
                                             logging=baseline.access_logging is not None)
        return BucketView(config, match, retention, False, conflict, state, memory, downgrade, tagged, restaged)

    def _memory(self, bucket: str, match: StageMatch, memory: Remembered | None
                ) -> tuple[StageMatch | None, str | None, StageMatch | None, Remembered | None]:
        """(the stage to hold the bucket at, why, what it is tagged now, the approval consumed): a remembered permanent
        bucket that its tag (or its name, once the tag is gone) now maps to a perishable stage or to none is held at
        its remembered stage, unless an operator approved exactly this move and the approval has not lapsed."""
        if memory is None or memory.stage not in self.policy.stages:
            return None, None, None, None  # a stage the policy no longer has holds nothing (the policy is audited)
        if not kept_forever(self.policy.stages[memory.stage].retention):
            return None, None, None, None
        if match.stage is not None:
            if kept_forever(self.policy.stages[match.stage].retention):
                return None, None, None, None
            by_name = stage_for_bucket(self.policy, bucket, None)
            if match.via == "tag" and by_name.stage and kept_forever(self.policy.stages[by_name.stage].retention):
                return None, None, None, None  # held permanent by its name already (retention.stage-conflict)
        approved = memory.approval(datetime.now(timezone.utc))  # the clock, not the event's time: approvals lapse in real time
        if approved is not None and approved == match.stage:
            return None, None, match, memory
        now = f"stage {match.stage}" if match.stage else "no stage"
        pending = (f"; the pending approval is for stage {memory.approved_to}, not {match.stage or 'no stage'}"
                   if memory.approved_to and approved is not None else
                   f"; the approval for stage {memory.approved_to} lapsed at {memory.approved_until}" if memory.approved_to else "")
        why = (f"it now maps to {now} ({match.detail}), but it was in permanent stage {memory.stage} (remembered since "
               f"{memory.since or 'its first reconcile'}); held there until an operator approves the move{pending}")
        held = StageMatch(memory.stage, "remembered", f"held at remembered permanent stage {memory.stage} ({match.detail})")
        return held, why, match, None

    def lock_state(self, config: BucketConfig) -> BucketConfig:
        """The bucket's Object Lock settings, read on first need: an immutable stage, ``posture.object_lock``, or a
        sweep that meets a version due (a compliant bucket with nothing due is spared the GET)."""
        if not config.lock_read:
            config.lock_enabled, config.default_retention = self.reader.object_lock(config.name)
            config.lock_read = True
        return config

    # ---------------------------------------------------------------- the lifecycle
    def reconcile(self, view: BucketView, principal: str | None = None, trigger: str | None = None) -> list[Decision]:
        """Decisions that bring the bucket's lifecycle, versioning and lock settings to policy (no sweep)."""
        b, resource = view.config, arn(view.name)
        if view.audit:
            return self._audit(view, principal, trigger)
        if view.stage is None or view.retention is None:
            return self._unmapped_by_tag(view, principal)
        stage, ret, out = view.stage, view.retention, []
        base = {"stage": stage, "mapped_by": view.match.detail, "bucket": view.name}
        out += self._remember(view, principal, trigger)
        if view.conflict:
            out.append(Decision(Finding(
                rule="retention.stage-conflict", severity="critical", stage=stage, resource=resource, principal=principal,
                summary=_cut(f"Bucket {view.name}: {view.conflict}.", 990), evidence=base | {"tags": b.tags}), [], stage))
        diff = lifecycle_diff(ret, b.rules, self.policy.safety.min_retention_days)
        if diff.drifted:
            action = self._put(view, diff)
            if ret.permanent:
                out.append(Decision(Finding(
                    rule="retention.permanent-expiry", severity="critical", stage=stage, resource=resource, principal=principal,
                    summary=f"Bucket {view.name} is in permanent stage {stage} but its lifecycle deletes data: {_cut(diff.summary())}.",
                    evidence=base | self._diff_evidence(diff)), [action], stage))
            else:
                out.append(Decision(Finding(
                    rule="retention.drift", severity=diff.severity, stage=stage, resource=resource, principal=principal,
                    summary=f"Lifecycle of bucket {view.name} differs from the {stage} policy: {_cut(diff.summary())}.",
                    evidence=base | self._diff_evidence(diff)), [action], stage))
        if ret.permanent and b.versioning != "Enabled":
            out.append(Decision(Finding(
                rule="retention.versioning-off", severity="high", stage=stage, resource=resource, principal=principal,
                summary=f"Bucket {view.name} in permanent stage {stage} has versioning {b.versioning.lower()}: an overwrite "
                        "or delete loses published data.", evidence=base | {"versioning": b.versioning}),
                [EnableVersioning(view.name)], stage))
        if ret.immutable and not (b.lock_enabled and b.default_retention):
            missing = "Object Lock is not enabled" if not b.lock_enabled else "Object Lock has no default retention"
            out.append(Decision(Finding(
                rule="retention.object-lock-missing", severity="high", stage=stage, resource=resource, principal=principal,
                summary=f"Bucket {view.name} in immutable stage {stage}: {missing}, so published objects can be overwritten "
                        "or deleted.", evidence=base | {"object_lock_enabled": b.lock_enabled,
                                                        "default_retention": b.default_retention}), [], stage))
        return out + self.reconcile_posture(view, principal, trigger)

    def _remember(self, view: BucketView, principal: str | None, trigger: str | None) -> list[Decision]:
        """The stage memory's decisions: a held downgrade (critical), an approved restage carried out, or the bucket's
        permanent stage remembered (first seen, or moved between permanent stages)."""
        memory, stage, resource, key = view.memory, view.stage, arn(view.name), self.policy.resources.tag_key
        # only a tag event's caller retagged the bucket; another event's caller (a lifecycle change) is not blamed for it
        tagger = principal if trigger in ("PutBucketTagging", "DeleteBucketTagging") else None
        who = tagger or f"an unknown principal (found on {trigger or 'a reconcile'}, not on the retag's own event)"
        if view.downgrade and memory is not None:
            tag = view.config.tags.get(key)
            change = f"{key}={tag!r}" if tag is not None else f"its {key} tag removed"
            return [Decision(Finding(
                rule="retention.stage-downgrade", severity="critical", stage=stage, resource=resource, principal=tagger,
                summary=_cut(f"Bucket {view.name} was retagged ({change}) by {who}: {view.downgrade}. No expiry was applied "
                             f"and nothing is swept. To move it: {RESTAGE.format(bucket=view.name)}.", 990),
                evidence={"bucket": view.name, "held_at": memory.stage, "remembered_since": memory.since,
                          "remembered_by": memory.by, "now_maps_to": view.tagged.stage if view.tagged else None,
                          "mapped_by": view.tagged.detail if view.tagged else None, "trigger": trigger,
                          "tags": _bounded(view.config.tags, 1000),
                          "approval": ({"to": memory.approved_to, "by": memory.approved_by, "until": memory.approved_until}
                                       if memory.approved_to else None)}), [], stage)]
        if view.restaged is not None and stage is not None:
            m = view.restaged
            note = f"restage from {m.stage} approved by {m.approved_by} ({_cut(m.approved_reason or '', 200)})"
            after = Remembered(stage, since=self.now.isoformat(), by=_cut(f"{tagger or 'unknown'}; {note}", 600))
            return [Decision(Finding(
                rule="retention.restaged", severity="medium", stage=stage, resource=resource, principal=tagger,
                summary=_cut(f"Bucket {view.name} moved from permanent stage {m.stage} to {stage} (retagged by {who}), as "
                             f"approved by {m.approved_by}: {m.approved_reason}. Its lifecycle now follows {stage}.", 990),
                evidence={"bucket": view.name, "from": m.stage, "to": stage, "approved_by": m.approved_by,
                          "approved_reason": _cut(m.approved_reason or "", 500), "approved_by_operator": m.approved_operator,
                          "approved_at": m.approved_at, "approved_until": m.approved_until, "trigger": trigger}),
                [RememberStage(view.name, memory=after, store=self.memory, why=note)], stage)]
        if self.memory is None or stage is None or view.retention is None or not kept_forever(view.retention):
            return []
        permanent = stage if view.conflict is None else stage_for_bucket(self.policy, view.name, None).stage
        if memory is not None and memory.stage == permanent:
            return []
        # an approval pending for a bucket that moves between permanent stages stays pending
        after = Remembered(permanent, since=self.now.isoformat(), by=principal,
                           **({f: getattr(memory, f) for f in StageMemory.FIELDS if f.startswith("approved_")} if memory else {}))
        why = f"was {memory.stage}" if memory is not None else "first seen in a permanent stage"
        return [Decision(None, [RememberStage(view.name, memory=after, store=self.memory, why=why)], permanent)]

    def _unmapped_by_tag(self, view: BucketView, principal: str | None) -> list[Decision]:
        """A bucket whose name maps it to a stage but whose stage tag names none: unmanaged, and said so.

        Tag first, then globs: ``stagewarden:stage=anything-else`` on ``acme-lab-x`` takes the bucket out of
        every control. It stays untouched (the tag may be deliberate), but it is never silent.
        """
        key = self.policy.resources.tag_key
        if view.audit or key not in view.config.tags:
            return []
        by_name = stage_for_bucket(self.policy, view.name, None)
        if by_name.stage is None:
            return []
        return [Decision(Finding(
            rule="retention.stage-conflict", severity="high", stage=by_name.stage, resource=arn(view.name), principal=principal,
            summary=_cut(f"Bucket {view.name}: its name maps it to stage {by_name.stage}, but its tag {key}="
                         f"{view.config.tags[key]!r} names no stage in the policy, so it is unmanaged (no retention, "
                         "sweep or posture); nothing was changed.", 990),
            evidence={"bucket": view.name, "mapped_by_name": by_name.detail, "tag": _cut(view.config.tags[key], 256)}), [], None)]

    def reconcile_posture(self, view: BucketView, principal: str | None = None, trigger: str | None = None) -> list[Decision]:
        """``posture.*`` decisions that bring the bucket to its stage's security baseline."""
        if view.audit or view.stage is None or view.posture is None:
            return []
        baseline = self.policy.stages[view.stage].posture
        if baseline is None:
            return []
        account = self.account.account_id if self.account is not None else None
        region = getattr(self.posture_reader, "region", None)
        key = self.policy.resources.tag_key
        state = view.posture
        if state.public_grants is None and self.posture_reader is not None and (
                (trigger or "").startswith("PutBucketAcl") or not (state.block or {}).get("IgnorePublicAcls")):
            # the ACL matters when the block does not ignore public ACLs, or was just changed: a compliant bucket is
            # spared the GET (its block ignores them), a public grant made behind the block is still reported
            state.public_grants = self.posture_reader.public_grants(view.name)
        checks = posture_plan.plan(view.name, baseline, view.posture, view.retention, account, region,
                                   (key, view.config.tags.get(key)))
        base = {"stage": view.stage, "mapped_by": view.match.detail, "bucket": view.name}
        return posture_plan.decisions(view.name, view.stage, checks, base, principal, trigger)

    def account_posture(self, strict: bool = False) -> list[Decision]:
        """``posture.account-public-access`` from the account-level block (reported, never changed).

        ``strict``: a throttled or failing (5xx) read raises, for the run to retry."""
        if self.account is None:
            return []
        try:
            block = self.account.read()
        except Exception as exc:  # noqa: BLE001 - unreadable: said in the log, the buckets go on
            if self.log is not None:
                self.log.warning("account public access block unreadable", extra={"error": describe(exc)})
            if strict and is_transient(exc):
                raise
            return []
        decision = posture_plan.account_decision(block, self.account.account_id)
        return [decision] if decision else []

    def _audit(self, view: BucketView, principal: str | None, trigger: str | None) -> list[Decision]:
        floor = self.policy.safety.audit_log_retention_days
        problems = audit_conflicts(view.config.rules, floor)
        if trigger == "DeleteBucketLifecycle":
            problems.insert(0, "its lifecycle configuration was deleted")
        if not problems:
            return []
        return [Decision(Finding(
            rule="audit.tamper", severity="critical", stage=None, resource=arn(view.name), principal=principal,
            summary=_cut(f"Audit-log bucket {view.name}: {problems[0]}", 700) + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                    + f"; audit logs are kept at least {floor} days.",
            evidence={"bucket": view.name, "problems": problems[:20], "trigger": trigger,
                      "rules": _bounded(view.config.rules)}), [], None)]

    def _put(self, view: BucketView, diff: LifecycleDiff) -> PutLifecycle:
        key = self.policy.resources.tag_key
        return PutLifecycle(view.name, rules=tuple(diff.desired), expected=tuple(view.config.rules),
                            stage_tag=(key, view.config.tags.get(key)),
                            extra=tuple(sorted(view.config.lifecycle_extra.items())), summary=_cut(diff.summary(), 300))

    @staticmethod
    def _diff_evidence(diff: LifecycleDiff) -> dict[str, Any]:
        return {"diff": _bounded(diff.as_dict()), "actual_rules": _bounded(diff.actual),
                "required_rules": _bounded(diff.required), "desired_rules": _bounded(diff.desired)}

    # ---------------------------------------------------------------- the sweep
    def sweepable(self, view: BucketView) -> bool:
        """Only managed, perishable, unconflicted data buckets are ever listed for deletion."""
        ret = view.retention
        return (not view.audit and view.stage is not None and ret is not None and not kept_forever(ret)
                and view.conflict is None and view.downgrade is None and ret.default_days is not None)

    def plan_sweep(self, view: BucketView, mode: Mode, cap: int, out_of_time: Callable[[], bool] | None = None,
                   resume: bool = False) -> tuple[Sweep, str | None, str | None]:
        """List the bucket and plan its deletions. Returns (plan, started after key, why it stopped early or None)."""
        start = self.markers.get(view.name) if (resume and self.markers is not None) else None
        sweep = Sweep(view.retention, self.now, cap, mode, view.config.lock_enabled)
        stopped = None
        for entries in group_by_key(self.lister.pages(view.name, start)):
            if sweep.full:
                stopped = "cap"
                break
            if out_of_time is not None and out_of_time():
                stopped = "time"
                break
            if not view.config.lock_read and sweep.candidates(entries):  # a version is due: is the bucket locked?
                sweep.lock_enabled = self.lock_state(view.config).lock_enabled
            if sweep.lock_enabled:
                entries = self._read_locks(view.name, entries, sweep)
            sweep.feed(entries)
        if stopped is None and sweep.tally.capped:
            stopped = "cap"
        return sweep, start, stopped

    def _read_locks(self, bucket: str, entries: list, sweep: Sweep) -> list:
        wanted = {(e.key, e.version_id) for e in sweep.candidates(entries)}
        out = []
        for entry in entries:
            if (entry.key, entry.version_id) in wanted:
                try:
                    entry = self.locks.read(bucket, entry)
                except Exception as exc:  # noqa: BLE001 - unreadable lock state: kept as "unverified" (fail closed)
                    if self.log is not None:
                        self.log.warning("lock state unreadable; version kept", extra={"bucket": bucket, "key": entry.key,
                                                                                        "error": describe(exc)})
            out.append(entry)
        return out

    def sweep(self, view: BucketView, mode: Mode, cap: int, run: RunState,
              out_of_time: Callable[[], bool] | None = None) -> list[Decision]:
        """The bucket's sweep as decisions: deletions (or, in dry run, the report), and where it stopped."""
        if not self.sweepable(view):
            return []
        sweep, start, stopped = self.plan_sweep(view, mode, cap, out_of_time, resume=mode == "enforce")
        t, stage, resource = sweep.tally, view.stage, arn(view.name)
        decisions: list[Decision] = []
        entries = sweep.delete if mode == "enforce" else sweep.report
        continue_after = sweep.last_complete_key if stopped else None
        if stopped == "cap" and mode == "enforce":
            run.capped_at.append((view.name, continue_after or start))
        elif stopped == "time":
            run.out_of_time.append(view.name)
        # each request re-reads the bucket's stage first: retagged meanwhile, the rest of its sweep is skipped
        guard = StageGuard(view.name, stage, lambda tags: stage_for_bucket(self.policy, view.name, tags).stage)
        actions: list[Any] = [HideObject(view.name, key=k, guard=guard) for k in sweep.hide]
        actions += [DeleteVersions(view.name, entries=tuple(batch), guard=guard) for batch in batches(entries)]
        if mode == "enforce" and self.markers is not None:
            # stopped early: the next run starts after the last key planned whole; finished: from the first key again
            after = (continue_after or start) if stopped else None
            if after != start:
                actions.append(SaveSweepMarker(view.name, after_key=after, markers=self.markers, guard=guard))
        if entries or t.kept:
            markers = sum(1 for e in entries if e.marker)
            kept = ", ".join(f"{n} {why}" for why, n in sorted(t.kept.items()))
            verb = "Deleting" if mode == "enforce" else "Dry run: would delete"
            summary = (f"{verb} {len(entries) - markers} version(s) and {markers} delete marker(s) past retention "
                       f"in {view.name} ({stage})" + (f"; kept {kept} past retention" if kept else "") + ".")
            decisions.append(Decision(Finding(
                rule="retention.swept", severity="low", stage=stage, resource=resource, summary=summary,
                evidence={"bucket": view.name, "stage": stage, "as_of": self.now.isoformat(), "keys_examined": t.keys_seen,
                          "entries_examined": t.entries_seen, "due": t.due, "planned": t.planned, "deferred": t.deferred,
                          "delete_markers_placed": t.hidden, "kept_past_retention": t.kept, "sample_keys": t.sample,
                          "started_after": start, "stopped": stopped}), actions, stage))
        elif actions:
            decisions.append(Decision(None, actions, stage))
        return decisions

    # ---------------------------------------------------------------- whole runs
    def run(self, buckets: list[str], executor: Any, sweep: bool, principal: str | None = None, trigger: str | None = None,
            out_of_time: Callable[[], bool] | None = None) -> Iterator[Decision]:
        """Reconcile (and sweep) each bucket in turn; lazily, so each bucket's cap is what the last one left."""
        run = RunState()
        skipped: list[str] = []
        transient: list[str] = []  # throttled or 5xx: the rest go on, then the run fails and is retried
        if sweep:  # the daily run: the account-level block too
            try:
                yield from self.account_posture(strict=True)
            except Exception as exc:  # noqa: BLE001 - transient only (account_posture logs the rest): raised at the end
                transient.append(f"account public access block: {describe(exc)}")
        for bucket in buckets:
            if out_of_time is not None and out_of_time():
                run.out_of_time.append(bucket)
                continue
            try:
                view = self.view(bucket)
            except Exception as exc:  # noqa: BLE001 - one unreadable bucket is reported, the rest go on
                if self.log is not None:
                    self.log.warning("bucket unreadable", extra={"bucket": bucket, "error": describe(exc)})
                (transient if is_transient(exc) else skipped).append(f"{bucket}: {describe(exc)}")
                continue
            try:
                decided = self.reconcile(view, principal, trigger)
            except Exception as exc:  # noqa: BLE001 - one bucket's odd settings are reported, the rest go on
                if self.log is not None:
                    self.log.warning("bucket not reconciled", extra={"bucket": bucket, "error": describe(exc)})
                skipped.append(f"{bucket}: {describe(exc)}")
                continue
            yield from decided
            if not sweep or not self.sweepable(view):
                continue
            mode = executor.mode_for(view.stage)
            cap = executor.remaining("deletions")
            if mode == "enforce" and cap <= 0:
                run.cap_spent_before.append(bucket)
                continue
            try:
                decisions = self.sweep(view, mode, cap, run, out_of_time)  # lists and plans: reads only
            except Exception as exc:  # noqa: BLE001 - reported; the other buckets are still swept
                if self.log is not None:
                    self.log.warning("bucket not swept", extra={"bucket": bucket, "error": describe(exc)})
                (transient if is_transient(exc) else skipped).append(f"{bucket}: {describe(exc)}")
                continue
            yield from decisions
        yield from self._run_findings(run, skipped)
        if transient:
            # a throttle or a 5xx is no verdict on the bucket: waiting for tomorrow's run would leave a tampered
            # lifecycle in place for a day. The run fails after the rest was done; its retry reconciles again.
            raise BucketsUnreadable(f"{len(transient)} read(s) throttled or failed, retried: " + "; ".join(transient[:5]))

    def _run_findings(self, run: RunState, skipped: list[str]) -> Iterator[Decision]:
        cap = self.policy.safety.max_deletions_per_run
        if run.capped_at or run.cap_spent_before:
            where = run.capped_at[0][0] if run.capped_at else run.cap_spent_before[0]
            after = run.capped_at[0][1] if run.capped_at else None
            later = [b for b, _ in run.capped_at[1:]] + run.cap_spent_before
            yield Decision(Finding(
                rule="retention.cap-reached", severity="medium", stage=None, resource=arn(where),
                summary=f"The retention sweep stopped at safety.max_deletions_per_run ({cap}) in {where}"
                        + (f" after key {_cut(repr(after), 200)}" if after else "") + "; the next run continues"
                        + (f" (also not finished: {', '.join(later[:10])})" if later else "") + ".",
                evidence={"max_deletions_per_run": cap, "stopped_in": where, "continue_after": after,
                          "not_finished": later[:50]}), [], None)
        if run.out_of_time:
            yield Decision(Finding(
                rule="retention.sweep-incomplete", severity="medium", stage=None, resource=arn(run.out_of_time[0]),
                summary=f"The retention run ran out of time before finishing {len(run.out_of_time)} bucket(s) "
                        f"({', '.join(run.out_of_time[:5])}); the next run continues where each stopped.",
                evidence={"buckets": run.out_of_time[:50]}), [], None)
        if skipped:
            yield Decision(Finding(
                rule="retention.unreadable", severity="medium", stage=None, resource=arn(skipped[0].split(":", 1)[0]),
                summary=_cut(f"{len(skipped)} bucket(s) could not be read (not reconciled or not swept): {skipped[0]}.", 990),
                evidence={"buckets": skipped[:50]}), [], None)

    # ---------------------------------------------------------------- AWS Config
    def evaluate(self, bucket: str) -> tuple[str, str]:
        """(COMPLIANT | NON_COMPLIANT | NOT_APPLICABLE, annotation) for one bucket; reads only."""
        compliance, annotation, _ = self.assess(bucket)
        return compliance, annotation

    def assess(self, bucket: str) -> tuple[str, str, list[Decision]]:
        """:meth:`evaluate`, with the decisions behind it (reads only: nothing is carried out here)."""
        view = self.view(bucket)
        if not view.audit and view.stage is None:
            return "NOT_APPLICABLE", f"not mapped to a stage ({view.match.detail})"[:256], []
        decisions = self.reconcile(view)
        findings = [d.finding for d in decisions if d.finding is not None]
        if not findings:
            what = "audit-log bucket" if view.audit else f"stage {view.stage}"
            checked = " and posture (encryption, public access, TLS, versioning, logging)" if view.posture is not None else ""
            return "COMPLIANT", f"{what}: lifecycle, versioning and lock settings{checked} as the policy requires"[:256], []
        text = "; ".join(f"{f.rule}: {f.summary}" for f in findings)
        return "NON_COMPLIANT", text if len(text) <= 256 else text[:241] + " …[truncated]", decisions
