"""The lazy tracer: no X-Ray SDK at import, decorators that pass through when off, the real Tracer when on."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# stage_policy.observability is imported inside the tests, under conftest's environment: its Metrics
# singleton reads POWERTOOLS_METRICS_NAMESPACE when the module is first imported, and the handler
# tests that run after these need that namespace.
TRACING_ENV = "STAGEWARDEN_TRACING"
LAYER = Path(__file__).resolve().parents[3] / "layers" / "stage_policy"
IN_LAMBDA = {"LAMBDA_TASK_ROOT": "/var/task", "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000"}


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "STAGEWARDEN_", "PYTHON"))}
    return subprocess.run([sys.executable, "-P", "-c", code], env={**clean, "PYTHONPATH": str(LAYER), **env},
                          capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture
def powertools_tracer():
    """The Powertools Tracer keeps its configuration on the class: reset it after a test that builds one."""
    from aws_lambda_powertools.tracing import Tracer

    yield Tracer
    Tracer._reset_config()


@pytest.mark.parametrize(("env", "wanted"), [
    ({}, False),  # a laptop, CI: no Lambda
    (IN_LAMBDA, True),
    ({**IN_LAMBDA, "AWS_XRAY_DAEMON_ADDRESS": "", "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793"}, True),
    ({"LAMBDA_TASK_ROOT": "/var/task"}, False),  # no X-Ray environment
    ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "true"}, False),
    ({**IN_LAMBDA, "AWS_SAM_LOCAL": "true"}, False),  # sam local / `stagewarden invoke`: no daemon
    ({**IN_LAMBDA, TRACING_ENV: "off"}, False),
    ({TRACING_ENV: "on"}, True),
    ({TRACING_ENV: "ON", "POWERTOOLS_TRACE_DISABLED": "true"}, True),  # built; Powertools then disables it itself
    ({**IN_LAMBDA, TRACING_ENV: "auto"}, True),
])
def test_tracing_wanted(env: dict[str, str], wanted: bool) -> None:
    from stage_policy.observability import tracing_wanted

    assert tracing_wanted(env) is wanted


def test_an_unknown_tracing_choice_is_an_error_not_a_default() -> None:
    from stage_policy.observability import tracing_wanted

    with pytest.raises(ValueError, match="STAGEWARDEN_TRACING='yes please'"):
        tracing_wanted({TRACING_ENV: "yes please"})


def test_importing_observability_does_not_import_the_xray_sdk() -> None:
    # Given the environment of a Lambda function with active tracing (the decision is made per call, not at import)
    code = ("import sys; from stage_policy.observability import logger, metrics, tracer; "
            "print(sorted(m for m in sys.modules if m.startswith(('aws_xray_sdk', 'wrapt'))), tracer.loaded)")

    # When the module is imported
    out = _python(code, IN_LAMBDA).stdout.strip()

    # Then neither the X-Ray SDK nor its wrapt dependency is loaded
    assert out == "[] False"


def test_decorators_pass_through_when_tracing_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from stage_policy.observability import LazyTracer

    # Given tracing off (conftest sets POWERTOOLS_TRACE_DISABLED=true)
    monkeypatch.delenv(TRACING_ENV, raising=False)
    tracer = LazyTracer()

    @tracer.capture_method
    def double(x: int) -> int:
        return 2 * x

    @tracer.capture_method(capture_response=False)
    def count(n: int):
        yield from range(n)

    @tracer.capture_method
    async def later(x: int) -> int:
        return x + 1

    @tracer.capture_lambda_handler(capture_response=False)
    def failing(event: dict, context: object) -> None:
        raise KeyError(event["missing"])

    @tracer.capture_lambda_handler
    def handler(event: dict, context: object) -> dict:
        """Docstring kept."""
        tracer.put_annotation("key", event["key"])
        return {"doubled": double(event["n"]), "counted": list(count(3)), "later": asyncio.run(later(1))}

    # When the handlers run
    result = handler({"key": "k", "n": 21}, None)

    # Then they return what the functions return, raise what they raise, and nothing was built
    assert result == {"doubled": 42, "counted": [0, 1, 2], "later": 2}
    with pytest.raises(KeyError):
        failing({}, None)
    assert handler.__name__ == "handler" and handler.__doc__ == "Docstring kept."
    assert asyncio.iscoroutinefunction(later)
    assert not tracer.loaded and tracer.get() is None


def test_tracing_on_builds_the_powertools_tracer_on_the_first_call(monkeypatch: pytest.MonkeyPatch, powertools_tracer) -> None:
    from stage_policy.observability import LazyTracer

    # Given STAGEWARDEN_TRACING=on (outside Lambda, Powertools' own rules keep the provider off)
    monkeypatch.setenv(TRACING_ENV, "on")
    tracer = LazyTracer()

    @tracer.capture_lambda_handler
    def handler(event: dict, context: object) -> str:
        return "done"

    assert not tracer.loaded  # decorating builds nothing

    # When the handler is called
    result = handler({}, None)

    # Then the real Tracer exists, went through its decorator, and the handler's value comes back
    assert result == "done"
    assert tracer.loaded and isinstance(tracer.get(), powertools_tracer)
    assert tracer.get().disabled  # POWERTOOLS_TRACE_DISABLED=true from conftest, honoured by Powertools


def test_in_lambda_the_first_invocation_sends_the_handler_subsegment_to_the_daemon() -> None:
    # Given a Lambda-like environment whose X-Ray daemon is a UDP socket of this test
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(30)
    env = {
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "POWERTOOLS_SERVICE_NAME": "observability-test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    code = ("import sys; from stage_policy.observability import tracer\n"
            "@tracer.capture_lambda_handler\n"
            "def handler(event, context):\n"
            "    return 'traced'\n"
            "before = 'aws_xray_sdk' in sys.modules\n"
            "print(before, handler({}, None), tracer.get().disabled)")
    try:
        # When the handler is invoked once
        out = _python(code, env).stdout.split()
        payload = daemon.recv(65536).decode()
    finally:
        daemon.close()

    # Then the X-Ray SDK was loaded by the call, not the import, and the subsegment reached the daemon
    assert out == ["False", "traced", "False"]
    header, body = payload.split("\n", 1)
    subsegment = json.loads(body)
    assert json.loads(header) == {"format": "json", "version": 1}
    assert subsegment["name"] == "## handler" and subsegment["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert subsegment["annotations"] == {"ColdStart": True, "Service": "observability-test"}
