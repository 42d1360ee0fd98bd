"""`stagewarden demo`: the scripted day, run once as a user runs it (a real process on a fresh moto_server).

The demo checks each step's effect in AWS itself and exits 1 when one is missing; these tests read what
it printed and the report it left, and check that it stopped what it started.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from stagewarden import emulator
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e

#: the rules each capability's table must hold after the day
EXPECTED = {
    "policy": {"policy.invalid"},
    "gate": {"data.schema", "data.quality", "data.in-model-registry"},
    "retention": {"retention.drift"},
    "posture": {"posture.public-access", "posture.versioning"},
    "exfil": {"exfil.bulk-download", "exfil.copy-out", "exfil.bucket-policy-external"},
    "breakglass": {"breakglass.granted", "breakglass.expired", "breakglass.refused"},
    "exceptions": {"exception.granted", "exception.expired"},
}


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], folder: Path):
        self.proc, self.folder = proc, folder
        self.out = proc.stdout
        self.json: dict[str, Any] = json.loads((folder / "report.json").read_text()) if (folder / "report.json").exists() else {}

    def rules(self, capability: str) -> set[str]:
        return {f["rule"] for f in self.json["findings"].get(capability, [])}

    def findings(self) -> list[dict[str, Any]]:
        return [f for rows in self.json["findings"].values() for f in rows]


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("demo") / "nested" / "report"  # created by the demo
    proc = subprocess.run([sys.executable, "-m", "stagewarden", "demo", "--report", str(folder)], cwd=ROOT, capture_output=True,
                          text=True, timeout=420, env=dict(os.environ), stdin=subprocess.DEVNULL)
    return Run(proc, folder)


def test_the_day_runs_to_the_end_and_exits_0(day: Run) -> None:
    assert day.proc.returncode == 0, day.out[-3000:] + day.proc.stderr[-3000:]
    assert day.proc.stderr == ""
    assert len(day.json["facts"]) == 8  # one summary line per step


def test_the_timeline_is_readable_lines_stamped_with_the_scripted_day(day: Run) -> None:
    entries = [line for line in day.out.splitlines() if re.match(r"\d\d:\d\d  ", line)]

    assert len(entries) >= 40
    clocks = [line[:5] for line in entries]
    assert clocks == sorted(clocks) and clocks[0] == "07:00" and clocks[-1] == "17:30"  # in the day's order
    # no raw log lines: no JSON (Powertools), no EMF, no Python logging
    assert not [line for line in day.out.splitlines() if line.lstrip().startswith("{") or '"_aws"' in line
                or re.match(r"(DEBUG|INFO|WARNING|ERROR)[: ]", line)]
    assert "Times are the scripted day's" in day.out
    # the function logs are kept, beside the report
    assert '"level":"ERROR"' in (day.folder / "functions.log").read_text()


def test_the_report_files_exist_and_the_page_is_self_contained(day: Run) -> None:
    html = (day.folder / "report.html").read_text(encoding="utf-8")
    md = (day.folder / "report.md").read_text(encoding="utf-8")

    assert html.startswith("<!DOCTYPE html>") and "<style>" in html and md.startswith("# Stagewarden demo")
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and "<script" not in html and "@import" not in html
    # the dataset dropped into the model registry carries a <script> tag in its key: escaped everywhere
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;script&gt;" in md and "<script" not in md
    assert "acme-lab-models/models/churn/v7/<script>alert(1)</script>.bin" in day.out  # the console shows it as is
    assert '<h2 id="timeline">Timeline</h2>' in html


def test_each_capability_table_holds_its_rules(day: Run) -> None:
    html = (day.folder / "report.html").read_text(encoding="utf-8")
    tables = dict(re.findall(r'<table class="findings" data-capability="(\w+)">(.*?)</table>', html, re.S))

    for capability, rules in EXPECTED.items():
        assert rules <= day.rules(capability), (capability, day.rules(capability))
        for rule in rules:
            assert f"<code>{rule}</code>" in tables[capability]
    assert all(f["rule"].startswith("posture.") for f in day.json["findings"]["posture"])


def test_the_bulk_download_on_a_shared_role_names_and_contains_only_the_downloader(day: Run) -> None:
    exfil = [f for f in day.json["findings"]["exfil"] if f["rule"] != "exfil.bucket-policy-external"]

    assert exfil and {f["principal"] for f in exfil} == {
        "arn:aws:sts::123456789012:assumed-role/DataScientistLab/mallory@example.com"}
    deny = next(e["text"] for e in day.json["timeline"] if e["text"].startswith("DataScientistLab gets inline policy"))
    assert re.search(r"aws:userid = AROA\w+:mallory@example\.com \(", deny), deny
    assert not any(name in deny for name in ("bob", "carol", "dan@", "erin", "frank", "grace"))


def test_the_posture_step_restores_the_block_in_one_event_and_names_the_session(day: Run) -> None:
    lab, uat = day.json["findings"]["posture"]

    assert lab["rule"] == "posture.public-access" and lab["severity"] == "critical"
    assert lab["resource"] == "arn:aws:s3:::acme-lab-data" and not lab["action"].startswith("dry run")
    assert lab["principal"].endswith("assumed-role/DataScientistAlice/alice@example.com")
    # the UAT stage is in dry run: the same kind of drift is reported with what enforce would do
    assert uat["rule"] == "posture.versioning" and uat["stage"] == "prod-integration" and uat["action"].startswith("dry run")
    assert "public access block of acme-lab-data restored within the one event: BlockPublicAcls, IgnorePublicAcls, " \
           "BlockPublicPolicy, RestrictPublicBuckets on" in [e["text"] for e in day.json["timeline"] if e["capability"] == "posture"]


def test_the_sink_received_one_post_per_incident(day: Run) -> None:
    findings = day.findings()
    posted = sorted(p["rule"] for p in day.json["posts"])

    assert day.json["slack_posts"] == len(day.json["posts"]) == day.json["incidents"] == len(findings)
    assert posted == sorted(f["rule"] for f in findings)


def test_it_stops_the_emulator_and_the_sink_it_started(day: Run) -> None:
    endpoint = re.search(r"moto_server at (http://127\.0\.0\.1:\d+)", day.out).group(1)
    sink = re.search(r"local Slack sink at (http://127\.0\.0\.1:\d+)/", day.out).group(1)

    assert not emulator.is_alive(endpoint)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(sink, timeout=2)  # noqa: S310 - our own sink's address, now closed


@pytest.mark.parametrize("error", ["step", "bug"])
def test_a_failed_step_is_one_line_exit_1_and_everything_stopped(error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    from stagewarden import demo

    started: list[str] = []
    real_start = emulator.start_server

    def start(*args: Any, **kwargs: Any) -> Any:
        proc, endpoint = real_start(*args, **kwargs)
        started.append(endpoint)
        return proc, endpoint

    def posture(self: demo.Day) -> str:
        if error == "step":
            raise demo.StepFailed("expected the block restored (got {})")
        raise KeyError("PublicAccessBlockConfiguration")

    monkeypatch.setattr(emulator, "start_server", start)
    monkeypatch.setattr(demo.Day, "policy_guard", lambda self: "policy guard: skipped")
    monkeypatch.setattr(demo.Day, "schema_gate", lambda self: "schema gate: skipped")
    monkeypatch.setattr(demo.Day, "retention", lambda self: "retention: skipped")
    monkeypatch.setattr(demo.Day, "posture", posture)

    code = demo.run(ROOT / "template.yaml", ROOT / "policy.example.yaml", tmp_path)

    err = capfd.readouterr().err.splitlines()
    assert code == 1 and len(err) == 1, err
    if error == "step":
        assert err[0] == "stagewarden demo: step posture: expected the block restored (got {})"
    else:
        assert err[0].startswith("stagewarden demo: step posture: KeyError: 'PublicAccessBlockConfiguration' (traceback in ")
        assert "Traceback (most recent call last)" in (tmp_path / "functions.log").read_text()
    # the steps that ran are in the report, and what the demo started is stopped
    facts = json.loads((tmp_path / "report.json").read_text())["facts"]
    assert facts == ["policy guard: skipped", "schema gate: skipped", "retention: skipped"]
    assert len(started) == 1 and not emulator.is_alive(started[0])
