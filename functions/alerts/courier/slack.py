"""Slack incoming webhooks: the URL from Secrets Manager (cached 5 minutes), posts through slack_sdk's
WebhookClient with its retry handlers bounded by the invocation's time budget, and no URL ever shown.

The webhook URL *is* the credential: anyone holding it can post to the channel. It is never
logged, put in a finding, an error or the audit ledger:

* slack_sdk's client gets a logger of its own that is switched off (it logs the URL at debug
  level, and the request URL on connection errors);
* every error leaving this module is rebuilt from its type and a redacted message, raised
  ``from None``;
* :data:`REDACTOR`, a logging filter on the loggers that could see the secret value
  (botocore prints response bodies at debug level, GetSecretValue's included), replaces every
  URL it has been told about, and its token path, with ``<redacted>``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from stage_policy.errors import describe, is_code

#: The secret's value: one URL, or a JSON object of URLs by severity with an optional "default".
SEVERITY_KEYS = ("low", "medium", "high", "critical", "default")


class DeliveryError(RuntimeError):
    """A delivery failed; the message is safe to log (no URL, no token)."""


_SECRET_VALUE = re.compile(r'"(SecretString|SecretBinary)"\s*:\s*"(?:[^"\\]|\\.)*"')


class Redactor(logging.Filter):
    """Replaces known secrets in log records. Process-wide on purpose: logging is."""

    def __init__(self) -> None:
        super().__init__("stagewarden-redactor")
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        parts = {secret}
        path = urlsplit(secret).path
        if len(path) > 8:
            parts.add(path)
            parts.update(p for p in path.split("/") if len(p) >= 12)  # Slack's token part
        with self._lock:
            self._secrets |= {p for p in parts if p}

    def redact(self, text: str) -> str:
        if "Secret" in text:  # a Secrets Manager response body, logged before its value could be learned
            text = _SECRET_VALUE.sub(r'"\1": "<redacted>"', text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, "<redacted>")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a record that cannot format is left to logging's own handling
                return True
            clean = self.redact(message)
            if clean != message:
                record.msg, record.args = clean, ()
            if record.exc_info and record.exc_info[1] is not None:
                text = self.redact(str(record.exc_info[1]))
                if text != str(record.exc_info[1]):
                    record.msg, record.args, record.exc_info, record.exc_text = f"{clean} ({text})", (), None, None
        return True


REDACTOR = Redactor()
#: Loggers that can see a secret value or a webhook URL (filters act on the logger a record is made on).
WATCHED_LOGGERS = ("botocore", "botocore.parsers", "botocore.endpoint", "botocore.hooks", "botocore.retryhandler",
                   "botocore.httpsession", "urllib3", "urllib3.connectionpool", "slack_sdk", "slack_sdk.webhook",
                   "slack_sdk.webhook.client", "slack_sdk.http_retry", "courier")


def watch_loggers() -> None:
    for name in WATCHED_LOGGERS:
        logger = logging.getLogger(name)
        if REDACTOR not in logger.filters:
            logger.addFilter(REDACTOR)


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("courier.slack_sdk")
    logger.setLevel(logging.CRITICAL + 10)  # slack_sdk checks `logger.level <= DEBUG` before formatting the URL in
    logger.propagate = False
    logger.disabled = True
    return logger


def is_loopback_endpoint(endpoint: str | None) -> bool:
    """True when AWS_ENDPOINT_URL points at this machine: the local emulator."""
    if not endpoint:
        return False
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, allow_loopback_http: bool, where: str) -> str:
    """An https:// URL; in emulator mode also http:// on a loopback address. The message never shows the URL."""
    parts = urlsplit(url.strip())
    if parts.scheme == "https" and parts.hostname:
        return url.strip()
    if parts.scheme == "http" and allow_loopback_http and is_loopback_endpoint(url.strip()):
        return url.strip()
    if parts.scheme == "http" and is_loopback_endpoint(url.strip()):
        raise DeliveryError(f"{where} is an http:// loopback URL: accepted only in emulator mode (AWS_ENDPOINT_URL on 127.0.0.1)")
    raise DeliveryError(f"{where} is not an https:// URL ({parts.scheme or 'no'} scheme)")


@dataclass(frozen=True)
class Webhooks:
    """Webhook URLs by severity (``default`` for the rest). Its repr never shows them."""

    urls: dict[str, str] = field(repr=False)
    secret_id: str = ""

    def url_for(self, severity: str) -> str | None:
        return self.urls.get(severity) or self.urls.get("default")

    def channel_for(self, severity: str) -> str:
        return severity if severity in self.urls else ("default" if "default" in self.urls else "none")


class WebhookSecret:
    """Reads the webhook URL(s) from Secrets Manager; cached per secret for ``ttl`` seconds (5 minutes)."""

    permissions = ("secretsmanager:GetSecretValue",)

    def __init__(self, client: Any, allow_loopback_http: bool = False, ttl: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self._client, self._allow, self._ttl, self._clock = client, allow_loopback_http, ttl, clock
        self._cache: dict[str, tuple[float, Webhooks]] = {}
        watch_loggers()

    def webhooks(self, secret_id: str) -> Webhooks:
        now = self._clock()
        cached = self._cache.get(secret_id)
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        try:
            value = self._client.get_secret_value(SecretId=secret_id)
        except Exception as exc:
            code = "not found" if is_code(exc, "ResourceNotFoundException") else describe(exc)
            raise DeliveryError(f"cannot read the Slack webhook secret {secret_id!r} ({REDACTOR.redact(code)})") from None
        text = value.get("SecretString")
        if not text:
            raise DeliveryError(f"the Slack webhook secret {secret_id!r} has no SecretString")
        hooks = self._parse(text.strip(), secret_id)
        self._cache[secret_id] = (now, hooks)
        return hooks

    def _parse(self, text: str, secret_id: str) -> Webhooks:
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                raise DeliveryError(f"the Slack webhook secret {secret_id!r} is neither a URL nor a JSON object") from None
            unknown = sorted(k for k in data if k not in SEVERITY_KEYS)
            if unknown or not data or not all(isinstance(v, str) for v in data.values()):
                raise DeliveryError(f"the Slack webhook secret {secret_id!r} must map {', '.join(SEVERITY_KEYS)} to URLs "
                                    f"(unknown keys: {', '.join(unknown) or 'none'})")
        else:
            data = {"default": text}
        for url in data.values():
            REDACTOR.add(url.strip())
        urls = {k: check_url(v, self._allow, f"the Slack webhook secret {secret_id!r} ({k})") for k, v in data.items()}
        return Webhooks(urls, secret_id)


# ------------------------------------------------------------------ retries inside the time budget
@dataclass
class Budget:
    """The wall-clock time this post may still spend, retries and their waits included."""

    deadline: float  # time.monotonic() value
    attempts: int = 1
    waited: float = 0.0
    statuses: list[int] = field(default_factory=list)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, wait: float, request_seconds: float = 1.0) -> bool:
        return wait + request_seconds < self.left()


def retry_after(headers: dict[str, list[str]]) -> float:
    """Seconds from a Retry-After header (seconds or an HTTP date); 1 when absent or unreadable."""
    for key, values in headers.items():
        if key.lower() == "retry-after" and values:
            raw = str(values[0]).strip()
            try:
                return max(0.0, float(raw))
            except ValueError:
                from email.utils import parsedate_to_datetime

                try:
                    return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
                except (TypeError, ValueError):
                    return 1.0
    return 1.0


def retry_handlers(budget: Budget, max_retries: int = 4, backoff: float = 0.5,
                   sleep: Callable[[float], None] = time.sleep) -> list[Any]:
    """slack_sdk's handlers for 429 (honouring Retry-After), 5xx and connection errors, each within ``budget``."""
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )
    from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator

    calculator = BackoffRetryIntervalCalculator(backoff_factor=backoff)

    class _Budgeted:
        _wait = 0.0

        def _fits(self, wait: float) -> bool:
            self._wait = wait
            return budget.fits(wait)

        def prepare_for_next_attempt(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> None:
            state.next_attempt_requested = True
            if response is not None:
                budget.statuses.append(response.status_code)
            sleep(self._wait)
            budget.waited += self._wait
            budget.attempts += 1
            state.increment_current_attempt()

    class RateLimited(_Budgeted, RateLimitErrorRetryHandler):
        def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
            return (response is not None and response.status_code == 429
                    and self._fits(retry_after(response.headers) + random.uniform(0, 0.1)))  # noqa: S311 - jitter

    class ServerError(_Budgeted, ServerErrorRetryHandler):
        def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
            return (response is not None and 500 <= response.status_code <= 599
                    and self._fits(calculator.calculate_sleep_duration(state.current_attempt)))

    class ConnectionError_(_Budgeted, ConnectionErrorRetryHandler):
        def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
            return (super()._can_retry(state=state, request=request, response=response, error=error)
                    and self._fits(calculator.calculate_sleep_duration(state.current_attempt)))

    return [RateLimited(max_retry_count=max_retries), ServerError(max_retry_count=max_retries, interval_calculator=calculator),
            ConnectionError_(max_retry_count=max_retries, interval_calculator=calculator)]


class SlackWebhook:
    """Posts one payload; raises :class:`DeliveryError` (redacted) when Slack does not take it in the budget."""

    #: After a post has failed every retry, later posts fail at once for this long (left to SQS's retry)
    #: instead of each spending its own retries on a Slack that is down: one batch must not burn the invocation.
    BACKOFF_AFTER_FAILURE = 10.0

    def __init__(self, timeout: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                 backoff_after_failure: float = BACKOFF_AFTER_FAILURE):
        self._timeout, self._sleep, self._backoff = timeout, sleep, backoff_after_failure
        self._down_until = 0.0
        self._down_because = ""
        watch_loggers()

    def post(self, url: str, payload: dict[str, Any], deadline: float) -> Budget:
        from slack_sdk.webhook import WebhookClient

        budget = Budget(deadline)
        if time.monotonic() < self._down_until:
            raise DeliveryError(f"not tried: a post failed moments ago ({self._down_because}); left to SQS's retry")
        if budget.left() < 1.0:
            raise DeliveryError("no time left in this invocation to post to Slack (the message is retried)")
        client = WebhookClient(url, timeout=max(1, int(min(self._timeout, budget.left() - 0.5))), logger=_quiet_logger(),
                               retry_handlers=retry_handlers(budget, sleep=self._sleep))
        try:
            response = client.send_dict(payload)
        except Exception as exc:  # noqa: BLE001 - rebuilt without the URL
            self._failed(f"unreachable, {type(exc).__name__}")
            raise DeliveryError(f"Slack webhook unreachable after {budget.attempts} attempt(s): "
                                f"{type(exc).__name__}: {REDACTOR.redact(str(exc))[:200]}") from None
        if response.status_code != 200:
            body = REDACTOR.redact(str(response.body or ""))[:200]
            if response.status_code == 429 or response.status_code >= 500:
                self._failed(f"answered {response.status_code}")
            raise DeliveryError(f"Slack webhook answered {response.status_code} {body!r} after {budget.attempts} attempt(s)"
                                + (f" ({budget.waited:.1f}s waiting on 429/5xx)" if budget.waited else ""))
        self._down_until = 0.0
        return budget

    def _failed(self, why: str) -> None:
        self._down_until, self._down_because = time.monotonic() + self._backoff, why
