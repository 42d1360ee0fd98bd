"""`stagewarden policy explain`: what each stage allows and which resources map to it."""

from __future__ import annotations

from typing import Any

from stage_policy.model import Policy, Stage


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:g} {unit}"
    return f"{n} B"


def retention_text(stage: Stage) -> str:
    r = stage.retention
    if r.permanent:
        return "permanent" + (", immutable" if r.immutable else "")
    parts = [f"{r.default_days}d"]
    if r.prefix_classes:
        parts.append("(" + ", ".join(f"{c.prefix} {c.days}d" for c in r.prefix_classes) + ")")
    if r.noncurrent_version_days:
        parts.append(f"old versions {r.noncurrent_version_days}d")
    return " ".join(parts)


def exfil_text(stage: Stage) -> str:
    e = stage.exfiltration
    return f"{e.max_objects} obj / {_size(e.max_bytes)} per {e.window_minutes}m -> {e.response}"


def break_glass_text(stage: Stage) -> str:
    bg = stage.break_glass
    if bg is None or not bg.allowed:
        return "-"
    return f"{bg.max_duration_minutes}m max" + (", review" if bg.post_incident_review else "")


def posture_text(stage: Stage) -> str:
    """The stage's bucket security baseline in one line ("-": not checked)."""
    p = stage.posture
    if p is None:
        return "-"
    parts = [f"encryption {p.encryption}" + (f" key {p.kms_key}" if p.kms_key else "") if p.encryption else "encryption not checked"]
    on = [k for k, v in p.public_access.as_config().items() if v]
    parts.append("public access block " + ("all four" if len(on) == 4 else ", ".join(on) or "not checked"))
    parts.append("TLS only" if p.tls_only else "TLS not required")
    parts.append("versioning" if p.versioning else "versioning not required")
    if p.access_logging:
        parts.append(f"access logs to s3://{p.access_logging.target_bucket}/{p.access_logging.target_prefix}")
    if p.object_lock or stage.retention.immutable:
        parts.append("Object Lock reported")
    return ", ".join(parts)


def not_built(policy: Policy) -> list[str]:
    """Fields this policy sets whose capability is not built yet: they do nothing today (stage_policy.fields)."""
    from stage_policy.fields import entry_for

    notes = []
    alerts = policy.alerts
    for path, value in (("alerts.slack_webhook_secret", alerts.slack_webhook_secret), ("alerts.email", alerts.email),
                        ("alerts.security_hub", alerts.security_hub)):
        entry = entry_for(path)
        if value and entry is not None and entry.status == "not built":
            notes.append(f"{path} is set, but does nothing yet: {entry.effect}")
    for name, stage in policy.stages.items():
        for part, present in (("retention", True), ("break_glass", stage.break_glass is not None and stage.break_glass.allowed)):
            entry = entry_for(f"stages.<name>.{part}.allowed" if part == "break_glass" else f"stages.<name>.{part}.default_days")
            if present and entry is not None and entry.status == "not built":
                notes.append(f"stages.{name}.{part} is set, but does nothing yet: {entry.effect}")
    return notes


def fields_table() -> str:
    from stage_policy.fields import FIELDS, PARAMETERS

    lines = [f"{f.path + '*' if f.path.endswith('.') else f.path:<48} {f.status:<12} {f.reader}" for f in FIELDS]
    lines += ["", "template parameters:"] + [f"  {p.name:<24} {p.reader}" for p in PARAMETERS]
    return "\n".join(lines)


def mappings(policy: Policy, stage: str) -> list[str]:
    out = [f"tag {policy.resources.tag_key}={stage}"]
    out += [f"bucket {m.pattern}" for m in policy.resources.buckets if m.stage == stage]
    out += [f"role {m.pattern}" for m in policy.resources.roles if m.stage == stage]
    return out


def rows(policy: Policy, only: str | None = None) -> list[dict[str, Any]]:
    out = []
    for name, stage in policy.stages.items():
        if only and name != only:
            continue
        out.append({
            "stage": name,
            "production_data": stage.production_data,
            "interactive_access": stage.interactive_access,
            "download": stage.download,
            "retention": retention_text(stage),
            "exfiltration": exfil_text(stage),
            "break_glass": break_glass_text(stage),
            "posture": posture_text(stage),
            "mode": policy.mode_for(name),
            "resources": mappings(policy, name),
            "contracts": [c.name for c in policy.contracts if c.stage == name],
        })
    return out


_COLUMNS = [("stage", "STAGE"), ("production_data", "PROD DATA"), ("interactive_access", "ACCESS"), ("download", "DOWNLOAD"),
            ("retention", "RETENTION"), ("exfiltration", "BULK-DOWNLOAD LIMIT"), ("break_glass", "BREAK GLASS"), ("mode", "MODE")]


def table(policy: Policy, source: str, only: str | None = None) -> str:
    data = rows(policy, only)
    cells = [[("yes" if r[k] is True else "no" if r[k] is False else str(r[k])) for k, _ in _COLUMNS] for r in data]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(_COLUMNS)]
    lines = [f"{source}: framework {policy.framework}, default mode {policy.defaults.mode}, "
             f"{len(policy.stages)} stage(s), {len(policy.contracts)} contract(s)", ""]
    lines.append("  ".join(h.ljust(w) for (_, h), w in zip(_COLUMNS, widths)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines += ["", "Which resources belong to which stage (tag first, then name patterns in order; anything else is unmanaged):"]
    for r in data:
        lines.append(f"  {r['stage']}: " + "; ".join(r["resources"]))
        if r["contracts"]:
            lines.append(f"    contracts: {', '.join(r['contracts'])}")
    notes = not_built(policy)
    if notes:
        lines += ["", "Set in this policy but not acted on yet (see `stagewarden policy fields`):"]
        lines += [f"  {n}" for n in notes]
    if only:
        stage = policy.stages[only]
        lines += ["", f"{only}: {stage.description or '(no description)'}"]
        lines.append("  bucket posture: " + posture_text(stage))
        if stage.exfiltration.exempt_principals:
            lines.append("  exempt from bulk-download limits: " + ", ".join(stage.exfiltration.exempt_principals))
        if stage.break_glass and stage.break_glass.allowed:
            bg = stage.break_glass
            lines.append("  break glass needs tags: " + ", ".join(bg.required_approval_tags)
                         + ("; approvers: " + ", ".join(bg.approvers) if bg.approvers else ""))
    return "\n".join(lines)
