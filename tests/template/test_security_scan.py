"""checkov over template.yaml and its SAM translation: no failed check, every skip justified where it is made.

checkov lives in its own virtual environment (.venv-checkov, pinned in the Makefile: `make security`,
and `make test` installs it). Without it these tests skip, unless STAGEWARDEN_REQUIRE_CHECKOV=1
(set by `make test`, so CI fails when the scanner is missing instead of passing without it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, translated_template

TEMPLATE = ROOT / "template.yaml"
#: The version the Makefile installs; a different one may carry other checks.
CHECKOV_VERSION = "3.3.30"
#: checkov offline: no guideline download from its vendor's platform, no version check against PyPI
OFFLINE = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE", "LOG_LEVEL": "WARNING"}

pytestmark = pytest.mark.security


def _checkov() -> str | None:
    candidates = [os.environ.get("STAGEWARDEN_CHECKOV"), str(ROOT / ".venv-checkov" / "bin" / "checkov"), shutil.which("checkov")]
    found = next((c for c in candidates if c and Path(c).exists()), None)
    if found is None and os.environ.get("STAGEWARDEN_REQUIRE_CHECKOV") == "1":
        pytest.fail("checkov is required (make test and make security install it into .venv-checkov)")
    return found


@pytest.fixture(scope="module")
def checkov() -> str:
    found = _checkov()
    if found is None:
        pytest.skip("checkov not installed (make security installs it into .venv-checkov; "
                    "set STAGEWARDEN_REQUIRE_CHECKOV=1 to fail instead)")
    return found


def scan(checkov: str, path: Path) -> dict:
    proc = subprocess.run([checkov, "--file", str(path), "--framework", "cloudformation", "--skip-download", "--quiet",
                           "--compact", "--output", "json"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **OFFLINE})
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: failed checks, reported below
    report = json.loads(proc.stdout)
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["resource_count"] > 50, report["summary"]
    return report


def failed(report: dict) -> list[str]:
    return [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"].get("failed_checks", [])]


def test_the_pinned_checkov_is_the_one_that_runs(checkov: str) -> None:
    proc = subprocess.run([checkov, "--version"], capture_output=True, text=True, timeout=120, env={**os.environ, **OFFLINE})
    assert proc.stdout.strip() == CHECKOV_VERSION
    assert f"checkov=={CHECKOV_VERSION}" in (ROOT / "Makefile").read_text()


def test_checkov_passes_on_the_sam_source(checkov: str) -> None:
    report = scan(checkov, TEMPLATE)
    assert failed(report) == []
    assert report["summary"]["passed"] > 0


def test_checkov_passes_on_the_translated_template(checkov: str, tmp_path: Path) -> None:
    # the roles SAM generates (each function's policies, the schedules' roles) exist only here
    translated = tmp_path / "translated.json"
    translated.write_text(json.dumps(translated_template(), indent=1))
    report = scan(checkov, translated)
    assert failed(report) == []
    assert report["summary"]["passed"] > 0


def _skips() -> list[tuple[str, str, str]]:
    """(resource, check id, comment) of every checkov skip in template.yaml's resources' Metadata."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # CloudFormation's short intrinsics
    resources = yaml.load(TEMPLATE.read_text(), Loader=Loader)["Resources"]
    return [(logical, skip.get("id"), skip.get("comment") or "")
            for logical, resource in resources.items()
            for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", [])]


def test_every_skip_is_justified_in_place_and_nothing_is_skipped_elsewhere() -> None:
    skips = _skips()
    assert skips, "no skip found: the Metadata format changed?"
    # a reason a reader can check: a sentence, not "n/a"
    assert [(r, i) for r, i, comment in skips if len(comment.split()) < 12] == []
    # no blanket skips: not on the command line or in a config file, not as inline comments
    assert not list(ROOT.glob(".checkov.y*ml")) and "--skip-check" not in (ROOT / "Makefile").read_text()
    assert "checkov:skip" not in TEMPLATE.read_text()


def test_only_checks_that_do_not_apply_are_skipped() -> None:
    # fixed, not skipped: reserved concurrency per function (CKV_AWS_115), log groups encrypted with the stack's key (CKV_AWS_158)
    skipped = {i for _, i, _ in _skips()}
    assert skipped == {"CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173", "CKV_AWS_27", "CKV_AWS_119", "CKV_AWS_18"}
    # the function DLQ check is skipped only where SQS's redrive policy is the dead-letter queue
    sqs_fed = {"ExfiltrationFunction", "SchemaGateFunction", "AlertFunction"}
    assert {r for r, i, _ in _skips() if i == "CKV_AWS_116"} == sqs_fed
