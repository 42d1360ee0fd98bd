"""Red-team findings against the command line, run as a new user would: a fresh shell, no emulator, no AWS setup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stagewarden.cli import main
from tests.helpers import ROOT
from tests.unit.cli.test_mistakes import NO_CREDENTIALS, _env, _run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "template.yaml").write_bytes((ROOT / "template.yaml").read_bytes())  # no emulator state beside it
    for code in ("functions", "layers"):
        (tmp_path / code).symlink_to(ROOT / code)
    return tmp_path


def test_invoke_without_the_emulator_names_the_unresolved_settings(project: Path, monkeypatch, capsys) -> None:
    # Given a region (real AWS) but no emulator: the README's `stagewarden invoke ExfiltrationFunction -e ...`
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.chdir(project)

    code = main(["invoke", "ExfiltrationFunction", "-e", str(ROOT / "events/exfiltration/mgmt_delete_trail.sqs.json")])

    # Then one line says which settings name stack resources and what to do (not "s3://<PolicyBucket>/...: ParamValidationError")
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "STAGEWARDEN_POLICY_LOCATION" in err and "--env-vars" in err and "stagewarden local up" in err


def guard_env(project: Path) -> Path:
    (project / "policy.yaml").write_bytes((ROOT / "policy.example.yaml").read_bytes())
    env = {"PolicyGuardFunction": {"STAGEWARDEN_POLICY_LOCATION": str(project / "policy.yaml"),
                                   "STAGEWARDEN_ALERTS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:alerts",
                                   "STAGEWARDEN_STATE_TABLE": "state", "STAGEWARDEN_AUDIT_TABLE": "audit"}}
    (project / "env.json").write_text(json.dumps(env))
    return project / "env.json"


def test_invoke_without_credentials_is_one_line_not_a_traceback(project: Path, monkeypatch, capsys) -> None:
    # Given every setting given with --env-vars and a region, but no AWS credentials
    env = guard_env(project)
    _env(monkeypatch, {**NO_CREDENTIALS, "AWS_DEFAULT_REGION": "eu-west-1"})
    monkeypatch.chdir(project)

    # When the policy guard is invoked (its replay-safety record is the first AWS call; Powertools wraps the error)
    code = main(["invoke", "PolicyGuardFunction", "-e", str(ROOT / "events/policy_guard_scheduled.json"), "--env-vars", str(env)])

    # Then it is the documented credentials line, exit 2
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "AWS credentials: none found" in err


def test_invoke_without_credentials_in_a_real_process(project: Path) -> None:
    env = guard_env(project)
    proc = _run(["invoke", "PolicyGuardFunction", "-e", str(ROOT / "events/policy_guard_scheduled.json"), "--env-vars", str(env)],
                {**NO_CREDENTIALS, "AWS_DEFAULT_REGION": "eu-west-1"}, cwd=project)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines() == [line for line in proc.stderr.splitlines() if line.startswith("stagewarden: AWS credentials")]
