"""Break glass: grant, close (expiry and early end), sweep, and the CloudTrail events that touch break-glass roles.

One engine for the function (events, the one-time expiry schedules, the 5-minute sweep) and the
command line (`stagewarden breakglass ...`, with the operator's credentials). It reads AWS through
the ports, decides with :mod:`warden.rules`, acts through the layer's executor and publishes
findings through the one publisher.

State, and why it cannot double-fire:

* a role's record holds its **baseline** trust policy (recorded the first time Stagewarden sees the
  role without a grant, at a grant or a sweep) and ``active_grant``, the lock that allows **one grant
  at a time per role** (a DynamoDB transaction takes it with the grant's register entry);
* closing a grant first **claims** it (a conditional write: exactly one of the schedule, the sweep and
  `end` wins; a dead claimer's lease runs out after :data:`CLAIM_LEASE_SECONDS`), then acts, then
  marks it closed and creates the review in one transaction. A second run finds it closed and does
  nothing: one closed record, one finding, one review.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from warden.actions import (
    DeleteInlinePolicy, DeleteSchedule, DenySession, DetachPolicy, PutInlinePolicy, RemoveApprovalTags, RestoreInlinePolicy,
    RetagRole, RevertInlinePolicy, RevertTrust, RevokeRoleSessions, ScheduleExpiry, SetTrust, TagRole, UntagRole, VerifyClosed,
)
from warden.ports import Conflict, GrantStore, RoleReader, TrailReader
from warden.records import Grant, Review, RoleRecord
from warden.rules import (
    ANY_SOURCE, DEADLINE_POLICY, EXPIRES_TAG, GRANT_TAG, ISSUE_MARGIN, REVOKE_MARGIN, REVOKE_POLICY, SESSION_EVENTS, Caller,
    GrantRequest, Refused, RoleFacts, added_principals, approval_tags, break_glass_of, caller_of, canonical, console_approval, deadline_policy,
    deny_session_name, deny_session_policy, grant_refusals, grant_statement, is_human_caller, is_managed, is_protected,
    is_service_caller, iso, locked_stage, new_id, parse_time, revoke_policy, same_person, schedule_name,
    session_deny_is_stale, utc, with_statement,
)

from stage_policy.actions import Action, Decision, Outcome
from stage_policy.errors import describe, is_code
from stage_policy.executor import ActionFailed, Executor
from stage_policy.findings import Finding
from stage_policy.mapping import StageMatch, role_name, stage_for_role
from stage_policy.model import BreakGlass, Policy
from stage_policy.publish import publish_or_keep

#: A closer that dies mid-close holds the grant this long before the next sweep takes over.
CLAIM_LEASE_SECONDS = 300


@dataclass(frozen=True)
class Scheduling:
    """Where one-time expiry schedules go and what they invoke."""

    group: str
    function_arn: str
    role_arn: str
    dead_letter_arn: str = ""


def expire_payload(grant_id: str) -> dict[str, str]:
    """What a grant's schedule sends the function; Scheduler fills in the ``<aws.scheduler.*>`` context attributes."""
    return {"stagewarden": "breakglass-expire", "grant_id": grant_id, "scheduled_time": "<aws.scheduler.scheduled-time>",
            "execution_id": "<aws.scheduler.execution-id>"}


def wall_clock() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class SweepReport:
    as_of: str
    baselines_recorded: list[str] = field(default_factory=list)
    baseline_changed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)
    reviews_due: list[str] = field(default_factory=list)
    stale_denies_removed: list[str] = field(default_factory=list)
    exceptions_expired: list[str] = field(default_factory=list)
    exception_reviews_due: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class GrantFailed(ActionFailed):
    """A step of opening a grant failed; what was added is removed again."""

    def __init__(self, outcomes: list[Outcome], rollback: str):
        super().__init__(outcomes)
        self.rollback = rollback
        self.args = (f"{'; '.join(o.detail for o in outcomes)}; {rollback}",)


class SweepFailed(RuntimeError):
    """Some steps of a sweep failed (each named); the rest were done, their findings published."""

    def __init__(self, report: SweepReport):
        self.report = report
        super().__init__("; ".join(report.failed))


class Warden:
    """Break glass for one policy and one invocation (or one CLI command)."""

    def __init__(self, policy: Policy, store: GrantStore, roles: RoleReader, trail: TrailReader, executor: Executor,
                 publish: Callable[[Finding], Any], scheduling: Scheduling, stack_name: str = "",
                 clock: Callable[[], datetime] = wall_clock):
        self.policy, self.store, self.roles, self.trail = policy, store, roles, trail
        self.executor, self.publish, self.scheduling = executor, publish, scheduling
        self.stack_name = stack_name
        self.clock = clock

    # ================================================================== helpers
    def _finding(self, rule: str, severity: str, stage: str | None, resource: str, principal: str | None, summary: str,
                 evidence: dict[str, Any], when: datetime, dedup: str | None = None) -> Finding:
        return Finding(rule=rule, severity=severity, stage=stage, resource=resource, principal=principal,
                       summary=summary[:1000], evidence=evidence, first_seen=utc(when), dedup_key=dedup or "")

    def _act(self, finding: Finding | None, actions: list[Action], stage: str | None) -> list[Outcome]:
        return self.executor.act(Decision(finding, actions, stage))

    def _settle(self, finding: Finding, actions: list[Action], stage: str | None) -> Finding:
        """Act, publish, then raise :class:`ActionFailed` if an action failed (publishing first: a failure is reported)."""
        outcomes = self._act(finding, actions, stage)
        publish_or_keep(self.publish, finding, outcomes)  # a done action's finding is kept if publishing fails
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            raise ActionFailed(failed)
        return finding

    def _match(self, facts: RoleFacts) -> StageMatch:
        return stage_for_role(self.policy, facts.name, facts.tags)

    def _bg(self, stage: str | None) -> BreakGlass | None:
        if stage is None or stage not in self.policy.stages:
            return None
        bg = self.policy.stages[stage].break_glass
        return bg if bg is not None and bg.allowed else None

    def _active(self, record: RoleRecord | None) -> Grant | None:
        if record is None or not record.active_grant:
            return None
        grant = self.store.grant(record.active_grant)
        return grant if grant is not None and grant.status in ("active", "closing") else None

    @staticmethod
    def _desired(record: RoleRecord, grant: Grant | None) -> dict[str, Any]:
        statement = grant_statement(grant.grant_id, grant.principal, grant.deadline_at) if grant else None
        return with_statement(record.baseline, statement)

    def _ensure_baseline(self, facts: RoleFacts, trust: dict[str, Any], stage: str, by: str, now: datetime) -> tuple[RoleRecord, bool]:
        record = self.store.role(facts.name)
        if record is not None:
            return record, False
        recorded = self.store.record_baseline(facts.name, stage, trust, by, now)
        record = self.store.role(facts.name)
        assert record is not None
        return record, recorded

    def _remember(self, role: str, policy_name: str) -> None:
        """Record the inline policy as it now stands in IAM (what a later change is compared with)."""
        self.store.set_managed(role, policy_name, self.roles.inline(role, policy_name))

    # ================================================================== grant
    def grant(self, request: GrantRequest, now: datetime, requested_by: str, approver_verified: bool = False) -> Grant:
        """Open an approved grant, or raise :class:`Refused` having changed nothing."""
        got = self.roles.get(request.role)
        facts, trust = got if got else (None, None)
        match = self._match(facts) if facts else None
        reasons = grant_refusals(self.policy, facts, match, request, self.stack_name, requested_by)
        if reasons:
            raise Refused("; ".join(reasons))
        assert facts is not None and trust is not None and match is not None and match.stage is not None
        bg = break_glass_of(self.policy, match)
        assert bg is not None
        record = self.store.role(facts.name)
        holder = self._active(record)
        if holder is not None:
            raise Refused(self._overlap(holder, now))
        tags, _ = approval_tags(bg, request.approver, (request.ticket or "").strip(), request.tags)
        deadline = utc(now) + timedelta(minutes=request.minutes)
        return self._open(facts, trust, match.stage, bg, request.principal, request.approver, (request.ticket or "").strip(),
                          deadline, request.reason, requested_by, "cli", approver_verified, tags, now)

    @staticmethod
    def _overlap(holder: Grant, now: datetime) -> str:
        if holder.deadline_at <= utc(now):
            return (f"role {holder.role} still holds grant {holder.grant_id}, whose deadline {holder.deadline} has passed "
                    "but which is not closed yet (one grant at a time per role): run `stagewarden breakglass sweep`, then grant again")
        return (f"role {holder.role} already has grant {holder.grant_id} for {holder.principal} until {holder.deadline} "
                "(one grant at a time per role): end it with `stagewarden breakglass end`, then grant again")

    def _open(self, facts: RoleFacts, trust: dict[str, Any], stage: str, bg: BreakGlass, principal: str, approver: str,
              ticket: str, deadline: datetime, reason: str, requested_by: str, source: str, approver_verified: bool,
              tags: dict[str, str], now: datetime, opened_at: datetime | None = None) -> Grant:
        record, _ = self._ensure_baseline(facts, trust, stage, f"grant ({source})", now)
        if canonical(trust) != canonical(record.baseline) and source == "cli":
            self._baseline_changed(facts, trust, record, now, "found at grant time; the grant writes the baseline back")
        gid = new_id("bg", now)
        tags = {**tags, EXPIRES_TAG: iso(deadline), GRANT_TAG: gid}
        minutes = max(1, math.ceil((deadline - utc(now)).total_seconds() / 60))
        grant = Grant(grant_id=gid, role=facts.name, role_arn=facts.arn, stage=stage, principal=principal, approver=approver,
                      ticket=ticket, deadline=iso(deadline), created_at=iso(now), minutes=minutes, reason=reason[:1000],
                      requested_by=requested_by, approver_verified=approver_verified, source=source,
                      schedule=schedule_name(gid), tags=tags, opened_at=iso(min(utc(opened_at or now), utc(now))))
        try:
            self.store.open(grant)
        except Conflict:
            raise Refused(f"role {facts.name} was granted by another operator a moment ago (one grant at a time per role); "
                          "see `stagewarden breakglass list`") from None
        s = self.scheduling
        deadline_doc = deadline_policy(deadline)
        # the deadline goes into IAM first and the trust opens last: if any step fails, nothing was opened
        actions: list[Action] = [
            PutInlinePolicy(facts.name, name=DEADLINE_POLICY, document=json.dumps(deadline_doc)),
            TagRole(facts.name, tags=tuple(sorted(tags.items()))),
            ScheduleExpiry(grant.schedule, group=s.group, at=grant.deadline, function_arn=s.function_arn, role_arn=s.role_arn,
                           payload=json.dumps(expire_payload(gid)), dead_letter_arn=s.dead_letter_arn),
            SetTrust(facts.name, document=json.dumps(self._desired(record, grant)),
                     why=f"open grant {gid} to {principal} until {grant.deadline}"),
        ]
        finding = self._finding(
            "breakglass.granted", "high", stage, facts.arn, principal,
            f"Break glass opened on {facts.name} for {principal} until {grant.deadline} ({minutes} min), approved by "
            f"{approver}, ticket {ticket}.",
            {"grant_id": gid, "deadline": grant.deadline, "approver": approver, "approver_verified": approver_verified,
             "ticket": ticket, "reason": reason[:300], "requested_by": requested_by, "source": source,
             "schedule": f"{s.group}/{grant.schedule}"}, now, dedup=f"breakglass.granted:{gid}")
        outcomes = self._act(finding, actions, stage)
        failed = [o for o in outcomes if o.status == "failed"]
        if not failed:
            self._remember(facts.name, DEADLINE_POLICY)
            self.publish(finding)
        else:  # roll back: whatever was added is removed again, and the grant ends here
            alarm = self._finding(
                "breakglass.grant-failed", "high", stage, facts.arn, principal,
                f"Opening break glass on {facts.name} for {principal} failed ({failed[0].detail[:200]}); what was added is "
                "removed again and the grant is ended.", {**finding.evidence, "failed": [o.detail for o in failed]}, now,
                dedup=f"breakglass.grant-failed:{gid}")
            alarm.action = finding.action
            self.publish(alarm)
            rollback = "rolled back (the grant is ended)"
            try:
                self.close(gid, now, by="stagewarden (the grant failed)", reason="the grant failed: " + failed[0].detail,
                           status="ended")
            except Exception as exc:  # noqa: BLE001 - named in the error; the grant stays active and the sweep closes it
                rollback = f"roll-back failed ({describe(exc)}); the IAM deadline holds and the sweep closes it"
            raise GrantFailed(failed, rollback)
        return grant

    # ================================================================== close
    def expire(self, grant_id: str, now: datetime, via: str, scheduled: datetime | None = None) -> dict[str, Any]:
        """Close a grant whose deadline has come (schedule, sweep). Safe to run any number of times.

        A schedule's own firing (``scheduled`` equal to the grant's deadline, as Scheduler fills it in) is due
        by definition; anything else is due only once the deadline has passed.
        """
        grant = self.store.grant(grant_id)
        if grant is None:
            return {"grant": grant_id, "result": "no such grant"}
        due = grant.deadline_at <= utc(now) or (scheduled is not None and utc(scheduled) == grant.deadline_at)
        if grant.status in ("expired", "ended"):
            return {"grant": grant_id, "result": f"already {grant.status}"}
        if not due:
            return {"grant": grant_id, "result": f"not due: the deadline is {grant.deadline}"}
        return self.close(grant_id, now, by=via, reason="the deadline was reached", status="expired")

    def end(self, grant_id: str, now: datetime, by: str, reason: str) -> dict[str, Any]:
        """End a grant before its deadline (`stagewarden breakglass end`)."""
        grant = self.store.grant(grant_id)
        if grant is None:
            raise Refused(f"no grant {grant_id} (see `stagewarden breakglass list`)")
        if grant.status not in ("active", "closing"):
            raise Refused(f"grant {grant_id} is already {grant.status} (at {grant.closed_at})")
        return self.close(grant_id, now, by=by, reason=reason or "ended early", status="ended")

    def close(self, grant_id: str, now: datetime, by: str, reason: str, status: str) -> dict[str, Any]:
        """Claim the grant, restore the role, mark it closed with its review; a run that loses the claim does nothing."""
        if not self.store.claim(grant_id, now, CLAIM_LEASE_SECONDS, by):
            current = self.store.grant(grant_id)
            state = current.status if current else "gone"
            return {"grant": grant_id, "result": f"already {state}" if state != "closing" else "being closed by another run"}
        grant = self.store.grant(grant_id)
        assert grant is not None
        try:
            return self._close(grant, now, by, reason, status)
        except BaseException:
            self.store.release(grant_id)
            raise

    def _close(self, grant: Grant, now: datetime, by: str, reason: str, status: str) -> dict[str, Any]:
        record = self.store.role(grant.role)
        got = self.roles.get(grant.role)
        # revoke sessions issued up to a little after now: IAM is eventually consistent, and a session squeezed
        # through a trust policy that had not propagated yet is revoked too
        before = max(utc(now), self.clock()) + REVOKE_MARGIN
        revoke_doc = revoke_policy(before)
        actions: list[Action] = []
        evidence: dict[str, Any] = {"grant_id": grant.grant_id, "deadline": grant.deadline, "approver": grant.approver,
                                    "ticket": grant.ticket, "closed_by": by, "reason": reason,
                                    "sessions_seen": len(grant.sessions), "sessions_revoked_before": iso(before)}
        if got is None or record is None:
            evidence["note"] = "the role no longer exists, or has no baseline record: nothing to restore"
            actions = [DeleteSchedule(grant.schedule, group=self.scheduling.group)]
        else:
            facts, _ = got
            tag_keys = tuple(sorted(k for k, v in grant.tags.items() if facts.tags.get(k) == v))
            actions = [
                SetTrust(grant.role, document=json.dumps(record.baseline), why=f"restore the baseline: grant {grant.grant_id} {status}"),
                RevokeRoleSessions(grant.role, name=REVOKE_POLICY, document=json.dumps(revoke_doc)),
                DeleteInlinePolicy(grant.role, name=DEADLINE_POLICY),
                *([UntagRole(grant.role, keys=tag_keys)] if tag_keys else []),
                DeleteSchedule(grant.schedule, group=self.scheduling.group),
                VerifyClosed(grant.role, baseline=json.dumps(record.baseline), removed_policies=(DEADLINE_POLICY,),
                             removed_tags=tuple(sorted(grant.tags.items())), revoke_policy=REVOKE_POLICY, revoked_before=iso(before)),
            ]
        word = "expired" if status == "expired" else "ended early"
        finding = self._finding(
            f"breakglass.{status}", "medium", grant.stage, grant.role_arn, grant.principal,
            f"Break-glass grant {grant.grant_id} on {grant.role} for {grant.principal} {word}: baseline trust restored, "
            f"sessions issued before {iso(before)} revoked.", evidence, now, dedup=f"breakglass.{status}:{grant.grant_id}")
        outcomes = self._act(finding, actions, grant.stage)
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            alarm = self._finding(
                "breakglass.expiry-failed", "critical", grant.stage, grant.role_arn, grant.principal,
                f"Closing break-glass grant {grant.grant_id} on {grant.role} failed; the IAM deadline still denies every call "
                f"after {grant.deadline}. It is retried by the next sweep.", {**evidence, "failed": [o.detail for o in failed]},
                now, dedup=f"breakglass.expiry-failed:{grant.grant_id}")
            alarm.action = finding.action
            self.publish(alarm)
            raise ActionFailed(failed)
        if got is not None and record is not None:
            self.store.set_managed(grant.role, REVOKE_POLICY, revoke_doc)
            self.store.set_managed(grant.role, DEADLINE_POLICY, None)
        review = self._review(grant, now, status)
        if not self.store.close(grant, status, now, by, reason, review):
            return {"grant": grant.grant_id, "result": "already closed by another run"}
        if review is not None:
            finding.evidence["review_due"] = review.due
        self.publish(finding)
        self.store.mark_published(grant.grant_id)
        return {"grant": grant.grant_id, "result": status, "role": grant.role, "revoked_before": iso(before),
                "review_due": review.due if review else None, "actions": [o.detail for o in outcomes]}

    def _review(self, grant: Grant, now: datetime, status: str) -> Review | None:
        bg = self._bg(grant.stage)
        if bg is not None and not bg.post_incident_review:
            return None
        days = bg.review_due_days if bg is not None else 5
        keys = [s["access_key"] for s in grant.sessions if s.get("access_key")]
        opened = parse_time(grant.created_at)
        activity = self.trail.activity(keys, opened, max(utc(now), opened))
        return Review(grant_id=grant.grant_id, role=grant.role, stage=grant.stage, principal=grant.principal,
                      approver=grant.approver, ticket=grant.ticket, reason=grant.reason, opened_at=grant.created_at,
                      closed_at=iso(now), closed_how=status, due=iso(utc(now) + timedelta(days=days)),
                      sessions=grant.sessions, activity=activity)

    def complete_review(self, grant_id: str, by: str, notes: str, now: datetime) -> None:
        try:
            self.store.complete_review(grant_id, by, notes, now)
        except Conflict:
            review = self.store.review(grant_id)
            raise Refused(f"grant {grant_id} has no open review" + (f" (done by {review.reviewed_by} at {review.reviewed_at})"
                                                                     if review else "")) from None

    # ================================================================== baselines
    def _baseline_changed(self, facts: RoleFacts, trust: dict[str, Any], record: RoleRecord, now: datetime, note: str) -> None:
        import hashlib

        digest = hashlib.sha256(canonical(trust).encode()).hexdigest()[:12]
        finding = self._finding(
            "breakglass.baseline-changed", "high", record.stage or None, facts.arn, None,
            f"The trust policy of break-glass role {facts.name} differs from its recorded baseline ({note}).",
            {"baseline": record.baseline, "current": trust, "recorded_at": record.recorded_at,
             "added_principals": added_principals(record.baseline, trust),
             "accept_with": f"stagewarden breakglass baseline --role {facts.name} (records the current trust as the baseline)"},
            now, dedup=f"breakglass.baseline-changed:{facts.name}:{digest}")
        self.publish(finding)

    def accept_baseline(self, role: str, now: datetime, by: str) -> RoleRecord:
        got = self.roles.get(role)
        if got is None:
            raise Refused(f"role {role} does not exist")
        facts, trust = got
        match = self._match(facts)
        if self._bg(match.stage) is None:
            raise Refused(f"role {role} is not a break-glass role ({match.detail})")
        try:
            self.store.reset_baseline(role, match.stage or "", trust, by, now)
        except Conflict:
            raise Refused(f"role {role} has an open grant: its trust carries the grant's statement; end the grant first") from None
        record = self.store.role(role)
        assert record is not None
        return record

    # ================================================================== sweep
    def break_glass_roles(self) -> list[str]:
        names = set()
        for name, _arn, path in self.roles.every():
            if is_protected(name, path, self.stack_name):
                continue
            if self._bg(stage_for_role(self.policy, name, self.roles.tags(name)).stage) is not None:
                names.add(name)
        return sorted(names)

    def sweep(self, now: datetime, via: str = "sweep") -> SweepReport:
        """Once, as of ``now``: baselines, overdue grants, unpublished closings, due reviews, stale denies, exceptions."""
        from warden.timeboxed import sweep_exceptions

        report = SweepReport(as_of=iso(now))

        def attempt(what: str, work: Callable[[], Any]) -> Any:
            try:
                return work()
            except Exception as exc:  # noqa: BLE001 - one role or grant failing must not stop the others; reported
                report.failed.append(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")
                return None

        for role in attempt("list break-glass roles", self.break_glass_roles) or []:
            attempt(f"baseline of {role}", lambda role=role: self._check_role(role, now, report))
        for grant in self.store.grants():
            if grant.status in ("active", "closing") and grant.deadline_at <= utc(now):
                result = attempt(f"expire {grant.grant_id}", lambda g=grant: self.expire(g.grant_id, now, via))
                if result and result.get("result") == "expired":
                    report.expired.append(grant.grant_id)
            elif grant.status in ("expired", "ended") and not grant.published:
                attempt(f"republish {grant.grant_id}", lambda g=grant: self._republish(g, now, report))
        for review in self.store.reviews():
            if review.status == "open" and parse_time(review.due) <= utc(now):
                attempt(f"review of {review.grant_id}", lambda r=review: self._review_due(r, now, report))
        attempt("exceptions", lambda: sweep_exceptions(self, now, report))
        if report.failed:
            raise SweepFailed(report)
        return report

    def _check_role(self, role: str, now: datetime, report: SweepReport) -> None:
        got = self.roles.get(role)
        if got is None:
            return
        facts, trust = got
        match = self._match(facts)
        if self._bg(match.stage) is None:
            return
        record = self.store.role(role)
        if record is None:
            if self.store.record_baseline(role, match.stage or "", trust, "sweep", now):
                report.baselines_recorded.append(role)
            return
        grant = self._active(record)
        if canonical(trust) != canonical(self._desired(record, grant)):
            report.baseline_changed.append(role)
            note = f"while grant {grant.grant_id} is open" if grant else "no grant is open"
            self._baseline_changed(facts, trust, record, now, note)
        for name in list(record.managed):
            if name.startswith("StagewardenBreakGlassDenySession-") and session_deny_is_stale(json.loads(record.managed[name]), now):
                self._settle_quietly(DeleteInlinePolicy(role, name=name), record.stage)
                self.store.set_managed(role, name, None)
                report.stale_denies_removed.append(f"{role}/{name}")

    def _settle_quietly(self, action: Action, stage: str | None) -> None:
        outcomes = self._act(None, [action], stage)
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            raise ActionFailed(failed)

    def _republish(self, grant: Grant, now: datetime, report: SweepReport) -> None:
        finding = self._finding(
            f"breakglass.{grant.status}", "medium", grant.stage, grant.role_arn, grant.principal,
            f"Break-glass grant {grant.grant_id} on {grant.role} for {grant.principal} was {grant.status} at {grant.closed_at} "
            "(reported late: the first report did not go out).",
            {"grant_id": grant.grant_id, "closed_at": grant.closed_at, "closed_by": grant.closed_by}, now,
            dedup=f"breakglass.{grant.status}:{grant.grant_id}")
        finding.action = "reported by the sweep"
        self.publish(finding)
        self.store.mark_published(grant.grant_id)
        report.republished.append(grant.grant_id)

    def _review_due(self, review: Review, now: datetime, report: SweepReport) -> None:
        finding = self._finding(
            "breakglass.review-due", "medium", review.stage, review.role, review.principal,
            f"The post-incident review of break-glass grant {review.grant_id} on {review.role} was due {review.due} and is "
            f"not done (approver {review.approver}, ticket {review.ticket}).",
            {"grant_id": review.grant_id, "due": review.due, "closed_at": review.closed_at,
             "complete_with": f"stagewarden breakglass review --grant {review.grant_id} --reviewer NAME --notes TEXT"},
            now, dedup=f"breakglass.review-due:{review.grant_id}")
        finding.action = "alert only (reminds daily, per alerts.dedup_window_minutes, until the review is done)"
        self.publish(finding)
        report.reviews_due.append(review.grant_id)

    # ================================================================== CloudTrail events
    def on_event(self, detail: dict[str, Any], now: datetime) -> dict[str, Any]:
        """One CloudTrail record (EventBridge) about IAM roles, STS or console sign-in."""
        name = str(detail.get("eventName") or "")
        if name in SESSION_EVENTS:
            return self._session(detail, now)
        if name in ("UpdateAssumeRolePolicy", "AttachRolePolicy", "PutRolePolicy", "DeleteRolePolicy", "TagRole"):
            return self._change(detail, name, now)
        return {"event": name, "result": "ignored (not an event break glass watches)"}

    @staticmethod
    def _when(detail: dict[str, Any], now: datetime) -> datetime:
        try:
            return parse_time(str(detail.get("eventTime")))
        except (ValueError, TypeError):
            return utc(now)

    # ------------------------------------------------------------------ sessions
    def _session(self, detail: dict[str, Any], now: datetime) -> dict[str, Any]:
        name = str(detail.get("eventName"))
        when = self._when(detail, now)
        caller = caller_of(detail.get("userIdentity"))
        response = detail.get("responseElements") or {}
        if name == "ConsoleLogin":
            role_arn = caller.principal if caller.kind == "AssumedRole" else None
            session_id, access_key = caller.session_id, (detail.get("userIdentity") or {}).get("accessKeyId")
            failed = str(response.get("ConsoleLogin", "")).lower() == "failure" or bool(detail.get("errorMessage"))
        else:
            role_arn = (detail.get("requestParameters") or {}).get("roleArn")
            session_id = ((response.get("assumedRoleUser") or {}).get("assumedRoleId"))
            access_key = (response.get("credentials") or {}).get("accessKeyId")
            failed = bool(detail.get("errorCode"))
        if not role_arn or ":role/" not in str(role_arn):
            return {"event": name, "result": "ignored (not a role)"}
        role = role_name(str(role_arn))
        if is_protected(role, _path_of(str(role_arn)), self.stack_name):
            return {"event": name, "role": role, "result": "ignored (Stagewarden's own or a service-linked role)"}
        try:
            tags = self.roles.tags(role)
        except Exception as exc:  # noqa: BLE001 - another account's role, or a deleted one: not ours to judge
            if not is_code(exc, "NoSuchEntity", "AccessDenied", "AccessDeniedException"):
                raise  # throttling, a 5xx: the record is retried (then dead-lettered), never passed as "not break glass"
            return {"event": name, "role": role, "result": f"ignored (tags unreadable: {type(exc).__name__})"}
        match = stage_for_role(self.policy, role, tags)
        bg = self._bg(match.stage)
        if bg is None and not locked_stage(self.policy, match):
            return {"event": name, "role": role, "result": "ignored (not a break-glass or locked-stage role)"}
        globs = self.policy.organization.service_principals
        human = not is_service_caller(caller, globs) if bg is not None else is_human_caller(caller, detail, globs)
        if not human:
            return {"event": name, "role": role, "result": "ignored (a service principal)"}
        record = self.store.role(role) if bg is not None else None
        grant = self._active(record)
        who = caller.principal or caller.arn or "unknown"
        if grant is not None and when < grant.deadline_at and who in (grant.principal,):
            if not failed:
                self.store.add_session(grant.grant_id, {"at": iso(when), "event": name, "session": session_id,
                                                        "access_key": access_key, "caller": caller.arn,
                                                        "source_identity": caller.verified,
                                                        "session_source_identity": _session_source_identity(detail),
                                                        "source_ip": detail.get("sourceIPAddress")})
            return {"event": name, "role": role, "result": f"approved under grant {grant.grant_id}"}
        why = (f"grant {grant.grant_id} is for {grant.principal} until {grant.deadline}" if grant is not None
               else "no break-glass grant is open on the role")
        severity = "high" if failed else "critical"
        verb = "tried to open" if failed else "opened"
        actions: list[Action] = []
        protected = self.policy.organization.is_protected_role(role, str(role_arn))
        if session_id and not failed and not protected:
            before = max(utc(now), when) + REVOKE_MARGIN
            # an AssumeRole* issues the session it names: deny from (about) that issue on, and (AssumeRole, whose
            # sourceIdentity CloudTrail shows) only with that sourceIdentity, so that the grantee's own session
            # under the same name is not denied with it. A console sign-in's session was issued earlier: all of it.
            issued = None
            if name != "ConsoleLogin":
                try:  # the event's own time only: a fallback to the processing time could miss the session
                    issued = parse_time(str(detail["eventTime"])) - ISSUE_MARGIN
                except (KeyError, ValueError, TypeError):
                    issued = None
            source = _session_source_identity(detail) if name == "AssumeRole" else ANY_SOURCE
            policy_name = deny_session_name(session_id, issued, source)
            actions = [DenySession(role, name=policy_name, session_id=session_id,
                                   document=json.dumps(deny_session_policy(session_id, before, issued, source)))]
        finding = self._finding(
            "breakglass.unapproved", severity, match.stage, f"arn:aws:iam::{str(role_arn).split(':')[4]}:role/{role}", who,
            f"{who} {verb} a session of {role} ({name}) without an approved grant: {why}.",
            {"event": name, "event_id": detail.get("eventID"), "event_time": iso(when), "session": session_id,
             "source_identity": caller.verified, "source_ip": detail.get("sourceIPAddress"), "failed": failed,
             "break_glass_role": bg is not None,
             **({"not_contained": "the role is in organization.protected_roles"} if protected else {})},
            when, dedup=f"breakglass.unapproved:{role}:{session_id or who}")
        self._settle(finding, actions, match.stage)
        for action in actions:
            if isinstance(action, DenySession) and self.executor.mode_for(match.stage) == "enforce":
                self._remember(role, action.name)
        return {"event": name, "role": role, "result": "unapproved", "action": finding.action}

    # ------------------------------------------------------------------ changes
    def _change(self, detail: dict[str, Any], name: str, now: datetime) -> dict[str, Any]:
        params = detail.get("requestParameters") or {}
        role = str(params.get("roleName") or "")
        if not role:
            return {"event": name, "result": "ignored (no role name)"}
        if detail.get("errorCode"):
            return {"event": name, "role": role, "result": "ignored (the call failed: nothing changed)"}
        got = self.roles.get(role)
        if got is None:
            return {"event": name, "role": role, "result": "ignored (the role no longer exists)"}
        facts, trust = got
        if is_protected(facts.name, facts.path, self.stack_name):
            return {"event": name, "role": role, "result": "ignored (Stagewarden's own or a service-linked role)"}
        match = self._match(facts)
        bg = self._bg(match.stage)
        if bg is None:
            return {"event": name, "role": role, "result": "ignored (not a break-glass role)"}
        assert match.stage is not None
        caller = caller_of(detail.get("userIdentity"))
        record = self.store.role(role)
        if record is None:
            if name == "UpdateAssumeRolePolicy":
                return self._refuse(facts, match.stage, caller, detail, now, [
                    "no baseline was recorded for the role before this trust change, so it cannot be checked or reverted "
                    "(baselines are recorded at the first sweep or grant)"], [])
            record, _ = self._ensure_baseline(facts, trust, match.stage, f"event {name}", now)
        grant = self._active(record)
        if name == "UpdateAssumeRolePolicy":
            return self._trust_change(facts, trust, match.stage, bg, record, grant, caller, detail, now)
        if name == "TagRole":
            return self._tag_change(facts, match.stage, bg, grant, caller, detail, now)
        policy_name = str(params.get("policyName") or "")
        if name == "DeleteRolePolicy":
            recorded = record.managed.get(policy_name)
            if not is_managed(policy_name) or recorded is None:
                return {"event": name, "role": role, "result": "ignored (removing a policy that is not Stagewarden's)"}
            return self._refuse(facts, match.stage, caller, detail, now, [f"Stagewarden's inline policy {policy_name} was deleted"],
                                [RestoreInlinePolicy(role, name=policy_name, document=recorded)])
        if name == "PutRolePolicy" and is_managed(policy_name) and policy_name in record.managed:
            current = self.roles.inline(role, policy_name)
            if current is not None and canonical(current) == canonical(json.loads(record.managed[policy_name])):
                return {"event": name, "role": role, "result": "consistent (Stagewarden's own policy)"}
            return self._refuse(facts, match.stage, caller, detail, now, [f"Stagewarden's inline policy {policy_name} was changed"],
                                [RestoreInlinePolicy(role, name=policy_name, document=record.managed[policy_name])])
        # a permission added to a break-glass role: only a verified approver of the stage may
        if caller.verified and any(same_person(caller.verified, a) for a in bg.approvers):
            finding = self._finding(
                "breakglass.role-changed", "high", match.stage, facts.arn, caller.principal,
                f"Approver {caller.verified} changed the permissions of break-glass role {role} ({name}).",
                {"event": name, "event_id": detail.get("eventID"), "request": _bounded(params)}, self._when(detail, now))
            self._settle(finding, [], match.stage)
            return {"event": name, "role": role, "result": "approved permission change (reported)"}
        undo: list[Action] = ([DetachPolicy(role, policy_arn=str(params.get("policyArn") or ""))] if name == "AttachRolePolicy"
                              else [RevertInlinePolicy(role, name=policy_name)])
        return self._refuse(facts, match.stage, caller, detail, now, [
            f"{name} on a break-glass role by {caller.verified or caller.arn or 'an unknown caller'}, "
            f"who is not in stages.{match.stage}.break_glass.approvers"], undo)

    def _trust_change(self, facts: RoleFacts, trust: dict[str, Any], stage: str, bg: BreakGlass, record: RoleRecord,
                      grant: Grant | None, caller: Caller, detail: dict[str, Any], now: datetime) -> dict[str, Any]:
        desired = self._desired(record, grant)
        if canonical(trust) == canonical(desired):
            return {"event": "UpdateAssumeRolePolicy", "role": facts.name, "result": "consistent (baseline or the open grant)"}
        if grant is None:
            approval, reasons = console_approval(bg, stage, facts.tags, caller, added_principals(record.baseline, trust), now)
            if approval is not None:
                opened = self._open(facts, trust, stage, bg, approval.principal, approval.approver, approval.ticket,
                                    approval.deadline, f"activated directly by {approval.approver}", caller.arn or "",
                                    "console", True, approval.tags, now, opened_at=self._when(detail, now))
                return {"event": "UpdateAssumeRolePolicy", "role": facts.name, "result": f"approved activation: grant {opened.grant_id}"}
        else:
            reasons = [f"grant {grant.grant_id} is open for {grant.principal}: the trust may carry only the baseline and "
                       "that grant's statement"]
        undo: list[Action] = [RevertTrust(facts.name, document=json.dumps(desired), why="revert an unapproved change")]
        undo += self._tag_cleanup(facts, bg, grant)
        return self._refuse(facts, stage, caller, detail, now, reasons, undo, added_principals(desired, trust))

    def _tag_change(self, facts: RoleFacts, stage: str, bg: BreakGlass, grant: Grant | None, caller: Caller,
                    detail: dict[str, Any], now: datetime) -> dict[str, Any]:
        watched = set(bg.required_approval_tags) | {EXPIRES_TAG, GRANT_TAG}
        tagged = [str(t.get("key") or t.get("Key") or "") for t in ((detail.get("requestParameters") or {}).get("tags") or [])
                  if isinstance(t, dict)]
        if not any(k in watched for k in tagged):
            return {"event": "TagRole", "role": facts.name, "result": "ignored (no approval tag)"}
        if grant is not None:
            if all(facts.tags.get(k) == v for k, v in grant.tags.items()) and not any(
                    k in watched and k not in grant.tags and k in facts.tags for k in tagged):
                return {"event": "TagRole", "role": facts.name, "result": "consistent (the open grant's tags)"}
            reasons = [f"grant {grant.grant_id} is open: its approval tags may not be changed"]
        else:
            named = {facts.tags.get(k, "") for k in bg.required_approval_tags if k.endswith("approved-by")} - {""}
            if (caller.verified and any(same_person(caller.verified, a) for a in bg.approvers)
                    and all(same_person(caller.verified, n) for n in named)):
                return {"event": "TagRole", "role": facts.name, "result": f"pre-approval by {caller.verified} (nothing opened yet)"}
            reasons = [f"approval tags set by {caller.verified or caller.arn or 'an unknown caller'}, who is not an approver "
                       f"of stage {stage} naming themselves (tagging a role approved is not approval)"]
        return self._refuse(facts, stage, caller, detail, now, reasons, self._tag_cleanup(facts, bg, grant))

    @staticmethod
    def _tag_cleanup(facts: RoleFacts, bg: BreakGlass, grant: Grant | None) -> list[Action]:
        watched = set(bg.required_approval_tags) | {EXPIRES_TAG, GRANT_TAG}
        if grant is not None:
            wrong = {k: v for k, v in grant.tags.items() if facts.tags.get(k) != v}
            extra = tuple(sorted(k for k in facts.tags if k in watched and k not in grant.tags))
            out: list[Action] = [RetagRole(facts.name, tags=tuple(sorted(wrong.items())))] if wrong else []
            return out + ([RemoveApprovalTags(facts.name, keys=extra)] if extra else [])
        present = tuple(sorted(k for k in facts.tags if k in watched))
        return [RemoveApprovalTags(facts.name, keys=present)] if present else []

    def _refuse(self, facts: RoleFacts, stage: str, caller: Caller, detail: dict[str, Any], now: datetime, reasons: list[str],
                undo: list[Action], added: list[str] | None = None) -> dict[str, Any]:
        name = str(detail.get("eventName"))
        who = caller.verified or caller.arn or "unknown"
        finding = self._finding(
            "breakglass.refused", "critical", stage, facts.arn, caller.principal or caller.arn,
            f"Unapproved {name} on break-glass role {facts.name} by {who}: {reasons[0] if reasons else 'refused'}.",
            {"event": name, "event_id": detail.get("eventID"), "event_time": detail.get("eventTime"), "reasons": reasons[:10],
             "caller": caller.arn, "verified_identity": caller.verified, "added_principals": added or [],
             "request": _bounded(detail.get("requestParameters") or {})},
            self._when(detail, now), dedup=f"breakglass.refused:{facts.name}:{detail.get('eventID') or name}")
        self._settle(finding, undo, stage)
        if self.executor.mode_for(stage) == "enforce":
            for action in undo:
                if isinstance(action, RestoreInlinePolicy):
                    self._remember(facts.name, action.name)
        return {"event": name, "role": facts.name, "result": "refused", "reasons": reasons, "action": finding.action}


def _session_source_identity(detail: dict[str, Any]) -> str | None:
    """The ``sourceIdentity`` the new session carries: the caller's own (it survives role chaining and cannot be
    changed), else the one AssumeRole set; a console sign-in's is its own."""
    ui = detail.get("userIdentity")
    ctx = ui.get("sessionContext") if isinstance(ui, dict) else None
    own = ctx.get("sourceIdentity") if isinstance(ctx, dict) else None
    if own or detail.get("eventName") == "ConsoleLogin":
        return str(own) if own else None
    requested = (detail.get("requestParameters") or {}).get("sourceIdentity")
    return str(requested) if requested else None


def _path_of(role_arn: str) -> str:
    """``arn:aws:iam::1:role/aws-service-role/x.amazonaws.com/R`` -> ``/aws-service-role/x.amazonaws.com/``."""
    head = role_arn.split(":role/", 1)[-1].rpartition("/")[0]
    return f"/{head}/" if head else "/"


def _bounded(value: Any, limit: int = 2000) -> Any:
    text = json.dumps(value, default=str)
    return value if len(text) <= limit else text[: limit - 15] + " …[truncated]"

