"""Logger, Metrics and Tracer singletons for every function (service name from POWERTOOLS_SERVICE_NAME).

Imported by handlers only: the policy model does not pay for Powertools.

Why ``tracer`` is not a Powertools ``Tracer`` but a stand-in that builds one on demand:
constructing ``Tracer()`` imports the AWS X-Ray SDK (recorder, sampler, wrapt, asyncio) and
patches every library X-Ray supports, whether tracing is on or not. That was 150-220 ms of
each handler's import, more than the rest of the handler together (budget: `import boto3`
+ 120 ms). ``LazyTracer`` offers the same decorators; the X-Ray SDK is imported only when an
invocation is traced, on the first such call, never at import:

- ``STAGEWARDEN_TRACING=on``: always build the Powertools Tracer (which still applies its own
  rules: ``POWERTOOLS_TRACE_DISABLED``, and off outside Lambda).
- ``STAGEWARDEN_TRACING=off``: never; the decorators call the function as it is.
- unset (``auto``): build it when ``POWERTOOLS_TRACE_DISABLED`` is not true and the call runs
  in Lambda (``LAMBDA_TASK_ROOT``) with X-Ray's environment (``_X_AMZN_TRACE_ID`` or
  ``AWS_XRAY_DAEMON_ADDRESS``), not in ``sam local`` (``AWS_SAM_LOCAL``) or chalice local.

With ``Tracing: Active`` the cost therefore moves from the import to the first invocation of
the container; to drop it altogether, turn tracing off for the function. Until the Tracer
exists the decision is re-read on every call (a few ``os.environ`` lookups); once built, it
stays. Logger and Metrics stay eager: together they cost about 10 ms.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import Metrics, MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.shared.functions import strtobool

if TYPE_CHECKING:  # the real class, for type checkers only: importing it here is cheap, building it is not
    from aws_lambda_powertools.tracing import Tracer

    from stage_policy.findings import Finding

TRACING_ENV = "STAGEWARDEN_TRACING"
_CHOICES = {"on": True, "off": False, "auto": None, "": None}


def tracing_wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this call should be traced: STAGEWARDEN_TRACING, else Powertools' and Lambda's environment."""
    choice = env.get(TRACING_ENV, "").strip().lower()
    if choice not in _CHOICES:
        raise ValueError(f"{TRACING_ENV}={env[TRACING_ENV]!r}: expected 'on', 'off' or 'auto'")
    if _CHOICES[choice] is not None:
        return _CHOICES[choice]
    if strtobool(env.get("POWERTOOLS_TRACE_DISABLED", "false") or "false"):
        return False
    if env.get("AWS_SAM_LOCAL") or env.get("AWS_CHALICE_CLI_MODE"):
        return False
    return bool(env.get("LAMBDA_TASK_ROOT")) and bool(env.get("_X_AMZN_TRACE_ID") or env.get("AWS_XRAY_DAEMON_ADDRESS"))


class LazyTracer:
    """The Powertools Tracer's decorators and annotations, the Tracer itself built on the first traced call."""

    def __init__(self, wanted: Callable[[], bool] = tracing_wanted):
        self._wanted = wanted
        self._tracer: Tracer | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the Powertools Tracer (and so the X-Ray SDK) has been built."""
        return self._tracer is not None

    def get(self) -> Tracer | None:
        """The Powertools Tracer if this call is traced (building it the first time), else None."""
        if self._tracer is None:
            if not self._wanted():
                return None
            with self._lock:
                if self._tracer is None:
                    from aws_lambda_powertools.tracing import Tracer  # builds the X-Ray recorder, patches botocore

                    self._tracer = Tracer()
        return self._tracer

    def capture_lambda_handler(self, lambda_handler: Callable[..., Any] | None = None, capture_response: bool | None = None,
                               capture_error: bool | None = None) -> Callable[..., Any]:
        """``Tracer.capture_lambda_handler``, applied on the first traced invocation."""
        if lambda_handler is None:
            return functools.partial(self.capture_lambda_handler, capture_response=capture_response, capture_error=capture_error)
        return self._deferred("capture_lambda_handler", lambda_handler, capture_response, capture_error)

    def capture_method(self, method: Callable[..., Any] | None = None, capture_response: bool | None = None,
                       capture_error: bool | None = None) -> Callable[..., Any]:
        """``Tracer.capture_method`` (sync, async, generators, context managers), applied on the first traced call."""
        if method is None:
            return functools.partial(self.capture_method, capture_response=capture_response, capture_error=capture_error)
        return self._deferred("capture_method", method, capture_response, capture_error)

    def put_annotation(self, key: str, value: Any) -> None:
        tracer = self.get()
        if tracer is not None:
            tracer.put_annotation(key=key, value=value)

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        tracer = self.get()
        if tracer is not None:
            tracer.put_metadata(key=key, value=value, namespace=namespace)

    def _deferred(self, decorator: str, fn: Callable[..., Any], capture_response: bool | None,
                  capture_error: bool | None) -> Callable[..., Any]:
        traced: Callable[..., Any] | None = None

        def target() -> Callable[..., Any]:
            nonlocal traced
            if traced is None:
                tracer = self.get()
                if tracer is None:
                    return fn
                traced = getattr(tracer, decorator)(fn, capture_response=capture_response, capture_error=capture_error)
            return traced

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                return await target()(*args, **kwargs)

            return call_async

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            return target()(*args, **kwargs)

        return call


logger = Logger()
metrics = Metrics()
tracer = LazyTracer()


#: The metric the operations dashboard plots per rule and severity (template.yaml, OperationsDashboard).
FINDINGS_METRIC = "FindingsByRule"


def count_finding(finding: Finding, env: Mapping[str, str] = os.environ) -> None:
    """One ``FindingsByRule`` data point (dimensions service, rule, severity) for a finding a function decided.

    A metric of its own, printed at once as one EMF line (``single_metric``): the handler's
    ``metrics`` carry one dimension set per invocation, and a batch holds findings of several
    rules and severities. Every decided finding counts, also one that ``alerts.min_severity``
    or the dedup window keeps from being published: the dashboard shows what was detected,
    the alerts topic what was sent. Rules and severities are fixed sets, so the number of
    metrics (and their cost) is bounded. Silent where Powertools' metrics are off
    (``POWERTOOLS_METRICS_DISABLED``, ``POWERTOOLS_DEV``): ``single_metric`` itself would print
    anyway, into the standard output of ``stagewarden invoke`` / ``local poll``.
    """
    if is_metrics_disabled():
        return
    service = env.get("POWERTOOLS_SERVICE_NAME") or "service_undefined"
    with single_metric(name=FINDINGS_METRIC, unit=MetricUnit.Count, value=1,
                       default_dimensions={"service": service}) as metric:
        metric.add_dimension(name="rule", value=finding.rule)
        metric.add_dimension(name="severity", value=finding.severity)
