"""Environment, read once at the edge into a typed model."""

from __future__ import annotations

import os
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stage_policy.model import Mode


class SettingsError(ValueError):
    """A missing or invalid environment variable, named."""


class Settings(BaseModel):
    """What every Stagewarden function reads from its environment (set by template.yaml).

    ``default_mode`` (``STAGEWARDEN_DEFAULT_MODE``, the template's ``DefaultRemediationMode``)
    is a ceiling: ``dry_run`` forces dry run for every stage, ``enforce`` lets the policy's
    ``defaults.mode`` and per-stage ``mode`` decide (``stage_policy.executor.effective_mode``).
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    policy_location: str = Field(min_length=1)
    alerts_topic_arn: str = Field(min_length=1)
    state_table: str = Field(min_length=1)
    audit_table: str = Field(min_length=1)
    default_mode: Mode = "dry_run"
    gate_role_arn: str = ""  # the schema gate's own role: the only reader of quarantined objects
    #: Names this function in the audit ledger and its replay-safety records.
    function_name: str = "stagewarden"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        prefix = "STAGEWARDEN_"
        values = {name: env[prefix + name.upper()] for name in cls.model_fields if prefix + name.upper() in env}
        values.setdefault("function_name", env.get("AWS_LAMBDA_FUNCTION_NAME") or env.get("POWERTOOLS_SERVICE_NAME") or "stagewarden")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            var = prefix + str(err["loc"][0]).upper()
            problem = "is not set" if err["type"] == "missing" else f"is invalid ({err['msg']})"
            raise SettingsError(f"environment variable {var} {problem}") from None
