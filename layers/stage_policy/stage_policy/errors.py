"""One helper for AWS error codes, so no module imports botocore just to read one."""

from __future__ import annotations


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (``NoSuchBucketPolicy``...), else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = (response.get("Error") or {}).get("Code")
    return str(code) if code else None


def is_code(exc: BaseException, *codes: str) -> bool:
    return error_code(exc) in codes


def describe(exc: BaseException) -> str:
    """``Code: message`` for AWS errors, ``TypeName: message`` for anything else; bounded."""
    code = error_code(exc)
    if code:
        message = ((getattr(exc, "response", {}) or {}).get("Error") or {}).get("Message") or ""
        text = f"{code}: {message}" if message else code
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


THROTTLING = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "SlowDown", "RequestThrottled", "RequestThrottledException",
})


def is_transient(exc: BaseException) -> bool:
    """Throttling or a 5xx: worth retrying the record, never a verdict on what was asked for."""
    if error_code(exc) in THROTTLING:
        return True
    status = ((getattr(exc, "response", None) or {}).get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return isinstance(status, int) and status >= 500
