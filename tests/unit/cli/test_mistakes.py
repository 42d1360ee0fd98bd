"""Command-line mistakes: each exits 2 with exactly one stderr line naming the file, option or setting, never a traceback.

The README's "Command-line mistakes" table lists these same cases (test_the_readme_lists_every_mistake
keeps the two in step). Exit 1 keeps meaning "findings at or above --fail-on".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stagewarden.cli import main
from tests.helpers import ROOT

NO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None, "AWS_SECURITY_TOKEN": None,
                  "AWS_PROFILE": None, "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
                  "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
                  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None, "AWS_WEB_IDENTITY_TOKEN_FILE": None}
NO_REGION = {"AWS_DEFAULT_REGION": None, "AWS_REGION": None, "AWS_PROFILE": None, "AWS_CONFIG_FILE": "/nonexistent"}

POLICY = """\
framework: two-stage
contracts:
  - name: events
    stage: prod-discovery
    prefix: landing/
    format: csv
    columns:
      - {name: id, type: int}
      - {name: amount, type: float}
    drift: {baseline: s3://b/events.json, columns: [amount]}
"""


@dataclass
class Mistake:
    id: str
    mistake: str  # as the README table words it
    argv: list[str]  # {d}: a folder of prepared files (see `workdir`), {root}: the project
    says: list[str]  # fragments of the one stderr line: the file / option / setting and what is wrong
    env: dict[str, str | None] = field(default_factory=dict)


MISTAKES = [
    Mistake("policy-missing", "a policy file that does not exist",
            ["policy", "validate", "{d}/nope.yaml"], ["{d}/nope.yaml: cannot read file (no such file or folder)"]),
    Mistake("policy-folder", "a folder where a policy file is expected",
            ["policy", "explain", "{d}/folder"], ["{d}/folder: cannot read file (is a folder, not a file)"]),
    Mistake("policy-binary", "a binary file as the policy",
            ["policy", "validate", "{d}/binary.dat"], ["{d}/binary.dat: binary file, not a YAML policy"]),
    Mistake("policy-latin1", "a policy saved as Latin-1, not UTF-8",
            ["policy", "validate", "{d}/latin1.yaml"], ["{d}/latin1.yaml: not UTF-8 text (byte 0xe9 on line 3)", "save it as UTF-8"]),
    Mistake("policy-empty", "an empty policy file",
            ["policy", "validate", "{d}/empty.yaml"], ["{d}/empty.yaml: the file is empty", "`stages:`"]),
    Mistake("policy-top-level-typo", "a misspelt top-level policy key (`stage:`)",
            ["policy", "validate", "{d}/typo.yaml"], ["{d}/typo.yaml: stage: unknown field (did you mean 'stages'?)"]),
    Mistake("policy-nested-typo", "a misspelt key inside a stage (`retension:`)",
            ["policy", "validate", "{d}/nested-typo.yaml"], ["stages.lab.retension: unknown field (did you mean 'retention'?)"]),
    Mistake("no-command", "no command", [], ["a command is required (one of: policy, invoke,"]),
    Mistake("unknown-command", "an unknown command (`polcy`)",
            ["polcy", "validate"], ["invalid choice: 'polcy'", "(did you mean 'policy'?)"]),
    Mistake("unknown-option", "an unknown option (`--formt`)",
            ["policy", "explain", "{d}/policy.yaml", "--formt", "json"],
            ["policy explain: unrecognized arguments: --formt json (did you mean '--format'?)"]),
    Mistake("bad-format", "an unknown `--format`",
            ["policy", "explain", "{d}/policy.yaml", "--format", "xml"], ["argument --format: invalid choice: 'xml'"]),
    Mistake("bad-fail-on", "an unknown `--fail-on` severity",
            ["scan", "cloudtrail", "{d}/folder", "--fail-on", "severe"], ["argument --fail-on: invalid choice: 'severe'"]),
    Mistake("unknown-stage", "an unknown `--stage`",
            ["policy", "explain", "{d}/policy.yaml", "--stage", "final-prd"],
            ["--stage 'final-prd': not a stage of {d}/policy.yaml (did you mean 'final-prod'?)"]),
    Mistake("missing-required-option", "a required option left out (`--contract`)",
            ["data", "validate", "{d}/data.csv", "--policy", "{d}/policy.yaml"],
            ["data validate: the following arguments are required: --contract"]),
    Mistake("bad-number", "a number that is not one (`--max-batches ten`)",
            ["local", "poll", "Fn", "--max-batches", "ten"], ["argument --max-batches: must be a whole number (got 'ten')"]),
    Mistake("no-credentials", "no AWS credentials (`policy push`)",
            ["policy", "push", "{d}/policy.yaml", "--to", "s3://policies/policy.yaml"],
            ["AWS credentials: none found", "AWS_PROFILE", "AWS_ACCESS_KEY_ID"], NO_CREDENTIALS),
    Mistake("push-not-s3", "`--to` that is not an s3:// URI",
            ["policy", "push", "{d}/policy.yaml", "--to", "https://example.com/policy.yaml"], ["--to: not an s3:// URI"]),
    Mistake("no-region", "no AWS region (`invoke` without the emulator)",
            ["invoke", "PolicyGuardFunction", "-t", "{d}/template.yaml"], ["AWS region: not set", "AWS_DEFAULT_REGION"], NO_REGION),
    Mistake("event-binary", "a binary event file",
            ["invoke", "PolicyGuardFunction", "-t", "{d}/template.yaml", "-e", "{d}/binary.dat"],
            ["--event {d}/binary.dat: binary file, not an event"]),
    Mistake("event-latin1", "an event file that is not UTF-8",
            ["invoke", "PolicyGuardFunction", "-t", "{d}/template.yaml", "-e", "{d}/latin1.json"],
            ["--event {d}/latin1.json: not UTF-8 text"]),
    Mistake("event-not-json", "an event file that is not JSON",
            ["invoke", "PolicyGuardFunction", "-t", "{d}/template.yaml", "-e", "{d}/broken.json"],
            ["--event {d}/broken.json: not valid JSON (line 1, column"]),
    Mistake("env-vars-not-object", "`--env-vars` that is not a JSON object",
            ["invoke", "PolicyGuardFunction", "-t", "{d}/template.yaml", "-n", "{d}/list.json"],
            ["--env-vars {d}/list.json: must be a JSON object"]),
    Mistake("unknown-function", "a function the template does not have",
            ["invoke", "PolicyGuard", "-t", "{d}/template.yaml"],
            ["{d}/template.yaml: no function 'PolicyGuard' (did you mean 'PolicyGuardFunction'?)"]),
    Mistake("template-missing", "no template.yaml where the command runs",
            ["invoke", "PolicyGuardFunction", "-t", "{d}/nope/template.yaml"], ["{d}/nope/template.yaml: cannot read the template"]),
    Mistake("override-without-equals", "`--parameter-overrides` without `=`",
            ["local", "up", "-t", "{d}/template.yaml", "--parameter-overrides", "LogLevel"],
            ["--parameter-overrides: 'LogLevel' is not KEY=VALUE", "LogLevel=VALUE"]),
    Mistake("override-unknown-parameter", "`--parameter-overrides` naming no template parameter",
            ["local", "up", "-t", "{d}/template.yaml", "--parameter-overrides", "LogLvl=DEBUG"],
            ["--parameter-overrides LogLvl: not a parameter of {d}/template.yaml (did you mean 'LogLevel'?)"]),
    Mistake("poll-without-emulator", "`local poll` with no emulator running",
            ["local", "poll", "PolicyGuardFunction", "-t", "{d}/template.yaml"], ["local poll: no emulator is running"]),
    Mistake("cloudtrail-missing", "a CloudTrail path that does not exist",
            ["scan", "cloudtrail", "{d}/nope"], ["{d}/nope: no such file or folder"]),
    Mistake("cloudtrail-binary", "a binary file as a CloudTrail log",
            ["scan", "cloudtrail", "{d}/binary.dat"], ["{d}/binary.dat: binary file, not a CloudTrail log"]),
    Mistake("cloudtrail-latin1", "a CloudTrail file that is not UTF-8",
            ["scan", "cloudtrail", "{d}/latin1.json"], ["{d}/latin1.json: not UTF-8 text (byte 0xe9 on line 1)"]),
    Mistake("cloudtrail-empty-folder", "a folder with no CloudTrail logs",
            ["scan", "cloudtrail", "{d}/folder"], ["{d}/folder: no CloudTrail log files"]),
    Mistake("data-binary", "a binary data file",
            ["data", "validate", "{d}/binary.dat", "--contract", "events", "--policy", "{d}/policy.yaml"],
            ["{d}/binary.dat: binary file, not csv", "contract events expects csv"]),
    Mistake("data-latin1", "a data file that is not UTF-8",
            ["data", "validate", "{d}/latin1.csv", "--contract", "events", "--policy", "{d}/policy.yaml"],
            ["{d}/latin1.csv: cannot be read as csv", "UTF8"]),
    Mistake("data-folder", "a folder as the data file",
            ["data", "validate", "{d}/folder", "--contract", "events", "--policy", "{d}/policy.yaml"],
            ["{d}/folder: cannot read the data file (is a folder, not a file)"]),
    Mistake("unknown-contract", "an unknown `--contract`",
            ["data", "validate", "{d}/data.csv", "--contract", "event", "--policy", "{d}/policy.yaml"],
            ["{d}/policy.yaml: contracts: no contract named 'event' (did you mean 'events'?)"]),
    Mistake("baseline-missing", "a `--baseline` that does not exist",
            ["data", "validate", "{d}/data.csv", "--contract", "events", "--policy", "{d}/policy.yaml", "--baseline", "{d}/nope.json"],
            ["--baseline {d}/nope.json: cannot read a drift profile"]),
    Mistake("baseline-not-profile", "a `--baseline` that is not a drift profile",
            ["data", "validate", "{d}/data.csv", "--contract", "events", "--policy", "{d}/policy.yaml", "--baseline", "{d}/list.json"],
            ["--baseline {d}/list.json: not a drift profile", "stagewarden data profile"]),
    Mistake("out-folder-missing", "a missing output folder (`--out`)",
            ["data", "profile", "{d}/data.csv", "--contract", "events", "--policy", "{d}/policy.yaml", "--out", "{d}/nope/p.json"],
            ["--out {d}/nope/p.json: the folder {d}/nope does not exist", "mkdir -p {d}/nope"]),
    Mistake("out-is-folder", "a folder as the output file",
            ["data", "profile", "{d}/data.csv", "--contract", "events", "--policy", "{d}/policy.yaml", "--out", "{d}/folder"],
            ["--out {d}/folder: is a folder"]),
    Mistake("report-is-file", "a file as the demo's `--report` folder",
            ["demo", "-t", "{d}/template.yaml", "--policy", "{d}/policy.yaml", "--report", "{d}/data.csv"],
            ["--report {d}/data.csv: is a file, not a folder", "give a folder"]),
    Mistake("report-unwritable", "a `--report` folder that cannot be created or written",
            ["demo", "-t", "{d}/template.yaml", "--policy", "{d}/policy.yaml", "--report", "{d}/data.csv/report"],
            ["--report {d}/data.csv/report: cannot write there (", "give a folder you can write to"]),
]

#: run again through a real process: the console entry point, no traceback on stderr
IN_SUBPROCESS = ["policy-binary", "policy-latin1", "policy-top-level-typo", "bad-format", "no-credentials", "no-region",
                 "event-binary", "override-without-equals", "cloudtrail-binary", "out-folder-missing",
                 "report-is-file"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return prepare(tmp_path)


def prepare(d: Path) -> Path:
    """The files the mistakes name, in folder ``d``."""
    (d / "policy.yaml").write_text(POLICY)
    (d / "folder").mkdir()
    (d / "binary.dat").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    (d / "latin1.yaml").write_bytes("framework: two-stage\nstages:\n  prod-discovery: {description: caf\u00e9}\n".encode("latin-1"))
    (d / "latin1.json").write_bytes('{"Records": [{"userAgent": "caf\u00e9"}]}'.encode("latin-1"))
    (d / "latin1.csv").write_bytes("id,amount\n1,caf\u00e9\n".encode("latin-1"))
    (d / "empty.yaml").write_text("")
    (d / "typo.yaml").write_text("framework: two-stage\nstage:\n  prod-discovery: {mode: enforce}\n")
    (d / "nested-typo.yaml").write_text("stages:\n  lab:\n    production_data: true\n    interactive_access: none\n"
                                        "    download: denied\n    retension: {default_days: 30}\n")
    (d / "broken.json").write_text('{"detail-type": ')
    (d / "list.json").write_text("[1, 2]")
    (d / "data.csv").write_text("id,amount\n1,2.5\n")
    (d / "template.yaml").write_bytes((ROOT / "template.yaml").read_bytes())  # no emulator state beside it
    return d


def _fill(text: str, d: Path) -> str:
    return text.replace("{d}", str(d)).replace("{root}", str(ROOT))


def _env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None]) -> None:
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


def _assert_one_line(code: int, err: str, case: Mistake, d: Path) -> None:
    lines = err.splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, lines
    for fragment in case.says:
        assert _fill(fragment, d) in lines[0], lines[0]


def test_the_table_has_at_least_fifteen_distinct_mistakes() -> None:
    assert len(MISTAKES) >= 15
    assert len({m.id for m in MISTAKES}) == len(MISTAKES) and len({tuple(m.argv) for m in MISTAKES}) == len(MISTAKES)
    assert set(IN_SUBPROCESS) <= {m.id for m in MISTAKES}


@pytest.mark.parametrize("case", MISTAKES, ids=[m.id for m in MISTAKES])
def test_a_mistake_is_one_line_and_exit_2(case: Mistake, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _env(monkeypatch, case.env)
    monkeypatch.chdir(workdir)

    code = main([_fill(a, workdir) for a in case.argv])

    captured = capsys.readouterr()
    _assert_one_line(code, captured.err, case, workdir)


def _run(argv: list[str], env: dict[str, str | None] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.run([sys.executable, "-m", "stagewarden", *argv], capture_output=True, text=True, env=full,
                          cwd=cwd or ROOT, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("case", [m for m in MISTAKES if m.id in IN_SUBPROCESS], ids=IN_SUBPROCESS)
def test_a_mistake_in_a_real_process_shows_no_traceback(case: Mistake, workdir: Path) -> None:
    proc = _run([_fill(a, workdir) for a in case.argv], case.env, cwd=workdir)

    _assert_one_line(proc.returncode, proc.stderr, case, workdir)


def test_the_readme_lists_every_mistake() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Command-line mistakes", 1)[1].split("\n## ", 1)[0]
    missing = [m.mistake for m in MISTAKES if f"| {m.mistake} |" not in section]
    assert not missing, missing


def test_an_unexpected_error_is_a_bug_and_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    from stagewarden import cli

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "cmd_policy_validate", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["policy", "validate", str(workdir / "policy.yaml")])


# ------------------------------------------------------------------ what is not a mistake
def test_version_prints_the_package_version(capsys) -> None:
    from importlib.metadata import version

    import stagewarden

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"stagewarden {stagewarden.__version__}\n"
    assert stagewarden.__version__ == version("stagewarden")
    assert f'version = "{stagewarden.__version__}"' in (ROOT / "pyproject.toml").read_text()


def test_version_and_help_in_a_real_process() -> None:
    proc = _run(["--version"])
    assert proc.returncode == 0 and proc.stdout.startswith("stagewarden ") and not proc.stderr
    proc = _run(["--help"])
    assert proc.returncode == 0 and "Exit codes: 0 success, 1 findings" in proc.stdout


def test_local_status_without_an_emulator_is_not_an_error(workdir: Path, capsys) -> None:
    assert main(["local", "status", "-t", str(workdir / "template.yaml")]) == 0
    captured = capsys.readouterr()
    assert "no emulator is running" in captured.out and "stagewarden local up" in captured.out and not captured.err


def test_local_status_with_a_stale_record_is_not_an_error(workdir: Path, capsys) -> None:
    from stagewarden import emulator

    emulator.write_state(workdir / "template.yaml", emulator.LocalState(endpoint="http://127.0.0.1:9", pid=None))

    assert main(["local", "status", "-t", str(workdir / "template.yaml")]) == 0
    assert "no emulator is running: the one recorded in" in capsys.readouterr().out


def test_exit_1_still_means_findings_at_or_above_fail_on(tmp_path: Path, example_policy_path: Path, capsys) -> None:
    from datetime import datetime, timezone

    from stagewarden.trailgen import bulk_download, log_file

    records = bulk_download(role="DataScientistAlice", session="alice@example.com", bucket="acme-lab-data", objects=1200,
                            start=datetime(2026, 11, 22, 8, tzinfo=timezone.utc), seconds=300, nbytes=100_000)
    (tmp_path / "trail.json.gz").write_bytes(log_file(records))
    scan = ["scan", "cloudtrail", str(tmp_path), "--policy", str(example_policy_path)]

    assert main(scan) == 0  # findings, but no --fail-on
    severities = {json.loads(line)["severity"] for line in capsys.readouterr().out.splitlines()}
    worst = max(severities, key=["low", "medium", "high", "critical"].index)
    assert main([*scan, "--fail-on", worst]) == 1
    above = ["low", "medium", "high", "critical"][["low", "medium", "high", "critical"].index(worst) + 1:]
    for severity in above:
        assert main([*scan, "--fail-on", severity]) == 0


def test_make_help_lists_every_target_with_one_line() -> None:
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    phony = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith(".PHONY:")).split()[1:]
    listed = {line.split()[1] for line in proc.stdout.splitlines()}
    assert listed == set(phony) and len(proc.stdout.splitlines()) == len(phony)
