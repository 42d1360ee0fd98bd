"""Typed events: every input a guardrail accepts, parsed into a model or rejected with a named part.

Built on Powertools parser models (``EventBridgeModel``, ``S3EventNotificationEventBridgeModel``),
imported on first parse rather than at module import: they cost ~100 ms of model
building, which a cold start pays only when the first event arrives.

An input that does not parse raises :class:`EventError`, whose message names the event
part (``record body.detail.object.key: is required``). Handlers let it fail that one SQS
record (partial-batch failure), so the rest of the batch goes on and the bad message
lands in the dead-letter queue; nothing is remediated on malformed input.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

#: The EventBridge detail types Stagewarden understands.
OBJECT_CREATED = "Object Created"
API_CALL = "AWS API Call via CloudTrail"
#: Console sign-ins (CloudTrail's ConsoleLogin): the same CloudTrail record shape as API calls.
SIGN_IN = "AWS Console Sign In via CloudTrail"
SCHEDULED = "Scheduled Event"


class EventError(ValueError):
    """Malformed input. ``part`` names where (``record body.detail.bucket.name``)."""

    def __init__(self, part: str, problem: str):
        # bounded: the problem may quote the input (a 400,000-character value must not become a log line or a DLQ reason)
        self.part, self.problem = _bounded(part, 200), _bounded(problem, 300)
        super().__init__(f"{self.part}: {self.problem}")


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit - 30]}... ({len(text)} characters)"


@cache
def _models() -> dict[str, Any]:
    """Build the event models once per container (deferred: see the module docstring)."""
    from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, S3EventNotificationEventBridgeModel
    from pydantic import BaseModel, ConfigDict, Field

    class CloudTrailDetail(BaseModel):
        """The CloudTrail record inside an "AWS API Call via CloudTrail" event; unknown fields kept."""

        model_config = ConfigDict(extra="allow")
        eventName: str = Field(min_length=1)  # noqa: N815 - CloudTrail's spelling
        eventSource: str = Field(min_length=1)  # noqa: N815
        eventTime: str | None = None  # noqa: N815
        eventID: str | None = None  # noqa: N815

    # `account` is optional: moto's EventBridge->SQS delivery (the local emulator) leaves it out, and no
    # decision reads it (CloudTrail's own recipientAccountId and userIdentity.accountId are used instead)
    class ApiCallModel(EventBridgeModel):
        account: str | None = None
        detail: CloudTrailDetail

    class ObjectCreatedModel(S3EventNotificationEventBridgeModel):
        account: str | None = None

    class ScheduledModel(EventBridgeModel):
        account: str | None = None

    class ConfigRuleInvocation(BaseModel):
        """An AWS Config custom rule invocation (Powertools has a data class for it, not a parser model)."""

        model_config = ConfigDict(extra="allow")
        invokingEvent: str  # noqa: N815 - JSON text
        ruleParameters: str | None = None  # noqa: N815
        resultToken: str = Field(min_length=1)  # noqa: N815
        eventLeftScope: bool = False  # noqa: N815
        configRuleName: str = Field(min_length=1)  # noqa: N815
        accountId: str = Field(min_length=1)  # noqa: N815

    return {
        OBJECT_CREATED: ObjectCreatedModel,
        API_CALL: ApiCallModel,
        SIGN_IN: ApiCallModel,
        SCHEDULED: ScheduledModel,
        "config": ConfigRuleInvocation,
    }


def _validate(model: Any, data: Any, part: str) -> Any:
    from pydantic import ValidationError

    from stage_policy.loader import _format_loc, _message

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = _format_loc(tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p)))
        extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise EventError(f"{part}.{loc}" if loc else part, _message(err) + extra) from None


def check_text(value: Any, part: str) -> None:
    """Every string in ``value`` is text: JSON's ``\\ud800`` escapes decode to lone UTF-16 surrogates, which no
    model, finding or AWS call can carry (they failed a Finding's validation deep in a function, an untyped error).
    Iterative, not recursive: a value may be nested as deep as its parser allowed."""
    stack = [value]
    while stack:
        v = stack.pop()
        if v.__class__ is str:
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise EventError(part, "contains a lone UTF-16 surrogate (\\ud800-\\udfff): not text") from None
        elif isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, str):  # a str subclass
            stack.append(str(v))


def load_json(body: Any, part: str = "record body") -> Any:
    """JSON text (or bytes) to a value; already-parsed values pass through. Either way, every string in it is text."""
    if isinstance(body, (dict, list)):
        check_text(body, part)
        return body
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise EventError(part, "not UTF-8 text") from None
    if not isinstance(body, str):
        raise EventError(part, f"expected JSON text, got {type(body).__name__}")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise EventError(part, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise EventError(part, "not an event (JSON nested too deeply)") from None
    except ValueError as exc:  # a number too long to convert, ...
        raise EventError(part, f"not an event ({str(exc)[:120]})") from None
    check_text(data, part)
    return data


def parse_eventbridge(body: Any, accept: tuple[str, ...], part: str = "record body", *, cloudtrail_shape: bool = False) -> Any:
    """An EventBridge event of one of the ``accept``-ed detail types, as its typed model.

    ``cloudtrail_shape``: a CloudTrail record must also pass :func:`check_cloudtrail_shape` (break glass, whose
    decisions read deep into the record). Retention's posture reconcile and the exfiltration detector take odd
    records on purpose: the first re-reads the named bucket whatever the rest says, the second reports them.

    The result's ``detail_type`` tells which; for API calls ``detail`` keeps every
    CloudTrail field (``detail.model_dump()``).
    """
    data = load_json(body, part)
    if not isinstance(data, dict):
        raise EventError(part, f"not an EventBridge event (a JSON {type(data).__name__}, not an object)")
    detail_type = data.get("detail-type")
    if not isinstance(detail_type, str):
        raise EventError(f"{part}.detail-type", "is required (not an EventBridge event)")
    if detail_type not in accept:
        wanted = " or ".join(repr(a) for a in accept)
        raise EventError(f"{part}.detail-type", f"unsupported {detail_type[:80]!r} (expected {wanted})")
    event = _validate(_models()[detail_type], data, part)
    if cloudtrail_shape and detail_type in (API_CALL, SIGN_IN):
        check_cloudtrail_shape(data["detail"], f"{part}.detail")
    if detail_type == OBJECT_CREATED and not _BUCKET_NAME.fullmatch(event.detail.bucket.name):
        # botocore refuses such a name before any request (ParamValidationError): say which part, as for any bad input
        raise EventError(f"{part}.detail.bucket.name", f"not an S3 bucket name: {_bounded(event.detail.bucket.name, 80)!r}")
    return event


#: The CloudTrail fields a guardrail reads, with the JSON type CloudTrail gives each (null is accepted for all): a
#: record whose field has another shape (an object serialised into a string, a list for an object) is rejected here,
#: naming the field, instead of failing with an AttributeError deep in a function that chained ``.get`` on it.
_CLOUDTRAIL_SHAPE: tuple[tuple[tuple[str, ...], type], ...] = tuple(
    (tuple(path.split(".")), kind) for path, kind in {
        "userIdentity": dict, "userIdentity.type": str, "userIdentity.arn": str, "userIdentity.principalId": str,
        "userIdentity.accountId": str, "userIdentity.accessKeyId": str, "userIdentity.userName": str,
        "userIdentity.invokedBy": str, "userIdentity.sourceIdentity": str,
        "userIdentity.sessionContext": dict, "userIdentity.sessionContext.sessionIssuer": dict,
        "userIdentity.sessionContext.sessionIssuer.arn": str, "userIdentity.sessionContext.sessionIssuer.type": str,
        "userIdentity.sessionContext.sessionIssuer.userName": str,
        "userIdentity.sessionContext.sessionIssuer.principalId": str,
        "userIdentity.sessionContext.attributes": dict, "userIdentity.sessionContext.sourceIdentity": str,
        "userIdentity.sessionContext.webIdFederationData": dict,
        "requestParameters": dict, "requestParameters.roleArn": str, "requestParameters.roleName": str,
        "requestParameters.roleSessionName": str, "requestParameters.bucketName": str,
        "responseElements": dict, "responseElements.assumedRoleUser": dict,
        "responseElements.assumedRoleUser.assumedRoleId": str, "responseElements.assumedRoleUser.arn": str,
        "responseElements.credentials": dict, "responseElements.credentials.accessKeyId": str,
        "additionalEventData": dict, "sourceIPAddress": str, "userAgent": str, "errorCode": str, "errorMessage": str,
        "recipientAccountId": str, "awsRegion": str, "eventType": str,
    }.items())
_JSON_TYPE = {dict: "an object", str: "a string", list: "an array"}


def check_cloudtrail_shape(detail: dict[str, Any], part: str = "record body.detail") -> None:
    """Every CloudTrail field a guardrail reads has CloudTrail's type, or is null/absent; else an EventError naming it.
    IAM's ``requestParameters.tags`` (TagRole, CreateRole) is an array of ``{key, value}`` objects; other services
    log their tags as a map (Lambda, CloudWatch Logs), which no guardrail reads, so only IAM's are checked."""
    for path, kind in _CLOUDTRAIL_SHAPE:
        value: Any = detail
        for key in path:
            if not isinstance(value, dict):
                break  # a parent that is absent or null (a parent of another type was reported at its own path)
            value = value.get(key)
        else:
            if value is not None and not isinstance(value, kind):
                raise EventError(f"{part}.{'.'.join(path)}", f"must be {_JSON_TYPE[kind]} or null, not {_json_type(value)}")
    params = detail.get("requestParameters")
    tags = params.get("tags") if isinstance(params, dict) and detail.get("eventSource") == "iam.amazonaws.com" else None
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, dict) for t in tags)):
        raise EventError(f"{part}.requestParameters.tags", "must be an array of objects or null")


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


#: S3's rule for bucket names (3-63 lowercase letters, digits, dots and hyphens, a letter or digit at each end)
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def parse_config_invocation(event: Any, part: str = "event") -> tuple[Any, dict[str, Any]]:
    """An AWS Config rule invocation and its decoded ``invokingEvent``."""
    if not isinstance(event, dict):
        raise EventError(part, "not an AWS Config rule invocation (not a JSON object)")
    check_text(event, part)
    model = _validate(_models()["config"], event, part)
    invoking = load_json(model.invokingEvent, f"{part}.invokingEvent")
    if not isinstance(invoking, dict) or not isinstance(invoking.get("messageType"), str):
        raise EventError(f"{part}.invokingEvent.messageType", "is required")
    return model, invoking


def check_sqs_batch(event: Any, part: str = "event") -> None:
    """An SQS batch as Lambda's event source mapping delivers it, or EventError naming the broken part.

    The envelope is Lambda's, not the sender's: a broken one is a bug upstream, so the whole
    invocation fails (retried, then dead-lettered) rather than a KeyError in the batch utility.
    What a sender controls, the text of a record's ``body``, is parsed record by record (that record fails alone).
    """
    if not isinstance(event, dict):
        raise EventError(part, f"not an SQS batch (a JSON {type(event).__name__}, not an object)")
    records = event.get("Records")
    if not isinstance(records, list) or not records:  # Lambda never delivers an empty batch
        raise EventError(f"{part}.Records", "is required (a non-empty list of SQS records)")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise EventError(f"{part}.Records[{i}]", f"not an SQS record (a JSON {type(record).__name__}, not an object)")
        if not isinstance(record.get("messageId"), str) or not record["messageId"]:
            raise EventError(f"{part}.Records[{i}].messageId", "is required (the record's id, text)")
        if not isinstance(record.get("body"), str):
            raise EventError(f"{part}.Records[{i}].body", "is required (the message, text)")
