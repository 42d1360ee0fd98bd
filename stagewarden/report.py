"""The demo's report: a timeline and every finding and action, as Markdown and one self-contained HTML page.

Findings carry attacker-controlled strings (object keys, session names, bucket policies), so
every value is escaped: ``html.escape`` in the HTML page, HTML entities and escaped pipes in
the Markdown (which renderers turn into HTML). The page has inline CSS only: no script, no
external stylesheet, font or image, so it opens the same offline, from a mail or a CI artefact.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stagewarden.usage import HINT, UsageError, os_problem

#: (key, title) in the order the day visits them; the report has one table per capability
CAPABILITIES = (
    ("policy", "Policy guard"),
    ("gate", "Schema gate and model registry"),
    ("retention", "Retention"),
    ("posture", "Bucket posture"),
    ("exfil", "Exfiltration"),
    ("breakglass", "Break glass"),
    ("exceptions", "Time-boxed exceptions"),
    ("alerts", "Alert delivery"),
)
TITLES = dict(CAPABILITIES)
_PREFIXES = {"policy": "policy", "data": "gate", "registry": "gate", "retention": "retention", "posture": "posture",
             "exfil": "exfil", "audit": "exfil", "access": "exfil", "breakglass": "breakglass", "exception": "exceptions"}
KINDS = ("event", "decision", "action", "alert")
_CELL_LIMIT = 400  # a table cell shows this many characters of a finding's text (the finding itself is bounded too)


def capability_of(rule: str) -> str:
    """The capability a finding's rule belongs to (``exfil.copy-out`` -> ``exfil``)."""
    return _PREFIXES.get(rule.split(".", 1)[0], "other")


@dataclass(frozen=True)
class Entry:
    """One line of the timeline: at a time of the scripted day, something happened, was decided, done or alerted."""

    clock: str
    capability: str
    kind: str
    text: str


@dataclass(frozen=True)
class Row:
    """One finding as the report shows it."""

    clock: str
    rule: str
    severity: str
    stage: str
    principal: str
    resource: str
    summary: str
    action: str

    @classmethod
    def of(cls, clock: str, finding: dict[str, Any]) -> "Row":
        def text(key: str) -> str:
            value = finding.get(key)
            return "-" if value in (None, "") else str(value)

        return cls(clock, text("rule"), text("severity"), text("stage"), text("principal"), text("resource"), text("summary"),
                   text("action"))


@dataclass
class Report:
    day: str
    entries: list[Entry] = field(default_factory=list)
    rows: dict[str, list[Row]] = field(default_factory=dict)
    facts: list[str] = field(default_factory=list)  # the summary: one line per capability
    slack_posts: int = 0
    incidents: int = 0
    posts: list[tuple[str, str, str]] = field(default_factory=list)  # (clock, rule, headline) of each Slack post

    def add(self, clock: str, finding: dict[str, Any]) -> Row:
        row = Row.of(clock, finding)
        self.rows.setdefault(capability_of(row.rule), []).append(row)
        return row

    def rules(self, capability: str) -> set[str]:
        return {r.rule for r in self.rows.get(capability, [])}

    def severities(self) -> str:
        """``2 critical, 9 high, ...`` over every finding of the day."""
        counts: dict[str, int] = {}
        for rows in self.rows.values():
            for r in rows:
                counts[r.severity] = counts.get(r.severity, 0) + 1
        order = ["critical", "high", "medium", "low"]
        return ", ".join(f"{counts[k]} {k}" for k in sorted(counts, key=lambda k: (order.index(k) if k in order else 9, k)))


def prepare_dir(path: str | Path, option: str = "--report") -> Path:
    """Create the report folder (and its parents) or fail before any work with one line naming it."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder{HINT}give a folder to write report.md and report.html "
                         "into (created if missing), e.g. demo-report")
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / f".stagewarden-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write there ({os_problem(exc)}){HINT}give a folder you can write to, "
                         "e.g. demo-report") from None
    return target


def _trim(text: str) -> str:
    return text if len(text) <= _CELL_LIMIT else text[: _CELL_LIMIT - 1] + "…"


# ------------------------------------------------------------------ Markdown
def _md(text: str) -> str:
    """A table cell: HTML-escaped (renderers pass raw HTML through), pipes escaped, one line."""
    return html.escape(_trim(text), quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown(report: Report) -> str:
    out = [f"# Stagewarden demo: a scripted day on a three-stage platform ({_md(report.day)})", ""]
    out += ["## Summary", ""] + [f"- {_md(line)}" for line in report.facts] + [""]
    out += [f"Findings: {_md(report.severities() or 'none')}. Slack posts: {report.slack_posts} for {report.incidents} "
            "incident(s) (one post per incident).", ""]
    out += ["## Timeline", "", "| Time | Capability | What | |", "|---|---|---|---|"]
    for e in report.entries:
        out.append(f"| {_md(e.clock)} | {_md(TITLES.get(e.capability, e.capability))} | {_md(e.kind)} | {_md(e.text)} |")
    out.append("")
    for key, title in CAPABILITIES:
        rows = report.rows.get(key, [])
        out += [f"## {title}", ""]
        if key == "alerts" and report.posts:
            out += ["Slack posts received by the local sink:", "", "| Time | Rule | Headline |", "|---|---|---|"]
            out += [f"| {_md(c)} | `{_md(r)}` | {_md(h)} |" for c, r, h in report.posts] + [""]
        if not rows:
            out += ["No findings.", ""]
            continue
        out += ["| Time | Rule | Severity | Stage | Principal | Resource | Summary | Action / outcome |",
                "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| {_md(r.clock)} | `{_md(r.rule)}` | {_md(r.severity)} | {_md(r.stage)} | {_md(r.principal)} | "
                       f"{_md(r.resource)} | {_md(r.summary)} | {_md(r.action)} |")
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------ HTML
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#1b1f24}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}th,td{border:1px solid #d0d7de;padding:.3rem .5rem;
text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#f6f8fa}code{font-size:.92em}
.sev{font-weight:600;border-radius:3px;padding:0 .35rem}.critical{background:#ffd7d5;color:#82071e}
.high{background:#ffe2cc;color:#7a2e00}.medium{background:#fff3b0;color:#5c4800}.low{background:#ddf4ff;color:#0a3069}
.kind{font-variant:small-caps;color:#57606a}.alert td{background:#fff8f5}.muted{color:#57606a}
"""


def _h(text: str) -> str:
    return html.escape(_trim(text), quote=True)


def page(report: Report) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Stagewarden demo report {_h(report.day)}</title>", f"<style>{_CSS}</style></head><body>",
           f"<h1>Stagewarden demo: a scripted day on a three-stage platform ({_h(report.day)})</h1>",
           "<h2>Summary</h2><ul>"]
    out += [f"<li>{_h(line)}</li>" for line in report.facts]
    out.append(f"</ul><p>Findings: {_h(report.severities() or 'none')}. Slack posts: <b>{report.slack_posts}</b> for "
               f"<b>{report.incidents}</b> incident(s) (one post per incident).</p>")
    counts = {key: len(report.rows.get(key, [])) for key, _ in CAPABILITIES}
    out.append("<p>" + " · ".join(f'<a href="#{key}">{_h(title)}</a> ({counts[key]})' for key, title in CAPABILITIES) + "</p>")
    out.append('<h2 id="timeline">Timeline</h2><table class="timeline"><thead><tr><th>Time</th><th>Capability</th>'
               "<th>What</th><th></th></tr></thead><tbody>")
    for e in report.entries:
        cls = ' class="alert"' if e.kind == "alert" else ""
        out.append(f"<tr{cls}><td>{_h(e.clock)}</td><td>{_h(TITLES.get(e.capability, e.capability))}</td>"
                   f'<td class="kind">{_h(e.kind)}</td><td>{_h(e.text)}</td></tr>')
    out.append("</tbody></table>")
    for key, title in CAPABILITIES:
        rows = report.rows.get(key, [])
        out.append(f'<h2 id="{key}">{_h(title)}</h2>')
        if key == "alerts" and report.posts:
            out.append('<p>Slack posts received by the local sink:</p><table class="posts"><thead><tr><th>Time</th>'
                       "<th>Rule</th><th>Headline</th></tr></thead><tbody>")
            out += [f"<tr><td>{_h(c)}</td><td><code>{_h(r)}</code></td><td>{_h(h)}</td></tr>" for c, r, h in report.posts]
            out.append("</tbody></table>")
        if not rows:
            out.append('<p class="muted">No findings.</p>')
            continue
        out.append(f'<table class="findings" data-capability="{key}"><thead><tr><th>Time</th><th>Rule</th><th>Severity</th>'
                   "<th>Stage</th><th>Principal</th><th>Resource</th><th>Summary</th><th>Action / outcome</th></tr></thead><tbody>")
        for r in rows:
            sev = r.severity if r.severity in ("low", "medium", "high", "critical") else "low"
            out.append(f"<tr><td>{_h(r.clock)}</td><td><code>{_h(r.rule)}</code></td>"
                       f'<td><span class="sev {sev}">{_h(r.severity)}</span></td><td>{_h(r.stage)}</td>'
                       f"<td>{_h(r.principal)}</td><td>{_h(r.resource)}</td><td>{_h(r.summary)}</td><td>{_h(r.action)}</td></tr>")
        out.append("</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def as_json(report: Report) -> dict[str, Any]:
    """The same content for machines (CI, the demo's end-to-end test)."""
    from dataclasses import asdict

    return {"day": report.day, "facts": report.facts, "slack_posts": report.slack_posts, "incidents": report.incidents,
            "posts": [{"clock": c, "rule": r, "headline": h} for c, r, h in report.posts],
            "timeline": [asdict(e) for e in report.entries],
            "findings": {key: [asdict(r) for r in rows] for key, rows in report.rows.items()}}


def write(report: Report, folder: Path) -> tuple[Path, Path]:
    """report.md and report.html (and report.json) in ``folder`` (which :func:`prepare_dir` checked)."""
    import json

    md, htm = folder / "report.md", folder / "report.html"
    md.write_text(markdown(report), encoding="utf-8")
    htm.write_text(page(report), encoding="utf-8")
    (folder / "report.json").write_text(json.dumps(as_json(report), indent=1), encoding="utf-8")
    return md, htm
