"""What the break-glass function is given besides SQS batches: its settings, and the Scheduler payloads.

Read once at the edge into typed models; a payload that does not parse is an
:class:`~stage_policy.events.EventError` naming the part (the invocation fails, Lambda retries
it, then it lands in the dead-letter queue).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stage_policy.events import EventError, check_text
from stage_policy.settings import SettingsError

EXPIRE = "breakglass-expire"
SWEEP = "breakglass-sweep"


class BreakGlassSettings(BaseModel):
    """The break-glass function's own environment (set by template.yaml), beside the layer's Settings."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    schedule_group: str = Field(min_length=1)  # STAGEWARDEN_BREAKGLASS_SCHEDULE_GROUP
    scheduler_role_arn: str = Field(min_length=1)  # STAGEWARDEN_BREAKGLASS_SCHEDULER_ROLE_ARN
    dead_letter_arn: str = ""  # STAGEWARDEN_BREAKGLASS_DEAD_LETTER_ARN
    stack_name: str = ""  # STAGEWARDEN_STACK_NAME: roles named "<stack>-..." are Stagewarden's own, never touched

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "BreakGlassSettings":
        env = os.environ if environ is None else environ
        names = {"schedule_group": "STAGEWARDEN_BREAKGLASS_SCHEDULE_GROUP",
                 "scheduler_role_arn": "STAGEWARDEN_BREAKGLASS_SCHEDULER_ROLE_ARN",
                 "dead_letter_arn": "STAGEWARDEN_BREAKGLASS_DEAD_LETTER_ARN", "stack_name": "STAGEWARDEN_STACK_NAME"}
        try:
            return cls.model_validate({k: env[v] for k, v in names.items() if v in env})
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            var = names[str(err["loc"][0])]
            raise SettingsError(f"environment variable {var} {'is not set' if err['type'] == 'missing' else 'is invalid'}") from None


class Trigger(BaseModel):
    """A Scheduler payload: a grant's one-time expiry, or the 5-minute sweep.

    ``scheduled_time`` and ``execution_id`` carry Scheduler's context attributes
    (``<aws.scheduler.scheduled-time>``, ``<aws.scheduler.execution-id>``); left unsubstituted (an
    invocation by hand) they are treated as absent.
    """

    model_config = ConfigDict(extra="ignore")

    stagewarden: Literal["breakglass-expire", "breakglass-sweep"]
    grant_id: str | None = Field(default=None, pattern=r"^bg-[0-9T]{15}-[0-9a-f]{6}$")
    scheduled_time: str | None = None
    execution_id: str | None = None

    @property
    def scheduled(self) -> datetime | None:
        from warden.rules import parse_time

        try:
            return parse_time(self.scheduled_time) if self.scheduled_time else None
        except ValueError:
            return None

    @property
    def execution(self) -> str | None:
        return self.execution_id if self.execution_id and not self.execution_id.startswith("<") else None


def parse_trigger(event: Any) -> Trigger:
    from stage_policy.loader import _format_loc, _message

    if not isinstance(event, dict):
        raise EventError("event", f"not a Scheduler payload (a JSON {type(event).__name__}, not an object)")
    check_text(event, "event")
    try:
        trigger = Trigger.model_validate(event)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise EventError(f"event.{_format_loc(err['loc'])}", _message(err)) from None
    if trigger.stagewarden == EXPIRE and not trigger.grant_id:
        raise EventError("event.grant_id", "is required for breakglass-expire")
    return trigger
