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
from tests.helpers import ROOT, broad, deployed, identity_statements, is_write, narrowed_by_resource_tag, translated_template

TEMPLATE = ROOT / "template.yaml"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


@pytest.fixture(scope="module")
def translated() -> dict:
    return translated_template()


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


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


#: Write actions allowed on a broad resource on purpose, by statement Sid (in a role or the boundary), and why.
BROAD_BY_DESIGN = {
    "Tracing": ({"xray:PutTraceSegments", "xray:PutTelemetryRecords"},
                "X-Ray has no resource-level permissions (only `*`); the segments describe the function's own calls"),
    "RevertSnapshotShares": ({"ec2:ModifySnapshotAttribute", "ec2:ModifyImageAttribute"},
                             "a share can be opened on any EBS snapshot or AMI in the region, and is only ever removed "
                             "(nothing deleted); IAM cannot name snapshots that do not exist yet"),
    "RevertDbSnapshotShares": ({"rds:ModifyDBSnapshotAttribute", "rds:ModifyDBClusterSnapshotAttribute"},
                               "as RevertSnapshotShares, for RDS snapshots and cluster snapshots"),
    "AnswerConfigRule": ({"config:PutEvaluations"},
                         "PutEvaluations has no resource-level permissions; the result token names the rule"),
    "Reads": ({"cloudtrail:LookupEvents"}, "the boundary's reads without resource-level permissions (SessionActivityForReviews)"),
    "SessionActivityForReviews": ({"cloudtrail:LookupEvents"},
                                  "a read (IAM access level Read) with no resource-level permissions: what a break-glass "
                                  "session did, for its post-incident review"),
}
DEPLOYMENTS = {
    "defaults": {},
    "own-trail-key-and-shortest-prefix": {"CloudTrailBucketName": "org-trail", "DataBucketNamePrefix": "a",
                                           "CloudTrailKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/trail"},
}


def broad_writes(statements) -> tuple[list[str], set[str]]:
    """Allow statements granting a write on a broad resource, unless a resource-tag condition narrows them
    or BROAD_BY_DESIGN names them; returns the findings and the exceptions that were needed."""
    found, used = [], set()
    for holder, statement in statements:
        if statement.get("Effect") != "Allow" or narrowed_by_resource_tag(statement):
            continue
        writes = {a for a in _as_list(statement["Action"]) if is_write(a)}
        wide = [r for r in _as_list(statement["Resource"]) if broad(r)]
        if not writes or not wide:
            continue
        allowed, _why = BROAD_BY_DESIGN.get(statement.get("Sid"), (set(), ""))
        if writes <= allowed:
            used.add(statement["Sid"])
        else:
            found.append(f"{holder} {statement.get('Sid')}: {sorted(writes - allowed)} on {wide}")
    return found, used


@pytest.mark.parametrize("resource, expected", [
    ("*", True), ("arn:aws:s3:::*", True), ("arn:aws:s3:::*/*", True), ("arn:aws:s3:::/*", True),
    ("arn:aws:iam::123456789012:role/*", True), ("arn:aws:dynamodb:us-east-1:123456789012:table/*", True),
    ("arn:aws:rds:us-east-1:123456789012:snapshot:*", True), ("arn:aws:sns:us-east-1:*:alerts", True),
    ("arn:aws:s3:::acme-lab-*", False), ("arn:aws:s3:::acme-lab-*/*", False), ("arn:aws:iam::123456789012:role/stagewarden-lab-*", False),
    ("arn:aws:dynamodb:us-east-1:123456789012:table/stagewarden-lab-StateTable-X", False),
    ("arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/stagewarden-lab-*", False),
])
def test_broad_resources_are_recognised(resource: str, expected: bool) -> None:
    assert broad(resource) is expected


def test_the_broad_resource_check_flags_a_role_wildcard_without_a_condition_and_every_bucket() -> None:
    role = {"Sid": "Revoke", "Effect": "Allow", "Action": ["iam:PutRolePolicy"], "Resource": "arn:aws:iam::123456789012:role/*"}
    tagged = {**role, "Condition": {"Null": {"aws:ResourceTag/stagewarden:stage": "false"}}}
    buckets = {"Effect": "Allow", "Action": ["s3:GetBucketTagging", "s3:PutBucketPolicy"], "Resource": "arn:aws:s3:::*"}
    reads = {"Effect": "Allow", "Action": ["s3:GetBucketTagging"], "Resource": "arn:aws:s3:::*"}

    found, _ = broad_writes([("R", role), ("R", tagged), ("R", buckets), ("R", reads)])

    assert found == ["R Revoke: ['iam:PutRolePolicy'] on ['arn:aws:iam::123456789012:role/*']",
                     "R None: ['s3:PutBucketPolicy'] on ['arn:aws:s3:::*']"]


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_no_write_action_is_granted_on_a_broad_resource(translated, deployment: str) -> None:
    # Given every statement of every role and managed policy, as deployed with these parameters
    statements = list(identity_statements(deployed(translated, **DEPLOYMENTS[deployment])))
    assert {h for h, _ in statements} >= {"StagewardenBoundary", "PolicyGuardFunctionRole", "ExfiltrationFunctionRole",
                                           "SchemaGateFunctionRole", "PolicyGuardFunctionHourlyRole"}

    found, used = broad_writes(statements)

    # Then nothing writes on `*`, every bucket, every role or a whole service, but the exceptions justified above
    assert found == []
    assert used == set(BROAD_BY_DESIGN), "an exception nothing needs any more: remove it"


def _functions() -> list[str]:
    from stagewarden.cfn import load_template

    resources = load_template(ROOT / "template.yaml")["Resources"]
    return sorted(k for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function")


@pytest.mark.parametrize("logical_id", _functions())
def test_each_function_is_granted_exactly_what_its_classes_declare(translated, logical_id) -> None:
    """No list kept by hand: the handler's USES (ports, actions, executor, publisher...) declare the IAM actions."""
    import importlib

    from stagewarden.cfn import load_template

    raw = load_template(ROOT / "template.yaml")["Resources"][logical_id]["Properties"]
    module_name = raw["Handler"].rpartition(".")[0]
    code_dir = ROOT / raw["CodeUri"]
    import sys

    sys.path.insert(0, str(code_dir))
    try:
        uses = importlib.import_module(module_name).USES
    finally:
        sys.path.remove(str(code_dir))
    role = translated["Resources"][f"{logical_id}Role"]
    granted = {a for p in role["Properties"]["Policies"] for s in _as_list(p["PolicyDocument"]["Statement"])
               if isinstance(s, dict) and s.get("Effect") == "Allow" for a in _as_list(s["Action"])}
    if "DeadLetterQueue" in raw:
        granted.discard("sqs:SendMessage")  # added by SAM for the function's own DeadLetterQueue
    declared = {a for cls in uses for a in cls.permissions}
    assert granted == declared, f"granted but not declared: {granted - declared}; declared but not granted: {declared - granted}"


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


@pytest.mark.sam
def test_sam_validate_lint(sam: str) -> None:
    proc = subprocess.run([sam, "validate", "--lint", "--template-file", str(TEMPLATE)], cwd=ROOT, env=_sam_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is a valid SAM Template" in proc.stdout + proc.stderr


@pytest.mark.sam
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
    assert (function / "guard" / "handler.py").exists() and (function / "guard" / "checks.py").exists()
    assert (exfil / "exfil" / "engine.py").exists() and (exfil / "orjson").is_dir() and (exfil / "ijson").is_dir()
    assert (gate / "gate" / "engine.py").exists() and (gate / "pyarrow").is_dir()
    for code in (function, exfil, gate):
        size = sum(p.stat().st_size for d in (layer, code) for p in d.rglob("*") if p.is_file())
        assert size < LAMBDA_UNZIPPED_LIMIT, f"{code.name} + layer unzipped: {size / 1e6:.1f} MB"


def test_every_dead_letter_queue_has_an_alarm_on_the_operations_topic(translated) -> None:
    resources = translated["Resources"]
    # operations messages travel apart from findings: when alert delivery is what broke, they cannot go through it
    queues = {k for k, r in resources.items() if r["Type"] == "AWS::SQS::Queue" and "DeadLetter" in k}
    alarmed = {r["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0] for r in resources.values()
               if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["AlarmActions"] == [{"Ref": "OperationsTopic"}]
               and r["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"}
    assert queues and queues == alarmed
