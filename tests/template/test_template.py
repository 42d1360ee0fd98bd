"""template.yaml: transforms offline, lints clean, validates and builds with aws-sam-cli, grants least privilege."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stage_policy.publish import FindingPublisher
from stage_policy.store import PolicyStore
from stage_policy.tags import BucketTags
from stagewarden.cfn import load_template
from tests.helpers import ROOT

TEMPLATE = ROOT / "template.yaml"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


class _OfflinePolicies:
    """The translator asks IAM for AWS managed policy ARNs; the template names none by short name."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def translated() -> dict:
    from samtranslator.translator.transform import transform

    template = load_template(TEMPLATE)
    # as `sam package` would: local code locations become S3 artifacts
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://stagewarden-artifacts/{props[key].strip('/')}.zip"
    from unittest import mock

    with mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": "us-east-1"}):  # the translator builds regional ARNs
        return transform(template, {"StageGroup": "lab"}, _OfflinePolicies())


def _lint(text: str) -> list[str]:
    from cfnlint.api import lint

    return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in lint(text, regions=["us-east-1", "eu-west-1"])]


def test_the_sam_template_transforms_offline(translated) -> None:
    resources = translated["Resources"]
    assert resources["PolicyGuardFunction"]["Type"] == "AWS::Lambda::Function"
    assert any(k.startswith("StagePolicyLayer") and r["Type"] == "AWS::Lambda::LayerVersion" for k, r in resources.items())
    assert any(r["Type"] == "AWS::Scheduler::Schedule" for r in resources.values())
    assert any(r["Type"] == "AWS::Events::Rule" for r in resources.values())


def test_cfn_lint_passes_on_the_sam_source() -> None:
    assert _lint(TEMPLATE.read_text()) == []


def test_cfn_lint_passes_on_the_translated_template(translated) -> None:
    assert _lint(json.dumps(translated)) == []


def _inline_statements(translated: dict) -> list[dict]:
    out = []
    for resource in translated["Resources"].values():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            statements = policy["PolicyDocument"]["Statement"]
            out += statements if isinstance(statements, list) else [statements]
    return out


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


#: Write actions AWS authorizes only on "*" (no resource-level permissions), each with its reason.
ONLY_ON_EVERY_RESOURCE = {
    "config:PutEvaluations": "a Config rule's Lambda answers through it; the result token names the rule",
}


def test_no_write_action_is_granted_on_every_resource(translated) -> None:
    for statement in _inline_statements(translated):
        if statement.get("Effect") != "Allow":
            continue
        resources = _as_list(statement["Resource"])
        if "*" in resources:
            actions = _as_list(statement["Action"])
            writes = [a for a in actions if not a.split(":")[1].startswith(("Describe", "Get", "List"))
                      and a not in ONLY_ON_EVERY_RESOURCE]
            assert writes == [], f"write actions on '*': {writes}"


def test_policy_guard_is_granted_exactly_what_its_ports_declare(translated) -> None:
    role = translated["Resources"]["PolicyGuardFunctionRole"]
    granted = {a for p in role["Properties"]["Policies"] for s in _as_list(p["PolicyDocument"]["Statement"])
               if s.get("Effect") == "Allow" for a in _as_list(s["Action"])}
    granted.discard("sqs:SendMessage")  # added by SAM for the function's DeadLetterQueue
    declared = set(PolicyStore.permissions) | set(FindingPublisher.permissions)
    assert granted == declared


def test_exfiltration_is_granted_exactly_what_its_classes_declare(translated) -> None:
    from exfil.handler import USES

    role = translated["Resources"]["ExfiltrationFunctionRole"]
    granted = {a for p in role["Properties"]["Policies"] for s in _as_list(p["PolicyDocument"]["Statement"])
               if isinstance(s, dict) and s.get("Effect") == "Allow" for a in _as_list(s["Action"])}
    declared = {a for cls in USES for a in cls.permissions}
    assert granted == declared


def test_schema_gate_is_granted_exactly_what_its_ports_declare(translated) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gate_ports", ROOT / "functions" / "schema_gate" / "ports.py")
    gate_ports = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gate_ports)
    role = translated["Resources"]["SchemaGateFunctionRole"]
    granted = {a for p in role["Properties"]["Policies"] for s in _as_list(p["PolicyDocument"]["Statement"])
               if isinstance(s, dict) and s.get("Effect") == "Allow" for a in _as_list(s["Action"])}
    declared = set(PolicyStore.permissions) | set(FindingPublisher.permissions)
    for port in (gate_ports.ObjectStore, gate_ports.Quarantine, gate_ports.Ledger, BucketTags):
        declared |= set(port.permissions)
    assert granted == declared


def test_the_exfiltration_queue_has_a_dead_letter_queue_and_partial_batch_failure(translated) -> None:
    resources = translated["Resources"]
    redrive = resources["ExfilQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 5 and redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["ExfilDeadLetterQueue", "Arn"]}
    mapping = next(r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping")
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_functions_have_a_dead_letter_queue(translated) -> None:
    fn = translated["Resources"]["PolicyGuardFunction"]["Properties"]
    assert "DeadLetterConfig" in fn


# ---------------------------------------------------------------- aws-sam-cli (its own venv)
def _sam() -> str | None:
    candidates = [os.environ.get("STAGEWARDEN_SAM"), str(ROOT / ".venv-sam" / "bin" / "sam"), shutil.which("sam")]
    found = next((c for c in candidates if c and Path(c).exists()), None)
    if found is None and os.environ.get("STAGEWARDEN_REQUIRE_SAM") == "1":
        pytest.fail("aws-sam-cli is required (make test installs it into .venv-sam)")
    return found


@pytest.fixture(scope="module")
def sam() -> str:
    found = _sam()
    if found is None:
        pytest.skip("aws-sam-cli not installed (make test installs it into .venv-sam; set STAGEWARDEN_REQUIRE_SAM=1 to fail instead)")
    return found


def runtime_python() -> str | None:
    """A python3.12 for `sam build` (the functions' runtime): on PATH, or one of pyenv's versions."""
    import glob

    found = shutil.which("python3.12")
    if found and subprocess.run([found, "--version"], capture_output=True).returncode == 0:
        return found
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    return candidates[-1] if candidates else None


def _sam_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0", "SAM_CLI_CONTACT_TRACKING": "0"})
    python = runtime_python()
    if python:
        env["PATH"] = os.path.dirname(python) + os.pathsep + env.get("PATH", "")
    return env


def test_sam_validate_lint(sam: str) -> None:
    proc = subprocess.run([sam, "validate", "--lint", "--template-file", str(TEMPLATE)], cwd=ROOT, env=_sam_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is a valid SAM Template" in proc.stdout + proc.stderr


def test_sam_build_succeeds_within_lambdas_size_limit(sam: str, tmp_path: Path) -> None:
    build = tmp_path / "build"
    proc = subprocess.run([sam, "build", "--template-file", str(TEMPLATE), "--build-dir", str(build), "--base-dir", str(ROOT)],
                          cwd=ROOT, env=_sam_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    layer = build / "StagePolicyLayer" / "python"
    function = build / "PolicyGuardFunction"
    exfil = build / "ExfiltrationFunction"
    gate = build / "SchemaGateFunction"
    assert (layer / "stage_policy" / "model.py").exists() and (layer / "pydantic").is_dir() and (layer / "yaml").is_dir()
    assert (function / "app.py").exists() and (function / "checks.py").exists()
    assert (exfil / "exfil" / "engine.py").exists() and (exfil / "orjson").is_dir() and (exfil / "ijson").is_dir()
    assert (gate / "gate" / "engine.py").exists() and (gate / "pyarrow").is_dir()
    for code in (function, exfil, gate):
        size = sum(p.stat().st_size for d in (layer, code) for p in d.rglob("*") if p.is_file())
        assert size < LAMBDA_UNZIPPED_LIMIT, f"{code.name} + layer unzipped: {size / 1e6:.1f} MB"


def test_every_dead_letter_queue_has_an_alarm_on_the_alerts_topic(translated) -> None:
    resources = translated["Resources"]
    queues = {k for k, r in resources.items() if r["Type"] == "AWS::SQS::Queue" and "DeadLetter" in k}
    alarmed = {r["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0] for r in resources.values()
               if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["AlarmActions"] == [{"Ref": "AlertsTopic"}]}
    assert queues and queues == alarmed
