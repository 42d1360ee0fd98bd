"""Docker-less `sam local invoke`: run a template function's handler in this process.

The handler, code location, layers and environment come from template.yaml (Globals
merged as SAM merges them); intrinsics resolve to the local emulator's physical names
when it is running, otherwise to the template's parameter defaults.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from stagewarden.cfn import Context, evaluate_conditions, functions, load_template, no_function, parameter_defaults, resolve
from stagewarden.emulator import LocalState
from stagewarden.usage import HINT, UsageError, read_json


@dataclass
class LambdaContext:
    """The context object Lambda passes to a handler (not an AWS API)."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    timeout_seconds: int
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class FunctionSpec:
    logical_id: str
    code_dir: Path
    module: str
    handler: str
    layer_dirs: list[Path]
    environment: dict[str, str]
    memory: int
    timeout: int
    arn: str
    name: str


def _merged(globals_fn: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    merged = {**globals_fn, **props}
    env = {**(globals_fn.get("Environment") or {}).get("Variables", {}), **(props.get("Environment") or {}).get("Variables", {})}
    merged["Environment"] = {"Variables": env}
    merged["Layers"] = list(globals_fn.get("Layers") or []) + list(props.get("Layers") or [])
    return merged


def function_spec(template_path: Path, logical_id: str, state: LocalState | None,
                  env_overrides: dict[str, str] | None = None) -> FunctionSpec:
    template = load_template(template_path)
    fns = functions(template)
    if logical_id not in fns:
        raise no_function(template_path, logical_id, list(fns))
    root = template_path.resolve().parent
    ctx = state.context() if state else Context(parameters=parameter_defaults(template))
    if not state:
        ctx.parameters = parameter_defaults(template)
    evaluate_conditions(template, ctx)
    raw = _merged((template.get("Globals") or {}).get("Function") or {}, fns[logical_id].get("Properties") or {})
    layer_dirs = []
    for layer in raw["Layers"]:
        if isinstance(layer, dict) and "Ref" in layer:
            res = template["Resources"].get(layer["Ref"], {})
            if res.get("Type") == "AWS::Serverless::LayerVersion":
                layer_dirs.append(root / res["Properties"]["ContentUri"])
    env = {k: str(v) for k, v in resolve(raw["Environment"]["Variables"], ctx).items()}
    env.update(env_overrides or {})
    module, _, handler = str(raw["Handler"]).rpartition(".")
    name = ctx.refs.get(logical_id) or f"{ctx.stack_name}-{logical_id.lower()}"
    arn = f"arn:aws:lambda:{ctx.region}:{ctx.account_id}:function:{name}"
    return FunctionSpec(logical_id, root / raw["CodeUri"], module, handler, layer_dirs, env,
                        int(raw.get("MemorySize", 128)), int(raw.get("Timeout", 3)), arn, name)


@contextmanager
def _lambda_process(spec: FunctionSpec, extra_env: dict[str, str]) -> Iterator[None]:
    """Environment and import path of the function, restored afterwards."""
    saved_env = dict(os.environ)
    saved_path = list(sys.path)
    local_modules = {p.stem for p in spec.code_dir.glob("*.py")} | {p.name for p in spec.code_dir.iterdir() if (p / "__init__.py").exists()}
    # the function's modules as the caller had them (a test module's `from warden.rules import Refused`): put back
    # afterwards, so the caller's classes stay the ones its later imports raise
    saved_modules = {m: mod for m, mod in sys.modules.items() if m in local_modules or m.split(".", 1)[0] in local_modules}
    _fresh_container(local_modules)
    os.environ.update(extra_env)
    os.environ.update(spec.environment)
    os.environ.update({
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_SAM_LOCAL": "true",  # what `sam local` sets; Powertools Tracer then stays off (no X-Ray daemon)
    })
    sys.path[:0] = [str(spec.code_dir)] + [str(d) for d in spec.layer_dirs]
    if os.environ.get("AWS_ENDPOINT_URL"):  # the handler's clients come from boto3's default session
        import boto3

        from stagewarden.emulator import loopback_s3control

        loopback_s3control((boto3.DEFAULT_SESSION or boto3.setup_default_session() or boto3.DEFAULT_SESSION).events)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path
        _fresh_container(local_modules)
        sys.modules.update(saved_modules)


def _fresh_container(local_modules: set[str]) -> None:
    """Forget the function's modules (and their submodules) and the layer's per-container clients: a cold start."""
    for name in [m for m in sys.modules if m in local_modules or m.split(".", 1)[0] in local_modules]:
        sys.modules.pop(name, None)
    runtime = sys.modules.get("stage_policy.runtime")
    if runtime is not None:
        runtime.client.cache_clear()


def invoke(spec: FunctionSpec, event: Any, extra_env: dict[str, str] | None = None) -> Any:
    """Import the handler fresh and call it with ``event`` and a Lambda context.

    What the function prints (Powertools' metric lines, which Lambda sends to its log group) goes
    to standard error, as with ``sam local invoke``: standard output stays the caller's (the
    result of ``invoke`` and ``local poll`` as JSON).
    """
    with _lambda_process(spec, extra_env or {}), contextlib.redirect_stdout(sys.stderr):
        module = importlib.import_module(spec.module)
        handler = getattr(module, spec.handler)
        context = LambdaContext(spec.name, spec.memory, spec.arn, str(uuid.uuid4()), spec.timeout)
        return handler(event, context)


def read_event(path: str | None) -> Any:
    """The event a handler gets: a JSON file, ``-`` for standard input, or ``{}``. Mistakes raise UsageError."""
    if path is None:
        return {}
    return read_json(path, "an event", "--event", stdin=True)


def env_overrides(path: str, logical_id: str) -> dict[str, str]:
    """``--env-vars``, as sam local invoke reads it: ``{"Parameters": {...}, "<LogicalId>": {...}}``."""
    data = read_json(path, "environment overrides", "--env-vars")
    if not isinstance(data, dict):
        raise UsageError(f"--env-vars {path}: must be a JSON object{HINT}"
                         f'write {{"{logical_id}": {{"VARIABLE": "value"}}}} (or "Parameters" for every function)')
    for section in ("Parameters", logical_id):
        if not isinstance(data.get(section, {}), dict):
            raise UsageError(f"--env-vars {path}: {section}: must be an object of VARIABLE: value{HINT}"
                             f'write {{"{section}": {{"VARIABLE": "value"}}}}')
    return {k: str(v) for k, v in {**data.get("Parameters", {}), **data.get(logical_id, {})}.items()}


def region_for(spec: FunctionSpec) -> str:
    """The region a handler runs in without the emulator: the function's environment, else the caller's AWS settings."""
    region = spec.environment.get("AWS_REGION") or spec.environment.get("AWS_DEFAULT_REGION")
    region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if not region:
        import botocore.session

        region = botocore.session.Session().get_config_variable("region")  # the profile's region, if any
    if not region:
        raise UsageError(f"AWS region: not set, and no local emulator is running{HINT}export AWS_DEFAULT_REGION=<region> "
                         "(or set region in your AWS profile), or start the emulator with `stagewarden local up`")
    return region
