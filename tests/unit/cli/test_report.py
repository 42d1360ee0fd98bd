"""The demo's report: every finding in a table of its capability, everything escaped, one self-contained page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stagewarden.report import CAPABILITIES, Entry, Report, capability_of, markdown, page, prepare_dir, write
from stagewarden.usage import UsageError

PLANTED = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def finding(rule: str, **overrides: str) -> dict:
    base = {"rule": rule, "severity": "high", "stage": "prod-discovery", "resource": "arn:aws:s3:::acme-lab-data",
            "principal": "arn:aws:sts::123456789012:assumed-role/DataScientistLab/mallory@example.com",
            "summary": "something happened", "action": "denied the session", "dedup_key": rule}
    return base | overrides


def planted_report() -> Report:
    report = Report(day="Monday")
    report.entries.append(Entry("08:50", "gate", "event", f"upload of models/{PLANTED}.bin | with a pipe"))
    report.add("08:55", finding("data.in-model-registry", resource=f"arn:aws:s3:::acme-lab-models/models/{PLANTED}.bin",
                                summary=f"models/{PLANTED}.bin looks like a Parquet table | pipe"))
    report.add("10:10", finding("exfil.bulk-download", principal=f"arn:aws:sts::123456789012:assumed-role/R/{PLANTED}"))
    report.add("15:00", finding("breakglass.refused", severity=PLANTED, action=PLANTED))
    report.facts.append(f"summary with {PLANTED}")
    return report


def test_planted_markup_in_a_finding_is_escaped_in_the_html_page() -> None:
    html = page(planted_report())

    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    # the severity chip's class is never taken from the finding
    assert 'class="sev low"' in html and "onerror=alert(1)>" not in html


def test_planted_markup_in_a_finding_is_escaped_in_the_markdown_and_pipes_do_not_split_cells() -> None:
    md = markdown(planted_report())

    assert "<script" not in md.lower() and "<img" not in md.lower() and "&lt;script&gt;" in md
    rows = [line for line in md.splitlines() if line.startswith("| 08:55 |")]
    assert len(rows) == 1 and "looks like a Parquet table \\| pipe" in rows[0]
    assert len(re.findall(r"(?<!\\)\|", rows[0])) == 9  # eight cells


def test_the_page_is_self_contained_with_one_table_per_capability() -> None:
    html = page(planted_report())

    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and "@import" not in html and "<style>" in html
    for key, title in CAPABILITIES:
        assert f'<h2 id="{key}">{title}</h2>' in html
    tables = re.findall(r'<table class="findings" data-capability="(\w+)">(.*?)</table>', html, re.S)
    assert {k: body.count("<tr>") - 1 for k, body in tables} == {"gate": 1, "exfil": 1, "breakglass": 1}
    assert "<code>data.in-model-registry</code>" in dict(tables)["gate"]


def test_the_summary_counts_findings_by_severity() -> None:
    report = Report(day="Monday")
    for severity in ("low", "critical", "high", "high"):
        report.add("09:00", finding("posture.tls", severity=severity))

    assert report.severities() == "1 critical, 2 high, 1 low"
    assert "Findings: 1 critical, 2 high, 1 low." in markdown(report) and "Findings: 1 critical, 2 high, 1 low." in page(report)


def test_rules_map_to_their_capability() -> None:
    assert [capability_of(r) for r in ("policy.invalid", "data.schema", "registry.overwrite", "retention.drift",
                                       "posture.tls", "exfil.copy-out", "audit.tamper", "breakglass.expired",
                                       "exception.expired", "input.malformed")] == [
        "policy", "gate", "gate", "retention", "posture", "exfil", "exfil", "breakglass", "exceptions", "other"]


def test_write_puts_both_files_in_a_folder_it_creates(tmp_path: Path) -> None:
    folder = prepare_dir(tmp_path / "a" / "b")

    md, html = write(planted_report(), folder)

    assert md.read_text(encoding="utf-8").startswith("# Stagewarden demo")
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "report.json", "report.md"]  # the write check leaves nothing


def test_a_file_as_the_report_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")

    with pytest.raises(UsageError, match="is a file, not a folder"):
        prepare_dir(tmp_path / "notes.txt")
    with pytest.raises(UsageError, match=r"cannot write there \(a part of the path is a file, not a folder\)"):
        prepare_dir(tmp_path / "notes.txt" / "report")
